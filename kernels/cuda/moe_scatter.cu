/* moe_scatter.cu — the same-rank half of an MoE dispatch, as
 * kernels/cpu/moe_scatter.c: pair p's token row lands at row
 * (slot - slot0)*cap + rank_in_slot[p] of recv [n_local, cap, D], row_of_pair
 * says where (-1 for pairs of other ranks, padding, or a capacity fault,
 * which is raised: never a silent truncation). One block per pair (16-byte
 * copies when the rows allow), and one more block for the receive counts
 * min(slot_counts[slot0 + j], cap). Rows past a count are left as they were. */
#include "common.cuh"

#define MS_THREADS 128

__global__ static void __launch_bounds__(MS_THREADS)
    moe_scatter_kernel(const uint16_t *x, int64_t P, int32_t K, int32_t D, const int32_t *slot_of_pair,
                       const int32_t *rank_in_slot, const int32_t *slot_counts, int32_t slot0, int32_t n_local,
                       int32_t cap, uint16_t *recv, int32_t *recv_count, int32_t *row_of_pair, int vec,
                       uint32_t *fault)
{
    cu_pdl_enter();
    const int64_t p = blockIdx.x;
    if (p == P) { /* the counts block */
        for (int32_t j = threadIdx.x; j < n_local; j += MS_THREADS) recv_count[j] = min(slot_counts[slot0 + j], cap);
        return;
    }
    const int32_t s = slot_of_pair[p], j = s - slot0, r = rank_in_slot[p];
    if (s < 0 || j < 0 || j >= n_local) {
        if (threadIdx.x == 0) row_of_pair[p] = -1;
        return;
    }
    if (r < 0 || r >= cap) {
        if (threadIdx.x == 0) {
            row_of_pair[p] = -1;
            cu_fault(fault, KERN_FAULT_CAPACITY);
        }
        return;
    }
    const int64_t row = (int64_t)j * cap + r;
    const uint16_t *src = x + (p / K) * D;
    uint16_t *dst = recv + row * D;
    if (vec) {
        const uint4 *s4 = (const uint4 *)src;
        uint4 *d4 = (uint4 *)dst;
#pragma unroll 4 /* loads through the read-only path, several in flight (recv never aliases x) */
        for (int32_t i = threadIdx.x; i < D / 8; i += MS_THREADS) d4[i] = __ldg(s4 + i);
    } else {
        for (int32_t i = threadIdx.x; i < D; i += MS_THREADS) dst[i] = src[i];
    }
    if (threadIdx.x == 0) row_of_pair[p] = (int32_t)row;
}

extern "C" ms_status_t kern_cuda_moe_scatter(kern_ctx_t *cx, const bf16_t *x, int32_t T, int32_t K, int32_t D,
                                             const int32_t *slot_of_pair, const int32_t *rank_in_slot,
                                             const int32_t *slot_counts, int32_t slot0, int32_t n_local, int32_t cap,
                                             bf16_t *recv, int32_t *recv_count, int32_t *row_of_pair)
{
    if (T < 0 || K < 1 || D < 1 || n_local < 0 || cap < 0)
        return MS_ERR(MS_ERR_INVALID, "cuda moe_scatter: T %d, K %d, D %d, n_local %d, cap %d", T, K, D, n_local, cap);
    const int64_t P = (int64_t)T * K;
    if (P + 1 > 0x7fffffff) return MS_ERR(MS_ERR_UNSUPPORTED, "cuda moe_scatter: %lld pairs", (long long)P);
    const int vec = D % 8 == 0 && ((uintptr_t)x % 16) == 0 && ((uintptr_t)recv % 16) == 0;
    cu_launch(moe_scatter_kernel, (unsigned)(P + 1), MS_THREADS, 0, CU_STREAM(cx), x, P, K, D, slot_of_pair,
              rank_in_slot, slot_counts, slot0, n_local, cap, recv, recv_count, row_of_pair, vec, cx->fault);
    CU_LAUNCHED();
    return MS_OK;
}
