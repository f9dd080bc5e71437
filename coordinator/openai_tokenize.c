/* openai_tokenize.c — the tokenizer endpoints of the API as data (openai.h):
 * POST /tokenize, POST /detokenize and GET /tokenizer_info, with vLLM's
 * request and response shapes (lm-evaluation-harness and benchmark clients
 * call them to count and build prompts the way the server will).
 *
 * /tokenize renders chat messages through the same code as
 * /v1/chat/completions, so its count equals that request's
 * usage.prompt_tokens. An empty prompt is zero tokens, as vLLM answers. */
#include "openai.h"

#include <stdlib.h>
#include <string.h>

static const char *const tokenize_keys[] = {"model", "prompt", "messages", "add_special_tokens",
                                            "add_generation_prompt", "return_token_strs", "continue_final_message",
                                            NULL};
static const char *const detokenize_keys[] = {"model", "tokens", NULL};

/* Parse a JSON object body and reject fields outside `keys` and another model's name. */
static json_t *body_object(const oai_ctx_t *ctx, const char *body, size_t len, const char *const *keys,
                           oai_error_t *err)
{
    json_t *o = oai_load_object(body, len, err);
    if (!o) return NULL;
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        const char *const *kk = keys;
        while (*kk && strcmp(*kk, k)) kk++;
        if (!*kk) {
            oai_fail(err, 400, k, "unknown field '%s'", k);
            goto bad;
        }
    }
    json_t *m = json_object_get(o, "model");
    if (m && !json_is_null(m)) {
        if (!json_is_string(m)) {
            oai_fail(err, 400, "model", "'model' must be a string");
            goto bad;
        }
        if (ctx->served_model && strcmp(json_string_value(m), ctx->served_model)) {
            oai_fail(err, 404, "model", "The model `%s` does not exist; this server serves `%s`.",
                     json_string_value(m), ctx->served_model);
            goto bad;
        }
    }
    return o;
bad:
    json_decref(o);
    return NULL;
}

static bool opt_bool(json_t *o, const char *k, bool *out, oai_error_t *err)
{
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v)) return true;
    if (!json_is_boolean(v)) return oai_fail(err, 400, k, "'%s' must be a boolean", k);
    *out = json_is_true(v);
    return true;
}

bool oai_tokenize(const oai_ctx_t *ctx, const char *body, size_t len, json_t **out, oai_error_t *err)
{
    json_t *o = body_object(ctx, body, len, tokenize_keys, err);
    if (!o) return false;
    bool ok = false, strs = false, cont = false;
    json_t *prompt = json_object_get(o, "prompt"), *msgs = json_object_get(o, "messages");
    int32_t *ids = NULL;
    size_t n = 0;
    oai_request_t rq;
    memset(&rq, 0, sizeof rq);
    if (!opt_bool(o, "return_token_strs", &strs, err) || !opt_bool(o, "continue_final_message", &cont, err)) goto out;
    if (cont) {
        oai_fail(err, 400, "continue_final_message", "'continue_final_message' is not supported");
        goto out;
    }
    if ((prompt != NULL) == (msgs != NULL)) {
        oai_fail(err, 400, prompt ? "messages" : "prompt", "give exactly one of 'prompt' and 'messages'");
        goto out;
    }
    if (prompt) {
        bool add_special = true;
        if (!opt_bool(o, "add_special_tokens", &add_special, err)) goto out;
        if (!json_is_string(prompt)) {
            oai_fail(err, 400, "prompt", "'prompt' must be a string");
            goto out;
        }
        if (json_string_length(prompt) &&
            ctx->tok->encode(ctx->tok->arg, json_string_value(prompt), json_string_length(prompt), add_special, &ids,
                             &n) != MS_OK) {
            oai_fail(err, 400, "prompt", "cannot tokenize 'prompt' (invalid UTF-8?)");
            goto out;
        }
    } else {
        bool add_special = false; /* the chat template carries BOS itself, as in /v1/chat/completions */
        if (!opt_bool(o, "add_special_tokens", &add_special, err)) goto out;
        if (!oai_parse_messages(o, ctx, add_special, &rq, err)) goto out;
        ids = rq.prompts[0].ids, n = (size_t)rq.prompts[0].n_ids;
        rq.prompts[0].ids = NULL;
    }
    json_t *toks = json_array(), *ts = strs ? json_array() : json_null();
    for (size_t i = 0; toks && i < n; i++) {
        json_array_append_new(toks, json_integer(ids[i]));
        if (strs && ts) json_array_append_new(ts, oai_token_text(ctx->tok, ids[i], NULL, NULL));
    }
    *out = json_pack("{s:I, s:i, s:o, s:o}", "count", (json_int_t)n, "max_model_len", ctx->max_seq_len, "tokens",
                     toks, "token_strs", ts);
    ok = *out != NULL;
    if (!ok) oai_fail(err, 500, NULL, "out of memory");
out:
    free(ids);
    oai_request_free(&rq);
    json_decref(o);
    return ok;
}

bool oai_detokenize(const oai_ctx_t *ctx, const char *body, size_t len, json_t **out, oai_error_t *err)
{
    json_t *o = body_object(ctx, body, len, detokenize_keys, err);
    if (!o) return false;
    bool ok = false;
    json_t *t = json_object_get(o, "tokens");
    size_t n = json_array_size(t);
    int32_t *ids = malloc(sizeof(int32_t) * (n ? n : 1));
    char *text = NULL;
    size_t tlen = 0;
    if (!json_is_array(t)) {
        oai_fail(err, 400, "tokens", "'tokens' must be a list of token ids");
        goto out;
    }
    if (!ids) {
        oai_fail(err, 500, "tokens", "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(t, i);
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= ctx->vocab_size) {
            oai_fail(err, 400, "tokens", "tokens[%zu] must be a token id in [0, %d)", i, ctx->vocab_size);
            goto out;
        }
        ids[i] = (int32_t)json_integer_value(x);
    }
    /* vLLM detokenizes with special tokens kept: the text round-trips through /tokenize */
    if (ctx->tok->decode(ctx->tok->arg, ids, n, false, &text, &tlen) != MS_OK) {
        oai_fail(err, 500, "tokens", "cannot detokenize");
        goto out;
    }
    *out = json_pack("{s:s%}", "prompt", text, tlen);
    ok = *out != NULL;
    if (!ok) oai_fail(err, 500, NULL, "out of memory");
out:
    free(text);
    free(ids);
    json_decref(o);
    return ok;
}

/* A special token's text, or null. */
static json_t *token_or_null(const oai_ctx_t *ctx, int32_t id)
{
    return id >= 0 ? oai_token_text(ctx->tok, id, NULL, NULL) : json_null();
}

json_t *oai_tokenizer_info(const oai_ctx_t *ctx)
{
    /* Whether add_special_tokens prepends BOS, found by asking the tokenizer
     * rather than restating its config. */
    bool adds_bos = false, adds_eos = false;
    int32_t *ids = NULL;
    size_t n = 0;
    if (ctx->tok->encode(ctx->tok->arg, "a", 1, true, &ids, &n) == MS_OK && n > 0) {
        adds_bos = ctx->bos_id >= 0 && ids[0] == ctx->bos_id;
        adds_eos = ctx->eos_id >= 0 && ids[n - 1] == ctx->eos_id;
    }
    free(ids);
    /* tok_load accepts only DeepSeek-V3's tokenizer, whose tokenizer_config.json names this class */
    return json_pack("{s:s, s:o, s:o, s:i, s:i, s:i, s:i, s:b, s:b}", "tokenizer_class", "LlamaTokenizerFast",
                     "bos_token", token_or_null(ctx, ctx->bos_id), "eos_token", token_or_null(ctx, ctx->eos_id),
                     "bos_token_id", ctx->bos_id, "eos_token_id", ctx->eos_id, "vocab_size", ctx->vocab_size,
                     "model_max_length", ctx->max_seq_len, "add_bos_token", adds_bos, "add_eos_token", adds_eos);
}
