/* common.cuh — device helpers every CUDA op shares: bf16/fp8 conversions with
 * the CPU reference's rounding (runtime/dtype.h: round-to-nearest-even, quiet
 * NaN), the data-fault helper, and launch-stream access. Products and sums
 * whose rounding the CPU spec fixes use __fmul_rn/__fadd_rn so nvcc cannot
 * contract them into an FMA (the CPU build has no FMA). */
#ifndef MS_KERN_CUDA_COMMON_CUH
#define MS_KERN_CUDA_COMMON_CUH

#include <cuda_fp8.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include "cuda.h"
#include "pdl.cuh"

#define CU_STREAM(cx) ((cudaStream_t)(cx)->stream)

__device__ static inline float cu_bf16_f(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

__device__ static inline uint16_t cu_f_bf16(float f)
{
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* bytes of an element (ms_dtype_size is host code) */
__host__ __device__ static inline size_t cu_dt_size(ms_dtype_t dt)
{
    return dt == MS_DT_F32 ? 4 : dt == MS_DT_BF16 ? 2 : 1;
}

__device__ static inline float cu_bf16_round(float f) { return cu_bf16_f(cu_f_bf16(f)); }

/* fp8 e4m3fn -> fp32, exactly fp8e4m3_to_f32 (runtime/dtype.c). */
__device__ static inline float cu_fp8_f(uint8_t v)
{
    int sign = v >> 7, ex = (v >> 3) & 0xf, man = v & 0x7;
    if (ex == 0xf && man == 0x7) return __int_as_float(0x7fc00000);
    float r = ex == 0 ? ldexpf((float)man, -9) : ldexpf(1.0f + man / 8.0f, ex - 7);
    return sign ? -r : r;
}

/* expf as glibc's (correctly rounded in all but rare cases): through double. */
__device__ static inline float cu_expf(float x) { return (float)exp((double)x); }

/* One element of the gated activation with the CPU's two roundings (kern_cpu_silu_mul1): g and u are
 * bf16 values; bf16(bf16(silu(g)) * u). Shared by silu_mul and the GEMM's SiLU·mul epilogue. */
__device__ static inline uint16_t cu_silu_mul1(float g, float u)
{
    float a = cu_bf16_round(__fdiv_rn(g, __fadd_rn(1.0f, cu_expf(-g))));
    return cu_f_bf16(__fmul_rn(a, u));
}

/* DeepSeek's act_quant rule (kernels/cpu/act_quant.c), shared by act_quant and the FP8 KV row:
 * the group scale from its amax, and one value's e4m3 code (IEEE division, RNE, saturating). */
__device__ static inline float cu_quant_scale(float amax) { return __fdiv_rn(fmaxf(amax, 1e-4f), 448.0f); }
__device__ static inline uint8_t cu_quant_e4m3(float x, float s)
{
    return (uint8_t)__nv_cvt_float_to_fp8(__fdiv_rn(x, s), __NV_SATFINITE, __NV_E4M3);
}

/* A data fault (kernels.h): OR bit into the context's device fault word. */
__device__ static inline void cu_fault(uint32_t *fault, uint32_t bit)
{
    if (fault) atomicOr(fault, bit);
}

/* Block-wide reductions (blockDim a multiple of 32, at most 1024); every
 * thread gets the result. `sh` is 32 slots of shared scratch; `id` is the
 * op's identity (fills the slots of absent warps). */
template <typename T, typename Op>
__device__ static inline T cu_block_reduce(T v, Op op, T *sh, T id)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads(); /* sh may still be read by a previous reduction */
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : id;
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
struct cu_op_max { __device__ float operator()(float a, float b) const { return fmaxf(a, b); } };
struct cu_op_sumd { __device__ double operator()(double a, double b) const { return a + b; } };

/* n (<= 8) bf16 elements of a chunk at p: one 16-byte access when vec, else scalar (the rest zero) */
__device__ static inline void cu_ld8(const uint16_t *p, int n, bool vec, uint16_t v[8])
{
    if (vec) {
        const uint4 q = *(const uint4 *)p;
        const uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
        for (int e = 0; e < 8; e++) v[e] = (uint16_t)(w[e >> 1] >> (16 * (e & 1)));
    } else {
#pragma unroll
        for (int e = 0; e < 8; e++) v[e] = e < n ? p[e] : 0;
    }
}
__device__ static inline void cu_st8(uint16_t *p, int n, bool vec, const uint16_t v[8])
{
    if (vec) {
        uint4 q;
        q.x = v[0] | (uint32_t)v[1] << 16, q.y = v[2] | (uint32_t)v[3] << 16;
        q.z = v[4] | (uint32_t)v[5] << 16, q.w = v[6] | (uint32_t)v[7] << 16;
        *(uint4 *)p = q;
    } else {
#pragma unroll
        for (int e = 0; e < 8; e++)
            if (e < n) p[e] = v[e];
    }
}

/* Launch-error check after <<<>>>: shape errors were rejected before launch. */
#define CU_LAUNCHED() CUDA_CHECK(cudaGetLastError())

#endif
