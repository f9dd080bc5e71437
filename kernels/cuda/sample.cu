/* sample.cu — one token per row of fp32 logits, with kernels/cpu/sample.c's
 * semantics so the same (seed, position) draws the same token:
 *   greedy: argmax excluding mask_token, first index on ties;
 *   otherwise v = logit / temperature, order by (v descending, id ascending),
 *   keep the first top_k, then the shortest prefix whose mass reaches top_p,
 *   and invert the CDF at u = kern_rng_uniform(seed, position) * mass.
 * Nothing is sorted. Every "k-th in order" or "first where the prefix mass
 * passes a threshold" is a radix select over 64-bit keys (order-preserving
 * bits of v, then the id), 8 bits a pass, each pass a 256-bin histogram of
 * counts and of masses exp(v - max) in double, stopping as soon as the
 * chosen bin holds one element. Greedy is one argmax reduction. The top-N
 * logprobs are a count select over the raw logits and a sort of those N.
 * Masses are summed in a different order than the CPU's sequential double
 * sum, so a draw can differ only when u falls within ~1e-15 of a boundary.
 * Logits of -inf (removed by logits_adjust's min_p) are never candidates of a
 * temperature draw, as on the CPU. One block of 1024 threads per row. */
#include "common.cuh"

#define SMP_THREADS 1024

struct smp_shared {
    uint32_t cnt[256];
    double mass[256];
    double shd[32];
    float shf[32];
    uint64_t prefix;
    double base;
    int done, fallback;
    uint32_t n_top;
    uint64_t top_keys[KERN_MAX_LOGPROBS];
};

/* The ascending-order key of v at id: descending v, -0 as +0, then ascending id. */
__device__ static inline uint64_t smp_key(float v, int32_t id)
{
    uint32_t u = v == 0.0f ? 0u : __float_as_uint(v);
    uint32_t asc = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ((uint64_t)(~asc) << 32) | (uint32_t)id;
}
__device__ static inline float smp_val(const float *lg, int32_t i, float temp)
{
    return temp > 0.0f ? __fdiv_rn(lg[i], temp) : lg[i];
}

/* Over ids i != excl with key <= limit (v = logit/temp, or raw when temp <= 0)
 * and weight 1 (count) or exp(v - cm) (mass): the smallest key K with
 * W(key <= K) >= thr (ge) or > thr (!ge); the largest key when no K does. */
__device__ static uint64_t smp_select(const float *lg, int32_t vocab, float temp, int32_t excl, uint64_t limit,
                                      bool use_mass, double cm, double thr, bool ge, smp_shared *sh)
{
    __syncthreads(); /* every thread has read the previous select's result */
    if (threadIdx.x == 0) sh->prefix = 0, sh->base = 0, sh->done = 0, sh->fallback = 0;
    int shift = 56;
    for (; shift >= 0; shift -= 8) {
        const uint64_t hi = shift == 56 ? 0 : ~0ull << (shift + 8);
        for (int b = threadIdx.x; b < 256; b += blockDim.x) sh->cnt[b] = 0, sh->mass[b] = 0;
        __syncthreads();
        const uint64_t prefix = sh->prefix;
        for (int32_t i = threadIdx.x; i < vocab; i += blockDim.x) {
            if (i == excl) continue;
            const float v = smp_val(lg, i, temp);
            if (temp > 0.0f && v == -INFINITY) continue; /* as the CPU: -inf logits are not candidates */
            const uint64_t key = smp_key(v, i);
            if (key > limit || (key & hi) != prefix) continue;
            const int b = (int)((key >> shift) & 255);
            atomicAdd(&sh->cnt[b], 1u);
            if (use_mass) atomicAdd(&sh->mass[b], exp((double)v - cm));
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            int chosen = -1, last = -1;
            double base = sh->base;
            for (int b = 0; b < 256; b++) {
                if (!sh->cnt[b]) continue;
                last = b;
                if (sh->fallback) continue;
                const double wb = use_mass ? sh->mass[b] : (double)sh->cnt[b];
                if (ge ? base + wb >= thr : base + wb > thr) {
                    chosen = b;
                    break;
                }
                base += wb;
            }
            if (chosen < 0) chosen = last, sh->fallback = 1; /* threshold beyond the set: its last key */
            if (chosen < 0) chosen = 0;                       /* empty set (cannot happen for vocab >= 2) */
            sh->base = base;
            sh->prefix |= (uint64_t)chosen << shift;
            sh->done = sh->cnt[chosen] <= 1;
        }
        __syncthreads();
        if (sh->done) break;
    }
    if (shift <= 0) return sh->prefix; /* all 64 bits chosen */
    /* one element carries the chosen high bits: find it */
    const uint64_t hi = ~0ull << shift, prefix = sh->prefix;
    __syncthreads();
    for (int32_t i = threadIdx.x; i < vocab; i += blockDim.x) {
        if (i == excl) continue;
        const float v = smp_val(lg, i, temp);
        if (temp > 0.0f && v == -INFINITY) continue;
        const uint64_t key = smp_key(v, i);
        if (key <= limit && (key & hi) == prefix) sh->prefix = key;
    }
    __syncthreads();
    return sh->prefix;
}

/* Σ exp(v - cm) over ids != excl with key <= limit */
__device__ static double smp_mass(const float *lg, int32_t vocab, float temp, int32_t excl, uint64_t limit, double cm,
                                  smp_shared *sh)
{
    double s = 0;
    for (int32_t i = threadIdx.x; i < vocab; i += blockDim.x) {
        if (i == excl) continue;
        const float v = smp_val(lg, i, temp);
        if (temp > 0.0f && v == -INFINITY) continue; /* removed by logits_adjust: never a candidate */
        if (smp_key(v, i) <= limit) s += exp((double)v - cm);
    }
    return cu_block_reduce(s, cu_op_sumd(), sh->shd, 0.0);
}

__global__ static void __launch_bounds__(SMP_THREADS)
    sample_kernel(const float *logits, int64_t ld, int32_t vocab, const kern_sample_t *params, int32_t *tokens,
                  float *logprob, int32_t *top_ids, float *top_lp, uint32_t *fault)
{
    __shared__ smp_shared sh;
    const int32_t r = blockIdx.x;
    const float *lg = logits + r * ld;
    const kern_sample_t p = params[r];
    const int32_t mask = p.mask_token >= 0 && p.mask_token < vocab ? p.mask_token : -1;

    float mx = -INFINITY;
    for (int32_t i = threadIdx.x; i < vocab; i += blockDim.x) mx = fmaxf(mx, lg[i]);
    mx = cu_block_reduce(mx, cu_op_max(), sh.shf, -INFINITY);
    double s = 0;
    for (int32_t i = threadIdx.x; i < vocab; i += blockDim.x) s += exp((double)lg[i] - mx);
    const double lse = mx + log(cu_block_reduce(s, cu_op_sumd(), sh.shd, 0.0));
    if (!isfinite(lse)) { /* as the CPU: nothing to draw from; every thread has the same lse */
        if (threadIdx.x == 0) {
            tokens[r] = -1, logprob[r] = 0;
            cu_fault(fault, KERN_FAULT_LOGITS);
        }
        return;
    }

    int32_t tok;
    if (p.temperature <= 0.0f) {
        /* argmax = the smallest raw key (ties: lower id) */
        uint64_t best = ~0ull;
        for (int32_t i = threadIdx.x; i < vocab; i += blockDim.x)
            if (i != mask) best = min(best, smp_key(lg[i], i));
        for (int o = 16; o > 0; o >>= 1) best = min(best, (uint64_t)__shfl_xor_sync(0xffffffffu, best, o));
        __syncthreads();
        if ((threadIdx.x & 31) == 0) sh.top_keys[0] = ~0ull; /* scratch: reset below */
        __syncthreads();
        if ((threadIdx.x & 31) == 0) atomicMin((unsigned long long *)&sh.top_keys[0], (unsigned long long)best);
        __syncthreads();
        tok = (int32_t)(uint32_t)sh.top_keys[0];
        __syncthreads();
    } else {
        const float temp = p.temperature;
        const int32_t n = vocab - (mask >= 0);
        float vmax = -INFINITY;
        for (int32_t i = threadIdx.x; i < vocab; i += blockDim.x)
            if (i != mask) vmax = fmaxf(vmax, smp_val(lg, i, temp));
        const double cm = cu_block_reduce(vmax, cu_op_max(), sh.shf, -INFINITY);
        uint64_t limit = ~0ull;
        if (p.top_k > 0 && p.top_k < n) limit = smp_select(lg, vocab, temp, mask, limit, false, 0, p.top_k, true, &sh);
        double tot = smp_mass(lg, vocab, temp, mask, limit, cm, &sh);
        if (p.top_p > 0.0f && p.top_p < 1.0f) {
            limit = smp_select(lg, vocab, temp, mask, limit, true, cm, (double)p.top_p * tot, true, &sh);
            tot = smp_mass(lg, vocab, temp, mask, limit, cm, &sh);
        }
        const double u = kern_rng_uniform(p.seed, p.position) * tot;
        tok = (int32_t)(uint32_t)smp_select(lg, vocab, temp, mask, limit, true, cm, u, false, &sh);
    }
    if (threadIdx.x == 0) {
        tokens[r] = tok;
        logprob[r] = (float)((double)lg[tok] - lse);
    }

    const int32_t nl = p.n_logprobs < 0 ? 0 : p.n_logprobs > KERN_MAX_LOGPROBS ? KERN_MAX_LOGPROBS : p.n_logprobs;
    if (nl == 0) return;
    const uint64_t kn = smp_select(lg, vocab, 0.0f, -1, ~0ull, false, 0, nl, true, &sh);
    if (threadIdx.x == 0) sh.n_top = 0;
    __syncthreads();
    for (int32_t i = threadIdx.x; i < vocab; i += blockDim.x) {
        const uint64_t key = smp_key(lg[i], i);
        if (key <= kn) {
            uint32_t slot = atomicAdd(&sh.n_top, 1u);
            if (slot < KERN_MAX_LOGPROBS) sh.top_keys[slot] = key;
        }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        const int32_t m = min((int32_t)sh.n_top, nl);
        for (int32_t a = 1; a < m; a++) /* insertion sort of at most 20 keys */
            for (int32_t b = a; b > 0 && sh.top_keys[b] < sh.top_keys[b - 1]; b--) {
                uint64_t t = sh.top_keys[b];
                sh.top_keys[b] = sh.top_keys[b - 1], sh.top_keys[b - 1] = t;
            }
        int32_t *ti = top_ids + (int64_t)r * KERN_MAX_LOGPROBS;
        float *tl = top_lp + (int64_t)r * KERN_MAX_LOGPROBS;
        for (int32_t j = 0; j < m; j++) {
            ti[j] = (int32_t)(uint32_t)sh.top_keys[j];
            tl[j] = (float)((double)lg[ti[j]] - lse);
        }
    }
}

extern "C" ms_status_t kern_cuda_sample(kern_ctx_t *cx, const float *logits, int64_t ld, int32_t rows,
                                        int32_t vocab, const kern_sample_t *params, int32_t *tokens, float *logprob,
                                        int32_t *top_ids, float *top_lp)
{
    if (vocab < 2) return MS_ERR(MS_ERR_INVALID, "cuda sample: vocabulary of %d", vocab);
    if (rows <= 0) return MS_OK;
    sample_kernel<<<rows, SMP_THREADS, 0, CU_STREAM(cx)>>>(logits, ld, vocab, params, tokens, logprob, top_ids,
                                                           top_lp, cx->fault);
    CU_LAUNCHED();
    return MS_OK;
}
