/* test_gemm.c — kern_cpu gemm against a double reference: y = x·Wᵀ with W in
 * BF16, FP8 e4m3 (128×128 block scales, partial edge blocks) and F32, output
 * BF16 or F32. Shapes include DeepSeek-V3's kv_a_proj (7168→576), the router
 * (7168→256, fp32 out) and q_b_proj (1536→24576 rows truncated for time).
 * Tolerance: F32 out |y-ref| <= 1e-5·Σ|x·w| + 1e-30; BF16 out adds 2^-8·|ref|
 * (one bf16 rounding: unit roundoff 2^-8). FP8: the reference dequantizes as
 * kernels.h specifies, bf16(fp8·scale_inv).
 * Also: batched/strided/transposed GEMMs (per-head absorption) vs double; the fused SiLU·mul epilogue
 * bit-identical to gemm+gemm+silu_mul (bf16 and fp8 weights); act_quant (exact scales, nearest codes);
 * FP8×FP8 mode vs a double reference over the dequantized operands. */
#include "kref.h"

typedef struct {
    int m, n, k;
    ms_dtype_t wdt, ydt, xdt;
    const char *what;
} shape_t;

static void run(const shape_t *sh)
{
    const int M = sh->m, N = sh->n, K = sh->k;
    int sbr = kern_fp8_blocks(N), sbc = kern_fp8_blocks(K);
    void *x = sh->xdt == MS_DT_BF16 ? (void *)kr_bf16((int64_t)M * K, 1.0) : (void *)kr_f32((int64_t)M * K, 1.0);
    double *wd = malloc(sizeof(double) * (size_t)N * K); /* dequantized reference weights */
    void *w = NULL;
    float *sc = NULL;
    if (sh->wdt == MS_DT_BF16) {
        bf16_t *b = kr_bf16((int64_t)N * K, 0.05);
        for (long i = 0; i < (long)N * K; i++) wd[i] = kr_b(b[i]);
        w = b;
    } else if (sh->wdt == MS_DT_F32) {
        float *f = kr_f32((int64_t)N * K, 0.05);
        for (long i = 0; i < (long)N * K; i++) wd[i] = f[i];
        w = f;
    } else {
        uint8_t *q = malloc((size_t)N * K);
        sc = malloc(sizeof(float) * (size_t)sbr * sbc);
        for (int i = 0; i < sbr * sbc; i++) sc[i] = (float)(1e-3 * (1 + kr_uniform()));
        for (int i = 0; i < N; i++)
            for (int j = 0; j < K; j++) {
                q[(long)i * K + j] = kr_fp8();
                wd[(long)i * K + j] = bf16_round(fp8e4m3_to_f32(q[(long)i * K + j]) * sc[(i / 128) * sbc + j / 128]);
            }
        w = q;
    }
    kern_mat_t mat = {.data = w, .scale_inv = sc, .dtype = sh->wdt, .rows = N, .cols = K};
    const int ldy = N + 3; /* a strided output */
    void *y = calloc((size_t)M * ldy, ms_dtype_size(sh->ydt));
    ms_status_t st = kern_gemm_plain(&kern_cpu_ops, NULL, x, sh->xdt, K, &mat, y, sh->ydt, ldy, M);
    T_CHECK(st == MS_OK);
    kr_err_t e = {.what = sh->what};
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double ref = 0, mag = 0;
            for (int k = 0; k < K; k++) {
                double xv = sh->xdt == MS_DT_BF16 ? kr_b(((bf16_t *)x)[(long)i * K + k]) : ((float *)x)[(long)i * K + k];
                ref += xv * wd[(long)j * K + k];
                mag += fabs(xv * wd[(long)j * K + k]);
            }
            double got = sh->ydt == MS_DT_F32 ? ((float *)y)[(long)i * ldy + j] : kr_b(((bf16_t *)y)[(long)i * ldy + j]);
            double tol = 1e-5 * mag + 1e-30 + (sh->ydt == MS_DT_BF16 ? fabs(ref) / 256 : 0);
            kr_err_add(&e, got, ref, tol);
        }
    KR_ERR_CHECK(e);
    fprintf(stderr, "%-34s M=%d N=%d K=%d worst %.3f x tol\n", sh->what, M, N, K, e.worst);
    free(x), free(wd), free(w), free(sc), free(y);
}

/* Batched, strided, transposed: H per-head GEMMs over column slices of x (absorption's q_nope·W_UK with
 * W_UK read transposed, and o_lat·W_UVᵀ with F32 x), against a double reference. */
static void test_batched(void)
{
    enum { H = 3, M = 4, DN = 24, DC = 40, DV = 16, QK = DN + 8 };
    bf16_t *q = kr_bf16(M * H * QK, 1.0), *kvb = kr_bf16(H * (DN + DV) * DC, 0.2);
    float *ql = calloc(M * H * DC, 4);
    kern_mat_t wuk = {.data = kvb, .dtype = MS_DT_BF16, .rows = DC, .cols = DN};
    kern_gemm_t g = {.x = q, .xdt = MS_DT_BF16, .ldx = H * QK, .bsx = QK, .w = &wuk, .w_trans = 1, .ldw = DC,
                     .bsw = (DN + DV) * DC, .y = ql, .ydt = MS_DT_F32, .ldy = H * DC, .bsy = DC, .m = M, .batch = H};
    T_CHECK(kern_cpu_ops.gemm(NULL, &g) == MS_OK);
    kr_err_t e = {.what = "batched transposed q_nope·W_UK"};
    for (int h = 0; h < H; h++)
        for (int i = 0; i < M; i++)
            for (int c = 0; c < DC; c++) {
                double ref = 0, mag = 0;
                for (int d = 0; d < DN; d++) {
                    double v = kr_b(q[i * H * QK + h * QK + d]) * kr_b(kvb[(h * (DN + DV) + d) * DC + c]);
                    ref += v, mag += fabs(v);
                }
                kr_err_add(&e, ql[i * H * DC + h * DC + c], ref, 1e-5 * mag + 1e-30);
            }
    KR_ERR_CHECK(e);
    bf16_t *o = calloc(M * H * DV, 2);
    kern_mat_t wuv = {.data = kvb + DN * DC, .dtype = MS_DT_BF16, .rows = DV, .cols = DC};
    kern_gemm_t g2 = {.x = ql, .xdt = MS_DT_F32, .ldx = H * DC, .bsx = DC, .w = &wuv, .ldw = DC,
                      .bsw = (DN + DV) * DC, .y = o, .ydt = MS_DT_BF16, .ldy = H * DV, .bsy = DV, .m = M, .batch = H};
    T_CHECK(kern_cpu_ops.gemm(NULL, &g2) == MS_OK);
    kr_err_t e2 = {.what = "batched o_lat·W_UV"};
    for (int h = 0; h < H; h++)
        for (int i = 0; i < M; i++)
            for (int d = 0; d < DV; d++) {
                double ref = 0, mag = 0;
                for (int c = 0; c < DC; c++) {
                    double v = ql[i * H * DC + h * DC + c] * kr_b(kvb[(h * (DN + DV) + DN + d) * DC + c]);
                    ref += v, mag += fabs(v);
                }
                kr_err_add(&e2, kr_b(o[i * H * DV + h * DV + d]), ref, 1e-5 * mag + fabs(ref) / 256 + 1e-30);
            }
    KR_ERR_CHECK(e2);
    /* a batch stride of 0 shares x: every batch's output equals the plain GEMM */
    kern_mat_t w1 = {.data = kvb, .dtype = MS_DT_BF16, .rows = 5, .cols = DC};
    float *y = calloc(H * M * 5, 4), *y0 = calloc(M * 5, 4);
    kern_gemm_t g3 = {.x = ql, .xdt = MS_DT_F32, .ldx = DC, .w = &w1, .ldw = 0, .bsw = 0, .y = y, .ydt = MS_DT_F32,
                      .ldy = 5, .bsy = M * 5, .m = M, .batch = H};
    T_CHECK(kern_cpu_ops.gemm(NULL, &g3) == MS_OK);
    T_CHECK(kern_gemm_plain(&kern_cpu_ops, NULL, ql, MS_DT_F32, DC, &w1, y0, MS_DT_F32, 5, M) == MS_OK);
    int same = 1;
    for (int h = 0; h < H; h++) same &= memcmp(y + h * M * 5, y0, sizeof(float) * M * 5) == 0;
    T_CHECK(same);
    /* an fp8 weight cannot be read transposed */
    kern_mat_t f8 = {.data = kvb, .scale_inv = (const float *)kvb, .dtype = MS_DT_F8E4M3, .rows = 4, .cols = 4};
    kern_gemm_t g4 = {.x = q, .xdt = MS_DT_BF16, .ldx = 4, .w = &f8, .w_trans = 1, .y = y, .ydt = MS_DT_F32, .ldy = 4,
                      .m = 1};
    T_CHECK(kern_cpu_ops.gemm(NULL, &g4) == MS_ERR_UNSUPPORTED);
    fprintf(stderr, "batched: q_nope·W_UK worst %.3f, o_lat·W_UV worst %.3f x tol\n", e.worst, e2.worst);
    free(q), free(kvb), free(ql), free(o), free(y), free(y0);
}

/* The fused SiLU·mul epilogue over [gate; up] is bit-identical to gemm(gate) + gemm(up) + silu_mul. */
static void test_silu_epilogue(ms_dtype_t wdt, int M, int I, int D)
{
    bf16_t *x = kr_bf16((int64_t)M * D, 1.0);
    void *w;
    float *sc = NULL;
    const int sbc = kern_fp8_blocks(D);
    if (wdt == MS_DT_BF16) {
        w = kr_bf16((int64_t)2 * I * D, 0.1);
    } else { /* fp8: I a multiple of 128 so the up half starts on a scale block */
        uint8_t *q = malloc((size_t)2 * I * D);
        for (long i = 0; i < (long)2 * I * D; i++) q[i] = kr_fp8();
        sc = malloc(sizeof(float) * kern_fp8_blocks(2 * I) * sbc);
        for (int i = 0; i < kern_fp8_blocks(2 * I) * sbc; i++) sc[i] = (float)(1e-3 * (1 + kr_uniform()));
        w = q;
    }
    const size_t es = ms_dtype_size(wdt);
    kern_mat_t fused = {.data = w, .scale_inv = sc, .dtype = wdt, .rows = 2 * I, .cols = D};
    kern_mat_t gate = {.data = w, .scale_inv = sc, .dtype = wdt, .rows = I, .cols = D};
    kern_mat_t up = {.data = (char *)w + (size_t)I * D * es, .scale_inv = sc ? sc + (I / 128) * sbc : NULL,
                     .dtype = wdt, .rows = I, .cols = D};
    bf16_t *g = calloc((size_t)M * I, 2), *u = calloc((size_t)M * I, 2), *a = calloc((size_t)M * I, 2),
           *b = calloc((size_t)M * I, 2);
    T_CHECK(kern_gemm_plain(&kern_cpu_ops, NULL, x, MS_DT_BF16, D, &gate, g, MS_DT_BF16, I, M) == MS_OK);
    T_CHECK(kern_gemm_plain(&kern_cpu_ops, NULL, x, MS_DT_BF16, D, &up, u, MS_DT_BF16, I, M) == MS_OK);
    T_CHECK(kern_cpu_ops.silu_mul(NULL, g, u, a, (int64_t)M * I) == MS_OK);
    kern_gemm_t f = {.x = x, .xdt = MS_DT_BF16, .ldx = D, .w = &fused, .y = b, .ydt = MS_DT_BF16, .ldy = I, .m = M,
                     .epi = KERN_EPI_SILU_MUL};
    T_CHECK(kern_cpu_ops.gemm(NULL, &f) == MS_OK);
    long diff = 0, nz = 0;
    for (long i = 0; i < (long)M * I; i++) diff += a[i] != b[i], nz += a[i] != 0;
    T_CHECK_MSG(diff == 0 && nz > 0, "silu epilogue %s: %ld of %ld differ (%ld nonzero)", ms_dtype_name(wdt), diff,
                (long)M * I, nz);
    f.ydt = MS_DT_F32; /* the epilogue stores bf16 only */
    T_CHECK(kern_cpu_ops.gemm(NULL, &f) == MS_ERR_INVALID);
    fprintf(stderr, "silu_mul epilogue %s M=%d I=%d D=%d: bit-identical to the unfused sequence\n",
            ms_dtype_name(wdt), M, I, D);
    free(x), free(w), free(sc), free(g), free(u), free(a), free(b);
}

/* act_quant: per 128-channel group s = max(amax,1e-4)/448 exactly, every code the nearest e4m3 of x/s
 * (checked against the neighbouring codes), dequantized error <= half an e4m3 step (2^-4 relative) + tiny. */
static void test_act_quant(void)
{
    enum { R = 5, C = 300, LDQ = 320, LDS = 4 };
    bf16_t *x = kr_bf16(R * C, 2.0);
    for (int c = 128; c < 256; c++) x[2 * C + c] = 0; /* an all-zero group stays finite */
    uint8_t *q = calloc(R * LDQ, 1);
    float *s = calloc(R * LDS, 4);
    T_CHECK(kern_cpu_ops.act_quant(NULL, x, C, R, C, q, LDQ, s, LDS) == MS_OK);
    kr_err_t e = {.what = "act_quant dequantized"};
    int scales_ok = 1, nearest = 1;
    for (int r = 0; r < R; r++)
        for (int g = 0; g < 3; g++) {
            double amax = 0;
            for (int c = g * 128; c < C && c < g * 128 + 128; c++) amax = fmax(amax, fabs(kr_b(x[r * C + c])));
            scales_ok &= s[r * LDS + g] == fmaxf((float)amax, 1e-4f) / 448.0f;
            for (int c = g * 128; c < C && c < g * 128 + 128; c++) {
                /* x / s in fp32 as the op divides (a double quotient may straddle an e4m3 midpoint) */
                double v = (float)kr_b(x[r * C + c]) / s[r * LDS + g], got = fp8e4m3_to_f32(q[r * LDQ + c]);
                /* no other finite code is strictly closer */
                for (int k = 0; k < 256; k++) {
                    double o = fp8e4m3_to_f32((uint8_t)k);
                    if (isfinite(o) && fabs(o - v) < fabs(got - v) - 1e-12) nearest = 0;
                }
                kr_err_add(&e, got * s[r * LDS + g], kr_b(x[r * C + c]), fabs(kr_b(x[r * C + c])) / 16 + s[r * LDS + g] / 256);
            }
        }
    T_CHECK(scales_ok);
    T_CHECK(nearest);
    KR_ERR_CHECK(e);
    free(x), free(q), free(s);
}

/* FP8×FP8: act_quant'ed x times a block-scaled fp8 W against a double reference over the dequantized values
 * (x_q·s_x)(w_q·s_w). Tolerance 1e-5·Σ|x·w| (fp32 sums per 128-block) plus the bf16 output rounding. */
static void test_fp8_fp8(int M, int N, int K)
{
    bf16_t *x = kr_bf16((int64_t)M * K, 1.0);
    const int kb = kern_fp8_blocks(K), sbr = kern_fp8_blocks(N);
    uint8_t *xq = malloc((size_t)M * K), *wq = malloc((size_t)N * K);
    float *xs = malloc(sizeof(float) * M * kb), *ws = malloc(sizeof(float) * sbr * kb);
    T_CHECK(kern_cpu_ops.act_quant(NULL, x, K, M, K, xq, K, xs, kb) == MS_OK);
    for (long i = 0; i < (long)N * K; i++) wq[i] = kr_fp8();
    for (int i = 0; i < sbr * kb; i++) ws[i] = (float)(1e-3 * (1 + kr_uniform()));
    kern_mat_t w = {.data = wq, .scale_inv = ws, .dtype = MS_DT_F8E4M3, .rows = N, .cols = K};
    float *y = calloc((size_t)M * N, 4);
    bf16_t *yb = calloc((size_t)M * N, 2);
    kern_gemm_t g = {.x = xq, .xdt = MS_DT_F8E4M3, .ldx = K, .x_scale = xs, .ld_xs = kb, .w = &w, .y = y,
                     .ydt = MS_DT_F32, .ldy = N, .m = M};
    T_CHECK(kern_cpu_ops.gemm(NULL, &g) == MS_OK);
    g.y = yb, g.ydt = MS_DT_BF16;
    T_CHECK(kern_cpu_ops.gemm(NULL, &g) == MS_OK);
    kr_err_t e = {.what = "fp8 x fp8 gemm (f32 out)"}, eb = {.what = "fp8 x fp8 gemm (bf16 out)"};
    for (int i = 0; i < M; i++)
        for (int n = 0; n < N; n++) {
            double ref = 0, mag = 0;
            for (int k = 0; k < K; k++) {
                double v = (double)fp8e4m3_to_f32(xq[(long)i * K + k]) * xs[i * kb + k / 128] *
                           ((double)fp8e4m3_to_f32(wq[(long)n * K + k]) * ws[(n / 128) * kb + k / 128]);
                ref += v, mag += fabs(v);
            }
            kr_err_add(&e, y[(long)i * N + n], ref, 1e-5 * mag + 1e-30);
            kr_err_add(&eb, kr_b(yb[(long)i * N + n]), ref, 1e-5 * mag + fabs(ref) / 256 + 1e-30);
        }
    KR_ERR_CHECK(e);
    KR_ERR_CHECK(eb);
    fprintf(stderr, "fp8 x fp8 M=%d N=%d K=%d worst %.3f x tol\n", M, N, K, e.worst);
    /* fp8 activations need scales and an fp8 weight */
    g.x_scale = NULL;
    T_CHECK(kern_cpu_ops.gemm(NULL, &g) == MS_ERR_INVALID);
    free(x), free(xq), free(wq), free(xs), free(ws), free(y), free(yb);
}

int main(void)
{
    kr_seed(1);
    const shape_t shapes[] = {
        {3, 576, 7168, MS_DT_BF16, MS_DT_BF16, MS_DT_BF16, "kv_a_proj bf16 (7168->576)"},
        {2, 576, 7168, MS_DT_F8E4M3, MS_DT_BF16, MS_DT_BF16, "kv_a_proj fp8 (7168->576)"},
        {4, 256, 7168, MS_DT_BF16, MS_DT_F32, MS_DT_BF16, "router fp32 out (7168->256)"},
        {2, 256, 7168, MS_DT_F32, MS_DT_F32, MS_DT_F32, "fp32 x fp32 (7168->256)"},
        {2, 384, 1536, MS_DT_F8E4M3, MS_DT_BF16, MS_DT_BF16, "q_b_proj slice fp8 (1536->384)"},
        {5, 130, 200, MS_DT_F8E4M3, MS_DT_F32, MS_DT_BF16, "fp8 partial blocks (200->130)"},
        {7, 33, 17, MS_DT_BF16, MS_DT_BF16, MS_DT_BF16, "odd small (17->33)"},
        {1, 1, 1, MS_DT_BF16, MS_DT_F32, MS_DT_BF16, "1x1x1"},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) run(&shapes[i]);
    /* m = 0 is a no-op, an fp8 weight without scales is an error */
    kern_mat_t bad = {.data = "", .dtype = MS_DT_F8E4M3, .rows = 1, .cols = 1};
    kern_mat_t good = {.data = "\0\0", .dtype = MS_DT_BF16, .rows = 1, .cols = 1};
    bf16_t one = 0;
    T_CHECK(kern_gemm_plain(&kern_cpu_ops, NULL, &one, MS_DT_BF16, 1, &good, &one, MS_DT_BF16, 1, 0) == MS_OK);
    T_CHECK(kern_gemm_plain(&kern_cpu_ops, NULL, &one, MS_DT_BF16, 1, &bad, &one, MS_DT_BF16, 1, 1) == MS_ERR_INVALID);
    test_batched();
    test_silu_epilogue(MS_DT_BF16, 5, 96, 200);
    test_silu_epilogue(MS_DT_F8E4M3, 3, 256, 300);
    test_act_quant();
    test_fp8_fp8(4, 130, 300);
    test_fp8_fp8(2, 576, 7168);
    return t_done();
}
