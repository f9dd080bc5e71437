/* sizing.c — per-rank memory arithmetic (sizing.h). Weight bytes follow
 * weights.c's tensor list (the engine test compares the two on real
 * checkpoints); activation bytes are forward.c's own layout, computed
 * without allocating. */
#include "worker/sizing.h"

#include "kernels/kernels.h"
#include "worker/forward.h"
#include "worker/forward_mtp.h"
#include "worker/placement.h"

size_t sizing_kv_token_bytes(const mcfg_t *c, bool kv_fp8)
{
    return (size_t)kern_kv_row_bytes(kv_fp8 ? MS_DT_F8E4M3 : MS_DT_BF16, c->kv_lora_rank, c->qk_rope_head_dim) *
           (size_t)c->num_hidden_layers;
}

/* Per cached token with the MTP module's own one-layer cache when it drafts. */
static size_t kv_token_bytes(const mcfg_t *c, bool kv_fp8, int mtp_drafts)
{
    const size_t all = sizing_kv_token_bytes(c, kv_fp8);
    return mtp_drafts > 0 && c->num_hidden_layers > 0 ? all + all / (size_t)c->num_hidden_layers : all;
}

/* One carve of weights.c's allocation (each is rounded up to 256 bytes). */
static size_t take(size_t bytes) { return (bytes + 255) & ~(size_t)255; }

/* A linear [rows, cols] in the checkpoint's weight dtype (fp8: plus its
 * scales, a second carve). */
static size_t linear(const mcfg_t *c, int64_t rows, int64_t cols, bool allow_fp8)
{
    if (allow_fp8 && c->weight_dtype == MS_DT_F8E4M3)
        return take((size_t)(rows * cols)) +
               take(4 * (size_t)kern_fp8_blocks((int32_t)rows) * (size_t)kern_fp8_blocks((int32_t)cols));
    return take((size_t)(rows * cols) * 2);
}

/* Two linears [r1, D], [r2, D] of one input: one fused carve unless an FP8 r1 is not a multiple of 128
 * (weights.c's wl_fused) */
static size_t fused(const mcfg_t *c, int64_t r1, int64_t r2, int64_t D)
{
    if (c->weight_dtype == MS_DT_F8E4M3 && r1 % KERN_FP8_BLOCK) return linear(c, r1, D, true) + linear(c, r2, D, true);
    return linear(c, r1 + r2, D, true);
}

/* One decoder layer l of this rank (weights.c's wl_layer). */
static size_t layer_bytes(const mcfg_t *c, const par_t *p, int num_slots, int l)
{
    const int64_t D = c->hidden_size, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    const int64_t dv = c->v_head_dim, dc = c->kv_lora_rank, qk = dn + dr, Hl = par_heads_local(p, c);
    const int64_t E = c->n_routed_experts, Im = c->moe_intermediate_size, Is = Im * c->n_shared_experts;
    const int64_t R = c->q_lora_rank;
    const int64_t spr = (num_slots > 0 ? num_slots : E) / p->ep_size; /* expert slot records on this rank */
    const ms_dtype_t edt = c->weight_dtype == MS_DT_F8E4M3 ? MS_DT_F8E4M3 : MS_DT_BF16;
    size_t b = 2 * take(2 * (size_t)D); /* input and post-attention norms */
    if (R > 0) b += fused(c, R, dc + dr, D) + take(2 * (size_t)R) + linear(c, Hl * qk, R, true); /* q_a|kv_a */
    else b += linear(c, Hl * qk, D, true) + linear(c, dc + dr, D, true);
    b += take(2 * (size_t)dc); /* kv_a's norm */
    b += linear(c, Hl * (dn + dv), dc, false) + linear(c, D, Hl * dv, true); /* kv_b dequantized at load */
    if (!mcfg_layer_is_moe(c, l)) return b + fused(c, c->intermediate_size, c->intermediate_size, D) + linear(c, D, c->intermediate_size, true);
    b += linear(c, E, D, false) + take(4 * (size_t)E); /* router, its fp32 bias */
    b += take(kern_moe_slots_layout(edt, (int32_t)D, (int32_t)Im).stride * (size_t)spr); /* slot records */
    if (Is > 0) b += fused(c, Is, Is, D) + linear(c, D, Is, true);
    return b;
}

size_t sizing_weight_bytes(const mcfg_t *c, const par_t *p, int num_slots)
{
    const int64_t D = c->hidden_size, V = c->vocab_size;
    size_t b = take(2 * (size_t)D) + take(2 * (size_t)(V * D)); /* final norm, embedding */
    if (!c->tie_word_embeddings) b += linear(c, V, D, false);
    for (int l = 0; l < c->num_hidden_layers; l++) b += layer_bytes(c, p, num_slots, l);
    return b;
}

size_t sizing_mtp_weight_bytes(const mcfg_t *c, const par_t *p, int num_slots)
{
    const int64_t D = c->hidden_size;
    /* enorm, hnorm, eh_proj, its decoder block, shared_head.norm (weights.c's wl_mtp) */
    return 3 * take(2 * (size_t)D) + linear(c, D, 2 * D, false) + layer_bytes(c, p, num_slots, c->num_hidden_layers);
}

size_t sizing_activation_bytes(const mcfg_t *c, const par_t *p, const sizing_limits_t *lim, int kv_blocks,
                               sizing_t *detail)
{
    int64_t kv_tokens = (int64_t)kv_blocks * lim->block_size;
    int S = sizing_naive_ctx(kv_tokens, lim->max_tokens);
    placement_t pl = {0};
    if (c->n_routed_experts &&
        placement_create(c->num_hidden_layers, c->n_routed_experts, lim->num_slots, p->ep_size, NULL, &pl) != MS_OK)
        return 0;
    const int rows = sizing_sample_rows(lim->max_batch, lim->max_tokens, lim->mtp_drafts);
    size_t bytes = fwd_bytes(c, p, c->n_routed_experts ? &pl : NULL, lim->max_tokens, rows, S,
                             sizing_blk_max(kv_blocks, lim->block_size, lim->max_batch, lim->max_seq_len),
                             lim->moe_max_num_tokens);
    if (lim->mtp_drafts > 0) {
        /* the module's buffers, with its one-layer placement */
        placement_t pm = {0};
        if (c->n_routed_experts &&
            placement_create(1, c->n_routed_experts, lim->num_slots, p->ep_size, NULL, &pm) != MS_OK) {
            placement_free(&pl);
            return 0;
        }
        const int rep_cap = pl.max_rep > p->ep_size ? pl.max_rep : p->ep_size; /* forward.c's */
        bytes += mtp_buffer_bytes(c, pm.n_slots, rep_cap, lim->max_tokens,
                                  lim->max_batch < rows ? lim->max_batch : rows, lim->mtp_drafts);
        placement_free(&pm);
    }
    if (detail) {
        detail->moe_slot_cap = c->n_routed_experts ? sizing_moe_slot_cap(lim->moe_max_num_tokens, p->ep_size,
                                                                         lim->max_tokens) : 0;
        detail->moe_recv_rows = (int64_t)pl.slots_per_rank * detail->moe_slot_cap;
        detail->naive_ctx = S;
    }
    placement_free(&pl);
    return bytes;
}

ms_status_t sizing_rank(const mcfg_t *c, const par_t *p, const sizing_limits_t *lim, bool kv_fp8, int kv_blocks,
                        size_t device_bytes, double kv_fraction, sizing_t *out)
{
    sizing_t s = {0};
    s.weights = sizing_weight_bytes(c, p, lim->num_slots);
    if (lim->mtp_drafts > 0) s.weights += sizing_mtp_weight_bytes(c, p, lim->num_slots);
    s.kv_token = kv_token_bytes(c, kv_fp8, lim->mtp_drafts);
    const size_t blk = s.kv_token * (size_t)lim->block_size;
    if (kv_blocks <= 0) {
        /* The arena grows with the pool: its naive-attention scratch up to
         * its bound, then 4 bytes of block table a block. Size it for a pool
         * that reaches the bound, and charge the table per block. */
        int b0 = (int)((sizing_naive_ctx(INT64_MAX / 2, lim->max_tokens) + lim->block_size - 1) / lim->block_size);
        size_t act0 = sizing_activation_bytes(c, p, lim, b0, NULL);
        if (!act0) return MS_ERR(MS_ERR_INVALID, "sizing: num_slots %d does not fit the model and layout", lim->num_slots);
        if (s.weights + act0 >= device_bytes)
            return MS_ERR(MS_ERR_NOMEM, "sizing: weights %.2f GiB + activations %.2f GiB exceed the device's %.2f GiB",
                          s.weights / 1073741824.0, act0 / 1073741824.0, device_bytes / 1073741824.0);
        double room = (double)(device_bytes - s.weights - act0) * kv_fraction;
        int64_t nb = (int64_t)(room / (double)(blk + 4));
        if (nb > (1 << 30)) nb = 1 << 30;
        kv_blocks = (int)nb;
    }
    if (kv_blocks < 1)
        return MS_ERR(MS_ERR_NOMEM, "sizing: no KV block (%zu bytes) fits beside weights %.2f GiB on %.2f GiB", blk,
                      s.weights / 1073741824.0, device_bytes / 1073741824.0);
    s.activations = sizing_activation_bytes(c, p, lim, kv_blocks, &s);
    if (!s.activations)
        return MS_ERR(MS_ERR_INVALID, "sizing: num_slots %d does not fit the model and layout", lim->num_slots);
    s.kv_blocks = kv_blocks;
    s.kv = blk * (size_t)kv_blocks;
    if (device_bytes && s.weights + s.activations + s.kv > device_bytes)
        return MS_ERR(MS_ERR_NOMEM,
                      "sizing: weights %.2f GiB + activations %.2f GiB + KV %.2f GiB exceed the device's %.2f GiB",
                      s.weights / 1073741824.0, s.activations / 1073741824.0, s.kv / 1073741824.0,
                      device_bytes / 1073741824.0);
    *out = s;
    return MS_OK;
}
