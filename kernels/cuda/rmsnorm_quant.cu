/* rmsnorm_quant.cu — rmsnorm or add_rmsnorm with act_quant of the output in
 * the same kernel (kernels.h rmsnorm_quant). rmsnorm.cuh's row kernel holds
 * each output chunk in registers when it stores it; a 128-group is 16 chunks
 * of 16 consecutive lanes, so the group's amax is a half-warp shuffle and the
 * codes and scale follow act_quant_op.cu's rule (common.cuh) on the very bf16
 * values stored: bit-identical to the norm op followed by act_quant, without
 * act_quant's launch and its re-read of the row. */
#include "rmsnorm.cuh"

extern "C" ms_status_t kern_cuda_rmsnorm_quant(kern_ctx_t *cx, bf16_t *x, int64_t ldx, const bf16_t *res,
                                               const bf16_t *w, bf16_t *y, int64_t ldy, int32_t rows, int32_t dim,
                                               float eps, uint8_t *q, int64_t ldq, float *scale, int64_t lds)
{
    if (rows <= 0) return MS_OK;
    if (dim <= 0) return MS_ERR(MS_ERR_INVALID, "cuda rmsnorm_quant: dim %d", dim);
    if (!q || !scale) return MS_ERR(MS_ERR_INVALID, "cuda rmsnorm_quant: no output for the codes or scales");
    const bool vec = cu_rms_vec(x, ldx, res, w, y, ldy, dim);
    cu_rms_quant_t qt = {q, ldq, scale, lds, (uintptr_t)q % 8 == 0 && ldq % 8 == 0 && dim % 8 == 0};
    const int threads = cu_rms_threads(dim);
    if (res)
        cu_launch(rms_row_kernel<true, true>, rows, threads, 0, CU_STREAM(cx), (uint16_t *)x, ldx,
                  (const uint16_t *)res, (const uint16_t *)w, (uint16_t *)y, ldy, dim, eps, vec, qt);
    else
        cu_launch(rms_row_kernel<false, true>, rows, threads, 0, CU_STREAM(cx), (uint16_t *)x, ldx,
                  (const uint16_t *)NULL, (const uint16_t *)w, (uint16_t *)y, ldy, dim, eps, vec, qt);
    CU_LAUNCHED();
    return MS_OK;
}
