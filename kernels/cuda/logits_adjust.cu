/* logits_adjust.cu — vLLM's sampling controls on fp32 logits before sample,
 * with kernels/cpu/logits_adjust.c's semantics (kernels.h has the contract):
 * list writes first (distinct targets: one thread each), then one block per
 * row: the row's list entries (distinct tokens, so threads update them
 * independently), then — only for min_p rows — the masked EOS, the row
 * maximum and the min_p cut with the CPU's double-precision test, so the
 * same logits are removed on both backends. */
#include <math.h>
#include "common.cuh"

#define LA_THREADS 256

__global__ static void la_sets_kernel(kern_pen_t *lists, int64_t cap, const kern_pen_set_t *sets, int32_t n,
                                      uint32_t *fault)
{
    cu_pdl_enter();
    const int32_t i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const kern_pen_set_t s = sets[i];
    if (s.at < 0 || s.at >= cap) {
        cu_fault(fault, KERN_FAULT_BLOCK);
        return;
    }
    lists[s.at] = s.e;
}

__global__ static void __launch_bounds__(LA_THREADS)
    la_rows_kernel(float *logits, int64_t ld, int32_t vocab, const kern_adjust_t *adj, const kern_pen_t *lists,
                   int64_t cap, uint32_t *fault)
{
    cu_pdl_enter();
    __shared__ float shf[32];
    const kern_adjust_t a = adj[blockIdx.x];
    float *lg = logits + (int64_t)blockIdx.x * ld;
    if (a.n_list > 0 && (a.list_off < 0 || a.list_off + a.n_list > cap)) {
        if (threadIdx.x == 0) cu_fault(fault, KERN_FAULT_BLOCK);
        return;
    }
    const kern_pen_t *e = lists + a.list_off;
    for (int32_t j = threadIdx.x; j < a.n_list; j += blockDim.x) {
        const kern_pen_t p = e[j];
        if (p.token < 0 || p.token >= vocab) {
            cu_fault(fault, KERN_FAULT_TOKEN);
            continue;
        }
        /* the CPU's operations in its order, each rounded to fp32 */
        float l = __fadd_rn(lg[p.token], p.bias);
        if ((p.in_prompt || p.n_out > 0) && a.repetition != 1.0f)
            l = l > 0 ? __fdiv_rn(l, a.repetition) : __fmul_rn(l, a.repetition);
        l = __fsub_rn(l, __fadd_rn(__fmul_rn(a.frequency, (float)p.n_out), __fmul_rn(a.presence, p.n_out > 0 ? 1.0f : 0.0f)));
        lg[p.token] = l;
    }
    if (!(a.min_p > 0.0f && a.temperature > 0.0f)) return;
    __syncthreads();
    if (threadIdx.x == 0 && a.mask_token >= 0 && a.mask_token < vocab) lg[a.mask_token] = -INFINITY;
    __syncthreads();
    float mx = -INFINITY;
    for (int32_t i = threadIdx.x; i < vocab; i += blockDim.x) mx = fmaxf(mx, lg[i]);
    mx = cu_block_reduce(mx, cu_op_max(), shf, -INFINITY);
    for (int32_t i = threadIdx.x; i < vocab; i += blockDim.x)
        if (exp(((double)lg[i] - mx) / a.temperature) < (double)a.min_p) lg[i] = -INFINITY;
}

extern "C" ms_status_t kern_cuda_logits_adjust(kern_ctx_t *cx, float *logits, int64_t ld, int32_t rows,
                                               int32_t vocab, const kern_adjust_t *adj, kern_pen_t *lists,
                                               int64_t lists_cap, const kern_pen_set_t *sets, int32_t n_sets)
{
    if (rows < 0 || vocab < 1 || n_sets < 0 || lists_cap < 0)
        return MS_ERR(MS_ERR_INVALID, "cuda logits_adjust: %d rows, vocab %d, %d sets, cap %lld", rows, vocab, n_sets,
                      (long long)lists_cap);
    if (n_sets > 0) {
        cu_launch(la_sets_kernel, (n_sets + 255) / 256, 256, 0, CU_STREAM(cx), lists, lists_cap, sets, n_sets,
                  cx->fault);
        CU_LAUNCHED();
    }
    if (rows > 0) {
        cu_launch(la_rows_kernel, rows, LA_THREADS, 0, CU_STREAM(cx), logits, ld, vocab, adj, lists, lists_cap,
                  cx->fault);
        CU_LAUNCHED();
    }
    return MS_OK;
}
