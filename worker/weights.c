/* weights.c — load one rank's weights (see weights.h for the layout).
 *
 * Two passes over the same code: pass 0 validates every tensor against the
 * checkpoint header (ckpt_expect) and adds up aligned sizes; then one device
 * allocation; pass 1 walks the identical sequence, so the offsets match, and
 * uploads. Only the slices this rank needs are touched in the mmap (head
 * shards: rows of q_b/q/kv_b, columns of o_proj; the experts of this rank's
 * slots), so pages of other ranks' tensors are never read. */
#include "worker/weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const kern_ops_t *k;
    kern_ctx_t *cx;
    const ckpt_t *ck;
    char *base; /* NULL in pass 0 */
    size_t off;
} wl_t;

static void *wl_take(wl_t *L, size_t bytes)
{
    size_t o = L->off;
    L->off += (bytes + 255) & ~(size_t)255;
    return L->base ? L->base + o : NULL;
}

/* Upload rows [r0, r0+nr) × cols [c0, c0+nc) of a [rows, cols] tensor of esize-byte elements. */
static ms_status_t wl_put(wl_t *L, void *dst, const ckpt_tensor_t *t, int64_t cols, int64_t r0, int64_t nr, int64_t c0,
                          int64_t nc, size_t esize)
{
    if (!L->base) return MS_OK;
    const char *src = (const char *)t->data;
    if (c0 == 0 && nc == cols) return L->k->upload(L->cx, dst, src + (size_t)(r0 * cols) * esize, (size_t)(nr * nc) * esize);
    for (int64_t r = 0; r < nr; r++)
        MS_TRY(L->k->upload(L->cx, (char *)dst + (size_t)(r * nc) * esize, src + (size_t)((r0 + r) * cols + c0) * esize,
                            (size_t)nc * esize));
    return MS_OK;
}

/* A vector tensor [n] of dtype dt (BF16 norms; F32 bias, also accepted as BF16 and widened). */
static ms_status_t wl_vec(wl_t *L, void **dst, ms_dtype_t dt, int64_t n, const char *name)
{
    ckpt_tensor_t t;
    int64_t shape[1] = {n};
    if (dt == MS_DT_F32 && ckpt_get(L->ck, name, &t) == MS_OK && t.dtype == MS_DT_BF16) {
        MS_TRY(ckpt_expect(L->ck, name, MS_DT_BF16, 1, shape, &t));
        *dst = wl_take(L, (size_t)n * 4);
        if (!L->base) return MS_OK;
        float *tmp = malloc(sizeof(float) * (size_t)n);
        if (!tmp) return MS_ERR(MS_ERR_NOMEM, "weights: out of memory widening %s", name);
        for (int64_t i = 0; i < n; i++) tmp[i] = bf16_to_f32(((const bf16_t *)t.data)[i]);
        ms_status_t st = L->k->upload(L->cx, *dst, tmp, (size_t)n * 4);
        if (st == MS_OK) st = L->k->synchronize(L->cx); /* tmp must outlive an async upload */
        free(tmp);
        return st;
    }
    MS_TRY(ckpt_expect(L->ck, name, dt, 1, shape, &t));
    *dst = wl_take(L, (size_t)n * ms_dtype_size(dt));
    return wl_put(L, *dst, &t, n, 0, 1, 0, n, ms_dtype_size(dt));
}

/* Which dtype the checkpoint gives a linear weight: F8E4M3 (then it needs its scale_inv) or BF16. */
static ms_status_t wl_linear_dtype(wl_t *L, const char *name, bool allow_fp8, ms_dtype_t *dt)
{
    ckpt_tensor_t t;
    MS_TRY(ckpt_get(L->ck, name, &t));
    if (t.dtype == MS_DT_F8E4M3 && allow_fp8) *dt = MS_DT_F8E4M3;
    else *dt = MS_DT_BF16; /* anything else: let ckpt_expect name the mismatch */
    return MS_OK;
}

/* Upload slice [r0,r0+nr) × [c0,c0+nc) of linear `name` ([rows, cols], dtype dt) into data/scale. */
static ms_status_t wl_linear_part(wl_t *L, const char *name, ms_dtype_t dt, int64_t rows, int64_t cols, int64_t r0,
                                  int64_t nr, int64_t c0, int64_t nc, void *data, float *scale)
{
    ckpt_tensor_t t;
    int64_t shape[2] = {rows, cols};
    MS_TRY(ckpt_expect(L->ck, name, dt, 2, shape, &t));
    MS_TRY(wl_put(L, data, &t, cols, r0, nr, c0, nc, ms_dtype_size(dt)));
    if (dt != MS_DT_F8E4M3) return MS_OK;
    const int64_t B = KERN_FP8_BLOCK;
    if (r0 % B || c0 % B || (nr % B && r0 + nr != rows) || (nc % B && c0 + nc != cols))
        return MS_ERR(MS_ERR_UNSUPPORTED, "weights: slice [%lld+%lld, %lld+%lld] of fp8 tensor %s is not aligned to "
                                          "128x128 scale blocks", (long long)r0, (long long)nr, (long long)c0,
                      (long long)nc, name);
    char sname[300];
    snprintf(sname, sizeof sname, "%s_scale_inv", name);
    ckpt_tensor_t ts;
    int64_t sshape[2] = {(rows + B - 1) / B, (cols + B - 1) / B};
    MS_TRY(ckpt_expect(L->ck, sname, MS_DT_F32, 2, sshape, &ts));
    return wl_put(L, scale, &ts, sshape[1], r0 / B, (nr + B - 1) / B, c0 / B, (nc + B - 1) / B, 4);
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

/* Rows [r0, r0+nr) of linear `name` ([rows, cols]) as BF16 whatever the checkpoint stores: an FP8 weight is
 * dequantized once here, on the host, with the kernels' rule bf16(fp8 * scale_inv) (so the numbers are the
 * ones an FP8 GEMM would have used). For kv_b: the absorbed MLA's per-head GEMMs (W_UK read transposed)
 * and the naive path's kv_b GEMM read it as plain BF16. */
static ms_status_t wl_linear_bf16(wl_t *L, kern_mat_t *m, int64_t rows, int64_t cols, int64_t r0, int64_t nr,
                                  const char *name)
{
    ms_dtype_t dt;
    MS_TRY(wl_linear_dtype(L, name, true, &dt));
    if (dt != MS_DT_F8E4M3) return wl_linear(L, m, false, rows, cols, r0, nr, 0, cols, name);
    wl_reserve(L, m, MS_DT_BF16, nr, cols);
    ckpt_tensor_t t, ts;
    int64_t shape[2] = {rows, cols}, sshape[2] = {kern_fp8_blocks((int32_t)rows), kern_fp8_blocks((int32_t)cols)};
    char sname[300];
    snprintf(sname, sizeof sname, "%s_scale_inv", name);
    MS_TRY(ckpt_expect(L->ck, name, MS_DT_F8E4M3, 2, shape, &t));
    MS_TRY(ckpt_expect(L->ck, sname, MS_DT_F32, 2, sshape, &ts));
    if (!L->base) return MS_OK;
    bf16_t *tmp = malloc(sizeof(bf16_t) * (size_t)(nr * cols));
    if (!tmp) return MS_ERR(MS_ERR_NOMEM, "weights: out of memory dequantizing %s", name);
    const uint8_t *q = t.data;
    const float *sc = ts.data;
    for (int64_t r = 0; r < nr; r++)
        for (int64_t c = 0; c < cols; c++) {
            float s = sc[((r0 + r) / KERN_FP8_BLOCK) * sshape[1] + c / KERN_FP8_BLOCK];
            tmp[r * cols + c] = f32_to_bf16(fp8e4m3_to_f32(q[(r0 + r) * cols + c]) * s);
        }
    ms_status_t st = L->k->upload(L->cx, (void *)m->data, tmp, sizeof(bf16_t) * (size_t)(nr * cols));
    if (st == MS_OK) st = L->k->synchronize(L->cx); /* tmp must outlive an async upload */
    free(tmp);
    return st;
}

#define NAME(buf, ...) (snprintf(buf, sizeof buf, __VA_ARGS__), buf)

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
    if (c->q_lora_rank > 0) {
        const int64_t R = c->q_lora_rank;
        MS_TRY(wl_linear(L, &y->q_a, true, R, D, 0, R, 0, D, LN("self_attn.q_a_proj.weight")));
        MS_TRY(wl_vec(L, (void **)&y->q_a_norm, MS_DT_BF16, R, LN("self_attn.q_a_layernorm.weight")));
        MS_TRY(wl_linear(L, &y->q_b, true, H * qk, R, h0 * qk, Hl * qk, 0, R, LN("self_attn.q_b_proj.weight")));
    } else {
        MS_TRY(wl_linear(L, &y->q, true, H * qk, D, h0 * qk, Hl * qk, 0, D, LN("self_attn.q_proj.weight")));
    }
    MS_TRY(wl_linear(L, &y->kv_a, true, dc + dr, D, 0, dc + dr, 0, D, LN("self_attn.kv_a_proj_with_mqa.weight")));
    MS_TRY(wl_vec(L, (void **)&y->kv_a_norm, MS_DT_BF16, dc, LN("self_attn.kv_a_layernorm.weight")));
    MS_TRY(wl_linear_bf16(L, &y->kv_b, H * (dn + dv), dc, h0 * (dn + dv), Hl * (dn + dv),
                          LN("self_attn.kv_b_proj.weight")));
    MS_TRY(wl_linear(L, &y->o, true, D, H * dv, 0, D, h0 * dv, Hl * dv, LN("self_attn.o_proj.weight")));
    y->is_moe = mcfg_layer_is_moe(c, l);
    if (!y->is_moe) {
        const int64_t I = c->intermediate_size;
        MS_TRY(wl_linear(L, &y->gate, true, I, D, 0, I, 0, D, LN("mlp.gate_proj.weight")));
        MS_TRY(wl_linear(L, &y->up, true, I, D, 0, I, 0, D, LN("mlp.up_proj.weight")));
        MS_TRY(wl_linear(L, &y->down, true, D, I, 0, D, 0, I, LN("mlp.down_proj.weight")));
        return MS_OK;
    }
    MS_TRY(wl_linear(L, &y->router, false, E, D, 0, E, 0, D, LN("mlp.gate.weight")));
    MS_TRY(wl_vec(L, (void **)&y->router_bias, MS_DT_F32, E, LN("mlp.gate.e_score_correction_bias")));
    MS_TRY(wl_experts(L, c, p, pl, l, pl_layer, &y->experts));
    if (Is > 0) {
        MS_TRY(wl_linear(L, &y->sh_gate, true, Is, D, 0, Is, 0, D, LN("mlp.shared_experts.gate_proj.weight")));
        MS_TRY(wl_linear(L, &y->sh_up, true, Is, D, 0, Is, 0, D, LN("mlp.shared_experts.up_proj.weight")));
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
        MS_TRY(ckpt_expect(L->ck, "model.embed_tokens.weight", MS_DT_BF16, 2, shape, &t));
        w->embed = wl_take(L, (size_t)(V * D) * 2);
        MS_TRY(wl_put(L, w->embed, &t, D, 0, V, 0, D, 2));
    }
    if (c->tie_word_embeddings) {
        w->lm_head = (kern_mat_t){.data = w->embed, .dtype = MS_DT_BF16, .rows = (int32_t)V, .cols = (int32_t)D};
    } else {
        MS_TRY(wl_linear(L, &w->lm_head, false, V, D, 0, V, 0, D, "lm_head.weight"));
    }
    for (int l = 0; l < c->num_hidden_layers; l++) MS_TRY(wl_layer(L, c, p, pl, l, l, &w->layers[l]));
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
    wl_t L = {.k = k, .cx = cx, .ck = ck};
    MS_TRY_GOTO(st, wl_all(&L, c, p, pl, &w), out_layers);
    w.bytes = L.off;
    MS_TRY_GOTO(st, k->alloc(w.bytes, &w.mem), out_layers);
    memset(w.layers, 0, (size_t)c->num_hidden_layers * sizeof(wlayer_t));
    L.base = w.mem;
    L.off = 0;
    MS_TRY_GOTO(st, wl_all(&L, c, p, pl, &w), out_mem);
    MS_TRY_GOTO(st, k->synchronize(cx), out_mem);
    MS_INFO("weights: %.1f MiB on the %s backend (%d layers, %d heads, %d expert slots on this rank)",
            (double)w.bytes / (1 << 20), k->name, c->num_hidden_layers, par_heads_local(p, c),
            pl ? pl->slots_per_rank : 0);
    *out = w;
    return MS_OK;
out_mem:
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
    if (!ckpt_has(L->ck, LN("embed_tokens.weight")) || wl_same_tensor(L->ck, nm, "model.embed_tokens.weight")) {
        m->shared_embed = true;
        m->w.embed = main->embed;
    } else {
        ckpt_tensor_t t;
        int64_t shape[2] = {V, D};
        MS_TRY(ckpt_expect(L->ck, nm, MS_DT_BF16, 2, shape, &t));
        m->w.embed = wl_take(L, (size_t)(V * D) * 2);
        MS_TRY(wl_put(L, m->w.embed, &t, D, 0, V, 0, D, 2));
    }
    MS_TRY(wl_vec(L, (void **)&m->enorm, MS_DT_BF16, D, LN("enorm.weight")));
    MS_TRY(wl_vec(L, (void **)&m->hnorm, MS_DT_BF16, D, LN("hnorm.weight")));
    MS_TRY(wl_linear(L, &m->eh_proj, false, D, 2 * D, 0, D, 0, 2 * D, LN("eh_proj.weight")));
    MS_TRY(wl_layer(L, c, p, pl, l, 0, &m->w.layers[0]));
    MS_TRY(wl_vec(L, (void **)&m->w.norm, MS_DT_BF16, D, LN("shared_head.norm.weight")));
    if (!ckpt_has(L->ck, LN("shared_head.head.weight")) ||
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
    if (!ckpt_has(ck, nm))
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
    wl_t L = {.k = k, .cx = cx, .ck = ck};
    MS_TRY_GOTO(st, wl_mtp(&L, c, p, pl, main, &m), out_layers);
    m.w.bytes = L.off;
    MS_TRY_GOTO(st, k->alloc(m.w.bytes, &m.w.mem), out_layers);
    memset(m.w.layers, 0, sizeof(wlayer_t));
    m.shared_embed = m.shared_head = false;
    L.base = m.w.mem;
    L.off = 0;
    MS_TRY_GOTO(st, wl_mtp(&L, c, p, pl, main, &m), out_mem);
    MS_TRY_GOTO(st, k->synchronize(cx), out_mem);
    MS_INFO("weights: MTP module %d (layer %d): %.1f MiB%s%s", module, l, (double)m.w.bytes / (1 << 20),
            m.shared_embed ? ", embedding shared with the main model" : "",
            m.shared_head ? ", head shared with lm_head" : "");
    *out = m;
    return MS_OK;
out_mem:
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
