/* mla_latent_wgmma.cu — mw2_kernel, the default Hopper MLA kernel (sm_90a; R1's shapes): the CTA, shared
 * layout and consumer math of mla_latent_wgmma.cuh, plus a producer warpgroup; and the op's launch, which
 * picks it (for FP8 KV its folded variant; MS_MLA_FP8_FOLD=0 the dequantizing one) or mla_latent_wgmma1.cu's mw_kernel (MS_MLA_WGMMA=1). */
#include "mla_latent_wgmma.cuh"

/* ---- The warp-specialized kernel (mw2_kernel, the default; MS_MLA_WGMMA=1 picks mla_latent_wgmma1.cu's mw_kernel) ----
 * The same CTA (one query row x 64 heads x one split at a time), the same shared layout and the same consumer math
 * (warpgroups 0 and 1: S split by keys, P through shared memory, each a 64 x 256 O), plus a third, producer
 * warpgroup that alone fills the two tile slots, so no load or FP8 dequant runs on the consumers' issue slots and
 * a tile is filled during the whole of the previous tile's S, softmax and P V (mw_kernel's loads had only the
 * softmax, or only S, to hide under). setmaxnreg moves registers from the producer (104) to the consumers
 * (200): 104 + 2 x 200 <= 504, the CTA's 168 x 384 at launch (ptxas -v: no spills; 88 spilled the FP8 producer).
 * Persistent (at most a CTA an SM; mw2_next's order): a CTA walks work items (sequence x head group x split) and
 * their query rows, and the tiles of all of them go through the two slots in one count T, so the producer loads
 * the next row's Q and first tiles while the consumers finish the last tiles of the row before and store its
 * result (MS_MLA_PERSIST=0: a CTA an item). It gains little: 1-3 % at batch 128 x context 1k-4k (H100, BENCHMARKS
 * session 18): an item's fixed cost (~17 us a wave at context 64) is its Q and O bytes (137 KB an item, ~6 us a
 * wave at the copy rate), one tile's latency and the launch, which a CTA that stays shortens only a little.
 * Hand-offs are named barriers, each one producer-consumer pair in strict alternation:
 *  FULL[s]  producer arrives (its copies landed, or its stores done, and fenced to the async proxy), the
 *           consumers wait: slot s holds tile T (and its key flags);
 *  EMPTY[s] the consumers arrive once S and P V of tile T are done, the producer waits before filling slot s with
 *           tile T + 2 (and after its last fill, for the last two tiles);
 *  QFREE    (Q copied by the producer) the consumers arrive after a row's last S, the producer waits before
 *           copying the next row's Q (and after its last row);
 *  CONS     the consumers' own (row maxima, P halves, row sums, a row's start), in place of __syncthreads.
 * Producer, BF16: cp.async of all nine column blocks, then wait, fence, arrive. FP8: the e4m3 bytes and scales
 * of a whole tile in registers (66 a thread), loaded right after the previous tile's FULL so their latency hides
 * under a tile of MMAs; after EMPTY the rope goes by cp.async (bf16 already) and the bytes are dequantized into
 * the slot. Tiles two ahead are prefetched into L2 (cp.async.bulk.prefetch, where a block holds whole tiles).
 * An empty split (no keys) writes only its m = -inf and l = 0: the merge gives it weight 0 and never reads its o
 * (at batch 1 most of the 64 splits).
 * H200 (BENCHMARKS, 2026-12-02): BF16 KV 1.2-1.3x mw_kernel at batch 32/128 x context 1k-16k; FP8 KV within
 * -7 %..+6 % of it (faster at 1k, slower at 16k): what limits both is latency between the consumers' barriers
 * (S -> softmax -> P V drains the tensor pipe twice a tile), not HBM or the tensor pipe. */
#define MW2_THREADS 384
#define MW2_BAR_CONS 1
#define MW2_BAR_FULL 2  /* + slot */
#define MW2_BAR_EMPTY 4 /* + slot */
#define MW2_BAR_QFREE 6

__device__ static __forceinline__ void mw_bar_sync(int id, int n)
{
    asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(n) : "memory");
}
__device__ static __forceinline__ void mw_bar_arrive(int id, int n)
{
    asm volatile("bar.arrive %0, %1;" ::"r"(id), "r"(n) : "memory");
}

/* Producer, thread wt: the flags, faults and cp.async copies of rows r + 16p (r = wt >> 3, p < 4), chunk u = wt & 7
 * of column blocks cb0 .. cb1 - 1 (mw_issue's layout), read from byte src_ofs(cb, u) of the cache row; zeros for a
 * row past the keys or of a bad block */
template <class Ofs>
__device__ static __forceinline__ void mw2_copy_rows(const mll_args &a, const mw_tile_rows &rows, int32_t s,
                                                     uint8_t *sk, int *okf, int32_t wt, int32_t cb0, int32_t cb1,
                                                     Ofs src_ofs, bool flags = true)
{
    const int32_t r = wt >> 3, u = wt & 7;
    uint8_t *dst = sk + s * MW_TILE;
#pragma unroll
    for (int p = 0; p < 4; p++) {
        const int32_t row = r + 16 * p;
        const uint8_t *src = rows(row, u == 0); /* the row's flag and fault, once */
        const int ok = src != NULL;
        if (u == 0 && flags) okf[s * MW_T + row] = ok;
        if (!ok) src = (const uint8_t *)a.kv.data;
#pragma unroll
        for (int cb = cb0; cb < cb1; cb++)
            mm_cp(dst + cb * MW_CB + mw_sw(row, u), src + (ok ? src_ofs(cb, u) : 0), ok, 16);
    }
}

/* FP8 producer's registers for a tile's e4m3 bytes: thread wt holds group gq = wt >> 5 (channels 128gq ..: its
 * 8 chunks of 16, one scale) of rows (wt & 7) + 8((wt >> 3 & 3) + 4q), q < 2 — a phase of 8 lanes stores 8 rows
 * of the same chunk, so the swizzled stores do not conflict. The rope (bf16 already) goes by cp.async. */
struct mw2_f8 {
    uint4 v[2][8];
    float s[2];
};

__device__ static __forceinline__ int32_t mw2_f8_row(int32_t wt, int q) { return (wt & 7) + 8 * (((wt >> 3) & 3) + 4 * q); }

__device__ static __forceinline__ void mw2_load8(const mw_tile_rows &rows, int32_t wt, mw2_f8 &f)
{
    const int32_t gq = wt >> 5;
#pragma unroll
    for (int q = 0; q < 2; q++) {
        const uint8_t *src = rows(mw2_f8_row(wt, q), false);
#pragma unroll
        for (int e = 0; e < 8; e++) f.v[q][e] = make_uint4(0, 0, 0, 0);
        f.s[q] = 0.f;
        if (src) {
#pragma unroll
            for (int e = 0; e < 8; e++) f.v[q][e] = __ldg(reinterpret_cast<const uint4 *>(src + 128 * gq + 16 * e));
            f.s[q] = __ldg(reinterpret_cast<const float *>(src + MW_DC + 4 * gq));
        }
    }
}

/* e4m3x2 -> f16x2, exact (every e4m3 value, subnormals too, is an f16): one instruction a pair */
__device__ static __forceinline__ uint32_t mw_fp8x2_f16x2(uint32_t x2)
{
    uint32_t h2;
    asm("{.reg .b16 t; cvt.u16.u32 t, %1; cvt.rn.f16x2.e4m3x2 %0, t;}" : "=r"(h2) : "r"(x2));
    return h2;
}

/* The folded FP8 path's per-slot key scales, in the flag region (which that path does not use: a scale of 0 marks
 * a row past the keys or of a bad block): sks[slot * 64 + row]; the tile's largest at sks[2 * 64 + slot]. */
__device__ static __forceinline__ float *mw_fold_scales(int *okf) { return reinterpret_cast<float *>(okf); }

/* FOLD: the e4m3 codes as f16, unscaled, and (warp 0, whose lanes hold all 64 rows' scales, each row's one
 * scale being in every slot) the rows' scales and the tile's largest, for the consumers to fold into S and P.
 * Else bf16(e4m3 * s) (mll_stage's values). Into slot s: chunk c = 8gq + e is column block c >> 2, chunks
 * 2(c & 3) (+1). */
template <bool FOLD>
__device__ static __forceinline__ void mw2_store8(const mw2_f8 &f, int32_t s, uint8_t *sk, int32_t wt, int *okf)
{
    if constexpr (FOLD) {
        uint8_t *dst = sk + s * MW_TILE;
        const int32_t gq = wt >> 5;
#pragma unroll
        for (int q = 0; q < 2; q++) {
            const int32_t row = mw2_f8_row(wt, q);
#pragma unroll
            for (int e = 0; e < 8; e++) {
                const uint4 v = f.v[q][e];
                uint8_t *cb = dst + (2 * gq + (e >> 2)) * MW_CB;
                const int32_t j = 2 * (e & 3);
                *reinterpret_cast<uint4 *>(cb + mw_sw(row, j)) =
                    make_uint4(mw_fp8x2_f16x2(v.x & 0xffff), mw_fp8x2_f16x2(v.x >> 16), mw_fp8x2_f16x2(v.y & 0xffff),
                               mw_fp8x2_f16x2(v.y >> 16));
                *reinterpret_cast<uint4 *>(cb + mw_sw(row, j + 1)) =
                    make_uint4(mw_fp8x2_f16x2(v.z & 0xffff), mw_fp8x2_f16x2(v.z >> 16), mw_fp8x2_f16x2(v.w & 0xffff),
                               mw_fp8x2_f16x2(v.w >> 16));
            }
        }
        if (gq == 0) {
            float *sc = mw_fold_scales(okf);
            sc[s * MW_T + mw2_f8_row(wt, 0)] = f.s[0];
            sc[s * MW_T + mw2_f8_row(wt, 1)] = f.s[1];
            float m = fmaxf(f.s[0], f.s[1]);
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
            if (wt == 0) sc[2 * MW_T + s] = m;
        }
        return;
    }

    const int32_t gq = wt >> 5;
    uint8_t *dst = sk + s * MW_TILE;
#pragma unroll
    for (int q = 0; q < 2; q++) {
        const int32_t row = mw2_f8_row(wt, q);
        const float sc = f.s[q];
#pragma unroll
        for (int e = 0; e < 8; e++) {
            const uint4 v = f.v[q][e];
            uint8_t *cb = dst + (2 * gq + (e >> 2)) * MW_CB;
            const int32_t j = 2 * (e & 3);
            *reinterpret_cast<uint4 *>(cb + mw_sw(row, j)) =
                make_uint4(mm_fp8x2_bf16x2(v.x & 0xffff, sc), mm_fp8x2_bf16x2(v.x >> 16, sc),
                           mm_fp8x2_bf16x2(v.y & 0xffff, sc), mm_fp8x2_bf16x2(v.y >> 16, sc));
            *reinterpret_cast<uint4 *>(cb + mw_sw(row, j + 1)) =
                make_uint4(mm_fp8x2_bf16x2(v.z & 0xffff, sc), mm_fp8x2_bf16x2(v.z >> 16, sc),
                           mm_fp8x2_bf16x2(v.w & 0xffff, sc), mm_fp8x2_bf16x2(v.w >> 16, sc));
        }
    }
}

/* Whether the producer stages Q by cp.async (bf16 q_lat and q_pe, 16-byte aligned rows: what the decode step
 * passes); otherwise the consumers stage it through mm_stage_q (f32 q_lat, odd strides). Uniform over the CTA. */
__device__ static __forceinline__ bool mw2_q_async(const mll_args &a)
{
    return a.qdt == MS_DT_BF16 && (((uintptr_t)a.q | (uintptr_t)a.qpe | (uintptr_t)(a.ld_pe * 2) |
                                     (uintptr_t)(a.ld_pe_head * 2)) & 15) == 0;
}

/* Producer, thread wt: cp.async of Q (q_lat then q_pe of heads h0 .. h0 + 63 of query row tq, 576 bf16 each) into
 * its swizzled place, chunk u = wt & 7 of rows r + 16p of every column block (mw2_copy_rows' layout). Committed
 * with tile 0's copies, so tile 0's FULL covers it. Before, the consumers staged Q through mm_stage_q's generic
 * path (runtime divisions, ~3,600 instructions a warp): ~18 % of their time at batch 128 x context 1k (ncu). */
__device__ static __forceinline__ void mw2_copy_q(const mll_args &a, int32_t tq, int32_t h0, uint8_t *sq, int32_t wt)
{
    const int32_t r = wt >> 3, u = wt & 7;
#pragma unroll
    for (int p = 0; p < 4; p++) {
        const int32_t row = r + 16 * p, h = h0 + row;
        const uint16_t *ql = (const uint16_t *)a.q + ((int64_t)tq * a.H + h) * MW_DC;
        const uint16_t *qp = a.qpe + tq * a.ld_pe + h * a.ld_pe_head;
#pragma unroll
        for (int cb = 0; cb < 9; cb++)
            mm_cp(sq + cb * MW_CB_Q + mw_sw(row, u), cb < 8 ? ql + 64 * cb + 8 * u : qp + 8 * u, 1, 16);
    }
}

/* Whole-tile blocks: the block ids of a split's tiles, lane-distributed — lane l of each producer warp holds the
 * block of tile 32c + l in `cur` and of tile 32(c + 1) + l in `nxt`, loaded a 32-tile chunk ahead, so a tile's look-up
 * is a shuffle and no block-table load sits on the producer's per-tile path (ncu, FP8 b128 x ctx 1k: the one-tile-
 * early load of tile t + 2's id was moved to a uniform register at once, and its L2 latency was 18 % of the
 * producer's samples; the producer is what the FP8 consumers wait on). */
struct mw2_blks {
    int32_t cur, nxt, c; /* c: the chunk `cur` holds */
    __device__ __forceinline__ static int32_t load(const mll_args &a, const int32_t *bt, int32_t j0, int32_t j1,
                                                   int32_t tile)
    {
        const int32_t tb = j0 + tile * MW_T;
        return tb < j1 ? __ldg(bt + mw_blk_index(a.kv, tb)) : -1;
    }
    __device__ __forceinline__ void start(const mll_args &a, const int32_t *bt, int32_t j0, int32_t j1, int32_t lane)
    {
        c = 0;
        cur = load(a, bt, j0, j1, lane);
        nxt = load(a, bt, j0, j1, 32 + lane);
    }
    /* at tile t (a multiple of 32, > 0): chunk t / 32 moves to cur, the next chunk's load starts */
    __device__ __forceinline__ void advance(const mll_args &a, const int32_t *bt, int32_t j0, int32_t j1, int32_t lane)
    {
        c++;
        cur = nxt;
        nxt = load(a, bt, j0, j1, 32 * (c + 1) + lane);
    }
    /* the block of tile k, k in chunks c or c + 1 (the same in every lane) */
    __device__ __forceinline__ int32_t of(int32_t k) const
    {
        const int32_t x = __shfl_sync(0xffffffffu, cur, k & 31), y = __shfl_sync(0xffffffffu, nxt, k & 31);
        return (k >> 5) == c ? x : y;
    }
};

/* L2 prefetch of the tile at keys tb .. of block blk (whole-tile blocks; nothing for a bad block or past the keys) */
__device__ static __forceinline__ void mw2_prefetch_blk(const mll_args &a, const int32_t *bt, int32_t tb, int32_t j1,
                                                        int32_t blk)
{
    const mw_tile_rows r(a, bt, tb, j1, blk);
    if (!r.first) return;
    const uint32_t n = (uint32_t)min(MW_T, j1 - tb) * (uint32_t)a.kv.row_bytes; /* row_bytes: a multiple of 16 */
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(r.first), "r"(n) : "memory");
}

/* The producer warpgroup's part of one query row: tiles 0 .. ntiles - 1 of keys [j0, j1), the CTA's tiles T ..
 * (T advanced past them), each into slot (T + t) & 1; Q first (the previous row's last S done: QFREE). Nothing
 * of global memory is waited on between a slot's EMPTY and its FULL but the slot's own copies: the row look-up (a
 * shuffle of mw2_blks, for blocks of whole tiles) and (FP8) the e4m3 loads of a tile are issued after the previous
 * tile's FULL — after, because the fence before FULL (MEMBAR.ALL.CTA in the SASS) would wait for them. */
template <bool F8, bool FOLD>
__device__ static void mw2_produce(const mll_args &a, const int32_t *bt, int32_t j0, int32_t j1, int32_t ntiles,
                                   uint8_t *sk, int *okf, uint8_t *sq, int32_t tq, int32_t h0, int32_t &T, bool &qprev)
{
    const int32_t wt = (int32_t)threadIdx.x - 256, lane = wt & 31;
    const bool whole = a.kv.block_size % MW_T == 0;
    /* Q in flight while tile 0 loads: the CTA's first Q before anything (ahead of the block-table load, ~1 us: BF16
     * batch 32 was 4-8 % slower with it behind, H100), a later one once the consumers' last S of the row before
     * is done (QFREE), which the block ids and tile 0's e4m3 loads need not wait for */
    const bool qa = mw2_q_async(a), q_first = qa && !qprev;
    if (q_first) mw2_copy_q(a, tq, h0, sq, wt);
    mw2_f8 f;
    mw2_blks blks;
    if (whole) blks.start(a, bt, j0, j1, lane);
    mw_tile_rows rows = whole ? mw_tile_rows(a, bt, j0, j1, blks.of(0)) : mw_tile_rows(a, bt, j0, j1);
    if constexpr (F8) mw2_load8(rows, wt, f);
    if (qa && !q_first) {
        mw_bar_sync(MW2_BAR_QFREE, MW2_THREADS);
        mw2_copy_q(a, tq, h0, sq, wt);
    }
    qprev = qprev || qa;
    /* L2 prefetches run three tiles ahead (two before) */
    if (whole) {
        const int32_t b1 = blks.of(1), b2 = blks.of(2);
        if (wt == 0) mw2_prefetch_blk(a, bt, j0 + MW_T, j1, b1), mw2_prefetch_blk(a, bt, j0 + 2 * MW_T, j1, b2);
    }
    for (int32_t t = 0; t < ntiles; t++) {
        const int32_t s = (T + t) & 1, tb = j0 + t * MW_T;
        if (T + t >= 2) mw_bar_sync(MW2_BAR_EMPTY + s, MW2_THREADS); /* the consumers are done with tile T + t - 2 */
        if constexpr (F8) {
            mw2_copy_rows(a, rows, s, sk, okf, wt, 8, 9, [](int32_t, int32_t u) { return MW_DC + 16 + 16 * u; },
                          !FOLD);
            mm_commit();
            mw2_store8<FOLD>(f, s, sk, wt, okf);
        } else {
            mw2_copy_rows(a, rows, s, sk, okf, wt, 0, 9, [](int32_t cb, int32_t u) { return (8 * cb + u) * 16; });
            mm_commit();
        }
        asm volatile("cp.async.wait_group 0;\n" ::: "memory");
        mw_fence_async(); /* this thread's copies / stores, to wgmma's proxy */
        mw_bar_arrive(MW2_BAR_FULL + s, MW2_THREADS);
        if (t + 1 < ntiles) {
            if (whole) {
                if (((t + 1) & 31) == 0) blks.advance(a, bt, j0, j1, lane); /* tile t + 1 opens a chunk */
                rows = mw_tile_rows(a, bt, tb + MW_T, j1, blks.of(t + 1));
            } else {
                rows = mw_tile_rows(a, bt, tb + MW_T, j1);
            }
            if constexpr (F8) mw2_load8(rows, wt, f);
            if (whole) { /* (other block sizes are not prefetched) */
                const int32_t b3 = blks.of(t + 3);
                if (wt == 0) mw2_prefetch_blk(a, bt, tb + 3 * MW_T, j1, b3);
            }
        }
    }
    T += ntiles;
}

/* The folded FP8 path's Q: column blocks 0..7 (q_lat, bf16 as staged) rewritten in place as f16, for the f16
 * products with the e4m3 codes; the rope block stays bf16 (its product with the bf16 k_pe is a bf16 wgmma of its
 * own). Each head is first scaled by a power of two that puts its max |q_lat| in [2^14, 2^15], so f16 neither
 * overflows nor drops small values into its subnormals (exact: bf16's 8 bits fit f16's 11); inv[row] gets the
 * factor that undoes it. Consumer thread tid (< 256) takes row 8(tid >> 5) + (tid & 7), column blocks 2q and
 * 2q + 1 for q = (tid >> 3) & 3: a quarter-warp's 16-byte accesses are 8 rows of one chunk, which the swizzle puts
 * in distinct banks. Two passes over shared memory (the amax, then the conversion) keep the registers for O. */
__device__ static __forceinline__ void mw_fold_q(uint8_t *sq, float *inv, int32_t tid)
{
    const int32_t row = 8 * (tid >> 5) + (tid & 7), cb0 = 2 * ((tid >> 3) & 3);
    float amax = 0.f;
#pragma unroll 4
    for (int32_t x = 0; x < 16; x++) {
        const uint4 w = *reinterpret_cast<const uint4 *>(sq + (cb0 + (x >> 3)) * MW_CB_Q + mw_sw(row, x & 7));
        const uint32_t ws[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
        for (int e = 0; e < 4; e++)
            amax = fmaxf(amax, fmaxf(fabsf(__uint_as_float(ws[e] << 16)), fabsf(__uint_as_float(ws[e] & 0xffff0000u))));
    }
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 8)); /* the row's four lanes: l, l + 8, l + 16, l + 24 */
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 16));
    int ex = 0; /* q * 2^-ex goes to f16 */
    if (amax > 0.f && isfinite(amax)) {
        frexpf(amax, &ex); /* amax in [2^(ex-1), 2^ex) */
        ex = max(ex - 15, -100); /* -100: 2^100 stays a float (bf16's smallest normal is 2^-126) */
    }
    const float d = ldexpf(1.f, -ex);
    if (((tid >> 3) & 3) == 0) inv[row] = ldexpf(1.f, ex);
#pragma unroll 4
    for (int32_t x = 0; x < 16; x++) {
        uint4 *pw = reinterpret_cast<uint4 *>(sq + (cb0 + (x >> 3)) * MW_CB_Q + mw_sw(row, x & 7));
        const uint4 w = *pw;
        uint32_t ws[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const __half2 h =
                __floats2half2_rn(__uint_as_float(ws[e] << 16) * d, __uint_as_float(ws[e] & 0xffff0000u) * d);
            ws[e] = *reinterpret_cast<const uint32_t *>(&h);
        }
        *pw = make_uint4(ws[0], ws[1], ws[2], ws[3]);
    }
}

__device__ static __forceinline__ uint32_t mw_pack_h(float lo, float hi)
{
    const __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t *>(&h);
}

/* The rows a CTA takes, producer and consumers alike: work items blockIdx.x, + gridDim.x, ... of the n_hg x n_seqs x
 * splits (head group fastest, so a sequence's head groups run side by side and the second reads the cache rows
 * from L2), each item's query rows (a context split's all, or rows z, z + splits, ...). (it, i) steps to the next
 * row (start: it = blockIdx.x, i = -1); false past the last. The row's state is re-derived from (it, i) by mw2_row,
 * so only those two live across a row's tiles (the FP8 producer has no registers to spare). */
__device__ static __forceinline__ bool mw2_next(const mll_args &a, int32_t n_seqs, int32_t &it, int32_t &i)
{
    const int32_t n_hg = a.H / MW_H, n_items = n_hg * n_seqs * a.splits;
    for (; it < n_items; it += gridDim.x, i = -1) {
        const kern_attn_seq_t sd = a.seqs[it / n_hg % n_seqs];
        if (sd.n_q <= 0 || sd.q_off < 0) continue;
        const bool cs = mll_ctx_split(sd, a.splits);
        i = i < 0 ? (cs ? 0 : it / (n_hg * n_seqs)) : i + (cs ? 1 : a.splits);
        if (i < sd.n_q) return true;
    }
    return false;
}

struct mw2_row {
    int32_t seq, z, h0, tq, nk; /* tq: the query row in the step, nk: its keys */
    bool ctx_split;
    int32_t blk_off;
    __device__ __forceinline__ mw2_row(const mll_args &a, int32_t n_seqs, int32_t it, int32_t i)
    {
        const int32_t n_hg = a.H / MW_H;
        seq = it / n_hg % n_seqs, z = it / (n_hg * n_seqs), h0 = it % n_hg * MW_H;
        const kern_attn_seq_t sd = a.seqs[seq];
        tq = sd.q_off + i, nk = sd.pos0 + i + 1, ctx_split = mll_ctx_split(sd, a.splits), blk_off = sd.blk_off;
    }
};

/* FOLD (FP8 KV's default; MS_MLA_FP8_FOLD=0 picks the dequantizing variant, kept as its check): the KV rows' one power-of-two scale a token
 * (kern_kv_t) is folded instead of dequantized. The producer writes the e4m3 codes as f16 (one cvt a pair, against
 * ~6 instructions a pair for bf16(e4m3 * s)) and the rows' scales s_k; S = (Q_lat . codes_k) * s_k * inv_row +
 * Q_pe . k_pe (an f16 and a bf16 accumulator); P V takes P_k * s_k / s_ref as f16, s_ref the largest scale seen so
 * far in the split (O rescaled when it grows, beside the softmax correction; the result times s_ref), times 2^7, so
 * P' stays in [0, 2^15] (P <= 2^8 by MW_LAZY_MAX). With power-of-two scales every rescaling is exact: what differs
 * from the dequantizing path is only the
 * f16 (not bf16) rounding of q_lat and of P. It assumes kv_store's rows (kern_kv_t): one scale a token in every
 * slot (it reads slot 0 for all 512 channels), and a scale of 0 only where there is no key (a row's validity). */
template <bool F8, bool FOLD>
__global__ static void __launch_bounds__(MW2_THREADS, 1) mw2_kernel(mll_args a, int32_t n_seqs)
{
    cu_pdl_enter();
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
    __trap(); /* wgmma needs sm_90a machine code */
#else
    constexpr int NSR = MW_NS / 2, NK = 36; /* S registers, k-steps */
    extern __shared__ __align__(16) uint8_t mw_smem[];
    uint8_t *sm = mw_smem + ((1024 - (mm_sa(mw_smem) & 1023)) & 1023);
    uint8_t *sq = sm, *sk = sm + MW_OFF_K, *sp = sm + MW_OFF_P;
    int *okf = reinterpret_cast<int *>(sm + MW_OFF_OK);
    float *smax = reinterpret_cast<float *>(sm + MW_OFF_RED), *ssum = smax + 2 * MW_H;
    const int32_t tid = threadIdx.x;
    const bool q_async = mw2_q_async(a);
    int32_t T = 0; /* the CTA's tiles so far, over all its items and rows: tile T goes through slot T & 1 */
    if (tid >= 256) { /* the producer */
        asm volatile("setmaxnreg.dec.sync.aligned.u32 104;\n" ::: "memory");
        bool qprev = false; /* a Q was copied: the next waits for QFREE */
        for (int32_t it = blockIdx.x, i = -1; mw2_next(a, n_seqs, it, i);) {
            const mw2_row w(a, n_seqs, it, i);
            const int2 keys = mw_keys(w.nk, w.ctx_split, a.splits, w.z);
            const int32_t ntiles = (keys.y - keys.x + MW_T - 1) / MW_T;
            if (ntiles > 0)
                mw2_produce<F8, FOLD>(a, a.bt + w.blk_off, keys.x, keys.y, ntiles, sk, okf, sq, w.tq, w.h0, T, qprev);
        }
        /* the consumers' arrivals no fill waited on: EMPTY of the last two tiles, QFREE of the last row */
        for (int32_t u = max(T - 2, 0); u < T; u++) mw_bar_sync(MW2_BAR_EMPTY + (u & 1), MW2_THREADS);
        if (qprev) mw_bar_sync(MW2_BAR_QFREE, MW2_THREADS);
        return;
    }
    asm volatile("setmaxnreg.inc.sync.aligned.u32 200;\n" ::: "memory");
    const int32_t wg = tid >> 7, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    const int32_t r0 = ((tid >> 5) & 3) * 16 + g; /* this thread's rows (heads h0 + r0, h0 + r0 + 8) */
    for (int32_t it = blockIdx.x, i = -1; mw2_next(a, n_seqs, it, i);) {
        const mw2_row w(a, n_seqs, it, i);
        const int32_t seq = w.seq, z = w.z, h0 = w.h0, tq = w.tq;
        const bool ctx_split = w.ctx_split;
        const int2 keys = mw_keys(w.nk, ctx_split, a.splits, z);
        const int32_t j0 = keys.x, j1 = keys.y, ntiles = (j1 - j0 + MW_T - 1) / MW_T;
        mw_bar_sync(MW2_BAR_CONS, 256); /* both warpgroups are done with the previous row's ssum (and Q, P) */
        if (ntiles == 0) { /* an empty split: weight 0 in the merge, which never reads its o */
            if (ctx_split && wg == 0 && t4 == 0)
#pragma unroll
                for (int rr = 0; rr < 2; rr++) {
                    float *pp = mll_part(a, seq, i, h0 + r0 + 8 * rr, z);
                    pp[0] = -INFINITY, pp[1] = 0.f;
                }
            if (!ctx_split) { /* a prefill row with no keys (cannot happen: nk >= 1) keeps the old result, zeros */
#pragma unroll
                for (int rr = 0; rr < 2; rr++) {
                    const int64_t base = ((int64_t)tq * a.H + h0 + r0 + 8 * rr) * MW_DC + wg * 256 + 2 * t4;
#pragma unroll
                    for (int j = 0; j < 32; j++) {
                        if (a.odt == MS_DT_F32) *reinterpret_cast<float2 *>((float *)a.o + base + 8 * j) = make_float2(0.f, 0.f);
                        else *reinterpret_cast<uint32_t *>((uint16_t *)a.o + base + 8 * j) = 0u;
                    }
                }
            }
            continue;
        }
        if (!q_async) { /* else the producer copies Q with tile 0 */
            mm_stage_q(a, tq, h0, MW_H, [&](int32_t r, int32_t c, uint4 w) {
                *reinterpret_cast<uint4 *>(sq + (c >> 6) * MW_CB_Q + mw_sw(r, (c >> 3) & 7)) = w;
            }, tid, 256);
            mw_fence_async(); /* Q, to wgmma's proxy (the first FULL wait orders it for the other consumers) */
        }
        float o[128];
#pragma unroll
        for (int j = 0; j < 128; j++) o[j] = 0.f;
        float m_r[2] = {-INFINITY, -INFINITY}, l_r[2] = {0.f, 0.f}; /* l_r: this thread's keys */
        /* FOLD: Q's row factors; O's unit, s_ref / 2^7 (s_ref the split's largest key scale so far); else 1 */
        float iq[2] = {1.f, 1.f}, sref = FOLD ? 0.f : 1.f;
        const float *fsc = mw_fold_scales(okf);
        const uint64_t dq = mw_desc(sq, 0), dp = mw_desc(sp, 0);
        for (int32_t t = 0; t < ntiles; t++) {
            const int32_t tb = j0 + t * MW_T, slot = (T + t) & 1;
            mw_bar_sync(MW2_BAR_FULL + slot, MW2_THREADS); /* tile t is in (our P V of tile t - 1 is done) */
            if constexpr (FOLD)
                if (t == 0) { /* Q is in (with tile 0, or staged above): to f16, then both warpgroups' S may read it */
                    mw_fold_q(sq, ssum, tid);
                    mw_fence_async();
                    mw_bar_sync(MW2_BAR_CONS, 256);
                    iq[0] = ssum[r0], iq[1] = ssum[r0 + 8]; /* ssum is next written after this row's tiles */
                }
            const uint8_t *kt = sk + slot * MW_TILE;
            /* B descriptors: the tile's, with this warpgroup's key offset added to the low word once; a k step adds an
             * immediate to that word alone (addresses stay below 2^18: no carry). Written as a 64-bit sum with the
             * warpgroup term inside, ptxas rebuilt each one with a sign extension, a 64-bit add and two R2UR (~12
             * instructions a wgmma, 435 a warp a tile: ~22 % of the consumers' time at batch 128 x context 1k, ncu,
             * the S issue slower than its MMAs). A consumer copy per warpgroup made the index a constant but doubled
             * the hot code: instruction-cache misses cost more than it saved (H200, 2026-12-02). */
            const uint64_t dk = mw_desc(kt, 0);
            const uint32_t dk_hi = (uint32_t)(dk >> 32), dk_lo = (uint32_t)dk + (uint32_t)wg * (MW_NS * 128 / 16);
            float s[NSR], spe[FOLD ? NSR : 1]; /* FOLD: S of the latent channels (f16) and of the rope ones (bf16) */
#pragma unroll
            for (int e = 0; e < NSR; e++) s[e] = 0.f;
            if constexpr (FOLD)
#pragma unroll
                for (int e = 0; e < NSR; e++) spe[e] = 0.f;
            mg_wg_fence();
            if constexpr (FOLD) {
#pragma unroll
                for (int k = 0; k < 32; k++)
                    mw_s32w<true>(s, dq + (((k >> 2) * MW_CB_Q + (k & 3) * 32) >> 4),
                                  dk_lo + (uint32_t)(((k >> 2) * MW_CB + (k & 3) * 32) >> 4), dk_hi, k > 0);
#pragma unroll
                for (int k = 32; k < NK; k++)
                    mw_s32w<false>(spe, dq + (((k >> 2) * MW_CB_Q + (k & 3) * 32) >> 4),
                                   dk_lo + (uint32_t)(((k >> 2) * MW_CB + (k & 3) * 32) >> 4), dk_hi, k > 32);
            } else {
#pragma unroll
                for (int k = 0; k < NK; k++)
                    mw_s32w<false>(s, dq + (((k >> 2) * MW_CB_Q + (k & 3) * 32) >> 4),
                                   dk_lo + (uint32_t)(((k >> 2) * MW_CB + (k & 3) * 32) >> 4), dk_hi, k > 0);
            }
            mg_wg_commit();
            /* the tile's key flags (or FOLD scales, and the tile's largest) read while S runs: read after its wait,
             * the first score multiply waited on them (ncu, FP8 b128 x ctx 1k: ~6 % of the samples). A key pair's
             * in one 8-byte load: ncu found a load (and a constant reload) a value. */
            int2 kf[FOLD ? 1 : NSR / 4];
            float ks[FOLD ? MW_NS / 4 : 1]; /* FOLD: the scales of this thread's 8 keys (0: no key) */
#pragma unroll
            for (int j = 0; j < NSR / 4; j++) {
                const int32_t col = wg * MW_NS + 8 * j + 2 * t4;
                if constexpr (FOLD) {
                    const float2 kc = *reinterpret_cast<const float2 *>(fsc + slot * MW_T + col);
                    ks[2 * j] = kc.x, ks[2 * j + 1] = kc.y;
                } else {
                    kf[j] = *reinterpret_cast<const int2 *>(okf + slot * MW_T + col);
                }
            }
            const float smax_t = FOLD ? fsc[2 * MW_T + slot] : 0.f;
            mg_wg_wait0();
#pragma unroll
            for (int e = 0; e < NSR; e++) mg_reg_fence(s[e]);
            if (q_async && t == ntiles - 1) mw_bar_arrive(MW2_BAR_QFREE, MW2_THREADS); /* the row's last read of Q */
            if constexpr (FOLD)
#pragma unroll
                for (int e = 0; e < NSR; e++) mg_reg_fence(spe[e]);
            /* a thread holds rows r0 (e 0, 1) and r0 + 8 (e 2, 3) of n8 block j, keys wg*32 + 8j + 2*t4 + (e & 1) */
            float mx[2] = {-INFINITY, -INFINITY};
            const float sc = a.scale;
#pragma unroll
            for (int j = 0; j < NSR / 4; j++) {
                const int32_t col = wg * MW_NS + 8 * j + 2 * t4;
                bool v0, v1;
                if constexpr (FOLD) {
                    v0 = tb + col < j1 && ks[2 * j] > 0.f, v1 = tb + col + 1 < j1 && ks[2 * j + 1] > 0.f;
                } else {
                    v0 = tb + col < j1 && kf[j].x, v1 = tb + col + 1 < j1 && kf[j].y;
                }
#pragma unroll
                for (int rr = 0; rr < 2; rr++) {
                    float &x0 = s[4 * j + 2 * rr], &x1 = s[4 * j + 2 * rr + 1];
                    if constexpr (FOLD) {
                        x0 = v0 ? (x0 * ks[2 * j] * iq[rr] + spe[4 * j + 2 * rr]) * sc : -INFINITY;
                        x1 = v1 ? (x1 * ks[2 * j + 1] * iq[rr] + spe[4 * j + 2 * rr + 1]) * sc : -INFINITY;
                    } else {
                        x0 = v0 ? x0 * sc : -INFINITY;
                        x1 = v1 ? x1 * sc : -INFINITY;
                    }
                    mx[rr] = fmaxf(mx[rr], fmaxf(x0, x1));
                }
            }
            mw_max_publish(mx, smax, wg, r0, t4);
            mw_bar_sync(MW2_BAR_CONS, 256);
            float corr[2];
            mw_softmax<NSR>(s, m_r, l_r, mx, smax, wg, r0, corr);
            if constexpr (FOLD) { /* P V's P: 2^7 P_k s_k / s_ref as f16; O moves to the new reference with corr */
                const float snew = fmaxf(sref, smax_t), rs = snew > 0.f ? sref / snew : 1.f;
                /* P <= 2^8 (MW_LAZY_MAX), so P' = 2^7 P s_k / s_ref is in [0, 2^15]: f16's normal range for all but
                 * P s_k / s_ref < 2^-21, against a row sum >= 1 (powers of two: exact) */
                const float inv_ref = snew > 0.f ? 128.f / snew : 0.f;
                sref = snew;
                corr[0] *= rs, corr[1] *= rs; /* l_r, above, took the softmax correction alone */
#pragma unroll
                for (int j = 0; j < MW_NS / 8; j++) {
                    const int32_t ch = wg * (MW_NS / 8) + j;
                    const float k0 = ks[2 * j] * inv_ref, k1 = ks[2 * j + 1] * inv_ref;
                    *reinterpret_cast<uint32_t *>(sp + mw_sw(r0, ch) + 4 * t4) =
                        mw_pack_h(s[4 * j] * k0, s[4 * j + 1] * k1);
                    *reinterpret_cast<uint32_t *>(sp + mw_sw(r0 + 8, ch) + 4 * t4) =
                        mw_pack_h(s[4 * j + 2] * k0, s[4 * j + 3] * k1);
                }
            } else {
                mw_store_p(sp, s, wg, r0, t4);
            }
            mw_rescale_o(o, corr);
            mw_fence_async();
            mw_bar_sync(MW2_BAR_CONS, 256); /* both halves of P are in (and both read the other's maxima) */
            mg_wg_fence();
            const uint64_t dv = mw_desc(kt + wg * 4 * MW_CB, MW_CB);
#pragma unroll
            for (int kk = 0; kk < MW_T / 16; kk++) mw_pv<FOLD>(o, dp + kk * 2, dv + kk * 16 * 128 / 16);
            mg_wg_commit();
            mg_wg_wait0();
#pragma unroll
            for (int j = 0; j < 128; j++) mg_reg_fence(o[j]);
            mw_bar_arrive(MW2_BAR_EMPTY + slot, MW2_THREADS); /* slot free for the CTA's tile T + t + 2 */
        }
        T += ntiles;
        mw_sum_publish(l_r, ssum, wg, r0, t4); /* the two warpgroups' row sums */
        mw_bar_sync(MW2_BAR_CONS, 256);
        const float ou = FOLD ? sref * (1.f / 128.f) : 1.f; /* O's unit */
        mw_write(a, o, m_r, ssum, seq, i, tq, h0, r0, wg, t4, ctx_split, ou, z);
    }
#endif
}

bool mll_wg_fits(const mll_args &a)
{
    static int cc = -1; /* sm_90 only: the machine code is sm_90a's */
    if (cc < 0) {
        int dev = 0, major = 0;
        cc = cudaGetDevice(&dev) == cudaSuccess &&
                     cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess
                 ? major
                 : 0;
    }
    const kern_kv_t &kv = a.kv;
    return cc == 9 && kv.d_c == MW_DC && kv.d_r == MW_DR && a.H > 0 && a.H % MW_H == 0 && (uintptr_t)kv.data % 16 == 0 &&
           (uintptr_t)a.o % 8 == 0 &&
           (kv.dtype == MS_DT_BF16 || kv.dtype == MS_DT_F8E4M3) && kv.row_bytes == kern_kv_row_bytes(kv.dtype, MW_DC, MW_DR);
}
template <bool F8, bool FOLD = false>
static cudaError_t mw_launch(const mll_args &a, int32_t n_seqs, int32_t splits, cudaStream_t stream)
{
    static bool set; /* the attribute is per function */
    void (*k)(mll_args, int32_t) = mw2_kernel<F8, FOLD>;
    if (!set) {
        cudaError_t e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, MW_SMEM);
        if (e != cudaSuccess) return e;
        set = true;
    }
    /* persistent: one CTA an SM walks the items (mw2_next), so an item's Q and first tiles load under the previous
     * item's last tiles and its result stores (MS_MLA_PERSIST=0: a CTA an item, the A/B) */
    const int64_t items = (int64_t)(a.H / MW_H) * n_seqs * splits, sms = mg_num_sms();
    const int64_t grid = cu_env_is("MS_MLA_PERSIST", "0") || items < sms ? items : sms;
    cu_launch(k, dim3((unsigned)grid), MW2_THREADS, MW_SMEM, stream, a, n_seqs);
    return cudaGetLastError();
}

/* The warp-specialized kernel (mw2_kernel) unless MS_MLA_WGMMA=1 picks mw_kernel; for FP8 KV its folded-scale
 * variant (0.85x the dequantizing one's time at b128 x 16k, H200) unless MS_MLA_FP8_FOLD=0. Read per call (host side) so a bench can flip them. */
cudaError_t mll_wg_launch(const mll_args &a, int32_t n_seqs, int32_t splits, cudaStream_t stream)
{
    const bool fp8 = a.kv.dtype == MS_DT_F8E4M3;
    if (cu_env_is("MS_MLA_WGMMA", "1")) return mw1_launch(a, fp8, n_seqs, splits, stream);
    if (fp8)
        return cu_env_is("MS_MLA_FP8_FOLD", "0") ? mw_launch<true>(a, n_seqs, splits, stream)
                                                 : mw_launch<true, true>(a, n_seqs, splits, stream);
    return mw_launch<false>(a, n_seqs, splits, stream);
}
