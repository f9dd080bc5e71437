/* test_sample.c — log_softmax and sample.
 *  - log_softmax on DeepSeek-V3's vocabulary (129280) vs double: |err| <= 1e-5·(1+|ref|).
 *  - greedy: argmax, first index on ties; mask_token excluded.
 *  - logprob and top-N under the unmodified distribution, descending, ties by id.
 *  - seeded sampling: the token is a function of (seed, position) only: the
 *    same row sampled alone or inside a batch at another row index gives the
 *    same token; different positions vary.
 *  - distribution: 20000 draws (positions 0..19999) over 4 logits match the
 *    softmax at temperature 0.7 within 0.015 absolute frequency (≈ 4.5σ);
 *    top_k 2 only ever yields the 2 best; top_p 0.5 with p = {0.6, ..} always
 *    yields the best; top_k 1 equals greedy.
 *  - a row of non-finite logits (NaN, +inf, all -inf) raises KERN_FAULT_LOGITS
 *    and gets token -1; the other rows of the call are sampled as alone.
 *  - bf16 logits (strided rows, ties, a NaN row) sample bit-identically to
 *    their exact fp32 cast: tokens, logprobs, top-N; other dtypes are refused. */
#include "kref.h"

static kern_sample_t P(float temp, float top_p, int top_k, int nlp, uint64_t seed, int64_t pos, int mask)
{
    kern_sample_t p = {.temperature = temp, .top_p = top_p, .top_k = top_k, .n_logprobs = nlp, .seed = seed,
                       .position = pos, .mask_token = mask};
    return p;
}

int main(void)
{
    kr_seed(6);
    const int V = 129280;
    float *lg = kr_f32(2 * (int64_t)V, 3.0), *ls = malloc(sizeof(float) * 2 * V);
    T_CHECK(kern_cpu_ops.log_softmax(NULL, lg, V, 2, V, ls) == MS_OK);
    kr_err_t e = {.what = "log_softmax"};
    for (int r = 0; r < 2; r++) {
        double mx = -INFINITY, s = 0;
        for (int i = 0; i < V; i++) mx = fmax(mx, lg[(long)r * V + i]);
        for (int i = 0; i < V; i++) s += exp(lg[(long)r * V + i] - mx);
        for (int i = 0; i < V; i++) {
            double ref = lg[(long)r * V + i] - mx - log(s);
            kr_err_add(&e, ls[(long)r * V + i], ref, 1e-5 * (1 + fabs(ref)));
        }
    }
    KR_ERR_CHECK(e);

    /* greedy with a tie and a mask; logprobs */
    lg[100] = 50.0f, lg[200] = 50.0f, lg[300] = 49.0f;
    int32_t tok[4], ids[4 * KERN_MAX_LOGPROBS];
    float lp[4], tl[4 * KERN_MAX_LOGPROBS];
    kern_sample_t ps[4] = {P(0, 1, 0, 3, 1, 0, -1), P(0, 1, 0, 0, 1, 0, 100)};
    T_CHECK(kern_cpu_ops.sample(NULL, lg, MS_DT_F32, V, 1, V, ps, tok, lp, ids, tl) == MS_OK);
    T_CHECK(tok[0] == 100);
    T_CHECK(ids[0] == 100 && ids[1] == 200 && ids[2] == 300);
    {
        double mx = 50, s = 0;
        for (int i = 0; i < V; i++) s += exp(lg[i] - mx);
        T_NEAR(lp[0], 50 - mx - log(s), 1e-5);
        T_NEAR(tl[2], 49 - mx - log(s), 1e-5);
    }
    T_CHECK(kern_cpu_ops.sample(NULL, lg, MS_DT_F32, V, 1, V, &ps[1], tok, lp, ids, tl) == MS_OK);
    T_CHECK(tok[0] == 200);

    /* batch independence of seeded sampling */
    kern_sample_t a = P(1.0f, 0.9f, 50, 0, 42, 17, -1);
    int32_t alone;
    float lpa;
    T_CHECK(kern_cpu_ops.sample(NULL, lg + V, MS_DT_F32, V, 1, V, &a, &alone, &lpa, ids, tl) == MS_OK);
    float *two = malloc(sizeof(float) * 2 * V);
    memcpy(two, lg, sizeof(float) * V);
    memcpy(two + V, lg + V, sizeof(float) * V);
    kern_sample_t pb[2] = {P(0.8f, 1, 0, 0, 7, 3, -1), a};
    T_CHECK(kern_cpu_ops.sample(NULL, two, MS_DT_F32, V, 2, V, pb, tok, lp, ids, tl) == MS_OK);
    T_CHECK(tok[1] == alone);
    int varied = 0;
    for (int pos = 0; pos < 20; pos++) {
        kern_sample_t b = P(1.0f, 1.0f, 0, 0, 42, pos, -1);
        int32_t t1;
        T_CHECK(kern_cpu_ops.sample(NULL, lg + V, MS_DT_F32, V, 1, V, &b, &t1, &lpa, ids, tl) == MS_OK);
        varied += t1 != alone;
    }
    T_CHECK(varied > 10);

    /* rows with nothing to draw from (a NaN, a +inf, all -inf) fault alone: token -1, the good row as alone */
    float *bad = malloc(sizeof(float) * 4 * V);
    memcpy(bad, lg + V, sizeof(float) * V);
    for (int r = 1; r < 4; r++) memcpy(bad + (size_t)r * V, lg + V, sizeof(float) * V);
    bad[V + 77] = NAN;
    bad[2 * V + 5] = INFINITY;
    for (int i = 0; i < V; i++) bad[3 * V + i] = -INFINITY;
    kern_sample_t pbad[4] = {a, P(0, 1, 0, 2, 1, 1, -1), P(0.9f, 0.9f, 40, 0, 1, 2, -1), P(1, 1, 0, 0, 1, 3, -1)};
    int32_t tb[4];
    float lb[4];
    uint32_t fw = 0;
    kern_ctx_t fcx = {.fault = &fw};
    T_CHECK(kern_cpu_ops.sample(&fcx, bad, MS_DT_F32, V, 4, V, pbad, tb, lb, ids, tl) == MS_OK);
    T_CHECK(tb[0] == alone && tb[1] == -1 && tb[2] == -1 && tb[3] == -1 && lb[1] == 0);
    T_CHECK(fw == KERN_FAULT_LOGITS);
    free(bad);

    /* distribution on 4 logits */
    float l4[4] = {1.0f, 0.5f, 0.0f, -1.0f};
    double p4[4], z = 0;
    for (int i = 0; i < 4; i++) z += p4[i] = exp(l4[i] / 0.7);
    int hist[4] = {0}, hist_k[4] = {0}, hist_p[4] = {0};
    for (int n = 0; n < 20000; n++) {
        kern_sample_t q1 = P(0.7f, 1, 0, 0, 99, n, -1), q2 = P(0.7f, 1, 2, 0, 5, n, -1), q3 = P(1.0f, 0.5f, 0, 0, 5, n, -1);
        int32_t t1, t2, t3;
        kern_cpu_ops.sample(NULL, l4, MS_DT_F32, 4, 1, 4, &q1, &t1, lp, ids, tl);
        kern_cpu_ops.sample(NULL, l4, MS_DT_F32, 4, 1, 4, &q2, &t2, lp, ids, tl);
        kern_cpu_ops.sample(NULL, (float[4]){3.0f, 2.0f, 1.0f, 0.0f}, MS_DT_F32, 4, 1, 4, &q3, &t3, lp, ids, tl);
        hist[t1]++, hist_k[t2]++, hist_p[t3]++;
    }
    for (int i = 0; i < 4; i++) T_NEAR(hist[i] / 20000.0, p4[i] / z, 0.015);
    T_CHECK(hist_k[2] == 0 && hist_k[3] == 0 && hist_k[0] > hist_k[1] && hist_k[1] > 0);
    T_CHECK(hist_p[0] == 20000);
    kern_sample_t k1 = P(2.0f, 1, 1, 0, 3, 3, -1);
    T_CHECK(kern_cpu_ops.sample(NULL, lg, MS_DT_F32, V, 1, V, &k1, tok, lp, ids, tl) == MS_OK);
    T_CHECK(tok[0] == 100);
    /* bf16 logits = their fp32 cast, bit for bit */
    {
        enum { R = 12 };
        const int64_t ld = V + 5;
        bf16_t *h = malloc(sizeof(bf16_t) * (size_t)(R * ld));
        float *f = malloc(sizeof(float) * (size_t)(R * ld));
        for (int64_t i = 0; i < R * ld; i++) h[i] = f32_to_bf16(lg[i % (2 * (int64_t)V)] * 2.0f);
        for (int i = 0; i < V; i++) h[5 * ld + i] = f32_to_bf16((float)(i % 7)); /* ties: lower id first */
        h[7 * ld + 1234] = 0x7fc0;                                               /* NaN: fault, token -1 */
        for (int64_t i = 0; i < R * ld; i++) f[i] = bf16_to_f32(h[i]);
        kern_sample_t pr[R];
        for (int r = 0; r < R; r++)
            pr[r] = P(r % 3 == 0 ? 0.0f : 0.6f + 0.2f * (r % 4), r % 4 == 1 ? 0.9f : 1.0f, r % 5 == 2 ? 40 : 0,
                      (r * 7) % 21, 77 + r, r * 3, r % 6 == 3 ? 600 : -1);
        int32_t t16[R], t32[R], i16[R * KERN_MAX_LOGPROBS], i32[R * KERN_MAX_LOGPROBS];
        float l16[R], l32[R], p16[R * KERN_MAX_LOGPROBS], p32[R * KERN_MAX_LOGPROBS];
        memset(i16, 0, sizeof i16), memset(i32, 0, sizeof i32), memset(p16, 0, sizeof p16), memset(p32, 0, sizeof p32);
        uint32_t w16 = 0, w32 = 0;
        kern_ctx_t c16 = {.fault = &w16}, c32 = {.fault = &w32};
        T_CHECK(kern_cpu_ops.sample(&c16, h, MS_DT_BF16, ld, R, V, pr, t16, l16, i16, p16) == MS_OK);
        T_CHECK(kern_cpu_ops.sample(&c32, f, MS_DT_F32, ld, R, V, pr, t32, l32, i32, p32) == MS_OK);
        T_CHECK(w16 == KERN_FAULT_LOGITS && w32 == KERN_FAULT_LOGITS && t16[7] == -1);
        T_CHECK(!memcmp(t16, t32, sizeof t16) && !memcmp(l16, l32, sizeof l16));
        T_CHECK(!memcmp(i16, i32, sizeof i16) && !memcmp(p16, p32, sizeof p16));
        int32_t am = 0; /* row 0 is greedy: the first maximum */
        for (int i = 1; i < V; i++) am = f[i] > f[am] ? i : am;
        T_CHECK(t16[0] == am);
        T_CHECK(kern_cpu_ops.sample(NULL, h, MS_DT_F8E4M3, ld, 1, V, pr, t16, l16, i16, p16) != MS_OK);
        free(h), free(f);
    }
    free(lg), free(ls), free(two);
    return t_done();
}
