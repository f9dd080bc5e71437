/* cuda_cases_sample.c — harness runner for the sampler (table and tolerances:
 * test_cuda_vs_cpu.c). The CPU samples the fp32 values; the GPU samples the
 * same values as fp32 or as the bf16 they were rounded from, and a bf16 case
 * also samples their fp32 cast on the GPU: the two GPU results must be
 * bit-identical (tokens, logprobs, top-N). */
#include "cuda_cases.h"

#define K (env->gpu)
#define CX (env->cx)

/* The logits of one variant (cc_run_sample's p[2]) into lg [rows, ld]. */
static void sample_logits(float *lg, int32_t rows, int32_t V, int64_t ld, int64_t variant)
{
    for (int64_t i = 0; i < rows * ld; i++) lg[i] = (float)(kr_normal() * 3.0);
    if (variant == 1) /* ties: logits on a coarse grid, so order rests on the lower-id rule */
        for (int64_t i = 0; i < rows * ld; i++) lg[i] = (float)((int)(kr_uniform() * 16)) * 0.5f;
    for (int32_t i = 0; variant == 2 && i < rows; i++) /* non-finite rows: KERN_FAULT_LOGITS, token -1 */
        if (i % 6 == 1) lg[i * ld + (i * 977) % V] = NAN;
        else if (i % 6 == 4) lg[i * ld + (i * 131) % V] = INFINITY;
        else if (i % 6 == 5 && i % 12 == 11)
            for (int32_t v = 0; v < V; v++) lg[i * ld + v] = -INFINITY;
    if (variant == 3) /* peaked, as a language model's: a few dozen tokens carry most of the mass; some rows
                       * lose most of their vocabulary to -inf (logits_adjust's min_p) */
        for (int32_t i = 0; i < rows; i++)
            for (int32_t v = 0; v < V; v++) {
                float *x = &lg[i * ld + v];
                const double u = kr_uniform();
                *x = (float)(2.0 * kr_normal() - 4.0 + (u < 2e-4 ? 12.0 + 6.0 * kr_uniform() : 0.0));
                if (i % 7 == 3 && *x < 1.0f) *x = -INFINITY;
            }
}

/* p[] = rows, vocab, variant (0 normal logits, 1 heavy ties, 2 NaN/inf/all -inf rows: fault, token -1,
 * 3 peaked with -inf), dtype (MS_DT_F32 or MS_DT_BF16: the logits rounded to bf16 first), params
 * (0 a mix of greedy/temperature/top-k/top-p/masks/logprobs, 1 greedy, 2 temperature only, 3 top-k 50,
 * 4 top-p 0.9, 5 greedy with 20 logprobs, 6 top-k 5000+ with and without top-p 0.95). Tokens and top ids
 * identical to the CPU's, logprobs within tol. */
void cc_run_sample(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int32_t rows = (int32_t)c->p[0], V = (int32_t)c->p[1];
    const int64_t ld = V + 1, n = rows * ld, mode = c->p[4];
    const ms_dtype_t dt = (ms_dtype_t)c->p[3];
    if (rows < 1 || V < 2) {
        cc_check(r, 0, "case shape %d x %d", rows, V);
        return;
    }
    kr_seed(207 + (uint64_t)c->p[2]);
    float *lg = malloc(sizeof(float) * (size_t)n);
    bf16_t *h = dt == MS_DT_BF16 ? malloc(sizeof(bf16_t) * (size_t)n) : NULL;
    sample_logits(lg, rows, V, ld, c->p[2]);
    for (int64_t i = 0; h && i < n; i++) h[i] = f32_to_bf16(lg[i]), lg[i] = bf16_to_f32(h[i]);
    kern_sample_t *ps = calloc((size_t)rows, sizeof *ps);
    static const float temps[] = {0.0f, 0.7f, 1.0f, 1.3f};
    static const float top_ps[] = {1.0f, 0.9f, 0.5f, 0.97f};
    static const int32_t top_ks[] = {0, 1, 50, 1000};
    for (int32_t i = 0; i < rows; i++) {
        ps[i] = (kern_sample_t){.temperature = temps[i % 4], .top_p = top_ps[(i / 4) % 4],
                                .top_k = top_ks[(i / 16) % 4 < 3 ? (i / 16) % 4 : 0], .n_logprobs = (i * 7) % 21,
                                .seed = 1000 + (uint64_t)i * 7919, .position = i * 13, .mask_token = -1};
        if (mode == 1 || mode == 5) ps[i].temperature = 0, ps[i].n_logprobs = mode == 5 ? 20 : 0;
        if (mode >= 2 && mode <= 4) {
            ps[i].temperature = i % 2 ? 0.7f : 1.0f, ps[i].top_p = mode == 4 ? 0.9f : 1.0f;
            ps[i].top_k = mode == 3 ? 50 : 0, ps[i].n_logprobs = i % 3 ? 0 : 5;
        }
        if (mode == 6) { /* a top-k beyond the merge's candidates: the fallback's count select, then top-p */
            ps[i].temperature = i % 2 ? 0.7f : 1.0f, ps[i].top_k = 5000 + 37 * i, ps[i].top_p = i % 3 ? 1.0f : 0.95f;
            ps[i].n_logprobs = 0;
        }
        if (i % 5 == 2) { /* mask the argmax (EOS under min_tokens) */
            int32_t best = 0;
            for (int32_t v = 1; v < V; v++)
                if (lg[i * ld + v] > lg[i * ld + best]) best = v;
            ps[i].mask_token = best;
        }
    }
    const size_t nt = (size_t)rows * KERN_MAX_LOGPROBS;
    int32_t *tg = calloc((size_t)rows, 4), *tc = calloc((size_t)rows, 4), *ig = calloc(nt, 4), *ic = calloc(nt, 4);
    float *lpg = calloc((size_t)rows, 4), *lpc = calloc((size_t)rows, 4), *tlg = calloc(nt, 4), *tlc = calloc(nt, 4);
    void *dl = cc_dev(env, h ? (const void *)h : lg, (h ? 2 : 4) * (size_t)n),
         *dp = cc_dev(env, ps, sizeof *ps * (size_t)rows), *dt_ = cc_dev(env, NULL, 4 * (size_t)rows),
         *dlp = cc_dev(env, NULL, 4 * (size_t)rows), *di = cc_dev(env, NULL, 4 * nt), *dtl = cc_dev(env, NULL, 4 * nt);
    cc_ok(r, K->sample(CX, dl, dt, ld, rows, V, dp, dt_, dlp, di, dtl), "sample");
    cc_get(env, tg, dt_, 4 * (size_t)rows), cc_get(env, lpg, dlp, 4 * (size_t)rows);
    cc_get(env, ig, di, 4 * nt), cc_get(env, tlg, dtl, 4 * nt);
    const uint32_t f = cc_fault_take(env), want_f = c->p[2] == 2 ? KERN_FAULT_LOGITS : 0;
    cc_check(r, f == want_f, "fault word 0x%x == 0x%x", f, want_f);
    if (h) { /* the fp32 cast on the GPU: bit-identical to the bf16 read */
        int32_t *t2 = calloc((size_t)rows, 4), *i2 = calloc(nt, 4);
        float *l2 = calloc((size_t)rows, 4), *p2 = calloc(nt, 4);
        void *df = cc_dev(env, lg, 4 * (size_t)n), *dt2 = cc_dev(env, NULL, 4 * (size_t)rows),
             *dl2 = cc_dev(env, NULL, 4 * (size_t)rows), *di2 = cc_dev(env, NULL, 4 * nt),
             *dp2 = cc_dev(env, NULL, 4 * nt);
        cc_ok(r, K->sample(CX, df, MS_DT_F32, ld, rows, V, dp, dt2, dl2, di2, dp2), "sample f32 cast");
        cc_get(env, t2, dt2, 4 * (size_t)rows), cc_get(env, l2, dl2, 4 * (size_t)rows);
        cc_get(env, i2, di2, 4 * nt), cc_get(env, p2, dp2, 4 * nt);
        cc_fault_take(env);
        cc_cmp_bytes(r, "bf16 vs f32-cast tokens", tg, t2, 4 * (size_t)rows);
        cc_cmp_bytes(r, "bf16 vs f32-cast logprobs", lpg, l2, 4 * (size_t)rows);
        cc_cmp_bytes(r, "bf16 vs f32-cast top ids", ig, i2, 4 * nt);
        cc_cmp_bytes(r, "bf16 vs f32-cast top logprobs", tlg, p2, 4 * nt);
        free(t2), free(i2), free(l2), free(p2);
    }
    cc_ok(r, kern_cpu_ops.sample(NULL, lg, MS_DT_F32, ld, rows, V, ps, tc, lpc, ic, tlc), "cpu sample");
    int32_t bad_tok = 0, bad_ids = 0, first_bad = -1;
    double worst_lp = 0;
    for (int32_t i = 0; i < rows; i++) {
        if (tg[i] != tc[i] && !bad_tok++) first_bad = i;
        worst_lp = fmax(worst_lp, fabs((double)lpg[i] - lpc[i]));
        for (int32_t j = 0; tc[i] >= 0 && j < ps[i].n_logprobs; j++) { /* a faulted row's top-N: untouched */
            bad_ids += ig[i * KERN_MAX_LOGPROBS + j] != ic[i * KERN_MAX_LOGPROBS + j];
            worst_lp = fmax(worst_lp, fabs((double)tlg[i * KERN_MAX_LOGPROBS + j] - tlc[i * KERN_MAX_LOGPROBS + j]));
        }
    }
    if (bad_tok)
        cc_check(r, 0, "tokens: %d/%d differ (first row %d: gpu %d cpu %d)", bad_tok, rows, first_bad, tg[first_bad],
                 tc[first_bad]);
    if (bad_ids) cc_check(r, 0, "top-N ids: %d differ", bad_ids);
    cc_check(r, worst_lp <= c->tol, "logprobs max |d| %.3g <= %.3g; tokens and top-N ids identical over %d rows",
             worst_lp, c->tol, rows);
    free(lg), free(h), free(ps), free(tg), free(tc), free(ig), free(ic), free(lpg), free(lpc), free(tlg), free(tlc);
}
