/* test_prompt_lp.c — prompt logprobs (PROTO_SEQ_PROMPT_LP, worker/prompt_lp.c)
 * over the tiny synthetic checkpoint. argv[1] = path of moeserve-mkmodel.
 *
 * A 13-token prompt prefilled in chunks of 5 (5+5+3) with PROTO_SEQ_PROMPT_LP
 * on an engine of max_batch 2 (so lm_head runs in sub-batches of 2 rows)
 * returns, for every position p >= 1, the logprob of prompt token p equal to
 * log_softmax (double) of the logits a plain prefill of tokens [0, p) samples
 * from (engine_logits), within 1e-4; top-N ids are the N largest logits in
 * descending order (ties aside) with matching logprobs; the last chunk
 * (next_token -1) still samples its token. A bad next_token is
 * MS_ERR_INVALID and the engine keeps working. */
#include <math.h>

#include "etest.h"

static const int32_t PROMPT[13] = {1, 400, 221, 344, 391, 52, 17, 250, 3, 99, 128, 301, 77};
enum { NP = 13, CHUNK = 5, NTOP = 3 };

static ms_status_t step_one(engine_t *e, const proto_seq_t *q, const int32_t *toks, int n, const int32_t *blocks,
                            int n_blocks, proto_result_t *r)
{
    proto_planbuf_t pb;
    proto_planbuf_init(&pb);
    const proto_plan_t *plan = NULL;
    ms_status_t st = proto_planbuf_add(&pb, q, toks, n, blocks, n_blocks);
    if (st == MS_OK) st = proto_planbuf_finish(&pb, 0, &plan);
    if (st == MS_OK) st = engine_step(e, plan, r);
    proto_planbuf_free(&pb);
    return st;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_prompt_lp MKMODEL\n");
        return 2;
    }
    const char *tiny = et_model(argv[1], "--preset tiny --dtype bf16 --seed 3");
    T_CHECK(tiny != NULL);
    if (!tiny) return t_done();
    comm_t *c1, *c2;
    engine_t *e = et_engine(tiny, ENGINE_MLA_NAIVE, 64, 4, 2, 32, &c1);
    engine_t *ref = et_engine(tiny, ENGINE_MLA_NAIVE, 64, 4, 2, 32, &c2);
    T_CHECK(e && ref);
    if (!e || !ref) return t_done();
    const int V = engine_config(e)->vocab_size;
    const int32_t blocks[4] = {7, 2, 11, 5}, rblocks[4] = {20, 30, 21, 40};
    proto_plp_t got[NP];
    int n_got = 0;
    proto_result_t r;
    for (int pos = 0; pos < NP; pos += CHUNK) {
        const int m = NP - pos < CHUNK ? NP - pos : CHUNK, last = pos + m == NP;
        proto_seq_t q = {.slot = 0, .dp_rank = -1, .pos = pos, .flags = PROTO_SEQ_PROMPT_LP | (last ? PROTO_SEQ_SAMPLE : 0u),
                         .top_p = 1, .n_logprobs = NTOP, .next_token = last ? -1 : PROMPT[pos + m]};
        ms_status_t st = step_one(e, &q, PROMPT + pos, m, blocks, et_blocks_for(pos + m, 4), &r);
        T_CHECK_MSG(st == MS_OK, "chunk at %d: %s", pos, ms_error_last());
        int n = 0;
        const proto_plp_t *p = engine_prompt_lp(e, 0, &n);
        T_CHECK_MSG(n == m - last, "chunk at %d: %d entries", pos, n);
        for (int i = 0; i < n && n_got < NP; i++) got[n_got++] = p[i];
        if (last) T_CHECK(r.token >= 0 && r.token < V);
    }
    T_CHECK(n_got == NP - 1);
    float *lg = malloc(sizeof(float) * (size_t)V);
    double worst = 0;
    for (int p = 1; p <= n_got && lg; p++) {
        /* reference: the logits after a plain prefill of PROMPT[0..p) */
        proto_seq_t q = {.slot = 1, .dp_rank = -1, .flags = PROTO_SEQ_SAMPLE, .top_p = 1, .n_logprobs = -1,
                         .next_token = -1};
        ms_status_t st = step_one(ref, &q, PROMPT, p, rblocks, et_blocks_for(p, 4), &r);
        T_CHECK(st == MS_OK && engine_logits(ref, 0, lg) == MS_OK);
        double mx = -INFINITY, sum = 0;
        for (int v = 0; v < V; v++) mx = lg[v] > mx ? lg[v] : mx;
        for (int v = 0; v < V; v++) sum += exp(lg[v] - mx);
        const double lse = mx + log(sum);
        const proto_plp_t *g = &got[p - 1];
        T_CHECK(g->token == PROMPT[p]);
        double d = fabs(g->logprob - (lg[PROMPT[p]] - lse));
        if (d > worst) worst = d;
        T_CHECK_MSG(d <= 1e-4, "position %d: logprob %g, reference %g", p, g->logprob, lg[PROMPT[p]] - lse);
        T_CHECK(g->n_top == NTOP);
        for (int j = 0; j < g->n_top; j++) {
            const int id = g->top_ids[j];
            T_CHECK(id >= 0 && id < V);
            if (id < 0 || id >= V) break;
            T_CHECK_MSG(fabs(g->top_logprobs[j] - (lg[id] - lse)) <= 1e-4, "position %d top %d", p, j);
            if (j > 0) T_CHECK(g->top_logprobs[j] <= g->top_logprobs[j - 1]);
            int above = 0; /* logits strictly above this one: at most j of them */
            for (int v = 0; v < V; v++) above += lg[v] > lg[id];
            T_CHECK_MSG(above <= j, "position %d top %d: %d logits above it", p, j, above);
        }
    }
    fprintf(stderr, "prompt logprobs: %d positions, max |diff| vs log_softmax of the reference logits %g\n", n_got,
            worst);
    free(lg);
    /* a next token outside the vocabulary: the entry is refused, and the engine goes on */
    proto_seq_t bad = {.slot = 0, .dp_rank = -1, .flags = PROTO_SEQ_PROMPT_LP, .top_p = 1, .n_logprobs = 1,
                       .next_token = V};
    T_CHECK(step_one(e, &bad, PROMPT, 4, blocks, 1, &r) == MS_OK && r.fault == PROTO_FAULT_PLAN);
    {
        int k = 0;
        const proto_plp_t *pl = engine_prompt_lp(e, 0, &k);
        T_CHECK(k == 4 && pl && pl[0].token == -1); /* 3 rows of the chunk + the next token: placeholders */
    }
    proto_seq_t ok = {.slot = 0, .dp_rank = -1, .flags = PROTO_SEQ_PROMPT_LP | PROTO_SEQ_SAMPLE, .top_p = 1,
                      .n_logprobs = 0, .next_token = -1};
    T_CHECK(step_one(e, &ok, PROMPT, 4, blocks, 1, &r) == MS_OK && r.token >= 0);
    /* the bad entry beside the good one: its rows are placeholders (token -1), the good one's unchanged */
    int n_ok = 0, n_bad = 0;
    const proto_plp_t *po = engine_prompt_lp(e, 0, &n_ok);
    proto_plp_t want[8];
    T_CHECK(n_ok == 3);
    memcpy(want, po, sizeof *po * (size_t)(n_ok < 8 ? n_ok : 8));
    {
        proto_planbuf_t pb;
        proto_planbuf_init(&pb);
        const proto_plan_t *plan = NULL;
        proto_result_t r2[2];
        bad.slot = 1;
        T_CHECK(proto_planbuf_add(&pb, &bad, PROMPT, 4, rblocks, 1) == MS_OK &&
                proto_planbuf_add(&pb, &ok, PROMPT, 4, blocks, 1) == MS_OK && proto_planbuf_finish(&pb, 0, &plan) == MS_OK);
        T_CHECK(plan && engine_step(e, plan, r2) == MS_OK && r2[0].fault == PROTO_FAULT_PLAN && r2[1].fault == 0 &&
                r2[1].token == r.token);
        const proto_plp_t *pb0 = engine_prompt_lp(e, 0, &n_bad), *pb1 = engine_prompt_lp(e, 1, &n_ok);
        T_CHECK(n_bad == 4 && n_ok == 3);
        for (int t = 0; t < n_bad; t++) T_CHECK(pb0[t].token == -1 && pb0[t].n_top == 0);
        for (int t = 0; t < n_ok && t < 8; t++)
            T_CHECK(pb1[t].token == want[t].token && pb1[t].logprob == want[t].logprob);
        proto_planbuf_free(&pb);
    }
    engine_destroy(e), engine_destroy(ref);
    comm_destroy(c1), comm_destroy(c2);
    return t_done();
}
