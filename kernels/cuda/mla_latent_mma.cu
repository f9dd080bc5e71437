/* mla_latent_mma.cu — paged latent attention on tensor cores (mma.sync
 * m16n8k16, bf16 in, fp32 accumulate), FlashAttention-2's shape turned to
 * MLA decode: the M of both products is heads, not query rows.
 *
 * A CTA takes one query row of one sequence, a block of HB x 16 heads (HB <= 4,
 * two warps per 16 heads) and one context split. Its Q rows (q_lat rounded to
 * bf16, then q_pe) sit in shared memory. The cache rows stream through a ring
 * of MM_STAGES tiles of MM_TILE rows filled by cp.async (16-byte copies, 4-byte
 * ones where an FP8 row is not a multiple of 16 bytes): tile t + 2 loads while
 * tile t computes, and a row past the context or of a bad block is zero-filled
 * by the copy itself. BF16 rows land in the ring as they are; FP8 rows land raw
 * and one vectorized pass per tile dequantizes them to bf16(e4m3 * s_g) (the
 * SIMT kernel's values, mll_stage) into a bf16 tile read by every warp.
 *
 * Warp w owns heads 16*(w/2) .. +15 and half w%2 of both the tile's keys (for
 * S) and the latent output channels (for O). It computes S = Q K^T for its
 * 16 keys, the pair swaps row maxima, then row sums and the bf16
 * probabilities through shared memory (two 64-thread named barriers), so
 * neither warp computes the other's scores; each keeps the same online
 * softmax state in fp32 and adds P V for its 256 channels, all fragments
 * loaded with ldmatrix (.trans for V). Shared rows are padded by 8 bf16 so the
 * ldmatrix row addresses fall in distinct banks.
 *
 * Numerics differ from the CPU spec (kernels/cpu/mla_latent.c) by two bf16
 * roundings the spec does not make — of q_lat and of the probabilities before
 * P V — besides the summation order and the fast exponential (__expf); the
 * softmax normalizer sums the fp32 probabilities. That is FlashMLA's precision. Splits, the workspace layout
 * and the merge are the SIMT kernel's (mla_latent.cu), and so is the fault
 * rule: a block outside the cache raises KERN_FAULT_BLOCK and its keys are
 * left out. */
#include "mla_latent.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#define MM_TILE 32     /* cache rows per tile: 2 n-tiles of S per warp, 2 k-steps of P V */
#define MM_STAGES 3    /* tiles in flight: the one computed and two loading */
#define MM_NT_MAX 32   /* n-tiles of 8 channels a warp accumulates: d_c / 2 <= 256 */
#define MM_PAD 8       /* bf16 of padding per shared row */
#define MM_PS (MM_TILE + 8) /* row stride (bf16) of the shared probabilities */

__device__ __forceinline__ void mm_bf16(float *c, const uint32_t *a, uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}



/* four 8x8 bf16 matrices; lane l gives the row address of matrix l/8, row l%8 */
__device__ __forceinline__ void mm_ldsm4(uint32_t *r, const uint16_t *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(mm_sa(p)));
}

__device__ __forceinline__ void mm_ldsm4t(uint32_t *r, const uint16_t *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(mm_sa(p)));
}



/* the two warps of a head block (ids 1 .. HB; 0 is __syncthreads) */
__device__ __forceinline__ void mm_pair_sync(int32_t hb)
{
    asm volatile("bar.sync %0, 64;\n" ::"r"(hb + 1) : "memory");
}


/* Start the copies of the tile at key tb (n <= MM_TILE rows of it are keys) into slot `dst` (row stride rs
 * bytes); ok[r] says whether row r holds a key. Lane r of every warp looks up row r's block (one load each,
 * all in flight at once); then a warp per row, a lane per chunk. */
__device__ static void mm_issue(const mll_args &a, const int32_t *bt, int32_t tb, int32_t n, uint8_t *dst,
                                int32_t rs, int *ok, int32_t cb)
{
    static_assert(MM_TILE == 32, "a lane per tile row");
    const kern_kv_t &kv = a.kv;
    const int32_t cpr = kv.row_bytes / cb, lane = threadIdx.x & 31, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    const uint8_t *src = (const uint8_t *)kv.data;
    int k = 0;
    if (lane < n) {
        const int32_t p = tb + lane, bi = p / kv.block_size, blk = bt[bi];
        k = blk >= 0 && blk < kv.n_blocks;
        if (k) src += ((int64_t)blk * kv.block_size + (p - bi * kv.block_size)) * kv.row_bytes;
        else if (warp == 0) cu_fault(a.fault, KERN_FAULT_BLOCK);
    }
    if (warp == 0) ok[lane] = k;
    for (int32_t r = warp; r < MM_TILE; r += nw) {
        const uint8_t *rsrc = (const uint8_t *)__shfl_sync(0xffffffffu, (unsigned long long)src, r);
        const int kr = __shfl_sync(0xffffffffu, k, r);
        for (int32_t c = lane; c < cpr; c += 32) mm_cp(dst + r * rs + c * cb, rsrc + (kr ? c * cb : 0), kr, cb);
    }
}

/* FP8 raw rows (stride rs bytes) -> bf16 rows (stride S): 8 channels of e4m3 per step, then the bf16 rope */
__device__ static void mm_dequant(const kern_kv_t &kv, const uint8_t *raw, int32_t rs, uint16_t *kb, int32_t S)
{
    const int32_t dc = kv.d_c, dr = kv.d_r, u8 = dc / 8, pe = dc + 4 * ((dc + KERN_FP8_BLOCK - 1) / KERN_FP8_BLOCK);
    for (int32_t u = threadIdx.x; u < MM_TILE * u8; u += blockDim.x) {
        const int32_t r = u / u8, c = 8 * (u - r * u8);
        const uint8_t *row = raw + r * rs;
        const uint2 v = *reinterpret_cast<const uint2 *>(row + c);
        const float s = *reinterpret_cast<const float *>(row + dc + 4 * (c / KERN_FP8_BLOCK));
        *reinterpret_cast<uint4 *>(kb + r * S + c) =
            make_uint4(mm_fp8x2_bf16x2(v.x & 0xffff, s), mm_fp8x2_bf16x2(v.x >> 16, s),
                       mm_fp8x2_bf16x2(v.y & 0xffff, s), mm_fp8x2_bf16x2(v.y >> 16, s));
    }
    const int32_t w2 = dr / 2;
    for (int32_t u = threadIdx.x; u < MM_TILE * w2; u += blockDim.x) {
        const int32_t r = u / w2, k = u - r * w2;
        *reinterpret_cast<uint32_t *>(kb + r * S + dc + 2 * k) =
            *reinterpret_cast<const uint32_t *>(raw + r * rs + pe + 4 * k);
    }
}

/* The keys [x, y) of this CTA's context split: tile-aligned chunks of at least one tile, so that a short context
 * leaves the last splits empty (they write m = -inf, l = 0, o = 0, which the merge skips) rather than giving every
 * split a few keys. The layout of the results is the SIMT kernel's (mll_keys splits otherwise). */
__device__ static inline int2 mm_keys(int32_t nk, bool ctx_split, int32_t splits)
{
    if (!ctx_split) return make_int2(0, nk);
    const int32_t per = ((nk + splits - 1) / splits + MM_TILE - 1) / MM_TILE * MM_TILE;
    const int32_t j0 = min(nk, (int32_t)blockIdx.z * per);
    return make_int2(j0, min(nk, j0 + per));
}

/* shared bytes of one raw FP8 row in the ring: the row rounded up to 16 */
__device__ __host__ static inline int32_t mm_raw_stride(const kern_kv_t &kv) { return (kv.row_bytes + 15) / 16 * 16; }

/* NT: the n-tiles of a warp's channels (d_c / 16) when known at compile time (R1's 512: 32), so the P V and
 * rescale loops unroll without per-tile bound checks and ldmatrix runs ahead of the mma; 0: read from d_c */
template <int NT> __global__ static void __launch_bounds__(256, 1) mll_mma_kernel(mll_args a, int32_t HB)
{
    extern __shared__ __align__(16) uint8_t mm_smem[];
    const int32_t dc = a.kv.d_c, dr = a.kv.d_r, rw = dc + dr, S = rw + MM_PAD;
    const bool fp8 = a.kv.dtype == MS_DT_F8E4M3;
    const int32_t rs = fp8 ? mm_raw_stride(a.kv) : 2 * S, cb = a.kv.row_bytes % 16 ? 4 : 16;
    const int32_t nwarps = blockDim.x / 32;
    uint16_t *sq = reinterpret_cast<uint16_t *>(mm_smem);  /* [HB*16][S] */
    uint8_t *ring = mm_smem + (size_t)HB * 16 * S * 2;       /* [MM_STAGES][MM_TILE] rows of rs bytes */
    uint16_t *kbf = reinterpret_cast<uint16_t *>(ring + (size_t)MM_STAGES * MM_TILE * rs); /* FP8: [MM_TILE][S] */
    uint16_t *sp = kbf + (fp8 ? (size_t)MM_TILE * S : 0);    /* [HB][16][MM_PS] probabilities */
    float *smax = reinterpret_cast<float *>(sp + (size_t)HB * 16 * MM_PS); /* [nwarps][16] */
    float *ssum = smax + nwarps * 16;
    int *okf = reinterpret_cast<int *>(ssum + nwarps * 16); /* [MM_STAGES][MM_TILE] */
    const kern_attn_seq_t sd = a.seqs[blockIdx.x];
    if (sd.n_q <= 0 || sd.q_off < 0) return;
    const int32_t warp = threadIdx.x / 32, lane = threadIdx.x & 31;
    const int32_t g = lane >> 2, t4 = lane & 3, hb = warp >> 1, half = warp & 1;
    const int32_t h0 = blockIdx.y * HB * 16, dvh = dc / 2, nto = NT ? NT : dvh / 8;
    const bool ctx_split = mll_ctx_split(sd, a.splits);
    const int32_t *bt = a.bt + sd.blk_off;
    uint16_t *spb = sp + (size_t)hb * 16 * MM_PS;
    for (int32_t i = ctx_split ? 0 : blockIdx.z; i < sd.n_q; i += ctx_split ? 1 : gridDim.z) {
        const int32_t tq = sd.q_off + i, nk = sd.pos0 + i + 1;
        const int2 keys = mm_keys(nk, ctx_split, a.splits);
        const int32_t j0 = keys.x, j1 = keys.y, ntiles = (j1 - j0 + MM_TILE - 1) / MM_TILE;
        __syncthreads(); /* the previous row's Q, tiles and probabilities are no longer read */
        for (int32_t t = 0; t < MM_STAGES - 1; t++) {
            if (t < ntiles)
                mm_issue(a, bt, j0 + t * MM_TILE, min(MM_TILE, j1 - j0 - t * MM_TILE),
                         ring + (size_t)t * MM_TILE * rs, rs, okf + t * MM_TILE, cb);
            mm_commit();
        }
        if (ntiles > 0) mm_stage_q(a, tq, h0, HB * 16, [&](int32_t r, int32_t c, uint4 w) { *reinterpret_cast<uint4 *>(sq + (size_t)r * S + c) = w; }); /* while the first tiles load */
        float o[MM_NT_MAX][4];
#pragma unroll
        for (int j = 0; j < MM_NT_MAX; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
        float m_r[2] = {-INFINITY, -INFINITY}, l_r[2] = {0.f, 0.f}; /* rows g and g + 8 of the head block */
        /* ldmatrix row addresses: A (Q, P) rows lane%16, k half lane/16; B of S keys (lane/16)*8 + lane%8,
         * k half (lane/8)%2; B of P V (.trans) keys ((lane/8)%2)*8 + lane%8, channels (lane/16)*8 */
        const uint16_t *qa = sq + (size_t)(hb * 16 + (lane & 15)) * S + (lane >> 4) * 8;
        const uint16_t *pa = spb + (lane & 15) * MM_PS + (lane >> 4) * 8;
        const int32_t kro = (half * 16 + (lane >> 4) * 8 + (lane & 7)) * S + ((lane >> 3) & 1) * 8;
        const int32_t vro = ((((lane >> 3) & 1) * 8) + (lane & 7)) * S + half * dvh + (lane >> 4) * 8;
        for (int32_t t = 0; t < ntiles; t++) {
            const int32_t slot = t % MM_STAGES, tb = j0 + t * MM_TILE, n = min(MM_TILE, j1 - tb);
            asm volatile("cp.async.wait_group %0;\n" ::"n"(MM_STAGES - 2) : "memory");
            __syncthreads(); /* tile t is in; every warp is done with tile t - 1 (and Q is staged) */
            if (t + MM_STAGES - 1 < ntiles) {
                const int32_t tn = t + MM_STAGES - 1, sn = tn % MM_STAGES;
                mm_issue(a, bt, j0 + tn * MM_TILE, min(MM_TILE, j1 - j0 - tn * MM_TILE),
                         ring + (size_t)sn * MM_TILE * rs, rs, okf + sn * MM_TILE, cb);
            }
            mm_commit();
            const uint16_t *kb;
            if (fp8) {
                mm_dequant(a.kv, ring + (size_t)slot * MM_TILE * rs, rs, kbf, S);
                __syncthreads();
                kb = kbf;
            } else {
                kb = reinterpret_cast<const uint16_t *>(ring + (size_t)slot * MM_TILE * rs);
            }
            const int *ok = okf + slot * MM_TILE;
            /* S = Q K^T: 16 heads x this warp's 16 keys (2 n-tiles); two accumulator sets for ILP */
            float s[2][4], s2[2][4];
#pragma unroll
            for (int nt = 0; nt < 2; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) s[nt][e] = s2[nt][e] = 0.f;
            int32_t d0 = 0;
            for (; d0 + 32 <= rw; d0 += 32) {
                uint32_t af[4], bf[4], af2[4], bf2[4];
                mm_ldsm4(af, qa + d0), mm_ldsm4(bf, kb + kro + d0);
                mm_ldsm4(af2, qa + d0 + 16), mm_ldsm4(bf2, kb + kro + d0 + 16);
                mm_bf16(s[0], af, bf[0], bf[1]), mm_bf16(s[1], af, bf[2], bf[3]);
                mm_bf16(s2[0], af2, bf2[0], bf2[1]), mm_bf16(s2[1], af2, bf2[2], bf2[3]);
            }
            if (d0 < rw) {
                uint32_t af[4], bf[4];
                mm_ldsm4(af, qa + d0), mm_ldsm4(bf, kb + kro + d0);
                mm_bf16(s[0], af, bf[0], bf[1]), mm_bf16(s[1], af, bf[2], bf[3]);
            }
            /* a thread holds rows g (e 0, 1) and g + 8 (e 2, 3), keys half*16 + nt*8 + 2*t4 + (e & 1) */
            float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
            for (int nt = 0; nt < 2; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int32_t col = half * 16 + nt * 8 + 2 * t4 + (e & 1);
                    const float v = col < n && ok[col] ? (s[nt][e] + s2[nt][e]) * a.scale : -INFINITY;
                    s[nt][e] = v;
                    mx[e >> 1] = fmaxf(mx[e >> 1], v);
                }
#pragma unroll
            for (int rr = 0; rr < 2; rr++) {
                mx[rr] = fmaxf(mx[rr], __shfl_xor_sync(0xffffffffu, mx[rr], 1));
                mx[rr] = fmaxf(mx[rr], __shfl_xor_sync(0xffffffffu, mx[rr], 2));
            }
            if (t4 == 0) smax[warp * 16 + g] = mx[0], smax[warp * 16 + g + 8] = mx[1];
            mm_pair_sync(hb);
            float corr[2], ls[2] = {0.f, 0.f};
#pragma unroll
            for (int rr = 0; rr < 2; rr++) {
                const float mn = fmaxf(m_r[rr], fmaxf(mx[rr], smax[(warp ^ 1) * 16 + g + 8 * rr]));
                corr[rr] = mn == -INFINITY ? 1.f : __expf(m_r[rr] - mn); /* first keys: m_r -inf, corr 0 */
                m_r[rr] = mn;
            }
#pragma unroll
            for (int nt = 0; nt < 2; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const float p = s[nt][e] == -INFINITY ? 0.f : __expf(s[nt][e] - m_r[e >> 1]);
                    s[nt][e] = p;
                    ls[e >> 1] += p;
                }
#pragma unroll
            for (int rr = 0; rr < 2; rr++) {
                ls[rr] += __shfl_xor_sync(0xffffffffu, ls[rr], 1);
                ls[rr] += __shfl_xor_sync(0xffffffffu, ls[rr], 2);
            }
            if (t4 == 0) ssum[warp * 16 + g] = ls[0], ssum[warp * 16 + g + 8] = ls[1];
#pragma unroll
            for (int nt = 0; nt < 2; nt++) {
                uint16_t *pc = spb + half * 16 + nt * 8 + 2 * t4;
                *reinterpret_cast<uint32_t *>(pc + g * MM_PS) = mm_pack(s[nt][0], s[nt][1]);
                *reinterpret_cast<uint32_t *>(pc + (g + 8) * MM_PS) = mm_pack(s[nt][2], s[nt][3]);
            }
            mm_pair_sync(hb);
#pragma unroll
            for (int rr = 0; rr < 2; rr++) /* ls + partner: the same sum in both warps (+ commutes) */
                l_r[rr] = l_r[rr] * corr[rr] + (ls[rr] + ssum[(warp ^ 1) * 16 + g + 8 * rr]);
            if (__any_sync(0xffffffffu, corr[0] != 1.f || corr[1] != 1.f)) /* the max moved for some head */
#pragma unroll
                for (int j = 0; j < MM_NT_MAX; j++) {
                    if (j >= nto) break;
                    o[j][0] *= corr[0], o[j][1] *= corr[0], o[j][2] *= corr[1], o[j][3] *= corr[1];
                }
            /* O += P V over this warp's channels: two k-steps of 16 cache rows */
#pragma unroll
            for (int kk = 0; kk < 2; kk++) {
                uint32_t af[4];
                mm_ldsm4(af, pa + kk * 16);
                const uint16_t *vb = kb + vro + kk * 16 * S;
#pragma unroll
                for (int j = 0; j < MM_NT_MAX; j += 2) {
                    if (j >= nto) break;
                    uint32_t bf[4];
                    mm_ldsm4t(bf, vb + j * 8);
                    mm_bf16(o[j], af, bf[0], bf[1]);
                    mm_bf16(o[j + 1], af, bf[2], bf[3]);
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
    asm volatile("cp.async.wait_group 0;\n" ::: "memory"); /* nothing left in flight when the CTA ends */
}

static int mm_hb(int32_t H) { return H >= 64 ? 4 : (H + 15) / 16; }

static size_t mm_smem_bytes(const kern_kv_t &kv, int32_t HB)
{
    const int32_t S = kv.d_c + kv.d_r + MM_PAD, fp8 = kv.dtype == MS_DT_F8E4M3;
    const int32_t rs = fp8 ? mm_raw_stride(kv) : 2 * S;
    return (size_t)HB * 16 * S * 2 + (size_t)MM_STAGES * MM_TILE * rs + (fp8 ? (size_t)MM_TILE * S * 2 : 0) +
           (size_t)HB * 16 * MM_PS * 2 + 2 * (size_t)HB * 2 * 16 * sizeof(float) + MM_STAGES * MM_TILE * sizeof(int);
}

bool mll_mma_fits(const mll_args &a)
{
    const int32_t dc = a.kv.d_c, dr = a.kv.d_r;
    const int32_t pe = dc + 4 * ((dc + KERN_FP8_BLOCK - 1) / KERN_FP8_BLOCK);
    if (dc <= 0 || dc % 32 || dr % 16 || dc / 16 > MM_NT_MAX || a.H <= 0) return false;
    if ((uintptr_t)a.kv.data % 16 || a.kv.row_bytes % 4 || (a.kv.dtype == MS_DT_F8E4M3 && pe % 4)) return false;
    return mm_smem_bytes(a.kv, mm_hb(a.H)) <= 227 * 1024;
}

int mll_mma_head_groups(int32_t H)
{
    const int32_t hb = mm_hb(H);
    return (H + 16 * hb - 1) / (16 * hb);
}

cudaError_t mll_mma_launch(const mll_args &a, int32_t n_seqs, int32_t splits, cudaStream_t stream)
{
    const int32_t HB = mm_hb(a.H);
    const size_t smem = mm_smem_bytes(a.kv, HB);
    const bool r1 = a.kv.d_c == 512;
    void (*const k)(mll_args, int32_t) = r1 ? mll_mma_kernel<32> : mll_mma_kernel<0>;
    static size_t smem_set[2]; /* the attribute is per function: raise it once to the largest size asked */
    if (smem > smem_set[r1]) {
        cudaError_t e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
        smem_set[r1] = smem;
    }
    k<<<dim3((unsigned)n_seqs, (unsigned)mll_mma_head_groups(a.H), (unsigned)splits), 64 * HB, smem, stream>>>(a, HB);
    return cudaGetLastError();
}
