/* mla_latent_mma.cu — paged latent attention on tensor cores (mma.sync
 * m16n8k16, bf16 in, fp32 accumulate), FlashAttention-2's shape turned to
 * MLA decode: the M of both products is heads, not query rows.
 *
 * A CTA takes one query row of one sequence, a block of HB x 16 heads (HB <= 4)
 * and one context split. Its Q rows (q_lat rounded to bf16, then q_pe) sit in
 * shared memory; each tile of MM_TILE cache rows is staged once (FP8 rows
 * dequantized to bf16(e4m3 * s_g), as the SIMT kernel does) and read by every
 * warp. Warp w owns heads 16*(w/2) .. +15 and half w%2 of the latent output
 * channels: it computes S = Q K^T for its heads over the tile (the two warps
 * of a head block compute the same S: cheaper than a shared-memory exchange),
 * keeps the online softmax in fp32 (running max and sum per head), and adds
 * P V for its channels with P taken straight from S's accumulators as bf16 A
 * fragments. Shared rows are padded by 8 bf16 (292 words) so the fragment
 * loads are free of bank conflicts.
 *
 * Numerics differ from the CPU spec (kernels/cpu/mla_latent.c) by two bf16
 * roundings the spec does not make — of q_lat and of the probabilities before
 * P V — besides the summation order; the softmax normalizer sums the fp32
 * probabilities. That is FlashMLA's precision. Splits, the workspace layout
 * and the merge are the SIMT kernel's (mla_latent.cu), and so is the fault
 * rule: a block outside the cache raises KERN_FAULT_BLOCK and its keys are
 * left out. */
#include "mla_latent.cuh"

#include <cuda_bf16.h>

#define MM_TILE 32     /* cache rows per tile: 4 n-tiles of S, 2 k-steps of P V */
#define MM_NT_MAX 32   /* n-tiles of 8 channels a warp accumulates: d_c / 2 <= 256 */
#define MM_PAD 8       /* bf16 of padding per shared row */

__device__ __forceinline__ void mm_bf16(float *c, const uint32_t *a, uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* bf16x2 of (lo, hi), round to nearest even: the lower k index in the low half, as mma reads it */
__device__ __forceinline__ uint32_t mm_pack(float lo, float hi)
{
    return (uint32_t)cu_f_bf16(lo) | (uint32_t)cu_f_bf16(hi) << 16;
}

__device__ __forceinline__ uint32_t mm_ld32(const uint16_t *p) { return *reinterpret_cast<const uint32_t *>(p); }

__global__ static void __launch_bounds__(256, 1) mll_mma_kernel(mll_args a, int32_t HB)
{
    extern __shared__ __align__(16) uint16_t mm_smem[];
    const int32_t dc = a.kv.d_c, dr = a.kv.d_r, rw = dc + dr, S = rw + MM_PAD;
    uint16_t *sq = mm_smem;                            /* [HB*16][S] */
    uint16_t *sk = mm_smem + (size_t)HB * 16 * S;      /* [MM_TILE][S] */
    int *okf = reinterpret_cast<int *>(sk + (size_t)MM_TILE * S);
    const kern_attn_seq_t sd = a.seqs[blockIdx.x];
    if (sd.n_q <= 0 || sd.q_off < 0) return;
    const int32_t warp = threadIdx.x / 32, lane = threadIdx.x & 31, nwarps = blockDim.x / 32;
    const int32_t g = lane >> 2, t4 = lane & 3, hb = warp >> 1, half = warp & 1;
    const int32_t h0 = blockIdx.y * HB * 16, dvh = dc / 2, nto = dvh / 8;
    const bool ctx_split = mll_ctx_split(sd, a.splits);
    const int32_t *bt = a.bt + sd.blk_off;
    for (int32_t i = ctx_split ? 0 : blockIdx.z; i < sd.n_q; i += ctx_split ? 1 : gridDim.z) {
        const int32_t tq = sd.q_off + i, nk = sd.pos0 + i + 1;
        const int2 keys = mll_keys(nk, ctx_split, a.splits);
        const int32_t j0 = keys.x, j1 = keys.y;
        __syncthreads(); /* the previous row's Q and tiles are no longer read */
        for (int32_t idx = threadIdx.x; idx < HB * 16 * rw; idx += blockDim.x) {
            const int32_t r = idx / rw, c = idx - r * rw, h = h0 + r;
            uint16_t v = 0;
            if (h < a.H && c < dc) {
                const int64_t o = ((int64_t)tq * a.H + h) * dc + c;
                v = a.qdt == MS_DT_F32 ? cu_f_bf16(((const float *)a.q)[o]) : ((const uint16_t *)a.q)[o];
            } else if (h < a.H) {
                v = a.qpe[tq * a.ld_pe + h * a.ld_pe_head + (c - dc)];
            }
            sq[r * S + c] = v;
        }
        float o[MM_NT_MAX][4];
#pragma unroll
        for (int j = 0; j < MM_NT_MAX; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
        float m_r[2] = {-INFINITY, -INFINITY}, l_r[2] = {0.f, 0.f}; /* rows g and g + 8 of the head block */
        const uint16_t *qb = sq + (size_t)hb * 16 * S;
        for (int32_t tb = j0; tb < j1; tb += MM_TILE) {
            const int32_t n = min(MM_TILE, j1 - tb);
            __syncthreads(); /* the previous tile has been read (and Q staged) */
            for (int32_t r = warp; r < MM_TILE; r += nwarps) {
                const int ok = r < n ? mll_stage(a, bt, tb + r, sk + r * S, lane) : 0;
                if (!ok) /* rows past the context or of a bad block: zeros, so P V adds exact zeros */
                    for (int32_t j = lane; j < rw; j += 32) sk[r * S + j] = 0;
                if (lane == 0) okf[r] = ok;
            }
            __syncthreads();
            /* S = Q K^T: 16 heads x MM_TILE rows, 4 n-tiles of 8 cache rows */
            float s[4][4];
#pragma unroll
            for (int nt = 0; nt < 4; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
            for (int32_t d0 = 0; d0 < rw; d0 += 16) {
                uint32_t af[4];
                af[0] = mm_ld32(qb + g * S + d0 + 2 * t4);
                af[1] = mm_ld32(qb + (g + 8) * S + d0 + 2 * t4);
                af[2] = mm_ld32(qb + g * S + d0 + 8 + 2 * t4);
                af[3] = mm_ld32(qb + (g + 8) * S + d0 + 8 + 2 * t4);
#pragma unroll
                for (int nt = 0; nt < 4; nt++) {
                    const uint16_t *kb = sk + (nt * 8 + g) * S + d0 + 2 * t4;
                    mm_bf16(s[nt], af, mm_ld32(kb), mm_ld32(kb + 8));
                }
            }
            /* online softmax: a thread holds rows g (e 0, 1) and g + 8 (e 2, 3), columns nt*8 + 2*t4 + (e & 1) */
            float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
            for (int nt = 0; nt < 4; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int32_t col = nt * 8 + 2 * t4 + (e & 1);
                    const float v = col < n && okf[col] ? s[nt][e] * a.scale : -INFINITY;
                    s[nt][e] = v;
                    mx[e >> 1] = fmaxf(mx[e >> 1], v);
                }
            float corr[2], ls[2] = {0.f, 0.f};
#pragma unroll
            for (int rr = 0; rr < 2; rr++) {
                mx[rr] = fmaxf(mx[rr], __shfl_xor_sync(0xffffffffu, mx[rr], 1));
                mx[rr] = fmaxf(mx[rr], __shfl_xor_sync(0xffffffffu, mx[rr], 2));
                const float mn = fmaxf(m_r[rr], mx[rr]);
                corr[rr] = mn == -INFINITY ? 1.f : expf(m_r[rr] - mn); /* first keys: m_r -inf, corr 0 */
                m_r[rr] = mn;
            }
#pragma unroll
            for (int nt = 0; nt < 4; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const float p = s[nt][e] == -INFINITY ? 0.f : expf(s[nt][e] - m_r[e >> 1]);
                    s[nt][e] = p;
                    ls[e >> 1] += p;
                }
#pragma unroll
            for (int rr = 0; rr < 2; rr++) {
                ls[rr] += __shfl_xor_sync(0xffffffffu, ls[rr], 1);
                ls[rr] += __shfl_xor_sync(0xffffffffu, ls[rr], 2);
                l_r[rr] = l_r[rr] * corr[rr] + ls[rr];
            }
#pragma unroll
            for (int j = 0; j < MM_NT_MAX; j++) {
                if (j >= nto) break;
                o[j][0] *= corr[0], o[j][1] *= corr[0], o[j][2] *= corr[1], o[j][3] *= corr[1];
            }
            /* O += P V over this warp's channels: two k-steps of 16 cache rows; A from S's accumulators */
#pragma unroll
            for (int kk = 0; kk < 2; kk++) {
                uint32_t af[4];
                af[0] = mm_pack(s[2 * kk][0], s[2 * kk][1]);
                af[1] = mm_pack(s[2 * kk][2], s[2 * kk][3]);
                af[2] = mm_pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
                af[3] = mm_pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
                const uint16_t *v0 = sk + (16 * kk + 2 * t4) * S + half * dvh + g;
#pragma unroll
                for (int j = 0; j < MM_NT_MAX; j++) {
                    if (j >= nto) break;
                    const uint16_t *vc = v0 + j * 8;
                    const uint32_t b0 = (uint32_t)vc[0] | (uint32_t)vc[S] << 16;
                    const uint32_t b1 = (uint32_t)vc[8 * S] | (uint32_t)vc[9 * S] << 16;
                    mm_bf16(o[j], af, b0, b1);
                }
            }
        }
        /* results: rows g and g + 8 of the head block, columns half*dvh + 8j + 2*t4 (+1) */
#pragma unroll
        for (int rr = 0; rr < 2; rr++) {
            const int32_t h = h0 + hb * 16 + g + 8 * rr;
            if (h >= a.H) continue;
            if (ctx_split) {
                float *pp = mll_part(a, blockIdx.x, i, h, blockIdx.z);
                if (t4 == 0 && half == 0) pp[0] = m_r[rr], pp[1] = l_r[rr];
#pragma unroll
                for (int j = 0; j < MM_NT_MAX; j++) { /* unrolled with a break: o stays in registers */
                    if (j >= nto) break;
                    const int32_t c = half * dvh + 8 * j + 2 * t4;
                    pp[2 + c] = o[j][2 * rr], pp[3 + c] = o[j][2 * rr + 1];
                }
                continue;
            }
            const float inv = l_r[rr] > 0.f ? 1.0f / l_r[rr] : 0.f;
            const int64_t base = ((int64_t)tq * a.H + h) * dc;
#pragma unroll
            for (int j = 0; j < MM_NT_MAX; j++) {
                if (j >= nto) break;
                const int32_t c = half * dvh + 8 * j + 2 * t4;
                const float v0 = o[j][2 * rr] * inv, v1 = o[j][2 * rr + 1] * inv;
                if (a.odt == MS_DT_F32) ((float *)a.o)[base + c] = v0, ((float *)a.o)[base + c + 1] = v1;
                else ((uint16_t *)a.o)[base + c] = cu_f_bf16(v0), ((uint16_t *)a.o)[base + c + 1] = cu_f_bf16(v1);
            }
        }
    }
}

bool mll_mma_fits(const mll_args &a)
{
    const int32_t dc = a.kv.d_c, dr = a.kv.d_r;
    return dc > 0 && dc % 16 == 0 && dr % 16 == 0 && dc / 16 <= MM_NT_MAX && a.H > 0;
}

int mll_mma_head_groups(int32_t H)
{
    const int32_t hb = H >= 64 ? 4 : (H + 15) / 16;
    return (H + 16 * hb - 1) / (16 * hb);
}

cudaError_t mll_mma_launch(const mll_args &a, int32_t n_seqs, int32_t splits, cudaStream_t stream)
{
    const int32_t HB = a.H >= 64 ? 4 : (a.H + 15) / 16, S = a.kv.d_c + a.kv.d_r + MM_PAD;
    const size_t smem = (size_t)(HB * 16 + MM_TILE) * S * sizeof(uint16_t) + MM_TILE * sizeof(int);
    static size_t smem_set; /* the attribute is per function: raise it once to the largest size asked */
    if (smem > smem_set) {
        cudaError_t e = cudaFuncSetAttribute(mll_mma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
        smem_set = smem;
    }
    mll_mma_kernel<<<dim3((unsigned)n_seqs, (unsigned)mll_mma_head_groups(a.H), (unsigned)splits), 64 * HB, smem,
                     stream>>>(a, HB);
    return cudaGetLastError();
}
