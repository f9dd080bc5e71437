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

/* Tokens this rank's MoE takes per step: moe_config.max_num_tokens when set
 * (> 0), else the most that can arrive (every EP rank's whole step). */
static inline int64_t sizing_moe_tokens(int moe_max_num_tokens, int ep_size, int rank_max_tokens)
{
    return moe_max_num_tokens > 0 ? moe_max_num_tokens : (int64_t)ep_size * rank_max_tokens;
}

/* Rows of the MoE receive buffer for moe_tokens tokens: a token sends one
 * row per routed expert, so at most min(top-k, local experts) reach one rank.
 * The same function sizes forward.c's buffer and plan-memory's line. */
static inline int64_t sizing_moe_recv_rows(const mcfg_t *c, const par_t *p, int64_t moe_tokens)
{
    int64_t k = c->num_experts_per_tok, el = par_experts_local(p, c);
    return moe_tokens * (k < el ? k : el);
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

/* Bytes of one cached token over all layers: [d_c | d_r] bf16 rows, or with
 * kv_fp8 the FP8 row of kernels (d_c e4m3 + one fp32 scale per 128 + d_r
 * bf16, FlashMLA's shape). */
size_t sizing_kv_token_bytes(const mcfg_t *c, bool kv_fp8);

/* Weight bytes this rank loads (its heads, its experts; FP8 linears with
 * their 128x128 scales when the config has an fp8 quantization_config). */
size_t sizing_weight_bytes(const mcfg_t *c, const par_t *p);

/* One rank's per-step limits (what engine_opts_t carries). */
typedef struct {
    int max_batch;          /* sequences per step on this rank */
    int max_tokens;         /* tokens per step on this rank */
    int moe_max_num_tokens; /* moe_config.max_num_tokens; 0 = unset */
    int block_size;
} sizing_limits_t;

/* What one rank needs. */
typedef struct {
    size_t weights;
    size_t activations;     /* the forward pass's arena (forward.c's layout) */
    size_t kv_token;        /* per cached token, all layers */
    int64_t moe_tokens, moe_recv_rows;
    int naive_ctx;
    int kv_blocks;          /* the pool (input, or chosen from device memory) */
    size_t kv;              /* kv_blocks * block_size * kv_token */
} sizing_t;

/* Activation bytes for a rank with these limits and a pool of kv_blocks. */
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
