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
 *  - moe_plan: stable order by slot, counts, pos_of_pair inverse.
 *  - moe_experts against a per-row double MLP (bf16 and fp8 weights, tiny and
 *    DeepSeek-V3 7168/2048 sizes): |y - ref| <= 2e-2·Σ|a_k·w_dk| + 1e-3·|ref|
 *    (the op rounds gate, up, silu and their product to bf16).
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

static void test_plan(void)
{
    enum { T = 9, K = 3, E = 12, EP = 3 };
    int32_t idx[T * K], e2s[E], order[T * K], pos[T * K], sos[T * K], cnt[E];
    for (int e = 0; e < E; e++) e2s[e] = (e % EP) * (E / EP) + e / EP; /* round-robin placement */
    for (int i = 0; i < T * K; i++) idx[i] = (int)(kr_uniform() * E);
    T_CHECK(kern_cpu_ops.moe_plan(NULL, idx, T, K, e2s, E, E, order, pos, sos, cnt) == MS_OK);
    int total = 0, ok = 1, seen[T * K] = {0};
    for (int sl = 0; sl < E; sl++) total += cnt[sl];
    T_CHECK(total == T * K);
    for (int p = 0; p < T * K; p++) { /* pair p went out at position pos[p]: its token and its slot */
        int j = pos[p];
        ok &= j >= 0 && j < T * K && !seen[j] && order[j] == p / K && sos[j] == e2s[idx[p]];
        if (j >= 0 && j < T * K) seen[j] = p + 1;
    }
    for (int j = 1; j < T * K; j++) /* by slot, stable in pair index */
        ok &= sos[j] > sos[j - 1] || (sos[j] == sos[j - 1] && seen[j] > seen[j - 1]);
    T_CHECK(ok);
    idx[0] = E;
    T_CHECK(kern_cpu_ops.moe_plan(NULL, idx, T, K, e2s, E, E, order, pos, sos, cnt) == MS_ERR_INVALID);
}

static void make_mat(kern_mat_t *m, int n, int rows, int cols, ms_dtype_t dt, double sc, double **ref)
{
    long cnt = (long)n * rows * cols;
    int sbr = kern_fp8_blocks(rows), sbc = kern_fp8_blocks(cols);
    *ref = malloc(sizeof(double) * cnt);
    m->dtype = dt, m->rows = rows, m->cols = cols, m->scale_inv = NULL;
    if (dt == MS_DT_BF16) {
        bf16_t *b = kr_bf16(cnt, sc);
        for (long i = 0; i < cnt; i++) (*ref)[i] = kr_b(b[i]);
        m->data = b;
    } else {
        uint8_t *q = malloc((size_t)cnt);
        float *s = malloc(sizeof(float) * (size_t)n * sbr * sbc);
        for (long i = 0; i < (long)n * sbr * sbc; i++) s[i] = (float)(sc / 50 * (1 + kr_uniform()));
        for (int e = 0; e < n; e++)
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++) {
                    long i = ((long)e * rows + r) * cols + c;
                    q[i] = kr_fp8();
                    (*ref)[i] = bf16_round(fp8e4m3_to_f32(q[i]) * s[(long)e * sbr * sbc + (r / 128) * sbc + c / 128]);
                }
        m->data = q, m->scale_inv = s;
    }
}

static void test_experts(int R, int H, int I, int NL, int base, ms_dtype_t dt)
{
    kern_mat_t g, u, d;
    double *gr, *ur, *dr;
    make_mat(&g, NL, I, H, dt, 1 / sqrt(H), &gr);
    make_mat(&u, NL, I, H, dt, 1 / sqrt(H), &ur);
    make_mat(&d, NL, H, I, dt, 1 / sqrt(I), &dr);
    bf16_t *x = kr_bf16((int64_t)R * H, 1.0), *y = calloc((size_t)R * H, 2);
    int32_t *sl = malloc(sizeof(int32_t) * R);
    for (int r = 0; r < R; r++) sl[r] = base + (r * 7 + 3) % NL;
    size_t wsb = kern_moe_ws_bytes(R, H, I, NL);
    void *ws = malloc(wsb);
    T_CHECK(kern_cpu_ops.moe_experts(NULL, x, sl, R, base, NL, &g, &u, &d, y, ws, wsb) == MS_OK);
    T_CHECK(kern_cpu_ops.moe_experts(NULL, x, sl, R, base, NL, &g, &u, &d, y, ws, wsb - 64) == MS_ERR_INVALID);
    kr_err_t e = {.what = dt == MS_DT_BF16 ? "moe_experts bf16" : "moe_experts fp8"};
    double *a = malloc(sizeof(double) * I);
    for (int r = 0; r < R; r++) {
        long ex = sl[r] - base;
        for (int i = 0; i < I; i++) {
            double gv = 0, uv = 0;
            for (int h = 0; h < H; h++) {
                double xv = kr_b(x[(long)r * H + h]);
                gv += xv * gr[(ex * I + i) * H + h];
                uv += xv * ur[(ex * I + i) * H + h];
            }
            a[i] = gv / (1 + exp(-gv)) * uv;
        }
        for (int h = 0; h < H; h++) {
            double ref = 0, mag = 0;
            for (int i = 0; i < I; i++) {
                ref += a[i] * dr[(ex * H + h) * I + i];
                mag += fabs(a[i] * dr[(ex * H + h) * I + i]);
            }
            kr_err_add(&e, kr_b(y[(long)r * H + h]), ref, 2e-2 * mag + 1e-3 * fabs(ref) + 1e-30);
        }
    }
    KR_ERR_CHECK(e);
    fprintf(stderr, "%s R=%d H=%d I=%d experts=%d: worst %.3f x tol\n", e.what, R, H, I, NL, e.worst);
    sl[0] = base + NL;
    T_CHECK(kern_cpu_ops.moe_experts(NULL, x, sl, R, base, NL, &g, &u, &d, y, ws, wsb) == MS_ERR_INVALID);
    free((void *)g.data), free((void *)u.data), free((void *)d.data);
    free((void *)g.scale_inv), free((void *)u.scale_inv), free((void *)d.scale_inv);
    free(gr), free(ur), free(dr), free(x), free(y), free(sl), free(ws), free(a);
}

static void test_combine(void)
{
    enum { T = 6, K = 4, HD = 40, E = 16 };
    int32_t idx[T * K], pos[T * K];
    float w[T * K];
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
    free(rows);
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
    test_experts(20, 64, 32, 8, 0, MS_DT_BF16);
    test_experts(20, 64, 32, 8, 16, MS_DT_F8E4M3);
    test_experts(3, 7168, 2048, 1, 5, MS_DT_BF16);
    test_experts(2, 7168, 2048, 1, 0, MS_DT_F8E4M3);
    test_combine();
    return t_done();
}
