/* moe_route.c — DeepSeek-V3's noaux_tc group-limited sigmoid router, as
 * transformers computes it on fp32 router logits:
 *   s = sigmoid(logits); c = s + e_score_correction_bias (selection only)
 *   group score = sum of the top-2 c of each group; keep the topk_group best
 *   groups; c of experts in the other groups := 0.0 (transformers' masked_fill,
 *   not -inf: with negative c a masked expert can win); idx = top_k of c;
 *   w = s[idx] / (sum + 1e-20) when norm_topk_prob; w *= routed_scaling_factor.
 * Ties pick the lower index (stable selection). idx is written in descending c
 * order; the combine sums in expert order, so the order does not matter. */
#include "cpu.h"

#include <math.h>
#include <stdlib.h>

/* Indices of the k largest of v[0..n) into out (descending, ties: lower index). */
static void topk_stable(const float *v, int32_t n, int32_t k, int32_t *out, unsigned char *taken)
{
    for (int32_t i = 0; i < n; i++) taken[i] = 0;
    for (int32_t j = 0; j < k; j++) {
        int32_t best = -1;
        for (int32_t i = 0; i < n; i++)
            if (!taken[i] && (best < 0 || v[i] > v[best])) best = i;
        taken[best] = 1;
        out[j] = best;
    }
}

ms_status_t kern_cpu_moe_route(kern_ctx_t *cx, const float *logits, const float *bias, int32_t T, int32_t E,
                               int32_t n_group, int32_t topk_group, int32_t top_k, int32_t norm_topk_prob,
                               float scaling, int32_t *idx, float *w)
{
    if (n_group <= 0 || E % n_group || topk_group < 1 || topk_group > n_group || top_k < 1 || top_k > E ||
        E / n_group < 2)
        return MS_ERR(MS_ERR_INVALID, "moe_route: bad geometry E=%d n_group=%d topk_group=%d top_k=%d", E, n_group,
                      topk_group, top_k);
    const int32_t gs = E / n_group;
    float *buf = malloc(sizeof(float) * (size_t)(2 * E + n_group) + sizeof(int32_t) * (size_t)E + (size_t)E +
                        (size_t)n_group);
    if (!buf) return MS_ERR(MS_ERR_NOMEM, "moe_route: out of memory");
    float *sg = buf, *c = sg + E, *gscore = c + E;
    int32_t *sel = (int32_t *)(gscore + n_group);
    unsigned char *taken = (unsigned char *)(sel + E), *keep = taken + E;

    for (int32_t t = 0; t < T; t++) {
        const float *lg = logits + (int64_t)t * E;
        for (int32_t e = 0; e < E; e++) {
            sg[e] = 1.0f / (1.0f + expf(-lg[e]));
            c[e] = sg[e] + (bias ? bias[e] : 0.0f);
        }
        for (int32_t g = 0; g < n_group; g++) {
            int32_t top2[2];
            topk_stable(c + g * gs, gs, 2, top2, taken);
            gscore[g] = c[g * gs + top2[0]] + c[g * gs + top2[1]];
        }
        topk_stable(gscore, n_group, topk_group, sel, taken);
        for (int32_t g = 0; g < n_group; g++) keep[g] = 0;
        for (int32_t j = 0; j < topk_group; j++) keep[sel[j]] = 1;
        for (int32_t e = 0; e < E; e++)
            if (!keep[e / gs]) c[e] = 0.0f;
        int32_t *it = idx + (int64_t)t * top_k;
        float *wt = w + (int64_t)t * top_k;
        topk_stable(c, E, top_k, it, taken);
        float sum = 0;
        for (int32_t j = 0; j < top_k; j++) {
            wt[j] = sg[it[j]];
            sum += wt[j];
        }
        for (int32_t j = 0; j < top_k; j++) {
            if (norm_topk_prob) wt[j] /= (sum + 1e-20f);
            wt[j] *= scaling;
        }
    }
    free(buf);
    return MS_OK;
}
