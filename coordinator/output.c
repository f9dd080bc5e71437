/* output.c — per-request output processing on the engine thread (output.h).
 *
 * Text moves through two buffers: `hold` is detokenized text that might be
 * the start of a stop string (only its longest suffix that is a prefix of
 * some stop string stays there), `text` is text that will certainly be sent
 * and waits only for the next chunk. The split point is always a character
 * boundary: a held suffix starts with a stop string's first byte, which is a
 * UTF-8 lead byte. */
#include "output.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

struct out_seq {
    out_ctx_t ctx;
    req_t *r;                /* borrowed; the engine loop holds a reference */
    tok_stream_t *ts;
    char *text;              /* pending, certain */
    size_t len, cap;
    char *hold;              /* pending, maybe a stop string's start */
    size_t hlen, hcap;
    int32_t *ids;            /* pending token ids */
    float *lps;              /* pending logprobs (logprobs requested) */
    proto_result_t *top;     /* pending top-N (logprobs requested) */
    int n, ncap;
    int n_completion;
    double cum_logprob;      /* of every token so far */
    int n_chunks;            /* pushed so far */
    proto_plp_t *plp;        /* pending prompt logprobs for positions plp_pos0.. (n_plp of them) */
    int n_plp, plp_cap, plp_pos0;
    int plp_next;            /* the next prompt position expected (1 first) */
    bool finished;
};

double out_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

ms_status_t out_seq_create(const out_ctx_t *ctx, req_t *r, out_seq_t **out)
{
    out_seq_t *o = calloc(1, sizeof *o);
    if (!o) return MS_ERR(MS_ERR_NOMEM, "output: out of memory");
    o->ctx = *ctx;
    o->r = r;
    o->plp_next = o->plp_pos0 = 1;
    if (ctx->tok) {
        ms_status_t st = tok_stream_create(ctx->tok, r->params.skip_special_tokens, &o->ts);
        if (st != MS_OK) {
            free(o);
            return st;
        }
    }
    *out = o;
    return MS_OK;
}

void out_seq_destroy(out_seq_t *o)
{
    if (!o) return;
    if (o->ts) tok_stream_destroy(o->ts);
    free(o->text);
    free(o->hold);
    free(o->ids);
    free(o->lps);
    free(o->top);
    free(o->plp);
    free(o);
}

/* Read by the engine thread while the output thread writes it. */
bool out_seq_finished(const out_seq_t *o) { return __atomic_load_n(&o->finished, __ATOMIC_ACQUIRE); }

static bool buf_add(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 64;
        while (c < *len + n + 1) c *= 2;
        char *b = realloc(*buf, c);
        if (!b) return false;
        *buf = b;
        *cap = c;
    }
    if (n) memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
    return true;
}

/* Move hold[0..n) to text. */
static bool hold_release(out_seq_t *o, size_t n)
{
    if (o->hlen == 0) return true;
    if (!buf_add(&o->text, &o->len, &o->cap, o->hold, n)) return false;
    memmove(o->hold, o->hold + n, o->hlen - n);
    o->hlen -= n;
    if (o->hold) o->hold[o->hlen] = '\0';
    return true;
}

/* The detokenizer's incomplete tail (at the very end only). */
static bool flush_stream(out_seq_t *o)
{
    if (!o->ts) return true;
    const char *t;
    size_t tl;
    if (tok_stream_flush(o->ts, &t, &tl) != MS_OK) return false;
    return buf_add(&o->text, &o->len, &o->cap, t, tl);
}

static ms_status_t push_chunk(out_seq_t *o, coord_t *c, req_finish_t finish, const char *error)
{
    req_chunk_t *ch = calloc(1, sizeof *ch);
    if (!ch) goto nomem;
    ch->text = malloc(o->len + 1);
    if (!ch->text) goto nomem_chunk;
    if (o->len) memcpy(ch->text, o->text, o->len);
    ch->text[o->len] = '\0';
    ch->text_len = o->len;
    if (o->n) {
        ch->ids = malloc(sizeof(int32_t) * (size_t)o->n);
        if (!ch->ids) goto nomem_chunk;
        memcpy(ch->ids, o->ids, sizeof(int32_t) * (size_t)o->n);
        if (o->r->params.logprobs >= 0) {
            ch->logprobs = malloc(sizeof(float) * (size_t)o->n);
            ch->top = malloc(sizeof(proto_result_t) * (size_t)o->n);
            if (!ch->logprobs || !ch->top) goto nomem_chunk;
            memcpy(ch->logprobs, o->lps, sizeof(float) * (size_t)o->n);
            memcpy(ch->top, o->top, sizeof(proto_result_t) * (size_t)o->n);
        }
    }
    ch->n_ids = o->n;
    if (o->n_plp) { /* the pending prompt logprobs move to the chunk */
        ch->plp = o->plp, ch->n_plp = o->n_plp, ch->plp_pos0 = o->plp_pos0;
        o->plp = NULL, o->n_plp = o->plp_cap = 0, o->plp_pos0 = o->plp_next;
    }
    ch->cum_logprob = o->cum_logprob;
    ch->finish = finish;
    if (error) ch->error = strdup(error);
    o->len = 0;
    o->n = 0;
    o->n_chunks++;
    if (finish != REQ_FINISH_NONE) {
        __atomic_store_n(&o->finished, true, __ATOMIC_RELEASE);
        pthread_mutex_lock(&o->r->lock);
        o->r->t_finish = out_now();
        pthread_mutex_unlock(&o->r->lock);
    }
    coord_push_chunk(c, o->r, ch);
    return MS_OK;
nomem_chunk:
    req_chunk_free(ch);
nomem:
    return MS_ERR(MS_ERR_NOMEM, "output: out of memory for a chunk");
}

static bool is_stop_token(const out_seq_t *o, int32_t tok)
{
    const req_params_t *p = &o->r->params;
    if (tok == o->ctx.eos_id && o->ctx.eos_id >= 0 && !p->ignore_eos) return true;
    for (int i = 0; i < p->n_stop_token_ids; i++)
        if (p->stop_token_ids[i] == tok) return true;
    return false;
}

/* Earliest occurrence of any stop string in hold, or -1. */
static long find_stop(const out_seq_t *o)
{
    const req_params_t *p = &o->r->params;
    long best = -1;
    for (int i = 0; i < p->n_stop; i++) {
        size_t sl = strlen(p->stop[i]);
        if (!sl || sl > o->hlen) continue;
        const char *m = memmem(o->hold, o->hlen, p->stop[i], sl);
        if (m && (best < 0 || m - o->hold < best)) best = m - o->hold;
    }
    return best;
}

/* Length of the longest suffix of hold that is a proper prefix of a stop string. */
static size_t stop_prefix_len(const out_seq_t *o)
{
    const req_params_t *p = &o->r->params;
    size_t best = 0;
    for (int i = 0; i < p->n_stop; i++) {
        size_t sl = strlen(p->stop[i]);
        size_t k = sl - 1 < o->hlen ? sl - 1 : o->hlen;
        for (; k > best; k--)
            if (!memcmp(o->hold + o->hlen - k, p->stop[i], k)) {
                best = k;
                break;
            }
    }
    return best;
}

ms_status_t out_seq_token(out_seq_t *o, coord_t *c, const proto_result_t *res, int n_total, req_finish_t *finish)
{
    *finish = REQ_FINISH_NONE;
    if (o->finished) return MS_OK;
    const req_params_t *p = &o->r->params;
    int32_t tok = res->token;

    if (o->n == o->ncap) {
        int cap = o->ncap ? o->ncap * 2 : 16;
        int32_t *ids = realloc(o->ids, sizeof(int32_t) * (size_t)cap);
        if (ids) o->ids = ids;
        if (!ids) return MS_ERR(MS_ERR_NOMEM, "output: out of memory");
        if (p->logprobs >= 0) {
            float *l = realloc(o->lps, sizeof(float) * (size_t)cap);
            if (l) o->lps = l;
            proto_result_t *t = realloc(o->top, sizeof(proto_result_t) * (size_t)cap);
            if (t) o->top = t;
            if (!l || !t) return MS_ERR(MS_ERR_NOMEM, "output: out of memory");
        }
        o->ncap = cap;
    }
    o->ids[o->n] = tok;
    if (p->logprobs >= 0) {
        o->lps[o->n] = res->logprob;
        o->top[o->n] = *res;
    }
    o->n++;
    o->cum_logprob += res->logprob;
    bool may_stop = o->n_completion >= p->min_tokens; /* tokens before this one */
    o->n_completion++;
    double now = out_now();
    pthread_mutex_lock(&o->r->lock);
    o->r->n_completion = o->n_completion;
    if (o->n_completion == 1) o->r->t_first_token = now;
    o->r->t_last_token = now;
    pthread_mutex_unlock(&o->r->lock);

    req_finish_t why = REQ_FINISH_NONE;
    if (may_stop && is_stop_token(o, tok)) {
        /* The stop token's own text is not part of the output. */
        if (!hold_release(o, o->hlen) || !flush_stream(o)) goto nomem;
        why = REQ_FINISH_STOP;
    } else {
        const char *t = "";
        size_t tl = 0;
        if (o->ts) MS_TRY(tok_stream_push(o->ts, tok, &t, &tl));
        if (!buf_add(&o->hold, &o->hlen, &o->hcap, t, tl)) goto nomem;
        long at = -1;
        if (p->n_stop > 0 && o->n_completion >= p->min_tokens) {
            at = find_stop(o);
            if (at >= 0) {
                if (!hold_release(o, (size_t)at)) goto nomem;
                o->hlen = 0;
                why = REQ_FINISH_STOP;
            } else if (!hold_release(o, o->hlen - stop_prefix_len(o))) {
                goto nomem;
            }
        } else if (!hold_release(o, o->hlen)) {
            goto nomem;
        }
        if (why == REQ_FINISH_NONE &&
            ((p->max_tokens > 0 && o->n_completion >= p->max_tokens) || n_total >= o->ctx.seq_limit)) {
            if (!hold_release(o, o->hlen) || !flush_stream(o)) goto nomem;
            why = REQ_FINISH_LENGTH;
        }
    }

    int interval = p->stream_interval > 0 ? p->stream_interval : 1;
    if (why != REQ_FINISH_NONE || (p->stream && (o->n_chunks == 0 || o->n >= interval)))
        MS_TRY(push_chunk(o, c, why, NULL));
    *finish = why;
    return MS_OK;
nomem:
    return MS_ERR(MS_ERR_NOMEM, "output: out of memory");
}

ms_status_t out_seq_prompt_lp(out_seq_t *o, int pos0, const proto_plp_t *e, int n)
{
    const req_t *r = o->r;
    int k = o->plp_next - pos0; /* entries already kept */
    if (k < 0) return MS_ERR(MS_ERR_INTERNAL, "output: prompt logprobs from position %d, expected %d", pos0, o->plp_next);
    if (pos0 + n > r->n_prompt)
        return MS_ERR(MS_ERR_INTERNAL, "output: prompt logprobs up to position %d of a %d-token prompt", pos0 + n - 1,
                      r->n_prompt);
    if (k >= n) return MS_OK;
    if (o->n_plp + n - k > o->plp_cap) {
        int cap = o->plp_cap ? o->plp_cap : 64;
        while (cap < o->n_plp + n - k) cap *= 2;
        proto_plp_t *b = realloc(o->plp, sizeof *b * (size_t)cap);
        if (!b) return MS_ERR(MS_ERR_NOMEM, "output: out of memory for prompt logprobs");
        o->plp = b, o->plp_cap = cap;
    }
    for (; k < n; k++) {
        const int pos = pos0 + k;
        if (e[k].token != r->prompt[pos])
            return MS_ERR(MS_ERR_INTERNAL, "prompt logprobs of position %d came back for token %d, the prompt has %d "
                          "(a rank could not compute them)", pos, e[k].token, r->prompt[pos]);
        o->plp[o->n_plp++] = e[k];
        o->plp_next = pos + 1;
    }
    return MS_OK;
}

void out_seq_end(out_seq_t *o, coord_t *c, req_finish_t why, const char *error)
{
    if (o->finished) return;
    /* Best effort: on allocation failure the chunk goes without the tail text. */
    if (!hold_release(o, o->hlen) || !flush_stream(o)) o->len = 0;
    if (push_chunk(o, c, why, error) == MS_OK) return;
    /* Last resort: the gateway must still learn the request ended. */
    req_chunk_t *ch = calloc(1, sizeof *ch);
    if (!ch) return; /* nothing more can be done without memory */
    ch->text = strdup("");
    ch->finish = why;
    __atomic_store_n(&o->finished, true, __ATOMIC_RELEASE);
    coord_push_chunk(c, o->r, ch);
}
