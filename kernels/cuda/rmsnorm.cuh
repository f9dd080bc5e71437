/* rmsnorm.cuh — the RMSNorm row kernel shared by rmsnorm.cu and add_rmsnorm.cu,
 * so the fused op is bit-identical to add followed by rmsnorm: one kernel, the
 * same element-to-thread assignment, the same per-thread sum order and the same
 * reduction tree whichever op launches it.
 *
 * One block per row. Thread t owns the 8-element chunks t, t + RMS_THREADS, ...
 * The first RMS_KEEP chunks of each thread (rows of up to 8192 elements: R1's
 * 7168-wide hidden, 1536 q_lora and 512 kv_lora all fit) are loaded once, up
 * front, and stay in registers between the sum of squares and the output, so a
 * row costs one round trip of loads instead of a chain of dependent 2-byte
 * loads (the old kernel took ~22 µs a row at hidden 7168; the bytes take ~1 µs).
 * Longer rows read their remaining chunks twice. Chunks move as one 16-byte load
 * when the row allows it (vec: 16-byte aligned rows, dim a multiple of 8), else
 * element by element — the same arithmetic either way. */
#ifndef MS_KERN_CUDA_RMSNORM_CUH
#define MS_KERN_CUDA_RMSNORM_CUH

#include "common.cuh"

#define RMS_THREADS 256
#define RMS_KEEP 4

/* x := bf16(x + r) elementwise (add.cu's one rounding) */
__device__ static inline void cu_rms_add8(uint16_t v[8], const uint16_t r[8])
{
#pragma unroll
    for (int e = 0; e < 8; e++) v[e] = cu_f_bf16(__fadd_rn(cu_bf16_f(v[e]), cu_bf16_f(r[e])));
}

__device__ static inline float cu_rms_ss8(float ss, const uint16_t v[8], int n)
{
#pragma unroll
    for (int e = 0; e < 8; e++)
        if (e < n) ss = __fmaf_rn(cu_bf16_f(v[e]), cu_bf16_f(v[e]), ss);
    return ss;
}

/* y = bf16(w * bf16(x * inv)) for a chunk */
__device__ static inline void cu_rms_out8(uint16_t *yp, const uint16_t *wp, const uint16_t v[8], int n, bool vec,
                                          float inv)
{
    uint16_t wv[8], o[8];
    cu_ld8(wp, n, vec, wv);
#pragma unroll
    for (int e = 0; e < 8; e++)
        o[e] = cu_f_bf16(__fmul_rn(cu_bf16_f(wv[e]), cu_bf16_round(__fmul_rn(cu_bf16_f(v[e]), inv))));
    cu_st8(yp, n, vec, o);
}

/* 1 / sqrt(Σ ss / dim + eps) over the block: a fixed xor-shuffle tree per warp, then the warps in order */
__device__ static inline float cu_rms_inv(float ss, int32_t dim, float eps)
{
    __shared__ float part[RMS_THREADS / 32];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) ss = __fadd_rn(ss, __shfl_xor_sync(0xffffffffu, ss, o));
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = ss;
    __syncthreads();
    float tot = 0.f;
#pragma unroll
    for (int i = 0; i < RMS_THREADS / 32; i++) tot = __fadd_rn(tot, part[i]);
    return 1.0f / sqrtf(tot / dim + eps); /* as the CPU: correctly rounded sqrt and division */
}

/* One row: ADD first makes x := bf16(x + res) (stored back), then y = rmsnorm(x) * w. */
template <bool ADD>
__global__ static void __launch_bounds__(RMS_THREADS)
    rms_row_kernel(uint16_t *x, int64_t ldx, const uint16_t *__restrict__ res, const uint16_t *__restrict__ w,
                   uint16_t *y, int64_t ldy, int32_t dim, float eps, bool vec)
{
    uint16_t *xr = x + (int64_t)blockIdx.x * ldx;
    const uint16_t *rr = ADD ? res + (int64_t)blockIdx.x * dim : nullptr;
    uint16_t *yr = y + (int64_t)blockIdx.x * ldy;
    const int32_t nch = (dim + 7) / 8;
    uint16_t keep[RMS_KEEP][8], rk[RMS_KEEP][8];
#pragma unroll
    for (int j = 0; j < RMS_KEEP; j++) { /* every load first: one round trip */
        const int32_t c = threadIdx.x + j * RMS_THREADS;
        if (c < nch) {
            cu_ld8(xr + 8 * c, min(8, dim - 8 * c), vec, keep[j]);
            if (ADD) cu_ld8(rr + 8 * c, min(8, dim - 8 * c), vec, rk[j]);
        }
    }
    float ss = 0.f;
#pragma unroll
    for (int j = 0; j < RMS_KEEP; j++) {
        const int32_t c = threadIdx.x + j * RMS_THREADS;
        if (c < nch) {
            const int n = min(8, dim - 8 * c);
            if (ADD) cu_rms_add8(keep[j], rk[j]), cu_st8(xr + 8 * c, n, vec, keep[j]);
            ss = cu_rms_ss8(ss, keep[j], n);
        }
    }
    for (int32_t c = threadIdx.x + RMS_KEEP * RMS_THREADS; c < nch; c += RMS_THREADS) {
        const int n = min(8, dim - 8 * c);
        uint16_t v[8];
        cu_ld8(xr + 8 * c, n, vec, v);
        if (ADD) {
            uint16_t r[8];
            cu_ld8(rr + 8 * c, n, vec, r);
            cu_rms_add8(v, r), cu_st8(xr + 8 * c, n, vec, v); /* read back below by this thread only */
        }
        ss = cu_rms_ss8(ss, v, n);
    }
    const float inv = cu_rms_inv(ss, dim, eps);
#pragma unroll
    for (int j = 0; j < RMS_KEEP; j++) {
        const int32_t c = threadIdx.x + j * RMS_THREADS;
        if (c < nch) cu_rms_out8(yr + 8 * c, w + 8 * c, keep[j], min(8, dim - 8 * c), vec, inv);
    }
    for (int32_t c = threadIdx.x + RMS_KEEP * RMS_THREADS; c < nch; c += RMS_THREADS) {
        const int n = min(8, dim - 8 * c);
        uint16_t v[8];
        cu_ld8(xr + 8 * c, n, vec, v);
        cu_rms_out8(yr + 8 * c, w + 8 * c, v, n, vec, inv);
    }
}

/* the 16-byte path's condition: every row start and the weight 16-byte aligned, whole chunks */
static inline bool cu_rms_vec(const void *x, int64_t ldx, const void *res, const void *w, const void *y, int64_t ldy,
                              int32_t dim)
{
    const uintptr_t a = (uintptr_t)x | (uintptr_t)res | (uintptr_t)w | (uintptr_t)y;
    return a % 16 == 0 && ldx % 8 == 0 && ldy % 8 == 0 && dim % 8 == 0;
}

#endif
