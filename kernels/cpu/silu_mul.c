/* silu_mul.c — the gated activation of every MLP: transformers computes
 * act_fn(gate) (bf16 out) then `* up` (bf16 out), so two roundings
 * (kern_cpu_silu_mul1, shared with the GEMM's fused epilogue). */
#include "cpu.h"

ms_status_t kern_cpu_silu_mul(kern_ctx_t *cx, const bf16_t *gate, const bf16_t *up, bf16_t *out, int64_t n)
{
    (void)cx;
    for (int64_t i = 0; i < n; i++) out[i] = kern_cpu_silu_mul1(bf16_to_f32(gate[i]), bf16_to_f32(up[i]));
    return MS_OK;
}
