/* moe_combine.c — sum each token's weighted expert outputs the way
 * transformers 5.17 does in its default experts path (grouped_mm /
 * batched_mm experts_forward): each bf16 expert output times its fp32 routing
 * weight gives fp32, the top-k products are summed in fp32, and the sum is
 * rounded to bf16 once. (The eager per-expert loop with bf16 index_add_ would
 * round every term; measured against the golden fixtures, the fp32 sum is
 * what transformers ran: bit-identical logits on tiny_bf16.) Terms are added
 * in ascending expert id, so the result does not depend on where the experts
 * ran (EP layout) or which replica served them. row_of_pair finds each
 * pair's row wherever the transport left it. moe_combine_add adds the shared
 * expert's output to each rounded sum (rounding again, as the add op): one
 * pass instead of the combine's store and the add's re-read. */
#include "cpu.h"

/* add NULL: moe_combine; else each rounded sum plus add's element, rounded again (moe_combine_add) */
static ms_status_t cpu_combine(const bf16_t *rows, const int32_t *row_of_pair, const int32_t *idx, const float *w,
                               int32_t T, int32_t K, int32_t hidden, const bf16_t *add, bf16_t *out, const char *op)
{
    int32_t ord[64];
    if (K > 64) return MS_ERR(MS_ERR_UNSUPPORTED, "%s: top_k %d > 64", op, K);
    for (int32_t t = 0; t < T; t++) {
        const int32_t *it = idx + (int64_t)t * K;
        for (int32_t k = 0; k < K; k++) { /* insertion sort of k by expert id */
            int32_t j = k;
            while (j > 0 && it[ord[j - 1]] > it[k]) {
                ord[j] = ord[j - 1];
                j--;
            }
            ord[j] = k;
        }
        bf16_t *o = out + (int64_t)t * hidden;
        const bf16_t *a = add ? add + (int64_t)t * hidden : NULL;
        for (int32_t d = 0; d < hidden; d++) {
            float acc = 0.0f;
            for (int32_t j = 0; j < K; j++) {
                int32_t p = t * K + ord[j];
                if (row_of_pair[p] < 0) continue; /* padding, or dropped by a fault */
                acc += bf16_to_f32(rows[(int64_t)row_of_pair[p] * hidden + d]) * w[p];
            }
            /* the add op's rounding of bf16(acc) + a: the same two roundings as combine then add */
            o[d] = a ? f32_to_bf16(bf16_round(acc) + bf16_to_f32(a[d])) : f32_to_bf16(acc);
        }
    }
    return MS_OK;
}

ms_status_t kern_cpu_moe_combine(kern_ctx_t *cx, const bf16_t *rows, const int32_t *row_of_pair, const int32_t *idx,
                                 const float *w, int32_t T, int32_t K, int32_t hidden, bf16_t *out)
{
    (void)cx;
    return cpu_combine(rows, row_of_pair, idx, w, T, K, hidden, NULL, out, "moe_combine");
}

/* The combine with the shared expert's output added (what forward_moe.c's combine + add computed). */
ms_status_t kern_cpu_moe_combine_add(kern_ctx_t *cx, const bf16_t *rows, const int32_t *row_of_pair,
                                     const int32_t *idx, const float *w, int32_t T, int32_t K, int32_t hidden,
                                     const bf16_t *add, bf16_t *out)
{
    (void)cx;
    return cpu_combine(rows, row_of_pair, idx, w, T, K, hidden, add, out, "moe_combine_add");
}
