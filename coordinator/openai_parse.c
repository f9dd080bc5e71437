/* openai_parse.c — parse and validate /v1/completions and
 * /v1/chat/completions bodies into an oai_request_t (openai.h): sampling
 * params with OpenAI's defaults, prompts tokenized (strings, token ids, lists
 * of either, or chat messages through the chat template).
 *
 * Every check fails with a 4xx oai_error_t naming the field; nothing here
 * aborts or logs at error level (bad input is the client's, not ours). The
 * output is written only on success. */
#include "openai.h"

#include "proto/sampling.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool oai_fail(oai_error_t *err, int status, const char *param, const char *fmt, ...)
{
    err->status = status;
    err->type = status == 404 ? "not_found_error" : "invalid_request_error";
    snprintf(err->param, sizeof err->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return false;
}

json_t *oai_load_object(const char *body, size_t len, oai_error_t *err)
{
    json_error_t jerr;
    json_t *o = json_loadb(body, len, 0, &jerr);
    if (!o) {
        oai_fail(err, 400, NULL, "malformed JSON body: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
        return NULL;
    }
    if (!json_is_object(o)) {
        oai_fail(err, 400, NULL, "the request body must be a JSON object");
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Top-level fields each endpoint accepts; anything else is 400. The
 * "neutral only" ones are OpenAI/vLLM fields moeserve does not implement:
 * accepted when absent, null, or their no-op value (checked below). */
static const char *const completion_keys[] = {
    "model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "stop_token_ids",
    "ignore_eos", "min_tokens", "add_special_tokens", "skip_special_tokens", "stream", "stream_options", "n",
    "echo", "logprobs", "user", "presence_penalty", "frequency_penalty", "repetition_penalty", "logit_bias", "min_p",
    "best_of", "prompt_logprobs",
    /* neutral only */
    "suffix", "use_beam_search", "include_stop_str_in_output", NULL};

static const char *const chat_keys[] = {
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "seed", "stop",
    "stop_token_ids", "ignore_eos", "min_tokens", "add_special_tokens", "skip_special_tokens", "stream",
    "stream_options", "n", "logprobs", "top_logprobs", "user", "add_generation_prompt", "prompt_token_ids",
    "presence_penalty", "frequency_penalty", "repetition_penalty", "logit_bias", "min_p", "prompt_logprobs",
    /* neutral only */
    "tools", "tool_choice", "response_format", "parallel_tool_calls", "include_stop_str_in_output", NULL};

static bool key_known(const char *const *keys, const char *k)
{
    for (; *keys; keys++)
        if (!strcmp(*keys, k)) return true;
    return false;
}

/* The value of a field, or NULL when absent or JSON null (OpenAI treats an
 * explicit null as "use the default"). */
static json_t *field(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_null(v) ? NULL : v;
}

/* An integer field; a float with an integral value is accepted (as pydantic
 * does for the Python servers). Absent → *set = false. */
static bool get_int(json_t *o, const char *k, int64_t lo, int64_t hi, int64_t *out, bool *set, oai_error_t *err)
{
    json_t *v = field(o, k);
    *set = false;
    if (!v) return true;
    double d;
    if (json_is_integer(v)) {
        d = (double)json_integer_value(v);
        if (json_integer_value(v) < lo || json_integer_value(v) > hi)
            return oai_fail(err, 400, k, "'%s' must be between %lld and %lld, got %lld", k, (long long)lo,
                            (long long)hi, (long long)json_integer_value(v));
        *out = json_integer_value(v);
        *set = true;
        return true;
    }
    if (!json_is_real(v)) return oai_fail(err, 400, k, "'%s' must be an integer", k);
    d = json_real_value(v);
    if (d != floor(d)) return oai_fail(err, 400, k, "'%s' must be an integer", k);
    if (d < (double)lo || d > (double)hi)
        return oai_fail(err, 400, k, "'%s' must be between %lld and %lld, got %g", k, (long long)lo, (long long)hi, d);
    *out = (int64_t)d;
    *set = true;
    return true;
}

static bool get_num(json_t *o, const char *k, double *out, bool *set, oai_error_t *err)
{
    json_t *v = field(o, k);
    *set = false;
    if (!v) return true;
    if (!json_is_number(v)) return oai_fail(err, 400, k, "'%s' must be a number", k);
    *out = json_number_value(v);
    if (!isfinite(*out)) return oai_fail(err, 400, k, "'%s' must be finite", k);
    *set = true;
    return true;
}

static bool get_bool(json_t *o, const char *k, bool *out, oai_error_t *err)
{
    json_t *v = field(o, k);
    if (!v) return true;
    if (!json_is_boolean(v)) return oai_fail(err, 400, k, "'%s' must be a boolean", k);
    *out = json_is_true(v);
    return true;
}

/* Fields accepted only with their no-op value. */
static bool check_neutral(json_t *o, oai_error_t *err)
{
    static const struct {
        const char *k;
        double v;
    } nums[] = {{NULL, 0}};
    for (size_t i = 0; nums[i].k; i++) {
        json_t *v = field(o, nums[i].k);
        if (!v) continue;
        if (!json_is_number(v)) return oai_fail(err, 400, nums[i].k, "'%s' must be a number", nums[i].k);
        if (json_number_value(v) != nums[i].v)
            return oai_fail(err, 400, nums[i].k, "'%s' is not supported (only %g is accepted)", nums[i].k, nums[i].v);
    }
    json_t *v;
    if ((v = field(o, "suffix")) && !(json_is_string(v) && json_string_length(v) == 0))
        return oai_fail(err, 400, "suffix", "'suffix' is not supported");
    static const char *const falses[] = {"use_beam_search", "include_stop_str_in_output", "parallel_tool_calls"};
    for (size_t i = 0; i < sizeof falses / sizeof falses[0]; i++) {
        if (!(v = field(o, falses[i]))) continue;
        if (!json_is_boolean(v)) return oai_fail(err, 400, falses[i], "'%s' must be a boolean", falses[i]);
        /* parallel_tool_calls is meaningless without tools: any bool is fine */
        if (json_is_true(v) && strcmp(falses[i], "parallel_tool_calls"))
            return oai_fail(err, 400, falses[i], "'%s' is not supported", falses[i]);
    }
    if ((v = field(o, "tools")) && !(json_is_array(v) && json_array_size(v) == 0))
        return oai_fail(err, 400, "tools", "'tools' (function calling) is not supported");
    if ((v = field(o, "tool_choice")) && !(json_is_string(v) && !strcmp(json_string_value(v), "none")))
        return oai_fail(err, 400, "tool_choice", "'tool_choice' is not supported (only \"none\")");
    if ((v = field(o, "response_format"))) {
        json_t *t = json_is_object(v) ? json_object_get(v, "type") : NULL;
        if (!json_is_string(t) || strcmp(json_string_value(t), "text") || json_object_size(v) != 1)
            return oai_fail(err, 400, "response_format", "'response_format' is not supported (only {\"type\": \"text\"})");
    }
    return true;
}

static bool parse_stop(json_t *o, const oai_ctx_t *ctx, req_params_t *p, oai_error_t *err)
{
    json_t *v = field(o, "stop");
    if (v) {
        json_t *one = json_is_string(v) ? v : NULL;
        size_t n = one ? 1 : json_is_array(v) ? json_array_size(v) : 0;
        if (!one && !json_is_array(v)) return oai_fail(err, 400, "stop", "'stop' must be a string or a list of strings");
        if (n > REQ_MAX_STOP) return oai_fail(err, 400, "stop", "'stop' has %zu strings; at most %d are supported", n, REQ_MAX_STOP);
        for (size_t i = 0; i < n; i++) {
            json_t *s = one ? one : json_array_get(v, i);
            if (!json_is_string(s)) return oai_fail(err, 400, "stop", "'stop' must be a string or a list of strings");
            if (json_string_length(s) == 0) return oai_fail(err, 400, "stop", "'stop' strings must not be empty");
            p->stop[p->n_stop] = strdup(json_string_value(s));
            if (!p->stop[p->n_stop]) return oai_fail(err, 500, "stop", "out of memory");
            p->n_stop++;
        }
    }
    v = field(o, "stop_token_ids");
    if (v) {
        if (!json_is_array(v)) return oai_fail(err, 400, "stop_token_ids", "'stop_token_ids' must be a list of integers");
        size_t n = json_array_size(v);
        if (n > OAI_MAX_STOP_TOKEN_IDS)
            return oai_fail(err, 400, "stop_token_ids", "'stop_token_ids' has %zu ids; at most %d", n, OAI_MAX_STOP_TOKEN_IDS);
        if (n == 0) return true;
        p->stop_token_ids = malloc(sizeof(int32_t) * n);
        if (!p->stop_token_ids) return oai_fail(err, 500, "stop_token_ids", "out of memory");
        for (size_t i = 0; i < n; i++) {
            json_t *t = json_array_get(v, i);
            if (!json_is_integer(t)) return oai_fail(err, 400, "stop_token_ids", "'stop_token_ids' must be a list of integers");
            json_int_t id = json_integer_value(t);
            if (id < 0 || id >= ctx->vocab_size)
                return oai_fail(err, 400, "stop_token_ids", "'stop_token_ids' entry %lld is out of range [0, %d)",
                                (long long)id, ctx->vocab_size);
            p->stop_token_ids[i] = (int32_t)id;
            p->n_stop_token_ids = (int)i + 1;
        }
    }
    return true;
}

/* logit_bias: {"token id": bias, ...} as OpenAI; ids in the vocabulary, biases clamped to [-100, 100]
 * (vLLM's rule); a key given twice (JSON allows it) keeps its last value. */
static bool parse_logit_bias(json_t *o, const oai_ctx_t *ctx, req_params_t *p, oai_error_t *err)
{
    json_t *v = field(o, "logit_bias");
    if (!v) return true;
    if (!json_is_object(v)) return oai_fail(err, 400, "logit_bias", "'logit_bias' must be an object of token id -> bias");
    size_t n = json_object_size(v);
    if (n == 0) return true;
    if (n > PROTO_MAX_LOGIT_BIAS)
        return oai_fail(err, 400, "logit_bias", "'logit_bias' has %zu entries; at most %d", n, PROTO_MAX_LOGIT_BIAS);
    p->logit_bias = malloc(sizeof *p->logit_bias * n);
    if (!p->logit_bias) return oai_fail(err, 500, "logit_bias", "out of memory");
    const char *k;
    json_t *b;
    json_object_foreach(v, k, b) {
        char *end;
        errno = 0;
        long long id = strtoll(k, &end, 10);
        if (!*k || *end || errno)
            return oai_fail(err, 400, "logit_bias", "'logit_bias' key '%s' is not a token id", k);
        if (id < 0 || id >= ctx->vocab_size)
            return oai_fail(err, 400, "logit_bias", "'logit_bias' token id %lld is out of range [0, %d)", id,
                            ctx->vocab_size);
        if (!json_is_number(b) || !isfinite(json_number_value(b)))
            return oai_fail(err, 400, "logit_bias", "'logit_bias' value for token %lld must be a number", id);
        double x = json_number_value(b);
        float bias = (float)(x > 100 ? 100 : x < -100 ? -100 : x);
        int at = 0;
        while (at < p->n_logit_bias && p->logit_bias[at].token != (int32_t)id) at++;
        p->logit_bias[at] = (proto_bias_t){.token = (int32_t)id, .bias = bias};
        if (at == p->n_logit_bias) p->n_logit_bias++;
    }
    return true;
}

/* Sampling and output fields shared by both endpoints. */
static bool parse_common(json_t *o, const oai_ctx_t *ctx, oai_request_t *rq, oai_error_t *err)
{
    req_params_t *p = &rq->params;
    int64_t iv;
    double dv;
    bool set;

    json_t *m = json_object_get(o, "model");
    if (m && !json_is_null(m)) {
        if (!json_is_string(m)) return oai_fail(err, 400, "model", "'model' must be a string");
        if (ctx->served_model && strcmp(json_string_value(m), ctx->served_model))
            return oai_fail(err, 404, "model", "The model `%s` does not exist; this server serves `%s`.",
                            json_string_value(m), ctx->served_model);
    }
    /* Range checks: proto_sampling_check in oai_parse, on the floats. */
    if (!get_num(o, "temperature", &dv, &set, err)) return false;
    if (set) p->temperature = proto_sampling_float(dv);
    if (!get_num(o, "top_p", &dv, &set, err)) return false;
    if (set) p->top_p = proto_sampling_float(dv);
    if (!get_int(o, "top_k", -1, INT32_MAX, &iv, &set, err)) return false;
    if (set) p->top_k = iv < 0 ? 0 : (int)iv;
    static const struct {
        const char *k;
        size_t off;
    } pens[] = {{"presence_penalty", offsetof(req_params_t, presence_penalty)},
                {"frequency_penalty", offsetof(req_params_t, frequency_penalty)},
                {"repetition_penalty", offsetof(req_params_t, repetition_penalty)},
                {"min_p", offsetof(req_params_t, min_p)}};
    for (size_t i = 0; i < sizeof pens / sizeof pens[0]; i++) {
        if (!get_num(o, pens[i].k, &dv, &set, err)) return false;
        if (set) *(float *)((char *)p + pens[i].off) = proto_sampling_float(dv);
    }
    if (!parse_logit_bias(o, ctx, p, err)) return false;
    if (!get_int(o, "seed", INT64_MIN, INT64_MAX, &iv, &set, err)) return false;
    if (set) {
        p->seed = (uint64_t)iv;
        p->has_seed = true;
    }
    if (!get_int(o, "min_tokens", 0, INT32_MAX, &iv, &set, err)) return false;
    if (set) p->min_tokens = (int)iv;
    if (!get_bool(o, "ignore_eos", &p->ignore_eos, err)) return false;
    if (!get_bool(o, "skip_special_tokens", &p->skip_special_tokens, err)) return false;
    if (!get_int(o, "n", INT32_MIN, INT32_MAX, &iv, &set, err)) return false;
    if (set && (iv < 1 || iv > OAI_MAX_N)) return oai_fail(err, 400, "n", "'n' must be between 1 and %d", OAI_MAX_N);
    if (set) rq->n = (int)iv;
    if (!get_int(o, "best_of", INT32_MIN, INT32_MAX, &iv, &set, err)) return false;
    rq->best_of = set ? (int)iv : rq->n;
    if (set && (iv < rq->n || iv > OAI_MAX_N))
        return oai_fail(err, 400, "best_of", "'best_of' must be between n (%d) and %d", rq->n, OAI_MAX_N);
    json_t *u = field(o, "user");
    if (u && !json_is_string(u)) return oai_fail(err, 400, "user", "'user' must be a string");

    if (!get_bool(o, "stream", &rq->stream, err)) return false;
    json_t *so = field(o, "stream_options");
    if (so) {
        if (!json_is_object(so)) return oai_fail(err, 400, "stream_options", "'stream_options' must be an object");
        if (!rq->stream) return oai_fail(err, 400, "stream_options", "'stream_options' is only allowed when 'stream' is true");
        const char *k;
        json_t *v;
        json_object_foreach(so, k, v) {
            if (!strcmp(k, "include_usage")) {
                if (!json_is_boolean(v) && !json_is_null(v))
                    return oai_fail(err, 400, "stream_options.include_usage", "'stream_options.include_usage' must be a boolean");
                rq->include_usage = json_is_true(v);
            } else if (!strcmp(k, "continuous_usage_stats")) {
                if (json_is_true(v)) return oai_fail(err, 400, "stream_options.continuous_usage_stats", "'continuous_usage_stats' is not supported");
            } else {
                return oai_fail(err, 400, "stream_options", "unknown field 'stream_options.%s'", k);
            }
        }
    }
    p->stream = rq->stream;
    if (rq->best_of > rq->n && rq->stream)
        return oai_fail(err, 400, "best_of", "'best_of' greater than 'n' cannot be streamed (the best are known at the end)");
    if (!parse_stop(o, ctx, p, err)) return false;
    return check_neutral(o, err);
}

static void prompts_free(oai_prompt_t *ps, int n)
{
    for (int i = 0; i < n; i++) {
        free(ps[i].ids);
        free(ps[i].text);
    }
    free(ps);
}

static bool prompt_from_ids(json_t *arr, const oai_ctx_t *ctx, oai_prompt_t *pr, oai_error_t *err)
{
    size_t n = json_array_size(arr);
    if (n == 0) return oai_fail(err, 400, "prompt", "'prompt' must not be empty");
    pr->ids = malloc(sizeof(int32_t) * n);
    if (!pr->ids) return oai_fail(err, 500, "prompt", "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(arr, i);
        if (!json_is_integer(t)) return oai_fail(err, 400, "prompt", "'prompt' token lists must hold only integers");
        json_int_t id = json_integer_value(t);
        if (id < 0 || id >= ctx->vocab_size)
            return oai_fail(err, 400, "prompt", "prompt token id %lld is out of range [0, %d)", (long long)id, ctx->vocab_size);
        pr->ids[i] = (int32_t)id;
    }
    pr->n_ids = (int)n;
    return true;
}

static bool prompt_from_text(const char *s, size_t len, bool add_special, const oai_ctx_t *ctx, oai_prompt_t *pr,
                             oai_error_t *err)
{
    if (len == 0) return oai_fail(err, 400, "prompt", "'prompt' must not be empty");
    size_t n = 0;
    if (ctx->tok->encode(ctx->tok->arg, s, len, add_special, &pr->ids, &n) != MS_OK)
        return oai_fail(err, 400, "prompt", "cannot tokenize 'prompt' (invalid UTF-8?)");
    if (n == 0) return oai_fail(err, 400, "prompt", "'prompt' tokenizes to no tokens");
    if (n > INT32_MAX) return oai_fail(err, 400, "prompt", "'prompt' is too long");
    pr->n_ids = (int)n;
    return true;
}

/* prompt: "text" | ["text", ...] | [id, ...] | [[id, ...], ...]. */
static bool parse_prompts(json_t *o, const oai_ctx_t *ctx, bool add_special, oai_request_t *rq, oai_error_t *err)
{
    json_t *v = field(o, "prompt");
    if (!v) return oai_fail(err, 400, "prompt", "'prompt' is required");
    size_t n;
    int shape; /* 0 text, 1 ids, 2 list of texts, 3 list of id lists */
    if (json_is_string(v)) {
        shape = 0;
        n = 1;
    } else if (json_is_array(v)) {
        json_t *first = json_array_get(v, 0);
        if (!first) return oai_fail(err, 400, "prompt", "'prompt' must not be empty");
        if (json_is_integer(first)) {
            shape = 1;
            n = 1;
        } else if (json_is_string(first)) {
            shape = 2;
            n = json_array_size(v);
        } else if (json_is_array(first)) {
            shape = 3;
            n = json_array_size(v);
        } else {
            return oai_fail(err, 400, "prompt", "'prompt' must be a string, a list of strings, a list of token ids or a list of token-id lists");
        }
    } else {
        return oai_fail(err, 400, "prompt", "'prompt' must be a string, a list of strings, a list of token ids or a list of token-id lists");
    }
    if (n > OAI_MAX_PROMPTS) return oai_fail(err, 400, "prompt", "'prompt' lists %zu prompts; at most %d per request", n, OAI_MAX_PROMPTS);
    rq->prompts = calloc(n, sizeof *rq->prompts);
    if (!rq->prompts) return oai_fail(err, 500, "prompt", "out of memory");
    rq->n_prompts = (int)n;
    for (size_t i = 0; i < n; i++) {
        oai_prompt_t *pr = &rq->prompts[i];
        json_t *e = shape == 0 || shape == 1 ? v : json_array_get(v, i);
        if (shape == 0 || shape == 2) {
            if (!json_is_string(e)) return oai_fail(err, 400, "prompt", "'prompt' list mixes strings and other types");
            if (!prompt_from_text(json_string_value(e), json_string_length(e), add_special, ctx, pr, err)) return false;
            if (rq->echo) {
                pr->text = strndup(json_string_value(e), json_string_length(e));
                pr->text_len = json_string_length(e);
                if (!pr->text) return oai_fail(err, 500, "prompt", "out of memory");
            }
        } else {
            if (!json_is_array(e)) return oai_fail(err, 400, "prompt", "'prompt' list mixes token-id lists and other types");
            if (!prompt_from_ids(e, ctx, pr, err)) return false;
            if (rq->echo && ctx->tok->decode(ctx->tok->arg, pr->ids, (size_t)pr->n_ids, rq->params.skip_special_tokens,
                                             &pr->text, &pr->text_len) != MS_OK)
                return oai_fail(err, 400, "prompt", "cannot detokenize 'prompt' for echo");
        }
    }
    return true;
}

/* A message's content: a string, or a list of {"type": "text", "text": ...}
 * parts joined with "\n". Returns a malloc'd string. */
static bool message_content(json_t *m, size_t i, bool may_be_null, char **out, oai_error_t *err)
{
    json_t *c = json_object_get(m, "content");
    if (!c || json_is_null(c)) {
        if (!may_be_null) return oai_fail(err, 400, "messages", "messages[%zu].content is required", i);
        *out = strdup("");
    } else if (json_is_string(c)) {
        *out = strdup(json_string_value(c));
    } else if (json_is_array(c)) {
        size_t total = 1, n = json_array_size(c);
        for (size_t k = 0; k < n; k++) {
            json_t *part = json_array_get(c, k), *ty = json_object_get(part, "type"), *tx = json_object_get(part, "text");
            if (!json_is_object(part) || !json_is_string(ty) || strcmp(json_string_value(ty), "text"))
                return oai_fail(err, 400, "messages", "messages[%zu].content[%zu]: only {\"type\": \"text\"} parts are supported", i, k);
            if (!json_is_string(tx)) return oai_fail(err, 400, "messages", "messages[%zu].content[%zu].text must be a string", i, k);
            total += json_string_length(tx) + 1;
        }
        char *s = malloc(total);
        if (!s) return oai_fail(err, 500, "messages", "out of memory");
        size_t at = 0;
        for (size_t k = 0; k < n; k++) {
            json_t *tx = json_object_get(json_array_get(c, k), "text");
            if (k) s[at++] = '\n';
            memcpy(s + at, json_string_value(tx), json_string_length(tx));
            at += json_string_length(tx);
        }
        s[at] = 0;
        *out = s;
    } else {
        return oai_fail(err, 400, "messages", "messages[%zu].content must be a string or a list of text parts", i);
    }
    if (!*out) return oai_fail(err, 500, "messages", "out of memory");
    return true;
}

bool oai_parse_messages(json_t *o, const oai_ctx_t *ctx, bool add_special, oai_request_t *rq, oai_error_t *err)
{
    json_t *v = field(o, "messages");
    if (!v) return oai_fail(err, 400, "messages", "'messages' is required");
    if (!json_is_array(v)) return oai_fail(err, 400, "messages", "'messages' must be a list");
    size_t n = json_array_size(v);
    if (n == 0) return oai_fail(err, 400, "messages", "'messages' must not be empty");
    bool add_gen = true;
    if (!get_bool(o, "add_generation_prompt", &add_gen, err)) return false;
    oai_msg_t *msgs = calloc(n, sizeof *msgs);
    char **contents = calloc(n, sizeof *contents);
    bool ok = msgs && contents;
    if (!ok) oai_fail(err, 500, "messages", "out of memory");
    for (size_t i = 0; ok && i < n; i++) {
        json_t *m = json_array_get(v, i);
        if (!json_is_object(m)) {
            ok = oai_fail(err, 400, "messages", "messages[%zu] must be an object", i);
            break;
        }
        const char *k;
        json_t *x;
        json_object_foreach(m, k, x) {
            if (!strcmp(k, "role") || !strcmp(k, "content") || !strcmp(k, "name") || !strcmp(k, "tool_call_id") ||
                !strcmp(k, "reasoning_content"))
                continue;
            if (!strcmp(k, "tool_calls") && (json_is_null(x) || (json_is_array(x) && json_array_size(x) == 0))) continue;
            ok = oai_fail(err, 400, "messages", "messages[%zu]: unknown or unsupported field '%s'", i, k);
            break;
        }
        if (!ok) break;
        json_t *role = json_object_get(m, "role");
        const char *r = json_string_value(role);
        if (!r) {
            ok = oai_fail(err, 400, "messages", "messages[%zu].role must be a string", i);
            break;
        }
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") && strcmp(r, "tool")) {
            ok = oai_fail(err, 400, "messages", "messages[%zu].role '%s' is not one of system, user, assistant, tool", i, r);
            break;
        }
        ok = message_content(m, i, !strcmp(r, "assistant"), &contents[i], err);
        msgs[i].role = r;
        msgs[i].content = contents[i];
    }
    char *text = NULL;
    if (ok && ctx->tok->chat(ctx->tok->arg, msgs, n, add_gen, &text) != MS_OK)
        ok = oai_fail(err, 400, "messages", "cannot apply the chat template to 'messages'");
    if (contents)
        for (size_t i = 0; i < n; i++) free(contents[i]);
    free(contents);
    free(msgs);
    if (!ok) return false;
    rq->prompts = calloc(1, sizeof *rq->prompts);
    if (!rq->prompts) {
        free(text);
        return oai_fail(err, 500, "messages", "out of memory");
    }
    rq->n_prompts = 1;
    size_t nids = 0;
    ms_status_t st = ctx->tok->encode(ctx->tok->arg, text, strlen(text), add_special, &rq->prompts[0].ids, &nids);
    free(text);
    if (st != MS_OK) return oai_fail(err, 400, "messages", "cannot tokenize 'messages' (invalid UTF-8?)");
    if (nids == 0) return oai_fail(err, 400, "messages", "'messages' render to an empty prompt");
    rq->prompts[0].n_ids = (int)nids;
    return true;
}

/* A chat request's prompt: `prompt_token_ids` (trtllm-serve's extension, what
 * benchmark_serving --tokenize-on-client sends) is the prompt as given, and
 * `messages` is then not rendered (it may be absent); else the messages
 * through the chat template. */
static bool chat_prompt(json_t *o, const oai_ctx_t *ctx, bool add_special, oai_request_t *rq, oai_error_t *err)
{
    json_t *ids = field(o, "prompt_token_ids");
    if (!ids) return oai_parse_messages(o, ctx, add_special, rq, err);
    if (!json_is_array(ids))
        return oai_fail(err, 400, "prompt_token_ids", "'prompt_token_ids' must be a list of token ids");
    json_t *m = field(o, "messages");
    if (m && !json_is_array(m)) return oai_fail(err, 400, "messages", "'messages' must be a list");
    rq->prompts = calloc(1, sizeof *rq->prompts);
    if (!rq->prompts) return oai_fail(err, 500, "prompt_token_ids", "out of memory");
    rq->n_prompts = 1;
    if (!prompt_from_ids(ids, ctx, &rq->prompts[0], err)) {
        snprintf(err->param, sizeof err->param, "prompt_token_ids");
        return false;
    }
    return true;
}

/* Per-prompt length checks, and max_tokens resolution for chat. */
static bool check_lengths(const oai_ctx_t *ctx, oai_request_t *rq, bool max_set, oai_error_t *err)
{
    req_params_t *p = &rq->params;
    const char *mparam = rq->kind == OAI_CHAT ? "max_completion_tokens" : "max_tokens";
    int longest = 0;
    for (int i = 0; i < rq->n_prompts; i++)
        if (rq->prompts[i].n_ids > longest) longest = rq->prompts[i].n_ids;
    if (longest >= ctx->max_seq_len)
        return oai_fail(err, 400, rq->kind == OAI_CHAT ? "messages" : "prompt",
                        "This model's maximum context length is %d tokens, but the prompt has %d tokens.",
                        ctx->max_seq_len, longest);
    if (!max_set) {
        if (rq->kind == OAI_CHAT) p->max_tokens = ctx->max_seq_len - longest;
    } else if ((int64_t)longest + p->max_tokens > ctx->max_seq_len) {
        return oai_fail(err, 400, mparam,
                        "This model's maximum context length is %d tokens. However, you requested %lld tokens "
                        "(%d in the prompt, %d in the completion). Reduce the prompt or %s.",
                        ctx->max_seq_len, (long long)longest + p->max_tokens, longest, p->max_tokens, mparam);
    }
    if (!max_set && rq->kind == OAI_COMPLETION && longest + p->max_tokens > ctx->max_seq_len)
        return oai_fail(err, 400, "max_tokens",
                        "This model's maximum context length is %d tokens; the prompt has %d and the default "
                        "max_tokens is %d. Reduce the prompt or set max_tokens.",
                        ctx->max_seq_len, longest, p->max_tokens);
    if (p->min_tokens > p->max_tokens)
        return oai_fail(err, 400, "min_tokens", "'min_tokens' (%d) must not exceed the maximum completion tokens (%d)",
                        p->min_tokens, p->max_tokens);
    return true;
}

bool oai_parse(const oai_ctx_t *ctx, oai_kind_t kind, const char *body, size_t len, oai_request_t *out,
               oai_error_t *err)
{
    oai_request_t rq;
    memset(&rq, 0, sizeof rq);
    rq.kind = kind;
    rq.n = rq.best_of = 1;
    req_params_t *p = &rq.params;
    p->temperature = 1.0f;
    p->top_p = 1.0f;
    p->top_k = 0;
    p->max_tokens = 16; /* OpenAI's completions default; chat resolves to the remaining context */
    p->skip_special_tokens = true;
    p->logprobs = -1;
    p->repetition_penalty = 1.0f;
    p->stream_interval = ctx->stream_interval > 0 ? ctx->stream_interval : 1;

    json_t *o = oai_load_object(body, len, err);
    bool ok = false;
    if (!o) goto out;
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        if (!key_known(kind == OAI_CHAT ? chat_keys : completion_keys, k)) {
            oai_fail(err, 400, k, "unknown field '%s'", k);
            goto out;
        }
    }
    if (!parse_common(o, ctx, &rq, err)) goto out;

    int64_t iv;
    bool max_set = false, set;
    if (kind == OAI_CHAT) {
        if (!get_int(o, "max_completion_tokens", INT32_MIN, INT32_MAX, &iv, &max_set, err)) goto out;
        if (!max_set && !get_int(o, "max_tokens", INT32_MIN, INT32_MAX, &iv, &max_set, err)) goto out;
    } else if (!get_int(o, "max_tokens", INT32_MIN, INT32_MAX, &iv, &max_set, err)) {
        goto out;
    }
    if (kind == OAI_COMPLETION && !get_bool(o, "echo", &rq.echo, err)) goto out;
    if (max_set) {
        /* vLLM: max_tokens 0 only with echo (the prompt and its logprobs, nothing generated) */
        if (iv == 0 && rq.echo) {
            p->prompt_only = true;
            iv = 1; /* the prefill samples a token; rank 0 drops it */
        }
        if (iv < 1) {
            oai_fail(err, 400, kind == OAI_CHAT ? "max_completion_tokens" : "max_tokens",
                     "'%s' must be at least 1, got %lld%s", kind == OAI_CHAT ? "max_completion_tokens" : "max_tokens",
                     (long long)iv, kind == OAI_COMPLETION && iv == 0 ? " (0 is allowed only with 'echo': true)" : "");
            goto out;
        }
        p->max_tokens = (int)iv;
    }

    rq.prompt_logprobs = -1;
    if (!get_int(o, "prompt_logprobs", 0, OAI_MAX_LOGPROBS, &iv, &set, err)) goto out;
    if (set) rq.prompt_logprobs = (int)iv;
    if (kind == OAI_COMPLETION) {
        if (!get_int(o, "logprobs", 0, OAI_MAX_LOGPROBS, &iv, &set, err)) goto out;
        if (set) p->logprobs = (int)iv;
        rq.echo_logprobs = rq.echo && set;
    } else {
        if (!get_bool(o, "logprobs", &rq.chat_logprobs, err)) goto out;
        if (!get_int(o, "top_logprobs", 0, OAI_MAX_LOGPROBS, &iv, &set, err)) goto out;
        if (set && !rq.chat_logprobs) {
            oai_fail(err, 400, "top_logprobs", "'top_logprobs' requires 'logprobs': true");
            goto out;
        }
        if (rq.chat_logprobs) p->logprobs = set ? (int)iv : 0;
    }
    /* prompt logprobs: echo + logprobs (the prompt's part of `logprobs`) and vLLM's prompt_logprobs */
    if (rq.echo_logprobs || rq.prompt_logprobs >= 0) {
        if (rq.prompt_logprobs >= 0 && rq.stream) { /* vLLM refuses it too */
            oai_fail(err, 400, "prompt_logprobs", "'prompt_logprobs' is not available with 'stream': true");
            goto out;
        }
        p->prompt_logprobs = true;
        p->prompt_top = rq.echo_logprobs ? p->logprobs : 0;
        if (rq.prompt_logprobs > p->prompt_top) p->prompt_top = rq.prompt_logprobs;
    }

    /* The engine's own rule, on the values it will see (proto/sampling.h). */
    const char *rule, *bad = proto_sampling_check(p->temperature, p->top_p, p->top_k, p->logprobs, OAI_MAX_LOGPROBS,
                                                  &rule);
    if (bad) {
        double got = !strcmp(bad, "temperature") ? p->temperature : !strcmp(bad, "top_p") ? p->top_p : p->top_k;
        oai_fail(err, 400, bad, "'%s' %s, got %g", bad, rule, got);
        goto out;
    }
    if ((bad = proto_penalty_check(p->presence_penalty, p->frequency_penalty, p->repetition_penalty, p->min_p, &rule))) {
        double got = !strcmp(bad, "presence_penalty")    ? p->presence_penalty
                     : !strcmp(bad, "frequency_penalty") ? p->frequency_penalty
                     : !strcmp(bad, "min_p")             ? p->min_p
                                                         : p->repetition_penalty;
        oai_fail(err, 400, bad, "'%s' %s, got %g", bad, rule, got);
        goto out;
    }

    /* Chat prompts already carry BOS in the rendered template text. */
    bool add_special = kind == OAI_COMPLETION;
    if (!get_bool(o, "add_special_tokens", &add_special, err)) goto out;
    if (kind == OAI_COMPLETION ? !parse_prompts(o, ctx, add_special, &rq, err)
                               : !chat_prompt(o, ctx, add_special, &rq, err))
        goto out;
    if (!check_lengths(ctx, &rq, max_set, err)) goto out;
    if (oai_n_choices(&rq) > OAI_MAX_PROMPTS) {
        oai_fail(err, 400, rq.best_of > rq.n ? "best_of" : "n", "%d prompts x %d choices is more than %d engine requests",
                 rq.n_prompts, rq.best_of, OAI_MAX_PROMPTS);
        goto out;
    }
    ok = true;
out:
    json_decref(o);
    if (!ok) {
        oai_request_free(&rq);
        return false;
    }
    *out = rq;
    return true;
}

void oai_request_free(oai_request_t *r)
{
    if (!r) return;
    req_params_free(&r->params);
    prompts_free(r->prompts, r->n_prompts);
    r->prompts = NULL;
    r->n_prompts = 0;
}
