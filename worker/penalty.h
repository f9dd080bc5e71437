/* penalty.h — one rank's per-sequence state for vLLM's sampling controls
 * (presence/frequency/repetition penalties, logit_bias): each slot's sparse
 * list of (token, generated count, in-prompt, bias) entries in one device
 * buffer that kernels.h logits_adjust reads, and its host twin with a hash
 * from token to entry, so a step uploads only the entries that changed.
 *
 * The state follows what the rank is fed, never rank 0: a PROTO_SEQ_START
 * entry (pos 0) resets the slot and brings the logit_bias; each fed token at
 * a position below n_prompt marks its entry in_prompt, each one after counts
 * as generated (a token is fed the step after it is sampled, so at sampling
 * time every token of the sequence has been counted). Nothing is allocated
 * until a plan first needs it: a server that never sees a penalty pays no
 * memory. Capacity per slot: min(max_seq_len, vocab) + PROTO_MAX_LOGIT_BIAS
 * entries (a list holds each token once), so it cannot overflow. */
#ifndef MS_WORKER_PENALTY_H
#define MS_WORKER_PENALTY_H

#include <stdbool.h>
#include "kernels/kernels.h"
#include "proto/plan.h"

typedef struct pen pen_t;

ms_status_t pen_create(const kern_ops_t *k, int slots, int max_seq_len, int vocab, pen_t **out);
void pen_destroy(pen_t *p);

/* Before any work of a step: device buffers for this plan part's needs
 * (mine: which entries this rank runs), and the checks a plan must pass
 * (slot in range, a counted sequence starts at position 0). MS_ERR_INVALID /
 * MS_ERR_NOMEM with nothing changed. */
ms_status_t pen_prepare(pen_t *p, const proto_plan_t *plan, const bool *mine, int max_tokens);

/* The checks pen_prepare makes of one entry (plan index i, for the message): slot in range, a counted
 * sequence starts at position 0, a continued one has its state here. MS_ERR_INVALID (logged). */
ms_status_t pen_check(const pen_t *p, const proto_seq_t *q, int i);
/* Forget slot `slot`'s sequence (it failed): nothing of it reaches the slot's next user. */
void pen_drop(pen_t *p, int slot);

/* Record plan entry q (its fed tokens, its bias entries when START). */
void pen_seq(pen_t *p, const proto_seq_t *q, const int32_t *tokens, const proto_bias_t *bias);

/* The logits_adjust row of sampled entry q (its slot's list when live: a decode entry carries no bias). */
kern_adjust_t pen_row(const pen_t *p, const proto_seq_t *q, float temperature, int32_t mask_token);

/* This step's writes into the lists: uploaded on cx (when any), then forgotten
 * by the host. *sets, *n_sets, *lists, *cap: what logits_adjust takes. */
ms_status_t pen_flush(pen_t *p, kern_ctx_t *cx, const kern_pen_set_t **sets, int *n_sets, kern_pen_t **lists,
                      int64_t *cap);

#endif
