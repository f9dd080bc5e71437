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
 * Prefix reuse (block_reuse): at admission a sequence takes the longest run
 * of cached whole blocks of its known tokens (never its last token, which
 * must be fed to be sampled after) and prefills only the rest; every block
 * it fills is published once its fed tokens are committed, prompt and
 * generated alike. Placement prefers, among groups of equal load, the one
 * with the longest match. A sequence with presence/frequency/repetition
 * penalties takes no cached prefix: the workers count its prompt tokens as
 * they are fed (worker/penalty.c), so it is fed from position 0 (it still
 * publishes its blocks for others).
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
    bool block_reuse;     /* kv_cache_config.enable_block_reuse: prefix caching (kvalloc.h) */
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
    /* prefix reuse: blocks of kv whose chain is known (published or matched), the last one's chain hash */
    int n_hashed;
    uint64_t chain;
    int n_reused;        /* prompt tokens taken from the cache at the first admission (usage cached_tokens) */
    bool admitted_once;
    /* MTP: drafts the last step proposed, fed after the last token next step to be verified */
    int n_draft;
    int32_t draft[PROTO_MAX_DRAFT];
    /* this step */
    int step_tokens;     /* tokens fed by the current plan (0: not scheduled), drafts included */
    int step_draft;      /* of which drafts (their KV counts only once accepted: sched_append_accepted) */
    bool step_sample;
    bool started;        /* its first entry since admission was planned */
    bool pending;        /* overlap (sched_assume): the last token is a placeholder for the token the step in
                          * flight samples; its decode feeds PROTO_SEQ_FEED_LAST, sched_append fills it in */
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
/* Overlap scheduling: plan the next step before the results of the one just planned are known. Call
 * after that step was launched and before the next sched_step: its sequences advance as if it
 * succeeded (their fed tokens count as cached) and each one it samples gets a placeholder token
 * (sched_seq_t.pending), which the next plan feeds as PROTO_SEQ_FEED_LAST; a sequence whose sampled
 * token is its last by count (max_tokens, the length limit, a prompt-only request) gets none and is
 * not planned again. Blocks it filled are published by sched_confirm once the step succeeded, never
 * before. A preempted sequence whose placeholder is not filled yet holds up admission (FIFO) until it
 * is. Not with MTP drafts. */
void sched_assume(sched_t *s);
/* The step sched_assume advanced succeeded: publish the blocks each of its sequences filled (seqs as
 * sched_step returned them, NULL entries skipped). Instead of sched_commit for such a step. */
void sched_confirm(sched_t *s, sched_seq_t *const *seqs, int n);
/* Append a sampled token to a sequence (it becomes the next decode input); a pending placeholder
 * (sched_assume) takes it instead. */
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
    int kv_blocks_idle;                 /* cached, unreferenced (counted free) */
    uint64_t prefix_query_tokens;       /* known tokens of admitted sequences (reuse on) */
    uint64_t prefix_hit_tokens;         /* of them, taken from the cache */
} sched_stats_t;
void sched_stats(const sched_t *s, sched_stats_t *out);

#endif
