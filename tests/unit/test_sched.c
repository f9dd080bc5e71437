/* test_sched.c — the continuous-batching scheduler against a simulated
 * engine. Every step is checked against the plan contract and the limits:
 * token budget per group, batch size, unique slots, block tables that cover
 * exactly the fed positions, blocks owned by one sequence at a time, decodes
 * before prefills. Workloads: chunked prefill, preemption and resume (the
 * resumed sequence produces the same tokens), FIFO fairness, DP balance,
 * random churn with cancellations (no request lost, no block leaked). */
#include "../test.h"
#include "coordinator/sched.h"

#include <stdint.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t xr(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

/* The "model": the token sampled at position pos of request id. */
static int32_t tok_at(uint64_t id, int pos) { return (int32_t)((id * 1000003u + (uint64_t)pos * 7919u) % 50000u + 1); }

typedef struct {
    req_t *r;
    sched_seq_t *q;
    int target;       /* completion tokens to generate */
    int n_gen;
    int32_t gen[512];
    bool done, cancelled;
    int preempted;    /* n_preempted seen at finish */
    int first_step;   /* step of its first sampled token */
} sim_t;

static int g_shared; /* prompts share their first g_shared tokens (prefix reuse workloads) */

static req_t *mkreq(uint64_t id, int n_prompt, int min_tokens)
{
    req_params_t p = {.temperature = 0, .top_p = 1, .logprobs = -1, .min_tokens = min_tokens};
    int32_t prompt[1024];
    for (int i = 0; i < n_prompt; i++) prompt[i] = i < g_shared ? 90000 + i : (int32_t)(id * 100 + (uint64_t)i);
    req_t *r = NULL;
    if (req_create(&p, prompt, n_prompt, &r) != MS_OK) return NULL;
    r->id = id;
    return r;
}

static int g_violations;
static uint64_t g_preemptions, g_cancels;
#define V(cond, ...)                                                  \
    do {                                                              \
        if (!(cond)) {                                                \
            if (g_violations++ < 10) {                                \
                fprintf(stderr, "violation %s:%d: ", __FILE__, __LINE__); \
                fprintf(stderr, __VA_ARGS__);                         \
                fputc('\n', stderr);                                  \
            }                                                         \
        }                                                             \
    } while (0)

/* Check one plan against the scheduler's state and the config's limits. */
static void check_plan(sched_t *s, const sched_config_t *c, const proto_plan_t *p, sched_seq_t **seqs)
{
    V(proto_plan_check(p, p->hdr.length) == MS_OK, "plan fails its own check");
    int fed[64] = {0}, nseq[64] = {0};
    uint8_t slot_seen[64][256] = {{0}};
    const proto_seq_t *ps = proto_plan_seqs(p);
    const int32_t *toks = proto_plan_tokens(p), *blks = proto_plan_blocks(p);
    for (int i = 0; i < p->n_seqs; i++) {
        sched_seq_t *q = seqs[i];
        const proto_seq_t *e = &ps[i];
        int g = c->attention_dp ? e->dp_rank : 0;
        V(c->attention_dp ? (e->dp_rank >= 0 && e->dp_rank < c->n_groups) : e->dp_rank == -1, "dp_rank %d", e->dp_rank);
        V(q->group == g, "group mismatch");
        fed[g] += e->n_tokens;
        nseq[g]++;
        V(e->slot >= 0 && e->slot < c->max_batch_size && !slot_seen[g][e->slot], "slot %d reused in group %d", e->slot, g);
        slot_seen[g][e->slot] = 1;
        V(e->pos == q->n_cached, "pos %d != cached %d", e->pos, q->n_cached);
        V(e->pos + e->n_tokens <= q->n_tokens, "feeds past known tokens");
        for (int k = 0; k < e->n_tokens; k++) V(toks[e->tok_off + k] == q->tokens[e->pos + k], "token mismatch");
        V(e->n_blocks == kv_blocks_for(e->pos + e->n_tokens, c->block_size), "n_blocks %d for %d positions",
          e->n_blocks, e->pos + e->n_tokens);
        for (int k = 0; k < e->n_blocks && k < q->kv.n; k++) V(blks[e->blk_off + k] == q->kv.ids[k], "block mismatch");
        bool sample = e->pos + e->n_tokens == q->n_tokens;
        V(!!(e->flags & PROTO_SEQ_SAMPLE) == sample, "sample flag");
        int n_gen = q->n_tokens - q->n_prompt;
        V(!!(e->flags & PROTO_SEQ_MASK_EOS) == (n_gen < q->req->params.min_tokens), "mask-eos flag");
        /* prompt logprobs: each chunk with a prompt row to score is flagged and stays inside the prompt (a
         * recompute after preemption too), so every row it scores is a prompt position */
        const bool plp = q->req->params.prompt_logprobs && e->pos < q->n_prompt - 1 && !(e->flags & PROTO_SEQ_VERIFY);
        V(!!(e->flags & PROTO_SEQ_PROMPT_LP) == plp, "prompt-LP flag %#x at pos %d of a %d-token prompt", e->flags,
          e->pos, q->n_prompt);
        if (plp) {
            V(e->pos + e->n_tokens <= q->n_prompt, "prompt-LP chunk %d+%d past the %d-token prompt", e->pos,
              e->n_tokens, q->n_prompt);
            V(e->next_token == (e->pos + e->n_tokens < q->n_prompt ? q->tokens[e->pos + e->n_tokens] : -1),
              "next_token %d", e->next_token);
        }
    }
    for (int g = 0; g < c->n_groups; g++) {
        V(fed[g] <= c->max_num_tokens, "group %d fed %d > budget %d", g, fed[g], c->max_num_tokens);
        V(nseq[g] <= c->max_batch_size, "group %d ran %d seqs", g, nseq[g]);
    }
    /* block ownership: every running sequence's blocks are distinct per group,
     * and held + free = pool size */
    sched_stats_t st;
    sched_stats(s, &st);
    static uint8_t own[64][4096];
    memset(own, 0, sizeof own);
    int held[64] = {0}, running[64] = {0};
    for (sched_seq_t *q = sched_first(s); q; q = sched_next(s, q)) {
        if (q->state != SCHED_RUNNING) {
            V(q->kv.n == 0 && q->group == -1, "waiting sequence holds blocks");
            continue;
        }
        running[q->group]++;
        V(q->kv.n >= kv_blocks_for(q->n_cached + q->step_tokens, c->block_size), "running seq lacks blocks");
        for (int k = 0; k < q->kv.n; k++) {
            /* shared only with reuse, and only blocks whose chain the holder knows (full, computed) */
            uint8_t *o = &own[q->group][q->kv.ids[k]];
            bool ro = c->block_reuse && k < q->n_hashed && (k + 1) * c->block_size <= q->n_cached;
            V(!*o || (ro && *o == 2), "block %d owned twice", q->kv.ids[k]);
            if (!*o) held[q->group]++;
            *o = ro ? 2 : 1;
        }
    }
    int used = 0;
    for (int g = 0; g < c->n_groups; g++) {
        used += held[g];
        V(running[g] == st.group_running[g] && running[g] <= c->max_batch_size, "running count");
        V(held[g] == st.group_blocks_used[g], "group %d: %d blocks held, pool says %d", g, held[g], st.group_blocks_used[g]);
    }
    V(used == st.kv_blocks_used && used + st.kv_blocks_free == c->n_groups * c->n_blocks, "pool accounting");
}

/* Run the simulated engine until every sim is done or max_steps pass.
 * arrive[i] = step at which sim i is submitted. cancel_pct: per step chance
 * (percent) of cancelling a random live request. Returns steps taken. */
static int simulate(const sched_config_t *c, sim_t *sims, int n, const int *arrive, int cancel_pct, int max_steps)
{
    sched_t *s = NULL;
    if (sched_create(c, &s) != MS_OK) {
        g_violations++;
        return 0;
    }
    int added = 0, live = 0, step = 0;
    for (step = 0; step < max_steps; step++) {
        while (added < n && arrive[added] <= step) {
            sim_t *m = &sims[added];
            V(sched_add(s, m->r, m, m->r->id, &m->q) == MS_OK, "add");
            added++;
            live++;
        }
        if (added == n && live == 0) break;
        if (cancel_pct && (int)(xr() % 100) < cancel_pct && live > 0) {
            int k = (int)(xr() % (unsigned)added);
            if (!sims[k].done) {
                sims[k].done = sims[k].cancelled = true;
                g_cancels++;
                sched_finish(s, sims[k].q);
                live--;
            }
        }
        const proto_plan_t *p;
        sched_seq_t **seqs;
        V(sched_step(s, (uint32_t)step, &p, &seqs) == MS_OK, "step");
        check_plan(s, c, p, seqs);
        sched_commit(s);
        int np = p->n_seqs;
        for (int i = 0; i < np; i++) {
            sched_seq_t *q = seqs[i];
            if (!q || !q->step_sample) continue;
            sim_t *m = q->user;
            int32_t t = tok_at(q->req->id, q->n_tokens);
            if (m->n_gen == 0) m->first_step = step;
            m->gen[m->n_gen++] = t;
            V(sched_append(s, q, t) == MS_OK, "append");
            if (m->n_gen == m->target || q->n_tokens >= sched_seq_limit(s)) {
                m->preempted = q->n_preempted;
                m->done = true;
                sched_finish(s, q);
                live--;
            }
        }
    }
    sched_stats_t st;
    sched_stats(s, &st);
    g_preemptions += st.preemptions;
    V(st.running == 0 && st.waiting == 0 && st.kv_blocks_used == 0, "leftovers: %d running, %d waiting, %d blocks",
      st.running, st.waiting, st.kv_blocks_used);
    sched_destroy(s);
    return step;
}

static void check_outputs(sim_t *sims, int n)
{
    for (int i = 0; i < n; i++) {
        sim_t *m = &sims[i];
        T_CHECK_MSG(m->done, "request %d never finished", i);
        if (m->cancelled) continue;
        T_CHECK_MSG(m->n_gen == m->target, "request %d generated %d of %d", i, m->n_gen, m->target);
        int bad = 0;
        for (int k = 0; k < m->n_gen; k++) bad += m->gen[k] != tok_at(m->r->id, m->r->n_prompt + k);
        T_CHECK_MSG(bad == 0, "request %d: %d wrong tokens", i, bad);
    }
}

static void free_sims(sim_t *sims, int n)
{
    for (int i = 0; i < n; i++) req_release(sims[i].r);
}

/* A prompt longer than the budget is fed in chunks; sampling only at the end. */
static void test_chunked_prefill(void)
{
    sched_config_t c = {.n_groups = 1, .max_batch_size = 4, .max_num_tokens = 4, .max_seq_len = 64, .block_size = 4,
                        .n_blocks = 32, .chunked_prefill = true};
    sched_t *s;
    T_CHECK(sched_create(&c, &s) == MS_OK);
    req_t *r = mkreq(1, 10, 0);
    sched_seq_t *q;
    T_CHECK(sched_add(s, r, NULL, 1, &q) == MS_OK);
    int exp_pos[] = {0, 4, 8, 10, 11}, exp_n[] = {4, 4, 2, 1, 1};
    for (int st = 0; st < 5; st++) {
        const proto_plan_t *p;
        sched_seq_t **seqs;
        T_CHECK(sched_step(s, (uint32_t)st, &p, &seqs) == MS_OK);
        check_plan(s, &c, p, seqs);
        T_CHECK(p->n_seqs == 1 && p->hdr.step == (uint32_t)st);
        const proto_seq_t *e = proto_plan_seqs(p);
        T_CHECK_MSG(e->pos == exp_pos[st] && e->n_tokens == exp_n[st], "step %d: pos %d n %d", st, e->pos, e->n_tokens);
        T_CHECK(!!(e->flags & PROTO_SEQ_SAMPLE) == (st >= 2));
        T_CHECK(e->dp_rank == -1);
        sched_commit(s);
        if (q->step_sample) sched_append(s, q, 7);
    }
    /* A new prompt arriving while q decodes: the decode is planned first, the
     * prefill gets what is left of the budget. */
    req_t *r2 = mkreq(2, 9, 0);
    sched_seq_t *q2;
    T_CHECK(sched_add(s, r2, NULL, 2, &q2) == MS_OK);
    const proto_plan_t *p;
    sched_seq_t **seqs;
    T_CHECK(sched_step(s, 5, &p, &seqs) == MS_OK);
    check_plan(s, &c, p, seqs);
    T_CHECK(p->n_seqs == 2 && seqs[0] == q && seqs[1] == q2);
    T_CHECK(proto_plan_seqs(p)[0].n_tokens == 1 && proto_plan_seqs(p)[1].n_tokens == 3 && p->n_tokens == 4);
    T_CHECK(proto_plan_seqs(p)[0].slot != proto_plan_seqs(p)[1].slot);
    sched_commit(s);
    sched_append(s, q, 8);
    /* next: decode of q first, then q2's continuing chunk */
    T_CHECK(sched_step(s, 6, &p, &seqs) == MS_OK);
    T_CHECK(p->n_seqs == 2 && seqs[0] == q && seqs[1] == q2 && proto_plan_seqs(p)[1].pos == 3);
    sched_finish(s, q);
    T_CHECK(seqs[0] == NULL); /* finished entries are cleared from the step list */
    sched_commit(s);
    T_CHECK(q2->n_cached == 6);
    sched_finish(s, q2);
    sched_stats_t st;
    sched_stats(s, &st);
    T_CHECK(st.kv_blocks_used == 0 && st.running == 0 && st.waiting == 0);
    sched_destroy(s);
    req_release(r);
    req_release(r2);
}

/* Without chunked prefill a prompt that fits a step is fed whole (it waits
 * for room instead of being split); one longer than a whole step is split
 * when it has the step to itself. */
static void test_unchunked(void)
{
    sched_config_t c = {.n_groups = 1, .max_batch_size = 4, .max_num_tokens = 8, .max_seq_len = 64, .block_size = 4,
                        .n_blocks = 32, .chunked_prefill = false};
    sched_t *s;
    T_CHECK(sched_create(&c, &s) == MS_OK);
    req_t *a = mkreq(1, 6, 0), *b = mkreq(2, 6, 0);
    sched_seq_t *qa, *qb;
    T_CHECK(sched_add(s, a, NULL, 1, &qa) == MS_OK && sched_add(s, b, NULL, 2, &qb) == MS_OK);
    const proto_plan_t *p;
    sched_seq_t **seqs;
    T_CHECK(sched_step(s, 0, &p, &seqs) == MS_OK);
    T_CHECK(p->n_seqs == 1 && p->n_tokens == 6); /* b does not fit the 2 left, and is not split */
    sched_commit(s);
    sched_append(s, qa, 5);
    T_CHECK(sched_step(s, 1, &p, &seqs) == MS_OK);
    T_CHECK(p->n_seqs == 2 && p->n_tokens == 7 && seqs[1] == qb && proto_plan_seqs(p)[1].n_tokens == 6);
    sched_commit(s);
    sched_finish(s, qa);
    sched_finish(s, qb);
    req_t *big = mkreq(3, 20, 0);
    sched_seq_t *qc;
    T_CHECK(sched_add(s, big, NULL, 3, &qc) == MS_OK);
    T_CHECK(sched_step(s, 2, &p, &seqs) == MS_OK);
    T_CHECK(p->n_seqs == 1 && p->n_tokens == 8);
    sched_finish(s, qc);
    sched_destroy(s);
    req_release(a);
    req_release(b);
    req_release(big);
}

static void test_reject(void)
{
    sched_config_t c = {.n_groups = 1, .max_batch_size = 4, .max_num_tokens = 8, .max_seq_len = 32, .block_size = 4,
                        .n_blocks = 4, .chunked_prefill = true};
    sched_t *s;
    T_CHECK(sched_create(&c, &s) == MS_OK);
    T_CHECK(sched_seq_limit(s) == 16); /* the pool is smaller than max_seq_len */
    req_t *r = mkreq(1, 16, 0), *ok = mkreq(2, 15, 0);
    sched_seq_t *q;
    T_CHECK(sched_add(s, r, NULL, 1, &q) == MS_ERR_INVALID);
    T_CHECK(sched_add(s, ok, NULL, 2, &q) == MS_OK);
    sched_destroy(s); /* frees held sequences, not their requests */
    req_release(r);
    req_release(ok);
    sched_config_t badc = c;
    badc.max_batch_size = 0;
    T_CHECK(sched_create(&badc, &s) == MS_ERR_INVALID);
}

/* min_tokens: MASK_EOS until that many tokens were generated. */
static void test_min_tokens(void)
{
    sched_config_t c = {.n_groups = 1, .max_batch_size = 2, .max_num_tokens = 16, .max_seq_len = 64, .block_size = 4,
                        .n_blocks = 16, .chunked_prefill = true};
    sched_t *s;
    T_CHECK(sched_create(&c, &s) == MS_OK);
    req_t *r = mkreq(1, 3, 2);
    sched_seq_t *q;
    T_CHECK(sched_add(s, r, NULL, 1, &q) == MS_OK);
    for (int st = 0; st < 4; st++) {
        const proto_plan_t *p;
        sched_seq_t **seqs;
        T_CHECK(sched_step(s, (uint32_t)st, &p, &seqs) == MS_OK);
        T_CHECK(!!(proto_plan_seqs(p)[0].flags & PROTO_SEQ_MASK_EOS) == (st < 2));
        sched_commit(s);
        sched_append(s, q, 1);
    }
    sched_destroy(s);
    req_release(r);
}

/* KV exhaustion mid-decode: the newest sequence is preempted and resumed
 * later with the same tokens; the oldest is never preempted; all finish. */
static void test_preemption(bool prompt_lp)
{
    sched_config_t c = {.n_groups = 1, .max_batch_size = 4, .max_num_tokens = 16, .max_seq_len = 64, .block_size = 4,
                        .n_blocks = 10, .chunked_prefill = true};
    enum { N = 4 };
    sim_t sims[N] = {{0}};
    int arrive[N] = {0, 0, 1, 2};
    for (int i = 0; i < N; i++) {
        sims[i].r = mkreq((uint64_t)i + 1, 6, 0);
        sims[i].r->params.prompt_logprobs = prompt_lp; /* recomputes then stop their chunk at the prompt's end */
        sims[i].target = 30; /* 36 tokens = 9 blocks each: only one fits at a time at the end */
    }
    g_violations = 0;
    int steps = simulate(&c, sims, N, arrive, 0, 2000);
    T_CHECK_MSG(g_violations == 0, "%d violations", g_violations);
    T_CHECK(steps < 2000);
    check_outputs(sims, N);
    T_CHECK_MSG(sims[0].preempted == 0, "the oldest request was preempted %d times", sims[0].preempted);
    int total = 0;
    for (int i = 0; i < N; i++) total += sims[i].preempted;
    T_CHECK_MSG(total > 0, "no preemption happened: the test does not test it");
    free_sims(sims, N);
}

/* FIFO: a long prompt at the head that must wait for KV is not overtaken by
 * short prompts arriving after it. */
static void test_fifo(void)
{
    sched_config_t c = {.n_groups = 1, .max_batch_size = 8, .max_num_tokens = 64, .max_seq_len = 64, .block_size = 4,
                        .n_blocks = 10, .chunked_prefill = true};
    sched_t *s;
    T_CHECK(sched_create(&c, &s) == MS_OK);
    req_t *r1 = mkreq(1, 20, 0), *a = mkreq(2, 25, 0), *b = mkreq(3, 2, 0);
    sched_seq_t *q1, *qa, *qb;
    T_CHECK(sched_add(s, r1, NULL, 1, &q1) == MS_OK);
    const proto_plan_t *p;
    sched_seq_t **seqs;
    T_CHECK(sched_step(s, 0, &p, &seqs) == MS_OK && p->n_seqs == 1); /* r1 holds 6 of 10 blocks */
    sched_commit(s);
    sched_append(s, q1, 1);
    T_CHECK(sched_add(s, a, NULL, 2, &qa) == MS_OK && sched_add(s, b, NULL, 3, &qb) == MS_OK);
    for (int st = 1; st < 4; st++) {
        T_CHECK(sched_step(s, (uint32_t)st, &p, &seqs) == MS_OK);
        T_CHECK_MSG(p->n_seqs == 1 && seqs[0] == q1, "step %d: %d seqs", st, p->n_seqs);
        T_CHECK(qb->state == SCHED_WAITING);
        sched_commit(s);
        sched_append(s, q1, 1);
    }
    sched_finish(s, q1);
    T_CHECK(sched_step(s, 4, &p, &seqs) == MS_OK);
    T_CHECK(p->n_seqs == 2 && seqs[0] == qa && seqs[1] == qb);
    sched_destroy(s);
    req_release(r1);
    req_release(a);
    req_release(b);
}

/* Attention DP: requests spread evenly; a freed group gets the next ones;
 * ties go to the group with more free KV. */
static void test_dp_balance(void)
{
    sched_config_t c = {.n_groups = 4, .attention_dp = true, .max_batch_size = 8, .max_num_tokens = 64,
                        .max_seq_len = 128, .block_size = 4, .n_blocks = 64, .chunked_prefill = true};
    sched_t *s;
    T_CHECK(sched_create(&c, &s) == MS_OK);
    req_t *r[12];
    sched_seq_t *q[12];
    for (int i = 0; i < 8; i++) {
        r[i] = mkreq((uint64_t)i + 1, 4 + 4 * (i % 3), 0);
        T_CHECK(sched_add(s, r[i], NULL, 1, &q[i]) == MS_OK);
    }
    const proto_plan_t *p;
    sched_seq_t **seqs;
    T_CHECK(sched_step(s, 0, &p, &seqs) == MS_OK);
    check_plan(s, &c, p, seqs);
    sched_stats_t st;
    sched_stats(s, &st);
    for (int g = 0; g < 4; g++) T_CHECK_MSG(st.group_running[g] == 2, "group %d runs %d", g, st.group_running[g]);
    sched_commit(s);
    /* empty group 2 and one seq of group 1: new requests go to 2, 2, then 1 */
    int g1 = 0;
    for (int i = 0; i < 8; i++)
        if (q[i]->group == 2) {
            sched_finish(s, q[i]);
            q[i] = NULL;
        } else if (q[i]->group == 1 && !g1) {
            g1 = 1;
            sched_finish(s, q[i]);
            q[i] = NULL;
        }
    int went[3];
    for (int i = 8; i < 11; i++) {
        r[i] = mkreq((uint64_t)i + 1, 4, 0);
        T_CHECK(sched_add(s, r[i], NULL, 1, &q[i]) == MS_OK);
        T_CHECK(sched_step(s, (uint32_t)i, &p, &seqs) == MS_OK);
        check_plan(s, &c, p, seqs);
        went[i - 8] = q[i]->group;
        sched_commit(s);
        for (int k = 0; k < p->n_seqs; k++)
            if (seqs[k]->step_sample) sched_append(s, seqs[k], 1);
    }
    /* the empty group 2 gets the first; afterwards every group runs 2 again */
    T_CHECK_MSG(went[0] == 2, "first new request went to group %d", went[0]);
    /* ties on running count: the group with the most free blocks wins */
    sched_stats(s, &st);
    for (int g = 0; g < 4; g++) T_CHECK(st.group_running[g] == 2);
    int most_free = 0;
    for (int g = 1; g < 4; g++)
        if (st.group_blocks_used[g] < st.group_blocks_used[most_free]) most_free = g;
    r[11] = mkreq(12, 4, 0);
    T_CHECK(sched_add(s, r[11], NULL, 1, &q[11]) == MS_OK);
    T_CHECK(sched_step(s, 20, &p, &seqs) == MS_OK);
    T_CHECK_MSG(q[11]->group == most_free, "tie went to group %d, expected %d", q[11]->group, most_free);
    sched_destroy(s);
    for (int i = 0; i < 12; i++) req_release(r[i]);
}

/* Prefix reuse: a prompt sharing whole blocks with a finished one starts
 * past them; never its last token; preemption keeps counts right; a
 * penalized request takes no prefix; off means off. */
static void test_prefix_reuse(void)
{
    sched_config_t c = {.n_groups = 1, .max_batch_size = 4, .max_num_tokens = 64, .max_seq_len = 64, .block_size = 4,
                        .n_blocks = 16, .chunked_prefill = true, .block_reuse = true};
    for (int off = 0; off < 2; off++) {
        c.block_reuse = !off;
        sched_t *s;
        T_CHECK(sched_create(&c, &s) == MS_OK);
        g_shared = 14;
        req_t *r[5] = {mkreq(1, 20, 0), mkreq(2, 18, 0), mkreq(3, 16, 0), mkreq(4, 18, 0), mkreq(5, 18, 0)};
        r[3]->params.repetition_penalty = 1.2f;
        r[4]->params.prompt_logprobs = true; /* its prompt's rows must run: no cached prefix */
        g_shared = 0;
        const int exp_pos[5] = {0, 12, 12, 0, 0}; /* 14 shared: 3 whole blocks; r3's 16 = 4 blocks, its last token fed */
        for (int i = 0; i < 5; i++) {
            sched_seq_t *q;
            T_CHECK(sched_add(s, r[i], NULL, (uint64_t)i, &q) == MS_OK);
            const proto_plan_t *p;
            sched_seq_t **seqs;
            T_CHECK(sched_step(s, (uint32_t)(2 * i), &p, &seqs) == MS_OK);
            check_plan(s, &c, p, seqs);
            const proto_seq_t *e = proto_plan_seqs(p);
            T_CHECK(p->n_seqs == 1);
            int want = off ? 0 : exp_pos[i];
            T_CHECK_MSG(e->pos == want && (e->flags & PROTO_SEQ_START), "req %d: pos %d, want %d", i, e->pos, want);
            T_CHECK(q->n_reused == want);
            sched_commit(s);
            T_CHECK(sched_append(s, q, 5) == MS_OK);
            T_CHECK(sched_step(s, (uint32_t)(2 * i + 1), &p, &seqs) == MS_OK); /* a decode */
            check_plan(s, &c, p, seqs);
            sched_commit(s);
            sched_finish(s, q);
        }
        sched_stats_t st;
        sched_stats(s, &st);
        T_CHECK(st.kv_blocks_used == 0 && st.kv_blocks_free == c.n_blocks);
        T_CHECK(off ? st.kv_blocks_idle == 0 && st.prefix_query_tokens == 0 : st.kv_blocks_idle > 0);
        if (!off)
            T_CHECK_MSG(st.prefix_hit_tokens == 24 && st.prefix_query_tokens == 90, "hits %llu of %llu",
                        (unsigned long long)st.prefix_hit_tokens, (unsigned long long)st.prefix_query_tokens);
        sched_destroy(s);
        for (int i = 0; i < 5; i++) req_release(r[i]);
    }
}

/* Prompt logprobs: every prefill chunk with a prompt row to score carries PROTO_SEQ_PROMPT_LP and the prompt
 * token after it (-1 past the prompt); decodes do not. */
static void test_prompt_lp(void)
{
    sched_config_t c = {.n_groups = 1, .max_batch_size = 4, .max_num_tokens = 4, .max_seq_len = 64, .block_size = 4,
                        .n_blocks = 32, .chunked_prefill = true};
    sched_t *s;
    T_CHECK(sched_create(&c, &s) == MS_OK);
    req_t *r = mkreq(1, 10, 0);
    r->params.prompt_logprobs = true;
    sched_seq_t *q;
    T_CHECK(sched_add(s, r, NULL, 1, &q) == MS_OK);
    const int exp_pos[] = {0, 4, 8, 10}, exp_n[] = {4, 4, 2, 1};
    for (int st = 0; st < 4; st++) {
        const proto_plan_t *p;
        sched_seq_t **seqs;
        T_CHECK(sched_step(s, (uint32_t)st, &p, &seqs) == MS_OK);
        check_plan(s, &c, p, seqs);
        const proto_seq_t *e = proto_plan_seqs(p);
        T_CHECK(p->n_seqs == 1 && e->pos == exp_pos[st] && e->n_tokens == exp_n[st]);
        T_CHECK_MSG(!!(e->flags & PROTO_SEQ_PROMPT_LP) == (st < 3), "step %d: flags %#x", st, e->flags);
        if (st < 3) T_CHECK(e->next_token == (st < 2 ? q->tokens[e->pos + e->n_tokens] : -1));
        if (st < 3) T_CHECK(proto_seq_plp_rows(e) == (st < 2 ? 4 : 1));
        sched_commit(s);
        if (q->step_sample) sched_append(s, q, 7);
    }
    sched_finish(s, q);
    sched_destroy(s);
    req_release(r);
}

/* Random arrivals, lengths and cancellations in several layouts. */
static void test_random(void)
{
    static const sched_config_t cfgs[] = {
        {.n_groups = 1, .max_batch_size = 8, .max_num_tokens = 32, .max_seq_len = 96, .block_size = 4, .n_blocks = 40, .chunked_prefill = true},
        {.n_groups = 1, .max_batch_size = 16, .max_num_tokens = 7, .max_seq_len = 80, .block_size = 3, .n_blocks = 30, .chunked_prefill = true},
        {.n_groups = 2, .attention_dp = true, .max_batch_size = 4, .max_num_tokens = 24, .max_seq_len = 128, .block_size = 8, .n_blocks = 12, .chunked_prefill = true},
        {.n_groups = 4, .attention_dp = true, .max_batch_size = 3, .max_num_tokens = 16, .max_seq_len = 64, .block_size = 2, .n_blocks = 20, .chunked_prefill = false},
        {.n_groups = 1, .max_batch_size = 2, .max_num_tokens = 64, .max_seq_len = 256, .block_size = 16, .n_blocks = 5, .chunked_prefill = false},
    };
    const size_t n_cfg = sizeof cfgs / sizeof cfgs[0];
    for (size_t ci = 0; ci < 2 * n_cfg; ci++) {
        for (int rep = 0; rep < 3; rep++) {
            /* the second round: the same layouts with prefix reuse over prompts sharing a prefix */
            sched_config_t cc = cfgs[ci % n_cfg];
            cc.block_reuse = ci >= n_cfg;
            const sched_config_t *c = &cc;
            g_shared = cc.block_reuse ? (int)(xr() % 40) : 0;
            enum { N = 60 };
            static sim_t sims[N];
            int arrive[N];
            memset(sims, 0, sizeof sims);
            int t = 0;
            int limit = c->max_seq_len < c->n_blocks * c->block_size ? c->max_seq_len : c->n_blocks * c->block_size;
            for (int i = 0; i < N; i++) {
                t += (int)(xr() % 4);
                arrive[i] = t;
                int np = 1 + (int)(xr() % (unsigned)(limit / 2));
                sims[i].r = mkreq((uint64_t)(ci * 1000 + (size_t)rep * 100 + (size_t)i + 1), np, (int)(xr() % 3));
                int room = limit - np;
                sims[i].target = 1 + (int)(xr() % (unsigned)(room < 40 ? room : 40));
            }
            g_violations = 0;
            int steps = simulate(c, sims, N, arrive, rep == 2 ? 5 : 0, 20000);
            T_CHECK_MSG(g_violations == 0, "config %zu rep %d: %d violations", ci, rep, g_violations);
            T_CHECK_MSG(steps < 20000, "config %zu rep %d: did not drain (starvation or livelock)", ci, rep);
            check_outputs(sims, N);
            free_sims(sims, N);
        }
    }
    g_shared = 0;
    /* the workloads must reach the paths they are meant to test */
    T_CHECK_MSG(g_preemptions > 0 && g_cancels > 0, "%llu preemptions, %llu cancels", (unsigned long long)g_preemptions,
                (unsigned long long)g_cancels);
    fprintf(stderr, "random workloads: %llu preemptions, %llu cancels\n", (unsigned long long)g_preemptions,
            (unsigned long long)g_cancels);
}

/* Prefix in flight: requests arriving together with the same whole prompt blocks (n > 1 choices, one
 * system prompt) compute them once: the later ones wait until the first's prefill published them, then
 * start past them; a request sharing nothing is admitted at once; without reuse nobody waits. */
static void test_prefix_in_flight(void)
{
    for (int reuse = 1; reuse >= 0; reuse--) {
        sched_config_t c = {.n_groups = 1, .max_batch_size = 8, .max_num_tokens = 256, .max_seq_len = 128,
                            .block_size = 4, .n_blocks = 64, .chunked_prefill = true, .block_reuse = reuse};
        sched_t *s;
        T_CHECK(sched_create(&c, &s) == MS_OK);
        g_shared = 14; /* 3 whole blocks + 2 tokens in common */
        req_t *a = mkreq(1, 16, 0), *b = mkreq(2, 16, 0);
        g_shared = 0;
        sched_seq_t *qa, *qb;
        T_CHECK(sched_add(s, a, NULL, 1, &qa) == MS_OK && sched_add(s, b, NULL, 2, &qb) == MS_OK);
        const proto_plan_t *p;
        sched_seq_t **seqs;
        T_CHECK(sched_step(s, 0, &p, &seqs) == MS_OK);
        check_plan(s, &c, p, seqs);
        T_CHECK_MSG(p->n_seqs == (reuse ? 1 : 2), "reuse %d: step 0 plans %d seqs", reuse, p->n_seqs);
        T_CHECK(qb->state == (reuse ? SCHED_WAITING : SCHED_RUNNING));
        sched_commit(s);
        for (int k = 0; k < p->n_seqs; k++)
            if (seqs[k]->step_sample) sched_append(s, seqs[k], 7);
        if (reuse) {
            T_CHECK(sched_step(s, 1, &p, &seqs) == MS_OK);
            check_plan(s, &c, p, seqs);
            T_CHECK_MSG(qb->state == SCHED_RUNNING && qb->n_cached == 12, "the sibling starts at %d (want 12)",
                        qb->n_cached);
            sched_commit(s);
        }
        sched_destroy(s);
        req_release(a);
        req_release(b);
    }
}

int main(void)
{
    ms_log_set_level(MS_LOG_WARN); /* thousands of preemption lines otherwise */
    test_chunked_prefill();
    test_unchunked();
    test_reject();
    test_min_tokens();
    test_preemption(false);
    test_preemption(true);
    test_fifo();
    test_dp_balance();
    test_prefix_reuse();
    test_prefix_in_flight();
    test_prompt_lp();
    test_random();
    return t_done();
}
