/* sample.c — pick one token per row of fp32 or bf16 logits (a bf16 row is
 * converted exactly to fp32 first, so it samples as its cast would).
 *
 * Greedy (temperature 0): argmax, first index on ties (torch.argmax).
 * Otherwise: logits / temperature, keep the top_k largest (ties: lower id),
 * then the smallest prefix whose probability mass reaches top_p, renormalize,
 * and invert the CDF at u = kern_rng_uniform(seed, position) — a pure function
 * of the request's seed and the sampled position, so a request draws the
 * same token whatever else shares the batch. mask_token (EOS under
 * min_tokens) is excluded before any of this. logprob and the top-N list come
 * from the unmodified distribution (log_softmax of the raw logits). */
#include "cpu.h"

#include <math.h>
#include <stdlib.h>

typedef struct {
    float v;
    int32_t id;
} cand_t;

static int cand_cmp(const void *a, const void *b)
{
    const cand_t *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return x->id < y->id ? -1 : (x->id > y->id);
}

/* Top-n of logits (descending, ties: lower id) in one pass with a sorted
 * insertion list; n <= KERN_MAX_LOGPROBS. Scanning ids upward and inserting
 * only on strictly greater values keeps the lower id first on ties. */
static void top_n(const float *lg, int32_t vocab, int32_t n, int32_t *ids)
{
    int32_t have = 0;
    for (int32_t i = 0; i < vocab && n > 0; i++) {
        if (have == n && !(lg[i] > lg[ids[n - 1]])) continue;
        int32_t j = have < n ? have++ : n - 1;
        while (j > 0 && lg[i] > lg[ids[j - 1]]) {
            ids[j] = ids[j - 1];
            j--;
        }
        ids[j] = i;
    }
}

ms_status_t kern_cpu_sample(kern_ctx_t *cx, const void *logits, ms_dtype_t dt, int64_t ld, int32_t rows,
                            int32_t vocab, const kern_sample_t *params, int32_t *tokens, float *logprob,
                            int32_t *top_ids, float *top_lp)
{
    if (dt != MS_DT_F32 && dt != MS_DT_BF16)
        return MS_ERR(MS_ERR_UNSUPPORTED, "sample: %s logits", ms_dtype_name(dt));
    cand_t *c = malloc(sizeof(cand_t) * (size_t)vocab);
    float *row = dt == MS_DT_BF16 ? malloc(sizeof(float) * (size_t)vocab) : NULL;
    if (!c || (dt == MS_DT_BF16 && !row)) {
        free(c), free(row);
        return MS_ERR(MS_ERR_NOMEM, "sample: out of memory");
    }
    for (int32_t r = 0; r < rows; r++) {
        const float *lg = (const float *)logits + r * ld;
        if (row) {
            kern_cpu_bf16_to_f32((const bf16_t *)logits + r * ld, row, vocab);
            lg = row;
        }
        const kern_sample_t *p = &params[r];
        const int32_t mask = p->mask_token >= 0 && p->mask_token < vocab ? p->mask_token : -1;
        float mx = -INFINITY;
        for (int32_t i = 0; i < vocab; i++)
            if (lg[i] > mx) mx = lg[i];
        double sum = 0;
        for (int32_t i = 0; i < vocab; i++) sum += exp((double)lg[i] - mx);
        const double lse = mx + log(sum);
        if (!isfinite(lse)) { /* a NaN or +inf logit, or nothing but -inf: a data fault of this row */
            kern_cpu_fault(cx, KERN_FAULT_LOGITS);
            tokens[r] = -1, logprob[r] = 0;
            continue;
        }

        int32_t tok = -1;
        if (p->temperature <= 0.0f) {
            for (int32_t i = 0; i < vocab; i++)
                if (i != mask && (tok < 0 || lg[i] > lg[tok])) tok = i;
        } else {
            int32_t n = 0;
            for (int32_t i = 0; i < vocab; i++)
                if (i != mask) c[n++] = (cand_t){lg[i] / p->temperature, i};
            qsort(c, (size_t)n, sizeof(cand_t), cand_cmp);
            /* logits removed by logits_adjust (min_p) are -inf: never candidates, even by rounding */
            while (n > 1 && c[n - 1].v == -INFINITY) n--;
            if (p->top_k > 0 && p->top_k < n) n = p->top_k;
            double cm = c[0].v, tot = 0;
            for (int32_t i = 0; i < n; i++) tot += exp((double)c[i].v - cm);
            if (p->top_p > 0.0f && p->top_p < 1.0f) {
                double acc = 0;
                int32_t keep = n;
                for (int32_t i = 0; i < n; i++) {
                    acc += exp((double)c[i].v - cm) / tot;
                    if (acc >= p->top_p) {
                        keep = i + 1;
                        break;
                    }
                }
                n = keep;
                tot = 0;
                for (int32_t i = 0; i < n; i++) tot += exp((double)c[i].v - cm);
            }
            double u = kern_rng_uniform(p->seed, p->position) * tot, acc = 0;
            tok = c[n - 1].id;
            for (int32_t i = 0; i < n; i++) {
                acc += exp((double)c[i].v - cm);
                if (u < acc) {
                    tok = c[i].id;
                    break;
                }
            }
        }
        tokens[r] = tok;
        logprob[r] = (float)(lg[tok] - lse);
        int32_t nl = p->n_logprobs < 0 ? 0 : p->n_logprobs > KERN_MAX_LOGPROBS ? KERN_MAX_LOGPROBS : p->n_logprobs;
        int32_t *ti = top_ids + (int64_t)r * KERN_MAX_LOGPROBS;
        float *tl = top_lp + (int64_t)r * KERN_MAX_LOGPROBS;
        top_n(lg, vocab, nl, ti);
        for (int32_t j = 0; j < nl; j++) tl[j] = (float)(lg[ti[j]] - lse);
    }
    free(c), free(row);
    return MS_OK;
}
