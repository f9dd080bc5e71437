/* test_penalty.c — sampling controls through the engine (worker/penalty.c +
 * logits_adjust) against a reference on the CPU logits: two engines over the
 * same tiny checkpoint are fed the same tokens step by step, one neutral (its
 * logits are the raw ones) and one with presence, frequency and repetition
 * penalties and a logit_bias; the prompt goes in two chunks (the first
 * samples nothing, so its list writes wait for no sampled row). At every
 * greedy step the penalized engine's logits equal vLLM's formulas applied to
 * the raw logits with counts taken from the whole sequence, and its token is
 * their argmax. A slot reused by a neutral request starts clean (START), a
 * penalized entry that does not start at position 0 is refused. argv[1] =
 * moeserve-mkmodel. */
#include "tests/engine/etest.h"

#include <math.h>

enum { BS = 4, NP = 7, NGEN = 12, MAXLEN = NP + NGEN + 1 };

static ms_status_t step1(engine_t *e, const proto_seq_t *tmpl, const int32_t *toks, int pos, int n, bool sample,
                         bool start, const proto_bias_t *bias, int nb, proto_result_t *res)
{
    static int32_t blocks[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    proto_planbuf_t pb;
    proto_planbuf_init(&pb);
    proto_seq_t q = *tmpl;
    q.pos = pos;
    q.flags = (sample ? PROTO_SEQ_SAMPLE : 0u) | (start ? PROTO_SEQ_START : 0u);
    const proto_plan_t *plan;
    ms_status_t st = proto_planbuf_add(&pb, &q, toks + pos, n, blocks, et_blocks_for(pos + n, BS));
    if (st == MS_OK && start) st = proto_planbuf_add_bias(&pb, bias, nb);
    if (st == MS_OK) st = proto_planbuf_finish(&pb, 0, &plan);
    if (st == MS_OK) st = engine_step(e, plan, res);
    proto_planbuf_free(&pb);
    return st;
}

int main(int argc, char **argv)
{
    if (argc < 2) return 2;
    const char *dir = et_model(argv[1], "--preset tiny --dtype bf16 --seed 3");
    T_CHECK(dir != NULL);
    if (!dir) return t_done();
    comm_t *c1, *c2;
    engine_t *raw = et_engine(dir, ENGINE_MLA_AUTO, 16, BS, 2, 8, &c1), *pen = et_engine(dir, ENGINE_MLA_AUTO, 16, BS, 2, 8, &c2);
    T_CHECK(raw && pen);
    if (!raw || !pen) return t_done();
    const int V = engine_config(raw)->vocab_size;
    int32_t toks[MAXLEN] = {3, 17, 17, 250, 3, 99, 17};
    const proto_bias_t bias[2] = {{.token = 5, .bias = 4.0f}, {.token = 17, .bias = -1.5f}};
    const proto_seq_t neutral = {.slot = 1, .dp_rank = -1, .top_p = 1.0f, .n_logprobs = 0};
    proto_seq_t pq = neutral;
    pq.presence_penalty = 0.6f, pq.frequency_penalty = 0.4f, pq.repetition_penalty = 1.5f, pq.n_prompt = NP;
    float *lr = malloc(sizeof(float) * V), *lp = malloc(sizeof(float) * V), *ref = malloc(sizeof(float) * V);
    int *cnt = calloc((size_t)V, sizeof *cnt);
    unsigned char *inp = calloc((size_t)V, 1);
    proto_result_t r1, r2;
    /* prefill in two chunks: 4 tokens (no sample), then 3 (sample) */
    T_CHECK(step1(raw, &neutral, toks, 0, 4, false, true, NULL, 0, &r1) == MS_OK);
    T_CHECK(step1(pen, &pq, toks, 0, 4, false, true, bias, 2, &r2) == MS_OK);
    int n = 4;
    double worst = 0;
    int same_tok = 0, differs_from_raw = 0;
    for (int it = 0; it < NGEN; it++) {
        int feed = it == 0 ? NP - 4 : 1;
        T_CHECK(step1(raw, &neutral, toks, n, feed, true, false, NULL, 0, &r1) == MS_OK);
        T_CHECK(step1(pen, &pq, toks, n, feed, true, false, NULL, 0, &r2) == MS_OK);
        n += feed;
        T_CHECK(engine_logits(raw, 0, lr) == MS_OK && engine_logits(pen, 0, lp) == MS_OK);
        /* the reference: dense counts over the whole sequence so far, vLLM's order */
        memset(cnt, 0, sizeof *cnt * (size_t)V), memset(inp, 0, (size_t)V);
        for (int i = 0; i < n; i++) (i < NP ? (void)(inp[toks[i]] = 1) : (void)cnt[toks[i]]++);
        memcpy(ref, lr, sizeof(float) * V);
        for (int b = 0; b < 2; b++) ref[bias[b].token] += bias[b].bias;
        int best = 0;
        for (int t = 0; t < V; t++) {
            if (inp[t] || cnt[t]) ref[t] = ref[t] > 0 ? ref[t] / 1.5f : ref[t] * 1.5f;
            ref[t] -= 0.4f * (float)cnt[t] + 0.6f * (cnt[t] > 0 ? 1.0f : 0.0f);
            double d = fabs(ref[t] - lp[t]);
            if (!(d <= worst)) worst = d;
            if (ref[t] > ref[best]) best = t;
        }
        same_tok += r2.token == best;
        differs_from_raw += r2.token != r1.token;
        toks[n] = r2.token; /* both engines continue with the penalized run's token */
    }
    T_CHECK(worst < 1e-4);
    T_CHECK(same_tok == NGEN);
    T_CHECK(differs_from_raw > 0); /* the penalties changed something */
    if (worst >= 1e-4 || same_tok != NGEN) fprintf(stderr, "worst %g, %d/%d tokens agree\n", worst, same_tok, NGEN);

    /* the slot reused by a neutral request: logits are the raw ones again */
    T_CHECK(step1(raw, &neutral, toks, 0, NP, true, true, NULL, 0, &r1) == MS_OK);
    T_CHECK(step1(pen, &neutral, toks, 0, NP, true, true, NULL, 0, &r2) == MS_OK);
    T_CHECK(engine_logits(raw, 0, lr) == MS_OK && engine_logits(pen, 0, lp) == MS_OK);
    T_CHECK(et_maxdiff(lr, lp, V) == 0 && r1.token == r2.token);
    /* a penalized START past position 0 cannot be counted: that entry is refused, nothing of it runs */
    T_CHECK(step1(pen, &pq, toks, 4, 3, true, true, NULL, 0, &r2) == MS_OK && r2.fault == PROTO_FAULT_PLAN &&
            r2.token == -1);
    free(lr), free(lp), free(ref), free(cnt), free(inp);
    engine_destroy(raw), engine_destroy(pen);
    comm_destroy(c1), comm_destroy(c2);
    return t_done();
}
