/* test_gemm.c — kern_cpu gemm against a double reference: y = x·Wᵀ with W in
 * BF16, FP8 e4m3 (128×128 block scales, partial edge blocks) and F32, output
 * BF16 or F32. Shapes include DeepSeek-V3's kv_a_proj (7168→576), the router
 * (7168→256, fp32 out) and q_b_proj (1536→24576 rows truncated for time).
 * Tolerance: F32 out |y-ref| <= 1e-5·Σ|x·w| + 1e-30; BF16 out adds 2^-8·|ref|
 * (one bf16 rounding: unit roundoff 2^-8). FP8: the reference dequantizes as
 * kernels.h specifies, bf16(fp8·scale_inv). */
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
    ms_status_t st = kern_cpu_ops.gemm(NULL, x, sh->xdt, K, &mat, y, sh->ydt, ldy, M);
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
    T_CHECK(kern_cpu_ops.gemm(NULL, &one, MS_DT_BF16, 1, &good, &one, MS_DT_BF16, 1, 0) == MS_OK);
    T_CHECK(kern_cpu_ops.gemm(NULL, &one, MS_DT_BF16, 1, &bad, &one, MS_DT_BF16, 1, 1) == MS_ERR_INVALID);
    return t_done();
}
