/* moe_combine.cu — each token's weighted expert outputs summed as
 * kernels/cpu/moe_combine.c does (transformers' grouped experts path): terms
 * bf16 row × fp32 weight in fp32, added in ascending expert id (ties keep
 * their k order), one rounding to bf16. The products and sums are
 * __fmul_rn/__fadd_rn in the CPU's order, so the result is bit-identical.
 *
 * Grid: token × slice of the hidden dim, so even one token spreads over
 * several SMs; a thread owns one 8-element chunk and issues its K row loads
 * as 16-byte accesses (vec: aligned rows, hidden a multiple of 8; else element
 * by element). Each block ranks the token's K pairs in parallel (rank of k =
 * pairs with a smaller expert id, or the same id and a smaller k: the CPU's
 * stable insertion sort).
 *
 * moe_combine_add (add != NULL) adds the shared expert's output to the
 * rounded sum and rounds again — add.cu's __fadd_rn of two bf16 values, so
 * bit-identical to moe_combine then add — saving the routed tensor's store
 * and the add kernel's two reads and one launch. */
#include "common.cuh"

#define MC_THREADS 128
#define MC_MAX_K 64

__global__ static void __launch_bounds__(MC_THREADS)
    moe_combine_kernel(const uint16_t *__restrict__ rows, const int32_t *row_of_pair, const int32_t *idx,
                       const float *w, int32_t K, int32_t hidden, const uint16_t *add, uint16_t *out, bool vec)
{
    cu_pdl_enter();
    __shared__ int32_t srow[MC_MAX_K];
    __shared__ float sw[MC_MAX_K];
    const int64_t t = blockIdx.x;
    const int32_t *it = idx + t * K;
    for (int32_t k = threadIdx.x; k < K; k += MC_THREADS) {
        const int32_t e = it[k];
        int32_t rank = 0;
        for (int32_t j = 0; j < K; j++) rank += it[j] < e || (it[j] == e && j < k);
        srow[rank] = row_of_pair[t * K + k];
        sw[rank] = w[t * K + k];
    }
    __syncthreads();
    const int32_t c = blockIdx.y * MC_THREADS + threadIdx.x, d0 = 8 * c;
    if (d0 >= hidden) return;
    const int n = min(8, hidden - d0);
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int32_t j = 0; j < K; j++) {
        if (srow[j] < 0) continue; /* padding, or dropped by a fault */
        const uint16_t *r = rows + (int64_t)srow[j] * hidden + d0;
        uint16_t v[8];
        cu_ld8(r, n, vec, v);
#pragma unroll
        for (int e = 0; e < 8; e++) acc[e] = __fadd_rn(acc[e], __fmul_rn(cu_bf16_f(v[e]), sw[j]));
    }
    uint16_t o[8];
#pragma unroll
    for (int e = 0; e < 8; e++) o[e] = cu_f_bf16(acc[e]);
    if (add) { /* the add op's one rounding of bf16 + bf16 */
        uint16_t a[8];
        cu_ld8(add + t * hidden + d0, n, vec, a);
#pragma unroll
        for (int e = 0; e < 8; e++) o[e] = cu_f_bf16(__fadd_rn(cu_bf16_f(o[e]), cu_bf16_f(a[e])));
    }
    cu_st8(out + t * hidden + d0, n, vec, o);
}

static ms_status_t mc_launch(kern_ctx_t *cx, const bf16_t *rows, const int32_t *row_of_pair, const int32_t *idx,
                             const float *w, int32_t T, int32_t K, int32_t hidden, const bf16_t *add, bf16_t *out,
                             const char *op)
{
    if (K > MC_MAX_K) return MS_ERR(MS_ERR_UNSUPPORTED, "cuda %s: top_k %d > %d", op, K, MC_MAX_K);
    if (T <= 0 || hidden <= 0) return MS_OK;
    const bool vec = ((uintptr_t)rows | (uintptr_t)out | (uintptr_t)add) % 16 == 0 && hidden % 8 == 0;
    const dim3 grid((unsigned)T, (unsigned)((hidden + 8 * MC_THREADS - 1) / (8 * MC_THREADS)));
    cu_launch(moe_combine_kernel, grid, MC_THREADS, 0, CU_STREAM(cx), (const uint16_t *)rows, row_of_pair, idx, w, K,
              hidden, (const uint16_t *)add, (uint16_t *)out, vec);
    CU_LAUNCHED();
    return MS_OK;
}

extern "C" ms_status_t kern_cuda_moe_combine(kern_ctx_t *cx, const bf16_t *rows, const int32_t *row_of_pair,
                                             const int32_t *idx, const float *w, int32_t T, int32_t K, int32_t hidden,
                                             bf16_t *out)
{
    return mc_launch(cx, rows, row_of_pair, idx, w, T, K, hidden, NULL, out, "moe_combine");
}

extern "C" ms_status_t kern_cuda_moe_combine_add(kern_ctx_t *cx, const bf16_t *rows, const int32_t *row_of_pair,
                                                 const int32_t *idx, const float *w, int32_t T, int32_t K,
                                                 int32_t hidden, const bf16_t *add, bf16_t *out)
{
    if (!add) return MS_ERR(MS_ERR_INVALID, "cuda moe_combine_add: no addend");
    return mc_launch(cx, rows, row_of_pair, idx, w, T, K, hidden, add, out, "moe_combine_add");
}
