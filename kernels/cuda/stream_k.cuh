/* stream_k.cuh — the stream-K scaffolding of the decode GEMMs gemm_fp8w.cu
 * (dequant mode) and gemm_fp8x.cu (fp8 mode): the work is tiles of 128
 * weight rows x 128-K chunks, split evenly over one CTA per SM, so a shape of
 * few tiles (q_a|kv_a: 17) still streams its weights through every SM.
 *  - sk_c0 / sk_owner: CTA i's range [sk_c0(i), sk_c0(i+1)) of the work, and
 *    the CTA that holds a work item. Depends on the shape and the grid alone,
 *    so the split (and with it every sum's order) is the same run to run.
 *  - sk_ring_init, sk_produce: the TMA ring's barriers and the producer's walk
 *    over the range (wait for the stage to be free, then load chunk kc of tile).
 *  - sk_seg_next: the consumers' walk, one tile's contiguous chunks at a time.
 *  - Partials: a CTA writes a tile it covers whole straight to y and the (at
 *    most two) tiles it shares as fp32 [BN][128] partials, slot 2i = CTA i's
 *    first tile, 2i+1 its last; sk_fixup lets the last of a shared tile's
 *    CTAs to finish sum its partials in CTA order and store it (a separate
 *    reduce pass cost 18-23 us at m = 128, more than the tile work of the
 *    small matrices, and a launch).
 *  - Units: the split is over units of CL CTAs (a thread-block cluster, CL = 1
 *    when there is none); a unit's work item is (group of CL adjacent tiles,
 *    chunk), the CTA of cluster rank r takes tile CL*group + r, so the CL CTAs
 *    walk the same chunks in step (gemm_fp8x.cu's multicast of the x block).
 *    CTA u*CL + r owns partial slots 2(u*CL + r) and +1.
 * Needs wgmma.cuh (barriers) and common.cuh (roundings) first. */
#ifndef MS_KERN_CUDA_STREAM_K_CUH
#define MS_KERN_CUDA_STREAM_K_CUH

#define SK_ROWS 128      /* weight rows per tile: one m64 half per consumer warpgroup */
#define SK_MIN_CHUNKS 4  /* fewest 128-K chunks per CTA (pipeline fill) */

__host__ __device__ __forceinline__ int64_t sk_c0(int64_t i, int64_t total, int64_t p) { return i * total / p; }
__host__ __device__ __forceinline__ int64_t sk_owner(int64_t x, int64_t total, int64_t p)
{
    const int64_t i = ((x + 1) * p - 1) / total;
    return i < p ? i : p - 1;
}

/* Units for `total` work items: at most p (sk_grid: one CTA per SM), fewer when a unit would get under
 * SK_MIN_CHUNKS chunks (half the SMs measured 1.0-1.1x faster on the small matrices at m = 37..128 and up
 * to 1.6x slower on the large, with the reduce pass this file had before its fixup). */
static inline int64_t sk_grid_max(int64_t total, int64_t p)
{
    if (p > (total + SK_MIN_CHUNKS - 1) / SK_MIN_CHUNKS) p = (total + SK_MIN_CHUNKS - 1) / SK_MIN_CHUNKS;
    return p < 1 ? 1 : p;
}
static inline int64_t sk_grid(int64_t total) { return sk_grid_max(total, mg_num_sms()); }

/* The token block (the wgmma N) for m tokens. */
static inline int sk_bn(int32_t m) { return m <= 8 ? 8 : m <= 16 ? 16 : m <= 32 ? 32 : m <= 64 ? 64 : 128; }

/* Bytes of partials a call needs: two [BN][128] fp32 slots a CTA. */
static inline size_t sk_part_bytes(int64_t p, int32_t m) { return (size_t)2 * p * sk_bn(m) * SK_ROWS * sizeof(float); }

/* The ring's barriers: full[i] completes when its stage's bytes (and full_count - 1 other arrivals) are in,
 * empty[i] when empty_count consumer threads have released it. Whole CTA. */
template <int ST>
__device__ __forceinline__ void sk_ring_init(uint64_t *full, uint64_t *empty, uint32_t full_count, uint32_t empty_count)
{
    if (threadIdx.x == 0) {
        for (int i = 0; i < ST; i++) {
            mg_bar_init(&full[i], full_count);
            mg_bar_init(&empty[i], empty_count);
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
}

/* A producer's walk over the CTA's range: for each chunk, wait until its stage is free, then
 * load(stage, tile, kc). */
template <int ST, class Load>
__device__ __forceinline__ void sk_produce(int64_t c0, int64_t c1, int kchunks, uint64_t *empty, Load &&load)
{
    int it = 0;
    for (int64_t c = c0; c < c1; c++, it++) {
        const int st = it % ST;
        mg_bar_wait(&empty[st], ((it / ST) & 1) ^ 1);
        load(st, (int)(c / kchunks), (int)(c % kchunks));
    }
}

/* One tile's (unit work tile's) contiguous piece of the range starting at c: its chunks [k0, k0 + nk); whole:
 * the unit covers all of it (store to y), else CTA cta's partial goes to slot (first piece of the range:
 * 2 cta, else 2 cta + 1). */
struct sk_seg {
    int tile, k0, nk, slot;
    bool whole;
};
__device__ __forceinline__ sk_seg sk_seg_at(int64_t c, int64_t c0, int64_t c1, int kchunks, int cta)
{
    sk_seg s;
    s.tile = (int)(c / kchunks), s.k0 = (int)(c % kchunks);
    const int64_t tend = (int64_t)(s.tile + 1) * kchunks;
    s.nk = (int)((c1 < tend ? c1 : tend) - c);
    s.whole = s.k0 == 0 && s.nk == kchunks;
    s.slot = 2 * cta + (c == c0 ? 0 : 1);
    return s;
}

/* This thread's accumulator element i of a tile (wgmma m64nN fragment of warpgroup wg; d[4q+{0,1,2,3}] =
 * (r, c), (r, c+1), (r+8, c), (r+8, c+1)): weight row within the 128-row tile and token. In a [BN][128]
 * partial, element i sits sk_frag_off(i) floats after element 0 (a constant once i is unrolled). */
__device__ __forceinline__ int sk_frag_row(int i, int wg, int warp, int lane)
{
    return wg * 64 + warp * 16 + lane / 4 + ((i & 2) ? 8 : 0);
}
__device__ __forceinline__ int sk_frag_tok(int i, int lane) { return 8 * (i / 4) + 2 * (lane % 4) + (i & 1); }
__device__ __forceinline__ int sk_frag_off(int i) { return (8 * (i / 4) + (i & 1)) * SK_ROWS + ((i & 2) ? 8 : 0); }

/* Partials are whole [BN][128] fp32 tiles (tokens past m and rows past n are the zeros of TMA's fill), so
 * neither the stores nor the fixup's loads need a bound. */
template <int BN>
__device__ __forceinline__ void sk_part_store(const float (&acc)[BN / 2], float *part, int slot, int wg, int warp,
                                              int lane)
{
    float *ps = part + (size_t)slot * BN * SK_ROWS + sk_frag_tok(0, lane) * SK_ROWS + sk_frag_row(0, wg, warp, lane);
#pragma unroll
    for (int i = 0; i < BN / 2; i++) ps[sk_frag_off(i)] = acc[i];
}

/* The shared tile's fixup, in the kernel (no second pass): every consumer thread (256, named barrier 3) has
 * stored its part of the CTA's partial of unit work tile `tile` (sk_part_store; its own tile is ct, of
 * cluster rank `rank` in units of cl CTAs). The CTAs of that rank in the units that share the tile count
 * their arrivals on cnt[ct]; the last to arrive sums the partials in unit order (the first owner's slot,
 * then slot 2i of each later owner's CTA: they all start inside the tile), leaves the sums in acc and returns
 * true (the caller stores the tile as if it had covered it whole), and zeroes the counter for the next
 * call. The others return false. The order of the sum does not depend on which CTA is last, so the result
 * is the same bits run to run; nothing waits on another CTA. */
template <int BN>
__device__ __forceinline__ bool sk_fixup(float (&acc)[BN / 2], const float *part, uint32_t *cnt, int *sh_last,
                                         int tile, int ct, int kchunks, int64_t total, int64_t p, int cl, int rank,
                                         int wg, int warp, int lane)
{
    const int64_t x0 = (int64_t)tile * kchunks;
    const int64_t i0 = sk_owner(x0, total, p), i1 = sk_owner(x0 + kchunks - 1, total, p);
    __threadfence(); /* this thread's partial stores before the count that publishes them */
    asm volatile("bar.sync 3, 256;" ::: "memory");
    if (threadIdx.x == 0) {
        const uint32_t before = atomicAdd(&cnt[ct], 1u);
        const int last = before == (uint32_t)(i1 - i0);
        if (last) cnt[ct] = 0; /* every other owner has arrived: none touches it again in this call */
        *sh_last = last;
    }
    asm volatile("bar.sync 3, 256;" ::: "memory");
    if (!*sh_last) return false;
    __threadfence(); /* the other owners' partials after their count */
    /* a partial at a time, its BN/2 loads independent (one element's chain of loads at a time cost ~60 us
     * at m = 128 on the H200) */
    const int64_t ss = (int64_t)BN * SK_ROWS;
    const int base = sk_frag_tok(0, lane) * SK_ROWS + sk_frag_row(0, wg, warp, lane);
    const float *first = part + (2 * (i0 * cl + rank) + (sk_c0(i0, total, p) == x0 ? 0 : 1)) * ss + base;
#pragma unroll
    for (int i = 0; i < BN / 2; i++) acc[i] = __ldcg(first + sk_frag_off(i));
    for (int64_t o = i0 + 1; o <= i1; o++) {
        const float *po = part + 2 * (o * cl + rank) * ss + base;
#pragma unroll
        for (int i = 0; i < BN / 2; i++) acc[i] = __fadd_rn(acc[i], __ldcg(po + sk_frag_off(i)));
    }
    return true;
}

/* Tile counters a context holds (kern_ctx_t.sk_count, zero between calls): the most tiles a call may have. */
#define SK_COUNTERS KERN_CUDA_SK_COUNTERS

#endif
