/* moe_gemm.h — routed-expert compute of one rank on the GPU with DeepSeek's
 * FP8 numerics (its inference code's act_quant + fp8_gemm): entry points of
 * kernels/cuda/act_quant.cu and kernels/cuda/moe_gemm_fp8.cu. moe_experts (moe_experts.cu)
 * calls kern_cuda_moe_fp8 in the fp8 mode, on the slot records.
 *
 * Layout (DESIGN "The GPU step", seam 2: DeepGEMM's masked layout):
 *  - Activations x, out: [S, cap, hidden] bf16, S local slots of `cap` rows.
 *    counts[S] (device int32) gives the rows of each slot that are real; rows
 *    >= count are padding: nothing reads them and their outputs are left as
 *    they were. A count above cap is clamped to cap.
 *  - Weights per slot e (one contiguous expert each): w13[e] = fused gate|up
 *    [2*inter, hidden] e4m3 (gate rows 0..inter-1, up rows inter..2*inter-1),
 *    w2[e] = down [hidden, inter] e4m3, Linear layout [out, in]. Scales are
 *    fp32 scale_inv per 128x128 block, [rows/128, cols/128] per expert:
 *    W[i,j] = fp8[i,j] * s[i/128, j/128] (applied in fp32 inside the GEMM).
 *  - Quantized activations: q [S, cap, K] e4m3 with per-token per-128-channel
 *    scales stored slot-transposed, qs [S, K/128, cap] fp32 (x ~= q * qs), so
 *    a GEMM tile reads a token block's scales contiguously.
 *
 * Numerics of one layer, as DeepSeek's inference code with transformers' bf16
 * rounding of the activation: q,qs = act_quant(x); g|u = q·w13ᵀ accumulated in
 * fp32 with both scales applied per 128-K chunk; h = bf16(bf16(silu(bf16 g)) *
 * bf16 u); hq,hs = act_quant(h); out = bf16(hq·w2ᵀ).
 *
 * Shapes: hidden and inter multiples of 128; cap a multiple of 4 (16-byte TMA
 * row strides hold for any cap since rows are 128-byte multiples). */
#ifndef MS_KERN_CUDA_MOE_GEMM_H
#define MS_KERN_CUDA_MOE_GEMM_H

#include "kernels/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const uint8_t *w13;  /* [E, 2*inter, hidden] e4m3 */
    const float *w13_s;  /* [E, 2*inter/128, hidden/128] */
    const uint8_t *w2;   /* [E, hidden, inter] e4m3 */
    const float *w2_s;   /* [E, hidden/128, inter/128] */
    int32_t n_experts;   /* E = local slots the arrays hold (S <= E) */
    int32_t hidden, inter;
    size_t stride;       /* 0: the four arrays are stacked as above; else bytes from expert e to e+1 in every
                          * array (slot records, kernels.h kern_moe_slots_t: all four point into record 0;
                          * a multiple of 16, and of 4 for the scales) */
    int32_t rows_hint;   /* expected real rows a slot (kern_moe_slots_t.rows_hint; 0: choose by the capacity) */
} moe_fp8_weights_t;

/* Workspace kern_cuda_moe_fp8 needs: xq, xs, h, hq, hs. */
size_t kern_cuda_moe_fp8_ws_bytes(int S, int cap, int hidden, int inter);

/* One MoE layer's routed-expert compute over S slots (see above). */
ms_status_t kern_cuda_moe_fp8(kern_ctx_t *cx, const bf16_t *x, const int32_t *counts, int S, int cap,
                              const moe_fp8_weights_t *w, bf16_t *out, void *ws, size_t ws_bytes);

/* act_quant over the masked layout: x [S, cap, K] bf16 -> q [S, cap, K] e4m3,
 * qs [S, K/128, cap] fp32; s = max(amax, 1e-4)/448 per 1x128 group (the
 * act_quant op's rule, kernels.h), q = e4m3(x / s) round-to-nearest-even,
 * saturating. Padding rows are neither read nor written. */
ms_status_t kern_cuda_act_quant(kern_ctx_t *cx, const bf16_t *x, const int32_t *counts, int S, int cap, int K,
                                uint8_t *q, float *qs);

/* The two grouped GEMMs alone (the bench times each stage).
 * gateup: h [S, cap, inter] bf16 = silu·mul of (xq,xs)·w13ᵀ.
 * down:   out [S, cap, hidden] bf16 = (hq,hs)·w2ᵀ. */
ms_status_t kern_cuda_moe_fp8_gateup(kern_ctx_t *cx, const uint8_t *xq, const float *xs, const int32_t *counts,
                                     int S, int cap, const moe_fp8_weights_t *w, bf16_t *h);
ms_status_t kern_cuda_moe_fp8_down(kern_ctx_t *cx, const uint8_t *hq, const float *hs, const int32_t *counts,
                                   int S, int cap, const moe_fp8_weights_t *w, bf16_t *out);

/* A dense GEMM on the same kernel, as one slot of m real rows: xq [m, K] e4m3 rows K apart, xs [m, ld_xs]
 * fp32 (act_quant's 1x128 scales, row-major as it writes them; ld_xs >= K/128), W [n, K] e4m3 with its
 * [ceil(n/128), K/128] scale_inv. silu = 0: y [m, ldy] bf16 = bf16((xq,xs)·Wᵀ), any n (rows past n are TMA
 * zero fill). silu = 1: W is a fused gate|up of n = 2*inter rows (inter a multiple of 64) and y gets the
 * inter columns of SiLU·mul with the roundings above. K a multiple of 128; xq, W 16-byte aligned. scratch
 * (may be NULL) holds split-K's fp32 partials when few tiles would leave SMs idle (MS_MG_KSPLIT=0: never). */
ms_status_t kern_cuda_moe_fp8_dense(kern_ctx_t *cx, const uint8_t *xq, const float *xs, int64_t ld_xs, int m,
                                    const uint8_t *w, const float *w_s, int n, int K, int silu, bf16_t *y, int ldy,
                                    void *scratch, size_t scratch_bytes);

/* Tuning hook for the bench: force the GEMM tile (wgmma N per instruction,
 * consumer warpgroups, mode: 0 token split, 1 row split, 2 row split of a
 * 256-row weight tile, 3 that tile with the tokens as the MMAs' M) instead
 * of the choice from cap; (0,0,0) restores it.
 * Returns -1 for a shape the kernel does not instantiate. Not thread-safe;
 * not for serving. */
int kern_cuda_moe_fp8_tile(int bn, int nwg, int mode);
/* The mode's letter in a tile's name (BNxNWG + it: "64x2r", "128x2w"), as the benches and tests print it. */
static inline const char *kern_cuda_moe_fp8_tile_suffix(int mode)
{
    return mode == 3 ? "t" : mode == 2 ? "w" : mode ? "r" : "";
}
/* Whether a tile is forced (the gemm op's fp8 mode then keeps to this kernel, so the bench times the tile). */
int kern_cuda_moe_fp8_tile_forced(void);

#ifdef __cplusplus
}
#endif

#endif
