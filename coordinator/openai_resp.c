/* openai_resp.c — the JSON that goes back to OpenAI clients (openai.h):
 * per-choice accumulation of engine chunks, whole responses
 * (text_completion / chat.completion), streaming events
 * (text_completion / chat.completion.chunk), the usage event and error
 * bodies.
 *
 * Text offsets in completions logprobs count Unicode code points, as Python
 * clients index strings. Logprob values of -inf become -9999.0 (JSON has no
 * infinity; vLLM uses the same stand-in). */
#include "openai.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) len = 2, min = 0x80;
    else if ((c & 0xF0) == 0xE0) len = 3, min = 0x800;
    else if ((c & 0xF8) == 0xF0) len = 4, min = 0x10000;
    else return 0;
    if (len > n) return 0;
    unsigned cp = c & (0x3Fu >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

static bool utf8_valid(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq((const unsigned char *)s + i, n - i);
        if (!k) return false;
        i += k;
    }
    return true;
}

static size_t utf8_count(const char *s, size_t n)
{
    size_t cps = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) cps++;
    return cps;
}

/* A JSON string from bytes that should be UTF-8; invalid bytes become U+FFFD
 * so a bad byte can never turn a reply into a failure. */
static json_t *jstr(const char *s, size_t n)
{
    json_t *j = json_stringn(s ? s : "", s ? n : 0);
    if (j) return j;
    char *buf = malloc(n * 3 + 1);
    if (!buf) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq((const unsigned char *)s + i, n - i);
        if (k) {
            memcpy(buf + o, s + i, k);
            o += k;
            i += k;
        } else {
            memcpy(buf + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    j = json_stringn(buf, o);
    free(buf);
    return j;
}

static json_t *jlogprob(float lp)
{
    return json_real(isfinite(lp) ? (double)lp : -9999.0);
}

/* A token as text for logprobs: its bytes when they are valid UTF-8, else
 * "bytes:\xNN..." (the vLLM convention for partial characters). */
json_t *oai_token_text(const oai_tok_ops_t *tok, int32_t id, const char **raw, size_t *raw_len)
{
    size_t n = 0;
    const char *b = tok && tok->token_bytes ? tok->token_bytes(tok->arg, id, &n) : NULL;
    if (!b) n = 0;
    if (raw) *raw = b, *raw_len = n;
    if (!b || utf8_valid(b, n)) return jstr(b, n);
    char *buf = malloc(6 + 4 * n + 1);
    if (!buf) return NULL;
    size_t o = (size_t)sprintf(buf, "bytes:");
    for (size_t i = 0; i < n; i++) o += (size_t)sprintf(buf + o, "\\x%02x", (unsigned char)b[i]);
    json_t *j = json_stringn(buf, o);
    free(buf);
    return j;
}

static json_t *jbytes(const char *b, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) json_array_append_new(a, json_integer((unsigned char)b[i]));
    return a;
}

static json_t *logprobs_new(oai_kind_t kind)
{
    if (kind == OAI_CHAT) return json_pack("{s:[]}", "content");
    return json_pack("{s:[], s:[], s:[], s:[]}", "tokens", "token_logprobs", "top_logprobs", "text_offset");
}

static bool logprobs_empty(const oai_choice_t *c, oai_kind_t kind)
{
    if (!c->logprobs) return true;
    return json_array_size(json_object_get(c->logprobs, kind == OAI_CHAT ? "content" : "tokens")) == 0;
}

static ms_status_t text_append(oai_choice_t *c, const char *s, size_t n)
{
    if (c->len + n + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 64;
        while (cap < c->len + n + 1) cap *= 2;
        char *t = realloc(c->text, cap);
        if (!t) return MS_ERR(MS_ERR_NOMEM, "gateway: out of memory for %zu bytes of output", c->len + n);
        c->text = t;
        c->cap = cap;
    }
    if (n) memcpy(c->text + c->len, s, n);
    c->len += n;
    c->text[c->len] = 0;
    return MS_OK;
}

ms_status_t oai_choice_init(oai_choice_t *c, const oai_request_t *rq, int index)
{
    memset(c, 0, sizeof *c);
    const oai_prompt_t *pr = &rq->prompts[index / (rq->best_of > 0 ? rq->best_of : 1)];
    c->index = index;
    c->n_prompt = pr->n_ids;
    MS_TRY(text_append(c, "", 0));
    if (rq->echo && pr->text) {
        MS_TRY(text_append(c, pr->text, pr->text_len));
        c->text_offset = utf8_count(c->text, c->len);
    }
    if (rq->params.logprobs >= 0) {
        c->logprobs = logprobs_new(rq->kind);
        if (!c->logprobs) return MS_ERR(MS_ERR_NOMEM, "gateway: out of memory");
    }
    if (rq->prompt_logprobs >= 0) { /* the first position has nothing before it: null, as vLLM */
        c->prompt_lp = json_pack("[n]");
        if (!c->prompt_lp) return MS_ERR(MS_ERR_NOMEM, "gateway: out of memory");
    }
    return MS_OK;
}

void oai_choice_free(oai_choice_t *c)
{
    if (!c) return;
    free(c->text);
    free(c->error);
    json_decref(c->logprobs);
    json_decref(c->prompt_lp);
    memset(c, 0, sizeof *c);
}

/* n top entries {token text: logprob} into `top`. The entry of token `self` takes self_lp, the value its
 * token_logprobs entry shows, so a client's greedy test (is the token's logprob the top's maximum, as
 * lm-eval does) does not hinge on two kernels rounding the same logprob apart. */
static void top_add(json_t *top, const oai_tok_ops_t *tok, const int32_t *ids, const float *lps, int n, int32_t self,
                    float self_lp)
{
    for (int k = 0; k < n && k < PROTO_MAX_LOGPROBS; k++) {
        json_t *tk = oai_token_text(tok, ids[k], NULL, NULL);
        if (tk && !json_object_get(top, json_string_value(tk)))
            json_object_set_new(top, json_string_value(tk), jlogprob(ids[k] == self ? self_lp : lps[k]));
        json_decref(tk);
    }
}

/* Code points token `id` adds to an echoed prompt: its text, or nothing for a special token (BOS) that the
 * echo leaves out (skip_special_tokens: the echo of a token-id prompt is decoded without them, a text
 * prompt is echoed as sent, which never held the BOS the tokenizer added). */
static size_t prompt_token_cps(const oai_tok_ops_t *tok, bool skip_special, int32_t id, const char *raw, size_t raw_len)
{
    if (skip_special && tok && tok->decode) {
        char *t = NULL;
        size_t n = 0;
        bool special = tok->decode(tok->arg, &id, 1, true, &t, &n) == MS_OK && n == 0 && raw_len > 0;
        free(t);
        if (special) return 0;
    }
    return utf8_count(raw ? raw : "", raw_len);
}

/* echo + logprobs: the prompt's positions in the completions shape, before any generated token. The first
 * prompt token has nothing before it (null logprob and top_logprobs, as vLLM); text_offset is where each
 * token's text starts in the echoed prompt (prompt_token_cps), so the generated tokens' offsets go on from
 * the echo's length. */
static void add_prompt_logprobs_completion(oai_choice_t *c, const oai_request_t *rq, const oai_tok_ops_t *tok,
                                           const req_chunk_t *ch)
{
    json_t *toks = json_object_get(c->logprobs, "tokens"), *lps = json_object_get(c->logprobs, "token_logprobs");
    json_t *tops = json_object_get(c->logprobs, "top_logprobs"), *offs = json_object_get(c->logprobs, "text_offset");
    const oai_prompt_t *pr = &rq->prompts[c->index / (rq->best_of > 0 ? rq->best_of : 1)];
    for (int k = c->prompt_started ? 0 : -1; k < ch->n_plp; k++) {
        const proto_plp_t *e = k >= 0 ? &ch->plp[k] : NULL;
        const int32_t id = e ? e->token : pr->ids[0];
        const char *raw;
        size_t raw_len;
        json_t *t = oai_token_text(tok, id, &raw, &raw_len);
        json_array_append_new(offs, json_integer((json_int_t)c->prompt_offset));
        c->prompt_offset += prompt_token_cps(tok, rq->params.skip_special_tokens, id, raw, raw_len);
        json_array_append_new(toks, t ? t : json_string(""));
        if (!e) {
            json_array_append_new(lps, json_null());
            json_array_append_new(tops, json_null());
            continue;
        }
        json_t *top = json_object();
        top_add(top, tok, e->top_ids, e->top_logprobs, e->n_top < rq->params.logprobs ? e->n_top : rq->params.logprobs,
                e->token, e->logprob);
        if (t && !json_object_get(top, json_string_value(t)))
            json_object_set_new(top, json_string_value(t), jlogprob(e->logprob));
        json_array_append_new(tops, top);
        json_array_append_new(lps, jlogprob(e->logprob));
    }
    c->prompt_started = true;
}

/* vLLM's prompt_logprobs entries: {token id: {logprob, rank, decoded_token}}, the prompt token first, then
 * the top-K. A rank is known when the token is among the top-N the workers computed (N >= K); otherwise
 * it is null (the workers do not rank the whole vocabulary). */
static void add_prompt_logprobs_vllm(oai_choice_t *c, const oai_request_t *rq, const oai_tok_ops_t *tok,
                                     const req_chunk_t *ch)
{
    for (int k = 0; k < ch->n_plp; k++) {
        const proto_plp_t *e = &ch->plp[k];
        json_t *d = json_object();
        char key[16];
        int rank = 0;
        for (int j = 0; j < e->n_top && j < PROTO_MAX_LOGPROBS; j++)
            if (e->top_ids[j] == e->token) {
                rank = j + 1;
                break;
            }
        snprintf(key, sizeof key, "%d", e->token);
        json_object_set_new(d, key, json_pack("{s:o, s:o, s:o}", "logprob", jlogprob(e->logprob), "rank",
                                              rank ? json_integer(rank) : json_null(), "decoded_token",
                                              oai_token_text(tok, e->token, NULL, NULL)));
        for (int j = 0; j < e->n_top && j < rq->prompt_logprobs && j < PROTO_MAX_LOGPROBS; j++) {
            snprintf(key, sizeof key, "%d", e->top_ids[j]);
            if (json_object_get(d, key)) continue;
            json_object_set_new(d, key, json_pack("{s:o, s:i, s:o}", "logprob", jlogprob(e->top_logprobs[j]), "rank",
                                                  j + 1, "decoded_token", oai_token_text(tok, e->top_ids[j], NULL, NULL)));
        }
        json_array_append_new(c->prompt_lp, d);
    }
}

/* Completions shape: tokens, token_logprobs, top_logprobs ({token: lp}),
 * text_offset. */
static void add_logprobs_completion(oai_choice_t *c, const oai_tok_ops_t *tok, const req_chunk_t *ch, size_t base_cp,
                                    size_t chunk_cp, int top_n)
{
    json_t *toks = json_object_get(c->logprobs, "tokens"), *lps = json_object_get(c->logprobs, "token_logprobs");
    json_t *tops = json_object_get(c->logprobs, "top_logprobs"), *offs = json_object_get(c->logprobs, "text_offset");
    size_t cum = 0;
    for (int i = 0; i < ch->n_ids; i++) {
        const char *raw;
        size_t raw_len;
        json_t *t = oai_token_text(tok, ch->ids[i], &raw, &raw_len);
        json_array_append_new(offs, json_integer((json_int_t)(base_cp + (cum < chunk_cp ? cum : chunk_cp))));
        cum += utf8_count(raw ? raw : "", raw_len);
        json_t *top = json_object();
        if (ch->top) {
            const proto_result_t *r = &ch->top[i];
            top_add(top, tok, r->top_ids, r->top_logprobs, r->n_top < top_n ? r->n_top : top_n, ch->ids[i],
                    ch->logprobs[i]);
        }
        /* the sampled token is always listed, as OpenAI does */
        if (t && !json_object_get(top, json_string_value(t)))
            json_object_set_new(top, json_string_value(t), jlogprob(ch->logprobs[i]));
        json_array_append_new(tops, top);
        json_array_append_new(toks, t ? t : json_string(""));
        json_array_append_new(lps, jlogprob(ch->logprobs[i]));
    }
}

/* Chat shape: content: [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]. */
static void add_logprobs_chat(oai_choice_t *c, const oai_tok_ops_t *tok, const req_chunk_t *ch, int top_n)
{
    json_t *content = json_object_get(c->logprobs, "content");
    for (int i = 0; i < ch->n_ids; i++) {
        const char *raw;
        size_t raw_len;
        json_t *t = oai_token_text(tok, ch->ids[i], &raw, &raw_len);
        json_t *tops = json_array();
        if (ch->top) {
            const proto_result_t *r = &ch->top[i];
            for (int k = 0; k < r->n_top && k < top_n && k < PROTO_MAX_LOGPROBS; k++) {
                const char *kraw;
                size_t klen;
                json_t *kt = oai_token_text(tok, r->top_ids[k], &kraw, &klen);
                json_array_append_new(tops, json_pack("{s:o, s:o, s:o}", "token", kt ? kt : json_string(""), "logprob",
                                                      jlogprob(r->top_logprobs[k]), "bytes", jbytes(kraw, klen)));
            }
        }
        json_array_append_new(content, json_pack("{s:o, s:o, s:o, s:o}", "token", t ? t : json_string(""), "logprob",
                                                 jlogprob(ch->logprobs[i]), "bytes", jbytes(raw, raw_len),
                                                 "top_logprobs", tops));
    }
}

ms_status_t oai_choice_add(oai_choice_t *c, const oai_request_t *rq, const oai_tok_ops_t *tok, const req_chunk_t *ch)
{
    size_t base_cp = c->text_offset, chunk_cp = utf8_count(ch->text ? ch->text : "", ch->text ? ch->text_len : 0);
    if (ch->text && ch->text_len) MS_TRY(text_append(c, ch->text, ch->text_len));
    c->text_offset += chunk_cp;
    c->n_completion += ch->n_ids;
    c->n_unsent += ch->n_ids;
    c->cum_logprob = ch->cum_logprob;
    /* the prompt's entries first (they come with the chunks before the first generated token) */
    if (c->logprobs && rq->echo_logprobs && (ch->n_plp > 0 || !c->prompt_started))
        add_prompt_logprobs_completion(c, rq, tok, ch);
    if (c->prompt_lp && ch->n_plp > 0) add_prompt_logprobs_vllm(c, rq, tok, ch);
    if (c->logprobs && ch->logprobs && ch->n_ids > 0) {
        if (rq->kind == OAI_CHAT)
            add_logprobs_chat(c, tok, ch, rq->params.logprobs);
        else
            add_logprobs_completion(c, tok, ch, base_cp, chunk_cp, rq->params.logprobs);
    }
    if (ch->finish != REQ_FINISH_NONE) {
        c->finish = ch->finish;
        if (ch->error && !c->error) c->error = strdup(ch->error);
    }
    return MS_OK;
}

void oai_make_id(oai_kind_t kind, char *buf, size_t cap)
{
    unsigned char r[16];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        /* no entropy source: a time + counter id is still unique enough */
        static unsigned long long ctr;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        unsigned long long a = (unsigned long long)ts.tv_nsec ^ ((unsigned long long)ts.tv_sec << 30);
        unsigned long long b = __atomic_add_fetch(&ctr, 1, __ATOMIC_RELAXED) * 0x9E3779B97F4A7C15ull;
        memcpy(r, &a, 8);
        memcpy(r + 8, &b, 8);
    }
    int o = snprintf(buf, cap, "%s", kind == OAI_CHAT ? "chatcmpl-" : "cmpl-");
    for (size_t i = 0; i < sizeof r && (size_t)o + 2 < cap; i++) o += snprintf(buf + o, cap - (size_t)o, "%02x", r[i]);
}

static const char *finish_name(req_finish_t f)
{
    /* ERROR never reaches a 200 body; the gateway answers 5xx instead */
    return f == REQ_FINISH_NONE ? NULL : req_finish_str(f);
}

static json_t *jfinish(req_finish_t f)
{
    const char *s = finish_name(f);
    return s ? json_string(s) : json_null();
}

/* A prompt counts once whatever its number of choices (vLLM); completion tokens of every choice count. */
static json_t *usage_json(const oai_request_t *rq, const oai_choice_t *choices, int n)
{
    long long p = 0, g = 0, cached = 0;
    const int per_prompt = n / (rq->n_prompts > 0 ? rq->n_prompts : 1);
    for (int i = 0; i < rq->n_prompts; i++) p += rq->prompts[i].n_ids;
    for (int i = 0; i < n; i++) g += choices[i].n_completion;
    /* the prefix cache's reuse, once per prompt (its first choice's, as the prompt counts once) */
    for (int i = 0; per_prompt > 0 && i < n; i += per_prompt) cached += choices[i].n_cached;
    return json_pack("{s:I, s:I, s:I, s:{s:I}}", "prompt_tokens", (json_int_t)p, "completion_tokens", (json_int_t)g,
                     "total_tokens", (json_int_t)(p + g), "prompt_tokens_details", "cached_tokens",
                     (json_int_t)cached);
}

static json_t *logprobs_copy(const oai_choice_t *c)
{
    return c->logprobs ? json_deep_copy(c->logprobs) : json_null();
}

json_t *oai_response(const oai_request_t *rq, const char *id, int64_t created, const char *model,
                     const oai_choice_t *choices, int n_choices)
{
    json_t *arr = json_array();
    const int bo = rq->best_of > 0 ? rq->best_of : 1, n = rq->n > 0 && rq->n <= bo ? rq->n : bo;
    int order[OAI_MAX_N];
    for (int i = 0; arr && i < n_choices; i++) {
        if (i % bo == 0) { /* this prompt's choices, best cumulative logprob first (stable: lower index on ties) */
            int m = n_choices - i < bo ? n_choices - i : bo;
            for (int k = 0; k < m; k++) order[k] = i + k;
            for (int k = 1; bo > n && k < m; k++)
                for (int j = k; j > 0 && choices[order[j]].cum_logprob > choices[order[j - 1]].cum_logprob; j--) {
                    int t = order[j];
                    order[j] = order[j - 1], order[j - 1] = t;
                }
        }
        if (i % bo >= n) continue;
        const oai_choice_t *c = &choices[order[i % bo]];
        const int index = (i / bo) * n + i % bo;
        json_t *ch;
        if (rq->kind == OAI_CHAT)
            ch = json_pack("{s:i, s:{s:s, s:o}, s:o, s:o, s:n}", "index", index, "message", "role", "assistant",
                           "content", jstr(c->text, c->len), "logprobs", logprobs_copy(c), "finish_reason",
                           jfinish(c->finish), "stop_reason");
        else
            ch = json_pack("{s:i, s:o, s:o, s:o, s:n}", "index", index, "text", jstr(c->text, c->len), "logprobs",
                           logprobs_copy(c), "finish_reason", jfinish(c->finish), "stop_reason");
        /* vLLM's prompt_logprobs: per choice in completions, once per response in chat */
        if (ch && c->prompt_lp && rq->kind == OAI_COMPLETION)
            json_object_set_new(ch, "prompt_logprobs", json_deep_copy(c->prompt_lp));
        if (!ch || json_array_append_new(arr, ch)) {
            json_decref(arr);
            return NULL;
        }
    }
    json_t *j = json_pack("{s:s, s:s, s:I, s:s, s:o, s:o}", "id", id, "object",
                          rq->kind == OAI_CHAT ? "chat.completion" : "text_completion", "created", (json_int_t)created,
                          "model", model, "choices", arr, "usage", usage_json(rq, choices, n_choices));
    if (j && rq->kind == OAI_CHAT && n_choices > 0 && choices[0].prompt_lp)
        json_object_set_new(j, "prompt_logprobs", json_deep_copy(choices[0].prompt_lp));
    return j;
}

static json_t *chunk_wrap(const oai_request_t *rq, const char *id, int64_t created, const char *model, json_t *choice)
{
    json_t *j = json_pack("{s:s, s:s, s:I, s:s, s:[o]}", "id", id, "object",
                          rq->kind == OAI_CHAT ? "chat.completion.chunk" : "text_completion", "created",
                          (json_int_t)created, "model", model, "choices", choice);
    /* OpenAI sends "usage": null on every event when the final one will carry usage */
    if (j && rq->include_usage) json_object_set_new(j, "usage", json_null());
    return j;
}

json_t *oai_choice_chunk(const oai_request_t *rq, const char *id, int64_t created, const char *model, oai_choice_t *c)
{
    if (c->finish_sent) return NULL;
    if (rq->kind == OAI_CHAT && !c->started) {
        c->started = true;
        return chunk_wrap(rq, id, created, model,
                          json_pack("{s:i, s:{s:s, s:s}, s:n, s:n}", "index", c->index, "delta", "role", "assistant",
                                    "content", "", "logprobs", "finish_reason"));
    }
    bool finishing = c->finish != REQ_FINISH_NONE;
    bool have_lp = !logprobs_empty(c, rq->kind);
    if (c->len == 0 && !have_lp && !finishing && c->n_unsent == 0) return NULL;
    c->started = true;
    c->n_unsent = 0;
    json_t *lp = json_null();
    if (have_lp) {
        lp = c->logprobs;
        c->logprobs = logprobs_new(rq->kind);
    }
    json_t *choice;
    if (rq->kind == OAI_CHAT) {
        json_t *delta = json_object();
        if (c->len) json_object_set_new(delta, "content", jstr(c->text, c->len));
        choice = json_pack("{s:i, s:o, s:o, s:o, s:n}", "index", c->index, "delta", delta, "logprobs", lp,
                           "finish_reason", jfinish(c->finish), "stop_reason");
    } else {
        choice = json_pack("{s:i, s:o, s:o, s:o, s:n}", "index", c->index, "text", jstr(c->text, c->len), "logprobs",
                           lp, "finish_reason", jfinish(c->finish), "stop_reason");
    }
    c->len = 0;
    if (c->text) c->text[0] = 0;
    if (finishing) c->finish_sent = true;
    return choice ? chunk_wrap(rq, id, created, model, choice) : NULL;
}

json_t *oai_usage_chunk(const oai_request_t *rq, const char *id, int64_t created, const char *model,
                        const oai_choice_t *choices, int n_choices)
{
    return json_pack("{s:s, s:s, s:I, s:s, s:[], s:o}", "id", id, "object",
                     rq->kind == OAI_CHAT ? "chat.completion.chunk" : "text_completion", "created",
                     (json_int_t)created, "model", model, "choices", "usage", usage_json(rq, choices, n_choices));
}

json_t *oai_error_body(const oai_error_t *err)
{
    json_t *param = err->param[0] ? json_string(err->param) : json_null();
    const char *type = err->type ? err->type : "invalid_request_error";
    return json_pack("{s:s, s:o, s:s, s:O, s:i, s:{s:o, s:s, s:o, s:i}}", "object", "error", "message",
                     jstr(err->message, strlen(err->message)), "type", type, "param", param, "code", err->status,
                     "error", "message", jstr(err->message, strlen(err->message)), "type", type, "param", param,
                     "code", err->status);
}

char *oai_dump(const json_t *j, bool sse, size_t *len)
{
    char *s = json_dumps(j, JSON_COMPACT);
    if (!s) return NULL;
    size_t n = strlen(s);
    if (!sse) {
        if (len) *len = n;
        return s;
    }
    char *out = malloc(n + 9);
    if (out) {
        memcpy(out, "data: ", 6);
        memcpy(out + 6, s, n);
        memcpy(out + 6 + n, "\n\n", 3);
        if (len) *len = n + 8;
    }
    free(s);
    return out;
}
