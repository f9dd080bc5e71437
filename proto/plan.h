/* plan.h — the step plan rank 0 sends to every worker each engine step, and
 * the per-sequence result each worker returns. Fixed-layout plain structs:
 * no pointers, so a plan is one contiguous buffer that MPI moves as bytes.
 *
 *   [proto_plan_t][proto_seq_t × n_seqs][int32 tokens × n_tokens][int32 blocks × n_blocks]
 *   [proto_bias_t × n_bias]
 *
 * Workers see only token ids, positions, KV block tables and sampling knobs
 * (DESIGN invariant 3); request text and stop strings stay on rank 0. */
#ifndef MS_PROTO_PLAN_H
#define MS_PROTO_PLAN_H

#include <stddef.h>
#include <stdint.h>

#define PROTO_MAGIC 0x5045534du /* "MSEP" little-endian */
#define PROTO_VERSION 6 /* 2: delta entries (plan_delta.c); 3: penalties, min_p, logit_bias; 4: MTP drafts
                         * (VERIFY/DRAFT flags, the results' spec part); 5: per-sequence fault words in results;
                         * 6: overlap scheduling (FEED_LAST, the plan's flags) */
#define PROTO_MAX_LOGIT_BIAS 1024 /* logit_bias entries per sequence */
#define PROTO_MAX_LOGPROBS 20
#define PROTO_MAX_DRAFT 4 /* MTP draft tokens per sequence per step (num_nextn_predict_layers 1..4) */

typedef enum {
    PROTO_MSG_PLAN = 1,     /* rank 0 -> all: run one step */
    PROTO_MSG_RESULT = 2,   /* rank 0 <- workers: sampled tokens */
    PROTO_MSG_SHUTDOWN = 3, /* rank 0 -> all: exit the engine loop */
} proto_msg_type_t;

typedef struct {
    uint32_t magic;
    uint16_t version;
    uint16_t type;   /* proto_msg_type_t */
    uint32_t length; /* bytes of the whole message, header included */
    uint32_t step;   /* engine step counter, for tracing and sanity */
} proto_hdr_t;
_Static_assert(sizeof(proto_hdr_t) == 16, "proto_hdr_t layout");

enum {
    PROTO_SEQ_SAMPLE = 1u << 0,   /* this chunk ends the known tokens: sample the next one */
    PROTO_SEQ_MASK_EOS = 1u << 1, /* min_tokens not reached: EOS may not be sampled */
    PROTO_SEQ_START = 1u << 2,    /* the slot's first entry for this sequence (pos 0): its per-slot
                                   * state (penalty counts, logit_bias) starts afresh from this entry */
    /* MTP speculative decoding (worker/forward_mtp.c). VERIFY: the fed tokens after the first are the
     * previous step's drafts; every fed token is sampled, the longest prefix of drafts that agrees with
     * the samples is accepted (proto_result_t.accepted) and the first disagreeing sample is `token`.
     * DRAFT: propose drafts for the next step (proto_result_t.drafts). Both need PROTO_SEQ_SAMPLE. */
    PROTO_SEQ_VERIFY = 1u << 3,
    PROTO_SEQ_DRAFT = 1u << 4,
    /* Prompt logprobs (echo + logprobs): for each fed row whose next token is known (the next fed one, or
     * next_token after the last row), the logprob of that token and the row's top n_logprobs, computed by
     * the owning rank from this chunk's rows (worker/prompt_lp.c). */
    PROTO_SEQ_PROMPT_LP = 1u << 5,
    /* Overlap scheduling (runtime/serve_loop.c): rank 0 planned this decode before the previous step's
     * token was known. The plan's token is a placeholder (0); the rank feeds the token it sampled for
     * this slot in its last step (worker/engine.c). One fed token, sampled, no MTP, no prompt logprobs. */
    PROTO_SEQ_FEED_LAST = 1u << 6,
};

/* proto_plan_t.flags */
enum {
    /* Every rank waits for this step and returns its results before it takes the next plan (the serial
     * loop). Without it, the results are returned after the next plan's step was launched (overlap). */
    PROTO_PLAN_SYNC = 1u << 0,
    /* No step (the plan is empty): finish the one in flight now. Rank 0 had nothing to plan ahead of
     * it, so the results come without a next step launched first. */
    PROTO_PLAN_FLUSH = 1u << 1,
};

/* One logit_bias entry of a sequence (sent with its START entry only). */
typedef struct {
    int32_t token;
    float bias; /* clamped to [-100, 100] */
} proto_bias_t;
_Static_assert(sizeof(proto_bias_t) == 8, "proto_bias_t layout");

typedef struct {
    int32_t slot;       /* sequence slot on the workers, 0..max_batch_size-1 (stable for a request) */
    int32_t dp_rank;    /* attention-DP owner rank; -1 when attention is TP (all ranks) */
    int32_t n_tokens;   /* tokens fed this step: a prefill chunk, or 1 when decoding */
    int32_t pos;        /* position of the first fed token (= tokens already in the KV cache) */
    int32_t tok_off;    /* index of the first fed token in the plan's token array */
    int32_t blk_off;    /* index of this sequence's block table in the plan's block array */
    int32_t n_blocks;   /* blocks covering positions [0, pos + n_tokens) */
    uint32_t flags;     /* PROTO_SEQ_* */
    float temperature;  /* 0 = greedy */
    float top_p;        /* 1 = off */
    int32_t top_k;      /* 0 = off */
    int32_t n_logprobs; /* top-N logprobs to return, 0..PROTO_MAX_LOGPROBS; -1 = none at all */
    uint64_t seed;      /* per-request; the sampler's random stream is f(seed, pos), independent of the batch */
    /* vLLM's sampling controls (kernels.h logits_adjust); all 0 = off (a zeroed entry is neutral:
     * repetition_penalty 0 means 1) */
    float presence_penalty, frequency_penalty, repetition_penalty, min_p;
    int32_t n_prompt;   /* prompt tokens: positions below are prompt, above generated (penalties) */
    int32_t bias_off;   /* first logit_bias entry in the plan's bias array */
    int32_t n_bias;     /* entries (START entries only; 0 otherwise) */
    int32_t next_token; /* PROTO_SEQ_PROMPT_LP: the prompt token after this chunk, -1 when it ends the prompt */
} proto_seq_t;
_Static_assert(sizeof(proto_seq_t) == 88, "proto_seq_t layout");

/* Does the sequence need logits processing before sampling (kernels.h logits_adjust)? */
static inline int proto_seq_adjusts(const proto_seq_t *q)
{
    return q->presence_penalty != 0.0f || q->frequency_penalty != 0.0f ||
           (q->repetition_penalty != 0.0f && q->repetition_penalty != 1.0f) || q->min_p != 0.0f || q->n_bias > 0;
}
/* Does it need the per-slot token counts (penalties)? */
static inline int proto_seq_counts(const proto_seq_t *q)
{
    return q->presence_penalty != 0.0f || q->frequency_penalty != 0.0f ||
           (q->repetition_penalty != 0.0f && q->repetition_penalty != 1.0f);
}

typedef struct {
    proto_hdr_t hdr;
    int32_t n_seqs;
    int32_t n_tokens; /* total fed tokens (sum of seq n_tokens) */
    int32_t n_blocks; /* total block-table entries */
    int32_t n_deltas; /* wire parts only (plan_delta.c): proto_delta_t entries after the seqs; 0 in full plans */
    int32_t n_bias;   /* total logit_bias entries (after the blocks) */
    uint32_t flags;   /* PROTO_PLAN_*: the same in every rank's part */
} proto_plan_t;
_Static_assert(sizeof(proto_plan_t) == 40, "proto_plan_t layout");

typedef struct {
    int32_t slot;
    int32_t token;    /* sampled token, or -1 when the seq had no PROTO_SEQ_SAMPLE; after a VERIFY the
                       * last token of the step (the one after the accepted drafts) */
    float logprob;    /* log-probability of `token` under the unmodified distribution */
    int32_t n_top;
    int32_t top_ids[PROTO_MAX_LOGPROBS];
    float top_logprobs[PROTO_MAX_LOGPROBS];
    /* MTP (PROTO_SEQ_VERIFY / PROTO_SEQ_DRAFT; 0 otherwise): the step's tokens are accepted[0..n_accepted)
     * then `token`; drafts are the proposals to feed after `token` next step. */
    int32_t n_accepted, n_draft;
    int32_t accepted[PROTO_MAX_DRAFT];
    float accepted_lp[PROTO_MAX_DRAFT];
    int32_t drafts[PROTO_MAX_DRAFT];
    /* PROTO_FAULT_* of this sequence (0: fine): a fault attributed to it alone. The rank left it out of the
     * step (or its rows were padding), token is -1, and rank 0 ends it while the step's others go on.
     * Rank 0's merged result ORs the words of every rank that ran the sequence (attention TP: all). */
    uint32_t fault;
} proto_result_t;
_Static_assert(sizeof(proto_result_t) == 16 + 8 * PROTO_MAX_LOGPROBS + 8 + 12 * PROTO_MAX_DRAFT + 4,
               "proto_result_t layout");

/* Why one sequence failed (proto_result_t.fault); proto_fault_describe names them. */
enum {
    PROTO_FAULT_PLAN = 1u << 0,     /* the rank's plan check rejected the entry (token, block, knobs, ...) */
    PROTO_FAULT_TOKEN = 1u << 1,    /* an op met a token id outside the vocabulary in its rows */
    PROTO_FAULT_BLOCK = 1u << 2,    /* an op met a KV row or block outside the cache in its rows */
    PROTO_FAULT_INJECTED = 1u << 3, /* the MOESERVE_FAULT_SEQ test hook */
    PROTO_FAULT_LOGITS = 1u << 4,   /* its logits held a NaN or an infinity: the sampler had nothing to draw */
};

/* One prompt position's logprob (PROTO_SEQ_PROMPT_LP): `token` is the prompt token at the row's position
 * + 1, `logprob` its log-probability under the unmodified distribution, top_* the row's n_top best. */
typedef struct {
    int32_t token;
    float logprob;
    int32_t n_top;
    int32_t top_ids[PROTO_MAX_LOGPROBS];
    float top_logprobs[PROTO_MAX_LOGPROBS];
} proto_plp_t;
_Static_assert(sizeof(proto_plp_t) == 12 + 8 * PROTO_MAX_LOGPROBS, "proto_plp_t layout");

/* Does link rank `rank` run plan entry q (its part has it: attention TP every rank, DP the owner)? */
static inline int proto_seq_runs(const proto_seq_t *q, int rank) { return q->dp_rank < 0 || q->dp_rank == rank; }

/* Rows of a PROTO_SEQ_PROMPT_LP entry that get a proto_plp_t. */
static inline int proto_seq_plp_rows(const proto_seq_t *q)
{
    if (!(q->flags & PROTO_SEQ_PROMPT_LP)) return 0;
    return q->n_tokens - 1 + (q->next_token >= 0 ? 1 : 0);
}

/* A decode step of a sequence the receiving rank already holds (its slot
 * state: sampling knobs, block table, position — proto/plan_delta.c): feed
 * `token` at the next position, append n_new_blocks entries of the plan's
 * block array to its table. `index` is the entry's place in plan order
 * (full entries fill the other places, in order). Wire parts only. */
typedef struct {
    int32_t slot;
    int32_t token;
    uint16_t n_new_blocks;
    uint16_t flags;   /* PROTO_SEQ_* of this step */
    int32_t index;
} proto_delta_t;
_Static_assert(sizeof(proto_delta_t) == 16, "proto_delta_t layout");

/* Views into a plan buffer (no copies). With deltas:
 *   [proto_plan_t][proto_seq_t × n_seqs][proto_delta_t × n_deltas][int32 tokens][int32 blocks][bias]
 * (full entries' blocks first, then the deltas' new blocks in delta order). */
static inline const proto_seq_t *proto_plan_seqs(const proto_plan_t *p) { return (const proto_seq_t *)(p + 1); }
static inline const proto_delta_t *proto_plan_deltas(const proto_plan_t *p)
{
    return (const proto_delta_t *)(proto_plan_seqs(p) + p->n_seqs);
}
static inline const int32_t *proto_plan_tokens(const proto_plan_t *p)
{
    return (const int32_t *)(proto_plan_deltas(p) + p->n_deltas);
}
static inline const int32_t *proto_plan_blocks(const proto_plan_t *p) { return proto_plan_tokens(p) + p->n_tokens; }
static inline const proto_bias_t *proto_plan_bias(const proto_plan_t *p)
{
    return (const proto_bias_t *)(proto_plan_blocks(p) + p->n_blocks);
}
static inline uint32_t proto_plan_size(int32_t n_seqs, int32_t n_tokens, int32_t n_blocks, int32_t n_bias)
{
    return (uint32_t)(sizeof(proto_plan_t) + sizeof(proto_seq_t) * (size_t)n_seqs + 4u * (size_t)(n_tokens + n_blocks) +
                      sizeof(proto_bias_t) * (size_t)n_bias);
}

#endif
