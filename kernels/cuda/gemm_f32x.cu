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
 * Tiles: a CTA of 4 warps computes BM = 16·MW rows × 128 outputs of one batch;
 * the warps stand MW along the rows and 4/MW along the outputs, each owning 16
 * rows × 128·MW/4 outputs (NT n8 tiles). MW = 4 (BM 64) when m > 32, 2 when
 * m > 16, else 1 (BM 16: at decode batch 1 the 64-row tile was 63 rows of
 * zeros). K runs in steps of 32 through a ring of stages filled by cp.async (a
 * one-step register prefetch left each CTA waiting on HBM latency 16 times).
 *
 * The three terms' MMAs go term by term over the NT tiles: the first version
 * issued lo, mid, hi of one tile back to back (asm volatile keeps that order),
 * a chain of dependent MMAs on one accumulator; it took 47.9 µs at one row and
 * 59.9 µs at 128 (ncu, H200), against ~4 µs of bytes. Each accumulator still
 * sees lo, mid, hi of every k16 step in ascending k. Measured at one row (the
 * 16-row tile and this order together, not apart): 26.6 µs, still ~6x its
 * bytes; 128 rows not yet timed.
 * MS_GEMM_F32X=v1 runs the first version's order and tile (to time the two). */
#include "common.cuh"
#include "gemm_f32x.h"

#include <stdlib.h>
#include <string.h>

#define FX_BN 128
#define FX_BK 32
#define FX_XP (FX_BK + 8) /* padded row strides: conflict-free fragment reads */
#define FX_WP (FX_BK + 8)
/* K steps in flight a CTA, less one: enough bytes to cover HBM latency at 1-2 CTAs an SM (the small tiles
 * run one CTA an SM at decode batch 1, so they keep more W in flight) */
#define FX_STAGES(MW) ((MW) == 4 ? 4 : 6)
#define FX_STAGE(MW) (16 * (MW) * FX_XP * 4 + FX_BN * FX_WP * 2)

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

template <int MW, bool V1>
__global__ static void __launch_bounds__(128) gemm_f32x_kernel(fx_args a)
{
    constexpr int BM = 16 * MW, NW = 4 / MW, NT = 16 / NW, ST = FX_STAGES(MW), XC = BM * 8 / 128;
    extern __shared__ __align__(16) unsigned char fx_smem[];
    const int32_t tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    const int32_t wm = warp / NW, wn = warp % NW;
    const int32_t b = blockIdx.z, r0 = blockIdx.y * BM, c0 = blockIdx.x * FX_BN, nk = a.k / FX_BK;
    const float *xb = a.x + (int64_t)b * a.bsx;
    const uint16_t *wb = a.w + (int64_t)b * a.bsw;
    auto xs = [&](int st) { return (float(*)[FX_XP])(fx_smem + (size_t)st * FX_STAGE(MW)); };
    auto ws = [&](int st) { return (uint16_t(*)[FX_WP])(fx_smem + (size_t)st * FX_STAGE(MW) + BM * FX_XP * 4); };
    /* one K step into stage st: x BM rows × 8 float4, W 128 rows × 4 uint4 (zeros past the edges) */
    auto issue = [&](int32_t kt, int st) {
        const int32_t k0 = kt * FX_BK;
        float(*xd)[FX_XP] = xs(st);
        uint16_t(*wd)[FX_WP] = ws(st);
#pragma unroll
        for (int i = 0; i < XC; i++) {
            const int32_t e = tid + 128 * i, xrow = e / 8, xk = (e % 8) * 4;
            const bool xo = r0 + xrow < a.m;
            fx_cp16(&xd[xrow][xk], xo ? xb + (int64_t)(r0 + xrow) * a.ldx + k0 + xk : xb, xo);
        }
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int32_t e = tid + 128 * i, wn_ = e / 4, wk = (e % 4) * 8;
            const bool wo = c0 + wn_ < a.n;
            fx_cp16(&wd[wn_][wk], wo ? wb + (int64_t)(c0 + wn_) * a.ldw + k0 + wk : wb, wo);
        }
    };
    /* a warp whose 16 rows all lie past m skips the MMAs (warp-uniform; it still loads and syncs) */
    const bool live = r0 + wm * 16 < a.m;
    float acc[NT][4] = {};
#pragma unroll
    for (int st = 0; st < ST - 1; st++) {
        if (st < nk) issue(st, st);
        asm volatile("cp.async.commit_group;\n" ::: "memory");
    }
    for (int32_t kt = 0; kt < nk; kt++) {
        asm volatile("cp.async.wait_group %0;\n" ::"n"(ST - 2) : "memory");
        __syncthreads(); /* step kt is in; every warp is done with step kt - 1, whose stage is refilled next */
        if (kt + ST - 1 < nk) issue(kt + ST - 1, (kt + ST - 1) % ST);
        asm volatile("cp.async.commit_group;\n" ::: "memory");
        if (!live) continue;
        const float(*xc)[FX_XP] = xs(kt % ST);
        const uint16_t(*wc)[FX_WP] = ws(kt % ST);
#pragma unroll
        for (int32_t kk = 0; kk < FX_BK; kk += 16) {
            uint32_t hi[4], mid[4], lo[4], tt[3];
            const int32_t ra = wm * 16 + g;
#pragma unroll
            for (int q = 0; q < 4; q++) { /* A fragment: rows g, g+8; k pairs 2t, 2t+8 */
                const float2 v = *(const float2 *)&xc[ra + 8 * (q & 1)][kk + 2 * t4 + 8 * (q >> 1)];
                fx_split2(v.x, v.y, tt);
                hi[q] = tt[0], mid[q] = tt[1], lo[q] = tt[2];
            }
            uint32_t b0[NT], b1[NT]; /* B fragments: output n = g of each n8 tile, k pairs 2t, 2t+8 */
#pragma unroll
            for (int nt = 0; nt < NT; nt++) {
                const int32_t n = wn * NT * 8 + nt * 8 + g;
                b0[nt] = *(const uint32_t *)&wc[n][kk + 2 * t4];
                b1[nt] = *(const uint32_t *)&wc[n][kk + 2 * t4 + 8];
            }
            if (V1) { /* the first version's order: a tile's three terms back to back */
#pragma unroll
                for (int nt = 0; nt < NT; nt++) {
                    fx_mma(acc[nt], lo, b0[nt], b1[nt]);
                    fx_mma(acc[nt], mid, b0[nt], b1[nt]);
                    fx_mma(acc[nt], hi, b0[nt], b1[nt]);
                }
            } else { /* smallest terms first, each over all NT tiles: NT independent MMAs between dependent ones */
#pragma unroll
                for (int nt = 0; nt < NT; nt++) fx_mma(acc[nt], lo, b0[nt], b1[nt]);
#pragma unroll
                for (int nt = 0; nt < NT; nt++) fx_mma(acc[nt], mid, b0[nt], b1[nt]);
#pragma unroll
                for (int nt = 0; nt < NT; nt++) fx_mma(acc[nt], hi, b0[nt], b1[nt]);
            }
        }
    }
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    /* C fragment: rows g, g+8; columns 2t, 2t+1 of each n8 tile */
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
        for (int q = 0; q < 4; q++) {
            const int32_t row = r0 + wm * 16 + g + 8 * (q >> 1), col = c0 + wn * NT * 8 + nt * 8 + 2 * t4 + (q & 1);
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

template <int MW, bool V1>
static ms_status_t fx_launch(cudaStream_t s, const fx_args &a, int32_t batch)
{
    const size_t smem = (size_t)FX_STAGES(MW) * FX_STAGE(MW);
    static bool attr; /* once a process and instance: the ring is more than the 48 KiB default */
    if (!attr) {
        CUDA_CHECK(cudaFuncSetAttribute(gemm_f32x_kernel<MW, V1>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)smem));
        attr = true;
    }
    const dim3 grid((unsigned)((a.n + FX_BN - 1) / FX_BN), (unsigned)((a.m + 16 * MW - 1) / (16 * MW)),
                    (unsigned)batch);
    gemm_f32x_kernel<MW, V1><<<grid, 128, smem, s>>>(a);
    CU_LAUNCHED();
    return MS_OK;
}

ms_status_t cu_gemm_f32x(cudaStream_t s, const float *x, int64_t ldx, int64_t bsx, const uint16_t *w, int64_t ldw,
                         int64_t bsw, void *y, int y_f32, int64_t ldy, int64_t bsy, int32_t m, int32_t n, int32_t k,
                         int32_t batch)
{
    const fx_args a = {x, w, y, ldx, bsx, ldw, bsw, ldy, bsy, m, n, k, y_f32};
    static const bool v1 = cu_env_is("MS_GEMM_F32X", "v1"); /* read once */
    if (v1) return fx_launch<4, true>(s, a, batch);
    if (m > 32) return fx_launch<4, false>(s, a, batch);
    if (m > 16) return fx_launch<2, false>(s, a, batch);
    return fx_launch<1, false>(s, a, batch);
}
