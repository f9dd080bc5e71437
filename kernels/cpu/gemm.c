/* gemm.c — the GEMM op (kernels.h, kern_gemm_t): y = x · Wᵀ per batch, for W
 * [out, in] in BF16, block-scaled FP8 e4m3 or F32 (optionally stored
 * transposed or with a row stride); x BF16, F32, or FP8 with per-token
 * 128-channel scales (the FP8×FP8 mode); y BF16 or F32; an optional fused
 * SiLU·mul epilogue over a fused gate|up weight. fp32 accumulation, one
 * rounding on store.
 *
 * Loop order: x is converted to fp32 once per batch; each W row is converted
 * (fp8: dequantized per 128-block and rounded to bf16, see kernels.h; in the
 * FP8×FP8 mode kept as raw e4m3 values, scaled per K block) once and dotted
 * with every x row, so conversion cost is O(out*in) and the inner loop runs
 * over contiguous memory. */
#include "cpu.h"

#include <pthread.h>
#include <stdlib.h>

static float g_fp8_lut[256];
static pthread_once_t g_fp8_once = PTHREAD_ONCE_INIT;

static void fp8_lut_init(void)
{
    for (int i = 0; i < 256; i++) g_fp8_lut[i] = fp8e4m3_to_f32((fp8e4m3_t)i);
}

const float *kern_cpu_fp8_lut(void)
{
    pthread_once(&g_fp8_once, fp8_lut_init);
    return g_fp8_lut;
}

/* Logical row n (K values) of the weight whose storage starts at `data` (scales at `sc`) as fp32.
 * raw = 1 (FP8×FP8 mode): the e4m3 values without their scales. */
static void w_row(const kern_mat_t *w, const void *data, const float *sc, int64_t ldw, int trans, int32_t n,
                  int32_t K, int raw, float *out)
{
    switch (w->dtype) {
    case MS_DT_BF16: {
        const bf16_t *p = data;
        if (trans) for (int32_t k = 0; k < K; k++) out[k] = bf16_to_f32(p[(int64_t)k * ldw + n]);
        else kern_cpu_bf16_to_f32(p + (int64_t)n * ldw, out, K);
        break;
    }
    case MS_DT_F32: {
        const float *p = data;
        for (int32_t k = 0; k < K; k++) out[k] = trans ? p[(int64_t)k * ldw + n] : p[(int64_t)n * ldw + k];
        break;
    }
    case MS_DT_F8E4M3: {
        const float *lut = kern_cpu_fp8_lut();
        const uint8_t *p = (const uint8_t *)data + (int64_t)n * ldw;
        const float *s = sc + (int64_t)(n / KERN_FP8_BLOCK) * kern_fp8_blocks((int32_t)ldw);
        if (raw) for (int32_t k = 0; k < K; k++) out[k] = lut[p[k]];
        else for (int32_t k = 0; k < K; k++) out[k] = bf16_round(lut[p[k]] * s[k / KERN_FP8_BLOCK]);
        break;
    }
    default:
        for (int32_t k = 0; k < K; k++) out[k] = 0;
        break;
    }
}

/* FP8×FP8: per 128-wide K block an fp32 sum of raw products, then scaled by both block scales. */
static float dot_fp8(const float *x, const float *xs, const float *w, const float *ws, int32_t K)
{
    float acc = 0;
    for (int32_t k0 = 0, b = 0; k0 < K; k0 += KERN_FP8_BLOCK, b++) {
        int32_t n = K - k0 < KERN_FP8_BLOCK ? K - k0 : KERN_FP8_BLOCK;
        acc += kern_cpu_dot(x + k0, w + k0, n) * (xs[b] * ws[b]);
    }
    return acc;
}


ms_status_t kern_cpu_gemm_ex(kern_ctx_t *cx, const kern_gemm_t *g)
{
    (void)cx;
    MS_TRY(kern_gemm_check(g));
    const kern_mat_t *w = g->w;
    const int silu = g->epi == KERN_EPI_SILU_MUL, fp8x = g->xdt == MS_DT_F8E4M3;
    const int32_t K = w->cols, N = silu ? w->rows / 2 : w->rows, m = g->m, batch = g->batch > 0 ? g->batch : 1;
    const int64_t ldw = g->ldw ? g->ldw : (g->w_trans ? w->rows : w->cols);
    const size_t xsz = ms_dtype_size(g->xdt), ysz = ms_dtype_size(g->ydt), wsz = ms_dtype_size(w->dtype);
    if (m <= 0 || N <= 0) return MS_OK;

    float *xf = malloc(sizeof(float) * ((size_t)m * K + 2 * (size_t)K));
    if (!xf) return MS_ERR(MS_ERR_NOMEM, "gemm: cannot allocate %d x %d fp32 staging", m, K);
    float *wg = xf + (size_t)m * K, *wu = wg + K;
    const float *lut = kern_cpu_fp8_lut();
    for (int32_t b = 0; b < batch; b++) {
        const char *xb = (const char *)g->x + (size_t)(b * g->bsx) * xsz;
        const char *wb = (const char *)w->data + (size_t)(b * g->bsw) * wsz;
        const float *wsb = w->scale_inv ? w->scale_inv + (g->bsw ? (int64_t)b * kern_fp8_blocks(w->rows) *
                                                                      kern_fp8_blocks((int32_t)ldw) : 0) : NULL;
        const float *xsb = fp8x ? g->x_scale + b * g->bs_xs : NULL;
        char *yb = (char *)g->y + (size_t)(b * g->bsy) * ysz;
        for (int32_t i = 0; i < m; i++) {
            float *xr = xf + (size_t)i * K;
            if (g->xdt == MS_DT_BF16) kern_cpu_bf16_to_f32((const bf16_t *)xb + i * g->ldx, xr, K);
            else if (g->xdt == MS_DT_F32) for (int32_t k = 0; k < K; k++) xr[k] = ((const float *)xb)[i * g->ldx + k];
            else for (int32_t k = 0; k < K; k++) xr[k] = lut[((const uint8_t *)xb)[i * g->ldx + k]];
        }
        for (int32_t n = 0; n < N; n++) {
            w_row(w, wb, wsb, ldw, g->w_trans, n, K, fp8x, wg);
            if (silu) w_row(w, wb, wsb, ldw, g->w_trans, n + N, K, fp8x, wu);
            const int64_t sbc = kern_fp8_blocks((int32_t)ldw);
            const float *sg = fp8x ? wsb + (int64_t)(n / KERN_FP8_BLOCK) * sbc : NULL;
            const float *su = fp8x ? wsb + (int64_t)((n + N) / KERN_FP8_BLOCK) * sbc : NULL;
            for (int32_t i = 0; i < m; i++) {
                const float *xr = xf + (size_t)i * K, *xs = fp8x ? xsb + i * g->ld_xs : NULL;
                float acc = fp8x ? dot_fp8(xr, xs, wg, sg, K) : kern_cpu_dot(xr, wg, K);
                if (silu) {
                    float up = fp8x ? dot_fp8(xr, xs, wu, su, K) : kern_cpu_dot(xr, wu, K);
                    ((bf16_t *)yb)[i * g->ldy + n] = kern_cpu_silu_mul1(bf16_round(acc), bf16_round(up));
                } else if (g->ydt == MS_DT_F32) {
                    ((float *)yb)[i * g->ldy + n] = acc;
                } else {
                    ((bf16_t *)yb)[i * g->ldy + n] = f32_to_bf16(acc);
                }
            }
        }
    }
    free(xf);
    return MS_OK;
}

ms_status_t kern_cpu_gemm(kern_ctx_t *cx, const void *x, ms_dtype_t xdt, int64_t ldx, const kern_mat_t *w, void *y,
                          ms_dtype_t ydt, int64_t ldy, int32_t m)
{
    kern_gemm_t g = {.x = x, .xdt = xdt, .ldx = ldx, .w = w, .y = y, .ydt = ydt, .ldy = ldy, .m = m};
    return kern_cpu_gemm_ex(cx, &g);
}
