/* logits_adjust.c — vLLM's sampling controls on fp32 logits, before sample
 * (kernels.h describes the op): per-sequence penalty lists written by
 * `sets`, then logit_bias, repetition / frequency / presence penalties over
 * the row's list entries only (a list holds the tokens the sequence has seen
 * or biases, never the vocabulary), then min_p relative to the row's
 * temperature (the one pass over the vocabulary, only for rows that ask).
 * Order and formulas are vLLM's (apply_penalties; MinPLogitsProcessor after
 * temperature). */
#include "cpu.h"

#include <math.h>

ms_status_t kern_cpu_logits_adjust(kern_ctx_t *cx, float *logits, int64_t ld, int32_t rows, int32_t vocab,
                                   const kern_adjust_t *adj, kern_pen_t *lists, int64_t lists_cap,
                                   const kern_pen_set_t *sets, int32_t n_sets)
{
    if (rows < 0 || vocab < 1 || n_sets < 0 || lists_cap < 0)
        return MS_ERR(MS_ERR_INVALID, "logits_adjust: %d rows, vocab %d, %d sets, cap %lld", rows, vocab, n_sets,
                      (long long)lists_cap);
    for (int32_t i = 0; i < n_sets; i++) {
        if (sets[i].at < 0 || sets[i].at >= lists_cap) {
            if (cx && cx->fault) *cx->fault |= KERN_FAULT_BLOCK;
            continue;
        }
        lists[sets[i].at] = sets[i].e;
    }
    for (int32_t r = 0; r < rows; r++) {
        const kern_adjust_t *a = &adj[r];
        float *lg = logits + (int64_t)r * ld;
        const kern_pen_t *e = lists + a->list_off;
        if (a->n_list > 0 && (a->list_off < 0 || a->list_off + a->n_list > lists_cap)) {
            if (cx && cx->fault) *cx->fault |= KERN_FAULT_BLOCK;
            continue;
        }
        for (int32_t j = 0; j < a->n_list; j++) {
            if (e[j].token < 0 || e[j].token >= vocab) {
                if (cx && cx->fault) *cx->fault |= KERN_FAULT_TOKEN;
                continue;
            }
            float l = lg[e[j].token] + e[j].bias;
            if ((e[j].in_prompt || e[j].n_out > 0) && a->repetition != 1.0f)
                l = l > 0 ? l / a->repetition : l * a->repetition;
            l -= a->frequency * (float)e[j].n_out + a->presence * (e[j].n_out > 0 ? 1.0f : 0.0f);
            lg[e[j].token] = l;
        }
        if (!(a->min_p > 0.0f && a->temperature > 0.0f)) continue;
        if (a->mask_token >= 0 && a->mask_token < vocab) lg[a->mask_token] = -INFINITY;
        float mx = -INFINITY;
        for (int32_t i = 0; i < vocab; i++)
            if (lg[i] > mx) mx = lg[i];
        for (int32_t i = 0; i < vocab; i++)
            if (exp(((double)lg[i] - mx) / a->temperature) < (double)a->min_p) lg[i] = -INFINITY;
    }
    return MS_OK;
}
