/* rmsnorm.cu — RMSNorm with the CPU reference's rounding (kernels/cpu/rmsnorm.c):
 * fp32 statistics, y = bf16(w * bf16(x * rsqrt(mean(x^2) + eps))). One block
 * per row (rmsnorm.cuh); the sum of squares is reduced in fp32 through shared
 * memory (the CPU sums in double: results agree to fp32 rounding of the mean). */
#include "rmsnorm.cuh"

__global__ static void __launch_bounds__(RMS_THREADS)
    rmsnorm_kernel(const uint16_t *x, int64_t ldx, const uint16_t *w, uint16_t *y, int64_t ldy, int32_t dim, float eps)
{
    const uint16_t *xr = x + blockIdx.x * ldx;
    float ss = 0.f;
    for (int32_t i = threadIdx.x; i < dim; i += RMS_THREADS) ss = cu_rms_acc(ss, cu_bf16_f(xr[i]));
    cu_rms_finish(xr, w, y + blockIdx.x * ldy, dim, eps, ss);
}

extern "C" ms_status_t kern_cuda_rmsnorm(kern_ctx_t *cx, const bf16_t *x, int64_t ldx, const bf16_t *w, bf16_t *y,
                                         int64_t ldy, int32_t rows, int32_t dim, float eps)
{
    if (rows <= 0) return MS_OK;
    rmsnorm_kernel<<<rows, RMS_THREADS, 0, CU_STREAM(cx)>>>(x, ldx, w, y, ldy, dim, eps);
    CU_LAUNCHED();
    return MS_OK;
}
