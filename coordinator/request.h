/* request.h — a request's life on rank 0, and the hand-off between the
 * gateway thread (libevent, HTTP) and the engine thread (scheduler + steps).
 *
 * Flow: gateway parses + validates + tokenizes → req_create → coord_submit.
 * The engine thread owns scheduling state; after each step it appends tokens,
 * detokenizes incrementally, checks stop conditions, and pushes req_chunk_t
 * items onto the request's outbox, then calls the notify hook (the gateway's
 * event_active). The gateway drains the outbox on its own thread (DESIGN
 * invariant 4) and writes SSE chunks or the final JSON.
 *
 * Lifetime: a request is shared by the two threads with a reference count;
 * req_create returns it with 1 reference (the gateway's); coord_submit takes
 * one more for the engine. Each side calls req_release when done.
 * A client disconnect → coord_cancel: the engine finishes it with
 * REQ_FINISH_ABORT at its next step and frees its KV blocks. */
#ifndef MS_REQUEST_H
#define MS_REQUEST_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "status.h"
#include "../proto/plan.h"
#include "spec.h"

#define REQ_MAX_STOP 8

typedef struct {
    float temperature;      /* 0 = greedy (default 1.0 as OpenAI; the gateway fills defaults) */
    float top_p;            /* 1 = off */
    int top_k;              /* 0 or -1 = off */
    uint64_t seed;          /* used when has_seed; else the engine draws one */
    bool has_seed;
    int max_tokens;         /* completion tokens at most */
    int min_tokens;         /* EOS/stop_token_ids suppressed until reached */
    bool ignore_eos;
    char *stop[REQ_MAX_STOP]; /* stop strings (owned), n_stop of them; not included in output */
    int n_stop;
    int32_t *stop_token_ids;  /* owned */
    int n_stop_token_ids;
    bool skip_special_tokens; /* default true */
    int logprobs;             /* top-N per sampled position, -1 = off */
    bool prompt_logprobs;     /* echo + logprobs or prompt_logprobs: every prompt position's logprob and top-N
                               * come back from the prefill (PROTO_SEQ_PROMPT_LP) in req_chunk_t.plp; no cached
                               * prefix */
    int prompt_top;           /* top-N per prompt position (prompt_logprobs), 0..PROTO_MAX_LOGPROBS */
    bool prompt_only;         /* completions max_tokens 0 + echo: the prefill runs (max_tokens is 1, as vLLM),
                               * its sampled token is dropped and the request ends "length" with no tokens */
    /* vLLM's sampling controls (applied on the workers, kernels.h logits_adjust); neutral 0, 0, 1, 0 */
    float presence_penalty, frequency_penalty, repetition_penalty, min_p;
    proto_bias_t *logit_bias; /* owned, n_logit_bias entries, distinct tokens, bias clamped to [-100, 100] */
    int n_logit_bias;
    bool stream;
    int stream_interval;      /* tokens per streamed chunk (config stream_interval) */
} req_params_t;

typedef enum {
    REQ_FINISH_NONE = 0,
    REQ_FINISH_LENGTH,  /* max_tokens or max_seq_len reached */
    REQ_FINISH_STOP,    /* EOS, stop string or stop token id */
    REQ_FINISH_ABORT,   /* cancelled (client gone, shutdown) */
    REQ_FINISH_ERROR,   /* a step failed: the gateway answers 5xx */
} req_finish_t;

const char *req_finish_str(req_finish_t f); /* "length", "stop", "abort", "error" */

/* One output event: new text since the last chunk (valid UTF-8, possibly
 * empty), the token ids it came from, optional logprobs, and on the last
 * chunk the finish reason. */
typedef struct req_chunk {
    struct req_chunk *next;
    char *text;              /* owned, NUL-terminated */
    size_t text_len;
    int32_t *ids;            /* owned */
    int n_ids;
    float *logprobs;         /* owned, n_ids entries, or NULL */
    proto_result_t *top;     /* owned, n_ids entries (top-N), or NULL */
    req_finish_t finish;     /* != NONE on the last chunk */
    double cum_logprob;      /* sum of the logprobs of every token so far (best_of ranks by it) */
    char *error;             /* owned message when finish == REQ_FINISH_ERROR */
    /* prompt logprobs (req_params_t.prompt_logprobs): n_plp entries for prompt positions plp_pos0,
     * plp_pos0 + 1, ... (entry k: the logprob of prompt token plp_pos0 + k given the tokens before it);
     * every position 1..n_prompt-1 comes exactly once over a request's chunks, in order, before its
     * first generated token */
    proto_plp_t *plp;        /* owned, or NULL */
    int n_plp, plp_pos0;
} req_chunk_t;

typedef struct req {
    /* set by the gateway before submit, read-only afterwards */
    uint64_t id;
    int index;                /* choice index (prompt index for list prompts) */
    req_params_t params;
    int32_t *prompt;          /* owned token ids */
    int n_prompt;
    double t_arrival;         /* monotonic seconds */

    /* engine → gateway, under `lock` */
    pthread_mutex_t lock;
    req_chunk_t *out_head, *out_tail;
    int n_completion;         /* completion tokens produced so far */
    int n_cached_prompt;      /* prompt tokens taken from the prefix cache (set before the first token's chunk) */
    double t_first_token, t_last_token, t_finish;
    bool cancelled;           /* set by the gateway (coord_cancel) */
    bool finished;            /* final chunk pushed */

    int refs;                 /* atomic via __atomic builtins */
    void *gateway_ctx;        /* the gateway's per-request context (borrowed) */
} req_t;

ms_status_t req_create(const req_params_t *params, const int32_t *prompt, int n_prompt, req_t **out); /* copies */
void req_release(req_t *r);
void req_retain(req_t *r);
/* Gateway: detach all pending chunks (caller frees each with req_chunk_free). */
req_chunk_t *req_take_chunks(req_t *r);
void req_chunk_free(req_chunk_t *c);
void req_params_free(req_params_t *p);

/* The hub between the two threads (one per process, on rank 0). */
typedef struct coord coord_t;
typedef void (*coord_notify_fn)(void *arg); /* called from the engine thread; must be thread-safe */

ms_status_t coord_create(int max_waiting, coord_t **out);
void coord_destroy(coord_t *c);
void coord_set_notify(coord_t *c, coord_notify_fn fn, void *arg);
/* Queue a request for the engine. MS_ERR_NOMEM-like refusal when more than
 * max_waiting wait: the gateway answers 429. Takes a reference on success. */
ms_status_t coord_submit(coord_t *c, req_t *r);
void coord_cancel(coord_t *c, req_t *r);
/* Engine side: take newly submitted requests (FIFO list through an array). */
int coord_take_new(coord_t *c, req_t **out, int max);
/* Engine side: push a chunk and wake the gateway. */
void coord_push_chunk(coord_t *c, req_t *r, req_chunk_t *chunk);
/* Gauges for /metrics and /health, updated by the engine after every step. */
typedef struct {
    int running, waiting;
    int kv_blocks_used, kv_blocks_free;
    int kv_blocks_idle; /* prefix cache: published blocks nobody references (counted free) */
    uint64_t prefix_query_tokens, prefix_hit_tokens; /* admitted known tokens / of them reused */
    double kv_bytes;  /* the KV pool's bytes per rank (weights + arena + this = what a rank holds) */
    int last_batch_size;
    uint64_t steps;
    uint64_t steps_overlapped; /* planned while the previous step ran (the overlap scheduler) */
    bool ready;      /* engine loaded and serving */
    bool draining;   /* shutdown in progress */
    spec_stats_t spec; /* MTP drafts and acceptance (spec.drafts 0: off) */
} coord_stats_t;
void coord_stats_get(coord_t *c, coord_stats_t *out);
void coord_stats_set(coord_t *c, const coord_stats_t *in);

#endif
