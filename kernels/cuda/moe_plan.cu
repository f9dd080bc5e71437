/* moe_plan.cu — the dispatch layout of one MoE layer on the GPU, as
 * kernels/cpu/moe_plan.c: each pair p = t*K + k picks replica (t + k) % n_rep
 * of its expert, giving its global slot; rank_in_slot is the pair's number
 * among earlier pairs of the same slot, i.e. pair order within a slot, so it
 * must not depend on thread timing. One block walks the pairs in chunks of
 * MP_THREADS in order; inside a chunk, lanes of a warp with the same slot
 * rank themselves by lane (__match_any_sync), and the warps take their
 * slots' running counts one after another — a stable counting scan, no
 * atomics on the ranks. Slot counts and the per-expert load live in shared
 * memory until the end (load is a sum, so its atomics are order-free).
 * One block suffices at decode (T*K ~ 1K pairs); prefill's 64K pairs cost
 * 64 chunks of 32 barrier rounds. */
#include "common.cuh"

#define MP_THREADS 1024

__global__ static void __launch_bounds__(MP_THREADS)
    moe_plan_kernel(const int32_t *idx, int32_t T, int32_t K, kern_moe_place_t pl, int32_t *slot_of_pair,
                    int32_t *rank_in_slot, int32_t *slot_counts, int64_t *load, uint32_t *fault)
{
    cu_pdl_enter();
    extern __shared__ int32_t sh[]; /* [n_slots] running counts, then [E] routed pairs per expert */
    int32_t *cnt = sh, *ecnt = sh + pl.n_slots;
    for (int32_t i = threadIdx.x; i < pl.n_slots + pl.E; i += MP_THREADS) sh[i] = 0;
    __syncthreads();
    const int64_t P = (int64_t)T * K;
    const int32_t lane = threadIdx.x & 31, warp = threadIdx.x / 32;
    for (int64_t base = 0; base < P; base += MP_THREADS) {
        const int64_t p = base + threadIdx.x;
        int32_t s = -1, e = -1;
        if (p < P) {
            e = idx[p];
            const int32_t t = (int32_t)(p / K), k = (int32_t)(p % K);
            if (e != -1 && (e < 0 || e >= pl.E)) {
                cu_fault(fault, KERN_FAULT_SLOT);
                e = -1;
            } else if (e >= 0) {
                const int32_t nr = pl.n_rep[e];
                s = nr >= 1 && nr <= pl.max_rep ? pl.log2phy[(int64_t)e * pl.max_rep + (t + k) % nr] : -1;
                if (s < 0 || s >= pl.n_slots) {
                    cu_fault(fault, KERN_FAULT_SLOT);
                    s = -1, e = -1;
                }
            }
            slot_of_pair[p] = s;
        }
        const uint32_t peers = __match_any_sync(0xffffffffu, s);
        const int32_t before = __popc(peers & ((1u << lane) - 1u));
        int32_t rank = -1;
        for (int32_t w = 0; w < MP_THREADS / 32; w++) {
            if (warp == w) {
                const int32_t b = s >= 0 ? cnt[s] : 0;
                __syncwarp();
                if (s >= 0) {
                    rank = b + before;
                    if (before == 0) cnt[s] = b + __popc(peers);
                }
            }
            __syncthreads();
        }
        if (p < P) rank_in_slot[p] = rank;
        if (e >= 0) atomicAdd(&ecnt[e], 1);
    }
    __syncthreads();
    for (int32_t i = threadIdx.x; i < pl.n_slots; i += MP_THREADS) slot_counts[i] = cnt[i];
    if (load)
        for (int32_t i = threadIdx.x; i < pl.E; i += MP_THREADS)
            if (ecnt[i]) load[i] += ecnt[i];
}

extern "C" ms_status_t kern_cuda_moe_plan(kern_ctx_t *cx, const int32_t *idx, int32_t T, int32_t K,
                                          const kern_moe_place_t *pl, int32_t *slot_of_pair, int32_t *rank_in_slot,
                                          int32_t *slot_counts, int64_t *load)
{
    if (T < 0 || K < 1 || pl->E < 1 || pl->max_rep < 1 || pl->n_slots < 1)
        return MS_ERR(MS_ERR_INVALID, "cuda moe_plan: T %d, K %d, E %d, max_rep %d, n_slots %d", T, K, pl->E,
                      pl->max_rep, pl->n_slots);
    const size_t smem = sizeof(int32_t) * ((size_t)pl->n_slots + (size_t)pl->E);
    if (smem > 200 * 1024)
        return MS_ERR(MS_ERR_UNSUPPORTED, "cuda moe_plan: %d slots + %d experts exceed shared memory", pl->n_slots,
                      pl->E);
    if (smem > 48 * 1024)
        CUDA_CHECK(cudaFuncSetAttribute(moe_plan_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    cu_launch(moe_plan_kernel, 1, MP_THREADS, smem, CU_STREAM(cx), idx, T, K, *pl, slot_of_pair, rank_in_slot,
              slot_counts, load, cx->fault);
    CU_LAUNCHED();
    return MS_OK;
}
