/* gemm.cu — the gemm op on the kern_gemm_t descriptor (kernels.h): per batch
 * b, y_b = x_b · W_bᵀ with row strides, batch strides, a transposed or
 * row-strided W, the fused SiLU·mul epilogue and the FP8×FP8 mode; fp32
 * accumulation, one rounding on store, as kernels/cpu/gemm.c.
 *  - x BF16, W BF16 (either storage order): one strided-batched cuBLASLt call
 *    (blas.h) for all batches.
 *  - W F8E4M3 with 128×128 scale_inv, x BF16 (`dequant` mode), m <= 128 and
 *    TMA-able strides (batch 1, K a multiple of 128): gemm_fp8w.cu's
 *    weight-streaming kernel (reads W once, dequantizes in registers, BF16
 *    wgmma; same per-element numerics, another summation order).
 *  - Other `dequant` calls: W is dequantized to BF16 (bf16(fp8 * scale), the CPU's rounding) a tile of
 *    rows at a time, all batches at once, into scratch; each tile is one
 *    batched cuBLASLt GEMM writing its column slice of y. The whole weight is
 *    never expanded.
 *  - x F8E4M3 with act_quant's 1×128 scales and W F8E4M3 (`fp8` mode), batch 1,
 *    contiguous rows, K a multiple of 128, y BF16, m <= 128, opt-in
 *    (MS_GEMM_FP8X=auto: m <= 64 and K >= 4096, where it measured faster; see
 *    gemm_fp8x_sk_on): gemm_fp8x.cu's stream-K decode
 *    kernel (every SM streams weights; deterministic partial-tile sums in the
 *    kernel; SiLU·mul fused; act_quant's scale layout as is), the grouped
 *    kernel's numerics. MS_GEMM_FP8X_MC=1 (or 4) on top runs its cluster
 *    variant, 2 (4) CTAs sharing the x block by TMA multicast (not yet run on
 *    a GPU).
 *  - The same at m > 128 (or what gemm_fp8x.cu declines): the FP8 grouped expert
 *    kernel (moe_gemm_fp8.cu) as one slot of m rows, SiLU·mul fused in its
 *    registers, reading act_quant's row-major scales as they are (its producer's
 *    second warp copies each chunk's column: no transpose kernel before it).
 *    Its wgmma sums a 128-K block's products in the tensor core's own order
 *    and precision before the per-block promotion (DeepGEMM's numerics), so
 *    it matches the CPU to a stated tolerance, not bit for bit.
 *  - Other `fp8` calls: our own SIMT kernel, exactly the CPU's blocking (per 128-wide K block an fp32 sum
 *    of raw e4m3 products, then × x_scale·w_scale into the fp32 accumulator).
 *    cuBLASLt 13 has VEC128/BLK128x128 scale modes, but its Hopper kernels
 *    promote partial sums on their own schedule; a kernel of ours keeps the
 *    blocking the CPU reference (and DeepSeek's fp8_gemm) defines.
 *  - F32 x with BF16 W and 16-byte aligned operands (absorbed MLA's W_UV): gemm_f32x.cu, tensor cores over
 *    an exact three-way bf16 split of x.
 *  - Other F32 x or W, or what cuBLASLt declines: the register-blocked SIMT gemm_tiled_kernel.
 *  - SiLU·mul (fused gate|up W of 2n rows): the GEMM writes the 2n bf16 sums
 *    (= bf16(g), bf16(u): the CPU's first rounding) to scratch, then one pass
 *    writes bf16(bf16(silu(g))·u) into y. cuBLASLt has no epilogue with those
 *    roundings.
 * Scratch: the gemm op uses cx->ws as [cuBLASLt GEMM_BLAS_WS | scratch];
 * moe_experts passes its own scratch to kern_cuda_gemm_run. */
#include "common.cuh"
#include "blas.h"
#include "gemm_f32x.h"
#include "moe_gemm.h"

#define GEMM_TILE 16

/* A GEMM with every stride resolved (elements of each operand's dtype; scales in floats). */
struct gemm_args {
    const void *x;
    const float *xs;
    ms_dtype_t xdt;
    int64_t ldx, bsx, ld_xs, bs_xs;
    const void *w;
    const float *ws;
    ms_dtype_t wdt;
    int64_t ldw, bsw, bs_ws;
    int32_t w_trans, sbc; /* sbc: scale grid columns = ceil(ldw/128) */
    void *y;
    ms_dtype_t ydt;
    int64_t ldy, bsy;
    int32_t m, n, k, batch;
};

__device__ static inline float gemm_x(const gemm_args &a, const void *xb, int32_t i, int32_t k)
{
    const int64_t off = (int64_t)i * a.ldx + k;
    switch (a.xdt) {
    case MS_DT_BF16: return cu_bf16_f(((const uint16_t *)xb)[off]);
    case MS_DT_F32: return ((const float *)xb)[off];
    default: return cu_fp8_f(((const uint8_t *)xb)[off]);
    }
}

/* W element (n, k); FP8: dequantized to its bf16 value, or raw (the FP8×FP8 mode) */
__device__ static inline float gemm_w(const gemm_args &a, const void *wb, const float *wsb, int32_t n, int32_t k,
                                      bool raw)
{
    const int64_t off = a.w_trans ? (int64_t)k * a.ldw + n : (int64_t)n * a.ldw + k;
    switch (a.wdt) {
    case MS_DT_BF16: return cu_bf16_f(((const uint16_t *)wb)[off]);
    case MS_DT_F32: return ((const float *)wb)[off];
    default: {
        const float v = cu_fp8_f(((const uint8_t *)wb)[off]);
        if (raw) return v;
        return cu_bf16_round(__fmul_rn(v, wsb[(int64_t)(n / KERN_FP8_BLOCK) * a.sbc + k / KERN_FP8_BLOCK]));
    }
    }
}

/* y_b[row, col] = v in y's dtype (one rounding for bf16); out-of-range elements are not written */
__device__ static inline void gemm_store(const gemm_args &a, int32_t b, int32_t row, int32_t col, float v)
{
    if (row >= a.m || col >= a.n) return;
    const int64_t o = (int64_t)b * a.bsy + (int64_t)row * a.ldy + col;
    if (a.ydt == MS_DT_F32) ((float *)a.y)[o] = v;
    else ((uint16_t *)a.y)[o] = cu_f_bf16(v);
}

/* The fp8 mode off the grouped kernel: 16×16 output tiles through shared memory, gridDim.z = batch, with
 * exactly the CPU's K blocking (per 128-wide block an fp32 sum of raw e4m3 products, then both scales). */
__global__ static void gemm_fp8x_simt_kernel(gemm_args a)
{
    cu_pdl_enter();
    __shared__ float xt[GEMM_TILE][GEMM_TILE + 1], wt[GEMM_TILE][GEMM_TILE + 1];
    const int32_t tx = threadIdx.x, ty = threadIdx.y, b = blockIdx.z;
    const int32_t row = blockIdx.y * GEMM_TILE + ty, col = blockIdx.x * GEMM_TILE + tx;
    const void *xb = (const char *)a.x + (size_t)b * a.bsx * cu_dt_size(a.xdt);
    const void *wb = (const char *)a.w + (size_t)b * a.bsw * cu_dt_size(a.wdt);
    const float *wsb = a.ws ? a.ws + b * a.bs_ws : NULL;
    const float *xsb = a.xs + b * a.bs_xs;
    float acc = 0.f, part = 0.f;
    for (int32_t k0 = 0; k0 < a.k; k0 += GEMM_TILE) {
        const int32_t xr = blockIdx.y * GEMM_TILE + ty, kx = k0 + tx, wn = blockIdx.x * GEMM_TILE + ty;
        xt[ty][tx] = (xr < a.m && kx < a.k) ? gemm_x(a, xb, xr, kx) : 0.f;
        wt[ty][tx] = (wn < a.n && kx < a.k) ? gemm_w(a, wb, wsb, wn, kx, true) : 0.f;
        __syncthreads();
#pragma unroll
        for (int32_t kk = 0; kk < GEMM_TILE; kk++) part = __fadd_rn(part, __fmul_rn(xt[ty][kk], wt[tx][kk]));
        const int32_t k1 = k0 + GEMM_TILE;
        if ((k1 % KERN_FP8_BLOCK) == 0 || k1 >= a.k) { /* end of a 128-wide K block: promote with both scales */
            const int32_t kb = k0 / KERN_FP8_BLOCK;
            if (row < a.m && col < a.n) {
                const float s = __fmul_rn(xsb[(int64_t)row * a.ld_xs + kb],
                                          wsb[(int64_t)(col / KERN_FP8_BLOCK) * a.sbc + kb]);
                acc = __fadd_rn(acc, __fmul_rn(part, s));
            }
            part = 0.f;
        }
        __syncthreads();
    }
    gemm_store(a, b, row, col, acc);
}

/* Register-blocked fp32 GEMM for what has no tensor-core path (F32 x or W, e.g. absorbed MLA's
 * att = o_lat·W_UVᵀ with fp32 latents): 64×64 output tiles of 256 threads, 4×4 outputs a thread at rows
 * ty + 16i and columns tx + 16j (broadcast and conflict-free shared reads), K in steps of 16. Each output
 * is one fmaf chain in ascending k, as the CPU's; 16× fewer shared-memory reads per
 * FMA than the 16×16 kernel (370 → ~40 µs for W_UV at 128 rows × 128 heads on the H200). */
#define GT_MN 64
#define GT_K 16
__global__ static void __launch_bounds__(256) gemm_tiled_kernel(gemm_args a)
{
    cu_pdl_enter();
    __shared__ float xt[GT_K][GT_MN + 4], wt[GT_K][GT_MN + 4];
    const int32_t t = threadIdx.x, tx = t % 16, ty = t / 16, b = blockIdx.z;
    const int32_t r0 = blockIdx.y * GT_MN, c0 = blockIdx.x * GT_MN;
    const void *xb = (const char *)a.x + (size_t)b * a.bsx * cu_dt_size(a.xdt);
    const void *wb = (const char *)a.w + (size_t)b * a.bsw * cu_dt_size(a.wdt);
    const float *wsb = a.ws ? a.ws + b * a.bs_ws : NULL;
    float acc[4][4] = {};
    for (int32_t k0 = 0; k0 < a.k; k0 += GT_K) {
#pragma unroll
        for (int32_t r = 0; r < 4; r++) { /* 1024 elements of each tile, k fastest (W transposed: n fastest) */
            const int32_t e = t + 256 * r, i = e / GT_K, kk = e % GT_K;
            const int32_t xr = r0 + i, kx = k0 + kk;
            xt[kk][i] = (xr < a.m && kx < a.k) ? gemm_x(a, xb, xr, kx) : 0.f;
            const int32_t wn = a.w_trans ? e % GT_MN : i, wk = a.w_trans ? e / GT_MN : kk;
            const int32_t n = c0 + wn, kw = k0 + wk;
            wt[wk][wn] = (n < a.n && kw < a.k) ? gemm_w(a, wb, wsb, n, kw, false) : 0.f;
        }
        __syncthreads();
#pragma unroll
        for (int32_t kk = 0; kk < GT_K; kk++) {
            float xv[4], wv[4];
#pragma unroll
            for (int32_t i = 0; i < 4; i++) xv[i] = xt[kk][ty + 16 * i], wv[i] = wt[kk][tx + 16 * i];
#pragma unroll
            for (int32_t i = 0; i < 4; i++)
#pragma unroll
                for (int32_t j = 0; j < 4; j++) acc[i][j] = fmaf(xv[i], wv[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int32_t i = 0; i < 4; i++)
#pragma unroll
        for (int32_t j = 0; j < 4; j++) gemm_store(a, b, r0 + ty + 16 * i, c0 + tx + 16 * j, acc[i][j]);
}

static ms_status_t gemm_simt(kern_ctx_t *cx, const gemm_args &a)
{
    if (a.xdt == MS_DT_F32 && a.wdt == MS_DT_BF16 && !a.w_trans &&
        cu_gemm_f32x_fits(a.ldx, a.bsx, a.x, a.ldw, a.bsw, a.w, a.k))
        return cu_gemm_f32x(CU_STREAM(cx), (const float *)a.x, a.ldx, a.bsx, (const uint16_t *)a.w, a.ldw, a.bsw, a.y,
                            a.ydt == MS_DT_F32, a.ldy, a.bsy, a.m, a.n, a.k, a.batch);
    if (a.xdt == MS_DT_F8E4M3) { /* the fp8 mode's K blocking: the 16x16 kernel */
        dim3 grid((unsigned)((a.n + GEMM_TILE - 1) / GEMM_TILE), (unsigned)((a.m + GEMM_TILE - 1) / GEMM_TILE),
                  (unsigned)a.batch);
        cu_launch(gemm_fp8x_simt_kernel, grid, dim3(GEMM_TILE, GEMM_TILE), 0, CU_STREAM(cx), a);
    } else {
        dim3 grid((unsigned)((a.n + GT_MN - 1) / GT_MN), (unsigned)((a.m + GT_MN - 1) / GT_MN), (unsigned)a.batch);
        cu_launch(gemm_tiled_kernel, grid, 256, 0, CU_STREAM(cx), a);
    }
    CU_LAUNCHED();
    return MS_OK;
}

/* rows [n0, n0+nt) of every batch's fp8 weight -> bf16 tile [batch, nt, K] (gridDim.y = batch) */
__global__ static void gemm_dequant_kernel(gemm_args a, int32_t n0, int32_t nt, uint16_t *tile)
{
    cu_pdl_enter();
    const int32_t K = a.k, b = blockIdx.y;
    const int64_t total = (int64_t)nt * K;
    const uint8_t *src = (const uint8_t *)a.w + (size_t)b * a.bsw + (int64_t)n0 * a.ldw;
    const float *sc = a.ws + b * a.bs_ws;
    uint16_t *dst = tile + (size_t)b * total;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int32_t r = (int32_t)(i / K), c = (int32_t)(i % K);
        const float s = sc[(int64_t)((n0 + r) / KERN_FP8_BLOCK) * a.sbc + c / KERN_FP8_BLOCK];
        dst[i] = cu_f_bf16(__fmul_rn(cu_fp8_f(src[(int64_t)r * a.ldw + c]), s));
    }
}

static size_t gemm_blas_ws(const kern_ctx_t *cx) { return cx->ws_bytes < KERN_CUDA_BLAS_WS ? cx->ws_bytes : KERN_CUDA_BLAS_WS; }

static ms_status_t gemm_fp8_dequant(kern_ctx_t *cx, const gemm_args &a, void *scratch, size_t scratch_bytes)
{
    const int32_t K = a.k, N = a.n;
    int64_t nt = (int64_t)(scratch_bytes / ((size_t)K * 2 * (size_t)a.batch)) / KERN_FP8_BLOCK * KERN_FP8_BLOCK;
    if (nt > N) nt = N;
    if (nt < KERN_FP8_BLOCK && nt < N)
        return MS_ERR(MS_ERR_INVALID, "cuda gemm: %zu bytes of scratch cannot hold %d x %d-row dequantized fp8 tiles "
                      "of width %d", scratch_bytes, a.batch, KERN_FP8_BLOCK, K);
    uint16_t *tile = (uint16_t *)scratch;
    const size_t ysz = ms_dtype_size(a.ydt);
    for (int32_t n0 = 0; n0 < N; n0 += (int32_t)nt) {
        const int32_t rows = (int32_t)(N - n0 < nt ? N - n0 : nt);
        const int64_t blocks = ((int64_t)rows * K + 255) / 256;
        cu_launch(gemm_dequant_kernel,
                  dim3((unsigned)(blocks < 4096 ? blocks : 4096), (unsigned)a.batch), 256, 0, CU_STREAM(cx), a, n0,
                  rows, tile);
        CU_LAUNCHED();
        void *y = (char *)a.y + (size_t)n0 * ysz;
        kern_cuda_mm_t mm = {a.m, rows, K, a.batch, a.x, a.xdt, a.ldx, a.bsx, tile, MS_DT_BF16, K,
                             (int64_t)rows * K, 0, y, a.ydt, a.ldy, a.bsy};
        ms_status_t st = kern_cuda_blas_matmul(cx, &mm, cx->ws, gemm_blas_ws(cx));
        if (st == MS_ERR_UNSUPPORTED) {
            gemm_args t = a;
            t.w = tile, t.ws = NULL, t.wdt = MS_DT_BF16, t.ldw = K, t.bsw = (int64_t)rows * K, t.w_trans = 0;
            t.n = rows, t.y = y;
            st = gemm_simt(cx, t);
        }
        MS_TRY(st);
    }
    return MS_OK;
}

static int gemm_fp8x_fits(const gemm_args &a, int silu)
{
    return a.xdt == MS_DT_F8E4M3 && a.wdt == MS_DT_F8E4M3 && a.ws && a.batch == 1 && !a.w_trans &&
           a.ydt == MS_DT_BF16 && a.k % KERN_FP8_BLOCK == 0 && a.ldx == a.k && a.ldw == a.k &&
           a.ld_xs >= a.k / KERN_FP8_BLOCK && (uintptr_t)a.x % 16 == 0 && (uintptr_t)a.w % 16 == 0 &&
           (!silu || (a.n / 2) % 64 == 0);
}

/* Where the fp8 mode's stream-K decode kernel runs. MS_GEMM_FP8X=auto: where it measured faster than the
 * grouped kernel (kern_cuda_gemm_fp8x_wins: m <= 64 and K >= 4096); =1 wherever it fits (m <= 128: the harness
 * and the bench reach its other shapes so); unset or 0: nowhere, the grouped kernel. Opt-in until a
 * whole-model decode step has run with it on an H200 (its harness cases pass there, but its first version
 * passed them too and then raised an illegal instruction inside the model); then `auto` becomes the default.
 * Read once. */
static bool gemm_fp8x_sk_on(int32_t m, int32_t k)
{
    static const int mode = cu_env_is("MS_GEMM_FP8X", "1") ? 1 : cu_env_is("MS_GEMM_FP8X", "auto") ? 2 : 0;
    return mode == 1 || (mode == 2 && kern_cuda_gemm_fp8x_wins(m, k));
}

/* the fp8 mode (gemm_fp8x_fits holds): gemm_fp8x.cu's stream-K kernel where gemm_fp8x_sk_on says, else (or
 * when it does not fit, or the bench forces a grouped tile) the grouped kernel; silu: y = SiLU·mul of the
 * fused gate|up */
static ms_status_t gemm_fp8x(kern_ctx_t *cx, const gemm_args &a, int silu, void *scratch, size_t scratch_bytes)
{
    if (gemm_fp8x_sk_on(a.m, a.k) && !kern_cuda_moe_fp8_tile_forced() &&
        kern_cuda_gemm_fp8x_fits(a.m, a.n, a.k, silu, a.x, a.xs, a.ld_xs, a.w, scratch_bytes))
        return kern_cuda_gemm_fp8x(cx, (const uint8_t *)a.x, a.xs, a.ld_xs, a.m, (const uint8_t *)a.w, a.ws, a.n, a.k,
                                   silu, (bf16_t *)a.y, a.ldy, scratch, scratch_bytes);
    return kern_cuda_moe_fp8_dense(cx, (const uint8_t *)a.x, a.xs, a.ld_xs, a.m, (const uint8_t *)a.w, a.ws, a.n, a.k,
                                   silu, (bf16_t *)a.y, (int32_t)a.ldy, scratch, scratch_bytes);
}

/* MS_GEMM_FP8W=0 turns the weight-streaming decode kernel off (the dequantized-tile path instead): a switch
 * to tell its numerics from the rest of the FP8 path on a real model. Read once. */
static bool gemm_fp8w_on(void)
{
    static const bool on = !cu_env_is("MS_GEMM_FP8W", "0");
    return on;
}

/* y = x·Wᵀ for resolved args, no epilogue */
static ms_status_t gemm_plain(kern_ctx_t *cx, const gemm_args &a, void *scratch, size_t scratch_bytes)
{
    if (gemm_fp8x_fits(a, 0)) return gemm_fp8x(cx, a, 0, scratch, scratch_bytes);
    if (a.xdt == MS_DT_F8E4M3) return gemm_simt(cx, a);
    if (a.xdt == MS_DT_BF16 && a.wdt == MS_DT_F8E4M3 && a.batch == 1 && !a.w_trans && gemm_fp8w_on() &&
        kern_cuda_gemm_fp8w_fits(a.m, a.n, a.k, a.ldx, a.ldw, a.x, a.w, a.ydt, scratch_bytes))
        return kern_cuda_gemm_fp8w(cx, (const bf16_t *)a.x, a.ldx, a.m, (const uint8_t *)a.w, a.ws, a.ldw, a.n, a.k,
                                   a.y, a.ydt, a.ldy, scratch, scratch_bytes);
    if (a.xdt == MS_DT_BF16 && a.wdt == MS_DT_F8E4M3) return gemm_fp8_dequant(cx, a, scratch, scratch_bytes);
    if (a.xdt == MS_DT_BF16 && a.wdt == MS_DT_BF16) {
        kern_cuda_mm_t mm = {a.m, a.n, a.k, a.batch, a.x, a.xdt, a.ldx, a.bsx, a.w, a.wdt, a.ldw, a.bsw, a.w_trans,
                             a.y, a.ydt, a.ldy, a.bsy};
        ms_status_t st = kern_cuda_blas_matmul(cx, &mm, cx->ws, gemm_blas_ws(cx));
        if (st != MS_ERR_UNSUPPORTED) return st;
    }
    return gemm_simt(cx, a);
}

/* y[b, i, j] = silu_mul1(t[b, i, j], t[b, i, n + j]) for j < n; t is [batch, m, 2n] bf16 */
__global__ static void gemm_silu_kernel(const uint16_t *t, int32_t m, int32_t n, uint16_t *y, int64_t ldy, int64_t bsy)
{
    cu_pdl_enter();
    const int32_t b = blockIdx.z, i = blockIdx.y;
    const uint16_t *tr = t + ((size_t)b * m + i) * 2 * (size_t)n;
    uint16_t *yr = y + (size_t)b * bsy + (size_t)i * ldy;
    for (int32_t j = blockIdx.x * blockDim.x + threadIdx.x; j < n; j += gridDim.x * blockDim.x)
        yr[j] = cu_silu_mul1(cu_bf16_f(tr[j]), cu_bf16_f(tr[n + j]));
}

extern "C" ms_status_t kern_cuda_gemm_silu_pass(kern_ctx_t *cx, const bf16_t *t, int32_t m, int32_t n, int32_t batch,
                                                bf16_t *y, int64_t ldy, int64_t bsy)
{
    if (m <= 0 || n <= 0 || batch <= 0) return MS_OK;
    dim3 grid((unsigned)((n + 255) / 256 < 64 ? (n + 255) / 256 : 64), (unsigned)m, (unsigned)batch);
    cu_launch(gemm_silu_kernel, grid, 256, 0, CU_STREAM(cx), t, m, n, y, ldy, bsy);
    CU_LAUNCHED();
    return MS_OK;
}

extern "C" ms_status_t kern_cuda_gemm_run(kern_ctx_t *cx, const kern_gemm_t *g, int64_t bs_wscale, void *scratch,
                                          size_t scratch_bytes)
{
    const kern_mat_t *w = g->w;
    const int silu = g->epi == KERN_EPI_SILU_MUL;
    gemm_args a;
    a.x = g->x, a.xs = g->x_scale, a.xdt = g->xdt, a.ldx = g->ldx, a.bsx = g->bsx, a.ld_xs = g->ld_xs, a.bs_xs = g->bs_xs;
    a.w = w->data, a.ws = w->scale_inv, a.wdt = w->dtype, a.w_trans = g->w_trans ? 1 : 0;
    a.ldw = g->ldw ? g->ldw : (g->w_trans ? w->rows : w->cols);
    a.bsw = g->bsw, a.bs_ws = bs_wscale, a.sbc = kern_fp8_blocks((int32_t)a.ldw);
    a.y = g->y, a.ydt = g->ydt, a.ldy = g->ldy, a.bsy = g->bsy;
    a.m = g->m, a.k = w->cols, a.n = w->rows, a.batch = g->batch > 1 ? g->batch : 1;
    if (a.m <= 0 || a.n <= 0) return MS_OK;
    if (a.k <= 0) return MS_ERR(MS_ERR_INVALID, "cuda gemm: K = %d", a.k);
    if (a.batch > 65535) return MS_ERR(MS_ERR_UNSUPPORTED, "cuda gemm: batch %d > 65535", a.batch);
    if (!silu) return gemm_plain(cx, a, scratch, scratch_bytes);
    if (gemm_fp8x_fits(a, 1)) return gemm_fp8x(cx, a, 1, scratch, scratch_bytes);

    /* SiLU·mul: the 2n sums of a chunk of rows into scratch as bf16, then the gated pass into y */
    const int32_t n = a.n / 2;
    const size_t row_bytes = (size_t)a.n * 2 * (size_t)a.batch;
    const int dequant = a.xdt == MS_DT_BF16 && a.wdt == MS_DT_F8E4M3; /* then half the scratch holds fp8 tiles */
    int64_t mc = (int64_t)(scratch_bytes / (dequant ? 2 : 1) / row_bytes);
    if (mc > a.m) mc = a.m;
    if (mc < 1)
        return MS_ERR(MS_ERR_INVALID, "cuda gemm: %zu bytes of scratch too small for a %d-wide silu_mul epilogue",
                      scratch_bytes, a.n);
    uint16_t *t = (uint16_t *)scratch;
    char *rest = (char *)scratch + kern_align256((size_t)mc * row_bytes);
    const size_t rest_bytes = scratch_bytes - kern_align256((size_t)mc * row_bytes);
    for (int32_t i0 = 0; i0 < a.m; i0 += (int32_t)mc) {
        const int32_t rows = (int32_t)(a.m - i0 < mc ? a.m - i0 : mc);
        gemm_args c = a;
        c.x = (const char *)a.x + (size_t)i0 * a.ldx * ms_dtype_size(a.xdt);
        if (c.xs) c.xs = a.xs + (int64_t)i0 * a.ld_xs;
        c.m = rows, c.y = t, c.ydt = MS_DT_BF16, c.ldy = a.n, c.bsy = (int64_t)rows * a.n;
        MS_TRY(gemm_plain(cx, c, rest, rest_bytes));
        MS_TRY(kern_cuda_gemm_silu_pass(cx, t, rows, n, a.batch, (bf16_t *)a.y + (size_t)i0 * a.ldy, a.ldy, a.bsy));
    }
    return MS_OK;
}


extern "C" ms_status_t kern_cuda_gemm(kern_ctx_t *cx, const kern_gemm_t *g)
{
    MS_TRY(kern_gemm_check(g));
    const kern_mat_t *w = g->w;
    const int64_t ldw = g->ldw ? g->ldw : (g->w_trans ? w->rows : w->cols);
    const int64_t bs_ws = g->bsw ? (int64_t)kern_fp8_blocks(w->rows) * kern_fp8_blocks((int32_t)ldw) : 0;
    const size_t blas = gemm_blas_ws(cx);
    return kern_cuda_gemm_run(cx, g, bs_ws, (char *)cx->ws + blas, cx->ws_bytes - blas);
}
