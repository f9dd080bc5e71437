/* test_spec_stat.c — MTP verification under sampling keeps the target
 * distribution (issue 13 item 2), tested statistically on the tiny model's
 * 512-token vocabulary. argv[1] = path of moeserve-mkmodel.
 *
 * Why it should: a VERIFY row is sampled with the knobs and the random stream
 * (seed, position) a plain decode of that position uses, and a draft is kept
 * while it equals the sample. For a draft d (MTP drafts are deterministic:
 * q = one-hot d), that is rejection sampling: accept with probability
 * min(1, p(d)/q(d)) = p(d); on rejection the token is the sample given it is
 * not d, i.e. drawn from norm(max(0, p - q)). So over many seeds:
 *  - the step's first token is distributed as p0 = softmax(logits0 / T);
 *  - d is accepted with probability p0(d);
 *  - after an accepted d, the next token is distributed as p1 = softmax(logits1 / T),
 *    logits1 being the logits after d.
 * The reference logits come from a second engine without MTP decoding the
 * same tokens (engine_logits: what its sampler saw). Drafts are forced through
 * the plan (the VERIFY entry's fed tokens): the two most likely tokens and
 * one near p = 0.01 (here p0 ~0.33, ~0.015, ~0.01 at T 0.4). Each histogram
 * is a chi-square test against its expected counts (cells under 5 expected
 * merged), turned into a z-score by
 * Wilson-Hilferty; the bound z < 5 (p ~ 3e-7) with fixed seeds makes the test
 * deterministic. Its power is shown on the same counts: the distribution a
 * biased verifier would give (on rejection, resampling from p with d allowed
 * again) must be rejected at z > 5 for the most likely draft.
 *
 * Also: what the MTP engine allocated (weights, buffers and the module's
 * cache included) is what worker/sizing.h predicts from config.json. */
#include <math.h>

#include "etest.h"
#include "worker/sizing.h"

enum { S = 16, ROUNDS = 500, NP = 6, BS = 4 };
static const int32_t PROMPT[NP] = {1, 57, 300, 12, 401, 88};
static float TEMP = 0.4f; /* the tiny model's logits are flat but for one token: its p0 is ~0.33 here */

static ms_status_t step_plan(engine_t *e, const proto_seq_t *q, const int32_t *const *toks, const int *n,
                             const int32_t *const *blocks, int nb, int count, proto_result_t *r)
{
    proto_planbuf_t pb;
    proto_planbuf_init(&pb);
    const proto_plan_t *plan = NULL;
    ms_status_t st = MS_OK;
    for (int i = 0; i < count && st == MS_OK; i++) st = proto_planbuf_add(&pb, &q[i], toks[i], n[i], blocks[i], nb);
    if (st == MS_OK) st = proto_planbuf_finish(&pb, 0, &plan);
    if (st == MS_OK) st = engine_step(e, plan, r);
    proto_planbuf_free(&pb);
    return st;
}

static engine_t *make_engine(const char *dir, int drafts, comm_t **c)
{
    engine_opts_t o = {.kv_blocks = 64, .block_size = BS, .max_batch = S, .max_tokens_per_step = 128,
                       .backend = "cpu", .mla = ENGINE_MLA_ABSORBED, .mtp_drafts = drafts};
    par_t p = par_single();
    engine_t *e = NULL;
    if (comm_local_create(&kern_cpu_ops, c) != MS_OK) return NULL;
    if (engine_create(dir, &p, &o, *c, &e) != MS_OK) {
        fprintf(stderr, "engine_create: %s\n", ms_error_last());
        return NULL;
    }
    return e;
}

/* softmax(l / T) in double */
static void softmax_t(const float *l, int V, double T, double *p)
{
    double mx = -INFINITY, sum = 0;
    for (int v = 0; v < V; v++) mx = l[v] > mx ? l[v] : mx;
    for (int v = 0; v < V; v++) sum += p[v] = exp((l[v] - mx) / T);
    for (int v = 0; v < V; v++) p[v] /= sum;
}

/* Chi-square of counts against n * p, cells of expected count < 5 merged into one; the Wilson-Hilferty
 * z-score of the statistic (about N(0,1) when the counts follow p). */
static double chi2_z(const long *cnt, const double *p, int V, long n, int *dof)
{
    double x2 = 0, rest_e = 0, rest_o = 0;
    int k = 0;
    for (int v = 0; v < V; v++) {
        const double ex = p[v] * (double)n;
        if (ex < 5) {
            rest_e += ex, rest_o += (double)cnt[v];
            continue;
        }
        x2 += (cnt[v] - ex) * (cnt[v] - ex) / ex, k++;
    }
    if (rest_e >= 5) x2 += (rest_o - rest_e) * (rest_o - rest_e) / rest_e, k++;
    else if (rest_o > 5 + 10 * rest_e) x2 += 1e9; /* mass where p has (almost) none */
    const int df = k - 1 > 0 ? k - 1 : 1;
    *dof = df;
    const double a = 2.0 / (9.0 * df);
    return (cbrt(x2 / df) - (1 - a)) / sqrt(a);
}

/* Reference logits of the engine without MTP: after PROMPT, and after PROMPT + d. */
static int ref_logits(engine_t *ref, int32_t d, float *l0, float *l1)
{
    static const int32_t blk[2] = {0, 1};
    const int32_t *b[1] = {blk};
    proto_result_t r;
    proto_seq_t pre = {.slot = 0, .dp_rank = -1, .pos = 0, .flags = PROTO_SEQ_START, .top_p = 1, .n_logprobs = -1,
                       .next_token = -1};
    const int32_t *t[1] = {PROMPT};
    int n = NP - 1;
    if (step_plan(ref, &pre, t, &n, b, 2, 1, &r) != MS_OK) return -1;
    proto_seq_t dec = {.slot = 0, .dp_rank = -1, .pos = NP - 1, .flags = PROTO_SEQ_SAMPLE, .top_p = 1,
                       .n_logprobs = -1, .next_token = -1};
    t[0] = PROMPT + NP - 1, n = 1;
    if (step_plan(ref, &dec, t, &n, b, 2, 1, &r) != MS_OK || engine_logits(ref, 0, l0) != MS_OK) return -1;
    dec.pos = NP, t[0] = &d;
    if (step_plan(ref, &dec, t, &n, b, 2, 1, &r) != MS_OK || engine_logits(ref, 0, l1) != MS_OK) return -1;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_spec_stat MKMODEL\n");
        return 2;
    }
    const char *dir = et_model(argv[1], "--preset tiny --dtype bf16 --seed 5 --mtp");
    T_CHECK(dir != NULL);
    if (!dir) return t_done();
    comm_t *c1 = NULL, *c2 = NULL;
    engine_t *e = make_engine(dir, 1, &c1), *ref = make_engine(dir, 0, &c2);
    T_CHECK(e && ref);
    if (!e || !ref) return t_done();
    size_t w, a, kv;
    engine_memory(e, &w, &a, &kv);
    sizing_limits_t lim = {.max_batch = S, .max_tokens = 128, .block_size = BS, .mtp_drafts = 1};
    sizing_t sz;
    par_t par = par_single();
    T_CHECK(sizing_rank(engine_config(e), &par, &lim, false, 64, 0, 0, &sz) == MS_OK);
    T_CHECK_MSG(sz.weights == w && sz.activations == a && sz.kv == kv,
                "MTP engine: sizing says weights %zu, activations %zu, KV %zu; the engine has %zu, %zu, %zu", sz.weights,
                sz.activations, sz.kv, w, a, kv);
    const int V = engine_config(e)->vocab_size;
    if (getenv("T_TEMP")) TEMP = (float)atof(getenv("T_TEMP"));
    float *l0 = malloc(sizeof(float) * (size_t)V * 2), *l1 = l0 + V;
    double *p0 = malloc(sizeof(double) * (size_t)V * 3), *p1 = p0 + V, *bias = p1 + V;
    long *h0 = calloc((size_t)V * 2, sizeof(long)), *h1 = h0 + V;
    T_CHECK(l0 && p0 && h0);
    if (!l0 || !p0 || !h0) return t_done();

    /* the drafts: the two most likely tokens, then the one nearest p = 0.01 (on a log scale) */
    T_CHECK(ref_logits(ref, 0, l0, l1) == 0);
    softmax_t(l0, V, TEMP, p0);
    int32_t drafts[3] = {0, -1, -1};
    for (int v = 0; v < V; v++) drafts[0] = p0[v] > p0[drafts[0]] ? v : drafts[0];
    const double want[3] = {1, 1, 0.01}; /* 1: the next most likely */
    for (int k = 1; k < 3; k++)
        for (int v = 0; v < V; v++) {
            if (v == drafts[0] || v == drafts[1]) continue;
            if (drafts[k] < 0 || (want[k] >= 1 ? p0[v] > p0[drafts[k]]
                                                 : fabs(log(p0[v] / want[k])) < fabs(log(p0[drafts[k]] / want[k]))))
                drafts[k] = v;
        }
    fprintf(stderr, "drafts %d %d %d at p0 %.4f %.4f %.4f (T %.2f)\n", drafts[0], drafts[1], drafts[2], p0[drafts[0]],
            p0[drafts[1]], p0[drafts[2]], TEMP);

    /* every slot holds PROMPT[0..NP-1) in its KV: rows NP-1 (the last prompt token) and NP (the draft) are
     * rewritten by each verify step */
    int32_t blk[S][2];
    const int32_t *bp[S], *tp[S];
    int nt[S];
    proto_seq_t q[S];
    proto_result_t *res = malloc(sizeof(proto_result_t) * S);
    for (int i = 0; i < S; i++) {
        blk[i][0] = 2 * i, blk[i][1] = 2 * i + 1, bp[i] = blk[i], tp[i] = PROMPT, nt[i] = NP - 1;
        q[i] = (proto_seq_t){.slot = i, .dp_rank = -1, .flags = PROTO_SEQ_START, .top_p = 1, .n_logprobs = -1,
                             .next_token = -1};
    }
    T_CHECK(step_plan(e, q, tp, nt, bp, 2, S, res) == MS_OK);

    for (int k = 0; k < 3; k++) {
        const int32_t d = drafts[k];
        T_CHECK(ref_logits(ref, d, l0, l1) == 0);
        softmax_t(l0, V, TEMP, p0);
        softmax_t(l1, V, TEMP, p1);
        memset(h0, 0, sizeof(long) * (size_t)V * 2);
        int32_t fed[2] = {PROMPT[NP - 1], d};
        long n = 0, acc = 0;
        for (int r = 0; r < ROUNDS; r++) {
            for (int i = 0; i < S; i++) {
                q[i] = (proto_seq_t){.slot = i, .dp_rank = -1, .pos = NP - 1,
                                     .flags = PROTO_SEQ_SAMPLE | PROTO_SEQ_VERIFY, .temperature = TEMP, .top_p = 1,
                                     .n_logprobs = -1, .next_token = -1,
                                     .seed = 7919u * (uint64_t)(k + 1) + (uint64_t)(r * S + i)};
                tp[i] = fed, nt[i] = 2;
            }
            ms_status_t st = step_plan(e, q, tp, nt, bp, 2, S, res);
            T_CHECK_MSG(st == MS_OK, "verify step: %s", ms_error_last());
            if (st != MS_OK) break;
            for (int i = 0; i < S; i++) {
                const proto_result_t *x = &res[i];
                T_CHECK(x->n_accepted == 0 || (x->n_accepted == 1 && x->accepted[0] == d));
                T_CHECK(x->token >= 0 && x->token < V);
                if (x->token < 0 || x->token >= V) continue;
                n++;
                if (x->n_accepted) acc++, h0[d]++, h1[x->token]++;
                else {
                    T_CHECK_MSG(x->token != d, "a rejected draft %d came back as the token", d);
                    h0[x->token]++;
                }
            }
        }
        int df0 = 0, df1 = 0;
        const double z0 = chi2_z(h0, p0, V, n, &df0);
        const double za = (acc - n * p0[d]) / sqrt(n * p0[d] * (1 - p0[d]));
        const double z1 = acc >= 200 ? chi2_z(h1, p1, V, acc, &df1) : 0;
        fprintf(stderr, "draft %d (p0 %.4f): %ld trials, accepted %ld (expected %.1f, z %.2f); first token chi2 z %.2f "
                        "(%d dof); after acceptance chi2 z %.2f (%d dof)\n",
                d, p0[d], n, acc, n * p0[d], za, z0, df0, z1, df1);
        T_CHECK_MSG(fabs(za) < 5, "draft %d: acceptance %ld of %ld, expected %.1f", d, acc, n, n * p0[d]);
        T_CHECK_MSG(z0 < 5, "draft %d: first tokens do not follow the target distribution (z %.2f)", d, z0);
        T_CHECK_MSG(z1 < 5, "draft %d: tokens after an accepted draft do not follow p1 (z %.2f)", d, z1);
        if (k == 0) {
            /* power: a verifier that resampled from p on rejection (d allowed again) would give d the mass
             * p(d)(2 - p(d)) and every other v p(v)(1 - p(d)); the counts must reject that */
            for (int v = 0; v < V; v++) bias[v] = v == d ? p0[d] * (2 - p0[d]) : p0[v] * (1 - p0[d]);
            int dfb = 0;
            const double zb = chi2_z(h0, bias, V, n, &dfb);
            fprintf(stderr, "power: the biased verifier's distribution gets z %.2f\n", zb);
            T_CHECK_MSG(zb > 5, "the test cannot tell the biased verifier (z %.2f)", zb);
        }
    }
    free(res), free(h0), free(p0), free(l0);
    engine_destroy(e), engine_destroy(ref);
    comm_destroy(c1), comm_destroy(c2);
    return t_done();
}
