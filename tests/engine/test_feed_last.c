/* test_feed_last.c — PROTO_SEQ_FEED_LAST and the launch/wait halves of a step (worker/engine.h).
 *
 * Two engines over the same tiny checkpoint decode the same two sequences (one greedy, one seeded
 * sampling with presence/frequency penalties, whose counts must see the fed token): engine A serially,
 * every decode carrying the token A sampled the step before; engine B the way the overlap scheduler
 * drives a rank: launch step k+1 (its decodes FEED_LAST with a placeholder token 0) before waiting for
 * step k. Every step's tokens and logprobs must be equal, bit for bit. Then: a third launch while two
 * are held is refused and launches nothing; a FEED_LAST entry of more than one token fails alone
 * (PROTO_FAULT_PLAN);
 * a FEED_LAST after a step that failed (an injected data fault) runs (the token is 0: rank 0 drops that
 * row's result). argv[1] = moeserve-mkmodel. */
#include "tests/engine/etest.h"

enum { BS = 4, NGEN = 9 };

typedef struct {
    int slot, pos, n;
    const int32_t *tok;
    uint32_t flags;
} fl_seq_t;

static const int32_t g_blocks[2][4] = {{0, 1, 2, 3}, {4, 5, 6, 7}};

static const proto_plan_t *fl_plan(proto_planbuf_t *pb, uint32_t step, const fl_seq_t *s, int n)
{
    proto_planbuf_reset(pb);
    for (int i = 0; i < n; i++) {
        proto_seq_t q = {.slot = s[i].slot, .dp_rank = -1, .pos = s[i].pos, .flags = PROTO_SEQ_SAMPLE | s[i].flags,
                         .top_p = 1.0f, .n_logprobs = 2, .n_prompt = s[i].slot ? 3 : 5};
        if (s[i].slot == 1) { /* seeded sampling with penalties: the fed tokens count */
            q.temperature = 0.8f, q.seed = 77, q.presence_penalty = 0.5f, q.frequency_penalty = 0.3f;
            q.top_p = 0.9f;
        }
        if (proto_planbuf_add(pb, &q, s[i].tok, s[i].n, g_blocks[s[i].slot], et_blocks_for(s[i].pos + s[i].n, BS)) !=
            MS_OK)
            return NULL;
    }
    const proto_plan_t *p = NULL;
    return proto_planbuf_finish(pb, step, &p) == MS_OK ? p : NULL;
}

static int same(const proto_result_t *a, const proto_result_t *b)
{
    return a->slot == b->slot && a->token == b->token && a->logprob == b->logprob && a->n_top == b->n_top &&
           !memcmp(a->top_ids, b->top_ids, sizeof(int32_t) * (size_t)a->n_top) &&
           !memcmp(a->top_logprobs, b->top_logprobs, sizeof(float) * (size_t)a->n_top);
}

int main(int argc, char **argv)
{
    if (argc < 2) return 2;
    const char *dir = et_model(argv[1], "--preset tiny --dtype bf16 --seed 5");
    T_CHECK(dir != NULL);
    if (!dir) return t_done();
    comm_t *ca, *cb;
    engine_t *A = et_engine(dir, ENGINE_MLA_AUTO, 8, BS, 2, 16, &ca), *B = et_engine(dir, ENGINE_MLA_AUTO, 8, BS, 2, 16, &cb);
    T_CHECK(A && B);
    if (!A || !B) return t_done();
    const int32_t p0[5] = {3, 17, 250, 9, 41}, p1[3] = {7, 7, 300};
    const int32_t zero = 0;
    int32_t last[2];
    proto_planbuf_t pa, pbuf;
    proto_planbuf_init(&pa), proto_planbuf_init(&pbuf);
    proto_result_t ra[NGEN + 1][2], rb[NGEN + 1][2];

    /* A: serial, explicit tokens */
    fl_seq_t pre[2] = {{0, 0, 5, p0, PROTO_SEQ_START}, {1, 0, 3, p1, PROTO_SEQ_START}};
    T_CHECK(engine_step(A, fl_plan(&pa, 0, pre, 2), ra[0]) == MS_OK);
    for (int k = 1; k <= NGEN; k++) {
        last[0] = ra[k - 1][0].token, last[1] = ra[k - 1][1].token;
        fl_seq_t d[2] = {{0, 4 + k, 1, &last[0], 0}, {1, 2 + k, 1, &last[1], 0}};
        T_CHECK(engine_step(A, fl_plan(&pa, (uint32_t)k, d, 2), ra[k]) == MS_OK);
    }
    /* B: launch k+1 (FEED_LAST) before waiting for k */
    T_CHECK(engine_step_launch(B, fl_plan(&pbuf, 0, pre, 2)) == MS_OK);
    for (int k = 1; k <= NGEN; k++) {
        fl_seq_t d[2] = {{0, 4 + k, 1, &zero, PROTO_SEQ_FEED_LAST}, {1, 2 + k, 1, &zero, PROTO_SEQ_FEED_LAST}};
        T_CHECK(engine_step_launch(B, fl_plan(&pbuf, (uint32_t)k, d, 2)) == MS_OK); /* pbuf reused: B copied it */
        if (k == 1) { /* two held: a third is refused, nothing launched */
            T_CHECK(engine_step_launch(B, fl_plan(&pbuf, 99, d, 2)) == MS_ERR_INTERNAL);
        }
        T_CHECK(engine_step_wait(B, rb[k - 1]) == MS_OK);
    }
    T_CHECK(engine_step_wait(B, rb[NGEN]) == MS_OK);
    T_CHECK(engine_step_wait(B, rb[0]) == MS_ERR_INTERNAL); /* nothing left in flight */
    int bad = 0;
    for (int k = 0; k <= NGEN; k++)
        for (int i = 0; i < 2; i++)
            if (!same(&ra[k][i], &rb[k][i])) {
                if (!bad) fprintf(stderr, "step %d seq %d: serial token %d (lp %g), FEED_LAST %d (lp %g)\n", k, i,
                                  ra[k][i].token, ra[k][i].logprob, rb[k][i].token, rb[k][i].logprob);
                bad++;
            }
    T_CHECK_MSG(bad == 0, "%d results differ between explicit tokens and FEED_LAST", bad);
    int changed = 0; /* the sampled sequence moves: FEED_LAST feeds real tokens, not the placeholder */
    for (int k = 1; k <= NGEN; k++) changed += rb[k][1].token != rb[k - 1][1].token;
    T_CHECK(changed > 0);

    /* a FEED_LAST entry of two tokens is refused before anything runs: it alone (PROTO_FAULT_PLAN) */
    const int32_t two[2] = {0, 0};
    fl_seq_t wrong = {0, 5 + NGEN, 2, two, PROTO_SEQ_FEED_LAST};
    proto_result_t r[2];
    T_CHECK(engine_step(B, fl_plan(&pbuf, 50, &wrong, 1), r) == MS_OK && r[0].fault == PROTO_FAULT_PLAN &&
            r[0].token == -1);
    /* after a failed step the slot has no token: FEED_LAST feeds 0 and the step still runs */
    engine_inject_fault(B, ENGINE_FAULT_INJECTED);
    fl_seq_t one = {0, 5 + NGEN, 1, &zero, PROTO_SEQ_FEED_LAST};
    T_CHECK(engine_step(B, fl_plan(&pbuf, 51, &one, 1), r) == MS_ERR_DATA);
    one.pos++;
    T_CHECK(engine_step(B, fl_plan(&pbuf, 52, &one, 1), r) == MS_OK && r[0].token >= 0);

    proto_planbuf_free(&pa), proto_planbuf_free(&pbuf);
    engine_destroy(A), engine_destroy(B);
    comm_destroy(ca), comm_destroy(cb);
    return t_done();
}
