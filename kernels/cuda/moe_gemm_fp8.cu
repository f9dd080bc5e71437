/* moe_gemm_fp8.cu — the routed experts' two grouped GEMMs of one rank, FP8
 * e4m3 x e4m3 with DeepSeek's scales (128x128 weight blocks, 1x128 activation
 * groups), on Hopper's wgmma with TMA loads; and kern_cuda_moe_fp8, one MoE
 * layer's expert compute (moe_gemm.h has the layout and the numerics).
 *
 * Why this shape: at decode a rank's experts see 4..128 rows each, so the
 * layer is a stream of 1.41 GB of weights. The kernel is "swap AB": a weight
 * tile of 128 or 256 rows (2 or 4 x wgmma m64) is the A operand and a block of
 * tokens the N dimension (8..128 per consumer warpgroup), so small token
 * counts waste no weight bytes. Every 128-K chunk's partial product is promoted into the fp32
 * accumulator times (weight block scale x token's group scale), as DeepGEMM
 * does. A persistent grid (one CTA per SM) walks the tiles of all slots; one
 * producer thread keeps a ring of TMA stages full across tile boundaries, so
 * HBM never waits on a tile's epilogue. Tiles of a slot with no rows there are
 * skipped by producer and consumers alike: empty experts read nothing.
 * gate|up: a tile's two m64 halves are gate rows j..j+63 and the matching up
 * rows, so SiLU·mul happens in registers (same fragment layout). */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>

#include "cuda.h"
#include "moe_gemm.h"
#include "wgmma.cuh"
#include "pdl.cuh"

#define MG_HALF_BYTES (64 * MG_KC) /* one m64 box of weight rows over a 128-K chunk */
#define MG_SMEM_BUDGET (200 * 1024)

/* ---- the grouped GEMM kernel ---- */
struct mg_args {
    const float *wsc;      /* weight scales [n_w_rows/128, K/128] per expert, wsc_stride floats apart */
    size_t wsc_stride;
    const float *asc;      /* activation scales [S, K/128, cap]; ld_asc > 0: row-major [rows, ld_asc] (dense) */
    const int32_t *counts; /* [S]; NULL: one dense matrix (S = 1) of `rows` real rows */
    uint16_t *out;         /* [S, cap, ldo] bf16 */
    int S, cap, K, n_w_rows, n_nblk, n_tblk, inter, ldo, rows; /* n_nblk, n_tblk: set by mg_launch */
    int64_t ld_asc; /* 0: the slot layout above */
    /* split-K (a dense GEMM only): ksplit > 1 CTAs share a tile's chunks, each writes its fp32 sums to
     * part [ksplit][rows][n_w_rows] (part_bytes of room) and mg_reduce_kernel adds them and rounds */
    float *part;
    size_t part_bytes;
    int ksplit;
    int hint; /* the routed experts' expected rows a slot (moe_fp8_weights_t.rows_hint; 0: unknown) */
};

/* Real rows of slot s (the dense GEMM passes no counts: its one slot has g.rows). */
__device__ __forceinline__ int mg_count(const mg_args &g, int s) { return g.counts ? min(g.counts[s], g.cap) : g.rows; }

/* A CTA's walk over the grid's tiles, skipping the token blocks past each slot's count: tile i of the walk is
 * the i-th non-empty one in (slot, weight block, token block) order, token block fastest, as the full grid's
 * order (a full slot keeps it: its token blocks run side by side and share the weight tile in L2). Walking the
 * full grid instead, with CTAs 132 tiles apart and 4 token blocks a (512-row) slot, left every CTA one token
 * block: three CTAs in four met only empty tiles at decode. i only grows, so a CTA scans the counts once. */
struct mg_walk {
    int s, base, per, nt; /* the current slot, its first tile's index, its tiles, its token blocks */
};

__device__ __forceinline__ bool mg_walk_to(const mg_args &g, int bnt, mg_walk &w, int i, int &s, int &nb, int &tb)
{
    while (i >= w.base + w.per) {
        w.base += w.per;
        if (++w.s >= g.S) return false;
        const int c = max(mg_count(g, w.s), 0);
        w.nt = (c + bnt - 1) / bnt, w.per = w.nt * g.n_nblk;
    }
    const int r = i - w.base;
    s = w.s, nb = r / w.nt, tb = r % w.nt;
    return true;
}

/* Unit i of the grid: a tile in mg_walk_to's order and its 128-K chunks [k0, k1). With ksplit > 1 (dense: no
 * counts, so any tile is found from scratch at once) unit i is split ks = i / tiles of tile i % tiles, so
 * CTAs side by side take adjacent tiles over the same chunks. */
__device__ __forceinline__ bool mg_unit(const mg_args &g, int bnt, int kchunks, mg_walk &w, int i, int &s, int &nb,
                                        int &tb, int &ks, int &k0, int &k1)
{
    ks = 0, k0 = 0, k1 = kchunks;
    if (g.ksplit <= 1) return mg_walk_to(g, bnt, w, i, s, nb, tb);
    const int tiles = g.n_nblk * ((g.rows + bnt - 1) / bnt);
    ks = i / tiles;
    if (ks >= g.ksplit) return false;
    w = {-1, 0, 0, 0};
    if (!mg_walk_to(g, bnt, w, i - ks * tiles, s, nb, tb)) return false;
    k0 = ks * kchunks / g.ksplit, k1 = (ks + 1) * kchunks / g.ksplit;
    return true;
}

__device__ __forceinline__ float mg_bf16r(float f) { return __bfloat162float(__float2bfloat16_rn(f)); }

/* bf16(a), bf16(b) to o[f], o[f + 1] (f even), those below n; one 4-byte store where the row's stride allows */
__device__ __forceinline__ void mg_store2(uint16_t *o, int f, int n, int ldo, float a, float b)
{
    if (f + 1 < n && !(ldo & 1) && !((uintptr_t)o & 3)) {
        *reinterpret_cast<__nv_bfloat162 *>(o + f) = __floats2bfloat162_rn(a, b);
        return;
    }
    if (f < n) o[f] = __bfloat16_as_ushort(__float2bfloat16_rn(a));
    if (f + 1 < n) o[f + 1] = __bfloat16_as_ushort(__float2bfloat16_rn(b));
}

/* Tile shapes (template): BN = the wgmma N (tokens per instruction), NWG
 * consumer warpgroups, one producer warpgroup (a single thread issues TMA),
 * TR weight rows a tile (m64 boxes: 2, or 4 for TR = 256).
 * RS = false ("token split"): each consumer warpgroup takes both m64 halves of
 * the weight tile over its own BN tokens (token block BN*NWG); gate|up's
 * SiLU·mul is in registers. RS = true ("row split", NWG = 2): warpgroup w
 * takes half w over all BN tokens, so each instruction is twice as wide and
 * the shared-memory reads per FLOP drop by a third (what limits large token
 * blocks); gate|up's up half crosses to the gate warpgroup through shared
 * memory, in the same fragment order, behind two named barriers.
 * TR = 256 ("wide", RS, BN = 64 or 128: 64x2w, 128x2w): warpgroup w takes two
 * boxes over all BN tokens — rows 128w.. of a 256-row tile, or for gate|up gate rows 64w.. and
 * the matching up rows (SiLU·mul in registers again). Why: at 128 tokens a
 * 128-row tile's x block is as large as its weights, so SMs read twice the
 * weight bytes from L2, and L2 -> SM was the limit (ncu, 128x2r at 128 rows:
 * L2 78 %, DRAM 56 %, ~5 TB/s from L2); a 256-row tile reads 1.5x. Its two
 * accumulators leave 128x2w room for one partial set, so each box's chunk
 * product is promoted right after its MMAs, under the other warpgroup's
 * (64x2w keeps the two sets).
 * TT (128x2t): the 256-row tile with the tokens as the MMAs' M: warpgroup w
 * takes tokens 64w.. (A) against each 128 weight rows (B, n128), so a thread's
 * accumulator rows are two tokens and the promotion needs two token scales a
 * chunk instead of a scale load and multiply a column pair per box (at m =
 * 4096 the promotion took ~28 % of 128x2w's time: o_proj 1.14 ms, 0.82 with it
 * skipped), and the epilogue stores feature pairs. */
template <int BN, int NWG, bool RS, int TR = 128> struct mg_shape {
    static_assert(TR == 128 || (TR == 256 && RS && NWG == 2), "the 256-row tile is row split");
    static constexpr int BNT = RS ? BN : BN * NWG;           /* tokens per tile */
    static constexpr int NT = RS ? TR / 128 : 2;             /* m64 boxes per warpgroup */
    static constexpr bool ONE_SET = NT * BN > 128;           /* one partial set (registers: 128x2w) */
    static constexpr int A_BYTES = TR * MG_KC;               /* weight bytes per ring stage */
    static constexpr int STAGE = A_BYTES + BNT * MG_KC;      /* bytes per ring stage */
    static constexpr int XB = RS && TR == 128 ? 128 * BN : 0; /* up-half exchange (bf16) */
    static constexpr int ST0 = (MG_SMEM_BUDGET + 16 * 1024 - XB) / STAGE;
    static constexpr int ST = ST0 > 8 ? 8 : ST0;
    static constexpr int SC = ST * BNT * 4;                  /* token scales, one row a stage */
    static constexpr int SMEM = ST * STAGE + XB + SC + 1024; /* + 1024-byte alignment slack */
};

/* m64 box hh of weight block nb: its first row in the expert. TR = 128: gate rows 64nb and the matching up rows,
 * or rows 128nb + 64hh; TR = 256: gate rows 128nb, 128nb + 64 and their up rows, or rows 256nb + 64hh. A box's
 * scale block row is its first row / 128 (inter is a multiple of 128 for TR = 256). */
template <int TR, bool GATEUP> __device__ __forceinline__ int mg_box_row(const mg_args &g, int nb, int hh)
{
    constexpr int HP = TR / 128; /* gate (or up) boxes a tile */
    return GATEUP ? (hh >= HP ? g.inter : 0) + nb * 64 * HP + 64 * (hh % HP) : nb * TR + 64 * hh;
}

/* The box of a tile's stage that warpgroup wg's j-th accumulator computes (see mg_shape) */
template <int TR, bool RS, bool GATEUP> __device__ __forceinline__ int mg_box_of(int wg, int j)
{
    return !RS ? j : TR == 128 ? wg : GATEUP ? wg + 2 * j : 2 * wg + j;
}

__device__ __forceinline__ void mg_named_sync(int id, int n) { asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(n) : "memory"); }
__device__ __forceinline__ void mg_named_arrive(int id, int n) { asm volatile("bar.arrive %0, %1;" ::"r"(id), "r"(n) : "memory"); }

template <int BN, int NWG, bool RS, bool GATEUP, int TR, bool TT>
__global__ void __launch_bounds__((NWG + 1) * 128, 1)
mg_kernel(const __grid_constant__ CUtensorMap tm_w, const __grid_constant__ CUtensorMap tm_a, const mg_args g)
{
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
    __trap(); /* wgmma needs sm_90a machine code; the compute_90 PTX cannot run this */
#else
    typedef mg_shape<BN, NWG, RS, TR> sh;
    constexpr int BNT = sh::BNT, STAGE = sh::STAGE, ST = sh::ST, NT = sh::NT, NACC = BN / 2, AB = sh::A_BYTES;
    static_assert(!RS || NWG == 2, "row split needs two consumer warpgroups");
    static_assert(!TT || (BN == 128 && TR == 256), "tokens as M: 128x2t only");
    __shared__ __align__(8) uint64_t full[ST], empty[ST];
    extern __shared__ uint8_t smem_raw[];
    uint8_t *smem = (uint8_t *)(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    uint16_t *xbuf = (uint16_t *)(smem + ST * STAGE); /* RS: [NACC][128] bf16 up values */
    float *ssc = (float *)(smem + ST * STAGE + sh::XB); /* [ST][BNT] token scales of each stage's chunk */

    const int wg = threadIdx.x / 128, t = threadIdx.x % 128;
    const int kchunks = g.K / MG_KC;
    /* row-major scales (a dense GEMM fed by act_quant's [m, K/128] layout, no transpose kernel first): the
     * producer's warp 1 copies each chunk's column into the stage and its 32 lanes arrive on full */
    const bool xrow = g.ld_asc > 0;
    if (threadIdx.x == 0) {
        for (int i = 0; i < ST; i++) {
            mg_bar_init(&full[i], xrow ? 1 + 32 : 1);
            mg_bar_init(&empty[i], NWG * 128);
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    /* A dense GEMM's tiles do not depend on the previous kernel (no counts) and its weights are constant, so
     * the producer requests the first ring's weight tiles before waiting for that kernel (PDL: it may still
     * be running); their stages' barriers expect the whole stage, the rest follows after the wait. */
    auto weight_tiles = [&](int st, int s, int nb, int kc) {
        uint8_t *sa = smem + st * STAGE;
#pragma unroll
        for (int hh = 0; hh < TR / 64; hh++)
            mg_tma_3d(sa + hh * MG_HALF_BYTES, &tm_w, kc * MG_KC, mg_box_row<TR, GATEUP>(g, nb, hh), s, &full[st]);
    };
    auto stage_bytes = [&](int tb) { /* a multiple of 4: 16-byte bulk copies */
        return STAGE + (xrow ? 0 : min(BNT, g.cap - tb * BNT) * 4);
    };
    int pre = 0; /* stages already requested */
    if (wg == NWG && t == 0 && !g.counts) {
        int s, nb, tb, ks, k0, k1;
        mg_walk w = {-1, 0, 0, 0};
        for (int i = blockIdx.x; pre < ST && mg_unit(g, BNT, kchunks, w, i, s, nb, tb, ks, k0, k1); i += gridDim.x)
            for (int kc = k0; kc < k1 && pre < ST; kc++, pre++) {
                mg_bar_expect(&full[pre], stage_bytes(tb));
                weight_tiles(pre, s, nb, kc);
            }
    }
    cu_pdl_enter();

    if (wg == NWG) { /* producer */
        if (NWG > 1) asm volatile("setmaxnreg.dec.sync.aligned.u32 40;");
        /* every (tile, chunk) of this CTA in order, each once its stage is free */
        auto produce = [&](auto &&fill) {
            int it = 0, s, nb, tb, ks, k0, k1;
            mg_walk w = {-1, 0, 0, 0};
            for (int i = blockIdx.x; mg_unit(g, BNT, kchunks, w, i, s, nb, tb, ks, k0, k1); i += gridDim.x)
                for (int kc = k0; kc < k1; kc++, it++) {
                    const int st = it % ST;
                    mg_bar_wait(&empty[st], ((it / ST) & 1) ^ 1);
                    fill(it, st, s, nb, tb, kc);
                }
        };
        if (t == 0) {
            produce([&](int it, int st, int s, int nb, int tb, int kc) {
                if (it >= pre) mg_bar_expect(&full[st], stage_bytes(tb)), weight_tiles(st, s, nb, kc);
                if (!xrow)
                    mg_bulk(ssc + st * BNT, g.asc + ((size_t)s * kchunks + kc) * g.cap + tb * BNT,
                            min(BNT, g.cap - tb * BNT) * 4, &full[st]);
                mg_tma_2d(smem + st * STAGE + AB, &tm_a, kc * MG_KC, s * g.cap + tb * BNT, &full[st]);
            });
        } else if (xrow && t / 32 == 1) { /* column kc of [rows, ld_asc], zero past the real rows */
            produce([&](int, int st, int, int, int tb, int kc) {
                for (int j = t % 32; j < BNT; j += 32) {
                    const int tok = tb * BNT + j;
                    ssc[st * BNT + j] = tok < g.rows ? __ldg(g.asc + (int64_t)tok * g.ld_asc + kc) : 0.f;
                }
                mg_bar_arrive(&full[st]); /* releases this lane's stores to the consumers' wait */
            });
        }
        return;
    }

    /* consumers */
    if (NWG > 1) asm volatile("setmaxnreg.inc.sync.aligned.u32 232;");
    const int warp = t / 32, lane = t % 32;
    constexpr bool XCH = GATEUP && RS && TR == 128; /* the up half crosses warpgroups */
    float acc[NT][NACC];
    int it = 0, s, nb, tb, ks, k0, k1;
    mg_walk w = {-1, 0, 0, 0};
    for (int i = blockIdx.x; mg_unit(g, BNT, kchunks, w, i, s, nb, tb, ks, k0, k1); i += gridDim.x) {
        const int cnt = mg_count(g, s), nk = k1 - k0;
        const int tok0 = tb * BNT + (TT ? 64 * wg : RS ? 0 : wg * BN); /* this warpgroup's first token in the slot */
        const float *wsj[NT]; /* each accumulator's weight scales along K, from chunk k0 */
#pragma unroll
        for (int j = 0; j < NT; j++)
            wsj[j] = g.wsc + (size_t)s * g.wsc_stride +
                     (size_t)(mg_box_row<TR, GATEUP>(g, nb, TT ? 2 * j : mg_box_of<TR, RS, GATEUP>(wg, j)) / 128) *
                         kchunks + k0;
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int i = 0; i < NACC; i++) acc[j][i] = 0.f;
        const uint8_t *sa0 = smem, *sb0 = smem + AB + (TT ? wg * 64 * MG_KC : RS ? 0 : wg * BN * MG_KC); /* + stage */
        /* d (one box's chunk product) times (weight block scale x token group scale), per column, into acc[j] */
        auto promote = [&](const float (&d)[NACC], float wj, int st, int j) {
            const float *scs = ssc + st * BNT + (RS ? 0 : wg * BN) + 2 * (lane % 4);
#pragma unroll
            for (int q = 0; q < BN / 8; q++) { /* d[4q+{0,1,2,3}] = (r, c), (r, c+1), (r+8, c), (r+8, c+1) */
                const float2 v = *reinterpret_cast<const float2 *>(scs + 8 * q);
                const float s0 = wj * v.x, s1 = wj * v.y;
                acc[j][4 * q] = fmaf(d[4 * q], s0, acc[j][4 * q]);
                acc[j][4 * q + 1] = fmaf(d[4 * q + 1], s1, acc[j][4 * q + 1]);
                acc[j][4 * q + 2] = fmaf(d[4 * q + 2], s0, acc[j][4 * q + 2]);
                acc[j][4 * q + 3] = fmaf(d[4 * q + 3], s1, acc[j][4 * q + 3]);
            }
        };
        if constexpr (sh::ONE_SET) {
            /* per chunk and box: MMAs, wait, promote; the other warpgroup's MMAs keep the tensor cores busy.
             * TT: warpgroup w's 64 tokens (A, rows 64w.. of the x block) times box j's 128 weight rows (B, m64
             * boxes 2j and 2j + 1, adjacent in the stage); a thread's accumulator rows are two tokens, so the
             * promotion takes two token scales a chunk, not one a column pair per box */
            float d[NACC];
            const float *scs = ssc + 64 * wg + warp * 16 + lane / 4; /* TT: this thread's two tokens' scales */
            for (int kc = 0; kc < nk; kc++) {
                const int st = (it + kc) % ST;
                float wj[NT];
#pragma unroll
                for (int j = 0; j < NT; j++) wj[j] = __ldg(wsj[j] + kc);
                mg_bar_wait(&full[st], ((it + kc) / ST) & 1);
                const float x0 = TT ? scs[st * BNT] : 0.f, x1 = TT ? scs[st * BNT + 8] : 0.f;
#pragma unroll
                for (int j = 0; j < NT; j++) {
                    const uint8_t *sw =
                        smem + st * STAGE + (TT ? 2 * j : mg_box_of<TR, RS, GATEUP>(wg, j)) * MG_HALF_BYTES;
                    const uint8_t *sx = sb0 + st * STAGE;
                    mg_wg_fence();
#pragma unroll
                    for (int k = 0; k < MG_KC / 32; k++)
                        wgmma_fp8<BN>(d, mg_desc((TT ? sx : sw) + k * 32), mg_desc((TT ? sw : sx) + k * 32), k);
                    mg_wg_commit();
                    mg_wg_wait0();
#pragma unroll
                    for (int i = 0; i < NACC; i++) mg_reg_fence(d[i]);
                    if constexpr (TT) {
                        const float s0 = wj[j] * x0, s1 = wj[j] * x1;
#pragma unroll
                        for (int i = 0; i < NACC; i++) acc[j][i] = fmaf(d[i], (i & 2) ? s1 : s0, acc[j][i]);
                    } else {
                        promote(d, wj[j], st, j);
                    }
                }
                mg_bar_arrive(&empty[st]); /* this warpgroup's MMAs and scale reads of the stage are done */
            }
        } else {
        /* Two partial-product sets: chunk kc+1's MMAs run while chunk kc is
         * promoted (scaled into acc), so the tensor cores never wait on it. */
        float ta[NT][NACC], tb_[NT][NACC], wa[NT], wb[NT];
        auto issue = [&](float (&d)[NT][NACC], float (&w)[NT], int kc) {
            const int st = (it + kc) % ST;
#pragma unroll
            for (int j = 0; j < NT; j++) w[j] = __ldg(wsj[j] + kc);
            mg_bar_wait(&full[st], ((it + kc) / ST) & 1);
            mg_wg_fence();
#pragma unroll
            for (int k = 0; k < MG_KC / 32; k++)
#pragma unroll
                for (int j = 0; j < NT; j++)
                    wgmma_fp8<BN>(d[j], mg_desc(sa0 + st * STAGE + mg_box_of<TR, RS, GATEUP>(wg, j) * MG_HALF_BYTES + k * 32),
                                  mg_desc(sb0 + st * STAGE + k * 32), k);
            mg_wg_commit();
        };
        auto retire = [&](float (&d)[NT][NACC], const float (&w)[NT], int kc) { /* after its wgmma wait */
            const int st = (it + kc) % ST;
#pragma unroll
            for (int j = 0; j < NT; j++)
#pragma unroll
                for (int i = 0; i < NACC; i++) mg_reg_fence(d[j][i]);
            const float *scs = ssc + st * BNT + (RS ? 0 : wg * BN) + 2 * (lane % 4);
            float sc[NT][BN / 4]; /* weight block scale x token group scale, per column */
#pragma unroll
            for (int i = 0; i < BN / 8; i++) {
                const float2 v = *reinterpret_cast<const float2 *>(scs + 8 * i);
#pragma unroll
                for (int j = 0; j < NT; j++) sc[j][2 * i] = w[j] * v.x, sc[j][2 * i + 1] = w[j] * v.y;
            }
            mg_bar_arrive(&empty[st]);
#pragma unroll
            for (int j = 0; j < NT; j++)
#pragma unroll
                for (int i = 0; i < NACC; i++) /* d[4q+{0,1,2,3}] = (r, c), (r, c+1), (r+8, c), (r+8, c+1) */
                    acc[j][i] = fmaf(d[j][i], sc[j][2 * (i / 4) + (i & 1)], acc[j][i]);
        };
        issue(ta, wa, 0); /* kc: the chunk within [k0, k1) */
        int kc = 1;
        for (; kc + 1 < nk; kc += 2) {
            issue(tb_, wb, kc);
            mg_wg_wait1();
            retire(ta, wa, kc - 1);
            issue(ta, wa, kc + 1);
            mg_wg_wait1();
            retire(tb_, wb, kc);
        }
        if (kc < nk) {
            issue(tb_, wb, kc);
            mg_wg_wait1();
            retire(ta, wa, kc - 1);
            mg_wg_wait0();
            retire(tb_, wb, kc);
        } else {
            mg_wg_wait0();
            retire(ta, wa, kc - 1);
        }
        }
        it += nk;
        if constexpr (TT) { /* token = row, output feature = column: box j's features are rows 128j.. of the tile */
            const int fb = GATEUP ? mg_box_row<TR, GATEUP>(g, nb, 0) : nb * TR;
#pragma unroll
            for (int i = 0; i < NACC; i += 2) {
                const int tok = tok0 + warp * 16 + lane / 4 + ((i & 2) ? 8 : 0);
                const int col = 8 * (i / 4) + 2 * (lane % 4); /* and col + 1 */
                if (tok >= cnt) continue;
                if (g.ksplit > 1) {
                    float *pp = g.part + (size_t)ks * g.rows * g.n_w_rows + (size_t)tok * g.n_w_rows;
#pragma unroll
                    for (int j = 0; j < NT; j++) {
                        const int f = GATEUP ? mg_box_row<TR, GATEUP>(g, nb, 2 * j) + col : fb + 128 * j + col;
                        if (f < g.n_w_rows) pp[f] = acc[j][i];
                        if (f + 1 < g.n_w_rows) pp[f + 1] = acc[j][i + 1];
                    }
                    continue;
                }
                uint16_t *o = g.out + ((size_t)s * g.cap + tok) * g.ldo;
                if (GATEUP) {
                    float y[2];
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const float gt = mg_bf16r(acc[0][i + e]), up = mg_bf16r(acc[1][i + e]);
                        y[e] = mg_bf16r(gt / (1.f + expf(-gt))) * up;
                    }
                    mg_store2(o, fb + col, g.inter, g.ldo, y[0], y[1]);
                } else {
#pragma unroll
                    for (int j = 0; j < NT; j++)
                        mg_store2(o, fb + 128 * j + col, g.n_w_rows, g.ldo, acc[j][i], acc[j][i + 1]);
                }
            }
            continue;
        }
        /* epilogue: token = column, output feature = row (accumulator j: box mg_box_of(wg, j)) */
        if (g.ksplit > 1) { /* this split's sums, every weight row of both halves; mg_reduce_kernel rounds */
            float *pp = g.part + (size_t)ks * g.rows * g.n_w_rows;
#pragma unroll
            for (int i = 0; i < NACC; i++) {
                const int row = warp * 16 + lane / 4 + ((i & 2) ? 8 : 0);
                const int tok = tok0 + 8 * (i / 4) + 2 * (lane % 4) + (i & 1);
                if (tok >= cnt) continue;
#pragma unroll
                for (int j = 0; j < NT; j++) {
                    const int f = mg_box_row<TR, GATEUP>(g, nb, mg_box_of<TR, RS, GATEUP>(wg, j)) + row;
                    if (f < g.n_w_rows) pp[(size_t)tok * g.n_w_rows + f] = acc[j][i];
                }
            }
            continue;
        }
        if (XCH && wg == 1) { /* hand the up half to warpgroup 0; wait until it has read it */
#pragma unroll
            for (int i = 0; i < NACC; i++) xbuf[i * 128 + t] = __bfloat16_as_ushort(__float2bfloat16_rn(acc[0][i]));
            mg_named_arrive(1, 256);
            mg_named_sync(2, 256);
            continue;
        }
        if (XCH) mg_named_sync(1, 256);
        const int f0 = mg_box_row<TR, GATEUP>(g, nb, mg_box_of<TR, RS, GATEUP>(wg, 0)); /* gate|up: the gate rows */
#pragma unroll
        for (int i = 0; i < NACC; i++) {
            const int row = warp * 16 + lane / 4 + ((i & 2) ? 8 : 0);
            const int tok = tok0 + 8 * (i / 4) + 2 * (lane % 4) + (i & 1);
            if (tok >= cnt) continue;
            uint16_t *o = g.out + ((size_t)s * g.cap + tok) * g.ldo;
            if (GATEUP) {
                const float gt = mg_bf16r(acc[0][i]);
                const float up = XCH ? __bfloat162float(__ushort_as_bfloat16(xbuf[i * 128 + t]))
                                     : mg_bf16r(acc[NT - 1][i]);
                const float si = mg_bf16r(gt / (1.f + expf(-gt)));
                o[f0 + row] = __bfloat16_as_ushort(__float2bfloat16_rn(si * up));
            } else {
#pragma unroll
                for (int j = 0; j < NT; j++) { /* a dense N tail: rows past n_w_rows were TMA zero fill */
                    const int f = mg_box_row<TR, GATEUP>(g, nb, mg_box_of<TR, RS, GATEUP>(wg, j)) + row;
                    if (f < g.n_w_rows) o[f] = __bfloat16_as_ushort(__float2bfloat16_rn(acc[j][i]));
                }
            }
        }
        if (XCH) mg_named_arrive(2, 256);
    }
#endif
}

/* Split-K's second pass: y = the epilogue above (bf16 rounding, or gate|up's SiLU·mul with its roundings)
 * of the splits' sums, added in split order (deterministic). A block a row (blockIdx.y) and VEC outputs a
 * thread (16-byte loads when VEC = 4: the first version's one element a thread and 64-bit division per
 * element took 4 µs for q_a|kv_a's 3 MB). */
template <bool GATEUP, int VEC>
__global__ void __launch_bounds__(256)
mg_reduce_kernel(const float *__restrict__ part, int ksplit, int rows, int n_w_rows, int inter, uint16_t *out, int ldo)
{
    cu_pdl_enter();
    const int nout = GATEUP ? inter : n_w_rows, tok = blockIdx.y;
    const int f0 = (blockIdx.x * blockDim.x + threadIdx.x) * VEC;
    if (f0 >= nout) return;
    const size_t kst = (size_t)rows * n_w_rows;
    const float *p = part + (size_t)tok * n_w_rows + f0;
    float a[VEC], u[VEC];
    auto load = [&](const float *q, float *v) {
        if (VEC == 4) {
            const float4 x = *reinterpret_cast<const float4 *>(q);
            v[0] = x.x, v[1] = x.y, v[2] = x.z, v[3] = x.w;
        } else {
            v[0] = q[0];
        }
    };
    load(p, a);
    if (GATEUP) load(p + inter, u);
    for (int k = 1; k < ksplit; k++) {
        float b[VEC];
        load(p + k * kst, b);
#pragma unroll
        for (int j = 0; j < VEC; j++) a[j] += b[j];
        if (GATEUP) {
            load(p + k * kst + inter, b);
#pragma unroll
            for (int j = 0; j < VEC; j++) u[j] += b[j];
        }
    }
    uint16_t *o = out + (size_t)tok * ldo + f0;
#pragma unroll
    for (int j = 0; j < VEC; j++) {
        float y = a[j];
        if (GATEUP) {
            const float gt = mg_bf16r(a[j]), si = mg_bf16r(gt / (1.f + expf(-gt)));
            y = si * mg_bf16r(u[j]);
        }
        o[j] = __bfloat16_as_ushort(__float2bfloat16_rn(y));
    }
}

/* MS_MG_KSPLIT=0: no split-K (the A/B). Read once. */
static bool mg_ksplit_on(void)
{
    static const bool on = !cu_env_is("MS_MG_KSPLIT", "0");
    return on;
}

/* Splits of a dense GEMM's tiles: as many as fill the SMs with one unit each (a persistent CTA per SM; units
 * past the SM count would make a second, partial wave), at least MG_SPLIT_CHUNKS chunks a split, and
 * partials that fit the scratch. Why: q_a|kv_a has 34 tiles at 128 rows (17 at 1), o_proj 56 at one row, so
 * most SMs idled while the tiles' CTAs streamed 56-128 chunks each. */
#define MG_SPLIT_CHUNKS 8
static int mg_ksplit(const mg_args &g, int ntiles)
{
    /* short K (shared down: 16 chunks) measured slower split (13.5 vs 11.0 µs at one row): the second pass
     * costs more than the idle SMs */
    if (g.counts || !g.part || !mg_ksplit_on() || g.K / MG_KC < 32) return 1;
    int ks = ntiles < mg_num_sms() ? mg_num_sms() / ntiles : 1;
    if (ks > g.K / MG_KC / MG_SPLIT_CHUNKS) ks = g.K / MG_KC / MG_SPLIT_CHUNKS;
    while (ks > 1 && (size_t)ks * g.rows * g.n_w_rows * 4 > g.part_bytes) ks--;
    return ks < 1 ? 1 : ks;
}

template <int BN, int NWG, bool RS, bool GATEUP, int TR = 128, bool TT = false>
static ms_status_t mg_launch(kern_ctx_t *cx, const uint8_t *wq, const uint8_t *aq, mg_args g, int n_experts,
                             size_t wstride)
{
    typedef mg_shape<BN, NWG, RS, TR> sh;
    /* weight blocks of TR rows: gate|up's hold TR / 2 gate rows and the matching up rows */
    if (GATEUP && g.inter % (TR / 2))
        return MS_ERR(MS_ERR_INVALID, "moe_fp8: the %d-row tile needs inter a multiple of %d (%d)", TR, TR / 2,
                      g.inter);
    g.n_nblk = GATEUP ? g.inter / (TR / 2) : (g.n_w_rows + TR - 1) / TR;
    CUtensorMap tw, ta;
    MS_TRY(mg_weight_map(&tw, wq, (uint64_t)n_experts, wstride, g.n_w_rows, g.K));
    MS_TRY(mg_map_2d(&ta, aq, CU_TENSOR_MAP_DATA_TYPE_UINT8, g.counts ? (uint64_t)g.S * g.cap : (uint64_t)g.rows, g.K,
                     g.K, MG_KC, sh::BNT));
    g.n_tblk = (g.cap + sh::BNT - 1) / sh::BNT;
    const int ntiles = g.S * g.n_nblk * g.n_tblk;
    g.ksplit = mg_ksplit(g, ntiles);
    const int units = ntiles * g.ksplit, grid = units < mg_num_sms() ? units : mg_num_sms();
    CUDA_CHECK(cudaFuncSetAttribute(mg_kernel<BN, NWG, RS, GATEUP, TR, TT>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, sh::SMEM));
    cu_launch(mg_kernel<BN, NWG, RS, GATEUP, TR, TT>, grid, (NWG + 1) * 128, sh::SMEM, (cudaStream_t)cx->stream, tw, ta,
              g);
    CUDA_CHECK(cudaGetLastError());
    if (g.ksplit > 1) {
        const int nout = GATEUP ? g.inter : g.n_w_rows;
        const bool v4 = nout % 4 == 0 && g.n_w_rows % 4 == 0 && g.inter % 4 == 0; /* part is 16-byte aligned */
        const int per = 256 * (v4 ? 4 : 1);
        const dim3 grid2((unsigned)((nout + per - 1) / per), (unsigned)g.rows);
        cu_launch(v4 ? mg_reduce_kernel<GATEUP, 4> : mg_reduce_kernel<GATEUP, 1>, grid2, 256, 0,
                  (cudaStream_t)cx->stream, (const float *)g.part, g.ksplit, g.rows, g.n_w_rows, g.inter, g.out,
                  g.ldo);
        CUDA_CHECK(cudaGetLastError());
    }
    return MS_OK;
}

/* MS_MG_HINT=0: the routed experts' tile from the slot capacity alone, not the host's row hint (the A/B). Read once. */
static bool mg_hint_on(void)
{
    static const bool on = !cu_env_is("MS_MG_HINT", "0");
    return on;
}

/* MS_MG_TT=0: 128x2w where 128x2t is chosen (the A/B). Read once. */
static bool mg_tt_on(void)
{
    static const bool on = !cu_env_is("MS_MG_TT", "0");
    return on;
}

/* MS_MG_WIDE=0: no 256-row tiles chosen (the A/B: 64x2r and 128x2r where 64x2w and 128x2w). Read once. */
static bool mg_wide_on(void)
{
    static const bool on = !cu_env_is("MS_MG_WIDE", "0");
    return on;
}

/* One dense matrix past 128 rows (prefill): a 256-row weight tile, 128x2t (x read once a 256 weight rows, a
 * token block once a 128 tokens), or 64x2w where 128x2t's waves of tiles would leave SMs idle for longer than
 * its cheaper FLOPs save (measured: a 128x2t wave costs ~1.6 of 64x2w's; shared down and q_a|kv_a at m = 200),
 * except at K >= 16384 (o_proj, dense down), where split-K gives 128x2t's few tiles the SMs. H200, BENCHMARKS
 * session 16: at m = 4096 128x2t is 1.27-1.95x faster than the 64x2r of before (o_proj 1.52 -> 0.81 ms, 0.81x
 * torch's per-tensor FP8); MS_MG_TT=0 the 128x2w / 64x2w rule (20 x 128x2w's waves <= 11 x 64x2w's). */
static void mg_dense_large(const mg_args &g, bool gateup, int &bn, int &nwg, int &rs)
{
    const long nblk = gateup ? g.inter / 128 : (g.n_w_rows + 255) / 256, sms = mg_num_sms();
    const long w128 = (nblk * ((g.cap + 127) / 128) + sms - 1) / sms; /* waves of tiles */
    const long w64 = (nblk * ((g.cap + 63) / 64) + sms - 1) / sms;
    bn = 64, nwg = 2, rs = 2;
    const bool tt = mg_tt_on();
    if (tt ? 16 * w128 <= 10 * w64 || g.K >= 16384 : 20 * w128 <= 11 * w64) bn = 128, rs = tt ? 3 : 2;
}

/* Tile shape forced by kern_cuda_moe_fp8_tile (0 = chosen from cap). */
static int mg_force_bn, mg_force_nwg, mg_force_rs;

extern "C" int kern_cuda_moe_fp8_tile(int bn, int nwg, int mode)
{
    static const int ok[][3] = {{8, 1, 0}, {16, 1, 0}, {32, 1, 0}, {64, 1, 0}, {16, 2, 0}, {32, 2, 0}, {64, 2, 0},
                                {64, 2, 1}, {128, 2, 1}, {64, 2, 2}, {128, 2, 2}, {128, 2, 3}};
    for (unsigned i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (bn == ok[i][0] && nwg == ok[i][1] && mode == ok[i][2]) {
            mg_force_bn = bn, mg_force_nwg = nwg, mg_force_rs = mode;
            return 0;
        }
    mg_force_bn = mg_force_nwg = mg_force_rs = 0;
    return bn == 0 ? 0 : -1;
}

extern "C" int kern_cuda_moe_fp8_tile_forced(void) { return mg_force_bn != 0; }

/* The token block from the capacity (measured on the H200, BENCHMARKS.md):
 * the smallest wgmma N that holds a slot's rows up to 32 with one consumer
 * warpgroup, then two warpgroups of 32 or 64 (token split). Row split measured
 * slower at 128 rows despite its fewer shared-memory reads. */
template <bool GATEUP>
static ms_status_t mg_dispatch(kern_ctx_t *cx, const uint8_t *wq, const uint8_t *aq, const mg_args &g, int E,
                               size_t wstride)
{
    int bn = mg_force_bn, nwg = mg_force_nwg, rs = mg_force_rs;
    if (!bn) {
        /* the routed experts' slots: by twice the rows the host expects a slot to hold this step (counts spread
         * around the mean, and a slot past the token block goes by two: at r1-ep8 b128, mean 32, blocks of 32
         * made the step 3 % slower than 64), at most the capacity (serving's is 512 at decode too); without a
         * hint, by the capacity */
        const bool hinted = g.counts && g.hint > 0 && mg_hint_on();
        const int rows = hinted ? min(2 * g.hint, g.cap) : g.cap;
        /* MS_MG_WIDE=0: none of the 256-row tiles (rs = 2) chosen below */
        const bool wide = mg_wide_on() && (!GATEUP || g.inter % 128 == 0);
        /* one dense matrix of 65..128 rows: row split measured 1.2-1.6x faster than token split on every
         * non-gated R1 shape (moeserve-bench-dense, BENCHMARKS.md); with K >= 4096 and 7168+ weight rows (o_proj,
         * the dense MLP's two) the 256-row tile, 64x2w: 7-9 % faster there, 5-25 % slower on the smaller
         * ones (q_a|kv_a, q_b, the shared expert; H200, BENCHMARKS session 15) */
        if (!g.counts && g.cap > 64 && g.cap <= 128)
            bn = 64, nwg = 2, rs = wide && g.K >= 4096 && g.n_w_rows >= 7168 ? 2 : 1;
        else if (rows <= 8) bn = 8, nwg = 1, rs = 0;
        else if (rows <= 32) bn = 32, nwg = 1, rs = 0;
        /* hinted 33..64 (r1-ep8 b128): 64x2r, measured 1 % faster there than 32x2 (the step, H200); now its
         * 256-row tile, 64x2w (x read once a 256 weight rows): the b128 step 2.2 % faster (session 15) */
        else if (rows <= 64) bn = hinted ? 64 : 32, nwg = 2, rs = hinted ? (wide ? 2 : 1) : 0;
        /* not 64x2 token split: it failed test_cuda_moe_fp8 intermittently on the H200 (max error 0.98 against
         * 0.22 for every other tile, 2026-12-01; a race not found yet) — row split computes the same tiles.
         * Routed experts hinted past 64 rows take 128x2r (128-token blocks: a weight tile read once a 128 rows,
         * where 64x2r reads it twice), 16-25 % faster at 128-512 real rows a slot (H200, BENCHMARKS session 14);
         * gate|up there the 256-row tile (128x2w: x read once a 256 weight rows), 19 % faster than 128x2r at
         * 128 and 256 rows a slot, 9 % at 512 (session 15). Now both GEMMs on 128x2t, the same tile with the
         * tokens as M (its promotion two scales a chunk): against 128x2w gate|up 0.328 -> 0.291 ms at 128 rows,
         * against 128x2r down 4-5 % faster at 128 rows, 13-24 % at 256-512 (H200, BENCHMARKS session 16).
         * MS_MG_TT=0: 128x2w gate|up and 128x2r down; MS_MG_WIDE=0: 128x2r for both */
        else if (hinted) bn = 128, nwg = 2, rs = wide && mg_tt_on() ? 3 : GATEUP && wide ? 2 : 1;
        else if (!g.counts && wide) mg_dense_large(g, GATEUP, bn, nwg, rs);
        else bn = 64, nwg = 2, rs = 1;
    }
#define MG_CASE(B, W, R) \
    if (bn == B && nwg == W && rs == R) return mg_launch<B, W, R, GATEUP>(cx, wq, aq, g, E, wstride);
    MG_CASE(8, 1, 0) MG_CASE(16, 1, 0) MG_CASE(32, 1, 0) MG_CASE(64, 1, 0) MG_CASE(16, 2, 0) MG_CASE(32, 2, 0)
    MG_CASE(64, 2, 0) MG_CASE(64, 2, 1) MG_CASE(128, 2, 1)
    if (bn == 64 && nwg == 2 && rs == 2) return mg_launch<64, 2, true, GATEUP, 256>(cx, wq, aq, g, E, wstride);
    if (bn == 128 && nwg == 2 && rs == 2) return mg_launch<128, 2, true, GATEUP, 256>(cx, wq, aq, g, E, wstride);
    if (bn == 128 && nwg == 2 && rs == 3)
        return mg_launch<128, 2, true, GATEUP, 256, true>(cx, wq, aq, g, E, wstride);
#undef MG_CASE
    return MS_ERR(MS_ERR_INTERNAL, "moe_fp8: no kernel for tile %dx%d%s", bn, nwg, kern_cuda_moe_fp8_tile_suffix(rs));
}

static ms_status_t mg_check(int S, int cap, const moe_fp8_weights_t *w)
{
    if (!w || S < 0 || S > w->n_experts || cap <= 0 || cap % 4 || w->hidden <= 0 || w->inter <= 0 ||
        w->hidden % 128 || w->inter % 128 || w->stride % 16)
        return MS_ERR(MS_ERR_INVALID, "moe_fp8: bad shape S=%d cap=%d (cap a multiple of 4, S <= %d experts), "
                      "hidden=%d inter=%d (multiples of 128)", S, cap, w ? w->n_experts : 0, w ? w->hidden : 0,
                      w ? w->inter : 0);
    return MS_OK;
}

extern "C" ms_status_t kern_cuda_moe_fp8_gateup(kern_ctx_t *cx, const uint8_t *xq, const float *xs,
                                                const int32_t *counts, int S, int cap, const moe_fp8_weights_t *w,
                                                bf16_t *h)
{
    MS_TRY(mg_check(S, cap, w));
    if (S == 0) return MS_OK;
    const size_t rows = 2 * (size_t)w->inter, ws = w->stride ? w->stride : rows * w->hidden;
    const size_t ss = w->stride ? w->stride / 4 : rows / 128 * (w->hidden / 128);
    mg_args g = {w->w13_s, ss, xs, counts, h, S, cap, w->hidden, 2 * w->inter, 0, 0, w->inter, w->inter, 0, 0};
    g.hint = w->rows_hint;
    return mg_dispatch<true>(cx, w->w13, xq, g, w->n_experts, ws);
}

extern "C" ms_status_t kern_cuda_moe_fp8_down(kern_ctx_t *cx, const uint8_t *hq, const float *hs,
                                              const int32_t *counts, int S, int cap, const moe_fp8_weights_t *w,
                                              bf16_t *out)
{
    MS_TRY(mg_check(S, cap, w));
    if (S == 0) return MS_OK;
    const size_t ws = w->stride ? w->stride : (size_t)w->hidden * w->inter;
    const size_t ss = w->stride ? w->stride / 4 : (size_t)(w->hidden / 128) * (w->inter / 128);
    mg_args g = {w->w2_s, ss, hs, counts, out, S, cap, w->inter, w->hidden, 0, 0, 0, w->hidden, 0, 0};
    g.hint = w->rows_hint;
    return mg_dispatch<false>(cx, w->w2, hq, g, w->n_experts, ws);
}

extern "C" ms_status_t kern_cuda_moe_fp8_dense(kern_ctx_t *cx, const uint8_t *xq, const float *xs, int64_t ld_xs,
                                               int m, const uint8_t *w, const float *w_s, int n, int K, int silu,
                                               bf16_t *y, int ldy, void *scratch, size_t scratch_bytes)
{
    if (m <= 0) return MS_OK;
    const int cap = (m + 3) / 4 * 4; /* the token blocks' extent: rows past m are TMA zero fill, scales 0 */
    if (n <= 0 || K <= 0 || K % MG_KC || ld_xs < K / MG_KC || (silu && (n % 2 || (n / 2) % 64)))
        return MS_ERR(MS_ERR_INVALID, "moe_fp8 dense: bad shape m=%d n=%d K=%d ld_xs=%lld%s", m, n, K,
                      (long long)ld_xs, silu ? " silu (n/2 a multiple of 64)" : "");
    const size_t wstride = (size_t)n * K;
    /* split-K partials: 16-byte aligned scratch, else no split */
    float *part = scratch && (uintptr_t)scratch % 16 == 0 ? (float *)scratch : NULL;
    const size_t part_bytes = part ? scratch_bytes : 0;
    if (silu) {
        mg_args g = {w_s, 0, xs, NULL, y, 1, cap, K, n, 0, 0, n / 2, ldy, m, ld_xs, part, part_bytes, 1};
        return mg_dispatch<true>(cx, w, xq, g, 1, wstride);
    }
    mg_args g = {w_s, 0, xs, NULL, y, 1, cap, K, n, 0, 0, 0, ldy, m, ld_xs, part, part_bytes, 1};
    return mg_dispatch<false>(cx, w, xq, g, 1, wstride);
}

/* Workspace carve-up, each piece 256-byte aligned. */
static size_t mg_align(size_t n) { return (n + 255) & ~(size_t)255; }

extern "C" size_t kern_cuda_moe_fp8_ws_bytes(int S, int cap, int hidden, int inter)
{
    const size_t rows = (size_t)S * cap;
    return mg_align(rows * hidden) + mg_align(rows * (hidden / 128) * 4) + mg_align(rows * inter * 2) +
           mg_align(rows * inter) + mg_align(rows * (inter / 128) * 4);
}

extern "C" ms_status_t kern_cuda_moe_fp8(kern_ctx_t *cx, const bf16_t *x, const int32_t *counts, int S, int cap,
                                         const moe_fp8_weights_t *w, bf16_t *out, void *ws, size_t ws_bytes)
{
    MS_TRY(mg_check(S, cap, w));
    if (S == 0) return MS_OK;
    const size_t need = kern_cuda_moe_fp8_ws_bytes(S, cap, w->hidden, w->inter), rows = (size_t)S * cap;
    if (!ws || ws_bytes < need)
        return MS_ERR(MS_ERR_INVALID, "moe_fp8: workspace %zu bytes, need %zu", ws_bytes, need);
    uint8_t *p = (uint8_t *)ws;
    uint8_t *xq = p;
    p += mg_align(rows * w->hidden);
    float *xs = (float *)p;
    p += mg_align(rows * (w->hidden / 128) * 4);
    bf16_t *h = (bf16_t *)p;
    p += mg_align(rows * w->inter * 2);
    uint8_t *hq = p;
    p += mg_align(rows * w->inter);
    float *hs = (float *)p;
    MS_TRY(kern_cuda_act_quant(cx, x, counts, S, cap, w->hidden, xq, xs));
    MS_TRY(kern_cuda_moe_fp8_gateup(cx, xq, xs, counts, S, cap, w, h));
    MS_TRY(kern_cuda_act_quant(cx, h, counts, S, cap, w->inter, hq, hs));
    return kern_cuda_moe_fp8_down(cx, hq, hs, counts, S, cap, w, out);
}
