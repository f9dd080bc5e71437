/* penalty.c — per-slot penalty lists (penalty.h). */
#include "worker/penalty.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    bool live;       /* tracking the slot's current sequence (counts or bias) */
    int n;           /* entries */
    kern_pen_t *ent; /* host twin of the slot's device list [cap] */
    int32_t *pend;   /* per entry: its index in this step's sets, or -1 */
    int32_t *ht;     /* open addressing, token -> entry + 1 (0 empty); ht_cap a power of two */
    int ht_cap;
} pslot_t;

struct pen {
    const kern_ops_t *k;
    int slots, vocab;
    int64_t cap;              /* entries per slot */
    pslot_t *s;               /* [slots] */
    kern_pen_t *lists;        /* device [slots * cap], NULL until needed */
    kern_pen_set_t *sets;     /* host staging (pinned) [sets_cap] */
    kern_pen_set_t *sets_dev; /* device [sets_cap] */
    int n_sets, sets_cap;
};

ms_status_t pen_create(const kern_ops_t *k, int slots, int max_seq_len, int vocab, pen_t **out)
{
    pen_t *p = calloc(1, sizeof *p);
    if (!p || !(p->s = calloc((size_t)slots, sizeof *p->s))) {
        free(p);
        return MS_ERR(MS_ERR_NOMEM, "penalty: out of memory");
    }
    p->k = k, p->slots = slots, p->vocab = vocab;
    p->cap = (max_seq_len < vocab ? max_seq_len : vocab) + PROTO_MAX_LOGIT_BIAS;
    *out = p;
    return MS_OK;
}

void pen_destroy(pen_t *p)
{
    if (!p) return;
    for (int i = 0; i < p->slots; i++) free(p->s[i].ent), free(p->s[i].pend), free(p->s[i].ht);
    free(p->s);
    if (p->lists) p->k->free(p->lists);
    if (p->sets_dev) p->k->free(p->sets_dev);
    if (p->sets) p->k->host_free(p->sets);
    free(p);
}

static bool needs_list(const proto_seq_t *q) { return proto_seq_counts(q) || q->n_bias > 0; }

ms_status_t pen_check(const pen_t *p, const proto_seq_t *q, int i)
{
    if (!needs_list(q)) return MS_OK;
    if (q->slot < 0 || q->slot >= p->slots)
        return MS_ERR(MS_ERR_INVALID, "engine: plan seq %d: slot %d outside [0, %d)", i, q->slot, p->slots);
    if ((q->flags & PROTO_SEQ_START) && q->pos != 0 && proto_seq_counts(q))
        return MS_ERR(MS_ERR_INVALID, "engine: plan seq %d (slot %d): a penalized sequence must start at position "
                                      "0, not %d (its earlier tokens are not counted)", i, q->slot, q->pos);
    if (!(q->flags & PROTO_SEQ_START) && !p->s[q->slot].live)
        return MS_ERR(MS_ERR_INVALID, "engine: plan seq %d (slot %d) continues penalty state this rank does not "
                                      "hold (no START entry)", i, q->slot);
    return MS_OK;
}

void pen_drop(pen_t *p, int slot)
{
    if (slot >= 0 && slot < p->slots) p->s[slot].live = false;
}

ms_status_t pen_prepare(pen_t *p, const proto_plan_t *plan, const bool *mine, int max_tokens)
{
    const proto_seq_t *sq = proto_plan_seqs(plan);
    int need_sets = 0;
    bool any = false;
    for (int i = 0; i < plan->n_seqs; i++) {
        const proto_seq_t *q = &sq[i];
        if (!mine[i] || !needs_list(q)) continue;
        MS_TRY(pen_check(p, q, i));
        need_sets += q->n_tokens + q->n_bias;
        any = true;
    }
    if (!any) return MS_OK;
    const kern_ops_t *k = p->k;
    if (!p->lists) MS_TRY(k->alloc(sizeof(kern_pen_t) * (size_t)p->slots * (size_t)p->cap, (void **)&p->lists));
    if (need_sets < max_tokens) need_sets = max_tokens;
    if (need_sets > p->sets_cap) {
        kern_pen_set_t *h = NULL, *d = NULL;
        MS_TRY(k->host_alloc(sizeof *h * (size_t)need_sets, (void **)&h));
        if (k->alloc(sizeof *d * (size_t)need_sets, (void **)&d) != MS_OK) {
            k->host_free(h);
            return MS_ERR(MS_ERR_NOMEM, "penalty: out of device memory for %d list writes", need_sets);
        }
        if (p->sets) k->host_free(p->sets);
        if (p->sets_dev) k->free(p->sets_dev);
        p->sets = h, p->sets_dev = d, p->sets_cap = need_sets;
    }
    for (int i = 0; i < plan->n_seqs; i++) {
        const proto_seq_t *q = &sq[i];
        if (!mine[i] || !needs_list(q) || p->s[q->slot].ent) continue;
        pslot_t *s = &p->s[q->slot];
        s->ent = malloc(sizeof *s->ent * (size_t)p->cap);
        s->pend = malloc(sizeof *s->pend * (size_t)p->cap);
        s->ht_cap = 64;
        s->ht = calloc((size_t)s->ht_cap, sizeof *s->ht);
        if (!s->ent || !s->pend || !s->ht) {
            free(s->ent), free(s->pend), free(s->ht);
            memset(s, 0, sizeof *s);
            return MS_ERR(MS_ERR_NOMEM, "penalty: out of memory for slot %d", q->slot);
        }
    }
    return MS_OK;
}

static uint32_t hash(int32_t t) { return (uint32_t)t * 2654435761u; }

/* Entry of token t in slot s (created when absent), or -1 when full. */
static int entry(pen_t *p, pslot_t *s, int32_t t)
{
    uint32_t m = (uint32_t)s->ht_cap - 1, h = hash(t) & m;
    for (; s->ht[h]; h = (h + 1) & m)
        if (s->ent[s->ht[h] - 1].token == t) return s->ht[h] - 1;
    if (s->n >= p->cap) return -1;
    if (2 * (s->n + 1) > s->ht_cap) { /* grow the table, then insert */
        int nc = s->ht_cap * 2;
        int32_t *ht = calloc((size_t)nc, sizeof *ht);
        if (!ht) return -1;
        for (int i = 0; i < s->n; i++) {
            uint32_t g = hash(s->ent[i].token) & (uint32_t)(nc - 1);
            while (ht[g]) g = (g + 1) & (uint32_t)(nc - 1);
            ht[g] = i + 1;
        }
        free(s->ht);
        s->ht = ht, s->ht_cap = nc, m = (uint32_t)nc - 1;
        for (h = hash(t) & m; s->ht[h]; h = (h + 1) & m) {}
    }
    s->ht[h] = s->n + 1;
    s->ent[s->n] = (kern_pen_t){.token = t};
    s->pend[s->n] = -1;
    return s->n++;
}

/* Queue entry j of slot `slot` for upload (once per step). */
static void touch(pen_t *p, int slot, int j)
{
    pslot_t *s = &p->s[slot];
    if (s->pend[j] < 0) {
        if (p->n_sets >= p->sets_cap) return; /* sized by pen_prepare: cannot happen */
        s->pend[j] = p->n_sets++;
    }
    p->sets[s->pend[j]] = (kern_pen_set_t){.at = (int64_t)slot * p->cap + j, .e = s->ent[j]};
}

void pen_seq(pen_t *p, const proto_seq_t *q, const int32_t *tokens, const proto_bias_t *bias)
{
    if (q->slot < 0 || q->slot >= p->slots) return;
    pslot_t *s = &p->s[q->slot];
    if ((q->flags & PROTO_SEQ_START) && (!needs_list(q) || !s->ent)) {
        s->live = false; /* a new sequence without a list: the slot's old one is gone */
        return;
    }
    if (!(q->flags & PROTO_SEQ_START) && !s->live) return;
    if (q->flags & PROTO_SEQ_START) {
        memset(s->ht, 0, sizeof *s->ht * (size_t)s->ht_cap);
        s->n = 0;
        s->live = true;
        for (int i = 0; i < q->n_bias; i++) {
            int j = entry(p, s, bias[i].token);
            if (j < 0) continue;
            s->ent[j].bias = bias[i].bias;
            touch(p, q->slot, j);
        }
    }
    if (!proto_seq_counts(q)) return;
    for (int t = 0; t < q->n_tokens; t++) {
        int j = entry(p, s, tokens[t]);
        if (j < 0) continue; /* full: cannot happen (capacity covers every position) */
        if (q->pos + t < q->n_prompt) s->ent[j].in_prompt = 1;
        else s->ent[j].n_out++;
        touch(p, q->slot, j);
    }
}

kern_adjust_t pen_row(const pen_t *p, const proto_seq_t *q, float temperature, int32_t mask_token)
{
    kern_adjust_t a = {.presence = q->presence_penalty, .frequency = q->frequency_penalty,
                       .repetition = q->repetition_penalty != 0.0f ? q->repetition_penalty : 1.0f, .min_p = q->min_p, .temperature = temperature,
                       .mask_token = mask_token};
    /* a live slot has a list (its bias, its counts) whatever this entry carries: logit_bias came with START */
    const pslot_t *s = q->slot >= 0 && q->slot < p->slots ? &p->s[q->slot] : NULL;
    if (s && s->live) a.list_off = (int64_t)q->slot * p->cap, a.n_list = s->n;
    return a;
}

ms_status_t pen_flush(pen_t *p, kern_ctx_t *cx, const kern_pen_set_t **sets, int *n_sets, kern_pen_t **lists,
                      int64_t *cap)
{
    *sets = p->sets_dev, *n_sets = p->n_sets, *lists = p->lists, *cap = p->lists ? (int64_t)p->slots * p->cap : 0;
    if (!p->n_sets) return MS_OK;
    for (int i = 0; i < p->n_sets; i++) {
        int slot = (int)(p->sets[i].at / p->cap), j = (int)(p->sets[i].at % p->cap);
        p->s[slot].pend[j] = -1;
    }
    ms_status_t st = p->k->upload(cx, p->sets_dev, p->sets, sizeof *p->sets * (size_t)p->n_sets);
    p->n_sets = 0;
    return st;
}
