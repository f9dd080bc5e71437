/* weights.c — load one rank's weights (see weights.h for the layout).
 *
 * Two passes over the same code: pass 0 validates every tensor against the
 * checkpoint header (ckpt_expect) and adds up aligned sizes; then one device
 * allocation; pass 1 walks the identical sequence, so the offsets match, and
 * places. Only the slices this rank needs are touched in the mmap (head
 * shards: rows of q_b/q/kv_b, columns of o_proj; the experts of this rank's
 * slots), so pages of other ranks' tensors are never read. Bytes go through
 * two pinned staging buffers (wl_stream), packed on the host: a column shard
 * becomes one contiguous copy, FP8 kv_b is dequantized there chunk by chunk
 * (nothing else is dequantized: FP8 stays FP8 on the device). Progress is
 * logged every 2 s. load_format dummy (ck NULL) reads no file: every tensor
 * is made on the device by the fill_dummy op. */
#include "worker/weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Host staging: two pinned buffers. A chunk is packed (sliced, dequantized or
 * widened) on the host into one while the other's upload runs; synchronize
 * before an upload is issued waits for the previous one only, which ran
 * during this pack. So the mmap is read once, the GPU copy engine never
 * reads pageable memory, and column shards become one contiguous copy. */
#define WL_STAGE_BYTES ((size_t)64 << 20)

typedef struct {
    const kern_ops_t *k;
    kern_ctx_t *cx;
    const ckpt_t *ck;   /* NULL: load_format dummy (weights.h) */
    const mcfg_t *c;
    char *base;         /* NULL in pass 0 */
    size_t off;
    void *stage[2];     /* pinned, stage_cap bytes each */
    size_t stage_cap;
    int cur;
    size_t moved, total; /* bytes placed so far / in all (progress) */
    double t0, t_log;
} wl_t;

static double wl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void wl_progress(wl_t *L, bool last)
{
    double t = wl_now();
    if (!last && t - L->t_log < 2.0) return;
    L->t_log = t;
    MS_INFO("weights: %.2f of %.2f GiB on the %s backend (%.0f%%, %.1f s, %s)", (double)L->moved / 1073741824.0,
            (double)L->total / 1073741824.0, L->k->name, L->total ? 100.0 * (double)L->moved / (double)L->total : 100.0,
            t - L->t0, L->ck ? "from the checkpoint" : "load_format dummy");
}

static void *wl_take(wl_t *L, size_t bytes)
{
    size_t o = L->off;
    L->off += (bytes + 255) & ~(size_t)255;
    return L->base ? L->base + o : NULL;
}

/* Packs rows [r, r+n) of a transfer into the staging buffer `to`. */
typedef void (*wl_pack_fn)(void *to, int64_t r, int64_t n, const void *arg);

/* Move nr rows of row_bytes each to dst (device, contiguous) through the staging, pack producing them. */
static ms_status_t wl_stream(wl_t *L, void *dst, int64_t nr, size_t row_bytes, wl_pack_fn pack, const void *arg)
{
    if (!L->base || nr <= 0 || row_bytes == 0) return MS_OK;
    if (row_bytes > L->stage_cap)
        return MS_ERR(MS_ERR_INTERNAL, "weights: a %zu-byte row exceeds the %zu-byte staging", row_bytes, L->stage_cap);
    const int64_t per = (int64_t)(L->stage_cap / row_bytes);
    for (int64_t r = 0; r < nr; r += per) {
        const int64_t n = nr - r < per ? nr - r : per;
        void *buf = L->stage[L->cur];
        pack(buf, r, n, arg);
        MS_TRY(L->k->synchronize(L->cx)); /* the other buffer's upload, issued before this pack */
        MS_TRY(L->k->upload(L->cx, (char *)dst + (size_t)r * row_bytes, buf, (size_t)n * row_bytes));
        L->cur ^= 1;
        L->moved += (size_t)n * row_bytes;
    }
    wl_progress(L, false);
    return MS_OK;
}

/* A 2-D slice of a row-major host tensor: rows r0.., columns [c0, c0+nc) of `cols`. */
typedef struct {
    const char *src;
    int64_t cols, r0, c0, nc;
    size_t esize;
} wl_slice_t;

static void wl_pack_slice(void *to, int64_t r, int64_t n, const void *arg)
{
    const wl_slice_t *a = arg;
    const size_t rb = (size_t)a->nc * a->esize;
    if (a->c0 == 0 && a->nc == a->cols) {
        memcpy(to, a->src + (size_t)((a->r0 + r) * a->cols) * a->esize, (size_t)n * rb);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        memcpy((char *)to + (size_t)i * rb, a->src + (size_t)((a->r0 + r + i) * a->cols + a->c0) * a->esize, rb);
}

/* FNV-1a of a tensor name: its dummy stream, so a dummy tensor has the same values on every rank and in
 * every layout (a slice reads the positions of the whole tensor) and replicas of an expert are equal. */
static uint64_t wl_seed(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *p = name; *p; p++) h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
    return h;
}

/* Place rows [r0, r0+nr) × cols [c0, c0+nc) of tensor `name` ([rows, cols] of dtype dt): from the
 * checkpoint tensor t, or (load_format dummy, t NULL) made on the device: uniform ±scale around offset,
 * fp8 bytes per kern_dummy_fp8. */
static ms_status_t wl_put(wl_t *L, void *dst, const ckpt_tensor_t *t, const char *name, ms_dtype_t dt, int64_t cols,
                          int64_t r0, int64_t nr, int64_t c0, int64_t nc, float scale, float offset)
{
    if (!L->base) return MS_OK;
    const size_t esize = ms_dtype_size(dt);
    if (!t) {
        MS_TRY(L->k->fill_dummy(L->cx, dst, dt, nr, nc, cols, r0 * cols + c0, wl_seed(name), scale, offset));
        L->moved += (size_t)(nr * nc) * esize;
        wl_progress(L, false);
        return MS_OK;
    }
    wl_slice_t a = {.src = t->data, .cols = cols, .r0 = r0, .c0 = c0, .nc = nc, .esize = esize};
    return wl_stream(L, dst, nr, (size_t)nc * esize, wl_pack_slice, &a);
}

static void wl_pack_widen(void *to, int64_t r, int64_t n, const void *arg)
{
    const bf16_t *src = arg;
    for (int64_t i = 0; i < n; i++) ((float *)to)[i] = bf16_to_f32(src[r + i]);
}

/* A vector tensor [n] of dtype dt (BF16 norms; F32 bias, also accepted as BF16 and widened).
 * Dummy: norms are ones, a bias zeros. */
static ms_status_t wl_vec(wl_t *L, void **dst, ms_dtype_t dt, int64_t n, const char *name)
{
    ckpt_tensor_t t;
    int64_t shape[1] = {n};
    if (!L->ck) {
        *dst = wl_take(L, (size_t)n * ms_dtype_size(dt));
        return wl_put(L, *dst, NULL, name, dt, n, 0, 1, 0, n, 0.0f, dt == MS_DT_F32 ? 0.0f : 1.0f);
    }
    if (dt == MS_DT_F32 && ckpt_get(L->ck, name, &t) == MS_OK && t.dtype == MS_DT_BF16) {
        MS_TRY(ckpt_expect(L->ck, name, MS_DT_BF16, 1, shape, &t));
        *dst = wl_take(L, (size_t)n * 4);
        /* one "row" per element: chunks stay within the staging */
        return wl_stream(L, *dst, n, 4, wl_pack_widen, t.data);
    }
    MS_TRY(ckpt_expect(L->ck, name, dt, 1, shape, &t));
    *dst = wl_take(L, (size_t)n * ms_dtype_size(dt));
    return wl_put(L, *dst, &t, name, dt, n, 0, 1, 0, n, 0, 0);
}

/* Which dtype the checkpoint gives a linear weight: F8E4M3 (then it needs its scale_inv) or BF16.
 * Dummy: the config's (quantization_config fp8 → F8E4M3 where fp8 is allowed). */
static ms_status_t wl_linear_dtype(wl_t *L, const char *name, bool allow_fp8, ms_dtype_t *dt)
{
    if (!L->ck) {
        *dt = allow_fp8 && L->c->weight_dtype == MS_DT_F8E4M3 ? MS_DT_F8E4M3 : MS_DT_BF16;
        return MS_OK;
    }
    ckpt_tensor_t t;
    MS_TRY(ckpt_get(L->ck, name, &t));
    if (t.dtype == MS_DT_F8E4M3 && allow_fp8) *dt = MS_DT_F8E4M3;
    else *dt = MS_DT_BF16; /* anything else: let ckpt_expect name the mismatch */
    return MS_OK;
}

/* Dummy weights of a linear with `cols` inputs keep activations O(1): rms ≈ 1/sqrt(cols)
 * (uniform ±sqrt(3/cols) in BF16; FP8 bytes of rms ≈ 1.6 times a scale_inv of 1/(1.6 sqrt(cols))). */
static float wl_dummy_bf16_scale(int64_t cols) { return (float)sqrt(3.0 / (double)cols); }
static float wl_dummy_fp8_scale_inv(int64_t cols) { return (float)(1.0 / (1.6 * sqrt((double)cols))); }

/* Upload slice [r0,r0+nr) × [c0,c0+nc) of linear `name` ([rows, cols], dtype dt) into data/scale. */
static ms_status_t wl_linear_part(wl_t *L, const char *name, ms_dtype_t dt, int64_t rows, int64_t cols, int64_t r0,
                                  int64_t nr, int64_t c0, int64_t nc, void *data, float *scale)
{
    ckpt_tensor_t t;
    int64_t shape[2] = {rows, cols};
    const int64_t B = KERN_FP8_BLOCK;
    if (dt == MS_DT_F8E4M3 &&
        (r0 % B || c0 % B || (nr % B && r0 + nr != rows) || (nc % B && c0 + nc != cols)))
        return MS_ERR(MS_ERR_UNSUPPORTED, "weights: slice [%lld+%lld, %lld+%lld] of fp8 tensor %s is not aligned to "
                                          "128x128 scale blocks", (long long)r0, (long long)nr, (long long)c0,
                      (long long)nc, name);
    int64_t sshape[2] = {(rows + B - 1) / B, (cols + B - 1) / B};
    if (!L->ck) {
        MS_TRY(wl_put(L, data, NULL, name, dt, cols, r0, nr, c0, nc, wl_dummy_bf16_scale(cols), 0));
        if (dt != MS_DT_F8E4M3) return MS_OK;
        return wl_put(L, scale, NULL, name, MS_DT_F32, sshape[1], r0 / B, (nr + B - 1) / B, c0 / B, (nc + B - 1) / B,
                      0.0f, wl_dummy_fp8_scale_inv(cols));
    }
    MS_TRY(ckpt_expect(L->ck, name, dt, 2, shape, &t));
    MS_TRY(wl_put(L, data, &t, name, dt, cols, r0, nr, c0, nc, 0, 0));
    if (dt != MS_DT_F8E4M3) return MS_OK;
    char sname[300];
    snprintf(sname, sizeof sname, "%s_scale_inv", name);
    ckpt_tensor_t ts;
    MS_TRY(ckpt_expect(L->ck, sname, MS_DT_F32, 2, sshape, &ts));
    return wl_put(L, scale, &ts, sname, MS_DT_F32, sshape[1], r0 / B, (nr + B - 1) / B, c0 / B, (nc + B - 1) / B, 0,
                  0);
}

/* Reserve one matrix [nr, nc] of dtype dt (with scales for fp8) and point m at it. */
static void wl_reserve(wl_t *L, kern_mat_t *m, ms_dtype_t dt, int64_t nr, int64_t nc)
{
    m->dtype = dt;
    m->rows = (int32_t)nr, m->cols = (int32_t)nc;
    m->data = wl_take(L, (size_t)(nr * nc) * ms_dtype_size(dt));
    m->scale_inv = NULL;
    if (dt == MS_DT_F8E4M3)
        m->scale_inv = wl_take(L, sizeof(float) * (size_t)kern_fp8_blocks((int32_t)nr) * kern_fp8_blocks((int32_t)nc));
}

/* The routed experts of layer l: one record per local slot, each loaded from the expert the placement puts
 * there, so an expert (and a replica) is one contiguous copy. */
static ms_status_t wl_experts(wl_t *L, const mcfg_t *c, const par_t *p, const placement_t *pl, int l, int pl_layer,
                              kern_moe_slots_t *w)
{
    static const char *const proj[3] = {"gate_proj", "up_proj", "down_proj"};
    char nm[256];
    const int64_t D = c->hidden_size, Im = c->moe_intermediate_size;
    const int spr = pl->slots_per_rank, s0 = p->ep_rank * spr;
    ms_dtype_t dt;
    snprintf(nm, sizeof nm, "model.layers.%d.mlp.experts.%d.gate_proj.weight", l, placement_expert(pl, pl_layer, s0));
    MS_TRY(wl_linear_dtype(L, nm, true, &dt));
    *w = kern_moe_slots_layout(dt, (int32_t)D, (int32_t)Im);
    w->base = wl_take(L, w->stride * (size_t)spr);
    for (int j = 0; j < spr; j++)
        for (int k = 0; k < 3; k++) {
            kern_mat_t m = kern_moe_slot_mat(w, j, k);
            const int64_t rows = k == 2 ? D : Im, cols = k == 2 ? Im : D;
            snprintf(nm, sizeof nm, "model.layers.%d.mlp.experts.%d.%s.weight", l,
                     placement_expert(pl, pl_layer, s0 + j), proj[k]);
            MS_TRY(wl_linear_part(L, nm, dt, rows, cols, 0, rows, 0, cols, (void *)m.data, (float *)m.scale_inv));
        }
    return MS_OK;
}

/* One linear (optionally a row or column slice), in its own reservation. */
static ms_status_t wl_linear(wl_t *L, kern_mat_t *m, bool allow_fp8, int64_t rows, int64_t cols, int64_t r0,
                             int64_t nr, int64_t c0, int64_t nc, const char *name)
{
    ms_dtype_t dt;
    MS_TRY(wl_linear_dtype(L, name, allow_fp8, &dt));
    wl_reserve(L, m, dt, nr, nc);
    return wl_linear_part(L, name, dt, rows, cols, r0, nr, c0, nc, (void *)m->data, (float *)m->scale_inv);
}

/* FP8 rows r0.. of a [rows, cols] tensor with its scale grid, dequantized to BF16 while packed. */
typedef struct {
    const uint8_t *q;
    const float *sc;
    int64_t cols, scols, r0;
} wl_deq_t;

static void wl_pack_dequant(void *to, int64_t r, int64_t n, const void *arg)
{
    const wl_deq_t *a = arg;
    bf16_t *o = to;
    for (int64_t i = 0; i < n; i++) {
        const int64_t row = a->r0 + r + i;
        const float *srow = a->sc + (row / KERN_FP8_BLOCK) * a->scols;
        for (int64_t c = 0; c < a->cols; c++)
            o[i * a->cols + c] = f32_to_bf16(fp8e4m3_to_f32(a->q[row * a->cols + c]) * srow[c / KERN_FP8_BLOCK]);
    }
}

/* Rows [r0, r0+nr) of linear `name` ([rows, cols]) as BF16 whatever the checkpoint stores: an FP8 weight is
 * dequantized once here, chunk by chunk while it is staged, with the kernels' rule bf16(fp8 * scale_inv)
 * (so the numbers are the ones an FP8 GEMM would have used). For kv_b: the absorbed MLA's per-head GEMMs
 * (W_UK read transposed) and the naive path's kv_b GEMM read it as plain BF16. Dummy: BF16 values. */
static ms_status_t wl_linear_bf16(wl_t *L, kern_mat_t *m, int64_t rows, int64_t cols, int64_t r0, int64_t nr,
                                  const char *name)
{
    ms_dtype_t dt;
    MS_TRY(wl_linear_dtype(L, name, true, &dt));
    if (dt != MS_DT_F8E4M3 || !L->ck) return wl_linear(L, m, false, rows, cols, r0, nr, 0, cols, name);
    wl_reserve(L, m, MS_DT_BF16, nr, cols);
    ckpt_tensor_t t, ts;
    int64_t shape[2] = {rows, cols}, sshape[2] = {kern_fp8_blocks((int32_t)rows), kern_fp8_blocks((int32_t)cols)};
    char sname[300];
    snprintf(sname, sizeof sname, "%s_scale_inv", name);
    MS_TRY(ckpt_expect(L->ck, name, MS_DT_F8E4M3, 2, shape, &t));
    MS_TRY(ckpt_expect(L->ck, sname, MS_DT_F32, 2, sshape, &ts));
    wl_deq_t a = {.q = t.data, .sc = ts.data, .cols = cols, .scols = sshape[1], .r0 = r0};
    return wl_stream(L, (void *)m->data, nr, sizeof(bf16_t) * (size_t)cols, wl_pack_dequant, &a);
}

#define NAME(buf, ...) (snprintf(buf, sizeof buf, __VA_ARGS__), buf)

/* Two linears of one input, [r1, D] and [r2, D], as one [r1 + r2, D] matrix (first rows first), so one GEMM
 * reads both; m1 and m2 become views of its parts. Kept apart (fused->data NULL) when their dtypes differ or
 * an FP8 r1 is not a multiple of 128 (the second part's scale blocks would straddle). For gate|up (r1 = r2)
 * the GEMM's SiLU·mul epilogue takes the fused matrix as it is (kern_epi_t). */
static ms_status_t wl_fused(wl_t *L, int64_t r1, int64_t r2, int64_t D, const char *n1, const char *n2, kern_mat_t *m1,
                            kern_mat_t *m2, kern_mat_t *fused)
{
    ms_dtype_t d1, d2;
    MS_TRY(wl_linear_dtype(L, n1, true, &d1));
    MS_TRY(wl_linear_dtype(L, n2, true, &d2));
    memset(fused, 0, sizeof *fused);
    if (d1 != d2 || (d1 == MS_DT_F8E4M3 && r1 % KERN_FP8_BLOCK)) {
        MS_TRY(wl_linear(L, m1, true, r1, D, 0, r1, 0, D, n1));
        return wl_linear(L, m2, true, r2, D, 0, r2, 0, D, n2);
    }
    wl_reserve(L, fused, d1, r1 + r2, D);
    const size_t off = (size_t)(r1 * D) * ms_dtype_size(d1);
    const size_t soff = d1 == MS_DT_F8E4M3 ? (size_t)kern_fp8_blocks((int32_t)r1) * kern_fp8_blocks((int32_t)D) : 0;
    *m1 = *fused, *m2 = *fused;
    m1->rows = (int32_t)r1, m2->rows = (int32_t)r2;
    m2->data = fused->data ? (const char *)fused->data + off : NULL; /* NULL in the sizing pass */
    m2->scale_inv = fused->scale_inv ? fused->scale_inv + soff : NULL;
    MS_TRY(wl_linear_part(L, n1, d1, r1, D, 0, r1, 0, D, (void *)m1->data, (float *)m1->scale_inv));
    return wl_linear_part(L, n2, d1, r2, D, 0, r2, 0, D, (void *)m2->data, (float *)m2->scale_inv);
}

/* One decoder layer (checkpoint index l; its experts placed by layer pl_layer of pl). */
static ms_status_t wl_layer(wl_t *L, const mcfg_t *c, const par_t *p, const placement_t *pl, int l, int pl_layer,
                            wlayer_t *y)
{
    char nm[256];
    const int64_t D = c->hidden_size, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    const int64_t dv = c->v_head_dim, dc = c->kv_lora_rank, qk = dn + dr, Hl = par_heads_local(p, c);
    const int64_t h0 = par_head0(p, c), H = c->num_attention_heads, E = c->n_routed_experts;
    const int64_t Is = (int64_t)c->moe_intermediate_size * c->n_shared_experts;
#define LN(...) NAME(nm, "model.layers.%d.%s", l, __VA_ARGS__)
    MS_TRY(wl_vec(L, (void **)&y->input_norm, MS_DT_BF16, D, LN("input_layernorm.weight")));
    MS_TRY(wl_vec(L, (void **)&y->post_norm, MS_DT_BF16, D, LN("post_attention_layernorm.weight")));
    memset(&y->qkv_a, 0, sizeof y->qkv_a);
    if (c->q_lora_rank > 0) {
        const int64_t R = c->q_lora_rank;
        char kn[256];
        MS_TRY(wl_fused(L, R, dc + dr, D, LN("self_attn.q_a_proj.weight"),
                        NAME(kn, "model.layers.%d.self_attn.kv_a_proj_with_mqa.weight", l), &y->q_a, &y->kv_a,
                        &y->qkv_a));
        MS_TRY(wl_vec(L, (void **)&y->q_a_norm, MS_DT_BF16, R, LN("self_attn.q_a_layernorm.weight")));
        MS_TRY(wl_linear(L, &y->q_b, true, H * qk, R, h0 * qk, Hl * qk, 0, R, LN("self_attn.q_b_proj.weight")));
    } else {
        MS_TRY(wl_linear(L, &y->q, true, H * qk, D, h0 * qk, Hl * qk, 0, D, LN("self_attn.q_proj.weight")));
        MS_TRY(wl_linear(L, &y->kv_a, true, dc + dr, D, 0, dc + dr, 0, D, LN("self_attn.kv_a_proj_with_mqa.weight")));
    }
    MS_TRY(wl_vec(L, (void **)&y->kv_a_norm, MS_DT_BF16, dc, LN("self_attn.kv_a_layernorm.weight")));
    MS_TRY(wl_linear_bf16(L, &y->kv_b, H * (dn + dv), dc, h0 * (dn + dv), Hl * (dn + dv),
                          LN("self_attn.kv_b_proj.weight")));
    MS_TRY(wl_linear(L, &y->o, true, D, H * dv, 0, D, h0 * dv, Hl * dv, LN("self_attn.o_proj.weight")));
    y->is_moe = mcfg_layer_is_moe(c, l);
    if (!y->is_moe) {
        const int64_t I = c->intermediate_size;
        char un[256];
        MS_TRY(wl_fused(L, I, I, D, LN("mlp.gate_proj.weight"), NAME(un, "model.layers.%d.mlp.up_proj.weight", l),
                          &y->gate, &y->up, &y->gate_up));
        MS_TRY(wl_linear(L, &y->down, true, D, I, 0, D, 0, I, LN("mlp.down_proj.weight")));
        return MS_OK;
    }
    MS_TRY(wl_linear(L, &y->router, false, E, D, 0, E, 0, D, LN("mlp.gate.weight")));
    MS_TRY(wl_vec(L, (void **)&y->router_bias, MS_DT_F32, E, LN("mlp.gate.e_score_correction_bias")));
    MS_TRY(wl_experts(L, c, p, pl, l, pl_layer, &y->experts));
    if (Is > 0) {
        char un[256];
        MS_TRY(wl_fused(L, Is, Is, D, LN("mlp.shared_experts.gate_proj.weight"),
                          NAME(un, "model.layers.%d.mlp.shared_experts.up_proj.weight", l), &y->sh_gate, &y->sh_up,
                          &y->sh_gate_up));
        MS_TRY(wl_linear(L, &y->sh_down, true, D, Is, 0, D, 0, Is, LN("mlp.shared_experts.down_proj.weight")));
    }
#undef LN
    return MS_OK;
}

static ms_status_t wl_all(wl_t *L, const mcfg_t *c, const par_t *p, const placement_t *pl, weights_t *w)
{
    const int64_t D = c->hidden_size, V = c->vocab_size;

    MS_TRY(wl_vec(L, (void **)&w->norm, MS_DT_BF16, D, "model.norm.weight"));
    {
        ckpt_tensor_t t;
        int64_t shape[2] = {V, D};
        if (L->ck) MS_TRY(ckpt_expect(L->ck, "model.embed_tokens.weight", MS_DT_BF16, 2, shape, &t));
        w->embed = wl_take(L, (size_t)(V * D) * 2);
        MS_TRY(wl_put(L, w->embed, L->ck ? &t : NULL, "model.embed_tokens.weight", MS_DT_BF16, D, 0, V, 0, D, 1.0f, 0));
    }
    if (c->tie_word_embeddings) {
        w->lm_head = (kern_mat_t){.data = w->embed, .dtype = MS_DT_BF16, .rows = (int32_t)V, .cols = (int32_t)D};
    } else {
        MS_TRY(wl_linear(L, &w->lm_head, false, V, D, 0, V, 0, D, "lm_head.weight"));
    }
    for (int l = 0; l < c->num_hidden_layers; l++) MS_TRY(wl_layer(L, c, p, pl, l, l, &w->layers[l]));
    return MS_OK;
}

/* Pass 1 setup: the staging buffers (none for the dummy fill) and the write cursor at base. */
static ms_status_t wl_stage_begin(wl_t *L, void *base, size_t bytes)
{
    if (L->ck) {
        L->stage_cap = bytes < WL_STAGE_BYTES ? (bytes < 4096 ? 4096 : bytes) : WL_STAGE_BYTES;
        MS_TRY(L->k->host_alloc(L->stage_cap, &L->stage[0]));
        MS_TRY(L->k->host_alloc(L->stage_cap, &L->stage[1]));
    }
    L->base = base;
    L->off = 0;
    L->total = bytes;
    L->t0 = L->t_log = wl_now();
    return MS_OK;
}

ms_status_t weights_load(const kern_ops_t *k, kern_ctx_t *cx, const ckpt_t *ck, const mcfg_t *c, const par_t *p,
                         const placement_t *pl, weights_t *out)
{
    if (c->n_routed_experts > 0 && (!pl || pl->n_layers != c->num_hidden_layers || pl->n_experts != c->n_routed_experts ||
                                    pl->ep_size != p->ep_size))
        return MS_ERR(MS_ERR_INVALID, "weights: the expert placement does not match the model and layout");
    ms_status_t st;
    weights_t w = {.k = k, .n_layers = c->num_hidden_layers};
    w.layers = calloc((size_t)c->num_hidden_layers, sizeof(wlayer_t));
    if (!w.layers) return MS_ERR(MS_ERR_NOMEM, "weights: out of memory");
    wl_t L = {.k = k, .cx = cx, .ck = ck, .c = c};
    MS_TRY_GOTO(st, wl_all(&L, c, p, pl, &w), out_layers);
    w.bytes = L.off;
    MS_TRY_GOTO(st, k->alloc(w.bytes, &w.mem), out_layers);
    MS_TRY_GOTO(st, wl_stage_begin(&L, w.mem, w.bytes), out_stage);
    memset(w.layers, 0, (size_t)c->num_hidden_layers * sizeof(wlayer_t));
    MS_TRY_GOTO(st, wl_all(&L, c, p, pl, &w), out_stage);
    MS_TRY_GOTO(st, k->synchronize(cx), out_stage);
    L.moved = L.total; /* alignment padding counts as placed */
    wl_progress(&L, true);
    MS_INFO("weights: %.1f MiB on the %s backend (%d layers, %d heads, %d expert slots on this rank%s)",
            (double)w.bytes / (1 << 20), k->name, c->num_hidden_layers, par_heads_local(p, c),
            pl ? pl->slots_per_rank : 0, ck ? "" : "; load_format dummy: deterministic random values");
    k->host_free(L.stage[1]);
    k->host_free(L.stage[0]);
    *out = w;
    return MS_OK;
out_stage:
    if (L.stage[1]) k->host_free(L.stage[1]);
    if (L.stage[0]) k->host_free(L.stage[0]);
    k->free(w.mem);
out_layers:
    free(w.layers);
    return st;
}

void weights_free(weights_t *w)
{
    if (!w) return;
    if (w->mem) w->k->free(w->mem);
    free(w->layers);
    memset(w, 0, sizeof *w);
}

/* Same dtype, shape and bytes as the main model's tensor `main_name`: the checkpoint shares it. */
static bool wl_same_tensor(const ckpt_t *ck, const char *name, const char *main_name)
{
    ckpt_tensor_t a, b;
    if (ckpt_get(ck, name, &a) != MS_OK || ckpt_get(ck, main_name, &b) != MS_OK) return false;
    if (a.dtype != b.dtype || a.ndim != b.ndim || a.nbytes != b.nbytes) return false;
    for (int i = 0; i < a.ndim; i++)
        if (a.shape[i] != b.shape[i]) return false;
    return memcmp(a.data, b.data, a.nbytes) == 0;
}

static ms_status_t wl_mtp(wl_t *L, const mcfg_t *c, const par_t *p, const placement_t *pl, const weights_t *main,
                          wmtp_t *m)
{
    char nm[256];
    const int64_t D = c->hidden_size, V = c->vocab_size;
    const int l = m->layer;
#define LN(...) NAME(nm, "model.layers.%d.%s", l, __VA_ARGS__)
    /* load_format dummy (no checkpoint): the module shares the main model's embedding and head */
    if (!L->ck || !ckpt_has(L->ck, LN("embed_tokens.weight")) ||
        wl_same_tensor(L->ck, nm, "model.embed_tokens.weight")) {
        m->shared_embed = true;
        m->w.embed = main->embed;
    } else {
        ckpt_tensor_t t;
        int64_t shape[2] = {V, D};
        MS_TRY(ckpt_expect(L->ck, nm, MS_DT_BF16, 2, shape, &t));
        m->w.embed = wl_take(L, (size_t)(V * D) * 2);
        MS_TRY(wl_put(L, m->w.embed, &t, nm, MS_DT_BF16, D, 0, V, 0, D, 1.0f, 0));
    }
    MS_TRY(wl_vec(L, (void **)&m->enorm, MS_DT_BF16, D, LN("enorm.weight")));
    MS_TRY(wl_vec(L, (void **)&m->hnorm, MS_DT_BF16, D, LN("hnorm.weight")));
    MS_TRY(wl_linear(L, &m->eh_proj, false, D, 2 * D, 0, D, 0, 2 * D, LN("eh_proj.weight")));
    MS_TRY(wl_layer(L, c, p, pl, l, 0, &m->w.layers[0]));
    MS_TRY(wl_vec(L, (void **)&m->w.norm, MS_DT_BF16, D, LN("shared_head.norm.weight")));
    if (!L->ck || !ckpt_has(L->ck, LN("shared_head.head.weight")) ||
        (!c->tie_word_embeddings && wl_same_tensor(L->ck, nm, "lm_head.weight"))) {
        m->shared_head = true;
        m->w.lm_head = main->lm_head;
    } else {
        MS_TRY(wl_linear(L, &m->w.lm_head, false, V, D, 0, V, 0, D, nm));
    }
#undef LN
    return MS_OK;
}

ms_status_t weights_load_mtp(const kern_ops_t *k, kern_ctx_t *cx, const ckpt_t *ck, const mcfg_t *c, const par_t *p,
                             const placement_t *pl, const weights_t *main, int module, wmtp_t *out)
{
    const int l = c->num_hidden_layers + module;
    char nm[256];
    snprintf(nm, sizeof nm, "model.layers.%d.eh_proj.weight", l);
    if (ck ? !ckpt_has(ck, nm) : c->num_nextn_predict_layers <= module)
        return MS_ERR(MS_ERR_NOT_FOUND, "weights: speculative_config asks for MTP, but the checkpoint has no MTP "
                                        "module %d (no tensor %s; config.json num_nextn_predict_layers is %d)",
                      module, nm, c->num_nextn_predict_layers);
    if (c->n_routed_experts > 0 && mcfg_layer_is_moe(c, l) &&
        (!pl || pl->n_layers != 1 || pl->n_experts != c->n_routed_experts || pl->ep_size != p->ep_size))
        return MS_ERR(MS_ERR_INVALID, "weights: the MTP module's expert placement does not match the model");
    ms_status_t st;
    wmtp_t m = {.layer = l, .w = {.k = k, .n_layers = 1}};
    m.w.layers = calloc(1, sizeof(wlayer_t));
    if (!m.w.layers) return MS_ERR(MS_ERR_NOMEM, "weights: out of memory");
    wl_t L = {.k = k, .cx = cx, .ck = ck, .c = c};
    MS_TRY_GOTO(st, wl_mtp(&L, c, p, pl, main, &m), out_layers);
    m.w.bytes = L.off;
    MS_TRY_GOTO(st, k->alloc(m.w.bytes, &m.w.mem), out_layers);
    MS_TRY_GOTO(st, wl_stage_begin(&L, m.w.mem, m.w.bytes), out_stage);
    memset(m.w.layers, 0, sizeof(wlayer_t));
    m.shared_embed = m.shared_head = false;
    MS_TRY_GOTO(st, wl_mtp(&L, c, p, pl, main, &m), out_stage);
    MS_TRY_GOTO(st, k->synchronize(cx), out_stage);
    if (L.stage[1]) k->host_free(L.stage[1]);
    if (L.stage[0]) k->host_free(L.stage[0]);
    MS_INFO("weights: MTP module %d (layer %d): %.1f MiB%s%s", module, l, (double)m.w.bytes / (1 << 20),
            m.shared_embed ? ", embedding shared with the main model" : "",
            m.shared_head ? ", head shared with lm_head" : "");
    *out = m;
    return MS_OK;
out_stage:
    if (L.stage[1]) k->host_free(L.stage[1]);
    if (L.stage[0]) k->host_free(L.stage[0]);
    k->free(m.w.mem);
out_layers:
    free(m.w.layers);
    return st;
}

void weights_free_mtp(wmtp_t *m)
{
    if (!m) return;
    weights_free(&m->w);
    memset(m, 0, sizeof *m);
}
