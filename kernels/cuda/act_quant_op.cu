/* act_quant_op.cu — the ops table's act_quant (kernels.h): DeepSeek's 1×128
 * per-token FP8 quantization over strided rows, bit-identical to
 * kernels/cpu/act_quant.c (s = max(amax, 1e-4) / 448, q = e4m3(x / s) by IEEE
 * division, RNE, saturating; common.cuh's cu_quant_*). Row-major scales
 * scale[r*lds + g]; cols need not be a multiple of 128. One warp per
 * (row, group), 4 channels a lane. act_quant.cu is the MoE path's variant
 * (masked [slots, cap, K] layout, slot-transposed scales, its own amax rule)
 * and stays as helper-7 wrote it. */
#include "common.cuh"

#define AQO_WARPS 8

__global__ static void __launch_bounds__(AQO_WARPS * 32)
    act_quant_op_kernel(const uint16_t *x, int64_t ldx, int32_t rows, int32_t cols, uint8_t *q, int64_t ldq,
                        float *scale, int64_t lds)
{
    cu_pdl_enter();
    const int32_t ng = (cols + KERN_FP8_BLOCK - 1) / KERN_FP8_BLOCK, lane = threadIdx.x & 31;
    const int64_t item = (int64_t)blockIdx.x * AQO_WARPS + threadIdx.x / 32; /* (row, group) */
    if (item >= (int64_t)rows * ng) return;
    const int32_t r = (int32_t)(item / ng), g = (int32_t)(item % ng), c0 = g * KERN_FP8_BLOCK;
    const int32_t n = cols - c0 < KERN_FP8_BLOCK ? cols - c0 : KERN_FP8_BLOCK;
    const uint16_t *xr = x + r * ldx + c0;
    float v[4], amax = 0.f;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const int32_t c = lane + 32 * j;
        v[j] = c < n ? cu_bf16_f(xr[c]) : 0.f;
        amax = fmaxf(amax, fabsf(v[j]));
    }
    for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    const float s = cu_quant_scale(amax);
    uint8_t *qr = q + r * ldq + c0;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const int32_t c = lane + 32 * j;
        if (c < n) qr[c] = cu_quant_e4m3(v[j], s);
    }
    if (lane == 0) scale[r * lds + g] = s;
}

extern "C" ms_status_t kern_cuda_act_quant_op(kern_ctx_t *cx, const bf16_t *x, int64_t ldx, int32_t rows, int32_t cols,
                                              uint8_t *q, int64_t ldq, float *scale, int64_t lds)
{
    if (rows < 0 || cols < 0) return MS_ERR(MS_ERR_INVALID, "cuda act_quant: rows %d, cols %d", rows, cols);
    const int64_t items = (int64_t)rows * kern_fp8_blocks(cols);
    if (!items) return MS_OK;
    cu_launch(act_quant_op_kernel, (unsigned)((items + AQO_WARPS - 1) / AQO_WARPS), AQO_WARPS * 32, 0, CU_STREAM(cx),
              x, ldx, rows, cols, q, ldq, scale, lds);
    CU_LAUNCHED();
    return MS_OK;
}
