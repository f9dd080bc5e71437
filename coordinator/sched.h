/* sched.h — rank 0's continuous-batching scheduler.
 *
 * Each engine step the scheduler picks which sequences run and how many
 * tokens each feeds, and writes the step plan (proto/plan.h):
 *   1. running decodes (one token each), oldest first;
 *   2. running prefills that are part-way (chunked prefill), oldest first;
 *   3. waiting requests, FIFO, while a group has a free slot, token budget
 *      and KV blocks for the whole known sequence (+1 position).
 * Limits hold per group: a group is one attention-DP rank (its own slots, its
 * own KV block pool, its own max_num_tokens budget) or, when attention is
 * tensor-parallel, the single group of all ranks (dp_rank -1 in the plan).
 * New requests go to the group with the fewest running sequences, then the
 * most free KV blocks.
 *
 * KV: blocks for the known tokens are reserved at admission, so a chunked
 * prefill never stalls half-way; a decode takes a new block when it crosses a
 * block boundary. When a group's pool is empty, the newest running sequence
 * of that group is preempted: its blocks and slot are freed and it goes back
 * to the front of the waiting queue with all its tokens (prompt + generated),
 * to be prefilled again later. Nothing is ever dropped.
 *
 * The scheduler never decides that a request is finished: the caller (the
 * engine loop's output processing) appends sampled tokens and calls
 * sched_finish. Per-sequence length limit: sched_seq_limit() tokens. */
#ifndef MS_SCHED_H
#define MS_SCHED_H

#include <stdbool.h>
#include <stdint.h>
#include "kvalloc.h"
#include "request.h"
#include "../proto/proto.h"

typedef struct {
    int n_groups;         /* attention-DP ranks, or 1 when attention is TP */
    bool attention_dp;    /* plan dp_rank = group; else -1 */
    int max_batch_size;   /* running sequences per group (= worker slots) */
    int max_num_tokens;   /* fed tokens per group per step */
    int max_seq_len;      /* prompt + completion tokens */
    int block_size;       /* KV positions per block */
    int n_blocks;         /* KV blocks per group */
    bool chunked_prefill; /* split long prompts across steps; else a prompt must fit one step's budget */
    int spec_drafts;      /* MTP speculative decoding: draft tokens per step, 0 = off (coordinator/spec.h) */
} sched_config_t;

typedef enum { SCHED_WAITING = 0, SCHED_RUNNING } sched_state_t;

typedef struct sched_seq {
    req_t *req;          /* borrowed: the caller holds the engine's reference */
    void *user;          /* caller's per-sequence state (output processing) */
    int32_t *tokens;     /* prompt + generated, n_tokens of them */
    int n_tokens, cap_tokens;
    int n_prompt;
    int n_cached;        /* tokens whose KV is in the cache */
    uint64_t seed;       /* sampler seed */
    sched_state_t state;
    int group;           /* while running */
    int slot;            /* while running */
    kv_table_t kv;       /* while running */
    uint64_t admit_no;   /* admission order: preemption takes the newest */
    int n_preempted;
    /* MTP: drafts the last step proposed, fed after the last token next step to be verified */
    int n_draft;
    int32_t draft[PROTO_MAX_DRAFT];
    /* this step */
    int step_tokens;     /* tokens fed by the current plan (0: not scheduled), drafts included */
    int step_draft;      /* of which drafts (their KV counts only once accepted: sched_append_accepted) */
    bool step_sample;
    bool started;        /* its first entry since admission was planned */
    struct sched_seq *prev, *next; /* in the waiting or the running list */
} sched_seq_t;

typedef struct sched sched_t;

ms_status_t sched_create(const sched_config_t *cfg, sched_t **out);
/* Finishes nothing: every sequence still held is freed (not its req). */
void sched_destroy(sched_t *s);

/* Longest sequence (prompt + completion) the scheduler can ever run:
 * min(max_seq_len, one group's whole KV pool). Output processing ends a
 * request with "length" there. */
int sched_seq_limit(const sched_t *s);

/* Queue a request at the back of the waiting list. MS_ERR_INVALID (logged)
 * when its prompt can never run: n_prompt >= sched_seq_limit(), or longer
 * than max_num_tokens without chunked prefill. */
ms_status_t sched_add(sched_t *s, req_t *req, void *user, uint64_t seed, sched_seq_t **out);

/* Build the next step's plan (possibly empty: n_seqs 0 means nothing can run).
 * Scheduled sequences are returned in plan order in *seqs (n = plan->n_seqs),
 * valid until the next sched_step; an entry becomes NULL when that sequence
 * is sched_finish'ed meanwhile. */
ms_status_t sched_step(sched_t *s, uint32_t step, const proto_plan_t **plan, sched_seq_t ***seqs);

/* The step ran: every scheduled sequence's fed tokens are now cached. Call
 * once after a successful step, before appending sampled tokens. */
void sched_commit(sched_t *s);
/* Append a sampled token to a sequence (it becomes the next decode input). */
ms_status_t sched_append(sched_t *s, sched_seq_t *q, int32_t token);
/* Append a draft the step verified: it was fed at this position, so its KV is cached too. In order, before
 * the step's last token (sched_append). */
ms_status_t sched_append_accepted(sched_t *s, sched_seq_t *q, int32_t token);
/* Drafts to verify next step (the step's PROTO_SEQ_DRAFT result). */
void sched_set_drafts(sched_seq_t *q, const int32_t *drafts, int n);
/* Remove a sequence (finished, cancelled or failed): frees its KV blocks and
 * slot and the sequence itself; q is invalid afterwards. */
void sched_finish(sched_t *s, sched_seq_t *q);

/* Iterate every held sequence (waiting then running): for cancellation. */
sched_seq_t *sched_first(sched_t *s);
sched_seq_t *sched_next(sched_t *s, sched_seq_t *q);

typedef struct {
    int running, waiting;
    int kv_blocks_used, kv_blocks_free; /* over all groups */
    uint64_t preemptions;
    int group_running[64];              /* first 64 groups */
    int group_blocks_used[64];
} sched_stats_t;
void sched_stats(const sched_t *s, sched_stats_t *out);

#endif
