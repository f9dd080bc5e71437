/* mla_latent.cuh — what the mla_latent kernels share (mla_latent.cu: the
 * SIMT kernel, the split merge and the op; mla_latent_mma.cu: the tensor-core
 * decode kernel; mla_latent_wgmma.cu: the Hopper one): the argument block, the
 * staging of one cache row, the splits, and the tensor-core kernels' helpers. */
#ifndef MS_KERN_CUDA_MLA_LATENT_CUH
#define MS_KERN_CUDA_MLA_LATENT_CUH

#include "common.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#define MLL_HG 8                 /* heads per CTA, one warp each */
#define MLL_THREADS (MLL_HG * 32)
#define MLL_MAXC 16              /* d_c / 32 channels per lane: d_c <= 512 */
#define MLL_MAXR 2               /* d_r <= 64 */
#define MLL_TILE 32
#define MLL_SPLIT_MAX 64        /* the merge's bound; the tensor-core kernel goes this far */
#define MLL_SPLIT_SIMT 16       /* the SIMT kernel's: 8 CTAs of heads per sequence already */
#define MLL_SPLIT_ROWS 4        /* a sequence of at most this many query rows (decode, MTP verify) splits its context */

struct mll_args {
    const void *q;
    ms_dtype_t qdt, odt;
    const uint16_t *qpe;
    int64_t ld_pe, ld_pe_head;
    kern_kv_t kv;
    const int32_t *bt;
    const kern_attn_seq_t *seqs;
    int32_t H, splits;
    float scale;
    void *o;
    float *part; /* [n_seqs, MLL_SPLIT_ROWS, H, splits, d_c + 2]: m, l, o[d_c] (mll_part) */
    uint32_t *fault;
};

/* stage cache row of position p into dst (rw bf16 values); 0 for a faulted block */
__device__ static int mll_stage(const mll_args &a, const int32_t *bt, int32_t p, uint16_t *dst, int32_t lane)
{
    const kern_kv_t &kv = a.kv;
    const int32_t blk = bt[p / kv.block_size];
    if (blk < 0 || blk >= kv.n_blocks) {
        if (lane == 0) cu_fault(a.fault, KERN_FAULT_BLOCK);
        return 0;
    }
    const uint8_t *row = (const uint8_t *)kv.data + ((int64_t)blk * kv.block_size + p % kv.block_size) * kv.row_bytes;
    if (kv.dtype != MS_DT_F8E4M3) {
        const uint16_t *src = (const uint16_t *)row;
        for (int32_t j = lane; j < kv.d_c + kv.d_r; j += 32) dst[j] = src[j];
        return 1;
    }
    for (int32_t j = lane; j < kv.d_c; j += 32) {
        const uint8_t *sp = row + kv.d_c + 4 * (j / KERN_FP8_BLOCK);
        const float s =
            __uint_as_float((uint32_t)sp[0] | (uint32_t)sp[1] << 8 | (uint32_t)sp[2] << 16 | (uint32_t)sp[3] << 24);
        dst[j] = cu_f_bf16(__fmul_rn(cu_fp8_f(row[j]), s));
    }
    const uint8_t *kp = row + kv.d_c + 4 * ((kv.d_c + KERN_FP8_BLOCK - 1) / KERN_FP8_BLOCK);
    for (int32_t j = lane; j < kv.d_r; j += 32) dst[kv.d_c + j] = (uint16_t)(kp[2 * j] | kp[2 * j + 1] << 8);
    return 1;
}

/* Whether sequence sd splits its context over gridDim.z (each CTA takes a key range of every query row, the
 * merge kernel combines them) rather than its query rows (a prefill chunk: each CTA whole rows, o_lat written
 * directly). Few rows split the context: a decode or MTP verify step has too few CTAs otherwise (one sequence
 * at batch 1), and its rows' keys are nearly the same. */
__device__ static inline bool mll_ctx_split(const kern_attn_seq_t &sd, int32_t splits)
{
    return sd.n_q <= MLL_SPLIT_ROWS && splits > 1;
}

/* The partial (m, l, o[d_c]) of query row i of sequence s, head h, context split z. */
__device__ static inline float *mll_part(const mll_args &a, int32_t s, int32_t i, int32_t h, int32_t z)
{
    return a.part + ((((int64_t)s * MLL_SPLIT_ROWS + i) * a.H + h) * a.splits + z) * (a.kv.d_c + 2);
}

/* The keys [x, y) a CTA of context split blockIdx.z takes of a query row with nk keys (all of them unless
 * the row's sequence splits its context). */
__device__ static inline int2 mll_keys(int32_t nk, bool ctx_split, int32_t splits)
{
    if (!ctx_split) return make_int2(0, nk);
    const int32_t per = (nk + splits - 1) / splits, j0 = min(nk, (int32_t)blockIdx.z * per);
    return make_int2(j0, min(nk, j0 + per));
}

/* ---- device helpers of the tensor-core kernels (mla_latent_mma.cu, mla_latent_wgmma.cu) ---- */
/* bf16x2 of (lo, hi), round to nearest even: the lower k index in the low half, as mma reads it. One cvt
 * (F2FP.BF16.F32.PACK_AB), not cu_f_bf16's integer rounding (~7 instructions a value: ncu put them on mw2's
 * P store); the same bits for every non-NaN value. */
__device__ static __forceinline__ uint32_t mm_pack(float lo, float hi)
{
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t *>(&h);
}

#define MM_LOG2E 1.4426950408889634f

/* 2^x, the hardware approximation with denormal results flushed to 0 (__expf adds a range fix-up of ~4
 * instructions a value for them) */
__device__ static __forceinline__ float mm_ex2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

__device__ static __forceinline__ uint32_t mm_sa(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

/* copy `n` (16 or 4) bytes, or zero-fill them where ok is 0 (nothing is read then) */
__device__ static __forceinline__ void mm_cp(void *dst, const void *src, int ok, int n)
{
    if (n == 16)
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(mm_sa(dst)), "l"(src), "r"(ok ? 16 : 0));
    else
        asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(mm_sa(dst)), "l"(src), "r"(ok ? 4 : 0));
}

__device__ static __forceinline__ void mm_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

/* two e4m3fn (lo byte first) -> bf16x2 of bf16(e4m3 * s): e4m3 -> f16 is exact, so the f32 product is cu_fp8_f's
 * and both roundings are RNE, as mll_stage's (a NaN code gives a NaN, possibly of another payload) */
__device__ static __forceinline__ uint32_t mm_fp8x2_bf16x2(uint32_t x2, float s)
{
    uint32_t h2;
    asm("{.reg .b16 t; cvt.u16.u32 t, %1; cvt.rn.f16x2.e4m3x2 %0, t;}" : "=r"(h2) : "r"(x2));
    const float2 f = __half22float2(*reinterpret_cast<const __half2 *>(&h2));
    const __nv_bfloat162 b = __floats2bfloat162_rn(__fmul_rn(f.x, s), __fmul_rn(f.y, s));
    return *reinterpret_cast<const uint32_t *>(&b);
}

/* Q rows h0 .. h0 + rows - 1 of query row tq as bf16 (q_lat rounded, then q_pe), 8 values a step handed to
 * st(row, channel, uint4) (each kernel's shared layout), MM_QB steps' loads in flight per thread before their
 * stores (16-byte loads where aligned); threads tid of nthr (default: the whole block) share the work */
#define MM_QB 6
template <class St>
__device__ static void mm_stage_q(const mll_args &a, int32_t tq, int32_t h0, int32_t rows, St st,
                                  int32_t tid = (int32_t)threadIdx.x, int32_t nthr = (int32_t)blockDim.x)
{
    const int32_t dc = a.kv.d_c, c8 = (dc + a.kv.d_r) / 8, total = rows * c8;
    const bool f32 = a.qdt == MS_DT_F32, vq = ((uintptr_t)a.q & 15) == 0;
    const bool vpe = (((uintptr_t)a.qpe | (uintptr_t)(a.ld_pe * 2) | (uintptr_t)(a.ld_pe_head * 2)) & 15) == 0;
    for (int32_t b = tid; b < total; b += MM_QB * nthr) {
        uint4 v[MM_QB];
        float f[MM_QB][8];
#pragma unroll
        for (int k = 0; k < MM_QB; k++) {
            const int32_t idx = b + k * nthr, r = idx / c8, c = 8 * (idx - r * c8), h = h0 + r;
            v[k] = make_uint4(0, 0, 0, 0);
#pragma unroll
            for (int e = 0; e < 8; e++) f[k][e] = 0.f;
            if (idx >= total || h >= a.H) continue;
            if (c >= dc) {
                const uint16_t *pe = a.qpe + tq * a.ld_pe + h * a.ld_pe_head + (c - dc);
                if (vpe) v[k] = *reinterpret_cast<const uint4 *>(pe);
                else v[k] = make_uint4(pe[0] | pe[1] << 16, pe[2] | pe[3] << 16, pe[4] | pe[5] << 16, pe[6] | pe[7] << 16);
                continue;
            }
            const int64_t o = ((int64_t)tq * a.H + h) * dc + c;
            if (f32) {
                const float *qf = (const float *)a.q + o;
                if (vq) {
                    const float4 x = reinterpret_cast<const float4 *>(qf)[0], y = reinterpret_cast<const float4 *>(qf)[1];
                    f[k][0] = x.x, f[k][1] = x.y, f[k][2] = x.z, f[k][3] = x.w;
                    f[k][4] = y.x, f[k][5] = y.y, f[k][6] = y.z, f[k][7] = y.w;
                } else {
#pragma unroll
                    for (int e = 0; e < 8; e++) f[k][e] = qf[e];
                }
            } else {
                const uint16_t *qh = (const uint16_t *)a.q + o;
                if (vq) v[k] = *reinterpret_cast<const uint4 *>(qh);
                else v[k] = make_uint4(qh[0] | qh[1] << 16, qh[2] | qh[3] << 16, qh[4] | qh[5] << 16, qh[6] | qh[7] << 16);
            }
        }
#pragma unroll
        for (int k = 0; k < MM_QB; k++) {
            const int32_t idx = b + k * nthr, r = idx / c8, c = 8 * (idx - r * c8);
            if (idx >= total) continue;
            const uint4 w = f32 && c < dc ? make_uint4(mm_pack(f[k][0], f[k][1]), mm_pack(f[k][2], f[k][3]),
                                                       mm_pack(f[k][4], f[k][5]), mm_pack(f[k][6], f[k][7]))
                                          : v[k];
            st(r, c, w);
        }
    }
}


/* The tensor-core kernel (mla_latent_mma.cu): whether it takes this call's shapes, and its launch over
 * (n_seqs, head blocks, splits) — the same split layout and workspace as the SIMT kernel, so the merge serves
 * both. */
bool mll_mma_fits(const mll_args &a);
int mll_mma_head_groups(int32_t H);
cudaError_t mll_mma_launch(const mll_args &a, int32_t n_seqs, int32_t splits, cudaStream_t stream);

/* The Hopper kernel (mla_latent_wgmma.cu): R1's shapes only (d_c 512, d_r 64, heads a multiple of 64), one CTA
 * per (sequence, 64 heads, split), the same split layout and workspace again. */
bool mll_wg_fits(const mll_args &a);
cudaError_t mll_wg_launch(const mll_args &a, int32_t n_seqs, int32_t splits, cudaStream_t stream);

#endif
