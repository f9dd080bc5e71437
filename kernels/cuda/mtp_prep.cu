/* mtp_prep.cu — MTP drafting metadata (kernels.h): one thread per row, then
 * per entry, of the shared rule (kernels/mtp_prep.h). A few hundred threads
 * a step: one small launch, no host work. */
#include "common.cuh"
#include "kernels/mtp_prep.h"

__global__ static void mtp_prep_kernel(kern_mtp_prep_t p)
{
    cu_pdl_enter();
    const int32_t i = (int32_t)(blockIdx.x * blockDim.x + threadIdx.x);
    if (i < p.T) kern_mtp_prep_row(&p, i);
    if (i < p.n) kern_mtp_prep_entry(&p, i);
}

extern "C" ms_status_t kern_cuda_mtp_prep(kern_ctx_t *cx, const kern_mtp_prep_t *p)
{
    if (p->T < 0 || p->n < 0 || p->N < 1 || p->block_size < 1)
        return MS_ERR(MS_ERR_INVALID, "cuda mtp_prep: T %d, n %d, N %d, block size %d", p->T, p->n, p->N,
                      p->block_size);
    const int32_t m = p->T > p->n ? p->T : p->n;
    if (m == 0) return MS_OK;
    cu_launch(mtp_prep_kernel, (m + 127) / 128, 128, 0, CU_STREAM(cx), *p);
    CU_LAUNCHED();
    return MS_OK;
}
