/* gemm.cu — y[m, 0..N) = x[m, 0..K) · Wᵀ for W [N, K] (kernels.h), fp32
 * accumulation, one rounding on store.
 *  - x BF16, W BF16, y BF16/F32: cuBLASLt (blas.h).
 *  - W F8E4M3 with 128×128 scale_inv, `dequant` mode: W is dequantized to
 *    BF16 (bf16(fp8 * scale), the CPU's rounding) a tile of rows at a time
 *    into the context workspace and each tile is one cuBLASLt GEMM writing
 *    its column slice of y; the whole weight is never expanded. The tile
 *    buffer is reused in stream order.
 *  - anything cuBLASLt cannot take (F32 x or W, odd alignments): a plain
 *    tiled fp32 kernel that reads every dtype directly.
 * Workspace layout (cx->ws, at least KERN_CUDA_WS_MIN, mem.cu):
 *   [cuBLASLt workspace GEMM_BLAS_WS | dequant tiles ...]. */
#include "common.cuh"
#include "blas.h"

#define GEMM_BLAS_WS ((size_t)32 << 20)
#define GEMM_TILE 16

__device__ static inline float gemm_w(const kern_mat_t w, int32_t n, int32_t k)
{
    const int64_t off = (int64_t)n * w.cols + k;
    switch (w.dtype) {
    case MS_DT_BF16: return cu_bf16_f(((const uint16_t *)w.data)[off]);
    case MS_DT_F32: return ((const float *)w.data)[off];
    default: {
        const int32_t sb_c = ((w.cols + KERN_FP8_BLOCK - 1) / KERN_FP8_BLOCK);
        const float s = w.scale_inv[(int64_t)(n / KERN_FP8_BLOCK) * sb_c + k / KERN_FP8_BLOCK];
        return cu_bf16_round(__fmul_rn(cu_fp8_f(((const uint8_t *)w.data)[off]), s));
    }
    }
}

/* the fallback: 16×16 output tiles through shared memory, fp32 sums */
__global__ static void gemm_simt_kernel(const void *x, ms_dtype_t xdt, int64_t ldx, kern_mat_t w, void *y,
                                        ms_dtype_t ydt, int64_t ldy, int32_t m)
{
    __shared__ float xs[GEMM_TILE][GEMM_TILE + 1], ws[GEMM_TILE][GEMM_TILE + 1];
    const int32_t tx = threadIdx.x, ty = threadIdx.y;
    const int32_t row = blockIdx.y * GEMM_TILE + ty, col = blockIdx.x * GEMM_TILE + tx;
    const int32_t K = w.cols, N = w.rows;
    float acc = 0.f;
    for (int32_t k0 = 0; k0 < K; k0 += GEMM_TILE) {
        const int32_t xr = blockIdx.y * GEMM_TILE + ty, kx = k0 + tx;
        float xv = 0.f;
        if (xr < m && kx < K)
            xv = xdt == MS_DT_BF16 ? cu_bf16_f(((const uint16_t *)x)[xr * ldx + kx]) : ((const float *)x)[xr * ldx + kx];
        xs[ty][tx] = xv;
        const int32_t wn = blockIdx.x * GEMM_TILE + ty;
        ws[ty][tx] = (wn < N && kx < K) ? gemm_w(w, wn, kx) : 0.f;
        __syncthreads();
#pragma unroll
        for (int32_t kk = 0; kk < GEMM_TILE; kk++) acc = fmaf(xs[ty][kk], ws[tx][kk], acc);
        __syncthreads();
    }
    if (row < m && col < N) {
        if (ydt == MS_DT_F32) ((float *)y)[row * ldy + col] = acc;
        else ((uint16_t *)y)[row * ldy + col] = cu_f_bf16(acc);
    }
}

/* rows [n0, n0+nt) of an fp8 weight -> bf16 tile [nt, K] */
__global__ static void gemm_dequant_kernel(kern_mat_t w, int32_t n0, int32_t nt, uint16_t *tile)
{
    const int32_t K = w.cols, sb_c = (K + KERN_FP8_BLOCK - 1) / KERN_FP8_BLOCK;
    const int64_t total = (int64_t)nt * K;
    const uint8_t *src = (const uint8_t *)w.data + (int64_t)n0 * K;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int32_t r = (int32_t)(i / K), c = (int32_t)(i % K);
        const float s = w.scale_inv[(int64_t)((n0 + r) / KERN_FP8_BLOCK) * sb_c + c / KERN_FP8_BLOCK];
        tile[i] = cu_f_bf16(__fmul_rn(cu_fp8_f(src[i]), s));
    }
}

static ms_status_t gemm_simt(kern_ctx_t *cx, const void *x, ms_dtype_t xdt, int64_t ldx, const kern_mat_t *w,
                             void *y, ms_dtype_t ydt, int64_t ldy, int32_t m)
{
    dim3 grid((unsigned)((w->rows + GEMM_TILE - 1) / GEMM_TILE), (unsigned)((m + GEMM_TILE - 1) / GEMM_TILE));
    gemm_simt_kernel<<<grid, dim3(GEMM_TILE, GEMM_TILE), 0, CU_STREAM(cx)>>>(x, xdt, ldx, *w, y, ydt, ldy, m);
    CU_LAUNCHED();
    return MS_OK;
}

static ms_status_t gemm_fp8_dequant(kern_ctx_t *cx, const void *x, int64_t ldx, const kern_mat_t *w, void *y,
                                    ms_dtype_t ydt, int64_t ldy, int32_t m)
{
    const int32_t K = w->cols, N = w->rows;
    const size_t tile_bytes = cx->ws_bytes > GEMM_BLAS_WS ? cx->ws_bytes - GEMM_BLAS_WS : 0;
    int64_t nt = (int64_t)(tile_bytes / ((size_t)K * 2)) / KERN_FP8_BLOCK * KERN_FP8_BLOCK;
    if (nt < KERN_FP8_BLOCK)
        return MS_ERR(MS_ERR_INVALID, "cuda gemm: workspace of %zu bytes too small to dequantize %d-wide fp8 tiles",
                      cx->ws_bytes, K);
    if (nt > N) nt = N;
    uint16_t *tile = (uint16_t *)((char *)cx->ws + GEMM_BLAS_WS);
    const size_t ysz = ms_dtype_size(ydt);
    for (int32_t n0 = 0; n0 < N; n0 += (int32_t)nt) {
        const int32_t rows = (int32_t)(N - n0 < nt ? N - n0 : nt);
        const int64_t elems = (int64_t)rows * K;
        const int64_t blocks = (elems + 255) / 256;
        gemm_dequant_kernel<<<(unsigned)(blocks < 8192 ? blocks : 8192), 256, 0, CU_STREAM(cx)>>>(*w, n0, rows, tile);
        CU_LAUNCHED();
        kern_cuda_mm_t mm = {m, rows, K, 1, x, MS_DT_BF16, ldx, 0, tile, MS_DT_BF16, K, 0,
                             (char *)y + (size_t)n0 * ysz, ydt, ldy, 0, KERN_CUDA_EPI_NONE};
        ms_status_t st = kern_cuda_blas_matmul(cx, &mm, cx->ws, GEMM_BLAS_WS);
        if (st == MS_ERR_UNSUPPORTED) {
            kern_mat_t tw = {tile, NULL, MS_DT_BF16, rows, K};
            st = gemm_simt(cx, x, MS_DT_BF16, ldx, &tw, (char *)y + (size_t)n0 * ysz, ydt, ldy, m);
        }
        MS_TRY(st);
    }
    return MS_OK;
}

extern "C" ms_status_t kern_cuda_gemm(kern_ctx_t *cx, const void *x, ms_dtype_t xdt, int64_t ldx,
                                      const kern_mat_t *w, void *y, ms_dtype_t ydt, int64_t ldy, int32_t m)
{
    const int32_t K = w->cols, N = w->rows;
    if (xdt != MS_DT_BF16 && xdt != MS_DT_F32)
        return MS_ERR(MS_ERR_UNSUPPORTED, "cuda gemm: x dtype %s not supported", ms_dtype_name(xdt));
    if (ydt != MS_DT_BF16 && ydt != MS_DT_F32)
        return MS_ERR(MS_ERR_UNSUPPORTED, "cuda gemm: y dtype %s not supported", ms_dtype_name(ydt));
    if (w->dtype != MS_DT_BF16 && w->dtype != MS_DT_F32 && w->dtype != MS_DT_F8E4M3)
        return MS_ERR(MS_ERR_UNSUPPORTED, "cuda gemm: weight dtype %s not supported", ms_dtype_name(w->dtype));
    if (w->dtype == MS_DT_F8E4M3 && !w->scale_inv)
        return MS_ERR(MS_ERR_INVALID, "cuda gemm: fp8 weight without scale_inv");
    if (m <= 0 || N <= 0) return MS_OK;
    if (K <= 0) return MS_ERR(MS_ERR_INVALID, "cuda gemm: K = %d", K);
    if (xdt == MS_DT_BF16 && w->dtype == MS_DT_BF16) {
        kern_cuda_mm_t mm = {m, N, K, 1, x, xdt, ldx, 0, w->data, w->dtype, K, 0, y, ydt, ldy, 0, KERN_CUDA_EPI_NONE};
        ms_status_t st = kern_cuda_blas_matmul(cx, &mm, cx->ws, cx->ws_bytes < GEMM_BLAS_WS ? cx->ws_bytes : GEMM_BLAS_WS);
        if (st != MS_ERR_UNSUPPORTED) return st;
    } else if (xdt == MS_DT_BF16 && w->dtype == MS_DT_F8E4M3) {
        return gemm_fp8_dequant(cx, x, ldx, w, y, ydt, ldy, m);
    }
    return gemm_simt(cx, x, xdt, ldx, w, y, ydt, ldy, m);
}
