/* test_moe.c — the MoE ops:
 *  - moe_route against a double reference of the noaux_tc router (sigmoid,
 *    bias for selection, top-2 group scores, topk_group groups, 0.0 mask,
 *    top_k, normalized un-biased weights times the scaling factor) on
 *    DeepSeek-V3's geometry (256 experts, 8 groups, 4 kept, top 8, 2.5) and
 *    the tiny one (8 experts, 2 groups, 1 kept, top 2). Tokens whose
 *    reference selection has a margin below 1e-5 (near ties that fp32 may
 *    order differently) are skipped; at least 90% must be checked. Weights:
 *    |w - ref| <= 1e-5·|ref|.
 *  - the 0.0 mask semantics exactly: with every c negative, experts of the
 *    masked groups (c := 0.0) win, lowest index first on ties.
 *  - moe_plan over a placement with replicas (18 slots for 12 experts): the
 *    replica rule (t + k) % n_rep, rank_in_slot = earlier pairs of the slot,
 *    counts, the load counter accumulating a host recount of idx, padding -1
 *    ignored, a bad expert id faulting (KERN_FAULT_SLOT) without failing.
 *  - moe_scatter: rows land at (slot - slot0)*cap + rank_in_slot, other
 *    ranks' pairs and rows past capacity get row -1 (the latter with
 *    KERN_FAULT_CAPACITY), counts clamp to cap, untouched rows stay.
 *  - moe_experts on slot records [n_local, cap, H] with device counts against
 *    a per-row double MLP (bf16 and fp8 records, tiny — partial fp8 blocks —
 *    and DeepSeek-V3 7168/2048 sizes): |y - ref| <= 2e-2·Σ|a_k·w_dk| +
 *    1e-3·|ref| (the op rounds gate, up, silu and their product to bf16);
 *    rows past a slot's count are never written; a count above cap faults.
 *  - moe_combine: double reference within 2^-8·|ref| + 1e-6·Σ|w·row| (one bf16
 *    rounding of an fp32 sum), and on a crafted case that the terms are summed
 *    in fp32 and rounded once (a bf16 running sum would lose them). */
#include "kref.h"

static int cmp_desc(const void *a, const void *b)
{
    double x = ((const double *)a)[0], y = ((const double *)b)[0];
    if (x != y) return x > y ? -1 : 1;
    return ((const double *)a)[1] < ((const double *)b)[1] ? -1 : 1;
}

static void test_route(int T, int E, int G, int TG, int K, double bias_shift)
{
    float *lg = kr_f32((int64_t)T * E, 2.0), *bias = kr_f32(E, 0.1);
    for (int e = 0; e < E; e++) bias[e] += (float)bias_shift;
    int32_t *idx = malloc(sizeof(int32_t) * T * K);
    float *w = malloc(sizeof(float) * T * K);
    T_CHECK(kern_cpu_ops.moe_route(NULL, lg, bias, T, E, G, TG, K, 1, 2.5f, idx, w) == MS_OK);
    int gs = E / G, checked = 0;
    kr_err_t e = {.what = "moe_route weights"};
    double (*c)[2] = malloc(sizeof(double[2]) * E), (*gsc)[2] = malloc(sizeof(double[2]) * G), *s = malloc(sizeof(double) * E);
    for (int t = 0; t < T; t++) {
        double margin = INFINITY;
        for (int x = 0; x < E; x++) {
            s[x] = 1 / (1 + exp(-(double)lg[(long)t * E + x]));
            c[x][0] = s[x] + bias[x], c[x][1] = x;
        }
        for (int g = 0; g < G; g++) {
            double v[512][2];
            memcpy(v, c + g * gs, sizeof(double[2]) * gs);
            qsort(v, gs, sizeof v[0], cmp_desc);
            gsc[g][0] = v[0][0] + v[1][0], gsc[g][1] = g;
            if (gs > 2) margin = fmin(margin, v[1][0] - v[2][0]);
        }
        qsort(gsc, G, sizeof gsc[0], cmp_desc);
        if (TG < G) margin = fmin(margin, gsc[TG - 1][0] - gsc[TG][0]);
        int keep[64] = {0};
        for (int j = 0; j < TG; j++) keep[(int)gsc[j][1]] = 1;
        for (int x = 0; x < E; x++)
            if (!keep[x / gs]) c[x][0] = 0.0;
        qsort(c, E, sizeof c[0], cmp_desc);
        margin = fmin(margin, c[K - 1][0] - c[K][0]);
        if (margin < 1e-5) continue;
        checked++;
        double sum = 0;
        for (int j = 0; j < K; j++) sum += s[(int)c[j][1]];
        for (int j = 0; j < K; j++) {
            int want = (int)c[j][1], found = -1;
            for (int k = 0; k < K; k++)
                if (idx[t * K + k] == want) found = k;
            T_CHECK_MSG(found >= 0, "token %d: expert %d not selected", t, want);
            if (found >= 0) kr_err_add(&e, w[t * K + found], s[want] / sum * 2.5, 1e-5 * s[want] / sum * 2.5);
        }
    }
    KR_ERR_CHECK(e);
    T_CHECK_MSG(checked >= T * 9 / 10, "only %d of %d tokens had a clear reference selection", checked, T);
    fprintf(stderr, "moe_route E=%d G=%d TG=%d K=%d bias%+.1f: %d/%d tokens checked\n", E, G, TG, K, bias_shift,
            checked, T);
    free(lg), free(bias), free(idx), free(w), free(c), free(gsc), free(s);
}

static void test_route_mask_zero(void)
{
    /* every c = sigmoid + bias < 0; group 1 (experts 4..7) has the larger scores and is kept,
     * so group 0's experts are masked to 0.0 > c and win; ties at 0.0 go to the lowest index. */
    float lg[8] = {-3, -3, -3, -3, 1, 2, 3, 4}, bias[8] = {-2, -2, -2, -2, -2, -2, -2, -2};
    int32_t idx[2];
    float w[2];
    T_CHECK(kern_cpu_ops.moe_route(NULL, lg, bias, 1, 8, 2, 1, 2, 1, 1.0f, idx, w) == MS_OK);
    T_CHECK(idx[0] == 0 && idx[1] == 1);
    T_NEAR(w[0], 0.5, 1e-6);
    T_CHECK(kern_cpu_ops.moe_route(NULL, lg, bias, 1, 8, 3, 1, 2, 1, 1.0f, idx, w) == MS_ERR_INVALID);
}

/* A placement of E experts on S slots: expert e at slot e, extra slots replicate experts 0.. (like placement.c's
 * default with ep 1); log2phy [E, 2]. */
static kern_moe_place_t make_place(int E, int S, int spr, int32_t *l2p, int32_t *nrep)
{
    for (int e = 0; e < E; e++) l2p[2 * e] = e, l2p[2 * e + 1] = -1, nrep[e] = 1;
    for (int s = E; s < S; s++) l2p[2 * (s - E) + 1] = s, nrep[s - E] = 2;
    return (kern_moe_place_t){.log2phy = l2p, .n_rep = nrep, .E = E, .max_rep = 2, .n_slots = S, .slots_per_rank = spr};
}

static void test_plan(void)
{
    enum { T = 9, K = 3, E = 12, S = 18, EP = 3 };
    int32_t idx[T * K], l2p[2 * E], nrep[E], sop[T * K], ris[T * K], cnt[S], seen[S];
    int64_t load[E], want[E];
    kern_moe_place_t pl = make_place(E, S, S / EP, l2p, nrep);
    for (int e = 0; e < E; e++) load[e] = want[e] = 100 + e; /* accumulates */
    for (int t = 0; t < T; t++)
        for (int k = 0; k < K; k++) idx[t * K + k] = (t * 5 + k * 7 + t * k) % E;
    idx[4] = -1; /* padding */
    for (int p = 0; p < T * K; p++)
        if (idx[p] >= 0) want[idx[p]]++;
    uint32_t fault = 0;
    kern_ctx_t cx = {.ops = &kern_cpu_ops, .fault = &fault};
    T_CHECK(kern_cpu_ops.moe_plan(&cx, idx, T, K, &pl, sop, ris, cnt, load) == MS_OK && fault == 0);
    int ok = 1, total = 0;
    memset(seen, 0, sizeof seen);
    for (int p = 0; p < T * K; p++) {
        if (idx[p] < 0) {
            ok &= sop[p] == -1;
            continue;
        }
        int e = idx[p], r = (p / K + p % K) % nrep[e];
        ok &= sop[p] == l2p[2 * e + r] && ris[p] == seen[sop[p]]++;
    }
    for (int s = 0; s < S; s++) ok &= cnt[s] == seen[s], total += cnt[s];
    T_CHECK(ok && total == T * K - 1);
    T_CHECK(!memcmp(load, want, sizeof load));
    /* replicas share the load of their expert */
    int both = 0;
    for (int e = 0; e < S - E; e++) both += cnt[e] > 0 && cnt[E + e] > 0;
    T_CHECK(both > 0);
    idx[0] = E; /* a data fault: flagged, the pair is padding, the call still succeeds */
    T_CHECK(kern_cpu_ops.moe_plan(&cx, idx, T, K, &pl, sop, ris, cnt, NULL) == MS_OK);
    T_CHECK(fault == KERN_FAULT_SLOT && sop[0] == -1);
}

static void test_scatter(void)
{
    enum { T = 40, K = 4, E = 8, S = 12, D = 24, CAP = 13 };
    int32_t idx[T * K], l2p[2 * E], nrep[E], sop[T * K], ris[T * K], cnt[S], row[T * K], rc[S];
    kern_moe_place_t pl = make_place(E, S, S / 2, l2p, nrep);
    for (int t = 0; t < T; t++)
        for (int k = 0; k < K; k++) idx[t * K + k] = (t + 2 * k) % E; /* distinct per token */
    T_CHECK(kern_cpu_ops.moe_plan(NULL, idx, T, K, &pl, sop, ris, cnt, NULL) == MS_OK);
    bf16_t *x = kr_bf16(T * D, 1.0), *recv = malloc(sizeof(bf16_t) * S * CAP * D);
    for (int i = 0; i < S * CAP * D; i++) recv[i] = f32_to_bf16(-7.0f);
    uint32_t fault = 0;
    kern_ctx_t cx = {.ops = &kern_cpu_ops, .fault = &fault};
    const int slot0 = S / 2, nl = S / 2; /* the second rank's half */
    T_CHECK(kern_cpu_ops.moe_scatter(&cx, x, T, K, D, sop, ris, cnt, slot0, nl, CAP, recv, rc, row) == MS_OK);
    int ok = 1, over = 0, placed = 0;
    for (int p = 0; p < T * K; p++) {
        int j = sop[p] - slot0;
        if (j < 0 || j >= nl) {
            ok &= row[p] == -1;
        } else if (ris[p] >= CAP) {
            ok &= row[p] == -1, over++;
        } else {
            ok &= row[p] == j * CAP + ris[p] && !memcmp(recv + (long)row[p] * D, x + (long)(p / K) * D, 2 * D);
            placed++;
        }
    }
    int want_placed = 0;
    for (int j = 0; j < nl; j++) {
        ok &= rc[j] == (cnt[slot0 + j] < CAP ? cnt[slot0 + j] : CAP);
        want_placed += rc[j];
        for (int r = rc[j]; r < CAP; r++) ok &= bf16_to_f32(recv[((long)j * CAP + r) * D]) == -7.0f;
    }
    T_CHECK(ok && placed == want_placed);
    T_CHECK(over > 0 && fault == KERN_FAULT_CAPACITY); /* the shape was chosen to overflow some slot */
    free(x), free(recv);
}

/* n slot records of dtype dt with random weights; ref[j] = the dequantized gate, up, down of slot j (double) */
static void *make_records(kern_moe_slots_t *w, int n, int H, int I, ms_dtype_t dt, double *ref[3])
{
    *w = kern_moe_slots_layout(dt, H, I);
    void *base = calloc((size_t)n, w->stride);
    w->base = base;
    for (int k = 0; k < 3; k++) ref[k] = malloc(sizeof(double) * (size_t)n * H * I);
    for (int j = 0; j < n; j++)
        for (int k = 0; k < 3; k++) {
            kern_mat_t m = kern_moe_slot_mat(w, j, k);
            const int rows = m.rows, cols = m.cols, sbc = kern_fp8_blocks(cols);
            const double sc = 1 / sqrt(cols);
            double *r = ref[k] + (size_t)j * H * I;
            if (dt == MS_DT_F8E4M3) {
                float *s = (float *)m.scale_inv;
                for (int i = 0; i < kern_fp8_blocks(rows) * sbc; i++) s[i] = (float)(sc / 50 * (1 + kr_uniform()));
            }
            for (long i = 0; i < (long)rows * cols; i++) {
                if (dt == MS_DT_BF16) {
                    bf16_t v = f32_to_bf16((float)(kr_normal() * sc));
                    ((bf16_t *)m.data)[i] = v, r[i] = kr_b(v);
                } else {
                    uint8_t q = kr_fp8();
                    ((uint8_t *)m.data)[i] = q;
                    r[i] = bf16_round(fp8e4m3_to_f32(q) * m.scale_inv[(i / cols / 128) * sbc + (i % cols) / 128]);
                }
            }
        }
    return base;
}

static void test_experts(int cap, int H, int I, int NL, ms_dtype_t dt)
{
    kern_moe_slots_t w;
    double *ref[3];
    void *base = make_records(&w, NL, H, I, dt, ref);
    bf16_t *x = kr_bf16((int64_t)NL * cap * H, 1.0), *y = malloc(sizeof(bf16_t) * (size_t)NL * cap * H);
    for (long i = 0; i < (long)NL * cap * H; i++) y[i] = f32_to_bf16(-9.0f);
    int32_t *cnt = malloc(sizeof(int32_t) * NL);
    for (int j = 0; j < NL; j++) cnt[j] = NL == 1 ? cap : (j * 5 + 2) % (cap + 1); /* 0 .. cap rows */
    size_t wsb = kern_moe_ws_bytes(cap, I);
    void *ws = malloc(wsb);
    uint32_t fault = 0;
    kern_ctx_t cx = {.ops = &kern_cpu_ops, .fault = &fault};
    T_CHECK(kern_cpu_ops.moe_experts(&cx, x, cnt, NL, cap, &w, y, ws, wsb) == MS_OK && fault == 0);
    T_CHECK(kern_cpu_ops.moe_experts(&cx, x, cnt, NL, cap, &w, y, ws, wsb - 64) == MS_ERR_INVALID);
    kr_err_t e = {.what = dt == MS_DT_BF16 ? "moe_experts bf16" : "moe_experts fp8"};
    double *a = malloc(sizeof(double) * I);
    int untouched = 1;
    for (int j = 0; j < NL; j++) {
        const double *gr = ref[0] + (size_t)j * H * I, *ur = ref[1] + (size_t)j * H * I, *dr = ref[2] + (size_t)j * H * I;
        for (int r = 0; r < cap; r++) {
            const long row = (long)j * cap + r;
            if (r >= cnt[j]) {
                for (int h = 0; h < H; h++) untouched &= bf16_to_f32(y[row * H + h]) == -9.0f;
                continue;
            }
            for (int i = 0; i < I; i++) {
                double gv = 0, uv = 0;
                for (int h = 0; h < H; h++) {
                    double xv = kr_b(x[row * H + h]);
                    gv += xv * gr[(long)i * H + h];
                    uv += xv * ur[(long)i * H + h];
                }
                a[i] = gv / (1 + exp(-gv)) * uv;
            }
            for (int h = 0; h < H; h++) {
                double rf = 0, mag = 0;
                for (int i = 0; i < I; i++) {
                    rf += a[i] * dr[(long)h * I + i];
                    mag += fabs(a[i] * dr[(long)h * I + i]);
                }
                kr_err_add(&e, kr_b(y[row * H + h]), rf, 2e-2 * mag + 1e-3 * fabs(rf) + 1e-30);
            }
        }
    }
    KR_ERR_CHECK(e);
    T_CHECK(untouched);
    fprintf(stderr, "%s cap=%d H=%d I=%d slots=%d: worst %.3f x tol\n", e.what, cap, H, I, NL, e.worst);
    cnt[0] = cap + 1; /* a data fault: flagged, clamped */
    T_CHECK(kern_cpu_ops.moe_experts(&cx, x, cnt, NL, cap, &w, y, ws, wsb) == MS_OK && fault == KERN_FAULT_CAPACITY);
    free(base), free(ref[0]), free(ref[1]), free(ref[2]), free(x), free(y), free(cnt), free(ws), free(a);
}

static void test_combine(void)
{
    enum { T = 6, K = 4, HD = 40, E = 16 };
    int32_t idx[T * K], pos[T * K];
    float w[T * K];
    /* pos: where each pair's row sits (any transport's order); -1 = padding, adds nothing */
    bf16_t *rows = kr_bf16(T * K * HD, 1.0), out[T * HD];
    for (int t = 0; t < T; t++) /* distinct experts per token */
        for (int k = 0; k < K; k++) idx[t * K + k] = (t * 5 + k * 3) % E;
    for (int p = 0; p < T * K; p++) pos[p] = (p * 7) % (T * K), w[p] = (float)kr_uniform();
    T_CHECK(kern_cpu_ops.moe_combine(NULL, rows, pos, idx, w, T, K, HD, out) == MS_OK);
    kr_err_t e = {.what = "moe_combine"};
    for (int t = 0; t < T; t++)
        for (int d = 0; d < HD; d++) {
            double ref = 0, mag = 0;
            for (int k = 0; k < K; k++) {
                double v = w[t * K + k] * kr_b(rows[(long)pos[t * K + k] * HD + d]);
                ref += v, mag += fabs(v);
            }
            kr_err_add(&e, kr_b(out[t * HD + d]), ref, fabs(ref) / 256 + 1e-6 * mag + 1e-30);
        }
    KR_ERR_CHECK(e);
    /* 1 + 2^-8 + 2^-8: a bf16 running sum ties to even twice and stays 1.0; the fp32 sum is 1 + 2^-7, exact
     * in bf16. And the weight multiplies in fp32: 3 * (1/3 in bf16) is not rounded before the sum. */
    int32_t i1[3] = {9, 5, 2}, p1[3] = {0, 1, 2};
    float w1[3] = {1, 1, 1};
    bf16_t r1[3] = {f32_to_bf16(1.0f / 256), f32_to_bf16(1.0f / 256), f32_to_bf16(1.0f)}, o1;
    T_CHECK(kern_cpu_ops.moe_combine(NULL, r1, p1, i1, w1, 1, 3, 1, &o1) == MS_OK);
    T_CHECK(bf16_to_f32(o1) == 1.0f + 1.0f / 128);
    int32_t i2[2] = {1, 0}, p2[2] = {1, 0};
    float w2[2] = {0.3f, 0.7f};
    bf16_t r2[2] = {f32_to_bf16(1.3f), f32_to_bf16(-0.55f)}, o2;
    T_CHECK(kern_cpu_ops.moe_combine(NULL, r2, p2, i2, w2, 1, 2, 1, &o2) == MS_OK);
    T_CHECK(bf16_to_f32(o2) == bf16_round(bf16_to_f32(r2[0]) * 0.7f + bf16_to_f32(r2[1]) * 0.3f));
    int32_t p3[2] = {-1, 0}; /* expert 1's pair is padding */
    T_CHECK(kern_cpu_ops.moe_combine(NULL, r2, p3, i2, w2, 1, 2, 1, &o2) == MS_OK);
    T_CHECK(bf16_to_f32(o2) == bf16_round(bf16_to_f32(r2[0]) * 0.7f));
    /* moe_combine_add is bit-identical to moe_combine then add (the shared expert's output), also in place
     * (out = add) and with a padding pair */
    bf16_t *sh = kr_bf16(T * HD, 2.0), out2[T * HD], sum[T * HD], in[T * HD];
    pos[5] = -1;
    T_CHECK(kern_cpu_ops.moe_combine(NULL, rows, pos, idx, w, T, K, HD, out) == MS_OK);
    T_CHECK(kern_cpu_ops.add(NULL, out, sh, sum, T * HD) == MS_OK);
    T_CHECK(kern_cpu_ops.moe_combine_add(NULL, rows, pos, idx, w, T, K, HD, sh, out2) == MS_OK);
    T_CHECK_MSG(!memcmp(out2, sum, sizeof sum), "moe_combine_add differs from moe_combine + add");
    memcpy(in, sh, sizeof in);
    T_CHECK(kern_cpu_ops.moe_combine_add(NULL, rows, pos, idx, w, T, K, HD, in, in) == MS_OK);
    T_CHECK_MSG(!memcmp(in, sum, sizeof sum), "moe_combine_add in place differs");
    /* the two roundings are really there: 1 + 2^-8 rounds to 1 in the combine, then + 2^-8 stays 1 */
    float w3[1] = {1};
    int32_t i3[1] = {0}, p3b[1] = {0};
    bf16_t r3[1] = {f32_to_bf16(1.0f)}, a3 = f32_to_bf16(1.0f / 256), o3;
    T_CHECK(kern_cpu_ops.moe_combine_add(NULL, r3, p3b, i3, w3, 1, 1, 1, &a3, &o3) == MS_OK);
    T_CHECK(bf16_to_f32(o3) == 1.0f);
    free(rows), free(sh);
}

int main(void)
{
    kr_seed(5);
    test_route(64, 256, 8, 4, 8, 0.0);
    test_route(64, 256, 8, 4, 8, -0.3);
    test_route(200, 8, 2, 1, 2, 0.0);
    test_route(50, 64, 4, 2, 6, 0.3);
    test_route_mask_zero();
    test_plan();
    test_scatter();
    test_experts(6, 64, 32, 8, MS_DT_BF16);
    test_experts(6, 256, 192, 5, MS_DT_F8E4M3); /* tiny: inter 192 cuts a 128-row scale block */
    test_experts(3, 7168, 2048, 1, MS_DT_BF16);
    test_experts(2, 7168, 2048, 1, MS_DT_F8E4M3);
    test_combine();
    return t_done();
}
