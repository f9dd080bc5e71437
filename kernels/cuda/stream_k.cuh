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
 *    most two) tiles it shares as fp32 [m][128] partials, slot 2i = CTA i's
 *    first tile, 2i+1 its last; sk_reduce sums a shared tile's partials in
 *    CTA order and rounds once (SiLU·mul for a gate|up tile: gate rows 0..63,
 *    up rows 64..127 of the partial).
 * Needs wgmma.cuh (barriers) and common.cuh (roundings) first. */
#ifndef MS_KERN_CUDA_STREAM_K_CUH
#define MS_KERN_CUDA_STREAM_K_CUH

#include <stdlib.h>

#define SK_ROWS 128      /* weight rows per tile: one m64 half per consumer warpgroup */
#define SK_MIN_CHUNKS 4  /* fewest 128-K chunks per CTA (pipeline fill) */

__host__ __device__ __forceinline__ int64_t sk_c0(int64_t i, int64_t total, int64_t p) { return i * total / p; }
__host__ __device__ __forceinline__ int64_t sk_owner(int64_t x, int64_t total, int64_t p)
{
    const int64_t i = ((x + 1) * p - 1) / total;
    return i < p ? i : p - 1;
}

/* CTAs for `total` work items: one per SM, fewer when a CTA would get under SK_MIN_CHUNKS chunks.
 * MS_SK_CTAS=N caps the grid (a bench knob, to weigh partial traffic against idle SMs). */
static inline int64_t sk_grid(int64_t total)
{
    static int cap = -1;
    if (cap < 0) {
        const char *e = getenv("MS_SK_CTAS");
        cap = e ? atoi(e) : 0;
    }
    int64_t p = mg_num_sms();
    if (cap > 0 && p > cap) p = cap;
    if (p > (total + SK_MIN_CHUNKS - 1) / SK_MIN_CHUNKS) p = (total + SK_MIN_CHUNKS - 1) / SK_MIN_CHUNKS;
    return p < 1 ? 1 : p;
}

/* Whether every CTA took whole tiles (then no partials and no reduce pass). */
static inline bool sk_whole_tiles(int64_t total, int64_t p, int kchunks)
{
    return total % p == 0 && (total / p) % kchunks == 0;
}

/* Bytes of partials a call needs: two [m][128] fp32 slots a CTA. */
static inline size_t sk_part_bytes(int64_t p, int32_t m) { return (size_t)2 * p * m * SK_ROWS * sizeof(float); }

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

/* One tile's contiguous piece of the range starting at c: its chunks [k0, k0 + nk); whole: the CTA covers all of
 * it (store to y), else its partial goes to slot (first piece of the range: 2i, else 2i+1). */
struct sk_seg {
    int tile, k0, nk, slot;
    bool whole;
};
__device__ __forceinline__ sk_seg sk_seg_at(int64_t c, int64_t c0, int64_t c1, int kchunks)
{
    sk_seg s;
    s.tile = (int)(c / kchunks), s.k0 = (int)(c % kchunks);
    const int64_t tend = (int64_t)(s.tile + 1) * kchunks;
    s.nk = (int)((c1 < tend ? c1 : tend) - c);
    s.whole = s.k0 == 0 && s.nk == kchunks;
    s.slot = 2 * (int)blockIdx.x + (c == c0 ? 0 : 1);
    return s;
}

struct sk_reduce_args {
    const float *part; /* [2 * p][m][128] */
    void *y;           /* [m, ldy] bf16, or f32 (y_f32) */
    int64_t ldy, total, p;
    int m, n, kchunks, inter, y_f32; /* inter > 0: gate|up tiles of 64 outputs, y = SiLU·mul (bf16) */
};

/* One block a tile; a tile one CTA covered is in y already. CTAs after the tile's first owner all start
 * inside it, so their piece is their first slot (2i); only the first owner's slot needs its start. Each
 * thread sums four outputs' partials (16-byte loads, independent across owners). */
__global__ static void __launch_bounds__(256) sk_reduce_kernel(const sk_reduce_args r)
{
    const int64_t x0 = (int64_t)blockIdx.x * r.kchunks;
    const int64_t i0 = sk_owner(x0, r.total, r.p), i1 = sk_owner(x0 + r.kchunks - 1, r.total, r.p);
    if (i0 == i1) return;
    const int64_t ss = (int64_t)r.m * SK_ROWS;
    const float *first = r.part + (2 * i0 + (sk_c0(i0, r.total, r.p) == x0 ? 0 : 1)) * ss;
    const int q4 = r.inter ? 16 : SK_ROWS / 4, cols = r.inter ? 64 : SK_ROWS;
    for (int e = threadIdx.x; e < r.m * q4; e += blockDim.x) {
        const int tok = e / q4, c = (e % q4) * 4;
        const int64_t off = (int64_t)tok * SK_ROWS + c;
        float4 s = *(const float4 *)(first + off), u = make_float4(0.f, 0.f, 0.f, 0.f);
        if (r.inter) u = *(const float4 *)(first + off + 64);
#pragma unroll 4
        for (int64_t i = i0 + 1; i <= i1; i++) {
            const float *pi = r.part + 2 * i * ss + off;
            const float4 v = *(const float4 *)pi;
            s.x = __fadd_rn(s.x, v.x), s.y = __fadd_rn(s.y, v.y), s.z = __fadd_rn(s.z, v.z), s.w = __fadd_rn(s.w, v.w);
            if (r.inter) {
                const float4 w = *(const float4 *)(pi + 64);
                u.x = __fadd_rn(u.x, w.x), u.y = __fadd_rn(u.y, w.y), u.z = __fadd_rn(u.z, w.z), u.w = __fadd_rn(u.w, w.w);
            }
        }
        const float sv[4] = {s.x, s.y, s.z, s.w}, uv[4] = {u.x, u.y, u.z, u.w};
        const int64_t o = (int64_t)tok * r.ldy + (int64_t)blockIdx.x * cols + c;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            if (r.inter) {
                ((uint16_t *)r.y)[o + j] = cu_silu_mul1(cu_bf16_round(sv[j]), cu_bf16_round(uv[j]));
            } else if ((int64_t)blockIdx.x * cols + c + j < r.n) {
                if (r.y_f32) ((float *)r.y)[o + j] = sv[j];
                else ((uint16_t *)r.y)[o + j] = cu_f_bf16(sv[j]);
            }
        }
    }
}

/* The reduce pass over ntile tiles, unless every CTA took whole tiles. */
static inline ms_status_t sk_reduce(cudaStream_t s, const sk_reduce_args &r, int ntile)
{
    if (sk_whole_tiles(r.total, r.p, r.kchunks)) return MS_OK;
    sk_reduce_kernel<<<(unsigned)ntile, 256, 0, s>>>(r);
    CU_LAUNCHED();
    return MS_OK;
}

#endif
