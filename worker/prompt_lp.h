/* prompt_lp.h — prompt logprobs of a step's PROTO_SEQ_PROMPT_LP entries
 * (echo + logprobs): after the forward pass, the final-normed rows of those
 * chunks (fwd_t.xn) go through lm_head in sub-batches of at most B_max rows
 * into the bounded logits buffers, so a prompt's logits are never all held
 * at once. Each row yields a proto_plp_t: the logprob of the next prompt
 * token and the row's top-N (plan.h). */
#ifndef MS_PROMPT_LP_H
#define MS_PROMPT_LP_H

#include "proto/plan.h"
#include "worker/forward.h"

/* One prompt-logprob row: the token row of the step and the token after it. */
typedef struct {
    int32_t row;
    int32_t target;
    int32_t n_top;
} plp_row_t;

/* Run the rows (n of them) after fwd_run, out[i] for rows[i]. Uses the step
 * I/O block and staging buffer `stage` (mirror of f->io) as scratch: call it
 * only after the step's own results were read from them. */
ms_status_t plp_run(fwd_t *f, void *stage, const plp_row_t *rows, int n, proto_plp_t *out);

#endif
