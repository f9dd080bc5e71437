/* rmsnorm.cu — RMSNorm with the CPU reference's rounding (kernels/cpu/rmsnorm.c):
 * fp32 statistics, y = bf16(w * bf16(x * rsqrt(mean(x^2) + eps))). The row kernel
 * lives in rmsnorm.cuh (shared with add_rmsnorm); the sum of squares is reduced
 * in fp32 (the CPU sums in double: results agree to fp32 rounding of the mean);
 * the threads a row and the summation tree depend on dim only (cu_rms_threads). */
#include "rmsnorm.cuh"

extern "C" ms_status_t kern_cuda_rmsnorm(kern_ctx_t *cx, const bf16_t *x, int64_t ldx, const bf16_t *w, bf16_t *y,
                                         int64_t ldy, int32_t rows, int32_t dim, float eps)
{
    if (rows <= 0) return MS_OK;
    if (dim <= 0) return MS_ERR(MS_ERR_INVALID, "cuda rmsnorm: dim %d", dim);
    const bool vec = cu_rms_vec(x, ldx, NULL, w, y, ldy, dim);
    cu_launch(rms_row_kernel<false, false>, rows, cu_rms_threads(dim), 0, CU_STREAM(cx), (uint16_t *)x, ldx,
              (const uint16_t *)NULL, (const uint16_t *)w, (uint16_t *)y, ldy, dim, eps, vec, cu_rms_quant_t{});
    CU_LAUNCHED();
    return MS_OK;
}
