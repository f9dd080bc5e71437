/* gemm_f32x.cu — y_b = x_b · W_bᵀ for fp32 x and bf16 W on the tensor cores:
 * absorbed MLA's att = o_lat · W_UVᵀ over fp32 latents (128 heads × 128 rows ×
 * 128 outputs × 512 K at decode batch 128). The SIMT kernel (gemm.cu,
 * gemm_f32w_kernel) was bound by fp32 FMA throughput: 2.1 GFLOP took ~90 µs.
 *
 * Each fp32 x is split exactly into three bf16 terms, x = hi + mid + lo
 * (hi = bf16(x), mid = bf16(x - hi), lo = bf16(x - hi - mid); each residual is
 * exact in fp32 and bf16 keeps fp32's exponent range, so the three carry x's
 * 24-bit significand), and each term is multiplied by the bf16 W with
 * mma.sync m16n8k16 into an fp32 accumulator. Every product is exact in fp32;
 * only the sum order differs from the CPU's ascending fmaf chain (the tensor
 * core adds a k16 step's products in its own order), so results agree to fp32
 * summation rounding, not bit for bit. A non-finite x keeps hi alone (an inf
 * stays inf instead of becoming inf - inf).
 *
 * Tiles: a CTA of 4 warps computes 64 rows × 128 outputs of one batch, K in
 * steps of 32 through a ring of FX_STAGES shared-memory stages filled by
 * cp.async (a one-step register prefetch left each CTA waiting on HBM latency
 * 16 times: 50 µs at 128 rows, 38 µs at one); a warp owns 16 rows × 128 outputs. */
#include "common.cuh"
#include "gemm_f32x.h"

#define FX_BM 64
#define FX_BN 128
#define FX_BK 32
#define FX_XP (FX_BK + 8) /* padded row strides: conflict-free fragment reads */
#define FX_WP (FX_BK + 8)
#define FX_STAGES 4 /* three K steps in flight a CTA: enough bytes to cover HBM latency at 1-2 CTAs an SM */
#define FX_STAGE (FX_BM * FX_XP * 4 + FX_BN * FX_WP * 2)

struct fx_args {
    const float *x;
    const uint16_t *w;
    void *y;
    int64_t ldx, bsx, ldw, bsw, ldy, bsy;
    int32_t m, n, k, y_f32;
};

__device__ static inline uint32_t fx_pack(uint16_t lo, uint16_t hi) { return lo | (uint32_t)hi << 16; }

/* the three bf16 terms of two fp32 values, packed pairwise for an A fragment register */
__device__ static inline void fx_split2(float a, float b, uint32_t t[3])
{
    uint16_t ha = cu_f_bf16(a), hb = cu_f_bf16(b), ma = 0, mb = 0, la = 0, lb = 0;
    if (isfinite(a)) {
        const float r = a - cu_bf16_f(ha);
        ma = cu_f_bf16(r), la = cu_f_bf16(r - cu_bf16_f(ma));
    }
    if (isfinite(b)) {
        const float r = b - cu_bf16_f(hb);
        mb = cu_f_bf16(r), lb = cu_f_bf16(r - cu_bf16_f(mb));
    }
    t[0] = fx_pack(ha, hb), t[1] = fx_pack(ma, mb), t[2] = fx_pack(la, lb);
}

__device__ static inline void fx_mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* 16 bytes global -> shared, zero-filled when !ok (src must still be a valid address) */
__device__ static inline void fx_cp16(void *dst, const void *src, bool ok)
{
    const uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(ok ? 16 : 0) : "memory");
}

__global__ static void __launch_bounds__(128) gemm_f32x_kernel(fx_args a)
{
    extern __shared__ __align__(16) unsigned char fx_smem[];
    const int32_t tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    const int32_t b = blockIdx.z, r0 = blockIdx.y * FX_BM, c0 = blockIdx.x * FX_BN, nk = a.k / FX_BK;
    const float *xb = a.x + (int64_t)b * a.bsx;
    const uint16_t *wb = a.w + (int64_t)b * a.bsw;
    auto xs = [&](int st) { return (float(*)[FX_XP])(fx_smem + (size_t)st * FX_STAGE); };
    auto ws = [&](int st) { return (uint16_t(*)[FX_WP])(fx_smem + (size_t)st * FX_STAGE + FX_BM * FX_XP * 4); };
    /* one K step into stage st: x 64 rows × 8 float4, W 128 rows × 4 uint4 (zeros past the edges) */
    auto issue = [&](int32_t kt, int st) {
        const int32_t k0 = kt * FX_BK;
        float(*xd)[FX_XP] = xs(st);
        uint16_t(*wd)[FX_WP] = ws(st);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int32_t e = tid + 128 * i, xrow = e / 8, xk = (e % 8) * 4, wn = e / 4, wk = (e % 4) * 8;
            const bool xo = r0 + xrow < a.m, wo = c0 + wn < a.n;
            fx_cp16(&xd[xrow][xk], xo ? xb + (int64_t)(r0 + xrow) * a.ldx + k0 + xk : xb, xo);
            fx_cp16(&wd[wn][wk], wo ? wb + (int64_t)(c0 + wn) * a.ldw + k0 + wk : wb, wo);
        }
    };
    float acc[16][4] = {};
#pragma unroll
    for (int st = 0; st < FX_STAGES - 1; st++) {
        if (st < nk) issue(st, st);
        asm volatile("cp.async.commit_group;\n" ::: "memory");
    }
    for (int32_t kt = 0; kt < nk; kt++) {
        asm volatile("cp.async.wait_group %0;\n" ::"n"(FX_STAGES - 2) : "memory");
        __syncthreads(); /* step kt is in; every warp is done with step kt - 1, whose stage is refilled next */
        if (kt + FX_STAGES - 1 < nk) issue(kt + FX_STAGES - 1, (kt + FX_STAGES - 1) % FX_STAGES);
        asm volatile("cp.async.commit_group;\n" ::: "memory");
        const float(*xc)[FX_XP] = xs(kt % FX_STAGES);
        const uint16_t(*wc)[FX_WP] = ws(kt % FX_STAGES);
#pragma unroll
        for (int32_t kk = 0; kk < FX_BK; kk += 16) {
            uint32_t hi[4], mid[4], lo[4], tt[3];
            const int32_t ra = warp * 16 + g;
#pragma unroll
            for (int q = 0; q < 4; q++) { /* A fragment: rows g, g+8; k pairs 2t, 2t+8 */
                const float2 v = *(const float2 *)&xc[ra + 8 * (q & 1)][kk + 2 * t4 + 8 * (q >> 1)];
                fx_split2(v.x, v.y, tt);
                hi[q] = tt[0], mid[q] = tt[1], lo[q] = tt[2];
            }
#pragma unroll
            for (int nt = 0; nt < 16; nt++) {
                const uint32_t b0 = *(const uint32_t *)&wc[nt * 8 + g][kk + 2 * t4];
                const uint32_t b1 = *(const uint32_t *)&wc[nt * 8 + g][kk + 2 * t4 + 8];
                fx_mma(acc[nt], lo, b0, b1); /* smallest terms first */
                fx_mma(acc[nt], mid, b0, b1);
                fx_mma(acc[nt], hi, b0, b1);
            }
        }
    }
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    /* C fragment: rows g, g+8; columns 2t, 2t+1 of each n8 tile */
#pragma unroll
    for (int nt = 0; nt < 16; nt++)
#pragma unroll
        for (int q = 0; q < 4; q++) {
            const int32_t row = r0 + warp * 16 + g + 8 * (q >> 1), col = c0 + nt * 8 + 2 * t4 + (q & 1);
            if (row >= a.m || col >= a.n) continue;
            const int64_t o = (int64_t)b * a.bsy + (int64_t)row * a.ldy + col;
            if (a.y_f32) ((float *)a.y)[o] = acc[nt][q];
            else ((uint16_t *)a.y)[o] = cu_f_bf16(acc[nt][q]);
        }
}

bool cu_gemm_f32x_fits(int64_t ldx, int64_t bsx, const void *x, int64_t ldw, int64_t bsw, const void *w, int32_t k)
{
    return k % FX_BK == 0 && ldx % 4 == 0 && bsx % 4 == 0 && ldw % 8 == 0 && bsw % 8 == 0 &&
           (uintptr_t)x % 16 == 0 && (uintptr_t)w % 16 == 0;
}

ms_status_t cu_gemm_f32x(cudaStream_t s, const float *x, int64_t ldx, int64_t bsx, const uint16_t *w, int64_t ldw,
                         int64_t bsw, void *y, int y_f32, int64_t ldy, int64_t bsy, int32_t m, int32_t n, int32_t k,
                         int32_t batch)
{
    const fx_args a = {x, w, y, ldx, bsx, ldw, bsw, ldy, bsy, m, n, k, y_f32};
    const dim3 grid((unsigned)((n + FX_BN - 1) / FX_BN), (unsigned)((m + FX_BM - 1) / FX_BM), (unsigned)batch);
    static bool attr; /* once a process: the ring is more than the 48 KiB default */
    if (!attr) {
        CUDA_CHECK(cudaFuncSetAttribute(gemm_f32x_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        FX_STAGES * FX_STAGE));
        attr = true;
    }
    gemm_f32x_kernel<<<grid, 128, FX_STAGES * FX_STAGE, s>>>(a);
    CU_LAUNCHED();
    return MS_OK;
}
