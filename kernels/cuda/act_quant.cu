/* act_quant.cu — DeepSeek's act_quant on the masked MoE layout (moe_gemm.h):
 * per token, per 128 channels, s = max(amax, 1e-4)/448 (the act_quant op's rule) and q = e4m3(x/s), scales stored
 * slot-transposed [S, K/128, cap] for the grouped GEMM's tiles. A block per
 * (slot, row stride), a row at a time; 16 threads of 8 channels (16-byte loads, up to 8 in flight each) per group;
 * padding rows return before reading anything. The float division is IEEE
 * (no fast math), so a CPU reference doing x/s in fp32 gets the same bytes. */
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include "cuda.h"
#include "moe_gemm.h"
#include "pdl.cuh"

#define AQ_THREADS 128
#define AQ_ROW_BLOCKS 32 /* blocks a slot */
#define AQ_UNROLL 8 /* 16-byte loads in flight per thread: 8 x 128 x 8 = 8192 channels a pass */

/* one real row (slot, tok) of K channels */
__device__ static void aq_row(const uint16_t *__restrict__ x, int slot, int tok, int cap, int K, int n8, int groups,
                              uint8_t *__restrict__ q, float *__restrict__ qs)
{
    const int row = slot * cap + tok;
    const uint4 *xr = reinterpret_cast<const uint4 *>(x + (size_t)row * K);
    uint2 *qr = reinterpret_cast<uint2 *>(q + (size_t)row * K);
    for (int base = 0; base < n8; base += AQ_THREADS * AQ_UNROLL) {
        uint4 v[AQ_UNROLL];
#pragma unroll
        for (int u = 0; u < AQ_UNROLL; u++) {
            if (base + u * AQ_THREADS >= n8) break; /* block-uniform, as below */
            const int j = base + u * AQ_THREADS + threadIdx.x;
            v[u] = j < n8 ? xr[j] : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < AQ_UNROLL; u++) {
            /* A slot wholly past the row is skipped by the whole block: before, every thread unpacked and
             * shuffled all AQ_UNROLL slots (at K = 2048, 6 of the 8 hold nothing; at 7168, 1). Whole slots
             * only, so the shuffles below still see every lane. */
            if (base + u * AQ_THREADS >= n8) break;
            const int j = base + u * AQ_THREADS + threadIdx.x;
            const uint32_t w[4] = {v[u].x, v[u].y, v[u].z, v[u].w};
            float f[8], amax = 0.f;
#pragma unroll
            for (int i = 0; i < 4; i++) {
                f[2 * i] = __uint_as_float(w[i] << 16), f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
                amax = fmaxf(amax, fmaxf(fabsf(f[2 * i]), fabsf(f[2 * i + 1])));
            }
            for (int o = 8; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
            if (j >= n8) continue;
            /* the act_quant op's rule (kernels.h), so fp8 mode matches the CPU */
            const float s = fmaxf(amax, 1e-4f) / 448.f;
            /* two codes a conversion (low byte the first): the very cvt.rn.satfinite.e4m3x2 that the one-value
             * __nv_cvt_float_to_fp8 issues with a zero partner, so the same codes in half the conversions */
            uint32_t h[4];
#pragma unroll
            for (int i = 0; i < 4; i++)
                h[i] = __nv_cvt_float2_to_fp8x2(make_float2(f[2 * i] / s, f[2 * i + 1] / s), __NV_SATFINITE,
                                                __NV_E4M3);
            qr[j] = make_uint2(h[0] | h[1] << 16, h[2] | h[3] << 16);
            if ((j & 15) == 0) qs[((size_t)slot * groups + j / 16) * cap + tok] = s;
        }
    }
}

/* at most 64 registers: 8 blocks an SM, 1056 on the H200, so ep8's 32 x 32 blocks are all resident at once */
__global__ static void __launch_bounds__(AQ_THREADS, 8)
act_quant_kernel(const uint16_t *__restrict__ x, const int32_t *__restrict__ counts, int cap, int K,
                 uint8_t *__restrict__ q, float *__restrict__ qs)
{
    cu_pdl_enter();
    const int slot = blockIdx.x, n = min(counts[slot], cap);
    const int n8 = K / 8, groups = K / 128; /* 16 consecutive threads (8 channels each) form a group */
    for (int tok = blockIdx.y; tok < n; tok += gridDim.y) aq_row(x, slot, tok, cap, K, n8, groups, q, qs);
}

extern "C" ms_status_t kern_cuda_act_quant(kern_ctx_t *cx, const bf16_t *x, const int32_t *counts, int S, int cap,
                                           int K, uint8_t *q, float *qs)
{
    if (S < 0 || cap <= 0 || K <= 0 || K % 128 != 0)
        return MS_ERR(MS_ERR_INVALID, "act_quant: bad shape S=%d cap=%d K=%d (K a multiple of 128)", S, cap, K);
    if (S == 0) return MS_OK;
    /* slot x AQ_ROW_BLOCKS blocks striding over the slot's real rows: a grid of S * cap blocks spent ~12 µs
     * launching blocks that returned at once (32 slots of cap 512 at decode, a few real rows each) */
    const dim3 grid((unsigned)S, (unsigned)(cap < AQ_ROW_BLOCKS ? cap : AQ_ROW_BLOCKS));
    cu_launch(act_quant_kernel, grid, AQ_THREADS, 0, (cudaStream_t)cx->stream, x, counts, cap, K, q, qs);
    CUDA_CHECK(cudaGetLastError());
    return MS_OK;
}
