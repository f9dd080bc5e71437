/* gemm.c — y = x · Wᵀ for W [out, in] in BF16, block-scaled FP8 e4m3 or F32;
 * x BF16 or F32; y BF16 or F32. fp32 accumulation, one rounding on store.
 *
 * Loop order: x is converted to fp32 once; each W row is converted (fp8:
 * dequantized per 128-block and rounded to bf16, see kernels.h) once and
 * dotted with every x row, so conversion cost is O(out*in) and the inner loop
 * runs over contiguous memory. Also home of kern_cpu_mat_row, the weight-row
 * reader the attention and MoE kernels share. */
#include "cpu.h"

#include <pthread.h>
#include <stdlib.h>

static float g_fp8_lut[256];
static pthread_once_t g_fp8_once = PTHREAD_ONCE_INIT;

static void fp8_lut_init(void)
{
    for (int i = 0; i < 256; i++) g_fp8_lut[i] = fp8e4m3_to_f32((fp8e4m3_t)i);
}

void kern_cpu_mat_row(const kern_mat_t *w, int64_t mat, int32_t r, int32_t c0, int32_t n, float *out)
{
    int64_t off = (mat * w->rows + r) * (int64_t)w->cols + c0;
    switch (w->dtype) {
    case MS_DT_BF16: {
        const bf16_t *p = (const bf16_t *)w->data + off;
        for (int32_t i = 0; i < n; i++) out[i] = bf16_to_f32(p[i]);
        break;
    }
    case MS_DT_F32: {
        const float *p = (const float *)w->data + off;
        for (int32_t i = 0; i < n; i++) out[i] = p[i];
        break;
    }
    case MS_DT_F8E4M3: {
        pthread_once(&g_fp8_once, fp8_lut_init);
        const uint8_t *p = (const uint8_t *)w->data + off;
        int32_t sb_r = kern_fp8_blocks(w->rows), sb_c = kern_fp8_blocks(w->cols);
        const float *sc = w->scale_inv + mat * sb_r * sb_c + (int64_t)(r / KERN_FP8_BLOCK) * sb_c;
        for (int32_t i = 0; i < n; i++)
            out[i] = bf16_round(g_fp8_lut[p[i]] * sc[(c0 + i) / KERN_FP8_BLOCK]);
        break;
    }
    default:
        for (int32_t i = 0; i < n; i++) out[i] = 0;
        break;
    }
}

ms_status_t kern_cpu_gemm(kern_ctx_t *cx, const void *x, ms_dtype_t xdt, int64_t ldx, const kern_mat_t *w, void *y,
                          ms_dtype_t ydt, int64_t ldy, int32_t m)
{
    const int32_t K = w->cols, N = w->rows;
    if (xdt != MS_DT_BF16 && xdt != MS_DT_F32)
        return MS_ERR(MS_ERR_UNSUPPORTED, "gemm: x dtype %s not supported", ms_dtype_name(xdt));
    if (ydt != MS_DT_BF16 && ydt != MS_DT_F32)
        return MS_ERR(MS_ERR_UNSUPPORTED, "gemm: y dtype %s not supported", ms_dtype_name(ydt));
    if (w->dtype != MS_DT_BF16 && w->dtype != MS_DT_F32 && w->dtype != MS_DT_F8E4M3)
        return MS_ERR(MS_ERR_UNSUPPORTED, "gemm: weight dtype %s not supported", ms_dtype_name(w->dtype));
    if (w->dtype == MS_DT_F8E4M3 && !w->scale_inv) return MS_ERR(MS_ERR_INVALID, "gemm: fp8 weight without scale_inv");
    if (m <= 0 || N <= 0) return MS_OK;

    float *xf = malloc(sizeof(float) * ((size_t)m * K + K));
    if (!xf) return MS_ERR(MS_ERR_NOMEM, "gemm: cannot allocate %d x %d fp32 staging", m, K);
    float *wrow = xf + (size_t)m * K;
    for (int32_t i = 0; i < m; i++) {
        if (xdt == MS_DT_BF16) kern_cpu_bf16_to_f32((const bf16_t *)x + i * ldx, xf + (size_t)i * K, K);
        else for (int32_t k = 0; k < K; k++) xf[(size_t)i * K + k] = ((const float *)x)[i * ldx + k];
    }
    for (int32_t n = 0; n < N; n++) {
        kern_cpu_mat_row(w, 0, n, 0, K, wrow);
        if (ydt == MS_DT_F32) {
            float *yo = (float *)y + n;
            for (int32_t i = 0; i < m; i++) yo[i * ldy] = kern_cpu_dot(xf + (size_t)i * K, wrow, K);
        } else {
            bf16_t *yo = (bf16_t *)y + n;
            for (int32_t i = 0; i < m; i++) yo[i * ldy] = f32_to_bf16(kern_cpu_dot(xf + (size_t)i * K, wrow, K));
        }
    }
    free(xf);
    return MS_OK;
}
