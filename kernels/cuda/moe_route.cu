/* moe_route.cu — DeepSeek-V3's noaux_tc group-limited sigmoid router with
 * selection bit-identical to kernels/cpu/moe_route.c: the same fp32
 * operations in the same order (sigmoid as 1/(1+exp(-x)) with exp rounded as
 * glibc's expf, c = s + bias, group score = top-2 sum, masked c := 0.0, the
 * stable top-k with ties to the lower index, weights normalized by a
 * sequential sum in selection order). One block per token; the top-k rounds
 * are block-wide argmax reductions over (value, lower index). */
#include "common.cuh"

#define ROUTE_THREADS 256

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

extern "C" ms_status_t kern_cuda_moe_route(kern_ctx_t *cx, const float *logits, const float *bias, int32_t T,
                                           int32_t E, int32_t n_group, int32_t topk_group, int32_t top_k,
                                           int32_t norm_topk_prob, float scaling, int32_t *idx, float *w)
{
    if (n_group <= 0 || n_group > 64 || E % n_group || topk_group < 1 || topk_group > n_group || top_k < 1 ||
        top_k > E || E / n_group < 2 || E > 4096)
        return MS_ERR(MS_ERR_INVALID, "cuda moe_route: bad geometry E=%d n_group=%d topk_group=%d top_k=%d", E,
                      n_group, topk_group, top_k);
    if (T <= 0) return MS_OK;
    size_t smem = (size_t)E * (2 * sizeof(float) + 1);
    moe_route_kernel<<<T, ROUTE_THREADS, smem, CU_STREAM(cx)>>>(logits, bias, E, n_group, topk_group, top_k,
                                                               norm_topk_prob, scaling, idx, w);
    CU_LAUNCHED();
    return MS_OK;
}
