/* mla_latent_wgmma.cuh — paged latent attention on Hopper's warpgroup MMA
 * (wgmma, sm_90a), FlashMLA's class of decode kernel for R1's shapes (d_c 512,
 * d_r 64, heads a multiple of 64; the op falls back to mla_latent_mma.cu
 * otherwise).
 *
 * A CTA of two warpgroups takes one query row of one sequence, 64 heads (the
 * wgmma M) and one context split; a sequence's head groups are adjacent CTAs,
 * so the second reads the cache rows from L2. Its Q (q_lat rounded to bf16,
 * then q_pe: 64 x 576) sits in shared memory; the cache rows stream through
 * bf16 tiles of 64 keys in the 128-byte-swizzled layout wgmma reads: nine
 * column blocks of 64 channels, 64 rows of 128 bytes each. One tile serves
 * both products, so a cache row is read once: S = Q K^T takes it as a K-major
 * B (keys are N), O += P V takes its first 512 channels as an N-major B
 * (channels are N, keys are K; imm-trans-b). Each warpgroup adds P V for its
 * 256 output channels (m64n256k16, a 64 x 256 fp32 accumulator, 128 registers
 * a thread). Warpgroup w computes S for keys 32w .. (m64n32, K 576), the two
 * swap row maxima through shared memory and write their bf16 probabilities
 * into one 64 x 64 P tile that both read (P V from shared memory); each keeps
 * the row sum of its keys, added once at the end. Both apply the same running
 * max, so their states agree.
 *
 * Pipeline (two tile slots): P V of tile t runs on under the barrier and the
 * S issue of tile t + 1; the wait after that S frees tile t - 1's slot for
 * tile t + 1. A warpgroup fills only what its own P V reads (column blocks
 * 4w .. 4w + 3) and the rope rows of its own S keys (32w ..), so it need not
 * wait for the other's P V.
 *  - BF16 KV: cp.async by every thread straight to the swizzled place; tile
 *    t + 1's copies start once tile t's S is done.
 *  - FP8 KV (656-byte rows): the same tile, filled from registers. Tile t + 1's
 *    e4m3 bytes, scales and rope are loaded (plain 16-byte loads, 48 registers
 *    a thread) while tile t's S runs; after the wait the thread dequantizes
 *    them to bf16(e4m3 * s_g) (mll_stage's values) into the free slot while
 *    tile t's P V runs. So each FP8 value is converted once per CTA, by one
 *    thread, and the MMA loop is the BF16 one (64-key tiles, the same barriers
 *    a key) — before, FP8 ran 32-key tiles through a raw shared ring (no room
 *    for two 64-key bf16 tiles beside it) at twice the barriers a key.
 * A tile starts at a multiple of 64 keys, so with R1's 64-token blocks (any multiple of 64) its rows share one
 * block: one block-table look-up a tile and thread (mw_tile_rows), not one a row.
 * Rows past the keys or of a bad block are zero-filled (cp.async src-size 0,
 * or zero registers), so P V never sees stale or NaN bytes; a bad block raises
 * KERN_FAULT_BLOCK and its keys are left out, as in the other kernels.
 *
 * Numerics are mla_latent_mma.cu's (q_lat and the probabilities rounded to
 * bf16, fp32 sums) but for the exponential (ex2.approx of an FFMA, mm_ex2,
 * against its __expf) and the lazy running max (MW_LAZY_MAX); the splits, the
 * workspace layout and the merge are mla_latent.cu's.
 *
 * Two kernels have that math: mw_kernel (mla_latent_wgmma1.cu: both
 * warpgroups load and compute) and mw2_kernel (mla_latent_wgmma.cu: a third,
 * producer warpgroup loads), the default; MS_MLA_WGMMA=1 picks mw_kernel. This
 * header holds what both use: the shared layout, the descriptors, the wgmma
 * wrappers and the key/row look-ups. For FP8 KV,
 * mw2_kernel runs its folded variant (FOLD; MS_MLA_FP8_FOLD=0 the dequantizing
 * one; mw_kernel dequantizes), whose q_lat and P are f16 instead: see mw2_kernel. */
#ifndef MS_KERN_CUDA_MLA_LATENT_WGMMA_CUH
#define MS_KERN_CUDA_MLA_LATENT_WGMMA_CUH

#include "mla_latent.cuh"
#include "wgmma.cuh" /* mg_wg_fence, mg_wg_commit, mg_wg_wait0, mg_reg_fence */

#include <stdlib.h>
#include <string.h>
#include "pdl.cuh"

#define MW_H 64            /* heads per CTA: the wgmma M */
#define MW_THREADS 256     /* two warpgroups */
#define MW_T 64            /* keys a tile */
#define MW_NS 32           /* keys of S a warpgroup */
#define MW_DC 512
#define MW_DR 64
#define MW_CB_Q (MW_H * 128)         /* bytes of one 64-channel column block of Q */
#define MW_Q_BYTES (9 * MW_CB_Q)     /* 576 channels */
#define MW_CB (MW_T * 128)           /* bytes of one column block of a K tile */
#define MW_TILE (9 * MW_CB)
#define MW_OFF_K MW_Q_BYTES          /* two tiles */
#define MW_OFF_P (MW_OFF_K + 2 * MW_TILE) /* the P tile, 64 rows of 128 bytes */
#define MW_OFF_OK (MW_OFF_P + MW_H * 128) /* [3][MW_T] row holds a key */
#define MW_OFF_RED (MW_OFF_OK + 3 * MW_T * 4) /* smax[2][64], ssum[2][64] */
#define MW_BYTES (MW_OFF_RED + 4 * MW_H * 4)
#define MW_SMEM (MW_BYTES + 1024) /* + slack to align the base to the 1024-byte swizzle atom */
static_assert(MW_SMEM <= 227 * 1024, "shared memory");

/* byte offset of 16-byte chunk j (0..7) of row r in a 128-byte-swizzled column block */
__device__ static __forceinline__ int32_t mw_sw(int32_t r, int32_t j) { return r * 128 + ((j ^ (r & 7)) << 4); }

/* 128-byte-swizzle descriptor, 8-row groups 1024 bytes apart (SBO); lbo: the N-major B's stride between
 * 64-channel blocks (unused for K-major) */
__device__ static __forceinline__ uint64_t mw_desc(const void *p, uint32_t lbo)
{
    return (uint64_t)((mm_sa(p) & 0x3ffff) >> 4) | ((uint64_t)(lbo >> 4) << 16) | ((uint64_t)(1024 >> 4) << 32) |
           (1ull << 62);
}

__device__ static __forceinline__ void mw_fence_async() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }

/* mw_s32 with B's descriptor given as its two words: the 64-bit value is formed inside the PTX, so the
 * per-step change is one 32-bit add to the low word (the high word is the same for every step). F16: f16 A and B
 * (the folded FP8 path's latent channels), else bf16. */
#define MW_S32W_ASM(TY)                                                                                                \
    asm volatile("{\n.reg .pred p;\n.reg .b64 db;\nsetp.ne.b32 p, %19, 0;\nmov.b64 db, {%17, %18};\n"                \
                 "wgmma.mma_async.sync.aligned.m64n32k16.f32." TY "." TY " {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15}, %16, db, p, 1, 1, 0, 0;\n}\n" \
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]) \
                 : "l"(da), "r"(db_lo), "r"(db_hi), "r"(acc))
template <bool F16>
__device__ static __forceinline__ void mw_s32w(float *d, uint64_t da, uint32_t db_lo, uint32_t db_hi, int acc)
{
    if constexpr (F16) MW_S32W_ASM("f16");
    else MW_S32W_ASM("bf16");
}
#undef MW_S32W_ASM

/* P V: m64n256k16, B N-major; F16 as mw_s32w */
#define MW_PV_ASM(TY) \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n" \
                 "wgmma.mma_async.sync.aligned.m64n256k16.f32." TY "." TY " {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111,%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,%126,%127}, %128, %129, p, 1, 1, 0, 1;\n}\n" \
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127]) \
                 : "l"(da), "l"(db), "r"(1))
template <bool F16> __device__ static __forceinline__ void mw_pv(float *d, uint64_t da, uint64_t db)
{
    if constexpr (F16) MW_PV_ASM("f16");
    else MW_PV_ASM("bf16");
}
#undef MW_PV_ASM

/* The keys [x, y) of split z: chunks of whole tiles, as mm_keys (empty splits write m = -inf) */
__device__ static inline int2 mw_keys(int32_t nk, bool ctx_split, int32_t splits, int32_t z)
{
    if (!ctx_split) return make_int2(0, nk);
    const int32_t per = ((nk + splits - 1) / splits + MW_T - 1) / MW_T * MW_T;
    const int32_t j0 = min(nk, z * per);
    return make_int2(j0, min(nk, j0 + per));
}

/* The block-table entry of key p: R1's 64-token blocks take a shift, not a division */
__device__ static __forceinline__ int32_t mw_blk_index(const kern_kv_t &kv, int32_t p)
{
    return kv.block_size == 64 ? p >> 6 : p / kv.block_size;
}

/* The cache row of key p (< j1) or NULL (past the keys, or a bad block: raises the fault when `report`) */
__device__ static __forceinline__ const uint8_t *mw_row(const mll_args &a, const int32_t *bt, int32_t p, int32_t j1,
                                                        bool report)
{
    if (p >= j1) return NULL;
    const kern_kv_t &kv = a.kv;
    const int32_t bi = mw_blk_index(kv, p), blk = bt[bi];
    if (blk < 0 || blk >= kv.n_blocks) {
        if (report) cu_fault(a.fault, KERN_FAULT_BLOCK);
        return NULL;
    }
    return (const uint8_t *)kv.data + ((int64_t)blk * kv.block_size + (p - bi * kv.block_size)) * kv.row_bytes;
}

/* The rows of one tile (keys tb .., tb a multiple of 64): blocks of a multiple of 64 tokens hold the whole tile, so
 * its block is looked up once (each row then checks only its key against j1); other block sizes look up per row */
struct mw_tile_rows {
    const mll_args *ap; /* a pointer, not a reference: the producer reassigns its rows a tile */
    const int32_t *bt;
    int32_t tb, j1;
    bool whole;
    const uint8_t *first; /* whole: the tile's first row, NULL for a bad block */
    __device__ __forceinline__ mw_tile_rows(const mll_args &a_, const int32_t *bt_, int32_t tb_, int32_t j1_)
        : ap(&a_), bt(bt_), tb(tb_), j1(j1_), whole(a_.kv.block_size % MW_T == 0)
    {
        first = whole ? mw_row(a_, bt, tb, j1, false) : NULL;
    }
    /* whole-tile blocks, the block id already loaded (blk = bt[block of tb]: mw2_produce loads it a tile early) */
    __device__ __forceinline__ mw_tile_rows(const mll_args &a_, const int32_t *bt_, int32_t tb_, int32_t j1_, int32_t blk)
        : ap(&a_), bt(bt_), tb(tb_), j1(j1_), whole(true)
    {
        const kern_kv_t &kv = a_.kv;
        const int32_t bi = mw_blk_index(kv, tb);
        first = tb < j1 && blk >= 0 && blk < kv.n_blocks
                    ? (const uint8_t *)kv.data + ((int64_t)blk * kv.block_size + (tb - bi * kv.block_size)) * kv.row_bytes
                    : NULL;
    }
    /* row `row` of the tile or NULL (past the keys; a bad block, raising the fault when `report`) */
    __device__ __forceinline__ const uint8_t *operator()(int32_t row, bool report) const
    {
        if (!whole) return mw_row(*ap, bt, tb + row, j1, report);
        if (tb + row >= j1) return NULL;
        if (!first) {
            if (report) cu_fault(ap->fault, KERN_FAULT_BLOCK);
            return NULL;
        }
        return first + (int64_t)row * ap->kv.row_bytes;
    }
};

/* ---- The consumers' softmax and results, the same in both kernels. A thread holds rows r0 (elements e of its S
 * with (e >> 1) & 1 == 0) and r0 + 8 of its warpgroup's S, keys wg*32 + 8(e >> 2) + 2 t4 + (e & 1). ---- */

/* The tile's row maxima mx over the row's 4 lanes, published in smax for the other warpgroup (a barrier follows) */
__device__ static __forceinline__ void mw_max_publish(float mx[2], float *smax, int32_t wg, int32_t r0, int32_t t4)
{
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        mx[rr] = fmaxf(mx[rr], __shfl_xor_sync(0xffffffffu, mx[rr], 1));
        mx[rr] = fmaxf(mx[rr], __shfl_xor_sync(0xffffffffu, mx[rr], 2));
    }
    if (t4 == 0) smax[wg * MW_H + r0] = mx[0], smax[wg * MW_H + r0 + 8] = mx[1];
}

/* The running max moves only when a tile's max passes it by more than this (8 ln 2): until then P may reach 2^8
 * and O keeps its scale, so O's 128-register rescale runs on the first tiles, not on every tile where some row's
 * max crept up (ncu, mw2 at batch 128 x context 4k, random scores: 48 % of tiles). The result is the same up to
 * rounding; the split's m is this reference, which the merge takes as it takes any. */
#define MW_LAZY_MAX 5.5451774f

/* After the barrier: the running max m_r takes both warpgroups' maxima (corr: the factor O must take; l_r takes it
 * here), and s (scores, -inf for no key) becomes the probabilities exp(s - m_r), added to l_r: one FFMA and one
 * ex2 a value, 2^(s log2e - m_r log2e), where 2^-inf = 0 needs no test for a missing key (m_r -inf: 0 instead) */
template <int NSR>
__device__ static __forceinline__ void mw_softmax(float *s, float m_r[2], float l_r[2], float mx[2], const float *smax,
                                                  int32_t wg, int32_t r0, float corr[2])
{
#pragma unroll
    for (int rr = 0; rr < 2; rr++) mx[rr] = fmaxf(mx[rr], smax[(wg ^ 1) * MW_H + r0 + 8 * rr]);
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        const float mt = fmaxf(m_r[rr], mx[rr]);
        const float mn = m_r[rr] == -INFINITY || mt > m_r[rr] + MW_LAZY_MAX ? mt : m_r[rr];
        corr[rr] = mn == -INFINITY ? 1.f : mm_ex2((m_r[rr] - mn) * MM_LOG2E); /* first keys: m_r -inf, corr 0 */
        m_r[rr] = mn;
        l_r[rr] *= corr[rr];
    }
    const float ml[2] = {m_r[0] == -INFINITY ? 0.f : m_r[0] * MM_LOG2E, m_r[1] == -INFINITY ? 0.f : m_r[1] * MM_LOG2E};
#pragma unroll
    for (int e = 0; e < NSR; e++) {
        const float p = mm_ex2(fmaf(s[e], MM_LOG2E, -ml[(e >> 1) & 1]));
        s[e] = p;
        l_r[(e >> 1) & 1] += p;
    }
}

/* The bf16 probabilities into the P tile: rows r0, r0 + 8, keys wg*32 + 8j + 2*t4 (+1), chunk wg*4 + j */
__device__ static __forceinline__ void mw_store_p(uint8_t *sp, const float *s, int32_t wg, int32_t r0, int32_t t4)
{
#pragma unroll
    for (int j = 0; j < MW_NS / 8; j++) {
        const int32_t ch = wg * (MW_NS / 8) + j;
        *reinterpret_cast<uint32_t *>(sp + mw_sw(r0, ch) + 4 * t4) = mm_pack(s[4 * j], s[4 * j + 1]);
        *reinterpret_cast<uint32_t *>(sp + mw_sw(r0 + 8, ch) + 4 * t4) = mm_pack(s[4 * j + 2], s[4 * j + 3]);
    }
}

/* O (64 x 256 a warpgroup: rows r0 at 4j, 4j + 1, r0 + 8 at 4j + 2, 4j + 3) times corr, where some head's max moved */
__device__ static __forceinline__ void mw_rescale_o(float *o, const float corr[2])
{
    if (__any_sync(0xffffffffu, corr[0] != 1.f || corr[1] != 1.f))
#pragma unroll
        for (int j = 0; j < 32; j++)
            o[4 * j] *= corr[0], o[4 * j + 1] *= corr[0], o[4 * j + 2] *= corr[1], o[4 * j + 3] *= corr[1];
}

/* The row sums l_r over the row's 4 lanes, published in ssum for the other warpgroup (a barrier follows) */
__device__ static __forceinline__ void mw_sum_publish(float l_r[2], float *ssum, int32_t wg, int32_t r0, int32_t t4)
{
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        l_r[rr] += __shfl_xor_sync(0xffffffffu, l_r[rr], 1);
        l_r[rr] += __shfl_xor_sync(0xffffffffu, l_r[rr], 2);
    }
    if (t4 == 0) ssum[wg * MW_H + r0] = l_r[0], ssum[wg * MW_H + r0 + 8] = l_r[1];
}

/* After the barrier, query row i (tq) of heads h0 ..: split z's partials (m, l, O * ou) into the workspace, or the
 * result O * ou / l in a.odt; rows r0, r0 + 8, channels wg*256 + 8j + 2*t4 (+1). ou: O's unit (1, or the folded
 * FP8 path's s_ref / 2^7). */
__device__ static __forceinline__ void mw_write(const mll_args &a, const float *o, const float m_r[2],
                                                const float *ssum, int32_t seq, int32_t i, int32_t tq, int32_t h0,
                                                int32_t r0, int32_t wg, int32_t t4, bool ctx_split, float ou, int32_t z)
{
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        const int32_t r = r0 + 8 * rr, h = h0 + r;
        const float l = ssum[r] + ssum[MW_H + r];
        if (ctx_split) {
            float *pp = mll_part(a, seq, i, h, z);
            if (t4 == 0 && wg == 0) pp[0] = m_r[rr], pp[1] = l;
#pragma unroll
            for (int j = 0; j < 32; j++)
                *reinterpret_cast<float2 *>(pp + 2 + wg * 256 + 8 * j + 2 * t4) =
                    make_float2(o[4 * j + 2 * rr] * ou, o[4 * j + 2 * rr + 1] * ou);
            continue;
        }
        const float inv = l > 0.f ? ou / l : 0.f;
        const int64_t base = ((int64_t)tq * a.H + h) * MW_DC + wg * 256 + 2 * t4;
#pragma unroll
        for (int j = 0; j < 32; j++) {
            const float v0 = o[4 * j + 2 * rr] * inv, v1 = o[4 * j + 2 * rr + 1] * inv;
            if (a.odt == MS_DT_F32) *reinterpret_cast<float2 *>((float *)a.o + base + 8 * j) = make_float2(v0, v1);
            else *reinterpret_cast<uint32_t *>((uint16_t *)a.o + base + 8 * j) = mm_pack(v0, v1);
        }
    }
}

/* mla_latent_wgmma1.cu: mw_kernel (MS_MLA_WGMMA=1) for this KV dtype (fp8: F8E4M3 rows) */
cudaError_t mw1_launch(const mll_args &a, bool fp8, int32_t n_seqs, int32_t splits, cudaStream_t stream);

#endif
