/* act_quant.cu — DeepSeek's act_quant on the masked MoE layout (moe_gemm.h):
 * per token, per 128 channels, s = amax/448 and q = e4m3(x/s), scales stored
 * slot-transposed [S, K/128, cap] for the grouped GEMM's tiles. One block per
 * row, one warp per 128-channel group (8 bytes a lane); padding rows return
 * before reading anything. The float division is IEEE (no fast math), so a
 * CPU reference doing x/s in fp32 gets the same bytes. */
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include "cuda.h"
#include "moe_gemm.h"

#define AQ_WARPS 8

__global__ static void __launch_bounds__(AQ_WARPS * 32)
act_quant_kernel(const uint16_t *__restrict__ x, const int32_t *__restrict__ counts, int cap, int K,
                 uint8_t *__restrict__ q, float *__restrict__ qs)
{
    const int row = blockIdx.x, slot = row / cap, tok = row % cap;
    if (tok >= min(counts[slot], cap)) return;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, groups = K / 128;
    const uint16_t *xr = x + (size_t)row * K;
    uint8_t *qr = q + (size_t)row * K;
    for (int g = warp; g < groups; g += AQ_WARPS) {
        uint2 raw = *reinterpret_cast<const uint2 *>(xr + g * 128 + lane * 4);
        float v[4] = {__uint_as_float(raw.x << 16), __uint_as_float(raw.x & 0xffff0000u),
                      __uint_as_float(raw.y << 16), __uint_as_float(raw.y & 0xffff0000u)};
        float amax = fmaxf(fmaxf(fabsf(v[0]), fabsf(v[1])), fmaxf(fabsf(v[2]), fabsf(v[3])));
        for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
        float s = amax > 0.f ? amax / 448.f : 1.f;
        uint32_t packed = 0;
        for (int i = 0; i < 4; i++) {
            __nv_fp8_storage_t b = __nv_cvt_float_to_fp8(v[i] / s, __NV_SATFINITE, __NV_E4M3);
            packed |= (uint32_t)b << (8 * i);
        }
        *reinterpret_cast<uint32_t *>(qr + g * 128 + lane * 4) = packed;
        if (lane == 0) qs[((size_t)slot * groups + g) * cap + tok] = s;
    }
}

extern "C" ms_status_t kern_cuda_act_quant(kern_ctx_t *cx, const bf16_t *x, const int32_t *counts, int S, int cap,
                                           int K, uint8_t *q, float *qs)
{
    if (S < 0 || cap <= 0 || K <= 0 || K % 128 != 0)
        return MS_ERR(MS_ERR_INVALID, "act_quant: bad shape S=%d cap=%d K=%d (K a multiple of 128)", S, cap, K);
    if (S == 0) return MS_OK;
    act_quant_kernel<<<(unsigned)(S * cap), AQ_WARPS * 32, 0, (cudaStream_t)cx->stream>>>(x, counts, cap, K, q, qs);
    CUDA_CHECK(cudaGetLastError());
    return MS_OK;
}
