/* sizing.h — how much memory one rank needs for a layout, computed from the
 * model description alone (config.json: no weights read, nothing
 * allocated). One arithmetic for everyone: engine_create sizes its arena
 * with it, `moeserve serve` picks the KV pool with it at startup, and
 * `moeserve plan-memory` prints it (DESIGN "The GPU step", 1).
 *
 * Per rank, never per job: a rank's activations are sized for its own
 * max_batch_size sequences and max_num_tokens tokens (attention DP: its own
 * sequences only), its MoE receive buffer for the tokens its MoE may take per
 * step (moe_config.max_num_tokens, TensorRT-LLM's meaning), the naive
 * prefill-attention scratch for a bounded context (longer prefill chunks take
 * the absorbed path), and its block-table buffer for its own pool. */
#ifndef MS_SIZING_H
#define MS_SIZING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "worker/model_config.h"
#include "worker/par.h"

/* Receive capacity of one expert slot per step (rows): moe_config.
 * max_num_tokens when set (TensorRT-LLM: tokens a rank's MoE takes per
 * step), capped by the worst case — every token of the EP group on one slot
 * (a token sends at most one row to a slot). forward.c sizes its
 * [local slots, cap, hidden] receive buffer with it; a step that would
 * exceed it raises KERN_FAULT_CAPACITY (never silent truncation). */
static inline int sizing_moe_slot_cap(int moe_max_num_tokens, int ep_size, int rank_max_tokens)
{
    int64_t cap = (int64_t)ep_size * rank_max_tokens;
    if (moe_max_num_tokens > 0 && moe_max_num_tokens < cap) cap = moe_max_num_tokens;
    return (int)(cap > INT32_MAX ? INT32_MAX : cap);
}

/* Gathered latent rows of the naive (transformers-form) prefill attention
 * per step: enough for a whole step's chunk at a moderate position, never
 * the whole KV pool. A prefill chunk whose context is longer runs on the
 * absorbed path (ENGINE_MLA_AUTO), which reads the paged cache in place. */
#define SIZING_NAIVE_CTX_MIN 8192
static inline int sizing_naive_ctx(int64_t kv_tokens, int rank_max_tokens)
{
    int64_t s = rank_max_tokens > SIZING_NAIVE_CTX_MIN ? rank_max_tokens : SIZING_NAIVE_CTX_MIN;
    if (s > kv_tokens) s = kv_tokens;
    return (int)(s < 1 ? 1 : s);
}

/* Bytes of one cached token over all layers: kern_kv_row_bytes (BF16 rows,
 * or FP8 rows with per-128 scales when kv_fp8) times the layers. */
size_t sizing_kv_token_bytes(const mcfg_t *c, bool kv_fp8);

/* Weight bytes this rank loads (its heads, its num_slots / ep_size expert
 * slot records; FP8 linears with their 128x128 scales when the config has an
 * fp8 quantization_config; kv_b dequantized to BF16 as weights.c loads it). */
size_t sizing_weight_bytes(const mcfg_t *c, const par_t *p, int num_slots);

/* One rank's per-step limits (what engine_opts_t carries). */
typedef struct {
    int max_batch;          /* sequences per step on this rank */
    int max_tokens;         /* tokens per step on this rank */
    int moe_max_num_tokens; /* moe_config.max_num_tokens; 0 = unset */
    int num_slots;          /* moe_config.load_balancer.num_slots; 0 = n_routed_experts */
    int block_size;
    int max_seq_len;        /* longest sequence; 0 = the whole pool */
    int mtp_drafts;         /* speculative_config MTP draft tokens per step; 0 = off (no module) */
} sizing_limits_t;

/* Sampled rows per step: one per sequence, or, drafting N MTP tokens, every fed row of a sequence
 * verifying its drafts (B * (1 + N), at most the step's tokens). The engine sizes its sampler with it. */
static inline int sizing_sample_rows(int max_batch, int max_tokens, int mtp_drafts)
{
    if (mtp_drafts <= 0) return max_batch;
    int64_t r = (int64_t)max_batch * (1 + mtp_drafts);
    if (r > max_tokens) r = max_tokens;
    return (int)(r < max_batch ? max_batch : r);
}

/* Weight bytes of the MTP module (one decoder layer, its norms and eh_proj; the embedding and head
 * shared with the main model, as DeepSeek's checkpoints hold them: weights.c checks the bytes). */
size_t sizing_mtp_weight_bytes(const mcfg_t *c, const par_t *p, int num_slots);

/* Block-table entries one step's sequences can carry: each holds at most
 * ceil(max_seq_len / block_size) blocks (never more than the pool). Not the
 * pool size: with prefix reuse (kv_cache_config.enable_block_reuse) blocks
 * are shared, so the tables of a step can name one block many times. */
static inline int sizing_blk_max(int kv_blocks, int block_size, int max_batch, int max_seq_len)
{
    int64_t per = max_seq_len > 0 ? ((int64_t)max_seq_len + block_size - 1) / block_size : kv_blocks;
    if (per > kv_blocks) per = kv_blocks;
    int64_t n = per * max_batch;
    return (int)(n > INT32_MAX ? INT32_MAX : n);
}

/* What one rank needs. */
typedef struct {
    size_t weights;
    size_t activations;     /* the forward pass's arena (forward.c's layout) */
    size_t kv_token;        /* per cached token, all layers */
    int moe_slot_cap;       /* rows per expert slot */
    int64_t moe_recv_rows;  /* local slots x moe_slot_cap */
    int naive_ctx;
    int kv_blocks;          /* the pool (input, or chosen from device memory) */
    size_t kv;              /* kv_blocks * block_size * kv_token */
} sizing_t;

/* Activation bytes for a rank with these limits and a pool of kv_blocks
 * (the default expert placement: slot tables are a few KiB whatever the
 * assignment). 0 when the limits do not fit the model (num_slots). */
size_t sizing_activation_bytes(const mcfg_t *c, const par_t *p, const sizing_limits_t *lim, int kv_blocks,
                               sizing_t *detail);

/* Everything for one rank. kv_blocks > 0: that pool. kv_blocks == 0: the
 * pool that takes kv_fraction of the device memory left after weights and
 * activations (TensorRT-LLM's free_gpu_memory_fraction). MS_ERR_NOMEM naming
 * the numbers when weights + activations alone exceed device_bytes, or no
 * block fits (the check serve will refuse to start on). */
ms_status_t sizing_rank(const mcfg_t *c, const par_t *p, const sizing_limits_t *lim, bool kv_fp8, int kv_blocks,
                        size_t device_bytes, double kv_fraction, sizing_t *out);

#endif
