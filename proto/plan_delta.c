/* plan_delta.c — delta-encoded plan parts: a rank keeps each of its
 * sequences' state between steps (sampling knobs, block table, position), so
 * a decode step sends 16 bytes and its new blocks instead of the whole entry
 * (proto_delta_t in plan.h).
 *
 * Both ends hold a mirror of that state per slot: rank 0 one per rank (what
 * it sent), the rank its own (what it received). Rank 0 sends a delta only
 * when the full entry is exactly what the rank can rebuild from its mirror —
 * same slot, dp_rank and sampling knobs, position right after the last one,
 * one token, a block table that extends the one held — and both ends update
 * their mirror from every entry the same way, so expanding a part always
 * gives back exactly the full entries it was made from (lossless whatever
 * the scheduler did: a reused slot, a preempted sequence, a failed step all
 * come out as full entries). The token is carried: no rank ever feeds a
 * token rank 0 did not append. Finished sequences need no message: their
 * slot's state is simply replaced by the next full entry. */
#include "proto.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    bool live;
    proto_seq_t seq;    /* the last entry (knobs, pos, n_tokens); offsets meaningless */
    int32_t *blocks;    /* its block table */
    int n_blocks, cap;
} mslot_t;

struct proto_mirror {
    mslot_t *slots;
    int n;
};

ms_status_t proto_mirror_create(proto_mirror_t **out)
{
    proto_mirror_t *m = calloc(1, sizeof *m);
    if (!m) return MS_ERR(MS_ERR_NOMEM, "proto: out of memory");
    *out = m;
    return MS_OK;
}

void proto_mirror_destroy(proto_mirror_t *m)
{
    if (!m) return;
    for (int i = 0; i < m->n; i++) free(m->slots[i].blocks);
    free(m->slots);
    free(m);
}

static mslot_t *slot_get(proto_mirror_t *m, int slot)
{
    if (slot < 0 || slot > (1 << 24)) return NULL;
    if (slot >= m->n) {
        int n = m->n ? m->n : 64;
        while (n <= slot) n *= 2;
        mslot_t *s = realloc(m->slots, sizeof *s * (size_t)n);
        if (!s) return NULL;
        memset(s + m->n, 0, sizeof *s * (size_t)(n - m->n));
        m->slots = s;
        m->n = n;
    }
    return &m->slots[slot];
}

static bool slot_set(mslot_t *s, const proto_seq_t *q, const int32_t *blocks)
{
    if (q->n_blocks > s->cap) {
        int32_t *b = realloc(s->blocks, sizeof *b * (size_t)q->n_blocks);
        if (!b) return false;
        s->blocks = b;
        s->cap = q->n_blocks;
    }
    if (q->n_blocks) memcpy(s->blocks, blocks, sizeof *blocks * (size_t)q->n_blocks);
    s->n_blocks = q->n_blocks;
    s->seq = *q;
    s->live = true;
    return true;
}

/* Can q (blocks b) go as a delta against s? */
static bool delta_ok(const mslot_t *s, const proto_seq_t *q, const int32_t *b)
{
    const proto_seq_t *o = &s->seq;
    return s->live && q->n_tokens == 1 && q->pos == o->pos + o->n_tokens && q->dp_rank == o->dp_rank &&
           q->temperature == o->temperature && q->top_p == o->top_p && q->top_k == o->top_k &&
           q->n_logprobs == o->n_logprobs && q->seed == o->seed && q->presence_penalty == o->presence_penalty &&
           q->frequency_penalty == o->frequency_penalty && q->repetition_penalty == o->repetition_penalty &&
           q->min_p == o->min_p && q->n_prompt == o->n_prompt && q->n_bias == 0 &&
           !(q->flags & (PROTO_SEQ_START | PROTO_SEQ_PROMPT_LP)) &&
           q->n_blocks >= s->n_blocks &&
           q->n_blocks - s->n_blocks <= 0xffff && q->flags <= 0xffff &&
           !memcmp(b, s->blocks, sizeof *b * (size_t)s->n_blocks);
}

static bool grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 4096;
    while (c < need) c *= 2;
    uint8_t *b = realloc(*buf, c);
    if (!b) return false;
    *buf = b;
    *cap = c;
    return true;
}

ms_status_t proto_plan_part_delta(const proto_plan_t *full, int rank, proto_mirror_t *m, uint8_t **buf, size_t *cap,
                                  size_t *len)
{
    const proto_seq_t *s = proto_plan_seqs(full);
    const int32_t *tok = proto_plan_tokens(full), *blk = proto_plan_blocks(full);
    const proto_bias_t *bias = proto_plan_bias(full);
    /* pass 1: classify and count */
    int ns = 0, nd = 0, nt = 0, nb_full = 0, nb_new = 0, nbias = 0;
    for (int i = 0; i < full->n_seqs; i++) {
        const proto_seq_t *q = &s[i];
        if (q->dp_rank >= 0 && q->dp_rank != rank) continue;
        mslot_t *ms = slot_get(m, q->slot);
        if (!ms) return MS_ERR(MS_ERR_NOMEM, "proto: out of memory for slot %d", q->slot);
        if (delta_ok(ms, q, blk + q->blk_off)) nd++, nb_new += q->n_blocks - ms->n_blocks;
        else ns++, nt += q->n_tokens, nb_full += q->n_blocks, nbias += q->n_bias;
    }
    size_t size = proto_plan_size(ns, nt, nb_full + nb_new, nbias) + sizeof(proto_delta_t) * (size_t)nd;
    if (!grow(buf, cap, size)) return MS_ERR(MS_ERR_NOMEM, "proto: out of memory for a %zu-byte plan", size);
    proto_plan_t *p = (proto_plan_t *)*buf;
    memset(p, 0, sizeof *p);
    p->hdr = proto_hdr_make(PROTO_MSG_PLAN, (uint32_t)size, full->hdr.step);
    p->n_seqs = ns, p->n_deltas = nd, p->n_tokens = nt, p->n_blocks = nb_full + nb_new, p->n_bias = nbias;
    p->flags = full->flags;
    proto_seq_t *os = (proto_seq_t *)proto_plan_seqs(p);
    proto_delta_t *od = (proto_delta_t *)proto_plan_deltas(p);
    int32_t *ot = (int32_t *)proto_plan_tokens(p), *ob = (int32_t *)proto_plan_blocks(p);
    proto_bias_t *obias = (proto_bias_t *)proto_plan_bias(p);
    /* pass 2: write (classification again before the mirror moves) and update the mirror */
    int ks = 0, kd = 0, idx = 0, t = 0, bf = 0, bn = nb_full, kb = 0;
    for (int i = 0; i < full->n_seqs; i++) {
        const proto_seq_t *q = &s[i];
        if (q->dp_rank >= 0 && q->dp_rank != rank) continue;
        mslot_t *ms = slot_get(m, q->slot);
        const int32_t *qb = blk + q->blk_off;
        if (delta_ok(ms, q, qb)) {
            int nn = q->n_blocks - ms->n_blocks;
            od[kd++] = (proto_delta_t){.slot = q->slot, .token = tok[q->tok_off], .n_new_blocks = (uint16_t)nn,
                                       .flags = (uint16_t)q->flags, .index = idx};
            if (nn) memcpy(ob + bn, qb + ms->n_blocks, sizeof *qb * (size_t)nn);
            bn += nn;
        } else {
            os[ks] = *q;
            os[ks].tok_off = t, os[ks].blk_off = bf, os[ks].bias_off = kb;
            memcpy(ot + t, tok + q->tok_off, 4u * (size_t)q->n_tokens);
            if (q->n_blocks) memcpy(ob + bf, qb, 4u * (size_t)q->n_blocks);
            if (q->n_bias) memcpy(obias + kb, bias + q->bias_off, sizeof *bias * (size_t)q->n_bias);
            kb += q->n_bias;
            t += q->n_tokens, bf += q->n_blocks, ks++;
        }
        if (!slot_set(ms, q, qb)) return MS_ERR(MS_ERR_NOMEM, "proto: out of memory for slot %d", q->slot);
        idx++;
    }
    *len = size;
    return MS_OK;
}

ms_status_t proto_plan_expand(const proto_plan_t *part, proto_mirror_t *m, proto_planbuf_t *pb,
                              const proto_plan_t **out)
{
    proto_planbuf_reset(pb);
    pb->flags = part->flags;
    const proto_seq_t *s = proto_plan_seqs(part);
    const proto_delta_t *d = proto_plan_deltas(part);
    const int32_t *tok = proto_plan_tokens(part), *blk = proto_plan_blocks(part);
    const proto_bias_t *bias = proto_plan_bias(part);
    int total = part->n_seqs + part->n_deltas, ks = 0, kd = 0, bn = 0;
    for (int i = 0; i < part->n_seqs; i++)
        if (s[i].blk_off + s[i].n_blocks > bn) bn = s[i].blk_off + s[i].n_blocks;
    for (int idx = 0; idx < total; idx++) {
        if (kd < part->n_deltas && d[kd].index == idx) {
            const proto_delta_t *x = &d[kd++];
            mslot_t *ms = slot_get(m, x->slot);
            if (!ms || !ms->live)
                return MS_ERR(MS_ERR_FORMAT, "proto: delta for slot %d, which this rank does not hold", x->slot);
            proto_seq_t q = ms->seq;
            q.pos = ms->seq.pos + ms->seq.n_tokens;
            q.n_tokens = 1;
            q.flags = x->flags;
            q.n_blocks = ms->n_blocks + x->n_new_blocks;
            q.n_bias = 0; /* logit_bias travels with START entries only */
            if (bn + x->n_new_blocks > part->n_blocks)
                return MS_ERR(MS_ERR_FORMAT, "proto: delta for slot %d overruns the block array", x->slot);
            /* the table grows in place in the mirror, then the entry is added from it */
            if (q.n_blocks > ms->cap) {
                int32_t *b = realloc(ms->blocks, sizeof *b * (size_t)q.n_blocks);
                if (!b) return MS_ERR(MS_ERR_NOMEM, "proto: out of memory for slot %d", x->slot);
                ms->blocks = b;
                ms->cap = q.n_blocks;
            }
            if (x->n_new_blocks) memcpy(ms->blocks + ms->n_blocks, blk + bn, 4u * x->n_new_blocks);
            bn += x->n_new_blocks;
            ms->n_blocks = q.n_blocks;
            ms->seq = q;
            MS_TRY(proto_planbuf_add(pb, &q, &x->token, 1, ms->blocks, q.n_blocks));
        } else {
            if (ks >= part->n_seqs) return MS_ERR(MS_ERR_FORMAT, "proto: plan entry %d is missing", idx);
            const proto_seq_t *q = &s[ks++];
            mslot_t *ms = slot_get(m, q->slot);
            if (!ms || !slot_set(ms, q, blk + q->blk_off))
                return MS_ERR(MS_ERR_NOMEM, "proto: out of memory for slot %d", q->slot);
            MS_TRY(proto_planbuf_add(pb, q, tok + q->tok_off, q->n_tokens, blk + q->blk_off, q->n_blocks));
            MS_TRY(proto_planbuf_add_bias(pb, bias + q->bias_off, q->n_bias));
        }
    }
    return proto_planbuf_finish(pb, part->hdr.step, out);
}
