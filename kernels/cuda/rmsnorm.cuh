/* rmsnorm.cuh — the RMSNorm row kernel shared by rmsnorm.cu, add_rmsnorm.cu and
 * rmsnorm_quant.cu, so the fused ops are bit-identical to add followed by rmsnorm
 * (and act_quant of its output): one kernel, the
 * same element-to-thread assignment, the same per-thread sum order and the same
 * reduction tree whichever op launches it.
 *
 * One block per row of T = cu_rms_threads(dim) threads: one per 8-element
 * chunk, whole warps, at most RMS_MAX_THREADS. Thread t owns the chunks t,
 * t + T, ... T depends on dim alone, so every launcher gets the same
 * assignment and tree. Rows of up to 8192 elements (R1's 7168-wide hidden, 1536
 * q_lora and 512 kv_lora) are one chunk a thread, loaded once, up front, with
 * its residual and weight chunks, and kept in registers between the sum of
 * squares and the output: a row costs one round trip of loads. Longer rows read
 * their remaining chunks twice. Chunks move as one 16-byte load when the row
 * allows it (vec: 16-byte aligned rows, dim a multiple of 8), else element by
 * element — the same arithmetic either way.
 *
 * Why a thread a chunk: with 256 threads a row (before 2026-12), the decode
 * batch's 128 rows were 128 blocks of 8 warps, a warp per SM scheduler, and the
 * add + norm + quantize arithmetic of 28 elements a thread ran latency-bound
 * (9.2 µs for 128 x 7168, 0.4 TB/s); the weight chunks were loaded after the
 * reduction, a second dependent round trip. The sum of squares' order changed
 * with it (fp32 either way, against the CPU's double: within rmsnorm's
 * tolerance, as before); the fused ops still share it bit for bit. */
#ifndef MS_KERN_CUDA_RMSNORM_CUH
#define MS_KERN_CUDA_RMSNORM_CUH

#include "common.cuh"

#define RMS_MAX_THREADS 1024

/* the threads of a row's block (host side; the kernel reads blockDim.x) */
static inline int cu_rms_threads(int32_t dim)
{
    const int32_t warps = ((dim + 7) / 8 + 31) / 32;
    return warps < RMS_MAX_THREADS / 32 ? 32 * warps : RMS_MAX_THREADS;
}

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

/* y = bf16(w * bf16(x * inv)) for a chunk (wv: its weights), stored and left in o */
__device__ static inline void cu_rms_out8(uint16_t *yp, const uint16_t wv[8], const uint16_t v[8], int n, bool vec,
                                          float inv, uint16_t o[8])
{
#pragma unroll
    for (int e = 0; e < 8; e++)
        o[e] = cu_f_bf16(__fmul_rn(cu_bf16_f(wv[e]), cu_bf16_round(__fmul_rn(cu_bf16_f(v[e]), inv))));
    cu_st8(yp, n, vec, o);
}

/* Where rmsnorm_quant puts the e4m3 codes and 1x128 scales of the output row (q == NULL: no quantization). */
typedef struct {
    uint8_t *q;
    int64_t ldq;
    float *scale;
    int64_t lds;
    bool vec; /* 8-byte code stores: q and ldq 8-aligned, whole chunks */
} cu_rms_quant_t;

/* act_quant of the output chunk o (n valid elements; n = 0: a lane past the row that still joins the
 * shuffles) of chunk c: a 128-group is 16 chunks, owned by 16 consecutive lanes (c and the lane agree mod
 * 16), so its amax is a 4-step xor shuffle inside those lanes. fmaxf selects, so any order gives the
 * act_quant op's amax; the scale and codes are common.cuh's rule (act_quant_op.cu's very functions).
 * Every lane of the warp must call it. */
__device__ static inline void cu_rms_quant8(const cu_rms_quant_t &qt, int64_t row, int32_t c, const uint16_t o[8],
                                            int n)
{
    float amax = 0.f;
#pragma unroll
    for (int e = 0; e < 8; e++)
        if (e < n) amax = fmaxf(amax, fabsf(cu_bf16_f(o[e])));
#pragma unroll
    for (int off = 8; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
    if (n <= 0) return;
    const float s = cu_quant_scale(amax);
    uint8_t b[8];
#pragma unroll
    for (int e = 0; e < 8; e++) b[e] = cu_quant_e4m3(cu_bf16_f(o[e]), s);
    uint8_t *qp = qt.q + row * qt.ldq + 8 * (int64_t)c;
    if (qt.vec) {
        uint2 u;
        u.x = b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
        u.y = b[4] | (uint32_t)b[5] << 8 | (uint32_t)b[6] << 16 | (uint32_t)b[7] << 24;
        *(uint2 *)qp = u;
    } else {
#pragma unroll
        for (int e = 0; e < 8; e++)
            if (e < n) qp[e] = b[e];
    }
    if ((c & 15) == 0) qt.scale[row * qt.lds + (c >> 4)] = s;
}

/* 1 / sqrt(Σ ss / dim + eps) over the block: a fixed xor-shuffle tree per warp, then the same tree over the
 * warps' sums (slots past the block's warps hold +0, which adds exactly to a sum of squares). Xor partners
 * add the same two values, so every lane of every warp ends with the same bits. */
__device__ static inline float cu_rms_inv(float ss, int32_t dim, float eps)
{
    __shared__ float part[RMS_MAX_THREADS / 32];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) ss = __fadd_rn(ss, __shfl_xor_sync(0xffffffffu, ss, o));
    const int lane = threadIdx.x & 31;
    if (lane == 0) part[threadIdx.x >> 5] = ss;
    __syncthreads();
    float tot = lane < (int)(blockDim.x >> 5) ? part[lane] : 0.f;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) tot = __fadd_rn(tot, __shfl_xor_sync(0xffffffffu, tot, o));
    return 1.0f / sqrtf(tot / dim + eps); /* as the CPU: correctly rounded sqrt and division */
}

/* One row: ADD first makes x := bf16(x + res) (stored back), then y = rmsnorm(x) * w; QUANT also writes
 * act_quant(y) into qt (rmsnorm_quant.cu). Launched with cu_rms_threads(dim) threads. The output loops run
 * block-uniformly (a chunk index past the row is a lane with nothing to do) so QUANT's shuffles see every
 * lane; the arithmetic is the same either way. */
template <bool ADD, bool QUANT>
__global__ static void __launch_bounds__(RMS_MAX_THREADS)
    rms_row_kernel(uint16_t *x, int64_t ldx, const uint16_t *__restrict__ res, const uint16_t *__restrict__ w,
                   uint16_t *y, int64_t ldy, int32_t dim, float eps, bool vec, cu_rms_quant_t qt)
{
    cu_pdl_enter();
    uint16_t *xr = x + (int64_t)blockIdx.x * ldx;
    const uint16_t *rr = ADD ? res + (int64_t)blockIdx.x * dim : nullptr;
    uint16_t *yr = y + (int64_t)blockIdx.x * ldy;
    const int32_t nch = (dim + 7) / 8, nt = blockDim.x;
    /* the thread's first chunk: x, res and w loaded together, one round trip */
    const int32_t c0 = threadIdx.x, n0 = c0 < nch ? min(8, dim - 8 * c0) : 0;
    uint16_t keep[8], rk[8], wk[8];
    if (n0 > 0) {
        cu_ld8(xr + 8 * c0, n0, vec, keep);
        if (ADD) cu_ld8(rr + 8 * c0, n0, vec, rk);
        cu_ld8(w + 8 * c0, n0, vec, wk);
    }
    float ss = 0.f;
    if (n0 > 0) {
        if (ADD) cu_rms_add8(keep, rk), cu_st8(xr + 8 * c0, n0, vec, keep);
        ss = cu_rms_ss8(ss, keep, n0);
    }
    for (int32_t c = c0 + nt; c < nch; c += nt) { /* rows past RMS_MAX_THREADS chunks */
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
    {
        uint16_t o[8];
        if (n0 > 0) cu_rms_out8(yr + 8 * c0, wk, keep, n0, vec, inv, o);
        if (QUANT) cu_rms_quant8(qt, blockIdx.x, c0, o, n0);
    }
    for (int32_t b = nt; b < nch; b += nt) { /* the same for every thread */
        const int32_t c = b + threadIdx.x;
        const int n = c < nch ? min(8, dim - 8 * c) : 0;
        uint16_t v[8], wv[8], o[8];
        if (n > 0) {
            cu_ld8(xr + 8 * c, n, vec, v);
            cu_ld8(w + 8 * c, n, vec, wv);
            cu_rms_out8(yr + 8 * c, wv, v, n, vec, inv, o);
        }
        if (QUANT) cu_rms_quant8(qt, blockIdx.x, c, o, n);
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
