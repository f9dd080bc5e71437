/* sizing.c — per-rank memory arithmetic (sizing.h). Weight bytes follow
 * weights.c's tensor list (the engine test compares the two on real
 * checkpoints); activation bytes are forward.c's own layout, computed
 * without allocating. */
#include "worker/sizing.h"

#include "kernels/kernels.h"
#include "worker/forward.h"

size_t sizing_kv_token_bytes(const mcfg_t *c, bool kv_fp8)
{
    size_t dc = (size_t)c->kv_lora_rank, dr = (size_t)c->qk_rope_head_dim;
    size_t row = kv_fp8 ? dc + 4 * (size_t)kern_fp8_blocks((int32_t)dc) + 2 * dr : 2 * (dc + dr);
    return row * (size_t)c->num_hidden_layers;
}

/* One carve of weights.c's allocation (each is rounded up to 256 bytes). */
static size_t take(size_t bytes) { return (bytes + 255) & ~(size_t)255; }

/* A stack of n linears [rows, cols] in the checkpoint's weight dtype (fp8:
 * plus their scales, a second carve). */
static size_t linears(const mcfg_t *c, int64_t n, int64_t rows, int64_t cols, bool allow_fp8)
{
    if (allow_fp8 && c->weight_dtype == MS_DT_F8E4M3)
        return take((size_t)(n * rows * cols)) +
               take(4 * (size_t)n * (size_t)kern_fp8_blocks((int32_t)rows) * (size_t)kern_fp8_blocks((int32_t)cols));
    return take((size_t)(n * rows * cols) * 2);
}
static size_t linear(const mcfg_t *c, int64_t rows, int64_t cols, bool allow_fp8)
{
    return linears(c, 1, rows, cols, allow_fp8);
}

size_t sizing_weight_bytes(const mcfg_t *c, const par_t *p)
{
    const int64_t D = c->hidden_size, V = c->vocab_size, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    const int64_t dv = c->v_head_dim, dc = c->kv_lora_rank, qk = dn + dr, Hl = par_heads_local(p, c);
    const int64_t E = c->n_routed_experts, Im = c->moe_intermediate_size, Is = Im * c->n_shared_experts;
    const int64_t El = par_experts_local(p, c), R = c->q_lora_rank;
    size_t b = take(2 * (size_t)D) + take(2 * (size_t)(V * D)); /* final norm, embedding */
    if (!c->tie_word_embeddings) b += linear(c, V, D, false);
    for (int l = 0; l < c->num_hidden_layers; l++) {
        b += 2 * take(2 * (size_t)D); /* input and post-attention norms */
        if (R > 0) b += linear(c, R, D, true) + take(2 * (size_t)R) + linear(c, Hl * qk, R, true);
        else b += linear(c, Hl * qk, D, true);
        b += linear(c, dc + dr, D, true) + take(2 * (size_t)dc); /* kv_a, its norm */
        b += linear(c, Hl * (dn + dv), dc, true) + linear(c, D, Hl * dv, true);
        if (!mcfg_layer_is_moe(c, l)) {
            b += 3 * linear(c, c->intermediate_size, D, true);
            continue;
        }
        b += linear(c, E, D, false) + take(4 * (size_t)E); /* router, its fp32 bias */
        b += 2 * linears(c, El, Im, D, true) + linears(c, El, D, Im, true);
        if (Is > 0) b += 2 * linear(c, Is, D, true) + linear(c, D, Is, true);
    }
    return b;
}

size_t sizing_activation_bytes(const mcfg_t *c, const par_t *p, const sizing_limits_t *lim, int kv_blocks,
                               sizing_t *detail)
{
    int64_t kv_tokens = (int64_t)kv_blocks * lim->block_size;
    int64_t moe_tokens = sizing_moe_tokens(lim->moe_max_num_tokens, p->ep_size, lim->max_tokens);
    int64_t rows = c->n_routed_experts ? sizing_moe_recv_rows(c, p, moe_tokens) : 0;
    int S = sizing_naive_ctx(kv_tokens, lim->max_tokens);
    size_t bytes = fwd_bytes(c, p, lim->max_tokens, lim->max_batch, S, kv_blocks, rows);
    if (detail) detail->moe_tokens = moe_tokens, detail->moe_recv_rows = rows, detail->naive_ctx = S;
    return bytes;
}

ms_status_t sizing_rank(const mcfg_t *c, const par_t *p, const sizing_limits_t *lim, bool kv_fp8, int kv_blocks,
                        size_t device_bytes, double kv_fraction, sizing_t *out)
{
    sizing_t s = {0};
    s.weights = sizing_weight_bytes(c, p);
    s.kv_token = sizing_kv_token_bytes(c, kv_fp8);
    const size_t blk = s.kv_token * (size_t)lim->block_size;
    if (kv_blocks <= 0) {
        /* The arena grows with the pool: its naive-attention scratch up to
         * its bound, then 4 bytes of block table a block. Size it for a pool
         * that reaches the bound, and charge the table per block. */
        int b0 = (int)((sizing_naive_ctx(INT64_MAX / 2, lim->max_tokens) + lim->block_size - 1) / lim->block_size);
        size_t act0 = sizing_activation_bytes(c, p, lim, b0, NULL);
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
