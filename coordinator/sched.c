/* sched.c — continuous batching, chunked prefill, attention-DP placement,
 * paged-KV admission and preemption (sched.h describes the policy).
 *
 * State: two intrusive doubly linked lists. `waiting` is FIFO (preempted
 * sequences are pushed at its front, so the oldest work resumes first);
 * `running` is in admission order, so its head is the oldest and the newest
 * sequence of a group is found by walking from the tail. Per group: a KV
 * block pool, a slot table and a running count.
 *
 * Invariants (checked by tests/unit/test_sched.c):
 *   - a running sequence holds blocks of its group's pool for at least every
 *     position it has fed or feeds this step; a waiting one holds none;
 *   - per group, running <= max_batch_size and slots are unique;
 *   - per step and group, fed tokens <= max_num_tokens;
 *   - without block reuse, every block is either free or in exactly one running
 *     sequence's table; with it, a block's reference count is the number of
 *     running tables holding it, and only published (full, computed) blocks
 *     are ever shared. */
#include "sched.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    sched_seq_t *head, *tail;
    int n;
} seq_list_t;

typedef struct {
    kv_pool_t *pool;
    uint8_t *slot_used; /* max_batch_size entries */
    int running;
    int budget;         /* tokens left this step */
} group_t;

struct sched {
    sched_config_t cfg;
    int limit;          /* sched_seq_limit */
    group_t *groups;
    seq_list_t waiting, running;
    uint64_t admit_counter;
    uint64_t preemptions;
    uint64_t prefix_query, prefix_hit;
    int32_t *match;     /* [n_blocks] scratch: a prefix match's block ids */
    proto_planbuf_t pb;
    sched_seq_t **step_seqs;
    int n_step, cap_step;
};

static void list_push_back(seq_list_t *l, sched_seq_t *q)
{
    q->next = NULL;
    q->prev = l->tail;
    if (l->tail)
        l->tail->next = q;
    else
        l->head = q;
    l->tail = q;
    l->n++;
}

static void list_push_front(seq_list_t *l, sched_seq_t *q)
{
    q->prev = NULL;
    q->next = l->head;
    if (l->head)
        l->head->prev = q;
    else
        l->tail = q;
    l->head = q;
    l->n++;
}

static void list_remove(seq_list_t *l, sched_seq_t *q)
{
    if (q->prev)
        q->prev->next = q->next;
    else
        l->head = q->next;
    if (q->next)
        q->next->prev = q->prev;
    else
        l->tail = q->prev;
    q->prev = q->next = NULL;
    l->n--;
}

ms_status_t sched_create(const sched_config_t *cfg, sched_t **out)
{
    if (cfg->n_groups < 1 || cfg->max_batch_size < 1 || cfg->max_num_tokens < 1 || cfg->max_seq_len < 2 ||
        cfg->block_size < 1 || cfg->n_blocks < 1)
        return MS_ERR(MS_ERR_INVALID,
                      "sched: bad config (groups %d, max_batch_size %d, max_num_tokens %d, max_seq_len %d, "
                      "block size %d, blocks %d)",
                      cfg->n_groups, cfg->max_batch_size, cfg->max_num_tokens, cfg->max_seq_len, cfg->block_size,
                      cfg->n_blocks);
    sched_t *s = calloc(1, sizeof *s);
    if (!s) return MS_ERR(MS_ERR_NOMEM, "sched: out of memory");
    s->cfg = *cfg;
    long pool_tokens = (long)cfg->n_blocks * cfg->block_size;
    s->limit = pool_tokens < cfg->max_seq_len ? (int)pool_tokens : cfg->max_seq_len;
    proto_planbuf_init(&s->pb);
    s->match = malloc(sizeof(int32_t) * (size_t)cfg->n_blocks);
    if (!s->match) goto nomem;
    s->groups = calloc((size_t)cfg->n_groups, sizeof *s->groups);
    if (!s->groups) goto nomem;
    for (int g = 0; g < cfg->n_groups; g++) {
        if (kv_pool_create(cfg->n_blocks, &s->groups[g].pool) != MS_OK) goto fail;
        if (cfg->block_reuse && kv_pool_enable_reuse(s->groups[g].pool, cfg->block_size) != MS_OK) goto fail;
        s->groups[g].slot_used = calloc((size_t)cfg->max_batch_size, 1);
        if (!s->groups[g].slot_used) goto nomem;
    }
    *out = s;
    return MS_OK;
nomem:
    (void)MS_ERR(MS_ERR_NOMEM, "sched: out of memory");
fail:
    sched_destroy(s);
    return MS_ERR_NOMEM;
}

static void seq_free(sched_seq_t *q)
{
    kv_table_free(&q->kv);
    free(q->tokens);
    free(q);
}

void sched_destroy(sched_t *s)
{
    if (!s) return;
    for (sched_seq_t *q = s->waiting.head, *n; q; q = n) {
        n = q->next;
        seq_free(q);
    }
    for (sched_seq_t *q = s->running.head, *n; q; q = n) {
        n = q->next;
        kv_table_release(&q->kv, s->groups[q->group].pool);
        seq_free(q);
    }
    if (s->groups)
        for (int g = 0; g < s->cfg.n_groups; g++) {
            kv_pool_destroy(s->groups[g].pool);
            free(s->groups[g].slot_used);
        }
    free(s->groups);
    free(s->step_seqs);
    free(s->match);
    proto_planbuf_free(&s->pb);
    free(s);
}

int sched_seq_limit(const sched_t *s) { return s->limit; }

ms_status_t sched_add(sched_t *s, req_t *req, void *user, uint64_t seed, sched_seq_t **out)
{
    if (req->n_prompt <= 0 || req->n_prompt >= s->limit)
        return MS_ERR(MS_ERR_INVALID,
                      "prompt of %d tokens leaves no room to generate: a sequence holds at most %d tokens "
                      "(max_seq_len %d, KV cache %d blocks of %d)",
                      req->n_prompt, s->limit - 1, s->cfg.max_seq_len, s->cfg.n_blocks, s->cfg.block_size);
    sched_seq_t *q = calloc(1, sizeof *q);
    if (!q) return MS_ERR(MS_ERR_NOMEM, "sched: out of memory");
    q->cap_tokens = req->n_prompt + 16;
    q->tokens = malloc(sizeof(int32_t) * (size_t)q->cap_tokens);
    if (!q->tokens) {
        free(q);
        return MS_ERR(MS_ERR_NOMEM, "sched: out of memory");
    }
    memcpy(q->tokens, req->prompt, sizeof(int32_t) * (size_t)req->n_prompt);
    q->n_tokens = q->n_prompt = req->n_prompt;
    q->req = req;
    q->user = user;
    q->seed = seed;
    q->group = q->slot = -1;
    q->state = SCHED_WAITING;
    list_push_back(&s->waiting, q);
    *out = q;
    return MS_OK;
}

/* Give a running sequence's blocks and slot back to its group. */
static void seq_unplace(sched_t *s, sched_seq_t *q)
{
    group_t *g = &s->groups[q->group];
    kv_table_release(&q->kv, g->pool);
    g->slot_used[q->slot] = 0;
    g->running--;
    q->group = q->slot = -1;
}

static void seq_preempt(sched_t *s, sched_seq_t *q)
{
    MS_INFO("KV cache full: preempting request %llu (%d tokens, %d blocks freed); it resumes when blocks free up",
            (unsigned long long)q->req->id, q->n_tokens, q->kv.n);
    list_remove(&s->running, q);
    seq_unplace(s, q);
    q->n_cached = 0;
    q->n_hashed = 0;
    q->step_tokens = 0;
    q->step_draft = 0;
    q->step_sample = false;
    q->n_draft = 0;
    q->state = SCHED_WAITING;
    q->n_preempted++;
    s->preemptions++;
    list_push_front(&s->waiting, q);
}

static sched_seq_t *newest_in_group(sched_t *s, int g)
{
    for (sched_seq_t *q = s->running.tail; q; q = q->prev)
        if (q->group == g) return q;
    return NULL;
}

/* Drafts a decode of q may verify this step (MTP): none when the knobs need per-token work the drafts
 * cannot carry (top logprobs, the min_tokens EOS mask), and never more than could be emitted (max_tokens,
 * the sequence limit) or the step's budget holds. */
static bool spec_knobs_ok(const req_params_t *p)
{
    /* logits processing (penalties count the fed tokens, which would include rejected drafts) and top
     * logprobs are per-token work the drafts do not carry: such requests decode one token per step */
    bool rep = p->repetition_penalty != 0.0f && p->repetition_penalty != 1.0f;
    return p->logprobs <= 0 && p->presence_penalty == 0.0f && p->frequency_penalty == 0.0f && !rep &&
           p->min_p == 0.0f && p->n_logit_bias == 0;
}

static int spec_verify_count(const sched_t *s, const sched_seq_t *q, int budget)
{
    const req_params_t *p = &q->req->params;
    int n_gen = q->n_tokens - q->n_prompt, k = q->n_draft;
    if (!s->cfg.spec_drafts || !spec_knobs_ok(p) || n_gen < p->min_tokens) return 0;
    if (k > s->cfg.spec_drafts) k = s->cfg.spec_drafts;
    if (p->max_tokens > 0 && k > p->max_tokens - n_gen - 1) k = p->max_tokens - n_gen - 1;
    if (k > s->limit - q->n_tokens - 1) k = s->limit - q->n_tokens - 1;
    if (k > budget - 1) k = budget - 1;
    return k < 0 ? 0 : k;
}

/* Feed n tokens of q (a decode verifying k drafts feeds its last token and the drafts: n = 1 + k). */
static ms_status_t plan_add(sched_t *s, sched_seq_t *q, int n, int k)
{
    const req_params_t *p = &q->req->params;
    /* prompt logprobs: a recompute after preemption feeds prompt and generated tokens; its chunk stops at the
     * prompt's end, so every row of a PROTO_SEQ_PROMPT_LP chunk is a prompt position */
    if (p->prompt_logprobs && k == 0 && q->n_cached < q->n_prompt - 1 && q->n_cached + n > q->n_prompt)
        n = q->n_prompt - q->n_cached;
    int n_gen = q->n_tokens - q->n_prompt;
    bool sample = q->n_cached + n - k == q->n_tokens;
    bool draft = sample && s->cfg.spec_drafts > 0 && spec_knobs_ok(p);
    proto_seq_t ps = {
        .slot = q->slot,
        .dp_rank = s->cfg.attention_dp ? q->group : -1,
        .pos = q->n_cached,
        .flags = (sample ? PROTO_SEQ_SAMPLE : 0u) | (n_gen < p->min_tokens ? PROTO_SEQ_MASK_EOS : 0u) |
                 (k > 0 ? PROTO_SEQ_VERIFY : 0u) | (draft ? PROTO_SEQ_DRAFT : 0u) | (q->started ? 0u : PROTO_SEQ_START),
        .temperature = p->temperature,
        .top_p = p->top_p,
        .top_k = p->top_k,
        .n_logprobs = p->logprobs,
        .seed = q->seed,
        .presence_penalty = p->presence_penalty,
        .frequency_penalty = p->frequency_penalty,
        .repetition_penalty = p->repetition_penalty,
        .min_p = p->min_p,
        .n_prompt = q->n_prompt,
    };
    /* prompt logprobs: rows of prompt positions up to the second-to-last (their next token is a prompt token);
     * a recompute after preemption computes them again, rank 0 keeps the first of each position */
    if (p->prompt_logprobs && k == 0 && q->n_cached < q->n_prompt - 1) {
        ps.flags |= PROTO_SEQ_PROMPT_LP;
        ps.next_token = q->n_cached + n < q->n_prompt ? q->tokens[q->n_cached + n] : -1;
        /* one top-N for the chunk's rows and its sampled token: the larger; rank 0 trims each to its own */
        if (p->prompt_top > ps.n_logprobs) ps.n_logprobs = p->prompt_top;
    }
    int nb = kv_blocks_for(q->n_cached + n, s->cfg.block_size);
    if (nb > q->kv.n) return MS_ERR(MS_ERR_INTERNAL, "sched: sequence lacks KV blocks (%d of %d)", q->kv.n, nb);
    if (draft) { /* the module's chained passes write positions past the fed ones: send what is reserved */
        int nd = kv_blocks_for(q->n_cached + n + s->cfg.spec_drafts - 1, s->cfg.block_size);
        nb = nd < q->kv.n ? nd : q->kv.n;
    }
    const int32_t *toks = q->tokens + q->n_cached;
    int32_t fed[1 + PROTO_MAX_DRAFT];
    if (k > 0) {
        fed[0] = q->tokens[q->n_cached];
        memcpy(fed + 1, q->draft, sizeof(int32_t) * (size_t)k);
        toks = fed;
    }
    MS_TRY(proto_planbuf_add(&s->pb, &ps, toks, n, q->kv.ids, nb));
    if (!q->started) MS_TRY(proto_planbuf_add_bias(&s->pb, p->logit_bias, p->n_logit_bias));
    q->started = true;
    if (s->n_step == s->cap_step) {
        int cap = s->cap_step ? s->cap_step * 2 : 64;
        sched_seq_t **a = realloc(s->step_seqs, sizeof *a * (size_t)cap);
        if (!a) return MS_ERR(MS_ERR_NOMEM, "sched: out of memory");
        s->step_seqs = a;
        s->cap_step = cap;
    }
    s->step_seqs[s->n_step++] = q;
    q->step_tokens = n;
    q->step_draft = k;
    q->step_sample = sample;
    q->n_draft = 0; /* used (or dropped): the step's result brings new ones */
    s->groups[q->group].budget -= n;
    return MS_OK;
}

/* May q take a cached prefix? Not with penalty counts, nor when its prompt's logprobs are wanted (sched.h). */
static bool seq_may_reuse(const sched_t *s, const sched_seq_t *q)
{
    const req_params_t *p = &q->req->params;
    return s->cfg.block_reuse && !p->prompt_logprobs && p->presence_penalty == 0.0f && p->frequency_penalty == 0.0f &&
           (p->repetition_penalty == 0.0f || p->repetition_penalty == 1.0f);
}

/* q's cached prefix in group g: matched blocks into s->match (count returned),
 * how many of them are idle, the chain hash of the last. */
static int prefix_match(sched_t *s, const sched_seq_t *q, int g, int *n_idle, uint64_t *chain)
{
    *n_idle = 0;
    if (!seq_may_reuse(s, q)) return 0;
    /* the last known token is always fed: its logits give the next token */
    return kv_pool_match(s->groups[g].pool, q->tokens, (q->n_tokens - 1) / s->cfg.block_size, s->match, n_idle, chain);
}

/* Does q share whole prompt blocks with a sequence still prefilling them (not yet published, so no cached
 * prefix finds them)? Admitting q now would compute those blocks twice: the n > 1 choices of one prompt,
 * or one system prompt arriving in several requests together. q then waits (FIFO: the queue behind it
 * too) until they are published at the step's commit, and takes them as its cached prefix. Bounded: the
 * other sequence is running and its prefill advances every step; preempted, it no longer counts. */
static bool prefix_in_flight(sched_t *s, const sched_seq_t *q)
{
    if (!seq_may_reuse(s, q)) return false;
    const int bs = s->cfg.block_size, qb = (q->n_tokens - 1) / bs;
    for (const sched_seq_t *r = s->running.head; r; r = r->next) {
        const int rb = r->n_prompt / bs; /* r's whole prompt blocks: what its prefill will publish */
        if (r->n_hashed >= rb || r->n_hashed >= qb) continue;
        int c = 0; /* leading blocks of q equal to r's */
        while (c < qb && c < rb && !memcmp(q->tokens + (size_t)c * bs, r->tokens + (size_t)c * bs, sizeof(int32_t) * bs))
            c++;
        int n_idle;
        uint64_t chain;
        if (c > r->n_hashed && c > prefix_match(s, q, r->group, &n_idle, &chain)) return true;
    }
    return false;
}

/* Where a waiting sequence could start now, or -1. */
static int pick_group(sched_t *s, const sched_seq_t *q)
{
    int need_all = kv_blocks_for(q->n_tokens + 1 < s->limit ? q->n_tokens + 1 : s->limit, s->cfg.block_size);
    int best = -1, best_match = 0;
    for (int i = 0; i < s->cfg.n_groups; i++) {
        group_t *g = &s->groups[i];
        if (g->running >= s->cfg.max_batch_size || g->budget <= 0) continue;
        int n_idle;
        uint64_t chain;
        int match = prefix_match(s, q, i, &n_idle, &chain);
        int pending = q->n_tokens - match * s->cfg.block_size;
        /* A prompt longer than a whole step is split even without chunked prefill:
         * refusing it would strand it forever. */
        bool may_split = s->cfg.chunked_prefill || pending > s->cfg.max_num_tokens;
        if (!may_split && g->budget < pending) continue;
        if (may_split && !s->cfg.chunked_prefill && g->budget < s->cfg.max_num_tokens) continue;
        /* matched idle blocks leave the free count too (taken before the rest is allocated) */
        if (kv_pool_n_free(g->pool) - n_idle < need_all - match) continue;
        if (best < 0) {
            best = i, best_match = match;
            continue;
        }
        group_t *b = &s->groups[best];
        if (g->running < b->running ||
            (g->running == b->running && (match > best_match || (match == best_match &&
                                                                  kv_pool_n_free(g->pool) > kv_pool_n_free(b->pool)))))
            best = i, best_match = match;
    }
    return best;
}

static ms_status_t admit(sched_t *s, sched_seq_t *q, int gi)
{
    group_t *g = &s->groups[gi];
    int want = q->n_tokens + 1 < s->limit ? q->n_tokens + 1 : s->limit;
    int n_idle;
    uint64_t chain = 0;
    int match = prefix_match(s, q, gi, &n_idle, &chain);
    /* matched blocks first: referenced, they cannot be evicted by the allocation of the rest */
    if (!kv_table_adopt(&q->kv, g->pool, s->match, match) ||
        !kv_table_reserve(&q->kv, g->pool, want, s->cfg.block_size)) {
        kv_table_release(&q->kv, g->pool);
        return MS_ERR(MS_ERR_NOMEM, "sched: out of memory for a block table");
    }
    if (s->cfg.block_reuse) {
        s->prefix_query += (uint64_t)q->n_tokens;
        s->prefix_hit += (uint64_t)match * (uint64_t)s->cfg.block_size;
    }
    if (!q->admitted_once) q->n_reused = match * s->cfg.block_size;
    q->admitted_once = true;
    int slot = 0;
    while (g->slot_used[slot]) slot++; /* pick_group checked running < max_batch_size */
    g->slot_used[slot] = 1;
    g->running++;
    q->group = gi;
    q->slot = slot;
    q->n_cached = match * s->cfg.block_size;
    q->n_hashed = match;
    q->chain = chain;
    q->started = false; /* the first entry after admission starts the slot's state (PROTO_SEQ_START) */
    q->state = SCHED_RUNNING;
    q->admit_no = ++s->admit_counter;
    list_remove(&s->waiting, q);
    list_push_back(&s->running, q);
    return MS_OK;
}

ms_status_t sched_step(sched_t *s, uint32_t step, const proto_plan_t **plan, sched_seq_t ***seqs)
{
    proto_planbuf_reset(&s->pb);
    s->n_step = 0;
    for (int g = 0; g < s->cfg.n_groups; g++) s->groups[g].budget = s->cfg.max_num_tokens;
    for (sched_seq_t *q = s->running.head; q; q = q->next) {
        q->step_tokens = 0;
        q->step_draft = 0;
        q->step_sample = false;
    }

    /* 1. Decodes, oldest first. A decode that crosses into a new block and
     * finds its pool empty preempts the newest sequence of its group (which is
     * never older than q, so nothing already planned is taken away). */
    sched_seq_t *nxt;
    for (sched_seq_t *q = s->running.head; q; q = nxt) {
        nxt = q->next;
        if (q->n_tokens - q->n_cached != 1) continue;
        group_t *g = &s->groups[q->group];
        if (g->budget <= 0) continue;
        bool preempted_self = false;
        while (!kv_table_reserve(&q->kv, g->pool, q->n_cached + 1, s->cfg.block_size)) {
            sched_seq_t *v = newest_in_group(s, q->group);
            if (v == nxt) nxt = v->next;
            seq_preempt(s, v);
            if (v == q) {
                preempted_self = true;
                break;
            }
        }
        if (preempted_self) continue;
        int k = spec_verify_count(s, q, g->budget);
        /* drafts and the module's chained positions only where blocks are free: never a preemption for them */
        if (k > 0 || s->cfg.spec_drafts > 1) {
            int want = q->n_cached + 1 + k + (s->cfg.spec_drafts - 1);
            if (want > s->limit) want = s->limit;
            if (!kv_table_reserve(&q->kv, g->pool, want, s->cfg.block_size) &&
                !kv_table_reserve(&q->kv, g->pool, q->n_cached + 1 + k, s->cfg.block_size))
                k = 0;
        }
        MS_TRY(plan_add(s, q, 1 + k, k));
    }

    /* 2. Prefills already under way (blocks reserved at admission). */
    for (sched_seq_t *q = s->running.head; q; q = q->next) {
        int pending = q->n_tokens - q->n_cached;
        if (pending <= 1 || q->step_tokens) continue;
        int n = pending < s->groups[q->group].budget ? pending : s->groups[q->group].budget;
        if (n <= 0) continue;
        MS_TRY(plan_add(s, q, n, 0));
    }

    /* 3. Admission, FIFO: the head waits rather than being overtaken, so a long
     * prompt cannot be starved by a stream of short ones. */
    while (s->waiting.head) {
        sched_seq_t *q = s->waiting.head;
        if (s->cfg.block_reuse && prefix_in_flight(s, q)) break;
        int gi = pick_group(s, q);
        if (gi < 0) break;
        MS_TRY(admit(s, q, gi));
        int pending = q->n_tokens - q->n_cached;
        int n = pending < s->groups[gi].budget ? pending : s->groups[gi].budget;
        MS_TRY(plan_add(s, q, n, 0));
    }

    MS_TRY(proto_planbuf_finish(&s->pb, step, plan));
    *seqs = s->step_seqs;
    return MS_OK;
}

void sched_commit(sched_t *s)
{
    for (int i = 0; i < s->n_step; i++) {
        sched_seq_t *q = s->step_seqs[i];
        if (!q) continue;
        q->n_cached += q->step_tokens - q->step_draft;
        q->step_tokens = 0;
        q->step_draft = 0;
        if (!s->cfg.block_reuse) continue;
        /* publish every block this step filled (its KV is computed now) */
        const int bs = s->cfg.block_size;
        kv_pool_t *pool = s->groups[q->group].pool;
        for (; (q->n_hashed + 1) * bs <= q->n_cached && q->n_hashed < q->kv.n; q->n_hashed++)
            q->chain = kv_pool_publish(pool, q->kv.ids[q->n_hashed], q->chain, q->tokens + (size_t)q->n_hashed * bs);
    }
}

ms_status_t sched_append(sched_t *s, sched_seq_t *q, int32_t token)
{
    if (q->n_tokens == q->cap_tokens) {
        int cap = q->cap_tokens * 2;
        int32_t *t = realloc(q->tokens, sizeof(int32_t) * (size_t)cap);
        if (!t) return MS_ERR(MS_ERR_NOMEM, "sched: out of memory");
        q->tokens = t;
        q->cap_tokens = cap;
    }
    q->tokens[q->n_tokens++] = token;
    return MS_OK;
}

ms_status_t sched_append_accepted(sched_t *s, sched_seq_t *q, int32_t token)
{
    if (q->n_cached != q->n_tokens)
        return MS_ERR(MS_ERR_INTERNAL, "sched: accepted draft with %d of %d tokens cached", q->n_cached, q->n_tokens);
    MS_TRY(sched_append(s, q, token));
    q->n_cached++;
    return MS_OK;
}

void sched_set_drafts(sched_seq_t *q, const int32_t *drafts, int n)
{
    if (n < 0) n = 0;
    if (n > PROTO_MAX_DRAFT) n = PROTO_MAX_DRAFT;
    memcpy(q->draft, drafts, sizeof(int32_t) * (size_t)n);
    q->n_draft = n;
}

void sched_finish(sched_t *s, sched_seq_t *q)
{
    /* Drop it from this step's list too, so a late sched_commit skips it. */
    for (int i = 0; i < s->n_step; i++)
        if (s->step_seqs[i] == q) s->step_seqs[i] = NULL;
    if (q->state == SCHED_RUNNING) {
        list_remove(&s->running, q);
        seq_unplace(s, q);
    } else {
        list_remove(&s->waiting, q);
    }
    seq_free(q);
}

sched_seq_t *sched_first(sched_t *s) { return s->waiting.head ? s->waiting.head : s->running.head; }

sched_seq_t *sched_next(sched_t *s, sched_seq_t *q)
{
    if (q->next) return q->next;
    return q->state == SCHED_WAITING ? s->running.head : NULL;
}

void sched_stats(const sched_t *s, sched_stats_t *out)
{
    memset(out, 0, sizeof *out);
    out->running = s->running.n;
    out->waiting = s->waiting.n;
    out->preemptions = s->preemptions;
    out->prefix_query_tokens = s->prefix_query;
    out->prefix_hit_tokens = s->prefix_hit;
    for (int g = 0; g < s->cfg.n_groups; g++) {
        int nb = kv_pool_n_blocks(s->groups[g].pool), nf = kv_pool_n_free(s->groups[g].pool);
        out->kv_blocks_used += nb - nf;
        out->kv_blocks_free += nf;
        out->kv_blocks_idle += kv_pool_n_idle(s->groups[g].pool);
        if (g < 64) {
            out->group_running[g] = s->groups[g].running;
            out->group_blocks_used[g] = nb - nf;
        }
    }
}
