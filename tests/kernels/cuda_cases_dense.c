/* cuda_cases_dense.c — the dense FP8 GEMMs of an R1 layer (q_a|kv_a, q_b, o_proj, shared and dense MLP)
 * through the gemm op with contiguous operands as the engine passes them, so the fast paths run:
 * gemm_fp8w.cu for the dequant mode at m <= 128; for the fp8 mode the grouped FP8 kernel, moe_gemm_fp8.cu,
 * or, opt-in, gemm_fp8x.cu's stream-K kernel (MS_GEMM_FP8X=1 at every m <= 128, =auto at m <= 64 with
 * K >= 4096; its 2-CTA cluster variant that multicasts the x block with MS_GEMM_FP8X_MC=1 on top, which the
 * "fp8 sk mc" cases set for themselves) (cc_run_gemm_ex pads every stride and so keeps the other paths covered). The fp8 mode runs twice and must be bit-identical.
 * The CPU reference recomputes a sample of rows (rows are independent): evenly spread, first and last
 * included, as many as ~1 GMAC of CPU work allows (all rows for the small matrices), so a case at
 * m = 4096 still crosses many token blocks without minutes of CPU time. */
#include "cuda_cases.h"

#include <stdio.h>
#include <string.h>

#define K (env->gpu)
#define CX (env->cx)

/* random e4m3 codes, no NaN (exponent field <= 14), ~1 ns each */
static uint8_t *cd_fp8(int64_t n)
{
    uint8_t *p = malloc((size_t)(n ? n : 1));
    uint64_t z = kr_state | 1;
    for (int64_t i = 0; i < n; i++) {
        z ^= z << 13, z ^= z >> 7, z ^= z << 17;
        p[i] = (uint8_t)(((z >> 8) & 0x80) | ((((z >> 20) % 15) & 0xf) << 3) | (z & 7));
    }
    kr_state = z;
    return p;
}

/* p[] = m, n (outputs), k, mode (0 dequant, 1 dequant + SiLU·mul over a fused gate|up of 2n rows,
 * 2 fp8 (x act_quant'ed by the CPU op), 3 fp8 + SiLU·mul), y dtype. tol = nmse; max-abs 2 bf16 ulps of
 * max|ref| for the dequant mode (4 after SiLU·mul), 16 for the fp8 mode (the tensor core's own sum order
 * and precision inside a 128-K block, as the moe_experts fp8 cases). */
void cc_run_gemm_dense(cc_env_t *env, const cc_case_t *c, cc_result_t *r)
{
    const int32_t m = (int32_t)c->p[0], n = (int32_t)c->p[1], Kd = (int32_t)c->p[2];
    const int mode = (int)c->p[3], silu = mode & 1, fp8x = mode >= 2;
    const ms_dtype_t ydt = (ms_dtype_t)c->p[4];
    const int32_t rows = silu ? 2 * n : n, kb = kern_fp8_blocks(Kd);
    kr_seed(110);
    bf16_t *xb = cc_bf16_fast((int64_t)m * Kd, 1.0);
    uint8_t *w = cd_fp8((int64_t)rows * Kd), *xq = NULL;
    const int64_t nsc = (int64_t)kern_fp8_blocks(rows) * kb;
    float *sc = malloc(sizeof(float) * (size_t)nsc), *xs = NULL;
    for (int64_t i = 0; i < nsc; i++) sc[i] = (float)(0.0005 * (0.5 + kr_uniform()));
    const size_t ye = ms_dtype_size(ydt);
    void *dxb = cc_dev(env, xb, (size_t)m * Kd * 2), *dx = dxb, *dw = cc_dev(env, w, (size_t)rows * Kd),
         *dsc = cc_dev(env, sc, sizeof(float) * (size_t)nsc), *dxs = NULL, *dy = cc_dev(env, NULL, (size_t)m * n * ye);
    if (fp8x) { /* the act_quant op quantizes on the device (bit-identical to the CPU's: its own cases), the
                 * CPU's per-code search would take ~1 us an element here; the CPU gemm reads the same codes */
        xq = malloc((size_t)m * Kd), xs = malloc(sizeof(float) * (size_t)m * kb);
        dx = cc_dev(env, NULL, (size_t)m * Kd), dxs = cc_dev(env, NULL, sizeof(float) * (size_t)m * kb);
        cc_ok(r, K->act_quant(CX, dxb, Kd, m, Kd, dx, Kd, dxs, kb), "act_quant");
        cc_get(env, xq, dx, (size_t)m * Kd);
        cc_get(env, xs, dxs, sizeof(float) * (size_t)m * kb);
    }
    const ms_dtype_t xdt = fp8x ? MS_DT_F8E4M3 : MS_DT_BF16;
    kern_mat_t wd = {dw, dsc, MS_DT_F8E4M3, rows, Kd}, wh = {w, sc, MS_DT_F8E4M3, rows, Kd};
    kern_gemm_t g = {.x = dx, .x_scale = dxs, .w = &wd, .y = dy, .xdt = xdt, .ydt = ydt, .m = m, .batch = 1,
                     .ldx = Kd, .ld_xs = kb, .ldy = n, .epi = silu ? KERN_EPI_SILU_MUL : KERN_EPI_NONE};
    /* "fp8 sk mc": both runs with gemm_fp8x.cu's multicast variant (read at every call); the stream-K kernel
     * itself still needs MS_GEMM_FP8X=1 (read once), else these run the grouped kernel as the other sk cases */
    const int mc = strstr(c->dtype, "mc") != NULL; /* "mc4": the 4-CTA cluster (MS_GEMM_FP8X_MC=4) */
    const char *mc_env = getenv("MS_GEMM_FP8X_MC");
    char *mc_prev = mc && mc_env ? strdup(mc_env) : NULL;
    if (mc) setenv("MS_GEMM_FP8X_MC", strstr(c->dtype, "mc4") ? "4" : "1", 1);
    cc_ok(r, K->gemm(CX, &g), "gemm");
    uint8_t *got = malloc((size_t)m * n * ye);
    cc_get(env, got, dy, (size_t)m * n * ye);
    if (fp8x) { /* the stream-K split must not change a bit run to run, and must write every element: again
                 * into a buffer of 0xff bytes (a NaN pattern), all of y compared */
        void *dy2 = cc_dev(env, NULL, (size_t)m * n * ye);
        uint8_t *got2 = malloc((size_t)m * n * ye);
        cc_ok(r, K->memset(CX, dy2, 0xff, (size_t)m * n * ye), "memset");
        g.y = dy2;
        cc_ok(r, K->gemm(CX, &g), "gemm again");
        cc_get(env, got2, dy2, (size_t)m * n * ye);
        if (memcmp(got, got2, (size_t)m * n * ye)) cc_check(r, 0, "second run bit-identical, every element written");
        g.y = dy;
        free(got2);
    }
    if (mc && mc_prev) setenv("MS_GEMM_FP8X_MC", mc_prev, 1);
    else if (mc) unsetenv("MS_GEMM_FP8X_MC");
    free(mc_prev);
    /* the sampled rows, gathered, on the CPU */
    int64_t ns = (int64_t)(1e9 / ((double)rows * Kd));
    ns = ns < 4 ? 4 : ns;
    ns = ns > m ? m : ns;
    uint8_t *sx = malloc((size_t)ns * Kd * 2), *sgot = malloc((size_t)ns * n * ye), *want = calloc((size_t)ns * n, ye);
    float *sxs = fp8x ? malloc(sizeof(float) * (size_t)ns * kb) : NULL;
    for (int64_t i = 0; i < ns; i++) {
        const int64_t row = ns > 1 ? i * (m - 1) / (ns - 1) : 0;
        if (fp8x) {
            memcpy(sx + i * Kd, xq + row * Kd, (size_t)Kd);
            memcpy(sxs + i * kb, xs + row * kb, sizeof(float) * (size_t)kb);
        } else {
            memcpy(sx + i * Kd * 2, xb + row * Kd, (size_t)Kd * 2);
        }
        memcpy(sgot + i * n * ye, got + row * n * ye, (size_t)n * ye);
    }
    g.x = sx, g.x_scale = sxs, g.w = &wh, g.y = want, g.m = (int32_t)ns;
    cc_ok(r, kern_cpu_ops.gemm(NULL, &g), "cpu gemm");
    const double mx = fp8x ? 16.0 / 256 : (silu ? 4.0 : 2.0) / 256;
    char what[64];
    snprintf(what, sizeof what, "y (%lld of %d rows)", (long long)ns, m);
    if (ydt == MS_DT_BF16) cc_cmp_bf16(r, what, (const bf16_t *)sgot, (const bf16_t *)want, ns * n, c->tol, mx);
    else cc_cmp_f32(r, what, (const float *)sgot, (const float *)want, ns * n, c->tol, 1e-5);
    free(xb), free(w), free(xq), free(sc), free(xs), free(got), free(sx), free(sgot), free(want), free(sxs);
}
