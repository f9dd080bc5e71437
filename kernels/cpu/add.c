/* add.c — residual add of two bf16 tensors, rounded once (a bf16 `+` in torch). */
#include "cpu.h"

ms_status_t kern_cpu_add(kern_ctx_t *cx, const bf16_t *a, const bf16_t *b, bf16_t *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = f32_to_bf16(bf16_to_f32(a[i]) + bf16_to_f32(b[i]));
    return MS_OK;
}
