/* tok_decode.c — ids -> text: the ByteLevel decoder (each token's bytes were
 * precomputed by tok_load), lossy UTF-8 as Rust's String::from_utf8_lossy
 * (each maximal invalid subpart becomes one U+FFFD), and the incremental
 * detokenizer that holds an incomplete UTF-8 tail between pushes. */
#include "tok_internal.h"

#include <string.h>

int tok_utf8_step(const uint8_t *s, size_t len)
{
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    int need;
    uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c == 0xE0) need = 3, lo = 0xA0;
    else if (c >= 0xE1 && c <= 0xEC) need = 3;
    else if (c == 0xED) need = 3, hi = 0x9F;
    else if (c >= 0xEE && c <= 0xEF) need = 3;
    else if (c == 0xF0) need = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) need = 4;
    else if (c == 0xF4) need = 4, hi = 0x8F;
    else return -1;
    for (int k = 1; k < need; k++) {
        if ((size_t)k >= len) return 0;
        uint8_t b = s[k];
        if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return -k;
    }
    return need;
}

typedef struct {
    char *v;
    size_t n, cap;
} buf_t;

static ms_status_t buf_reserve(buf_t *b, size_t more)
{
    if (b->n + more + 1 <= b->cap) return MS_OK;
    size_t nc = (b->n + more + 1) * 2;
    if (nc < 64) nc = 64;
    char *nv = realloc(b->v, nc);
    if (!nv) return MS_ERR(MS_ERR_NOMEM, "tokenizer: out of memory");
    b->v = nv;
    b->cap = nc;
    return MS_OK;
}

static const char k_replacement[3] = {(char)0xEF, (char)0xBF, (char)0xBD};

/* Append the lossy conversion of s[0..len) to b. With `final` false an
 * incomplete sequence at the end is not converted: returns its start so the
 * caller can hold those bytes. */
static ms_status_t lossy_append(buf_t *b, const uint8_t *s, size_t len, bool final, size_t *consumed)
{
    MS_TRY(buf_reserve(b, len * 3)); /* worst case: every byte becomes U+FFFD */
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && s[j] < 0x80) j++;
        memcpy(b->v + b->n, s + i, j - i);
        b->n += j - i;
        i = j;
        if (i >= len) break;
        int k = tok_utf8_step(s + i, len - i);
        if (k > 0) {
            memcpy(b->v + b->n, s + i, (size_t)k);
            b->n += (size_t)k;
            i += (size_t)k;
        } else if (k < 0) {
            memcpy(b->v + b->n, k_replacement, 3);
            b->n += 3;
            i += (size_t)-k;
        } else if (final) { /* truncated at the very end: one maximal subpart */
            memcpy(b->v + b->n, k_replacement, 3);
            b->n += 3;
            i = len;
        } else {
            break;
        }
    }
    b->v[b->n] = 0;
    *consumed = i;
    return MS_OK;
}

static inline const uint8_t *token_of(const tok_t *tok, int32_t id, bool skip_special, size_t *len)
{
    if (id < 0 || (size_t)id >= tok->n_ids) return NULL;
    uint8_t f = tok->tok_flags[id];
    if (!(f & TOK_F_EXISTS) || (skip_special && (f & TOK_F_SPECIAL))) return NULL;
    *len = tok->tok_len[id];
    return (const uint8_t *)tok->tok_blob + tok->tok_off[id];
}

ms_status_t tok_decode(const tok_t *tok, const int32_t *ids, size_t n, bool skip_special, char **text, size_t *len)
{
    buf_t raw = {0}, outb = {0};
    ms_status_t st;
    MS_TRY_GOTO(st, buf_reserve(&raw, 16), fail);
    for (size_t i = 0; i < n; i++) {
        size_t l;
        const uint8_t *p = token_of(tok, ids[i], skip_special, &l);
        if (!p) continue;
        MS_TRY_GOTO(st, buf_reserve(&raw, l), fail);
        memcpy(raw.v + raw.n, p, l);
        raw.n += l;
    }
    raw.v[raw.n] = 0;
    if (tok_utf8_valid((const uint8_t *)raw.v, raw.n)) {
        *text = raw.v;
        *len = raw.n;
        return MS_OK;
    }
    size_t used;
    MS_TRY_GOTO(st, lossy_append(&outb, (const uint8_t *)raw.v, raw.n, true, &used), fail);
    free(raw.v);
    *text = outb.v;
    *len = outb.n;
    return MS_OK;
fail:
    free(raw.v);
    free(outb.v);
    return st;
}

struct tok_stream {
    const tok_t *tok;
    bool skip_special;
    uint8_t pend[8]; /* an incomplete UTF-8 prefix: at most 3 bytes */
    size_t npend;
    buf_t work; /* pend + the new token's bytes */
    buf_t out;
};

ms_status_t tok_stream_create(const tok_t *tok, bool skip_special, tok_stream_t **out)
{
    tok_stream_t *st = calloc(1, sizeof *st);
    if (!st) return MS_ERR(MS_ERR_NOMEM, "tokenizer: out of memory");
    st->tok = tok;
    st->skip_special = skip_special;
    if (buf_reserve(&st->out, 64) != MS_OK || buf_reserve(&st->work, 64) != MS_OK) {
        tok_stream_destroy(st);
        return MS_ERR(MS_ERR_NOMEM, "tokenizer: out of memory");
    }
    *out = st;
    return MS_OK;
}

ms_status_t tok_stream_push(tok_stream_t *st, int32_t id, const char **text, size_t *len)
{
    st->out.n = 0;
    st->out.v[0] = 0;
    size_t l;
    const uint8_t *p = token_of(st->tok, id, st->skip_special, &l);
    if (p) {
        st->work.n = 0;
        MS_TRY(buf_reserve(&st->work, st->npend + l));
        memcpy(st->work.v, st->pend, st->npend);
        memcpy(st->work.v + st->npend, p, l);
        st->work.n = st->npend + l;
        size_t used;
        MS_TRY(lossy_append(&st->out, (const uint8_t *)st->work.v, st->work.n, false, &used));
        st->npend = st->work.n - used;
        memcpy(st->pend, st->work.v + used, st->npend);
    }
    *text = st->out.v;
    *len = st->out.n;
    return MS_OK;
}

ms_status_t tok_stream_flush(tok_stream_t *st, const char **text, size_t *len)
{
    st->out.n = 0;
    st->out.v[0] = 0;
    size_t used;
    MS_TRY(lossy_append(&st->out, st->pend, st->npend, true, &used));
    st->npend = 0;
    *text = st->out.v;
    *len = st->out.n;
    return MS_OK;
}

void tok_stream_destroy(tok_stream_t *st)
{
    if (!st) return;
    free(st->work.v);
    free(st->out.v);
    free(st);
}
