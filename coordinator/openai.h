/* openai.h — the OpenAI-compatible API as data: parse + validate the JSON
 * bodies of POST /v1/completions and /v1/chat/completions into req_params_t
 * and tokenized prompts, and build the JSON that goes back (whole responses,
 * streaming chunks, usage chunks, error bodies). No sockets here: http*.c
 * moves the bytes, so everything in this module is unit-testable.
 *
 * The gateway reaches the tokenizer through oai_tok_ops_t (four function
 * pointers) so that unit tests run with a fake tokenizer and no
 * tokenizer.json; http.c wires the real tok_* functions in.
 *
 * Error policy (DESIGN invariant 5): every rejected request gets one
 * oai_error_t with the HTTP status, a one-line message naming the field, and
 * the field name in `param`. Unknown top-level fields are 400 (TensorRT-LLM
 * does the same); fields OpenAI defines that moeserve does not implement are
 * accepted only with their neutral value (e.g. presence_penalty 0). */
#ifndef MS_OPENAI_H
#define MS_OPENAI_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "request.h"

#define OAI_MAX_PROMPTS 1024      /* list prompts per request (each becomes one engine request) */
#define OAI_MAX_LOGPROBS 20       /* = PROTO_MAX_LOGPROBS */
#define OAI_MAX_STOP_TOKEN_IDS 256
#define OAI_MAX_N 16              /* n and best_of at most (each choice is one engine request) */

typedef enum { OAI_COMPLETION = 0, OAI_CHAT } oai_kind_t;

/* A chat message as the chat template takes it (the same fields as tok.h's
 * chat_msg_t; kept separate so this module does not depend on tok.h). */
typedef struct {
    const char *role;    /* "system", "user", "assistant" or "tool" */
    const char *content; /* UTF-8, NUL-terminated */
} oai_msg_t;

/* The tokenizer as the gateway needs it. `arg` is passed back unchanged.
 * Output buffers are malloc'd and owned by the caller. */
typedef struct {
    void *arg;
    ms_status_t (*encode)(void *arg, const char *text, size_t len, bool add_special, int32_t **ids, size_t *n);
    ms_status_t (*decode)(void *arg, const int32_t *ids, size_t n, bool skip_special, char **text, size_t *len);
    ms_status_t (*chat)(void *arg, const oai_msg_t *msgs, size_t n, bool add_generation_prompt, char **prompt);
    /* Raw bytes of one token (borrowed; may be a partial UTF-8 sequence), NULL if none. */
    const char *(*token_bytes)(void *arg, int32_t id, size_t *len);
} oai_tok_ops_t;

/* What the parser checks requests against; all borrowed. */
typedef struct {
    const char *served_model;  /* a request naming another model gets 404 */
    int max_seq_len;           /* prompt + max_tokens must fit */
    int vocab_size;            /* token ids must be in [0, vocab_size) */
    int stream_interval;       /* copied into req_params_t */
    int bos_id, eos_id;        /* tokenizer's BOS / EOS ids for /tokenizer_info; -1 when none */
    const oai_tok_ops_t *tok;
} oai_ctx_t;

typedef struct {
    int status;          /* HTTP status: 400, 404, 429, 500, 503, ... */
    const char *type;    /* "invalid_request_error", "not_found_error", ... (static) */
    char param[64];      /* offending field, "" when none */
    char message[512];
} oai_error_t;

/* Fill an error (printf-style message); returns false so parsers can
 * `return oai_fail(...)`. */
bool oai_fail(oai_error_t *err, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

typedef struct {
    int32_t *ids;        /* owned */
    int n_ids;
    char *text;          /* owned; completions + echo only: the prompt as text, else NULL */
    size_t text_len;
} oai_prompt_t;

/* A validated request. params.max_tokens is already resolved per request
 * (chat: max_seq_len - prompt when absent). */
typedef struct {
    oai_kind_t kind;
    req_params_t params;        /* owned (stop strings, stop_token_ids) */
    oai_prompt_t *prompts;      /* owned, n_prompts >= 1 (chat: exactly 1) */
    int n_prompts;
    int n;                      /* choices per prompt returned (default 1) */
    int best_of;                /* choices per prompt generated, >= n; the n of highest cumulative logprob return */
    bool stream;
    bool include_usage;         /* stream_options.include_usage */
    bool echo;                  /* completions: prepend the prompt text */
    bool echo_logprobs;         /* completions: echo + logprobs: `logprobs` covers the prompt positions first */
    int prompt_logprobs;        /* vLLM's prompt_logprobs: top-K per prompt position in `prompt_logprobs`; -1 off */
    bool chat_logprobs;         /* chat: logprobs: true (params.logprobs = top_logprobs) */
} oai_request_t;

/* Engine requests (= choices generated) of a request: n_prompts * best_of; choice i is prompt i / best_of. */
static inline int oai_n_choices(const oai_request_t *r) { return r->n_prompts * r->best_of; }

/* Parse + validate + tokenize a request body. On failure fills *err and
 * returns false; *out is then empty (nothing to free). */
bool oai_parse(const oai_ctx_t *ctx, oai_kind_t kind, const char *body, size_t len, oai_request_t *out,
               oai_error_t *err);
void oai_request_free(oai_request_t *r);

/* ---- responses ---------------------------------------------------------- */

/* Per-choice accumulator on the gateway thread: text so far, logprobs, token
 * counts and the finish reason. For streaming, `text` holds only what has not
 * been sent yet (oai_choice_chunk consumes it). */
typedef struct {
    int index;
    char *text;          /* owned buffer, NUL-terminated */
    size_t len, cap;
    json_t *logprobs;    /* NULL when off; completions: {tokens, token_logprobs, top_logprobs, text_offset};
                            chat: {content: [...]}; streaming: the not-yet-sent part */
    size_t text_offset;  /* completions: offset of the next token's text in the whole returned text */
    int n_prompt;
    int n_completion;
    int n_cached;        /* prompt tokens whose KV came from the prefix cache (usage cached_tokens) */
    double cum_logprob;  /* of the whole completion (best_of) */
    req_finish_t finish; /* NONE until the last chunk */
    char *error;         /* owned message when finish == ERROR */
    json_t *prompt_lp;   /* vLLM's prompt_logprobs list (null, then {id: {logprob, rank, decoded_token}} per
                            position), or NULL when not asked for */
    size_t prompt_offset;/* echo + logprobs: text_offset of the next prompt token (code points) */
    bool prompt_started; /* echo + logprobs: the first prompt token's entry (null logprob) is in logprobs */
    bool started;        /* streaming: first chunk (chat: the role delta) was sent */
    bool finish_sent;    /* streaming: the event carrying finish_reason was built */
    int n_unsent;        /* streaming: tokens added since the last event (their text may be empty: a held UTF-8
                          * tail or a stop string's start; the event still goes, one per engine chunk, as vLLM) */
} oai_choice_t;

ms_status_t oai_choice_init(oai_choice_t *c, const oai_request_t *rq, int index);
void oai_choice_free(oai_choice_t *c);
/* Append one engine chunk (text, token logprobs, finish). */
ms_status_t oai_choice_add(oai_choice_t *c, const oai_request_t *rq, const oai_tok_ops_t *tok, const req_chunk_t *ch);

/* "cmpl-" / "chatcmpl-" + 32 random hex digits into buf (>= 48 bytes). */
void oai_make_id(oai_kind_t kind, char *buf, size_t cap);

/* The whole non-streaming response body (new reference). choices: every generated one (n_choices =
 * oai_n_choices); with best_of > n, the n of highest cumulative logprob of each prompt are returned,
 * best first (vLLM); usage counts every generated token. */
json_t *oai_response(const oai_request_t *rq, const char *id, int64_t created, const char *model,
                     const oai_choice_t *choices, int n_choices);
/* One streaming event for choice `c`: takes its pending text and logprobs
 * (and the finish reason when set). Returns NULL when there is nothing to
 * send. Chat: the first call for a choice returns the role delta; call again
 * until NULL to get the rest. */
json_t *oai_choice_chunk(const oai_request_t *rq, const char *id, int64_t created, const char *model,
                         oai_choice_t *c);
/* The final usage event (choices: []) of a stream with include_usage. */
json_t *oai_usage_chunk(const oai_request_t *rq, const char *id, int64_t created, const char *model,
                        const oai_choice_t *choices, int n_choices);
/* {"object":"error", message, type, param, code, "error": {message, type, param, code}}: the
 * OpenAI shape under "error", the vLLM/TensorRT-LLM shape at the top level. */
json_t *oai_error_body(const oai_error_t *err);
/* ---- tokenizer endpoints (openai_tokenize.c; vLLM's request and response shapes) ---- */

/* POST /tokenize: {"prompt": "..."} or {"messages": [...]} (+ add_special_tokens, add_generation_prompt,
 * return_token_strs) -> {"count", "max_model_len", "tokens", "token_strs"}. */
bool oai_tokenize(const oai_ctx_t *ctx, const char *body, size_t len, json_t **out, oai_error_t *err);
/* POST /detokenize: {"tokens": [...]} -> {"prompt": "..."}. */
bool oai_detokenize(const oai_ctx_t *ctx, const char *body, size_t len, json_t **out, oai_error_t *err);
/* GET /tokenizer_info: what a client needs to tokenize on its side the way the server does. */
json_t *oai_tokenizer_info(const oai_ctx_t *ctx);

/* ---- shared by openai_*.c ---- */

/* A request body parsed as a JSON object (new reference), or NULL with a 400 in *err. */
json_t *oai_load_object(const char *body, size_t len, oai_error_t *err);

/* The rendered, tokenized prompt of a chat body's `messages` into rq->prompts[0]. */
bool oai_parse_messages(json_t *o, const oai_ctx_t *ctx, bool add_special, oai_request_t *rq, oai_error_t *err);
/* A token as JSON text: its bytes when valid UTF-8, else "bytes:\xNN..." (vLLM's convention);
 * raw/raw_len (optional) get the bytes. */
json_t *oai_token_text(const oai_tok_ops_t *tok, int32_t id, const char **raw, size_t *raw_len);

/* Serialize compactly; `sse` wraps it as "data: ...\n\n". Returns malloc'd text. */
char *oai_dump(const json_t *j, bool sse, size_t *len);

#endif
