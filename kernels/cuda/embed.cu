/* embed.cu — embedding lookup: one block per token copies its bf16 row, in
 * 16-byte pieces when the row allows (a chain of dependent 2-byte copies took
 * ~12 µs for one 7168-wide row: the stores may alias the table for nvcc).
 * id -1 is padding (row left as it was); any other id outside [0, vocab) is
 * a data fault: KERN_FAULT_TOKEN is raised and the row is written as zeros
 * so nothing downstream reads garbage. */
#include "common.cuh"

__global__ static void embed_kernel(const int32_t *ids, const uint16_t *__restrict__ table, int64_t vocab,
                                    int32_t dim, uint16_t *__restrict__ out, uint32_t *fault, bool vec)
{
    cu_pdl_enter();
    int64_t t = blockIdx.x;
    int32_t id = ids[t];
    uint16_t *o = out + t * dim;
    if (id == -1) return;
    if (id < 0 || id >= vocab) {
        if (threadIdx.x == 0) cu_fault(fault, KERN_FAULT_TOKEN);
        for (int32_t i = threadIdx.x; i < dim; i += blockDim.x) o[i] = 0;
        return;
    }
    const uint16_t *r = table + (int64_t)id * dim;
    if (vec) {
        for (int32_t i = threadIdx.x; i < dim / 8; i += blockDim.x) ((uint4 *)o)[i] = __ldg((const uint4 *)r + i);
        return;
    }
    for (int32_t i = threadIdx.x; i < dim; i += blockDim.x) o[i] = r[i];
}

extern "C" ms_status_t kern_cuda_embed(kern_ctx_t *cx, const int32_t *ids, int32_t n, const bf16_t *table,
                                       int64_t vocab, int32_t dim, bf16_t *out)
{
    if (n <= 0) return MS_OK;
    const bool vec = dim % 8 == 0 && ((uintptr_t)table | (uintptr_t)out) % 16 == 0;
    cu_launch(embed_kernel, n, 256, 0, CU_STREAM(cx), ids, (const uint16_t *)table, vocab, dim, (uint16_t *)out,
              cx->fault, vec);
    CU_LAUNCHED();
    return MS_OK;
}
