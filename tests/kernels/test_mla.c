/* test_mla.c — the attention ops over a paged latent cache:
 *  - kv_store then kv_gather round-trips every sequence's latents exactly
 *    through a shuffled block table (block size 4);
 *  - mla_naive against a double reference (explicit per-head K = [k_nope;kpe],
 *    causal softmax, P·V, with transformers' eager bf16 roundings of the
 *    scores, scaled scores and probabilities) for a batch mixing a prefill
 *    (pos0 0), a chunked prefill continuing at pos0 7 and a decode at pos0 12;
 *  - mla_absorbed against a double reference that materializes k_nope and v
 *    from kv_b (bf16 and fp8 kv_b);
 *  - naive (kv_b via gemm) and absorbed agree (they differ only by the bf16
 *    rounding of k_nope/v).
 * Tolerance vs double: absorbed |got-ref| <= |ref|/256 + 1e-3·max|v| (output
 * bf16 rounding plus fp32 accumulation); naive |ref|/128 + 1e-2·max|v| (a
 * score may round the other way where fp32 and double straddle a bf16
 * boundary). naive (eager roundings) vs absorbed (fp32): 5e-2·max|v|.
 * Dims: DeepSeek-V3 per head (dn 128, dr 64, dv 128, d_c 512; 2 heads, heads
 * are independent) and a tiny geometry (4 heads, 16/8/16, d_c 32). */
#include "kref.h"

typedef struct {
    int H, dn, dr, dv, dc;
} geo_t;

static const int BS = 4, NBLK = 24;
static const kern_attn_seq_t SEQS[3] = {
    {.q_off = 0, .n_q = 5, .pos0 = 0},
    {.q_off = 5, .n_q = 3, .pos0 = 7},
    {.q_off = 8, .n_q = 1, .pos0 = 12},
};

/* double reference attention for one (token, head) given K rows and V rows */
/* eager = 1: round scores, scaled scores and probabilities to bf16 as transformers' eager attention */
static void ref_attend(const double *q, const double *K, const double *V, int nk, int dqk, int dv, double scale,
                       int eager, double *out)
{
    double *p = malloc(sizeof(double) * nk), mx = -INFINITY, sum = 0;
    for (int j = 0; j < nk; j++) {
        double s = 0;
        for (int d = 0; d < dqk; d++) s += q[d] * K[(long)j * dqk + d];
        p[j] = eager ? bf16_round(bf16_round((float)s) * (float)scale) : s * scale;
        if (p[j] > mx) mx = p[j];
    }
    for (int j = 0; j < nk; j++) sum += (p[j] = exp(p[j] - mx));
    for (int j = 0; j < nk; j++) p[j] = eager ? bf16_round((float)(p[j] / sum)) : p[j] / sum;
    for (int d = 0; d < dv; d++) {
        double o = 0;
        for (int j = 0; j < nk; j++) o += p[j] * V[(long)j * dv + d];
        out[d] = o;
    }
    free(p);
}

static void run(geo_t g, ms_dtype_t kvb_dt)
{
    const int H = g.H, dn = g.dn, dr = g.dr, dv = g.dv, dc = g.dc, rw = dc + dr, dqk = dn + dr;
    const double scale = 0.13523378;
    kern_attn_seq_t seqs[3];
    memcpy(seqs, SEQS, sizeof seqs);
    int T = 0, S = 0, nb = 0;
    int32_t bt[3 * 8];
    int perm[64];
    for (int i = 0; i < NBLK; i++) perm[i] = i;
    for (int i = NBLK - 1; i > 0; i--) { /* shuffled physical blocks */
        int j = (int)(kr_uniform() * (i + 1)), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    for (int s = 0; s < 3; s++) {
        int len = seqs[s].pos0 + seqs[s].n_q, need = (len + BS - 1) / BS;
        seqs[s].kv_off = S;
        seqs[s].blk_off = nb;
        for (int b = 0; b < need; b++) bt[nb + b] = perm[nb + b];
        nb += need;
        S += len;
        T += seqs[s].n_q;
    }
    /* latents per gathered row (what the cache must hold) and their slots */
    bf16_t *lat = kr_bf16((int64_t)S * rw, 1.0), *cache = calloc((size_t)NBLK * BS * rw, 2);
    int32_t *slots = malloc(sizeof(int32_t) * S);
    for (int s = 0; s < 3; s++)
        for (int p = 0; p < seqs[s].pos0 + seqs[s].n_q; p++)
            slots[seqs[s].kv_off + p] = bt[seqs[s].blk_off + p / BS] * BS + p % BS;
    T_CHECK(kern_cpu_ops.kv_store(NULL, cache, lat, rw, lat + dc, rw, slots, S, dc, dr) == MS_OK);
    bf16_t *gat = calloc((size_t)S * rw, 2);
    T_CHECK(kern_cpu_ops.kv_gather(NULL, cache, BS, rw, seqs, 3, bt, gat) == MS_OK);
    T_CHECK(memcmp(gat, lat, (size_t)S * rw * 2) == 0);

    bf16_t *q = kr_bf16((int64_t)T * H * dqk, 1.0), *out = calloc((size_t)T * H * dv, 2);
    double *K = malloc(sizeof(double) * S * dqk), *V = malloc(sizeof(double) * S * dv), qd[1024], o[1024];

    /* naive with arbitrary kv rows */
    bf16_t *kv = kr_bf16((int64_t)S * H * (dn + dv), 1.0);
    double kvmax = 0;
    for (long i = 0; i < (long)S * H * (dn + dv); i++) kvmax = fmax(kvmax, fabs(kr_b(kv[i])));
    T_CHECK(kern_cpu_ops.mla_naive(NULL, q, kv, gat + dc, rw, seqs, 3, H, dn, dr, dv, (float)scale, out) == MS_OK);
    kr_err_t e = {.what = "mla_naive"};
    for (int s = 0; s < 3; s++)
        for (int h = 0; h < H; h++) {
            int len = seqs[s].pos0 + seqs[s].n_q;
            for (int j = 0; j < len; j++) {
                const bf16_t *row = kv + (long)(seqs[s].kv_off + j) * H * (dn + dv) + (long)h * (dn + dv);
                for (int d = 0; d < dn; d++) K[(long)j * dqk + d] = kr_b(row[d]);
                for (int d = 0; d < dr; d++) K[(long)j * dqk + dn + d] = kr_b(gat[(long)(seqs[s].kv_off + j) * rw + dc + d]);
                for (int d = 0; d < dv; d++) V[(long)j * dv + d] = kr_b(row[dn + d]);
            }
            for (int i = 0; i < seqs[s].n_q; i++) {
                int t = seqs[s].q_off + i;
                for (int d = 0; d < dqk; d++) qd[d] = kr_b(q[(long)t * H * dqk + (long)h * dqk + d]);
                ref_attend(qd, K, V, seqs[s].pos0 + i + 1, dqk, dv, scale, 1, o);
                for (int d = 0; d < dv; d++)
                    kr_err_add(&e, kr_b(out[(long)t * H * dv + (long)h * dv + d]), o[d], fabs(o[d]) / 128 + 1e-2 * kvmax);
            }
        }
    KR_ERR_CHECK(e);

    /* absorbed with kv_b weights */
    int rows = H * (dn + dv), sbr = kern_fp8_blocks(rows), sbc = kern_fp8_blocks(dc);
    double *Wd = malloc(sizeof(double) * rows * dc);
    void *wdat;
    float *wsc = NULL;
    if (kvb_dt == MS_DT_BF16) {
        bf16_t *w = kr_bf16((int64_t)rows * dc, 1.0 / sqrt(dc));
        for (long i = 0; i < (long)rows * dc; i++) Wd[i] = kr_b(w[i]);
        wdat = w;
    } else {
        uint8_t *w = malloc((size_t)rows * dc);
        wsc = malloc(sizeof(float) * sbr * sbc);
        for (int i = 0; i < sbr * sbc; i++) wsc[i] = (float)(0.002 * (1 + kr_uniform()));
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < dc; c++) {
                w[(long)r * dc + c] = kr_fp8();
                Wd[(long)r * dc + c] = bf16_round(fp8e4m3_to_f32(w[(long)r * dc + c]) * wsc[(r / 128) * sbc + c / 128]);
            }
        wdat = w;
    }
    kern_mat_t kvb = {.data = wdat, .scale_inv = wsc, .dtype = kvb_dt, .rows = rows, .cols = dc};
    bf16_t *out2 = calloc((size_t)T * H * dv, 2);
    T_CHECK(kern_cpu_ops.mla_absorbed(NULL, q, cache, BS, bt, seqs, 3, &kvb, H, dn, dr, dv, dc, (float)scale, out2) ==
            MS_OK);
    kr_err_t e2 = {.what = kvb_dt == MS_DT_BF16 ? "mla_absorbed bf16 kv_b" : "mla_absorbed fp8 kv_b"};
    double vmax = 0;
    for (int s = 0; s < 3; s++)
        for (int h = 0; h < H; h++) {
            int len = seqs[s].pos0 + seqs[s].n_q;
            for (int j = 0; j < len; j++) {
                const bf16_t *l = lat + (long)(seqs[s].kv_off + j) * rw;
                for (int d = 0; d < dn + dv; d++) {
                    double acc = 0;
                    for (int c = 0; c < dc; c++) acc += Wd[((long)h * (dn + dv) + d) * dc + c] * kr_b(l[c]);
                    if (d < dn) K[(long)j * dqk + d] = acc;
                    else V[(long)j * dv + d - dn] = acc, vmax = fmax(vmax, fabs(acc));
                }
                for (int d = 0; d < dr; d++) K[(long)j * dqk + dn + d] = kr_b(l[dc + d]);
            }
            for (int i = 0; i < seqs[s].n_q; i++) {
                int t = seqs[s].q_off + i;
                for (int d = 0; d < dqk; d++) qd[d] = kr_b(q[(long)t * H * dqk + (long)h * dqk + d]);
                ref_attend(qd, K, V, seqs[s].pos0 + i + 1, dqk, dv, scale, 0, o);
                for (int d = 0; d < dv; d++)
                    kr_err_add(&e2, kr_b(out2[(long)t * H * dv + (long)h * dv + d]), o[d], fabs(o[d]) / 256 + 1e-3 * vmax);
            }
        }
    KR_ERR_CHECK(e2);

    /* naive path fed by kv_b through gemm (as the engine does) agrees with absorbed */
    bf16_t *kv2 = calloc((size_t)S * rows, 2);
    T_CHECK(kern_cpu_ops.gemm(NULL, gat, MS_DT_BF16, rw, &kvb, kv2, MS_DT_BF16, rows, S) == MS_OK);
    T_CHECK(kern_cpu_ops.mla_naive(NULL, q, kv2, gat + dc, rw, seqs, 3, H, dn, dr, dv, (float)scale, out) == MS_OK);
    kr_err_t e3 = {.what = "naive vs absorbed"};
    for (long i = 0; i < (long)T * H * dv; i++) kr_err_add(&e3, kr_b(out[i]), kr_b(out2[i]), 5e-2 * vmax);
    KR_ERR_CHECK(e3);
    fprintf(stderr, "H=%d dn=%d dr=%d dv=%d dc=%d kv_b %s: naive %.3f, absorbed %.3f, cross %.3f x tol\n", H, dn, dr,
            dv, dc, ms_dtype_name(kvb_dt), e.worst, e2.worst, e3.worst);
    free(lat), free(cache), free(slots), free(gat), free(q), free(out), free(out2), free(K), free(V), free(kv);
    free(Wd), free(wdat), free(wsc), free(kv2);
}

int main(void)
{
    kr_seed(4);
    run((geo_t){2, 128, 64, 128, 512}, MS_DT_BF16);
    run((geo_t){2, 128, 64, 128, 512}, MS_DT_F8E4M3);
    run((geo_t){4, 16, 8, 16, 32}, MS_DT_BF16);
    return t_done();
}
