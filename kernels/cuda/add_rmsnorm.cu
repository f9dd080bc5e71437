/* add_rmsnorm.cu — the residual add fused with the next RMSNorm in one
 * kernel: per row x := bf16(x + res) (add.cu's one rounding), then the
 * rmsnorm row of the new x through rmsnorm.cuh, so the result is
 * bit-identical to add followed by rmsnorm on this backend. Each thread
 * reads back only the elements it wrote, so no barrier sits between the two
 * halves. One block per row; rows are dim wide and contiguous. */
#include "rmsnorm.cuh"

__global__ static void __launch_bounds__(RMS_THREADS)
    add_rmsnorm_kernel(uint16_t *x, const uint16_t *res, const uint16_t *w, uint16_t *y, int32_t dim, float eps)
{
    uint16_t *xr = x + (int64_t)blockIdx.x * dim;
    const uint16_t *rr = res + (int64_t)blockIdx.x * dim;
    float ss = 0.f;
    for (int32_t i = threadIdx.x; i < dim; i += RMS_THREADS) {
        const uint16_t v = cu_f_bf16(__fadd_rn(cu_bf16_f(xr[i]), cu_bf16_f(rr[i])));
        xr[i] = v;
        ss = cu_rms_acc(ss, cu_bf16_f(v));
    }
    cu_rms_finish(xr, w, y + (int64_t)blockIdx.x * dim, dim, eps, ss);
}

extern "C" ms_status_t kern_cuda_add_rmsnorm(kern_ctx_t *cx, bf16_t *x, const bf16_t *res, const bf16_t *w, bf16_t *y,
                                             int32_t rows, int32_t dim, float eps)
{
    if (rows <= 0) return MS_OK;
    if (dim <= 0) return MS_ERR(MS_ERR_INVALID, "cuda add_rmsnorm: dim %d", dim);
    add_rmsnorm_kernel<<<rows, RMS_THREADS, 0, CU_STREAM(cx)>>>(x, res, w, y, dim, eps);
    CU_LAUNCHED();
    return MS_OK;
}
