/* cuda_cases_elem.c — harness runners for the elementwise, layout,
 * normalization and GEMM ops (table and tolerances: test_cuda_vs_cpu.c). */
#include "cuda_cases.h"

#define K (env->gpu)
#define CX (env->cx)

void cc_run_embed(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int32_t n = (int32_t)c->p[0], dim = (int32_t)c->p[2];
    const int64_t V = c->p[1];
    kr_seed(101);
    bf16_t *tab = cc_bf16_fast(V * dim, 2.0), *want = calloc((size_t)n * dim, 2), *got = malloc((size_t)n * dim * 2);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n);
    for (int32_t i = 0; i < n; i++) ids[i] = i == 0 ? (int32_t)(V - 1) : (int32_t)(kr_uniform() * V);
    void *dt = cc_dev(env, tab, (size_t)V * dim * 2), *di = cc_dev(env, ids, sizeof(int32_t) * (size_t)n);
    if (!c->contract) {
        void *dout = cc_dev(env, NULL, (size_t)n * dim * 2);
        cc_ok(r, K->embed(CX, di, n, dt, V, dim, dout), "embed");
        cc_get(env, got, dout, (size_t)n * dim * 2);
        cc_ok(r, kern_cpu_ops.embed(NULL, ids, n, tab, V, dim, want), "cpu embed");
        cc_cmp_bytes(r, "rows", got, want, (size_t)n * dim * 2);
    } else {
        /* row 1 is padding (-1: left as it was), row 3 is out of range: fault TOKEN and a zero row */
        ids[1] = -1, ids[3] = (int32_t)V;
        env->gpu->upload(CX, di, ids, sizeof(int32_t) * (size_t)n);
        bf16_t *init = cc_bf16_fast((int64_t)n * dim, 1.0);
        void *dout = cc_dev(env, init, (size_t)n * dim * 2);
        cc_ok(r, K->embed(CX, di, n, dt, V, dim, dout), "embed");
        cc_get(env, got, dout, (size_t)n * dim * 2);
        uint32_t f = cc_fault_take(env);
        cc_check(r, f == KERN_FAULT_TOKEN, "fault word 0x%x == KERN_FAULT_TOKEN", f);
        cc_cmp_bytes(r, "padded row untouched", got + dim, init + dim, (size_t)dim * 2);
        bf16_t *zero = calloc((size_t)dim, 2);
        cc_cmp_bytes(r, "faulted row zero", got + 3 * dim, zero, (size_t)dim * 2);
        cc_cmp_bytes(r, "good row", got + 2 * dim, tab + (int64_t)ids[2] * dim, (size_t)dim * 2);
        free(zero), free(init);
    }
    free(tab), free(want), free(got), free(ids);
}

void cc_run_add(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int64_t n = c->p[0];
    kr_seed(102);
    bf16_t *a = kr_bf16(n, 3.0), *b = kr_bf16(n, 0.01), *want = malloc((size_t)n * 2), *got = malloc((size_t)n * 2);
    void *da = cc_dev(env, a, (size_t)n * 2), *db = cc_dev(env, b, (size_t)n * 2), *dy = cc_dev(env, NULL, (size_t)n * 2);
    cc_ok(r, K->add(CX, da, db, dy, n), "add");
    cc_get(env, got, dy, (size_t)n * 2);
    kern_cpu_ops.add(NULL, a, b, want, n);
    cc_cmp_bf16(r, "y", got, want, n, 0, 0);
    free(a), free(b), free(want), free(got);
}

void cc_run_cast(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int64_t n = c->p[0];
    const int to_f32 = (int)c->p[1];
    kr_seed(103);
    float *f = kr_f32(n, 10.0);
    /* specials: NaN, ±inf, a subnormal, the largest finite, and exact bf16 ties */
    const uint32_t sp[] = {0x7fc00000u, 0xff800000u, 0x7f800000u, 0x00000001u, 0x7f7fffffu, 0x3f808000u, 0x3f818000u,
                           0xbf808000u, 0x80000000u};
    for (size_t i = 0; i < sizeof sp / sizeof sp[0] && (int64_t)i < n; i++) memcpy(&f[i], &sp[i], 4);
    bf16_t *h = malloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++) h[i] = f32_to_bf16(f[i]);
    if (!to_f32) {
        bf16_t *got = malloc((size_t)n * 2), *want = malloc((size_t)n * 2);
        void *dx = cc_dev(env, f, (size_t)n * 4), *dy = cc_dev(env, NULL, (size_t)n * 2);
        cc_ok(r, K->cast(CX, dx, MS_DT_F32, dy, MS_DT_BF16, n), "cast");
        cc_get(env, got, dy, (size_t)n * 2);
        kern_cpu_ops.cast(NULL, f, MS_DT_F32, want, MS_DT_BF16, n);
        cc_cmp_bytes(r, "bf16 bits", got, want, (size_t)n * 2);
        free(got), free(want);
    } else {
        float *got = malloc((size_t)n * 4), *want = malloc((size_t)n * 4);
        void *dx = cc_dev(env, h, (size_t)n * 2), *dy = cc_dev(env, NULL, (size_t)n * 4);
        cc_ok(r, K->cast(CX, dx, MS_DT_BF16, dy, MS_DT_F32, n), "cast");
        cc_get(env, got, dy, (size_t)n * 4);
        kern_cpu_ops.cast(NULL, h, MS_DT_BF16, want, MS_DT_F32, n);
        cc_cmp_bytes(r, "f32 bits", got, want, (size_t)n * 4);
        free(got), free(want);
    }
    free(f), free(h);
}

void cc_run_gather_rows(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int32_t n = (int32_t)c->p[0], S = (int32_t)c->p[1];
    const size_t rb = (size_t)c->p[2];
    kr_seed(104);
    unsigned char *src = malloc((size_t)S * rb), *init = malloc((size_t)n * rb), *want = malloc((size_t)n * rb),
                  *got = malloc((size_t)n * rb);
    for (size_t i = 0; i < (size_t)S * rb; i++) src[i] = (unsigned char)(kr_uniform() * 256);
    for (size_t i = 0; i < (size_t)n * rb; i++) init[i] = (unsigned char)(kr_uniform() * 256);
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)n);
    for (int32_t i = 0; i < n; i++) idx[i] = (int32_t)(kr_uniform() * S);
    if (c->contract) idx[2] = -1, idx[5] = -7;
    void *ds = cc_dev(env, src, (size_t)S * rb), *di = cc_dev(env, idx, sizeof(int32_t) * (size_t)n),
         *dd = cc_dev(env, init, (size_t)n * rb);
    cc_ok(r, K->gather_rows(CX, ds, di, n, rb, dd), "gather_rows");
    cc_get(env, got, dd, (size_t)n * rb);
    memcpy(want, init, (size_t)n * rb);
    for (int32_t i = 0; i < n; i++)
        if (idx[i] >= 0) memcpy(want + i * rb, src + (size_t)idx[i] * rb, rb); /* padding rows: left as they were */
    if (!c->contract) {
        unsigned char *cpu = malloc((size_t)n * rb);
        kern_cpu_ops.gather_rows(NULL, src, idx, n, rb, cpu);
        cc_cmp_bytes(r, "rows vs cpu", got, cpu, (size_t)n * rb);
        free(cpu);
    } else {
        uint32_t f = cc_fault_take(env);
        cc_check(r, f == KERN_FAULT_SLOT, "fault word 0x%x == KERN_FAULT_SLOT", f);
    }
    cc_cmp_bytes(r, "rows", got, want, (size_t)n * rb);
    free(src), free(init), free(want), free(got), free(idx);
}

void cc_run_silu_mul(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int64_t n = c->p[0];
    kr_seed(105);
    bf16_t *g = kr_bf16(n, 4.0), *u = kr_bf16(n, 1.0), *want = malloc((size_t)n * 2), *got = malloc((size_t)n * 2);
    void *dg = cc_dev(env, g, (size_t)n * 2), *du = cc_dev(env, u, (size_t)n * 2), *dy = cc_dev(env, NULL, (size_t)n * 2);
    cc_ok(r, K->silu_mul(CX, dg, du, dy, n), "silu_mul");
    cc_get(env, got, dy, (size_t)n * 2);
    kern_cpu_ops.silu_mul(NULL, g, u, want, n);
    cc_cmp_bf16(r, "out", got, want, n, 0, 0);
    free(g), free(u), free(want), free(got);
}

void cc_run_rmsnorm(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int32_t rows = (int32_t)c->p[0], dim = (int32_t)c->p[1];
    const int64_t n = (int64_t)rows * dim;
    kr_seed(106);
    bf16_t *x = kr_bf16(n, 1.0), *w = kr_bf16(dim, 1.0), *want = malloc((size_t)n * 2), *got = malloc((size_t)n * 2);
    void *dx = cc_dev(env, x, (size_t)n * 2), *dw = cc_dev(env, w, (size_t)dim * 2), *dy = cc_dev(env, NULL, (size_t)n * 2);
    cc_ok(r, K->rmsnorm(CX, dx, dim, dw, dy, dim, rows, dim, 1e-6f), "rmsnorm");
    cc_get(env, got, dy, (size_t)n * 2);
    kern_cpu_ops.rmsnorm(NULL, x, dim, w, want, dim, rows, dim, 1e-6f);
    double worst = 0;
    int64_t ndiff = 0;
    for (int64_t i = 0; i < n; i++) {
        double a = kr_b(got[i]), b = kr_b(want[i]);
        ndiff += a != b;
        worst = fmax(worst, fabs(a - b) / (fabs(b) * c->tol + 1e-30));
    }
    char what[128];
    snprintf(what, sizeof what, "per element |d| <= %.4g|ref|, %lld/%lld differ", c->tol, (long long)ndiff,
             (long long)n);
    cc_check(r, worst <= 1.0, "%s (worst %.3g x tol)", what, worst);
    free(x), free(w), free(want), free(got);
}

void cc_run_gemm(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int32_t m = (int32_t)c->p[0], N = (int32_t)c->p[1], Kd = (int32_t)c->p[2];
    const ms_dtype_t xdt = (ms_dtype_t)c->p[3], wdt = (ms_dtype_t)c->p[4], ydt = (ms_dtype_t)c->p[5];
    const int64_t ldx = Kd + c->p[6], ldy = N;
    kr_seed(107);
    const size_t xs = ms_dtype_size(xdt), ys = ms_dtype_size(ydt), ws = ms_dtype_size(wdt);
    void *x = xdt == MS_DT_BF16 ? (void *)kr_bf16((int64_t)m * ldx, 1.0) : (void *)kr_f32((int64_t)m * ldx, 1.0);
    void *w;
    float *sc = NULL;
    const int64_t nsc = (int64_t)kern_fp8_blocks(N) * kern_fp8_blocks(Kd);
    if (wdt == MS_DT_F8E4M3) {
        uint8_t *w8 = malloc((size_t)N * Kd);
        for (int64_t i = 0; i < (int64_t)N * Kd; i++) w8[i] = kr_fp8();
        sc = malloc(sizeof(float) * (size_t)nsc);
        for (int64_t i = 0; i < nsc; i++) sc[i] = (float)(0.002 * (0.5 + kr_uniform()));
        w = w8;
    } else if (wdt == MS_DT_BF16) {
        w = (int64_t)N * Kd > (1 << 24) ? cc_bf16_fast((int64_t)N * Kd, 0.05) : kr_bf16((int64_t)N * Kd, 0.05);
    } else {
        w = kr_f32((int64_t)N * Kd, 0.05);
    }
    void *want = calloc((size_t)m * ldy, ys), *got = calloc((size_t)m * ldy, ys);
    void *dx = cc_dev(env, x, (size_t)m * ldx * xs), *dw = cc_dev(env, w, (size_t)N * Kd * ws),
         *dsc = sc ? cc_dev(env, sc, sizeof(float) * (size_t)nsc) : NULL, *dy = cc_dev(env, NULL, (size_t)m * ldy * ys);
    kern_mat_t wd = {dw, dsc, wdt, N, Kd}, wh = {w, sc, wdt, N, Kd};
    cc_ok(r, kern_gemm_plain(K, CX, dx, xdt, ldx, &wd, dy, ydt, ldy, m), "gemm");
    cc_get(env, got, dy, (size_t)m * ldy * ys);
    cc_ok(r, kern_gemm_plain(&kern_cpu_ops, NULL, x, xdt, ldx, &wh, want, ydt, ldy, m), "cpu gemm");
    if (ydt == MS_DT_BF16) cc_cmp_bf16(r, "y", got, want, (int64_t)m * ldy, c->tol, 2.0 / 256);
    else cc_cmp_f32(r, "y", got, want, (int64_t)m * ldy, c->tol, 1e-5);
    free(x), free(w), free(sc), free(want), free(got);
}
