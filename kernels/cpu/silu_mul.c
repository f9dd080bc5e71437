/* silu_mul.c — the gated activation of every MLP: transformers computes
 * act_fn(gate) (bf16 out) then `* up` (bf16 out), so two roundings. */
#include "cpu.h"

#include <math.h>

ms_status_t kern_cpu_silu_mul(kern_ctx_t *cx, const bf16_t *gate, const bf16_t *up, bf16_t *out, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float g = bf16_to_f32(gate[i]);
        float a = bf16_round(g / (1.0f + expf(-g)));
        out[i] = f32_to_bf16(a * bf16_to_f32(up[i]));
    }
    return MS_OK;
}
