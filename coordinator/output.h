/* output.h — rank 0's output processing for one request: what happens to
 * each sampled token before the gateway sees it.
 *
 * Per token: count it, detokenize it incrementally (tok_stream_t: never
 * broken UTF-8), check stop conditions in this order
 *   1. EOS (unless ignore_eos) or a stop_token_id, once min_tokens were
 *      generated: finish "stop"; the token counts, its text is not emitted;
 *   2. stop strings, once min_tokens were generated: finish "stop"; the text
 *      before the stop string is emitted, the stop string and after are not;
 *      text that could still become a stop string is held back meanwhile;
 *   3. max_tokens, or the sequence limit (prompt + completion):
 *      finish "length";
 * and batch the result into req_chunk_t items for the gateway: a streaming
 * request gets a chunk for its first token, then every stream_interval
 * tokens, and on finish; a non-streaming request gets one chunk at the end.
 * Timestamps and n_completion on the req_t are kept current for metrics. */
#ifndef MS_OUTPUT_H
#define MS_OUTPUT_H

#include "coord.h"
#include "tok.h"

typedef struct {
    const tok_t *tok;
    int32_t eos_id;   /* -1: none */
    int seq_limit;    /* prompt + completion tokens at most */
} out_ctx_t;

typedef struct out_seq out_seq_t;

ms_status_t out_seq_create(const out_ctx_t *ctx, req_t *r, out_seq_t **out);
void out_seq_destroy(out_seq_t *o);

/* One sampled token (res->token >= 0) of a sequence that now holds
 * n_total tokens (prompt + completion, this one included). *finish is the
 * reason it ended (the final chunk was pushed) or REQ_FINISH_NONE. */
ms_status_t out_seq_token(out_seq_t *o, coord_t *c, const proto_result_t *res, int n_total, req_finish_t *finish);

/* Prompt logprobs (req_params_t.prompt_logprobs): n entries for prompt positions pos0, pos0 + 1, ...
 * Positions already taken are skipped (a recompute after preemption repeats a chunk), so each of
 * 1..n_prompt-1 is kept once, in order; they go out with the next chunk. An entry whose token is not the
 * prompt's (a rank could not compute it) or a gap is an error. */
ms_status_t out_seq_prompt_lp(out_seq_t *o, int pos0, const proto_plp_t *e, int n);

/* End the request early (abort, error): pushes the final chunk with what was
 * not yet sent and the reason. No-op when already finished. */
void out_seq_end(out_seq_t *o, coord_t *c, req_finish_t why, const char *error);

/* Thread-safe: the engine thread may read it while the output thread runs. */
bool out_seq_finished(const out_seq_t *o);

/* Monotonic clock in seconds (the clock of req_t timestamps). */
double out_now(void);

#endif
