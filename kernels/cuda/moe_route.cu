/* moe_route.cu — DeepSeek-V3's noaux_tc group-limited sigmoid router with
 * selection bit-identical to kernels/cpu/moe_route.c: the same fp32
 * operations in the same order (sigmoid as 1/(1+exp(-x)) with exp rounded as
 * glibc's expf, c = s + bias, group score = top-2 sum, masked c := 0.0, the
 * stable top-k with ties to the lower index, weights normalized by a
 * sequential sum in selection order). Up to 32 experts: a lane per expert
 * and selection by rank counts (moe_route_lane_kernel); up to 256: a warp per
 * token (moe_route_warp_kernel); beyond, one block per token whose top-k rounds are
 * block-wide argmax reductions over (value, lower index). */
#include "common.cuh"

#include <stdlib.h>
#include <string.h>

#define ROUTE_THREADS 256

/* x, or -inf for a NaN (the lane kernel's ranks need a total order) */
__device__ static __forceinline__ float cu_nan_low(float x) { return x != x ? -INFINITY : x; }

struct route_best {
    float v;
    int32_t i;
};

/* a before b in the CPU's selection order: larger value, then lower index */
__device__ static inline bool route_better(route_best a, route_best b)
{
    if (b.i < 0) return a.i >= 0;
    if (a.i < 0) return false;
    return a.v > b.v || (a.v == b.v && a.i < b.i);
}

__device__ static route_best route_block_argmax(route_best x, route_best *sh)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) {
        route_best y = {__shfl_xor_sync(0xffffffffu, x.v, o), __shfl_xor_sync(0xffffffffu, x.i, o)};
        if (route_better(y, x)) x = y;
    }
    __syncthreads();
    if (lane == 0) sh[warp] = x;
    __syncthreads();
    x = lane < nw ? sh[lane] : route_best{0.f, -1};
    for (int o = 16; o > 0; o >>= 1) {
        route_best y = {__shfl_xor_sync(0xffffffffu, x.v, o), __shfl_xor_sync(0xffffffffu, x.i, o)};
        if (route_better(y, x)) x = y;
    }
    return x;
}

__global__ static void moe_route_kernel(const float *logits, const float *bias, int32_t E, int32_t n_group,
                                        int32_t topk_group, int32_t top_k, int32_t norm_topk_prob, float scaling,
                                        int32_t *idx, float *w)
{
    cu_pdl_enter();
    extern __shared__ float sm[];
    __shared__ route_best shb[32];
    __shared__ float gscore[64];
    __shared__ unsigned char keep[64];
    float *sg = sm, *c = sm + E;
    unsigned char *taken = (unsigned char *)(c + E);
    const int32_t t = blockIdx.x, gs = E / n_group;
    const float *lg = logits + (int64_t)t * E;
    for (int32_t e = threadIdx.x; e < E; e += blockDim.x) {
        sg[e] = __fdiv_rn(1.0f, __fadd_rn(1.0f, cu_expf(-lg[e])));
        c[e] = __fadd_rn(sg[e], bias ? bias[e] : 0.0f);
        taken[e] = 0;
    }
    __syncthreads();
    for (int32_t g = threadIdx.x; g < n_group; g += blockDim.x) {
        const float *cg = c + g * gs;
        int32_t b0 = 0, b1 = -1;
        for (int32_t i = 1; i < gs; i++)
            if (cg[i] > cg[b0]) b0 = i;
        for (int32_t i = 0; i < gs; i++)
            if (i != b0 && (b1 < 0 || cg[i] > cg[b1])) b1 = i;
        gscore[g] = __fadd_rn(cg[b0], cg[b1]);
        keep[g] = 0;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int32_t j = 0; j < topk_group; j++) {
            int32_t best = -1;
            for (int32_t g = 0; g < n_group; g++)
                if (!keep[g] && (best < 0 || gscore[g] > gscore[best])) best = g;
            keep[best] = 1;
        }
    }
    __syncthreads();
    for (int32_t e = threadIdx.x; e < E; e += blockDim.x)
        if (!keep[e / gs]) c[e] = 0.0f;
    __syncthreads();
    int32_t *it = idx + (int64_t)t * top_k;
    float *wt = w + (int64_t)t * top_k;
    for (int32_t j = 0; j < top_k; j++) {
        route_best b = {0.f, -1};
        for (int32_t e = threadIdx.x; e < E; e += blockDim.x) {
            route_best y = {c[e], taken[e] ? -1 : e};
            if (route_better(y, b)) b = y;
        }
        b = route_block_argmax(b, shb);
        if (threadIdx.x == 0) {
            taken[b.i] = 1;
            it[j] = b.i;
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        float sum = 0;
        for (int32_t j = 0; j < top_k; j++) {
            wt[j] = sg[it[j]];
            sum = __fadd_rn(sum, wt[j]);
        }
        for (int32_t j = 0; j < top_k; j++) {
            if (norm_topk_prob) wt[j] = __fdiv_rn(wt[j], __fadd_rn(sum, 1e-20f));
            wt[j] = __fmul_rn(wt[j], scaling);
        }
    }
}

/* The same selection with one warp per token, for E <= 256 (DeepSeek-V3/R1: 256 experts, or one EP rank's
 * view of them): lane l holds experts l, l + 32, ..., every top-1/top-2/top-k round is a shuffle reduction
 * with route_better's order (larger value, then lower index) and no block barrier. The block kernel spent
 * ~11 µs a call on its 2 barriers per round; four tokens share a block here. */
#define RW_WARPS 4
#define RW_PER_LANE 8 /* E <= 32 * RW_PER_LANE */

__device__ static inline route_best route_warp_argmax(route_best x)
{
    for (int o = 16; o > 0; o >>= 1) {
        route_best y = {__shfl_xor_sync(0xffffffffu, x.v, o), __shfl_xor_sync(0xffffffffu, x.i, o)};
        if (route_better(y, x)) x = y;
    }
    return x;
}

__global__ static void __launch_bounds__(RW_WARPS * 32)
    moe_route_warp_kernel(const float *logits, const float *bias, int32_t T, int32_t E, int32_t n_group,
                          int32_t topk_group, int32_t top_k, int32_t norm_topk_prob, float scaling, int32_t *idx,
                          float *w)
{
    cu_pdl_enter();
    __shared__ float s_sg[RW_WARPS][32 * RW_PER_LANE], s_gs[RW_WARPS][64];
    __shared__ int32_t s_id[RW_WARPS][32 * RW_PER_LANE];
    const int32_t lane = threadIdx.x & 31, wp = threadIdx.x >> 5, t = blockIdx.x * RW_WARPS + wp, gs = E / n_group;
    if (t >= T) return;
    const float *lg = logits + (int64_t)t * E;
    float c[RW_PER_LANE];
#pragma unroll
    for (int j = 0; j < RW_PER_LANE; j++) {
        const int32_t e = lane + 32 * j;
        if (e < E) {
            const float sg = __fdiv_rn(1.0f, __fadd_rn(1.0f, cu_expf(-lg[e])));
            s_sg[wp][e] = sg;
            c[j] = __fadd_rn(sg, bias ? bias[e] : 0.0f);
        }
    }
    for (int32_t g = 0; g < n_group; g++) { /* group score: the sum of its two best values */
        route_best b1 = {0.f, -1}, b2 = {0.f, -1};
#pragma unroll
        for (int j = 0; j < RW_PER_LANE; j++) {
            const int32_t e = lane + 32 * j;
            const route_best y = {c[j], e < E && e / gs == g ? e : -1};
            if (route_better(y, b1)) b1 = y;
        }
        b1 = route_warp_argmax(b1);
#pragma unroll
        for (int j = 0; j < RW_PER_LANE; j++) {
            const int32_t e = lane + 32 * j;
            const route_best y = {c[j], e < E && e / gs == g && e != b1.i ? e : -1};
            if (route_better(y, b2)) b2 = y;
        }
        b2 = route_warp_argmax(b2);
        if (lane == 0) s_gs[wp][g] = __fadd_rn(b1.v, b2.v);
    }
    __syncwarp();
    uint64_t keep = 0; /* every lane picks the same topk_group groups: the first best score each round */
    for (int32_t j = 0; j < topk_group; j++) {
        int32_t best = -1;
        for (int32_t g = 0; g < n_group; g++)
            if (!(keep >> g & 1) && (best < 0 || s_gs[wp][g] > s_gs[wp][best])) best = g;
        keep |= 1ull << best;
    }
    uint32_t taken = 0;
#pragma unroll
    for (int j = 0; j < RW_PER_LANE; j++) {
        const int32_t e = lane + 32 * j;
        if (e < E && !(keep >> (e / gs) & 1)) c[j] = 0.0f;
    }
    int32_t *it = idx + (int64_t)t * top_k;
    float *wt = w + (int64_t)t * top_k;
    for (int32_t k = 0; k < top_k; k++) {
        route_best b = {0.f, -1};
#pragma unroll
        for (int j = 0; j < RW_PER_LANE; j++) {
            const int32_t e = lane + 32 * j;
            const route_best y = {c[j], e < E && !(taken >> j & 1) ? e : -1};
            if (route_better(y, b)) b = y;
        }
        b = route_warp_argmax(b);
        if ((b.i & 31) == lane) taken |= 1u << (b.i >> 5);
        if (lane == 0) s_id[wp][k] = b.i, it[k] = b.i;
    }
    __syncwarp();
    if (lane == 0) { /* as the block kernel: a sequential sum in selection order */
        float sum = 0;
        for (int32_t k = 0; k < top_k; k++) {
            wt[k] = s_sg[wp][s_id[wp][k]];
            sum = __fadd_rn(sum, wt[k]);
        }
        for (int32_t k = 0; k < top_k; k++) {
            if (norm_topk_prob) wt[k] = __fdiv_rn(wt[k], __fadd_rn(sum, 1e-20f));
            wt[k] = __fmul_rn(wt[k], scaling);
        }
    }
}

/* E <= 32 (one EP8 rank's view of R1's experts: 32): lane e holds expert e, and every selection is a rank
 * count instead of rounds of argmax. The warp kernel above took ~24 µs a call for 32 experts at batch 1 and
 * 128 alike (ncu, H200), most likely one warp's latency through 8 groups × 2 and 8 top-k shuffle reductions of 5 dependent
 * rounds each, with 8 values a lane (7 of them empty here). This one: 3.1 µs at batch 1 (batch 128 not yet
 * timed). Here an element's place in the order (larger value, then lower
 * index: route_better's) is the number of elements before it, counted from one broadcast a peer: the
 * selected set and its order are the CPU's sequential selection's whenever the values are ordered (not NaN).
 *   - group score: the sum of the two largest values of the group (the CPU adds the values of its two first
 *     picks; which of equal values it picked does not change the sum, or only the sign of a zero, and the
 *     scores are compared only);
 *   - a group is kept when fewer than topk_group groups come before it;
 *   - expert e is the r-th pick when r experts come before it (masked experts at 0.0, as the CPU);
 *   - weights as the CPU: sigmoid values of the picks, summed one by one in pick order. */
__global__ static void __launch_bounds__(RW_WARPS * 32)
    moe_route_lane_kernel(const float *logits, const float *bias, int32_t T, int32_t E, int32_t n_group,
                          int32_t topk_group, int32_t top_k, int32_t norm_topk_prob, float scaling, int32_t *idx,
                          float *w)
{
    cu_pdl_enter();
    __shared__ float s_sg[RW_WARPS][32];
    __shared__ int32_t s_id[RW_WARPS][32];
    const unsigned all = 0xffffffffu;
    const int32_t lane = threadIdx.x & 31, wp = threadIdx.x >> 5, t = blockIdx.x * RW_WARPS + wp, gs = E / n_group;
    if (t >= T) return; /* warp-uniform */
    const bool on = lane < E;
    const float lg = on ? logits[(int64_t)t * E + lane] : 0.0f, bv = on && bias ? bias[lane] : 0.0f;
    const float sg = __fdiv_rn(1.0f, __fadd_rn(1.0f, cu_expf(-lg)));
    float c = __fadd_rn(sg, bv);
    /* the lane's group score (lanes past E compute a meaningless one, never read) */
    const int32_t grp = lane / gs, g0 = grp * gs;
    float m1 = __shfl_sync(all, c, g0), m2 = __shfl_sync(all, c, g0 + 1);
    if (m2 > m1) {
        const float tmp = m1;
        m1 = m2, m2 = tmp;
    }
    for (int32_t i = 2; i < gs; i++) {
        const float v = __shfl_sync(all, c, g0 + i);
        if (v > m1) m2 = m1, m1 = v;
        else if (v > m2) m2 = v;
    }
    /* NaN scores (a NaN row of logits) order as -inf, so the ranks below stay a permutation: with NaN compared
     * as is, no lane counted a NaN lane and a NaN lane counted none, so ranks repeated, some of the top_k slots
     * were never written and the row routed to stale shared-memory ids (a KERN_FAULT_SLOT in the MTP graph test).
     * Rows without NaN rank exactly as before. */
    const float gsc = cu_nan_low(__fadd_rn(m1, m2));
    int32_t grank = 0; /* groups before the lane's group */
    for (int32_t h = 0; h < n_group; h++) {
        const float v = __shfl_sync(all, gsc, h * gs);
        grank += v > gsc || (v == gsc && h < grp);
    }
    if (grank >= topk_group) c = 0.0f;
    c = cu_nan_low(c);
    int32_t rank = 0; /* experts before the lane's */
    for (int32_t f = 0; f < E; f++) {
        const float v = __shfl_sync(all, c, f);
        rank += v > c || (v == c && f < lane);
    }
    if (on && rank < top_k) s_sg[wp][rank] = sg, s_id[wp][rank] = lane;
    __syncwarp();
    if (lane < top_k) { /* every lane sums the same values in the same order: the CPU's sequential sum */
        float sum = 0;
        for (int32_t k = 0; k < top_k; k++) sum = __fadd_rn(sum, s_sg[wp][k]);
        float wk = s_sg[wp][lane];
        if (norm_topk_prob) wk = __fdiv_rn(wk, __fadd_rn(sum, 1e-20f));
        idx[(int64_t)t * top_k + lane] = s_id[wp][lane];
        w[(int64_t)t * top_k + lane] = __fmul_rn(wk, scaling);
    }
}

/* MS_MOE_ROUTE=v1: the warp kernel for E <= 32 too (to time the two apart); read once */
static bool route_v1(void)
{
    static const bool v1 = cu_env_is("MS_MOE_ROUTE", "v1");
    return v1;
}

extern "C" ms_status_t kern_cuda_moe_route(kern_ctx_t *cx, const float *logits, const float *bias, int32_t T,
                                           int32_t E, int32_t n_group, int32_t topk_group, int32_t top_k,
                                           int32_t norm_topk_prob, float scaling, int32_t *idx, float *w)
{
    if (n_group <= 0 || n_group > 64 || E % n_group || topk_group < 1 || topk_group > n_group || top_k < 1 ||
        top_k > E || E / n_group < 2 || E > 4096)
        return MS_ERR(MS_ERR_INVALID, "cuda moe_route: bad geometry E=%d n_group=%d topk_group=%d top_k=%d", E,
                      n_group, topk_group, top_k);
    if (T <= 0) return MS_OK;
    if (E <= 32 && !route_v1()) {
        cu_launch(moe_route_lane_kernel, (T + RW_WARPS - 1) / RW_WARPS, RW_WARPS * 32, 0, CU_STREAM(cx), logits, bias,
                  T, E, n_group, topk_group, top_k, norm_topk_prob, scaling, idx, w);
        CU_LAUNCHED();
        return MS_OK;
    }
    if (E <= 32 * RW_PER_LANE) {
        cu_launch(moe_route_warp_kernel, (T + RW_WARPS - 1) / RW_WARPS, RW_WARPS * 32, 0, CU_STREAM(cx), logits, bias,
                  T, E, n_group, topk_group, top_k, norm_topk_prob, scaling, idx, w);
        CU_LAUNCHED();
        return MS_OK;
    }
    size_t smem = (size_t)E * (2 * sizeof(float) + 1);
    cu_launch(moe_route_kernel, T, ROUTE_THREADS, smem, CU_STREAM(cx), logits, bias, E, n_group, topk_group, top_k,
              norm_topk_prob, scaling, idx, w);
    CU_LAUNCHED();
    return MS_OK;
}
