/* gemm_fp8x.cu — the gemm op's fp8 mode at decode (m <= 128 rows): y = x·Wᵀ
 * with x e4m3 and act_quant's 1x128 scales, W e4m3 and its 128x128
 * scale_inv blocks, DeepSeek's fp8_gemm numerics (each 128-K chunk's product
 * summed by the tensor core, then promoted into the fp32 accumulator times
 * weight block scale x token group scale), optionally the fused gate|up's
 * SiLU·mul with the CPU's roundings.
 *
 * Why not the grouped expert kernel (moe_gemm_fp8.cu) as one slot: at decode
 * a dense layer's GEMM is a stream of weights, and its tiles x token blocks
 * are too few for 132 SMs (q_a|kv_a: 17 tiles, o_proj: 56 at 128 rows), so
 * most SMs idled (0.5-2 TB/s of 4.3). Here the work is tiles x 128-K chunks,
 * split evenly over one CTA per SM (stream-K, stream_k.cuh, shared with
 * gemm_fp8w.cu): a CTA writes a tile it covers whole straight to y and the
 * (at most two) tiles it shares as fp32 partials; the last of a shared tile's
 * CTAs to finish sums its partials in CTA order and rounds once, in the same
 * kernel. Deterministic (the split depends on the shape and the SM count
 * alone). One tile = 128 weight rows,
 * one m64 half per consumer warpgroup, times the whole token block (BN >= m
 * tokens, the wgmma N), so every weight byte is read once.
 * The token scales come straight from act_quant's row-major [m, ld_xs]
 * layout, so no transpose kernel runs first: a second producer warp copies
 * column kc of it (BN floats) into the stage beside the TMA tiles and
 * arrives on the stage's barrier, and the promotion reads them from shared
 * memory (one conflict-free 8-byte load per two tokens). Reading them from
 * global memory in the promotion instead (the first fix of an illegal
 * instruction) put 32 dependent-latency loads of 4 lines each per thread on
 * every chunk's critical path.
 * gate|up: a tile's halves are gate rows j..j+63 and the matching up rows;
 * a tile hands the up half to the gate warpgroup through shared memory (a
 * shared tile's partials carry both halves to its last CTA).
 *
 * Multicast (opt-in, MS_GEMM_FP8X_MC=1 on top of MS_GEMM_FP8X=1; not yet run
 * on a GPU): at m = 128 the L2->SM path was the limit (ncu, o_proj: L2 75 %,
 * DRAM 56 %) because every 128-row tile re-read the 128-token x block, so SMs
 * read 2x the weight bytes. With CL = 2 the CTAs of a 2-CTA cluster take
 * adjacent tiles over the same chunks in step (stream-K over tile pairs,
 * stream_k.cuh's units); each CTA's TMA fetches half the x block (whole
 * 8-row swizzle atoms; all of it from rank 0 when BN = 8) and multicasts it
 * into both CTAs' stage, whose barriers each expect the whole stage's bytes,
 * so x crosses L2->SM once per pair (1.5x the weight bytes at m = 128). A
 * stage is refilled only when both CTAs' consumers have released it (each
 * consumer warp arrives on both CTAs' empty barrier), and neither CTA exits
 * before the other is done with its shared memory (cluster barrier). The
 * arithmetic is the same (chunk products promoted in chunk order, a shared
 * tile's partials summed in unit order), so a tile that one CTA covers whole
 * in both variants has the same bits; a split tile is split at other chunks
 * and may differ in the last bits. With an odd tile count the last pair's
 * second CTA computes a copy of the last tile (the x multicast needs it) and
 * stores nothing.
 *
 * Shapes (kern_cuda_gemm_fp8x_fits): 1 <= m <= 128, K a multiple of 128, x
 * and W contiguous ([m, K], [n, K]) and 16-byte aligned, ld_xs >= K/128,
 * any n (rows past n are TMA zero fill), for
 * SiLU·mul n = 2*inter with inter a multiple of 64; y BF16. */
#include <cuda_bf16.h>
#include <stdlib.h>
#include <string.h>

#include "common.cuh"
#include "wgmma.cuh"
#include "stream_k.cuh"

#define FX_ROWS SK_ROWS              /* weight rows per tile: one m64 half per consumer warpgroup */
#define FX_W_BYTES (FX_ROWS * MG_KC) /* fp8 weight bytes per stage */
#define FX_SMEM_BUDGET (227 * 1024) /* the H100/H200 opt-in maximum per block */

template <int BN, bool GATEUP> struct fx_shape {
    static constexpr int XB = BN * MG_KC;                      /* x tile: BN tokens x 128 K bytes */
    static constexpr int STAGE = (FX_W_BYTES + XB + 1023) / 1024 * 1024; /* swizzled tiles 1024-aligned */
    static constexpr int UB = GATEUP ? 128 * BN : 0;           /* gate|up exchange: BN/2 x 128 bf16 */
    static constexpr int SB = BN * 4;                          /* a stage's token scales */
    static constexpr int ST0 = (FX_SMEM_BUDGET - UB - 2048) / (STAGE + SB);
    static constexpr int ST = ST0 > 8 ? 8 : ST0;
    static constexpr int SMEM = ST * (STAGE + SB) + UB + 1024; /* + 1024-byte alignment slack */
};

struct fx_args {
    const float *ws;  /* W scale_inv [ceil(n/128), K/128] */
    const float *xs;  /* x scales [m, ld_xs] (act_quant's layout) */
    uint16_t *y;      /* [m, ldy] bf16 */
    float *part;      /* [2 * grid][BN][128] fp32 partial tiles: slot 2i = CTA i's first tile, 2i+1 its last */
    uint32_t *cnt;    /* [ntile] arrivals at each shared tile (kern_ctx_t.sk_count, zero between calls) */
    int64_t ldy, ld_xs, total; /* total: work items, (group of CL tiles, chunk) */
    int m, n, K, ntile, inter; /* inter > 0: SiLU·mul over gate|up (n = 2 * inter outputs' rows) */
};

__device__ __forceinline__ void fx_named_sync(int id, int n) { asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(n) : "memory"); }
__device__ __forceinline__ void fx_named_arrive(int id, int n) { asm volatile("bar.arrive %0, %1;" ::"r"(id), "r"(n) : "memory"); }

/* CL: CTAs per cluster sharing the x block by multicast (1: no cluster) */
template <int BN, bool GATEUP, int CL>
__global__ void __launch_bounds__(384, 1)
fx_kernel(const __grid_constant__ CUtensorMap tm_w, const __grid_constant__ CUtensorMap tm_x, const fx_args g)
{
    cu_pdl_enter();
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
    __trap(); /* wgmma needs sm_90a machine code */
#else
    typedef fx_shape<BN, GATEUP> sh;
    constexpr int STAGE = sh::STAGE, ST = sh::ST, NACC = BN / 2;
    __shared__ __align__(8) uint64_t full[ST], empty[ST];
    __shared__ int sh_last;
    extern __shared__ uint8_t smem_raw[];
    uint8_t *smem = (uint8_t *)(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    uint16_t *xbuf = (uint16_t *)(smem + ST * STAGE); /* gate|up: [NACC][128] bf16 up values */
    float *ssc = (float *)(smem + ST * STAGE + sh::UB);  /* [ST][BN] token scales of each stage's chunk */
    const int wg = threadIdx.x / 128, t = threadIdx.x % 128;
    const int kchunks = g.K / MG_KC;
    /* x rows each CTA fetches for the cluster: whole 8-row swizzle atoms, else rank 0 fetches all */
    constexpr int XH = CL > 1 && BN / CL >= 8 ? BN / CL : BN;
    const int rank = CL > 1 ? (int)mg_cluster_rank() : 0, unit = (int)blockIdx.x / CL, units = (int)gridDim.x / CL;
    const int64_t c0 = sk_c0(unit, g.total, units), c1 = sk_c0(unit + 1, g.total, units);
    /* full: the TMA thread's expect_tx plus the 32 lanes of the scale warp; empty: each consumer thread, or
     * with a cluster one arrival per consumer warp of every CTA (the peers' multicast writes this stage too) */
    sk_ring_init<ST>(full, empty, 1 + 32, CL > 1 ? 8 * CL : 2 * 128);
    if (CL > 1) mg_cluster_sync(); /* the peers' barriers are initialized before anything reaches them */

    if (wg == 2) { /* producers: warp 0's lane 0 streams the range's tiles, warp 1 its token scales */
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;");
        const int pw = t / 32, lane = t % 32;
        if (pw == 0 && lane == 0) {
            sk_produce<ST>(c0, c1, kchunks, empty, [&](int st, int grp, int kc) {
                const int tile = min(grp * CL + rank, g.ntile - 1); /* past the last: a copy, not stored */
                const int r0 = GATEUP ? tile * 64 : tile * FX_ROWS, r1 = GATEUP ? g.inter + r0 : r0 + 64;
                uint8_t *sa = smem + st * STAGE;
                mg_bar_expect(&full[st], FX_W_BYTES + sh::XB);
                mg_tma_2d(sa, &tm_w, kc * MG_KC, r0, &full[st]);
                mg_tma_2d(sa + FX_W_BYTES / 2, &tm_w, kc * MG_KC, r1, &full[st]);
                if (CL == 1)
                    mg_tma_2d(sa + FX_W_BYTES, &tm_x, kc * MG_KC, 0, &full[st]);
                else if (XH < BN || rank == 0)
                    mg_tma_2d_mc(sa + FX_W_BYTES + rank * XH * MG_KC, &tm_x, kc * MG_KC, rank * XH, &full[st],
                                 (uint16_t)((1u << CL) - 1)); /* XH == BN: rank 0 alone, at row 0 */
            });
        } else if (pw == 1) { /* column kc of [m, ld_xs], zero past m; each lane's arrive releases its stores */
            sk_produce<ST>(c0, c1, kchunks, empty, [&](int st, int, int kc) {
                float *d = ssc + st * BN;
                for (int tok = lane; tok < BN; tok += 32)
                    d[tok] = tok < g.m ? __ldg(g.xs + (int64_t)tok * g.ld_xs + kc) : 0.f;
                mg_bar_arrive(&full[st]);
            });
        }
        if (CL > 1) mg_cluster_sync(); /* the peers may still fill or release this CTA's stages */
        return;
    }

    /* consumers: warpgroup wg owns half wg of each tile (rows wg*64.., or gate / up) over all BN tokens */
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;");
    const int warp = t / 32, lane = t % 32;
    int it = 0;
    for (int64_t c = c0; c < c1;) {
        const sk_seg sg = sk_seg_at(c, c0, c1, kchunks, (int)blockIdx.x);
        const int own = sg.tile * CL + rank, tile = min(own, g.ntile - 1), k0 = sg.k0, nk = sg.nk;
        const int rb = GATEUP ? (wg ? g.inter + tile * 64 : tile * 64) / 128 : tile; /* scale block row */
        const float *wsr = g.ws + (size_t)rb * kchunks + k0;
        float acc[NACC];
#pragma unroll
        for (int i = 0; i < NACC; i++) acc[i] = 0.f;
        /* Two partial-product sets: chunk j+1's MMAs run while chunk j is promoted (the grouped kernel's
         * schedule), so the tensor cores never wait on the promotion. */
        float ta[NACC], tb[NACC], wa, wb;

        auto issue = [&](float (&d)[NACC], float &w, int j) {
            const int st = (it + j) % ST;
            w = __ldg(wsr + j);
            mg_bar_wait(&full[st], ((it + j) / ST) & 1);
            const uint8_t *sa = smem + st * STAGE + wg * (FX_W_BYTES / 2), *sb = smem + st * STAGE + FX_W_BYTES;
            mg_wg_fence();
#pragma unroll
            for (int k = 0; k < MG_KC / 32; k++) wgmma_fp8<BN>(d, mg_desc(sa + k * 32), mg_desc(sb + k * 32), k);
            mg_wg_commit();
        };
        auto retire = [&](float (&d)[NACC], float w, int j) { /* after the wait that completed chunk j */
            const int st = (it + j) % ST;
#pragma unroll
            for (int i = 0; i < NACC; i++) mg_reg_fence(d[i]);
            /* weight block scale x token group scale for this thread's tokens 8q + 2(lane%4) + {0,1} (0 past m) */
            const float *scs = ssc + st * BN + 2 * (lane % 4);
#pragma unroll
            for (int q = 0; q < BN / 8; q++) { /* d[4q+{0,1,2,3}] = (r, c), (r, c+1), (r+8, c), (r+8, c+1) */
                const float2 v = *reinterpret_cast<const float2 *>(scs + 8 * q);
                const float s0 = w * v.x, s1 = w * v.y;
                acc[4 * q] = fmaf(d[4 * q], s0, acc[4 * q]);
                acc[4 * q + 1] = fmaf(d[4 * q + 1], s1, acc[4 * q + 1]);
                acc[4 * q + 2] = fmaf(d[4 * q + 2], s0, acc[4 * q + 2]);
                acc[4 * q + 3] = fmaf(d[4 * q + 3], s1, acc[4 * q + 3]);
            }
            if (CL == 1) {
                mg_bar_arrive(&empty[st]);
            } else { /* the warp's reads are done (wgmma wait, then its scale loads): lane r tells CTA r */
                __syncwarp();
                if (lane < CL) mg_bar_arrive_cta(&empty[st], (uint32_t)lane);
            }
        };
        if (BN == 128) { /* one set (two would spill): the other warpgroup's MMAs fill this one's promotion */
            for (int j = 0; j < nk; j++) {
                issue(ta, wa, j);
                mg_wg_wait0();
                retire(ta, wa, j);
            }
        } else {
        issue(ta, wa, 0);
        int j = 1;
        for (; j + 1 < nk; j += 2) {
            issue(tb, wb, j);
            mg_wg_wait1();
            retire(ta, wa, j - 1);
            issue(ta, wa, j + 1);
            mg_wg_wait1();
            retire(tb, wb, j);
        }
        if (j < nk) {
            issue(tb, wb, j);
            mg_wg_wait1();
            retire(ta, wa, j - 1);
            mg_wg_wait0();
            retire(tb, wb, j);
        } else {
            mg_wg_wait0();
            retire(ta, wa, j - 1);
        }
        }
        it += nk;
        /* epilogue: accumulator (row, col) = (output feature, token); a shared tile is stored by the last
         * of its CTAs to finish (sk_fixup), with the sums of its partials in acc */
        c += nk;
        if (own >= g.ntile) continue; /* the copy of the last tile */
        if (!sg.whole) { /* fp32 partials of both halves (gate|up: gate rows 0..63, up rows 64..127) */
            sk_part_store<BN>(acc, g.part, sg.slot, wg, warp, lane);
            if (!sk_fixup<BN>(acc, g.part, g.cnt, &sh_last, sg.tile, tile, kchunks, g.total, units, CL, rank, wg,
                              warp, lane))
                continue;
        }
        if (GATEUP && wg == 1) { /* hand the up half to warpgroup 0; wait until it has read it */
#pragma unroll
            for (int i = 0; i < NACC; i++) xbuf[i * 128 + t] = cu_f_bf16(acc[i]);
            fx_named_arrive(1, 256);
            fx_named_sync(2, 256);
            continue;
        }
        if (GATEUP) fx_named_sync(1, 256);
#pragma unroll
        for (int i = 0; i < NACC; i++) {
            const int row = warp * 16 + lane / 4 + ((i & 2) ? 8 : 0);
            const int tok = 8 * (i / 4) + 2 * (lane % 4) + (i & 1);
            if (tok >= g.m) continue;
            if (GATEUP) {
                g.y[tok * g.ldy + tile * 64 + row] = cu_silu_mul1(cu_bf16_round(acc[i]), cu_bf16_f(xbuf[i * 128 + t]));
            } else {
                const int n = tile * FX_ROWS + wg * 64 + row;
                if (n < g.n) g.y[tok * g.ldy + n] = cu_f_bf16(acc[i]);
            }
        }
        if (GATEUP) fx_named_arrive(2, 256);
    }
    if (CL > 1) mg_cluster_sync();
#endif
}

static int fx_ntile(int32_t n, int silu) { return silu ? n / 2 / 64 : (n + FX_ROWS - 1) / FX_ROWS; }

extern "C" int kern_cuda_gemm_fp8x_fits(int32_t m, int32_t n, int32_t k, int silu, const void *x, const float *xs,
                                        int64_t ld_xs, const void *w, size_t scratch_bytes)
{
    if (m < 1 || m > 128 || n < 1 || k < MG_KC || k % MG_KC || (silu && (n % 2 || (n / 2) % 64)) || !xs ||
        ld_xs < k / MG_KC || (uintptr_t)x % 16 || (uintptr_t)w % 16)
        return 0;
    const int64_t total = (int64_t)fx_ntile(n, silu) * (k / MG_KC);
    return fx_ntile(n, silu) <= SK_COUNTERS && sk_part_bytes(sk_grid(total), m) <= scratch_bytes;
}

/* Measured on the H200 (2026-12-02, moeserve-bench-dense, cold L2, BENCHMARKS.md) against the grouped kernel
 * as one slot: faster at m = 1 and 37 wherever K >= 7168 (q_a|kv_a 13.7 vs 20.6 us at m = 1, 25.4 vs 32.3 at
 * 37; o_proj 51.5 vs 65.3 at 37), slower on the short-K matrices (q_b K = 1536, shared down 2048: their tiles
 * of 12-16 chunks are mostly shared, so partial stores and fixups outweigh the SMs it fills) and at m = 128
 * on every shape (o_proj 62.7 vs 60.4, shared gate|up 49.9 vs 35.6: the BN = 128 tile re-reads the x block
 * from L2 for every weight tile, and its fixups are not yet understood). K between 2048 and 7168 is unmeasured. */
extern "C" int kern_cuda_gemm_fp8x_wins(int32_t m, int32_t k) { return m <= 64 && k >= 4096; }

/* CTAs per cluster: MS_GEMM_FP8X_MC=1 the 2-CTA cluster with the x block multicast, =4 four CTAs (x over
 * L2->SM once per 4 tiles, but up to 3 copies of the last tile and a tighter fit on the GPCs: to be measured),
 * else 1 (opt-in: neither has run on a GPU yet). Read at every call (a getenv, no device work) so the harness
 * can run the variants in one process. */
static int fx_mc_ctas(void)
{
    const char *e = getenv("MS_GEMM_FP8X_MC");
    return !e ? 1 : !strcmp(e, "1") ? 2 : !strcmp(e, "4") ? 4 : 1;
}

/* A launch of `grid` CTAs of 384 threads in clusters of cl (at: its one attribute) */
static void fx_cluster_cfg(cudaLaunchConfig_t &cfg, cudaLaunchAttribute *at, unsigned grid, int cl, size_t smem,
                           cudaStream_t stream)
{
    cfg = cudaLaunchConfig_t{};
    cfg.gridDim = dim3(grid), cfg.blockDim = dim3(384), cfg.dynamicSmemBytes = smem, cfg.stream = stream;
    at[0].id = cudaLaunchAttributeClusterDimension, at[0].val.clusterDim.x = (unsigned)cl, at[0].val.clusterDim.y = 1,
    at[0].val.clusterDim.z = 1;
    cfg.attrs = at, cfg.numAttrs = 1;
}

/* Clusters of CL CTAs of this kernel that fit on the device at once (the GPCs' SM counts need not be
 * multiples of CL), 0 if the query fails (not kept: it may have failed inside a graph capture, then the
 * call runs the one-CTA kernel and a later call asks again). Once per instantiation. */
template <int BN, bool GATEUP, int CL> static int fx_max_units(void)
{
    static int n = -1;
    if (n < 0) {
        typedef fx_shape<BN, GATEUP> sh;
        cudaLaunchConfig_t cfg;
        cudaLaunchAttribute at[1];
        fx_cluster_cfg(cfg, at, (unsigned)(mg_num_sms() / CL * CL), CL, sh::SMEM, 0);
        int c = 0;
        if (cudaFuncSetAttribute(fx_kernel<BN, GATEUP, CL>, cudaFuncAttributeMaxDynamicSharedMemorySize, sh::SMEM) !=
                cudaSuccess ||
            cudaOccupancyMaxActiveClusters(&c, fx_kernel<BN, GATEUP, CL>, &cfg) != cudaSuccess) {
            (void)cudaGetLastError();
            return 0;
        }
        n = c;
    }
    return n;
}

/* The call's work for CL-CTA units: g.total (groups x chunks) and the grid (CTAs), 0 if none fits (the
 * caller falls back to CL = 1). */
template <int BN, bool GATEUP, int CL>
static int64_t fx_grid(fx_args &g, size_t scratch_bytes)
{
    const int64_t groups = (g.ntile + CL - 1) / CL;
    g.total = groups * (g.K / MG_KC);
    if (CL == 1) return sk_grid(g.total);
    const int mx = fx_max_units<BN, GATEUP, CL>();
    if (mx < 1) return 0;
    const int64_t p = CL * sk_grid_max(g.total, mx);
    return sk_part_bytes(p, g.m) <= scratch_bytes ? p : 0;
}

template <int BN, bool GATEUP, int CL>
static ms_status_t fx_launch(kern_ctx_t *cx, const CUtensorMap &tw, const CUtensorMap &tx, const fx_args &g,
                             int64_t p)
{
    typedef fx_shape<BN, GATEUP> sh;
    CUDA_CHECK(cudaFuncSetAttribute(fx_kernel<BN, GATEUP, CL>, cudaFuncAttributeMaxDynamicSharedMemorySize, sh::SMEM));
    if (CL == 1) {
        cu_launch(fx_kernel<BN, GATEUP, CL>, (unsigned)p, 384, sh::SMEM, CU_STREAM(cx), tw, tx, g);
    } else {
        cudaLaunchConfig_t cfg;
        cudaLaunchAttribute at[1];
        fx_cluster_cfg(cfg, at, (unsigned)p, CL, sh::SMEM, CU_STREAM(cx));
        CUDA_CHECK(cudaLaunchKernelEx(&cfg, fx_kernel<BN, GATEUP, CL>, tw, tx, g));
    }
    CU_LAUNCHED();
    return MS_OK;
}

/* The CL-CTA variant if it fits (a cluster grid, its partials in the scratch; 1 always does), and then
 * true. x's tensor map boxes are the rows one CTA fetches. */
template <int BN, bool GATEUP, int CL>
static bool fx_try(kern_ctx_t *cx, const CUtensorMap &tw, const uint8_t *xq, fx_args g, size_t scratch_bytes,
                   ms_status_t *st)
{
    constexpr int XH = CL > 1 && BN / CL >= 8 ? BN / CL : BN;
    const int64_t p = fx_grid<BN, GATEUP, CL>(g, scratch_bytes);
    if (p < 1) return false;
    CUtensorMap tx;
    *st = mg_map_2d(&tx, xq, CU_TENSOR_MAP_DATA_TYPE_UINT8, (uint64_t)g.m, (uint64_t)g.K, (uint64_t)g.K, MG_KC,
                    (uint32_t)XH);
    if (*st == MS_OK) *st = fx_launch<BN, GATEUP, CL>(cx, tw, tx, g, p);
    return true;
}

template <int BN, bool GATEUP>
static ms_status_t fx_run(kern_ctx_t *cx, const uint8_t *xq, const uint8_t *w, const fx_args &g, size_t scratch_bytes)
{
    CUtensorMap tw;
    MS_TRY(mg_map_2d(&tw, w, CU_TENSOR_MAP_DATA_TYPE_UINT8, (uint64_t)g.n, (uint64_t)g.K, (uint64_t)g.K, MG_KC, 64));
    ms_status_t st = MS_OK;
    const int cl = fx_mc_ctas();
    if (cl == 4 && fx_try<BN, GATEUP, 4>(cx, tw, xq, g, scratch_bytes, &st)) return st;
    if (cl == 2 && fx_try<BN, GATEUP, 2>(cx, tw, xq, g, scratch_bytes, &st)) return st;
    fx_try<BN, GATEUP, 1>(cx, tw, xq, g, scratch_bytes, &st);
    return st;
}

template <bool GATEUP>
static ms_status_t fx_dispatch(kern_ctx_t *cx, int bn, const uint8_t *xq, const uint8_t *w, const fx_args &g,
                               size_t scratch_bytes)
{
    switch (bn) {
    case 8: return fx_run<8, GATEUP>(cx, xq, w, g, scratch_bytes);
    case 16: return fx_run<16, GATEUP>(cx, xq, w, g, scratch_bytes);
    case 32: return fx_run<32, GATEUP>(cx, xq, w, g, scratch_bytes);
    case 64: return fx_run<64, GATEUP>(cx, xq, w, g, scratch_bytes);
    default: return fx_run<128, GATEUP>(cx, xq, w, g, scratch_bytes);
    }
}

extern "C" ms_status_t kern_cuda_gemm_fp8x(kern_ctx_t *cx, const uint8_t *xq, const float *xs, int64_t ld_xs,
                                           int32_t m, const uint8_t *w, const float *ws, int32_t n, int32_t k,
                                           int silu, bf16_t *y, int64_t ldy, void *scratch, size_t scratch_bytes)
{
    if (!kern_cuda_gemm_fp8x_fits(m, n, k, silu, xq, xs, ld_xs, w, scratch_bytes))
        return MS_ERR(MS_ERR_INVALID, "cuda gemm_fp8x: m=%d n=%d k=%d ld_xs=%lld%s does not fit the kernel", m, n, k,
                      (long long)ld_xs, silu ? " silu" : "");
    fx_args g;
    if (!cx->sk_count) return MS_ERR(MS_ERR_INTERNAL, "cuda gemm_fp8x: the context has no stream-K counters");
    g.ws = ws, g.xs = xs, g.y = (uint16_t *)y, g.part = (float *)scratch, g.cnt = cx->sk_count, g.ldy = ldy,
    g.ld_xs = ld_xs;
    g.m = m, g.n = n, g.K = k, g.ntile = fx_ntile(n, silu), g.inter = silu ? n / 2 : 0, g.total = 0;
    const int bn = sk_bn(m);
    return silu ? fx_dispatch<true>(cx, bn, xq, w, g, scratch_bytes) : fx_dispatch<false>(cx, bn, xq, w, g, scratch_bytes);
}
