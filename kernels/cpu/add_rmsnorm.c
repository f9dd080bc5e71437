/* add_rmsnorm.c — the residual add fused with the next RMSNorm (between
 * sublayers): x := bf16(x + res) per element, then the rmsnorm row of the new
 * x. The same two steps as add then rmsnorm, so bit-identical; one pass over
 * the row instead of three (what the fused GPU kernel does). */
#include "cpu.h"

ms_status_t kern_cpu_add_rmsnorm(kern_ctx_t *cx, bf16_t *x, const bf16_t *res, const bf16_t *w, bf16_t *y, int32_t rows,
                                 int32_t dim, float eps)
{
    (void)cx;
    for (int32_t r = 0; r < rows; r++) {
        bf16_t *xr = x + (int64_t)r * dim;
        const bf16_t *rr = res + (int64_t)r * dim;
        for (int32_t i = 0; i < dim; i++) xr[i] = f32_to_bf16(bf16_to_f32(xr[i]) + bf16_to_f32(rr[i]));
        kern_cpu_rmsnorm_row(xr, w, y + (int64_t)r * dim, dim, eps);
    }
    return MS_OK;
}
