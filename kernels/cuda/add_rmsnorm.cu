/* add_rmsnorm.cu — the residual add fused with the next RMSNorm in one
 * kernel: per row x := bf16(x + res) (add.cu's one rounding), then the
 * rmsnorm row of the new x. rmsnorm.cuh's row kernel does both, so the result
 * is bit-identical to add followed by rmsnorm on this backend. */
#include "rmsnorm.cuh"

extern "C" ms_status_t kern_cuda_add_rmsnorm(kern_ctx_t *cx, bf16_t *x, const bf16_t *res, const bf16_t *w, bf16_t *y,
                                             int32_t rows, int32_t dim, float eps)
{
    if (rows <= 0) return MS_OK;
    if (dim <= 0) return MS_ERR(MS_ERR_INVALID, "cuda add_rmsnorm: dim %d", dim);
    const bool vec = cu_rms_vec(x, dim, res, w, y, dim, dim);
    cu_launch(rms_row_kernel<true, false>, rows, cu_rms_threads(dim), 0, CU_STREAM(cx), (uint16_t *)x, (int64_t)dim,
              (const uint16_t *)res, (const uint16_t *)w, (uint16_t *)y, (int64_t)dim, dim, eps, vec, cu_rms_quant_t{});
    CU_LAUNCHED();
    return MS_OK;
}
