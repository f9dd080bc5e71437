/* mkmodel_write.c — the tensors of a synthetic DeepSeek-V3 checkpoint, their
 * deterministic random values, and the safetensors files that hold them.
 *
 * Determinism: every tensor draws from its own splitmix64 stream seeded by
 * (--seed, tensor name), and values are built with exact IEEE arithmetic only
 * (no libm transcendental calls), so files are byte-identical across runs and
 * machines.
 *
 * FP8: a quantized weight is W[i,j] = fp8[i,j] * scale_inv[i/128, j/128]
 * where every scale_inv has at most 4 significant bits (k/8 * 2^e, k in
 * 8..15). An e4m3 value has at most 4 significant bits too, so the product
 * has at most 8 and is exactly a bf16 value: the dequantized twin written in
 * MK_OUT_TWIN mode is bit-exact, not an approximation.
 *
 * Values are scaled so the tiny models behave like a network (linears
 * std ~ 1/sqrt(fan_in), RMS-normalized inputs ~ 1), and lm_head is built
 * so that greedy argmaxes are well separated (see "the peaky head"), which
 * keeps the golden tests' exact greedy comparison stable. */
#include "mkmodel.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    MK_LINEAR,  /* [out, in]; FP8 with block scales in fp8 mode */
    MK_MATRIX,  /* [rows, cols]; always BF16 (embeddings, router, eh_proj, MTP head) */
    MK_NORM,    /* [n] BF16 around 1 */
    MK_BIAS,    /* [n] F32, small; bf16-representable values */
    MK_HEAD,    /* [vocab, hidden] BF16 lm_head: random + aligned with an embedding row (mk_emit_head) */
    MK_EH,      /* [hidden, 2*hidden] BF16 MTP eh_proj: MK_EMBED_STD * identity on the embedding half + random */
};

typedef struct {
    char name[128];
    char stream[128];   /* the name its values are drawn from: its own, or the tensor it is a copy of */
    int kind;
    int64_t rows, cols; /* cols == 0 for 1-D tensors */
    double std;
} mk_tensor_t;

/* One entry of a safetensors header: a tensor or the scale_inv of one. */
typedef struct {
    int t;          /* index into the tensor list */
    bool scale;     /* the `<name>_scale_inv` companion */
    ms_dtype_t dtype;
    int ndim;
    int64_t shape[2];
    uint64_t nbytes;
    int shard;
} mk_entry_t;

typedef struct {
    mk_tensor_t *t;
    size_t n, cap;
} mk_list_t;

/* ---- deterministic random numbers ---- */

static uint64_t mk_splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t mk_stream(uint64_t seed, const char *name, const char *salt)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (const char *p = name; *p; p++) h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
    for (const char *p = salt; *p; p++) h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
    uint64_t s = h ^ (seed * 0xd1b54a32d192ed03ull);
    mk_splitmix(&s);
    return s;
}

/* Uniform in [-1, 1), exactly representable in double. */
static double mk_unif(uint64_t *s) { return (double)(mk_splitmix(s) >> 11) * 0x1.0p-52 - 1.0; }

/* Draw n (0-based) of the stream whose state is s0: splitmix's state only
 * advances by a constant, so any draw is reachable directly. */
static double mk_unif_at(uint64_t s0, uint64_t n)
{
    uint64_t s = s0 + n * 0x9e3779b97f4a7c15ull;
    return mk_unif(&s);
}

/* ---- the peaky head ----
 *
 * A random model's logits are near-ties everywhere: its greedy top-1/top-2
 * margins along a 32-token run go down to one bf16 ulp, so a one-ulp
 * rounding difference (fp32 summation order in a GEMM) flips a greedy token
 * and the golden tests' exact-greedy rule becomes a coin toss. A trained
 * model is peaky; so is this one: lm_head row next(v) holds, besides its
 * random part, MK_HEAD_PEAK/H times token v's unit-variance embedding,
 * where next() is one random cycle through the whole vocabulary (no fixed
 * points, no short loops). The embedding (std MK_EMBED_STD, about twice
 * what the layers add) carried by the residual stream thus predicts
 * next(current token) with a logit of about 0.85 * MK_HEAD_PEAK, above the
 * best random competitor (about 3 * MK_HEAD_RANDOM) by ~1 (tens of bf16
 * ulps), while each attention and MLP/MoE sublayer, added to the same
 * residual stream, still moves logits by up to 0.18-0.65 (mean 0.05-0.14).
 * The peak stays below 4, where a bf16 ulp is 1/64 and a one-ulp difference
 * is within the golden tolerance (2e-2). Measured on the tiny presets with
 * moeserve: tests/fixtures/golden/README.md. */
#define MK_EMBED_STD 2.5    /* embedding std: the residual stream stays mostly the current token */
#define MK_HEAD_PEAK 3.0     /* aligned part of lm_head rows, as a logit */
#define MK_HEAD_RANDOM 0.35  /* random part of lm_head rows, as a logit std (times 1/sqrt(H)) */

/* ---- fp8 e4m3 ---- */

static float g_fp8_pos[127]; /* value of codes 0..126, increasing */

static void mk_fp8_init(void)
{
    for (int c = 0; c < 127; c++) g_fp8_pos[c] = fp8e4m3_to_f32((fp8e4m3_t)c);
}

/* Round to nearest e4m3, ties to even code; |x| < 448 by construction. */
static fp8e4m3_t mk_fp8_round(float x)
{
    uint8_t sign = x < 0 ? 0x80 : 0;
    float a = fabsf(x);
    if (a >= 448.0f) return sign | 0x7e;
    int lo = 0, hi = 126; /* largest c with pos[c] <= a */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (g_fp8_pos[mid] <= a) lo = mid;
        else hi = mid - 1;
    }
    int c = lo;
    if (c < 126) {
        float dl = a - g_fp8_pos[c], dh = g_fp8_pos[c + 1] - a;
        if (dh < dl || (dh == dl && (c & 1))) c++;
    }
    return sign | (uint8_t)c;
}

/* ---- the tensor list (HF names, HF order within a layer) ---- */

static ms_status_t mk_add(mk_list_t *l, int kind, int64_t rows, int64_t cols, double std, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static ms_status_t mk_add(mk_list_t *l, int kind, int64_t rows, int64_t cols, double std, const char *fmt, ...)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        mk_tensor_t *p = realloc(l->t, cap * sizeof *p);
        if (!p) return MS_ERR(MS_ERR_NOMEM, "mkmodel: out of memory");
        l->t = p;
        l->cap = cap;
    }
    mk_tensor_t *t = &l->t[l->n++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    snprintf(t->stream, sizeof t->stream, "%s", t->name);
    t->kind = kind;
    t->rows = rows;
    t->cols = cols;
    t->std = std;
    return MS_OK;
}

static double mk_inv_sqrt(int64_t n) { return 1.0 / sqrt((double)n); }

static ms_status_t mk_add_mlp(mk_list_t *l, const char *p, int64_t hidden, int64_t inter)
{
    MS_TRY(mk_add(l, MK_LINEAR, inter, hidden, mk_inv_sqrt(hidden), "%sgate_proj.weight", p));
    MS_TRY(mk_add(l, MK_LINEAR, inter, hidden, mk_inv_sqrt(hidden), "%sup_proj.weight", p));
    MS_TRY(mk_add(l, MK_LINEAR, hidden, inter, mk_inv_sqrt(inter), "%sdown_proj.weight", p));
    return MS_OK;
}

static ms_status_t mk_add_layer(mk_list_t *l, const mcfg_t *c, int li, bool mtp)
{
    const int64_t H = c->hidden_size, V = c->vocab_size, nh = c->num_attention_heads;
    const int64_t qk = mcfg_qk_head_dim(c), kvr = c->kv_lora_rank, qr = c->q_lora_rank;
    char p[96];
    if (mtp) {
        /* The module drafts well (see "the peaky head"): its embedding and head are copies of the main
         * model's (as in DeepSeek's checkpoints), and eh_proj carries the embedding of token i+1 into the
         * residual stream at the main model's scale, so the head predicts next(t_{i+1}) = t_{i+2} wherever
         * the main model's own prediction is next(current token). The hidden half is small and random. */
        MS_TRY(mk_add(l, MK_MATRIX, V, H, MK_EMBED_STD, "model.layers.%d.embed_tokens.weight", li));
        snprintf(l->t[l->n - 1].stream, sizeof l->t[0].stream, "model.embed_tokens.weight");
        MS_TRY(mk_add(l, MK_NORM, H, 0, 0, "model.layers.%d.enorm.weight", li));
        MS_TRY(mk_add(l, MK_NORM, H, 0, 0, "model.layers.%d.hnorm.weight", li));
        MS_TRY(mk_add(l, MK_EH, H, 2 * H, 0.25 * mk_inv_sqrt(H), "model.layers.%d.eh_proj.weight", li));
    }
    MS_TRY(mk_add(l, MK_NORM, H, 0, 0, "model.layers.%d.input_layernorm.weight", li));
    snprintf(p, sizeof p, "model.layers.%d.self_attn.", li);
    if (qr > 0) {
        MS_TRY(mk_add(l, MK_LINEAR, qr, H, mk_inv_sqrt(H), "%sq_a_proj.weight", p));
        MS_TRY(mk_add(l, MK_NORM, qr, 0, 0, "%sq_a_layernorm.weight", p));
        MS_TRY(mk_add(l, MK_LINEAR, nh * qk, qr, mk_inv_sqrt(qr), "%sq_b_proj.weight", p));
    } else {
        MS_TRY(mk_add(l, MK_LINEAR, nh * qk, H, mk_inv_sqrt(H), "%sq_proj.weight", p));
    }
    MS_TRY(mk_add(l, MK_LINEAR, kvr + c->qk_rope_head_dim, H, mk_inv_sqrt(H), "%skv_a_proj_with_mqa.weight", p));
    MS_TRY(mk_add(l, MK_NORM, kvr, 0, 0, "%skv_a_layernorm.weight", p));
    MS_TRY(mk_add(l, MK_LINEAR, nh * (c->qk_nope_head_dim + c->v_head_dim), kvr, mk_inv_sqrt(kvr), "%skv_b_proj.weight", p));
    MS_TRY(mk_add(l, MK_LINEAR, H, nh * c->v_head_dim, mk_inv_sqrt(nh * c->v_head_dim), "%so_proj.weight", p));
    MS_TRY(mk_add(l, MK_NORM, H, 0, 0, "model.layers.%d.post_attention_layernorm.weight", li));
    if (mcfg_layer_is_moe(c, li)) {
        MS_TRY(mk_add(l, MK_MATRIX, c->n_routed_experts, H, mk_inv_sqrt(H), "model.layers.%d.mlp.gate.weight", li));
        MS_TRY(mk_add(l, MK_BIAS, c->n_routed_experts, 0, 0.05, "model.layers.%d.mlp.gate.e_score_correction_bias", li));
        for (int e = 0; e < c->n_routed_experts; e++) {
            snprintf(p, sizeof p, "model.layers.%d.mlp.experts.%d.", li, e);
            MS_TRY(mk_add_mlp(l, p, H, c->moe_intermediate_size));
        }
        if (c->n_shared_experts > 0) {
            snprintf(p, sizeof p, "model.layers.%d.mlp.shared_experts.", li);
            MS_TRY(mk_add_mlp(l, p, H, (int64_t)c->moe_intermediate_size * c->n_shared_experts));
        }
    } else {
        snprintf(p, sizeof p, "model.layers.%d.mlp.", li);
        MS_TRY(mk_add_mlp(l, p, H, c->intermediate_size));
    }
    if (mtp) {
        MS_TRY(mk_add(l, MK_NORM, H, 0, 0, "model.layers.%d.shared_head.norm.weight", li));
        MS_TRY(mk_add(l, MK_HEAD, V, H, MK_HEAD_RANDOM * mk_inv_sqrt(H), "model.layers.%d.shared_head.head.weight", li));
        snprintf(l->t[l->n - 1].stream, sizeof l->t[0].stream, "lm_head.weight");
    }
    return MS_OK;
}

static ms_status_t mk_build_list(const mcfg_t *c, const mk_opts_t *o, mk_list_t *l)
{
    const int64_t H = c->hidden_size, V = c->vocab_size;
    MS_TRY(mk_add(l, MK_MATRIX, V, H, MK_EMBED_STD, "model.embed_tokens.weight"));
    for (int i = 0; i < c->num_hidden_layers; i++) MS_TRY(mk_add_layer(l, c, i, false));
    if (o->mtp)
        for (int i = 0; i < (c->num_nextn_predict_layers > 0 ? c->num_nextn_predict_layers : 1); i++)
            MS_TRY(mk_add_layer(l, c, c->num_hidden_layers + i, true));
    MS_TRY(mk_add(l, MK_NORM, H, 0, 0, "model.norm.weight"));
    MS_TRY(mk_add(l, MK_HEAD, V, H, MK_HEAD_RANDOM * mk_inv_sqrt(H), "lm_head.weight"));
    return MS_OK;
}

/* ---- values ---- */

/* Block scale (bi, bj) of a quantized linear: codes up to 400 map to
 * sqrt(3) * std times a random factor in [0.75, 1.25), rounded down to 4
 * significant bits (k/8 * 2^e, k in 8..15), so an FP8 linear has about the
 * std of its BF16 counterpart and the FP8 model behaves like the BF16 one. */
static float mk_scale_at(const mk_tensor_t *t, uint64_t *s)
{
    int e;
    double m = frexp(t->std * 1.7320508075688772 / 400.0 * (1.0 + 0.25 * mk_unif(s)), &e); /* m in [0.5, 1) */
    int k = (int)floor(m * 16.0);                                                             /* 8..15 */
    return (float)ldexp(k / 8.0, e - 1);
}

/* Codes are uniform in [-400, 400) before rounding, so every e4m3 binade
 * (subnormals included) appears. */
static fp8e4m3_t mk_code_next(uint64_t *s) { return mk_fp8_round((float)(400.0 * mk_unif(s))); }

static float mk_plain_next(const mk_tensor_t *t, uint64_t *s)
{
    double u = mk_unif(s);
    switch (t->kind) {
    case MK_NORM: return (float)(1.0 + 0.25 * u);
    case MK_BIAS: return bf16_round((float)(t->std * u));
    default: return (float)(t->std * 1.7320508075688772 * u);
    }
}

typedef struct {
    FILE *f;
    const char *path;
    uint8_t buf[1 << 16];
    size_t used;
} mk_sink_t;

static ms_status_t mk_put(mk_sink_t *k, const void *p, size_t n)
{
    if (k->used + n > sizeof k->buf) {
        if (fwrite(k->buf, 1, k->used, k->f) != k->used) return MS_ERR(MS_ERR_IO, "%s: write failed: %s", k->path, strerror(errno));
        k->used = 0;
    }
    memcpy(k->buf + k->used, p, n);
    k->used += n;
    return MS_OK;
}

static ms_status_t mk_flush(mk_sink_t *k)
{
    if (k->used && fwrite(k->buf, 1, k->used, k->f) != k->used)
        return MS_ERR(MS_ERR_IO, "%s: write failed: %s", k->path, strerror(errno));
    k->used = 0;
    return MS_OK;
}

static void mk_put_le16(uint8_t *b, uint16_t v) { b[0] = (uint8_t)v; b[1] = (uint8_t)(v >> 8); }
static void mk_put_le32(uint8_t *b, uint32_t v) { for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i)); }

/* lm_head (see "the peaky head"): row u = random part + MK_HEAD_PEAK/H times
 * the unit-variance embedding of prev(u), prev = inverse of one random
 * cycle over the vocabulary (Sattolo's shuffle). The embedding values are
 * recomputed from their own stream, exactly as written (bf16). */
static ms_status_t mk_emit_head(mk_sink_t *k, const mk_opts_t *o, const mk_tensor_t *t)
{
    const int64_t V = t->rows, H = t->cols;
    int64_t *cyc = malloc((size_t)V * sizeof *cyc), *prev = malloc((size_t)V * sizeof *prev);
    double *emb = malloc((size_t)H * sizeof *emb), *rnd = malloc((size_t)H * sizeof *rnd);
    ms_status_t st = MS_OK;
    if (!cyc || !prev || !emb || !rnd) {
        st = MS_ERR(MS_ERR_NOMEM, "mkmodel: out of memory");
        goto out;
    }
    uint64_t ps = mk_stream(o->seed, t->stream, "#next");
    for (int64_t i = 0; i < V; i++) cyc[i] = i;
    for (int64_t i = V - 1; i > 0; i--) { /* j < i (not <= i): one cycle through all V */
        int64_t j = (int64_t)(mk_splitmix(&ps) % (uint64_t)i), x = cyc[i];
        cyc[i] = cyc[j];
        cyc[j] = x;
    }
    for (int64_t v = 0; v < V; v++) prev[cyc[v]] = v; /* next(v) = cyc[v] */
    const uint64_t es = mk_stream(o->seed, "model.embed_tokens.weight", "");
    const double e_amp = MK_EMBED_STD * 1.7320508075688772, peak = MK_HEAD_PEAK / ((double)H * MK_EMBED_STD);
    const double r_amp = t->std * 1.7320508075688772;
    uint64_t vs = mk_stream(o->seed, t->stream, "");
    for (int64_t u = 0; u < V && st == MS_OK; u++) {
        /* The random part is made orthogonal to the aligned embedding, so the
         * predicted token's logit does not drift with it. fma() everywhere:
         * exactly rounded, so no compiler's contraction changes a byte. */
        double dot = 0, ee = 0;
        for (int64_t j = 0; j < H; j++) {
            emb[j] = bf16_round((float)(e_amp * mk_unif_at(es, (uint64_t)(prev[u] * H + j))));
            rnd[j] = r_amp * mk_unif(&vs);
            dot = fma(rnd[j], emb[j], dot);
            ee = fma(emb[j], emb[j], ee);
        }
        const double c = -dot / ee;
        for (int64_t j = 0; j < H && st == MS_OK; j++) {
            uint8_t b[2];
            mk_put_le16(b, f32_to_bf16((float)fma(peak, emb[j], fma(c, emb[j], rnd[j]))));
            st = mk_put(k, b, 2);
        }
    }
out:
    free(cyc);
    free(prev);
    free(emb);
    free(rnd);
    return st;
}

static ms_status_t mk_emit(mk_sink_t *k, const mk_opts_t *o, const mk_tensor_t *t, const mk_entry_t *e, mk_out_t mode)
{
    if (t->kind == MK_HEAD) return mk_emit_head(k, o, t);
    uint64_t vs = mk_stream(o->seed, t->stream, "");
    if (t->kind == MK_EH) {
        for (int64_t r = 0; r < t->rows; r++)
            for (int64_t c = 0; c < t->cols; c++) {
                float v = (float)(t->std * 1.7320508075688772 * mk_unif(&vs)) + (c == r ? (float)MK_EMBED_STD : 0.0f);
                uint8_t b[2];
                mk_put_le16(b, f32_to_bf16(v));
                MS_TRY(mk_put(k, b, 2));
            }
        return MS_OK;
    }
    bool quant = t->kind == MK_LINEAR && mode != MK_OUT_BF16;
    if (!quant) {
        int64_t n = t->rows * (t->cols ? t->cols : 1);
        for (int64_t i = 0; i < n; i++) {
            float v = mk_plain_next(t, &vs);
            if (t->kind == MK_BIAS && strstr(t->name, "e_score_correction_bias") && i < 64 &&
                (o->hot_experts >> i & 1))
                v = bf16_round(v + MK_HOT_BIAS);
            uint8_t b[4];
            if (e->dtype == MS_DT_F32) {
                uint32_t u;
                memcpy(&u, &v, 4);
                mk_put_le32(b, u);
                MS_TRY(mk_put(k, b, 4));
            } else {
                mk_put_le16(b, f32_to_bf16(v));
                MS_TRY(mk_put(k, b, 2));
            }
        }
        return MS_OK;
    }
    /* Quantized linear: scales first (their own stream), then codes. */
    int64_t br = (t->rows + 127) / 128, bc = (t->cols + 127) / 128;
    float *sc = malloc((size_t)(br * bc) * sizeof *sc);
    if (!sc) return MS_ERR(MS_ERR_NOMEM, "mkmodel: out of memory");
    uint64_t ss = mk_stream(o->seed, t->name, "#scale_inv");
    for (int64_t i = 0; i < br * bc; i++) sc[i] = mk_scale_at(t, &ss);
    ms_status_t st = MS_OK;
    if (mode == MK_OUT_FP8 && e->scale) {
        for (int64_t i = 0; i < br * bc && st == MS_OK; i++) {
            uint8_t b[4];
            uint32_t u;
            memcpy(&u, &sc[i], 4);
            mk_put_le32(b, u);
            st = mk_put(k, b, 4);
        }
    } else {
        for (int64_t r = 0; r < t->rows && st == MS_OK; r++)
            for (int64_t c = 0; c < t->cols && st == MS_OK; c++) {
                fp8e4m3_t code = mk_code_next(&vs);
                if (mode == MK_OUT_FP8) {
                    st = mk_put(k, &code, 1);
                } else {
                    /* Exact: 4 significant bits times 4 significant bits. */
                    float w = fp8e4m3_to_f32(code) * sc[(r / 128) * bc + c / 128];
                    uint8_t b[2];
                    mk_put_le16(b, f32_to_bf16(w));
                    st = mk_put(k, b, 2);
                }
            }
    }
    free(sc);
    return st;
}

/* ---- files ---- */

static ms_status_t mk_entries(const mk_list_t *l, const mk_opts_t *o, mk_out_t mode, mk_entry_t **out, size_t *n_out,
                              int *n_shards)
{
    mk_entry_t *es = calloc(2 * l->n, sizeof *es);
    if (!es) return MS_ERR(MS_ERR_NOMEM, "mkmodel: out of memory");
    size_t n = 0;
    int shard = 0;
    uint64_t in_shard = 0;
    for (size_t i = 0; i < l->n; i++) {
        const mk_tensor_t *t = &l->t[i];
        bool quant = t->kind == MK_LINEAR && mode == MK_OUT_FP8;
        for (int part = 0; part < (quant ? 2 : 1); part++) {
            mk_entry_t *e = &es[n++];
            e->t = (int)i;
            e->scale = part == 1;
            e->ndim = t->cols ? 2 : 1;
            e->shape[0] = t->rows;
            e->shape[1] = t->cols;
            if (e->scale) {
                e->dtype = MS_DT_F32;
                e->shape[0] = (t->rows + 127) / 128;
                e->shape[1] = (t->cols + 127) / 128;
            } else if (quant) {
                e->dtype = MS_DT_F8E4M3;
            } else {
                e->dtype = t->kind == MK_BIAS ? MS_DT_F32 : MS_DT_BF16;
            }
            e->nbytes = (uint64_t)e->shape[0] * (uint64_t)(e->ndim == 2 ? e->shape[1] : 1) * ms_dtype_size(e->dtype);
            /* A weight and its scale stay together in one shard. */
            if (o->shard_bytes && in_shard > 0 && !e->scale && in_shard + e->nbytes > o->shard_bytes) {
                shard++;
                in_shard = 0;
            }
            e->shard = shard;
            in_shard += e->nbytes;
        }
    }
    *out = es;
    *n_out = n;
    *n_shards = shard + 1;
    return MS_OK;
}

static void mk_entry_name(const mk_list_t *l, const mk_entry_t *e, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s%s", l->t[e->t].name, e->scale ? "_scale_inv" : "");
}

static ms_status_t mk_write_shard(const char *path, const mk_list_t *l, const mk_opts_t *o, const mk_entry_t *es,
                                  size_t n, int shard, mk_out_t mode)
{
    ms_status_t st = MS_OK;
    json_t *hdr = json_object(), *meta = json_object();
    json_object_set_new(meta, "format", json_string("pt"));
    json_object_set_new(hdr, "__metadata__", meta);
    uint64_t off = 0;
    char name[160];
    for (size_t i = 0; i < n; i++) {
        if (es[i].shard != shard) continue;
        json_t *shape = json_array();
        for (int d = 0; d < es[i].ndim; d++) json_array_append_new(shape, json_integer(es[i].shape[d]));
        json_t *ent = json_object();
        json_object_set_new(ent, "dtype", json_string(ms_dtype_name(es[i].dtype)));
        json_object_set_new(ent, "shape", shape);
        json_object_set_new(ent, "data_offsets", json_pack("[II]", (json_int_t)off, (json_int_t)(off + es[i].nbytes)));
        mk_entry_name(l, &es[i], name, sizeof name);
        json_object_set_new(hdr, name, ent);
        off += es[i].nbytes;
    }
    char *text = json_dumps(hdr, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(hdr);
    if (!text) return MS_ERR(MS_ERR_NOMEM, "mkmodel: out of memory");
    /* safetensors pads the header with spaces so the data starts 8-aligned. */
    size_t hlen = strlen(text), padded = (hlen + 7) / 8 * 8;

    mk_sink_t *k = calloc(1, sizeof *k);
    FILE *f = fopen(path, "wb");
    if (!k || !f) {
        st = k ? MS_ERR(MS_ERR_IO, "%s: cannot create: %s", path, strerror(errno)) : MS_ERR(MS_ERR_NOMEM, "mkmodel: out of memory");
        goto out;
    }
    k->f = f;
    k->path = path;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    MS_TRY_GOTO(st, mk_put(k, len8, 8), out);
    MS_TRY_GOTO(st, mk_flush(k), out);
    if (fwrite(text, 1, hlen, f) != hlen) {
        st = MS_ERR(MS_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        goto out;
    }
    for (size_t i = hlen; i < padded; i++) MS_TRY_GOTO(st, mk_put(k, " ", 1), out);
    for (size_t i = 0; i < n; i++)
        if (es[i].shard == shard) MS_TRY_GOTO(st, mk_emit(k, o, &l->t[es[i].t], &es[i], mode), out);
    MS_TRY_GOTO(st, mk_flush(k), out);
out:
    if (f && fclose(f) != 0 && st == MS_OK) st = MS_ERR(MS_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    free(k);
    free(text);
    return st;
}

static ms_status_t mk_write_index(const char *dir, const mk_list_t *l, const mk_entry_t *es, size_t n, int n_shards)
{
    json_t *root = json_object(), *meta = json_object(), *wm = json_object();
    uint64_t total = 0;
    char name[160], file[64];
    for (size_t i = 0; i < n; i++) {
        total += es[i].nbytes;
        mk_entry_name(l, &es[i], name, sizeof name);
        snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", es[i].shard + 1, n_shards);
        json_object_set_new(wm, name, json_string(file));
    }
    json_object_set_new(meta, "total_size", json_integer((json_int_t)total));
    json_object_set_new(root, "metadata", meta);
    json_object_set_new(root, "weight_map", wm);
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    /* weight_map sorted by name, as transformers writes it. */
    int rc = json_dump_file(root, path, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(root);
    if (rc != 0) return MS_ERR(MS_ERR_IO, "%s: cannot write", path);
    return MS_OK;
}

ms_status_t mk_write_weights(const char *dir, const mcfg_t *cfg, const mk_opts_t *opts, mk_out_t mode)
{
    mk_fp8_init();
    mk_list_t l = {0};
    mk_entry_t *es = NULL;
    size_t n = 0;
    int n_shards = 0;
    ms_status_t st;
    MS_TRY_GOTO(st, mk_build_list(cfg, opts, &l), out);
    MS_TRY_GOTO(st, mk_entries(&l, opts, mode, &es, &n, &n_shards), out);
    char path[4096];
    for (int s = 0; s < n_shards; s++) {
        if (n_shards == 1) snprintf(path, sizeof path, "%s/model.safetensors", dir);
        else snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", dir, s + 1, n_shards);
        MS_TRY_GOTO(st, mk_write_shard(path, &l, opts, es, n, s, mode), out);
    }
    if (n_shards > 1) MS_TRY_GOTO(st, mk_write_index(dir, &l, es, n, n_shards), out);
out:
    free(es);
    free(l.t);
    return st;
}
