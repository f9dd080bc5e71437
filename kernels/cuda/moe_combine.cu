/* moe_combine.cu — each token's weighted expert outputs summed as
 * kernels/cpu/moe_combine.c does (transformers' grouped experts path): terms
 * bf16 row × fp32 weight in fp32, added in ascending expert id (ties keep
 * their k order), one rounding to bf16. The products and sums are
 * __fmul_rn/__fadd_rn in the CPU's order, so the result is bit-identical.
 * One block per token; the pair order is sorted once per block. */
#include "common.cuh"

#define MC_THREADS 256
#define MC_MAX_K 64

__global__ static void __launch_bounds__(MC_THREADS)
    moe_combine_kernel(const uint16_t *rows, const int32_t *row_of_pair, const int32_t *idx, const float *w, int32_t K,
                       int32_t hidden, uint16_t *out)
{
    __shared__ int32_t srow[MC_MAX_K];
    __shared__ float sw[MC_MAX_K];
    const int64_t t = blockIdx.x;
    if (threadIdx.x == 0) {
        int32_t ord[MC_MAX_K];
        const int32_t *it = idx + t * K;
        for (int32_t k = 0; k < K; k++) { /* insertion sort of k by expert id, as the CPU */
            int32_t j = k;
            while (j > 0 && it[ord[j - 1]] > it[k]) {
                ord[j] = ord[j - 1];
                j--;
            }
            ord[j] = k;
        }
        for (int32_t j = 0; j < K; j++) {
            srow[j] = row_of_pair[t * K + ord[j]];
            sw[j] = w[t * K + ord[j]];
        }
    }
    __syncthreads();
    uint16_t *o = out + t * hidden;
    for (int32_t d = threadIdx.x; d < hidden; d += MC_THREADS) {
        float acc = 0.0f;
        for (int32_t j = 0; j < K; j++) {
            if (srow[j] < 0) continue; /* padding, or dropped by a fault */
            acc = __fadd_rn(acc, __fmul_rn(cu_bf16_f(rows[(int64_t)srow[j] * hidden + d]), sw[j]));
        }
        o[d] = cu_f_bf16(acc);
    }
}

extern "C" ms_status_t kern_cuda_moe_combine(kern_ctx_t *cx, const bf16_t *rows, const int32_t *row_of_pair,
                                             const int32_t *idx, const float *w, int32_t T, int32_t K, int32_t hidden,
                                             bf16_t *out)
{
    if (K > MC_MAX_K) return MS_ERR(MS_ERR_UNSUPPORTED, "cuda moe_combine: top_k %d > %d", K, MC_MAX_K);
    if (T <= 0 || hidden <= 0) return MS_OK;
    moe_combine_kernel<<<(unsigned)T, MC_THREADS, 0, CU_STREAM(cx)>>>(rows, row_of_pair, idx, w, K, hidden, out);
    CU_LAUNCHED();
    return MS_OK;
}
