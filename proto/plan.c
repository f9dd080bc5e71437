/* plan.c — pack and check step plans (proto.h). The only code that knows the
 * byte layout of plan.h besides its inline views. */
#include "proto.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void proto_planbuf_init(proto_planbuf_t *b) { memset(b, 0, sizeof *b); }

void proto_planbuf_free(proto_planbuf_t *b)
{
    free(b->seqs);
    free(b->tokens);
    free(b->blocks);
    free(b->bias);
    free(b->msg);
    memset(b, 0, sizeof *b);
}

void proto_planbuf_reset(proto_planbuf_t *b) { b->n_seqs = b->n_tokens = b->n_blocks = b->n_bias = 0; }

static bool grow(void **p, int *cap, int need, size_t elem)
{
    if (need <= *cap) return true;
    int c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, elem * (size_t)c);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

ms_status_t proto_planbuf_add(proto_planbuf_t *b, const proto_seq_t *seq, const int32_t *tokens, int n_tokens,
                              const int32_t *blocks, int n_blocks)
{
    if (n_tokens <= 0 || n_blocks < 0) return MS_ERR(MS_ERR_INTERNAL, "plan: sequence with %d tokens", n_tokens);
    if (!grow((void **)&b->seqs, &b->cap_seqs, b->n_seqs + 1, sizeof *b->seqs) ||
        !grow((void **)&b->tokens, &b->cap_tokens, b->n_tokens + n_tokens, sizeof(int32_t)) ||
        !grow((void **)&b->blocks, &b->cap_blocks, b->n_blocks + n_blocks, sizeof(int32_t)))
        return MS_ERR(MS_ERR_NOMEM, "plan: out of memory");
    proto_seq_t *s = &b->seqs[b->n_seqs++];
    *s = *seq;
    s->n_tokens = n_tokens;
    s->tok_off = b->n_tokens;
    s->blk_off = b->n_blocks;
    s->n_blocks = n_blocks;
    s->bias_off = b->n_bias;
    s->n_bias = 0;
    memcpy(b->tokens + b->n_tokens, tokens, sizeof(int32_t) * (size_t)n_tokens);
    if (n_blocks) memcpy(b->blocks + b->n_blocks, blocks, sizeof(int32_t) * (size_t)n_blocks);
    b->n_tokens += n_tokens;
    b->n_blocks += n_blocks;
    return MS_OK;
}

ms_status_t proto_planbuf_add_bias(proto_planbuf_t *b, const proto_bias_t *bias, int n)
{
    if (n <= 0) return MS_OK;
    if (!b->n_seqs || n > PROTO_MAX_LOGIT_BIAS) return MS_ERR(MS_ERR_INTERNAL, "plan: %d bias entries", n);
    if (!grow((void **)&b->bias, &b->cap_bias, b->n_bias + n, sizeof *b->bias))
        return MS_ERR(MS_ERR_NOMEM, "plan: out of memory");
    proto_seq_t *s = &b->seqs[b->n_seqs - 1];
    s->bias_off = b->n_bias;
    s->n_bias = n;
    memcpy(b->bias + b->n_bias, bias, sizeof *bias * (size_t)n);
    b->n_bias += n;
    return MS_OK;
}

proto_hdr_t proto_hdr_make(proto_msg_type_t type, uint32_t length, uint32_t step)
{
    proto_hdr_t h = {.magic = PROTO_MAGIC, .version = PROTO_VERSION, .type = (uint16_t)type, .length = length, .step = step};
    return h;
}

ms_status_t proto_planbuf_finish(proto_planbuf_t *b, uint32_t step, const proto_plan_t **out)
{
    size_t size = proto_plan_size(b->n_seqs, b->n_tokens, b->n_blocks, b->n_bias);
    if (size > b->msg_cap) {
        uint8_t *m = realloc(b->msg, size);
        if (!m) return MS_ERR(MS_ERR_NOMEM, "plan: out of memory (%zu bytes)", size);
        b->msg = m;
        b->msg_cap = size;
    }
    proto_plan_t *p = (proto_plan_t *)b->msg;
    memset(p, 0, sizeof *p);
    p->hdr = proto_hdr_make(PROTO_MSG_PLAN, (uint32_t)size, step);
    p->n_seqs = b->n_seqs;
    p->n_tokens = b->n_tokens;
    p->n_blocks = b->n_blocks;
    p->n_bias = b->n_bias;
    if (b->n_seqs) memcpy((void *)proto_plan_seqs(p), b->seqs, sizeof(proto_seq_t) * (size_t)b->n_seqs);
    if (b->n_tokens) memcpy((void *)proto_plan_tokens(p), b->tokens, 4u * (size_t)b->n_tokens);
    if (b->n_blocks) memcpy((void *)proto_plan_blocks(p), b->blocks, 4u * (size_t)b->n_blocks);
    if (b->n_bias) memcpy((void *)proto_plan_bias(p), b->bias, sizeof *b->bias * (size_t)b->n_bias);
    *out = p;
    return MS_OK;
}

void proto_bits_describe(const proto_bit_name_t *names, size_t n_names, uint32_t bits, char *buf, size_t n)
{
    size_t o = 0;
    if (!n) return;
    buf[0] = 0;
    for (size_t i = 0; i < n_names && o + 2 < n; i++)
        if (bits & names[i].bit) o += (size_t)snprintf(buf + o, n - o, "%s%s", o ? ", " : "", names[i].what);
    if (!buf[0]) snprintf(buf, n, "unknown fault bits %#x", bits);
}

void proto_fault_describe(uint32_t bits, char *buf, size_t n)
{
    static const proto_bit_name_t names[] = {
        {PROTO_FAULT_PLAN, "the worker's plan check rejected its entry"},
        {PROTO_FAULT_TOKEN, "token id outside the vocabulary"},
        {PROTO_FAULT_BLOCK, "KV row or block outside the cache"},
        {PROTO_FAULT_INJECTED, "injected failure (MOESERVE_FAULT_SEQ test hook)"},
        {PROTO_FAULT_LOGITS, "non-finite logits (NaN or infinity)"},
    };
    proto_bits_describe(names, sizeof names / sizeof names[0], bits, buf, n);
}

ms_status_t proto_hdr_check(const proto_hdr_t *h, size_t max_len)
{
    if (h->magic != PROTO_MAGIC)
        return MS_ERR(MS_ERR_FORMAT, "proto: bad magic 0x%08x (expected 0x%08x): ranks run different programs?",
                      h->magic, PROTO_MAGIC);
    if (h->version != PROTO_VERSION)
        return MS_ERR(MS_ERR_FORMAT, "proto: version %u, this build speaks %u: ranks run different builds",
                      h->version, PROTO_VERSION);
    if (h->type < PROTO_MSG_PLAN || h->type > PROTO_MSG_SHUTDOWN)
        return MS_ERR(MS_ERR_FORMAT, "proto: unknown message type %u", h->type);
    if (h->length < sizeof *h || h->length > max_len)
        return MS_ERR(MS_ERR_FORMAT, "proto: message length %u outside [%zu, %zu]", h->length, sizeof *h, max_len);
    return MS_OK;
}

ms_status_t proto_plan_check(const void *buf, size_t len)
{
    if (len < sizeof(proto_plan_t)) return MS_ERR(MS_ERR_FORMAT, "proto: plan of %zu bytes is too short", len);
    const proto_plan_t *p = buf;
    MS_TRY(proto_hdr_check(&p->hdr, len));
    if (p->hdr.type != PROTO_MSG_PLAN) return MS_ERR(MS_ERR_FORMAT, "proto: message type %u is not a plan", p->hdr.type);
    if (p->n_seqs < 0 || p->n_tokens < 0 || p->n_blocks < 0 || p->n_deltas < 0 || p->n_bias < 0 ||
        p->n_seqs > (1 << 24) || p->n_deltas > (1 << 24) || p->n_tokens > (1 << 28) || p->n_blocks > (1 << 28) ||
        p->n_bias > (1 << 28))
        return MS_ERR(MS_ERR_FORMAT, "proto: plan counts out of range (%d seqs, %d deltas, %d tokens, %d blocks)",
                      p->n_seqs, p->n_deltas, p->n_tokens, p->n_blocks);
    size_t want = proto_plan_size(p->n_seqs, p->n_tokens, p->n_blocks, p->n_bias) +
                  sizeof(proto_delta_t) * (size_t)p->n_deltas;
    if (p->hdr.length != want || p->hdr.length != len)
        return MS_ERR(MS_ERR_FORMAT, "proto: plan length %u does not match its counts (%zu bytes received)",
                      p->hdr.length, len);
    const proto_seq_t *s = proto_plan_seqs(p);
    int64_t tok_sum = 0, blk_end = 0;
    for (int i = 0; i < p->n_seqs; i++) {
        const proto_seq_t *q = &s[i];
        if (q->n_tokens <= 0 || q->tok_off < 0 || (int64_t)q->tok_off + q->n_tokens > p->n_tokens || q->pos < 0 ||
            q->n_blocks < 0 || q->blk_off < 0 || (int64_t)q->blk_off + q->n_blocks > p->n_blocks || q->slot < 0 ||
            q->n_logprobs > PROTO_MAX_LOGPROBS || q->n_bias < 0 || q->n_bias > PROTO_MAX_LOGIT_BIAS ||
            q->bias_off < 0 || (int64_t)q->bias_off + q->n_bias > p->n_bias)
            return MS_ERR(MS_ERR_FORMAT, "proto: plan sequence %d has out-of-range fields", i);
        tok_sum += q->n_tokens;
        if (q->blk_off + q->n_blocks > blk_end) blk_end = q->blk_off + q->n_blocks;
    }
    if (tok_sum != p->n_tokens)
        return MS_ERR(MS_ERR_FORMAT, "proto: plan sequences feed %lld tokens, header says %d", (long long)tok_sum,
                      p->n_tokens);
    const proto_delta_t *d = proto_plan_deltas(p);
    int64_t new_blocks = 0, total = (int64_t)p->n_seqs + p->n_deltas;
    for (int i = 0; i < p->n_deltas; i++) {
        if (d[i].slot < 0 || d[i].index < 0 || d[i].index >= total || (i && d[i].index <= d[i - 1].index))
            return MS_ERR(MS_ERR_FORMAT, "proto: plan delta %d has out-of-range fields", i);
        new_blocks += d[i].n_new_blocks;
    }
    if (p->n_deltas && blk_end + new_blocks != p->n_blocks)
        return MS_ERR(MS_ERR_FORMAT, "proto: plan deltas add %lld blocks, %lld left in the plan", (long long)new_blocks,
                      (long long)(p->n_blocks - blk_end));
    return MS_OK;
}

/* A sequence goes to `rank` when that rank owns its attention (DP) or every
 * rank runs it (TP, dp_rank -1): proto_seq_runs. */
size_t proto_plan_part(const proto_plan_t *full, int rank, void *dst)
{
    const proto_seq_t *s = proto_plan_seqs(full);
    const int32_t *tok = proto_plan_tokens(full), *blk = proto_plan_blocks(full);
    const proto_bias_t *bias = proto_plan_bias(full);
    int ns = 0, nt = 0, nb = 0, nbias = 0;
    for (int i = 0; i < full->n_seqs; i++)
        if (proto_seq_runs(&s[i], rank)) ns++, nt += s[i].n_tokens, nb += s[i].n_blocks, nbias += s[i].n_bias;
    size_t size = proto_plan_size(ns, nt, nb, nbias);
    if (!dst) return size;
    proto_plan_t *p = dst;
    memset(p, 0, sizeof *p);
    p->hdr = proto_hdr_make(PROTO_MSG_PLAN, (uint32_t)size, full->hdr.step);
    p->n_seqs = ns, p->n_tokens = nt, p->n_blocks = nb, p->n_bias = nbias;
    proto_seq_t *o = (proto_seq_t *)proto_plan_seqs(p);
    int32_t *ot = (int32_t *)proto_plan_tokens(p), *ob = (int32_t *)proto_plan_blocks(p);
    proto_bias_t *obias = (proto_bias_t *)proto_plan_bias(p);
    int k = 0;
    nt = nb = nbias = 0;
    for (int i = 0; i < full->n_seqs; i++) {
        if (!proto_seq_runs(&s[i], rank)) continue;
        o[k] = s[i];
        o[k].tok_off = nt, o[k].blk_off = nb, o[k].bias_off = nbias;
        memcpy(ot + nt, tok + s[i].tok_off, 4u * (size_t)s[i].n_tokens);
        if (s[i].n_blocks) memcpy(ob + nb, blk + s[i].blk_off, 4u * (size_t)s[i].n_blocks);
        if (s[i].n_bias) memcpy(obias + nbias, bias + s[i].bias_off, sizeof *bias * (size_t)s[i].n_bias);
        nt += s[i].n_tokens, nb += s[i].n_blocks, nbias += s[i].n_bias, k++;
    }
    return size;
}
