/* test_openai.c — request parsing/validation (every error case → status,
 * param and message) and response/SSE formatting of coordinator/openai*.c,
 * with the fake byte tokenizer (test_http_fake.h). */
#include "test.h"
#include "test_http_fake.h"

#include <ctype.h>

static oai_ctx_t ctx = {.served_model = "tiny", .max_seq_len = 64, .vocab_size = FAKE_VOCAB, .stream_interval = 2,
                        .tok = &fake_tok_ops};

/* Parse and expect failure with `status`, `param` and a message containing `msg`. */
static void expect_err(oai_kind_t kind, const char *body, int status, const char *param, const char *msg)
{
    oai_request_t rq;
    oai_error_t err;
    memset(&err, 0, sizeof err);
    bool ok = oai_parse(&ctx, kind, body, strlen(body), &rq, &err);
    T_CHECK_MSG(!ok, "accepted: %s", body);
    if (ok) {
        oai_request_free(&rq);
        return;
    }
    T_CHECK_MSG(err.status == status, "%s: status %d, want %d (%s)", body, err.status, status, err.message);
    if (param) T_CHECK_MSG(!strcmp(err.param, param), "%s: param '%s', want '%s'", body, err.param, param);
    T_CHECK_MSG(strstr(err.message, msg) != NULL, "%s: message '%s' lacks '%s'", body, err.message, msg);
}

static bool parse_ok(oai_kind_t kind, const char *body, oai_request_t *rq)
{
    oai_error_t err;
    bool ok = oai_parse(&ctx, kind, body, strlen(body), rq, &err);
    T_CHECK_MSG(ok, "rejected %s: %d %s", body, ok ? 0 : err.status, ok ? "" : err.message);
    return ok;
}

static void test_completion_errors(void)
{
    const oai_kind_t C = OAI_COMPLETION;
    expect_err(C, "{\"prompt\": \"hi\"", 400, "", "malformed JSON");
    expect_err(C, "", 400, "", "malformed JSON");
    expect_err(C, "[1,2]", 400, "", "JSON object");
    expect_err(C, "{\"prompt\": \"hi\", \"bogus\": 1}", 400, "bogus", "unknown field 'bogus'");
    expect_err(C, "{\"prompt\": \"hi\", \"model\": \"other\"}", 404, "model", "does not exist");
    expect_err(C, "{\"prompt\": \"hi\", \"model\": 3}", 400, "model", "must be a string");
    expect_err(C, "{}", 400, "prompt", "required");
    expect_err(C, "{\"prompt\": \"\"}", 400, "prompt", "must not be empty");
    expect_err(C, "{\"prompt\": []}", 400, "prompt", "must not be empty");
    expect_err(C, "{\"prompt\": 5}", 400, "prompt", "must be a string");
    expect_err(C, "{\"prompt\": [{}]}", 400, "prompt", "must be a string");
    expect_err(C, "{\"prompt\": [1, \"a\"]}", 400, "prompt", "only integers");
    expect_err(C, "{\"prompt\": [\"a\", 1]}", 400, "prompt", "mixes");
    expect_err(C, "{\"prompt\": [\"a\", \"\"]}", 400, "prompt", "must not be empty");
    expect_err(C, "{\"prompt\": [[1, 2], []]}", 400, "prompt", "must not be empty");
    expect_err(C, "{\"prompt\": [[1, 2], 3]}", 400, "prompt", "mixes");
    expect_err(C, "{\"prompt\": [300]}", 400, "prompt", "out of range");
    expect_err(C, "{\"prompt\": [-1]}", 400, "prompt", "out of range");
    expect_err(C, "{\"prompt\": [[5], [259]]}", 400, "prompt", "out of range");
    expect_err(C, "{\"prompt\": \"hi\", \"max_tokens\": -1}", 400, "max_tokens", "at least 1");
    expect_err(C, "{\"prompt\": \"hi\", \"max_tokens\": 0}", 400, "max_tokens", "at least 1");
    expect_err(C, "{\"prompt\": \"hi\", \"max_tokens\": \"16\"}", 400, "max_tokens", "must be an integer");
    expect_err(C, "{\"prompt\": \"hi\", \"max_tokens\": 1.5}", 400, "max_tokens", "must be an integer");
    expect_err(C, "{\"prompt\": \"hi\", \"max_tokens\": 1e30}", 400, "max_tokens", "between");
    expect_err(C, "{\"prompt\": \"hi\", \"max_tokens\": 62}", 400, "max_tokens", "maximum context length is 64");
    expect_err(C, "{\"prompt\": [[1], [1,2,3,4,5,6,7,8,9,10]], \"max_tokens\": 60}", 400, "max_tokens", "maximum context length");
    expect_err(C, "{\"prompt\": \"hi\", \"temperature\": -0.1}", 400, "temperature", "[0, 10000]");
    /* issue 8: values the engine would reject in its plan check (proto/sampling.h) */
    expect_err(C, "{\"prompt\": \"hi\", \"temperature\": 1e308}", 400, "temperature", "[0, 10000]");
    expect_err(C, "{\"prompt\": \"hi\", \"temperature\": 10000.5}", 400, "temperature", "[0, 10000]");
    expect_err(C, "{\"prompt\": \"hi\", \"top_p\": 1e-46}", 400, "top_p", "32-bit float");
    expect_err(C, "{\"prompt\": \"hi\", \"top_p\": 1e-300}", 400, "top_p", "(0, 1]");
    expect_err(C, "{\"prompt\": \"hi\", \"temperature\": \"hot\"}", 400, "temperature", "must be a number");
    expect_err(C, "{\"prompt\": \"hi\", \"top_p\": 0}", 400, "top_p", "(0, 1]");
    expect_err(C, "{\"prompt\": \"hi\", \"top_p\": 1.5}", 400, "top_p", "(0, 1]");
    expect_err(C, "{\"prompt\": \"hi\", \"top_k\": -2}", 400, "top_k", "between -1");
    expect_err(C, "{\"prompt\": \"hi\", \"top_k\": true}", 400, "top_k", "must be an integer");
    expect_err(C, "{\"prompt\": \"hi\", \"seed\": \"x\"}", 400, "seed", "must be an integer");
    expect_err(C, "{\"prompt\": \"hi\", \"n\": 17}", 400, "n", "between 1 and 16");
    expect_err(C, "{\"prompt\": \"hi\", \"n\": 0}", 400, "n", "between 1 and 16");
    expect_err(C, "{\"prompt\": \"hi\", \"n\": 3, \"best_of\": 2}", 400, "best_of", "between n (3)");
    expect_err(C, "{\"prompt\": \"hi\", \"best_of\": 3, \"stream\": true}", 400, "best_of", "cannot be streamed");
    expect_err(C, "{\"prompt\": \"hi\", \"stop\": 3}", 400, "stop", "string or a list");
    expect_err(C, "{\"prompt\": \"hi\", \"stop\": [\"a\", 3]}", 400, "stop", "string or a list");
    expect_err(C, "{\"prompt\": \"hi\", \"stop\": \"\"}", 400, "stop", "must not be empty");
    expect_err(C, "{\"prompt\": \"hi\", \"stop\": [\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"]}", 400, "stop", "at most 8");
    expect_err(C, "{\"prompt\": \"hi\", \"stop_token_ids\": [259]}", 400, "stop_token_ids", "out of range");
    expect_err(C, "{\"prompt\": \"hi\", \"stop_token_ids\": 5}", 400, "stop_token_ids", "list of integers");
    expect_err(C, "{\"prompt\": \"hi\", \"ignore_eos\": 1}", 400, "ignore_eos", "must be a boolean");
    expect_err(C, "{\"prompt\": \"hi\", \"stream\": \"yes\"}", 400, "stream", "must be a boolean");
    expect_err(C, "{\"prompt\": \"hi\", \"stream_options\": {\"include_usage\": true}}", 400, "stream_options", "only allowed when");
    expect_err(C, "{\"prompt\": \"hi\", \"stream\": true, \"stream_options\": {\"include_usage\": 1}}", 400,
               "stream_options.include_usage", "must be a boolean");
    expect_err(C, "{\"prompt\": \"hi\", \"stream\": true, \"stream_options\": {\"foo\": 1}}", 400, "stream_options", "unknown field");
    expect_err(C, "{\"prompt\": \"hi\", \"stream\": true, \"stream_options\": 1}", 400, "stream_options", "must be an object");
    expect_err(C, "{\"prompt\": \"hi\", \"logprobs\": 21}", 400, "logprobs", "between 0 and 20");
    expect_err(C, "{\"prompt\": \"hi\", \"logprobs\": true}", 400, "logprobs", "must be an integer");
    /* prompt logprobs (issue 14): max_tokens 0 only with echo, prompt_logprobs bounded, not streamed (vLLM) */
    expect_err(C, "{\"prompt\": \"hi\", \"max_tokens\": 0, \"logprobs\": 1}", 400, "max_tokens", "only with 'echo'");
    expect_err(C, "{\"prompt\": \"hi\", \"echo\": true, \"logprobs\": 21}", 400, "logprobs", "between 0 and 20");
    expect_err(C, "{\"prompt\": \"hi\", \"prompt_logprobs\": 21}", 400, "prompt_logprobs", "between 0 and 20");
    expect_err(C, "{\"prompt\": \"hi\", \"prompt_logprobs\": -1}", 400, "prompt_logprobs", "between 0 and 20");
    expect_err(C, "{\"prompt\": \"hi\", \"prompt_logprobs\": 1, \"stream\": true}", 400, "prompt_logprobs",
               "not available with 'stream'");
    expect_err(OAI_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"prompt_logprobs\": \"a\"}", 400,
               "prompt_logprobs", "must be an integer");
    expect_err(C, "{\"prompt\": \"hi\", \"presence_penalty\": 2.5}", 400, "presence_penalty", "[-2, 2]");
    expect_err(C, "{\"prompt\": \"hi\", \"frequency_penalty\": -3}", 400, "frequency_penalty", "[-2, 2]");
    expect_err(C, "{\"prompt\": \"hi\", \"repetition_penalty\": 0}", 400, "repetition_penalty", "greater than 0");
    expect_err(C, "{\"prompt\": \"hi\", \"min_p\": 1.5}", 400, "min_p", "[0, 1]");
    expect_err(C, "{\"prompt\": \"hi\", \"presence_penalty\": \"x\"}", 400, "presence_penalty", "must be a number");
    expect_err(C, "{\"prompt\": \"hi\", \"logit_bias\": {\"x\": 1}}", 400, "logit_bias", "not a token id");
    expect_err(C, "{\"prompt\": \"hi\", \"logit_bias\": {\"99999\": 1}}", 400, "logit_bias", "out of range");
    expect_err(C, "{\"prompt\": \"hi\", \"logit_bias\": {\"5\": \"a\"}}", 400, "logit_bias", "must be a number");
    expect_err(C, "{\"prompt\": \"hi\", \"logit_bias\": [1]}", 400, "logit_bias", "must be an object");
    expect_err(C, "{\"prompt\": \"hi\", \"suffix\": \"x\"}", 400, "suffix", "not supported");
    expect_err(C, "{\"prompt\": \"hi\", \"use_beam_search\": true}", 400, "use_beam_search", "not supported");
    expect_err(C, "{\"prompt\": \"hi\", \"min_tokens\": 20}", 400, "min_tokens", "must not exceed");
    expect_err(C, "{\"prompt\": \"hi\", \"min_tokens\": -1}", 400, "min_tokens", "between 0");
    expect_err(C, "{\"prompt\": \"hi\", \"user\": 5}", 400, "user", "must be a string");
    expect_err(C, "{\"prompt\": \"hi\", \"add_special_tokens\": \"no\"}", 400, "add_special_tokens", "must be a boolean");
    expect_err(C, "{\"prompt\": \"hi\", \"messages\": []}", 400, "messages", "unknown field");
    /* a 64-token prompt leaves no room at all */
    expect_err(C, "{\"prompt\": \"0123456789012345678901234567890123456789012345678901234567890123\"}", 400, "prompt",
               "prompt has 65 tokens");
}

static void test_completion_ok(void)
{
    oai_request_t rq;
    /* sampling controls: values kept, logit_bias clamped to +-100 (the last of a repeated key wins) */
    if (parse_ok(OAI_COMPLETION, "{\"prompt\": \"hi\", \"presence_penalty\": 0.5, \"frequency_penalty\": -1, "
                                 "\"repetition_penalty\": 1.2, \"min_p\": 0.1, \"logit_bias\": {\"5\": 300, \"7\": -2.5, "
                                 "\"5\": -400}}", &rq)) {
        T_CHECK(rq.params.presence_penalty == 0.5f && rq.params.frequency_penalty == -1.0f);
        T_CHECK(rq.params.repetition_penalty == 1.2f && rq.params.min_p == 0.1f);
        T_CHECK(rq.params.n_logit_bias == 2);
        for (int i = 0; i < rq.params.n_logit_bias; i++) {
            const proto_bias_t *b = &rq.params.logit_bias[i];
            T_CHECK((b->token == 5 && b->bias == -100.0f) || (b->token == 7 && b->bias == -2.5f));
        }
        oai_request_free(&rq);
    }
    if (parse_ok(OAI_COMPLETION, "{\"prompt\": \"hi\"}", &rq)) {
        T_CHECK(rq.params.repetition_penalty == 1.0f && rq.params.presence_penalty == 0 && rq.params.n_logit_bias == 0);
        oai_request_free(&rq);
    }
    /* the edges of the shared sampling rule are accepted */
    if (parse_ok(OAI_COMPLETION, "{\"prompt\": \"hi\", \"temperature\": 10000, \"top_p\": 1e-30}", &rq)) {
        T_CHECK(rq.params.temperature == 1e4f && rq.params.top_p > 0);
        oai_request_free(&rq);
    }
    if (parse_ok(OAI_COMPLETION, "{\"prompt\": \"hi\"}", &rq)) {
        T_CHECK(rq.kind == OAI_COMPLETION && rq.n_prompts == 1);
        T_CHECK(rq.prompts[0].n_ids == 3 && rq.prompts[0].ids[0] == 0 && rq.prompts[0].ids[1] == 'h' + 3);
        T_CHECK(rq.params.max_tokens == 16 && rq.params.temperature == 1.0f && rq.params.top_p == 1.0f);
        T_CHECK(rq.params.top_k == 0 && !rq.params.has_seed && rq.params.logprobs == -1);
        T_CHECK(rq.params.skip_special_tokens && !rq.params.ignore_eos && !rq.stream && !rq.echo);
        T_CHECK(rq.params.stream_interval == 2 && rq.params.n_stop == 0 && rq.prompts[0].text == NULL);
        oai_request_free(&rq);
    }
    /* every field at once, nulls for defaults, the seed's curl body */
    if (parse_ok(OAI_COMPLETION,
                 "{\"model\": \"tiny\", \"prompt\": \"Where is New York?\", \"max_tokens\": 16.0, \"temperature\": 0,"
                 " \"top_p\": 0.5, \"top_k\": 40, \"seed\": -7, \"stop\": [\"\\n\", \"x\"], \"stop_token_ids\": [1, 2],"
                 " \"ignore_eos\": true, \"min_tokens\": 3, \"add_special_tokens\": false, \"skip_special_tokens\": false,"
                 " \"stream\": true, \"stream_options\": {\"include_usage\": true}, \"n\": 1, \"echo\": false,"
                 " \"logprobs\": 2, \"user\": \"u\", \"presence_penalty\": 0, \"frequency_penalty\": 0.0,"
                 " \"repetition_penalty\": 1, \"best_of\": null, \"logit_bias\": {}, \"suffix\": null, \"min_p\": 0}",
                 &rq)) {
        T_CHECK(rq.prompts[0].n_ids == 18 && rq.prompts[0].ids[0] == 'W' + 3); /* no BOS */
        T_CHECK(rq.params.max_tokens == 16 && rq.params.temperature == 0.0f && rq.params.top_p == 0.5f);
        T_CHECK(rq.params.top_k == 40 && rq.params.has_seed && rq.params.seed == (uint64_t)-7);
        T_CHECK(rq.params.n_stop == 2 && !strcmp(rq.params.stop[0], "\n") && !strcmp(rq.params.stop[1], "x"));
        T_CHECK(rq.params.n_stop_token_ids == 2 && rq.params.stop_token_ids[1] == 2);
        T_CHECK(rq.params.ignore_eos && rq.params.min_tokens == 3 && !rq.params.skip_special_tokens);
        T_CHECK(rq.stream && rq.params.stream && rq.include_usage && rq.params.logprobs == 2);
        oai_request_free(&rq);
    }
    if (parse_ok(OAI_COMPLETION, "{\"prompt\": [\"ab\", \"cde\"], \"echo\": true, \"top_k\": -1, \"model\": null}", &rq)) {
        T_CHECK(rq.n_prompts == 2 && rq.prompts[0].n_ids == 3 && rq.prompts[1].n_ids == 4);
        T_CHECK(rq.echo && rq.prompts[1].text && !strcmp(rq.prompts[1].text, "cde") && rq.prompts[1].text_len == 3);
        T_CHECK(rq.params.top_k == 0);
        oai_request_free(&rq);
    }
    if (parse_ok(OAI_COMPLETION, "{\"prompt\": [[0, 107, 108], [108]], \"echo\": true, \"stop\": \"z\"}", &rq)) {
        T_CHECK(rq.n_prompts == 2 && rq.prompts[0].n_ids == 3 && rq.prompts[1].ids[0] == 108);
        T_CHECK(rq.prompts[0].text && !strcmp(rq.prompts[0].text, "hi")); /* BOS skipped by skip_special_tokens */
        T_CHECK(rq.params.n_stop == 1 && !strcmp(rq.params.stop[0], "z"));
        oai_request_free(&rq);
    }
    if (parse_ok(OAI_COMPLETION, "{\"prompt\": [5, 6, 258], \"max_tokens\": 61}", &rq)) {
        T_CHECK(rq.n_prompts == 1 && rq.prompts[0].n_ids == 3 && rq.prompts[0].ids[2] == 258);
        T_CHECK(rq.params.max_tokens == 61);
        oai_request_free(&rq);
    }
}

static void test_chat(void)
{
    const oai_kind_t H = OAI_CHAT;
    expect_err(H, "{}", 400, "messages", "required");
    expect_err(H, "{\"messages\": []}", 400, "messages", "must not be empty");
    expect_err(H, "{\"messages\": {}}", 400, "messages", "must be a list");
    expect_err(H, "{\"messages\": [1]}", 400, "messages", "must be an object");
    expect_err(H, "{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}", 400, "messages", "not one of");
    expect_err(H, "{\"messages\": [{\"content\": \"x\"}]}", 400, "messages", "role must be a string");
    expect_err(H, "{\"messages\": [{\"role\": \"user\"}]}", 400, "messages", "content is required");
    expect_err(H, "{\"messages\": [{\"role\": \"user\", \"content\": 5}]}", 400, "messages", "string or a list");
    expect_err(H, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}", 400, "messages",
               "only {\"type\": \"text\"}");
    expect_err(H, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\", \"foo\": 1}]}", 400, "messages",
               "unsupported field 'foo'");
    expect_err(H, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"prompt\": \"x\"}", 400, "prompt",
               "unknown field");
    expect_err(H, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"top_logprobs\": 2}", 400,
               "top_logprobs", "requires 'logprobs'");
    expect_err(H, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"logprobs\": 2}", 400, "logprobs",
               "must be a boolean");
    expect_err(H, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_completion_tokens\": 0}", 400,
               "max_completion_tokens", "at least 1");
    expect_err(H, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_tokens\": 60}", 400,
               "max_completion_tokens", "maximum context length");
    expect_err(H, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tools\": [{}]}", 400, "tools",
               "not supported");
    expect_err(H, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"response_format\": {\"type\": \"json_object\"}}",
               400, "response_format", "not supported");
    expect_err(H, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"echo\": true}", 400, "echo",
               "unknown field");

    oai_request_t rq;
    /* "<s>user: hi\nassistant:" = 3 + 9 + 10 = 22 bytes → 22 ids (no BOS id: add_special_tokens false) */
    if (parse_ok(H, "{\"model\": \"tiny\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}", &rq)) {
        T_CHECK(rq.kind == OAI_CHAT && rq.n_prompts == 1);
        T_CHECK_MSG(rq.prompts[0].n_ids == 22, "%d", rq.prompts[0].n_ids);
        T_CHECK(rq.prompts[0].ids[0] == '<' + 3);
        T_CHECK_MSG(rq.params.max_tokens == 64 - 22, "default max_tokens = the rest of the context: %d", rq.params.max_tokens);
        T_CHECK(rq.params.logprobs == -1 && !rq.chat_logprobs);
        oai_request_free(&rq);
    }
    if (parse_ok(H,
                 "{\"messages\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", \"content\": "
                 "[{\"type\": \"text\", \"text\": \"a\"}, {\"type\": \"text\", \"text\": \"b\"}]}, {\"role\": "
                 "\"assistant\", \"content\": null, \"tool_calls\": []}], \"max_tokens\": 5, "
                 "\"max_completion_tokens\": 7, \"logprobs\": true, \"top_logprobs\": 3, \"add_generation_prompt\": false,"
                 " \"add_special_tokens\": true, \"tool_choice\": \"none\", \"response_format\": {\"type\": \"text\"}}",
                 &rq)) {
        /* <s>system: s\nuser: a\nb\nassistant: \n  with BOS id */
        const char *want = "<s>system: s\nuser: a\nb\nassistant: \n";
        T_CHECK_MSG(rq.prompts[0].n_ids == (int)strlen(want) + 1, "%d", rq.prompts[0].n_ids);
        T_CHECK(rq.prompts[0].ids[0] == 0);
        T_CHECK(rq.params.max_tokens == 7 && rq.chat_logprobs && rq.params.logprobs == 3);
        oai_request_free(&rq);
    }
}

/* ---- responses ---------------------------------------------------------- */

static req_chunk_t mk_chunk(const char *text, const int32_t *ids, int n, float *lps, proto_result_t *top, req_finish_t f)
{
    req_chunk_t c;
    memset(&c, 0, sizeof c);
    c.text = (char *)text;
    c.text_len = strlen(text);
    c.ids = (int32_t *)ids;
    c.n_ids = n;
    c.logprobs = lps;
    c.top = top;
    c.finish = f;
    return c;
}

static json_t *reparse(json_t *j)
{
    /* through text and back, as a client sees it */
    size_t len;
    char *s = oai_dump(j, false, &len);
    json_decref(j);
    T_CHECK(s && strlen(s) == len && !strchr(s, '\n'));
    json_t *r = s ? json_loads(s, 0, NULL) : NULL;
    free(s);
    return r;
}

static void test_ids(void)
{
    char id[48];
    oai_make_id(OAI_COMPLETION, id, sizeof id);
    T_CHECK(strncmp(id, "cmpl-", 5) == 0 && strlen(id) == 5 + 32);
    bool hex = true;
    for (int i = 5; id[i]; i++) hex &= isxdigit((unsigned char)id[i]) && !isupper((unsigned char)id[i]);
    T_CHECK(hex);
    char id2[48];
    oai_make_id(OAI_COMPLETION, id2, sizeof id2);
    T_CHECK(strcmp(id, id2) != 0);
    oai_make_id(OAI_CHAT, id, sizeof id);
    T_CHECK(strncmp(id, "chatcmpl-", 9) == 0 && strlen(id) == 9 + 32);
}

static void test_completion_response(void)
{
    oai_request_t rq;
    if (!parse_ok(OAI_COMPLETION, "{\"prompt\": [\"ab\", \"c\"], \"echo\": true}", &rq)) return;
    oai_choice_t ch[2];
    T_CHECK(oai_choice_init(&ch[0], &rq, 0) == MS_OK && oai_choice_init(&ch[1], &rq, 1) == MS_OK);
    int32_t ids[3] = {'x' + 3, 'y' + 3, 'z' + 3};
    req_chunk_t a = mk_chunk("xy", ids, 2, NULL, NULL, REQ_FINISH_NONE);
    req_chunk_t b = mk_chunk("z", ids + 2, 1, NULL, NULL, REQ_FINISH_LENGTH);
    req_chunk_t c = mk_chunk("", NULL, 0, NULL, NULL, REQ_FINISH_STOP);
    T_CHECK(oai_choice_add(&ch[0], &rq, &fake_tok_ops, &a) == MS_OK);
    T_CHECK(oai_choice_add(&ch[0], &rq, &fake_tok_ops, &b) == MS_OK);
    T_CHECK(oai_choice_add(&ch[1], &rq, &fake_tok_ops, &c) == MS_OK);
    json_t *j = reparse(oai_response(&rq, "cmpl-0123", 1754294810, "tiny", ch, 2));
    T_CHECK(j != NULL);
    T_CHECK(!strcmp(json_string_value(json_object_get(j, "id")), "cmpl-0123"));
    T_CHECK(!strcmp(json_string_value(json_object_get(j, "object")), "text_completion"));
    T_CHECK(json_integer_value(json_object_get(j, "created")) == 1754294810);
    T_CHECK(!strcmp(json_string_value(json_object_get(j, "model")), "tiny"));
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0), *c1 = json_array_get(json_object_get(j, "choices"), 1);
    T_CHECK(json_integer_value(json_object_get(c0, "index")) == 0 && json_integer_value(json_object_get(c1, "index")) == 1);
    T_CHECK_MSG(!strcmp(json_string_value(json_object_get(c0, "text")), "abxyz"), "echo + completion: %s",
                json_string_value(json_object_get(c0, "text")));
    T_CHECK(!strcmp(json_string_value(json_object_get(c0, "finish_reason")), "length"));
    T_CHECK(!strcmp(json_string_value(json_object_get(c1, "text")), "c"));
    T_CHECK(!strcmp(json_string_value(json_object_get(c1, "finish_reason")), "stop"));
    T_CHECK(json_is_null(json_object_get(c0, "logprobs")) && json_is_null(json_object_get(c0, "stop_reason")));
    json_t *u = json_object_get(j, "usage");
    T_CHECK(json_integer_value(json_object_get(u, "prompt_tokens")) == 3 + 2);
    T_CHECK(json_integer_value(json_object_get(u, "completion_tokens")) == 3);
    T_CHECK(json_integer_value(json_object_get(u, "total_tokens")) == 8);
    json_decref(j);
    oai_choice_free(&ch[0]);
    oai_choice_free(&ch[1]);
    oai_request_free(&rq);
}

static void test_logprobs(void)
{
    oai_request_t rq;
    if (!parse_ok(OAI_COMPLETION, "{\"prompt\": \"a\", \"logprobs\": 2}", &rq)) return;
    oai_choice_t ch;
    T_CHECK(oai_choice_init(&ch, &rq, 0) == MS_OK);
    /* "é" is two tokens (0xC3 0xA9) that come out as one text piece; then "b" */
    int32_t ids[3] = {0xC3 + 3, 0xA9 + 3, 'b' + 3};
    float lps[3] = {-0.5f, -INFINITY, -0.25f};
    proto_result_t top[3];
    memset(top, 0, sizeof top);
    for (int i = 0; i < 3; i++) {
        top[i].n_top = 2;
        top[i].top_ids[0] = ids[i];
        top[i].top_logprobs[0] = lps[i];
        top[i].top_ids[1] = 'q' + 3;
        top[i].top_logprobs[1] = -3.0f;
    }
    req_chunk_t a = mk_chunk("\xC3\xA9", ids, 2, lps, top, REQ_FINISH_NONE);
    req_chunk_t b = mk_chunk("b", ids + 2, 1, lps + 2, top + 2, REQ_FINISH_LENGTH);
    T_CHECK(oai_choice_add(&ch, &rq, &fake_tok_ops, &a) == MS_OK);
    T_CHECK(oai_choice_add(&ch, &rq, &fake_tok_ops, &b) == MS_OK);
    json_t *j = reparse(oai_response(&rq, "cmpl-x", 1, "tiny", &ch, 1));
    json_t *lp = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "logprobs");
    json_t *toks = json_object_get(lp, "tokens"), *tlp = json_object_get(lp, "token_logprobs");
    json_t *tops = json_object_get(lp, "top_logprobs"), *offs = json_object_get(lp, "text_offset");
    T_CHECK(json_array_size(toks) == 3 && json_array_size(tlp) == 3 && json_array_size(tops) == 3 && json_array_size(offs) == 3);
    T_CHECK_MSG(!strcmp(json_string_value(json_array_get(toks, 0)), "bytes:\\xc3"), "%s", json_string_value(json_array_get(toks, 0)));
    T_CHECK(!strcmp(json_string_value(json_array_get(toks, 2)), "b"));
    T_NEAR(json_real_value(json_array_get(tlp, 0)), -0.5, 1e-6);
    T_NEAR(json_real_value(json_array_get(tlp, 1)), -9999.0, 1e-6); /* -inf stand-in */
    T_CHECK(json_object_size(json_array_get(tops, 2)) == 2);
    T_NEAR(json_real_value(json_object_get(json_array_get(tops, 2), "q")), -3.0, 1e-6);
    /* "é" is one code point: b starts at offset 1 */
    T_CHECK(json_integer_value(json_array_get(offs, 0)) == 0);
    T_CHECK(json_integer_value(json_array_get(offs, 1)) <= 1); /* inside "é": either side is fine */
    T_CHECK_MSG(json_integer_value(json_array_get(offs, 2)) == 1, "%lld", (long long)json_integer_value(json_array_get(offs, 2)));
    json_decref(j);
    oai_choice_free(&ch);
    oai_request_free(&rq);

    /* chat shape */
    if (!parse_ok(OAI_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"logprobs\": true, \"top_logprobs\": 1}", &rq))
        return;
    T_CHECK(oai_choice_init(&ch, &rq, 0) == MS_OK);
    T_CHECK(oai_choice_add(&ch, &rq, &fake_tok_ops, &b) == MS_OK);
    j = reparse(oai_response(&rq, "chatcmpl-x", 1, "tiny", &ch, 1));
    json_t *content = json_object_get(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "logprobs"), "content");
    json_t *e = json_array_get(content, 0);
    T_CHECK(json_array_size(content) == 1 && !strcmp(json_string_value(json_object_get(e, "token")), "b"));
    T_CHECK(json_integer_value(json_array_get(json_object_get(e, "bytes"), 0)) == 'b');
    T_CHECK(json_array_size(json_object_get(e, "top_logprobs")) == 1); /* top_logprobs: 1 of the 2 the engine gave */
    json_decref(j);
    oai_choice_free(&ch);
    oai_request_free(&rq);
}

/* echo + logprobs and prompt_logprobs: the parse sets the engine's knobs; the prompt's entries come first in
 * `logprobs` (position 0 null), then the generated ones; vLLM's prompt_logprobs list beside it. */
static void test_prompt_logprobs(void)
{
    oai_request_t rq;
    if (parse_ok(OAI_COMPLETION, "{\"prompt\": \"hi\", \"echo\": true, \"max_tokens\": 0}", &rq)) {
        T_CHECK(rq.params.prompt_only && rq.params.max_tokens == 1 && !rq.params.prompt_logprobs);
        oai_request_free(&rq);
    }
    if (parse_ok(OAI_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"prompt_logprobs\": 2}", &rq)) {
        T_CHECK(rq.params.prompt_logprobs && rq.params.prompt_top == 2 && rq.params.logprobs == -1);
        oai_request_free(&rq);
    }
    if (!parse_ok(OAI_COMPLETION, "{\"prompt\": [[10, 11, 12]], \"echo\": true, \"logprobs\": 1, \"prompt_logprobs\": 2}",
                  &rq))
        return;
    T_CHECK(rq.echo_logprobs && rq.prompt_logprobs == 2 && rq.params.prompt_logprobs && rq.params.prompt_top == 2);
    oai_choice_t ch;
    T_CHECK(oai_choice_init(&ch, &rq, 0) == MS_OK);
    /* positions 1 and 2 (tokens 11, 12) in two chunks, then one generated token 13 */
    proto_plp_t e[2];
    memset(e, 0, sizeof e);
    e[0] = (proto_plp_t){.token = 11, .logprob = -1.5f, .n_top = 2, .top_ids = {20, 11}, .top_logprobs = {-0.5f, -1.25f}};
    e[1] = (proto_plp_t){.token = 12, .logprob = -0.75f, .n_top = 2, .top_ids = {12, 30}, .top_logprobs = {-0.7f, -2.0f}};
    int32_t gen = 13;
    float glp = -0.1f;
    proto_result_t gtop = {.token = 13, .logprob = -0.1f, .n_top = 2, .top_ids = {13, 14}, .top_logprobs = {-0.1f, -3}};
    req_chunk_t a = mk_chunk("", NULL, 0, NULL, NULL, REQ_FINISH_NONE);
    a.plp = &e[0], a.n_plp = 1, a.plp_pos0 = 1;
    req_chunk_t b = mk_chunk("\x0a", &gen, 1, &glp, &gtop, REQ_FINISH_LENGTH);
    b.plp = &e[1], b.n_plp = 1, b.plp_pos0 = 2;
    T_CHECK(oai_choice_add(&ch, &rq, &fake_tok_ops, &a) == MS_OK);
    T_CHECK(oai_choice_add(&ch, &rq, &fake_tok_ops, &b) == MS_OK);
    json_t *j = reparse(oai_response(&rq, "cmpl-x", 1, "tiny", &ch, 1));
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0), *lp = json_object_get(c0, "logprobs");
    json_t *toks = json_object_get(lp, "tokens"), *tlp = json_object_get(lp, "token_logprobs");
    json_t *tops = json_object_get(lp, "top_logprobs"), *offs = json_object_get(lp, "text_offset");
    T_CHECK_MSG(json_array_size(toks) == 4 && json_array_size(tlp) == 4 && json_array_size(tops) == 4 &&
                json_array_size(offs) == 4, "%zu entries", json_array_size(toks));
    T_CHECK(json_is_null(json_array_get(tlp, 0)) && json_is_null(json_array_get(tops, 0)));
    T_NEAR(json_real_value(json_array_get(tlp, 1)), -1.5, 1e-6);
    T_NEAR(json_real_value(json_array_get(tlp, 3)), -0.1, 1e-6);
    /* logprobs 1: the best and the prompt token itself; the prompt token's top entry equals its token_logprobs */
    json_t *t1 = json_array_get(tops, 1), *t2 = json_array_get(tops, 2), *t3 = json_array_get(tops, 3);
    T_CHECK_MSG(json_object_size(t1) == 2 && json_object_size(t2) == 1 && json_object_size(t3) == 1, "%zu %zu %zu",
                json_object_size(t1), json_object_size(t2), json_object_size(t3));
    char k12[2] = {12 - 3, 0};
    T_CHECK(json_real_value(json_object_get(t2, k12)) == json_real_value(json_array_get(tlp, 2)));
    for (int i = 0; i < 4; i++) T_CHECK(json_integer_value(json_array_get(offs, i)) == i);
    /* vLLM's prompt_logprobs: null, then {id: {logprob, rank, decoded_token}} (prompt token first) */
    json_t *pl = json_object_get(c0, "prompt_logprobs");
    T_CHECK(json_array_size(pl) == 3 && json_is_null(json_array_get(pl, 0)));
    json_t *p1 = json_array_get(pl, 1), *p2 = json_array_get(pl, 2);
    T_CHECK(json_object_size(p1) == 2 && json_object_size(p2) == 2); /* 11 + {20}, then 12 (in the top) + 30 */
    T_CHECK(json_integer_value(json_object_get(json_object_get(p1, "11"), "rank")) == 2);
    T_CHECK(json_integer_value(json_object_get(json_object_get(p1, "20"), "rank")) == 1);
    T_CHECK(json_integer_value(json_object_get(json_object_get(p2, "12"), "rank")) == 1);
    T_NEAR(json_real_value(json_object_get(json_object_get(p2, "30"), "logprob")), -2.0, 1e-6);
    T_CHECK(json_integer_value(json_object_get(json_object_get(j, "usage"), "completion_tokens")) == 1);
    json_decref(j);
    oai_choice_free(&ch);
    oai_request_free(&rq);
}

static void test_stream_completion(void)
{
    oai_request_t rq;
    if (!parse_ok(OAI_COMPLETION, "{\"prompt\": \"a\", \"stream\": true, \"stream_options\": {\"include_usage\": true}}", &rq))
        return;
    oai_choice_t ch;
    T_CHECK(oai_choice_init(&ch, &rq, 0) == MS_OK);
    T_CHECK(oai_choice_chunk(&rq, "cmpl-s", 5, "tiny", &ch) == NULL); /* nothing yet */
    int32_t ids[2] = {'h' + 3, 'i' + 3};
    req_chunk_t a = mk_chunk("h", ids, 1, NULL, NULL, REQ_FINISH_NONE);
    req_chunk_t b = mk_chunk("i", ids + 1, 1, NULL, NULL, REQ_FINISH_STOP);
    T_CHECK(oai_choice_add(&ch, &rq, &fake_tok_ops, &a) == MS_OK);
    json_t *j = oai_choice_chunk(&rq, "cmpl-s", 5, "tiny", &ch);
    size_t len;
    char *sse = oai_dump(j, true, &len);
    T_CHECK(sse && !strncmp(sse, "data: {", 7) && len >= 2 && !strcmp(sse + len - 2, "\n\n") && strlen(sse) == len);
    free(sse);
    j = reparse(j);
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    T_CHECK(!strcmp(json_string_value(json_object_get(j, "object")), "text_completion"));
    T_CHECK(!strcmp(json_string_value(json_object_get(c0, "text")), "h"));
    T_CHECK(json_is_null(json_object_get(c0, "finish_reason")));
    T_CHECK(json_object_get(j, "usage") && json_is_null(json_object_get(j, "usage")));
    json_decref(j);
    T_CHECK(oai_choice_chunk(&rq, "cmpl-s", 5, "tiny", &ch) == NULL); /* sent already */
    /* a token whose text is held back (an incomplete UTF-8 tail) is still an event of its own: clients time
     * tokens by events */
    req_chunk_t e = mk_chunk("", ids, 1, NULL, NULL, REQ_FINISH_NONE);
    T_CHECK(oai_choice_add(&ch, &rq, &fake_tok_ops, &e) == MS_OK);
    j = reparse(oai_choice_chunk(&rq, "cmpl-s", 5, "tiny", &ch));
    c0 = json_array_get(json_object_get(j, "choices"), 0);
    T_CHECK(c0 && !strcmp(json_string_value(json_object_get(c0, "text")), ""));
    T_CHECK(json_is_null(json_object_get(c0, "finish_reason")));
    json_decref(j);
    T_CHECK(oai_choice_chunk(&rq, "cmpl-s", 5, "tiny", &ch) == NULL);
    T_CHECK(oai_choice_add(&ch, &rq, &fake_tok_ops, &b) == MS_OK);
    j = reparse(oai_choice_chunk(&rq, "cmpl-s", 5, "tiny", &ch));
    c0 = json_array_get(json_object_get(j, "choices"), 0);
    T_CHECK(!strcmp(json_string_value(json_object_get(c0, "text")), "i"));
    T_CHECK(!strcmp(json_string_value(json_object_get(c0, "finish_reason")), "stop"));
    json_decref(j);
    T_CHECK(oai_choice_chunk(&rq, "cmpl-s", 5, "tiny", &ch) == NULL); /* finished */
    j = reparse(oai_usage_chunk(&rq, "cmpl-s", 5, "tiny", &ch, 1));
    T_CHECK(json_array_size(json_object_get(j, "choices")) == 0);
    T_CHECK(json_integer_value(json_object_get(json_object_get(j, "usage"), "completion_tokens")) == 3);
    T_CHECK(json_integer_value(json_object_get(json_object_get(j, "usage"), "prompt_tokens")) == 2);
    json_decref(j);
    oai_choice_free(&ch);
    oai_request_free(&rq);
}

static void test_stream_chat(void)
{
    oai_request_t rq;
    if (!parse_ok(OAI_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"stream\": true}", &rq)) return;
    oai_choice_t ch;
    T_CHECK(oai_choice_init(&ch, &rq, 0) == MS_OK);
    int32_t ids[1] = {'h' + 3};
    req_chunk_t a = mk_chunk("h", ids, 1, NULL, NULL, REQ_FINISH_LENGTH);
    T_CHECK(oai_choice_add(&ch, &rq, &fake_tok_ops, &a) == MS_OK);
    json_t *j = reparse(oai_choice_chunk(&rq, "chatcmpl-s", 5, "tiny", &ch));
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    T_CHECK(!strcmp(json_string_value(json_object_get(j, "object")), "chat.completion.chunk"));
    T_CHECK(!strcmp(json_string_value(json_object_get(json_object_get(c0, "delta"), "role")), "assistant"));
    T_CHECK(json_object_get(j, "usage") == NULL); /* no include_usage */
    json_decref(j);
    j = reparse(oai_choice_chunk(&rq, "chatcmpl-s", 5, "tiny", &ch));
    c0 = json_array_get(json_object_get(j, "choices"), 0);
    T_CHECK(!strcmp(json_string_value(json_object_get(json_object_get(c0, "delta"), "content")), "h"));
    T_CHECK(json_object_get(json_object_get(c0, "delta"), "role") == NULL);
    T_CHECK(!strcmp(json_string_value(json_object_get(c0, "finish_reason")), "length"));
    json_decref(j);
    T_CHECK(oai_choice_chunk(&rq, "chatcmpl-s", 5, "tiny", &ch) == NULL);
    oai_choice_free(&ch);

    /* non-streaming chat body */
    T_CHECK(oai_choice_init(&ch, &rq, 0) == MS_OK);
    T_CHECK(oai_choice_add(&ch, &rq, &fake_tok_ops, &a) == MS_OK);
    j = reparse(oai_response(&rq, "chatcmpl-s", 5, "tiny", &ch, 1));
    c0 = json_array_get(json_object_get(j, "choices"), 0);
    T_CHECK(!strcmp(json_string_value(json_object_get(j, "object")), "chat.completion"));
    T_CHECK(!strcmp(json_string_value(json_object_get(json_object_get(c0, "message"), "role")), "assistant"));
    T_CHECK(!strcmp(json_string_value(json_object_get(json_object_get(c0, "message"), "content")), "h"));
    json_decref(j);
    oai_choice_free(&ch);
    oai_request_free(&rq);
}

static void test_error_body(void)
{
    oai_error_t e;
    oai_fail(&e, 400, "top_p", "'top_p' must be in (0, 1], got %g", 2.0);
    json_t *j = reparse(oai_error_body(&e));
    json_t *in = json_object_get(j, "error");
    T_CHECK(!strcmp(json_string_value(json_object_get(j, "object")), "error"));
    T_CHECK(!strcmp(json_string_value(json_object_get(in, "message")), "'top_p' must be in (0, 1], got 2"));
    T_CHECK(!strcmp(json_string_value(json_object_get(in, "type")), "invalid_request_error"));
    T_CHECK(!strcmp(json_string_value(json_object_get(in, "param")), "top_p"));
    T_CHECK(json_integer_value(json_object_get(in, "code")) == 400);
    T_CHECK(!strcmp(json_string_value(json_object_get(j, "message")), json_string_value(json_object_get(in, "message"))));
    json_decref(j);
    oai_fail(&e, 404, NULL, "gone");
    j = reparse(oai_error_body(&e));
    T_CHECK(json_is_null(json_object_get(json_object_get(j, "error"), "param")));
    T_CHECK(!strcmp(json_string_value(json_object_get(json_object_get(j, "error"), "type")), "not_found_error"));
    json_decref(j);
}

/* The tokenizer endpoints' JSON and chat prompt_token_ids (fake tokenizer: byte b = id b + 3). */
static void test_tokenize(void)
{
    oai_ctx_t tc = ctx;
    tc.bos_id = 0, tc.eos_id = 1;
    json_t *out = NULL;
    oai_error_t err;
    const char *b1 = "{\"prompt\": \"hi\", \"return_token_strs\": true}";
    T_CHECK(oai_tokenize(&tc, b1, strlen(b1), &out, &err));
    char *s = out ? json_dumps(out, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
    T_CHECK_MSG(s && !strcmp(s, "{\"count\":3,\"max_model_len\":64,\"token_strs\":[\"<s>\",\"h\",\"i\"],"
                                "\"tokens\":[0,107,108]}"), "%s", s ? s : "(null)");
    free(s), json_decref(out), out = NULL;
    const char *b2 = "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}";
    T_CHECK(oai_tokenize(&tc, b2, strlen(b2), &out, &err));
    /* "<s>user: x\nassistant:" without an extra BOS: what the chat endpoint would prefill */
    T_CHECK(out && json_integer_value(json_object_get(out, "count")) == (json_int_t)strlen("<s>user: x\nassistant:"));
    json_decref(out), out = NULL;
    const char *b3 = "{\"tokens\": [0, 107, 108, 1]}";
    T_CHECK(oai_detokenize(&tc, b3, strlen(b3), &out, &err));
    T_CHECK(out && !strcmp(json_string_value(json_object_get(out, "prompt")), "<s>hi</s>"));
    json_decref(out), out = NULL;
    out = oai_tokenizer_info(&tc);
    T_CHECK(out && json_is_true(json_object_get(out, "add_bos_token")) &&
            !json_is_true(json_object_get(out, "add_eos_token")) &&
            !strcmp(json_string_value(json_object_get(out, "eos_token")), "</s>") &&
            json_integer_value(json_object_get(out, "model_max_length")) == 64);
    json_decref(out), out = NULL;
    static const struct { const char *body; int detok, status; const char *param; } bad[] = {
        {"{}", 0, 400, "prompt"},
        {"{\"prompt\": \"a\", \"messages\": []}", 0, 400, "messages"},
        {"{\"prompt\": 3}", 0, 400, "prompt"},
        {"{\"prompt\": \"a\", \"model\": \"big\"}", 0, 404, "model"},
        {"{\"prompt\": \"a\", \"continue_final_message\": true}", 0, 400, "continue_final_message"},
        {"{\"prompt\": \"a\", \"zzz\": 1}", 0, 400, "zzz"},
        {"[1]", 0, 400, ""},
        {"{\"tokens\": [259]}", 1, 400, "tokens"},
        {"{\"tokens\": [1.5]}", 1, 400, "tokens"},
        {"{}", 1, 400, "tokens"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&err, 0, sizeof err);
        bool ok = bad[i].detok ? oai_detokenize(&tc, bad[i].body, strlen(bad[i].body), &out, &err)
                               : oai_tokenize(&tc, bad[i].body, strlen(bad[i].body), &out, &err);
        T_CHECK_MSG(!ok && err.status == bad[i].status && !strcmp(err.param, bad[i].param), "%s: %d %s '%s'",
                    bad[i].body, err.status, err.param, err.message);
        if (ok) json_decref(out), out = NULL;
    }
    /* chat prompt_token_ids: the ids are the prompt; messages may be absent */
    oai_request_t rq;
    T_CHECK(parse_ok(OAI_CHAT, "{\"prompt_token_ids\": [0, 5, 6], \"max_tokens\": 2}", &rq));
    T_CHECK(rq.n_prompts == 1 && rq.prompts[0].n_ids == 3 && rq.prompts[0].ids[1] == 5);
    oai_request_free(&rq);
    expect_err(OAI_CHAT, "{\"prompt_token_ids\": [0, 999]}", 400, "prompt_token_ids", "out of range");
    expect_err(OAI_CHAT, "{\"prompt_token_ids\": \"abc\"}", 400, "prompt_token_ids", "list of token ids");
    expect_err(OAI_CHAT, "{\"prompt_token_ids\": []}", 400, "prompt_token_ids", "must not be empty");
}

int main(void)
{
    test_completion_errors();
    test_completion_ok();
    test_chat();
    test_ids();
    test_completion_response();
    test_logprobs();
    test_prompt_logprobs();
    test_stream_completion();
    test_stream_chat();
    test_error_body();
    test_tokenize();
    return t_done();
}
