/* sample.cu — one token per row of fp32 or bf16 logits (bf16 read exactly as
 * fp32), with kernels/cpu/sample.c's semantics so the same (seed, position)
 * draws the same token:
 *   greedy: argmax excluding mask_token, first index on ties;
 *   otherwise v = logit / temperature, order by (v descending, id ascending),
 *   keep the first top_k, then the shortest prefix whose mass reaches top_p,
 *   and invert the CDF at u = kern_rng_uniform(seed, position) * mass.
 * Order is that of 64-bit keys (order-preserving bits of v, then the id).
 *
 * The vocabulary of a row is split into S slices, one block each (S blocks
 * per row at batch 1 fill the GPU; fewer at large batches):
 *  1. smp_split_kernel: per slice the raw max and Σ exp(x - max), the greedy
 *     key, the max of v, Σ exp(v - vmax) in double (rows whose mass is not
 *     only their top-k's), and two candidate lists: every key of the slice
 *     below a bound, at least `target` of them (or all), found by a count-only
 *     radix descent over the slice — the top-N raw keys for logprobs, and the
 *     first keys of v for a temperature draw.
 *  2. smp_merge_kernel (a block per row): log-sum-exp, the greedy token, the
 *     top-N (sorted merged candidates), and the draw. Keys below the smallest
 *     slice bound are exactly the row's first keys, so sorted they are the
 *     CPU's candidate order; their masses exp(v - vmax) in double are summed
 *     by a block scan, and top-k / top-p / the CDF inversion are resolved in
 *     them when the kept set or the draw lies inside them. A row whose draw
 *     lies beyond them (a flat distribution) is left to
 *  3. smp_fallback_kernel (a block per row, others return at once): the
 *     single-block radix select over the whole row (4 bits a pass, per-thread
 *     histograms of counts and masses, no atomics; the id among equal values by a block scan).
 * Masses are summed in another order than the CPU's sequential double sum,
 * so a draw can differ only when u falls within ~1e-15 of a boundary. The
 * log-sum-exp sums expf terms, eight in fp32 then in double (|error| ~1e-7 in the logprobs).
 * Logits of -inf (removed by logits_adjust's min_p) are never candidates of a
 * temperature draw, as on the CPU. bf16 and fp32 inputs of the same values
 * take the same path and give bit-identical results. */
#include "common.cuh"

#define SMP_THREADS 1024     /* merge and fallback blocks */
#define SPL_THREADS 256      /* slice blocks */
#define SMP_MAX_SLICES 128
#define SMP_ROW_CANDS 2048   /* sampling candidates of a row, all slices together */
#define SMP_LP_CAP 32        /* logprob candidates of a slice (>= KERN_MAX_LOGPROBS) */

/* what a slice leaves for the merge */
struct smp_part {
    double s;        /* Σ exp(x - m) over x != -inf (raw logits) */
    double sv;       /* Σ exp(v - vmax) over finite v != mask (when computed, else -1) */
    uint64_t best;   /* smallest raw key != mask (greedy) */
    uint64_t bound;  /* every sampling key of the slice < bound is in its list (~0: all of them) */
    uint64_t lp_bound;
    float m, vmax;   /* raw max; max of v over ids != mask */
    int32_t n_fin;   /* ids != mask with v finite */
    int32_t n_c, n_lp;
    int32_t pad_;
};
/* per row, merge -> fallback */
struct smp_row {
    double lse;
    double sv;       /* Σ exp(v - vmax) over the row's candidates, or -1 (not computed) */
    float vmax;      /* max of v over ids != mask */
    int32_t pending; /* the draw is the fallback's */
};

/* The ascending-order key of v at id: descending v, -0 as +0, then ascending id. */
__device__ static inline uint64_t smp_key(float v, int32_t id)
{
    uint32_t u = v == 0.0f ? 0u : __float_as_uint(v);
    uint32_t asc = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ((uint64_t)(~asc) << 32) | (uint32_t)id;
}
/* a logit as fp32: bf16 (uint16_t bits) exactly, as kern_ops_t.cast would */
__device__ static inline float smp_ld(const float *lg, int64_t i) { return lg[i]; }
__device__ static inline float smp_ld(const uint16_t *lg, int64_t i) { return cu_bf16_f(lg[i]); }
/* The split kernel reads a slice in chunks of SMP_CHUNK consecutive logits, chunk c of a slice to thread
 * c mod blockDim: one 16-byte load of bf16 (two of fp32) when the row is aligned, so that enough bytes are
 * in flight to reach HBM bandwidth (a 2-byte load per element left it at ~0.5 TB/s). Both dtypes and both
 * load paths give a thread the same ids in the same order, so their results are bit-identical.
 * x[j] = logit i + j, for the j with i + j < i1. */
#define SMP_CHUNK 8
__device__ static inline void smp_ld_chunk(const float *lg, int32_t i, int32_t i1, bool vec, float *x)
{
    if (vec && i + SMP_CHUNK <= i1) {
        const float4 a = *(const float4 *)(lg + i), b = *(const float4 *)(lg + i + 4);
        x[0] = a.x, x[1] = a.y, x[2] = a.z, x[3] = a.w, x[4] = b.x, x[5] = b.y, x[6] = b.z, x[7] = b.w;
        return;
    }
#pragma unroll
    for (int j = 0; j < SMP_CHUNK; j++) x[j] = i + j < i1 ? lg[i + j] : -INFINITY;
}
__device__ static inline void smp_ld_chunk(const uint16_t *lg, int32_t i, int32_t i1, bool vec, float *x)
{
    if (vec && i + SMP_CHUNK <= i1) {
        const uint4 a = *(const uint4 *)(lg + i);
        const uint32_t w[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
        for (int k = 0; k < 4; k++)
            x[2 * k] = __uint_as_float(w[k] << 16), x[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
        return;
    }
#pragma unroll
    for (int j = 0; j < SMP_CHUNK; j++) x[j] = i + j < i1 ? cu_bf16_f(lg[i + j]) : -INFINITY;
}
/* whether a slice starting at i0 (a multiple of SMP_CHUNK) can be read with 16-byte loads */
template <typename T> __device__ static inline bool smp_vec_ok(const T *lg, int32_t i0)
{
    return (((uintptr_t)(lg + i0)) & 15) == 0;
}

struct smp_op_minu { __device__ uint64_t operator()(uint64_t a, uint64_t b) const { return a < b ? a : b; } };

/* The sampling key of id i with logit x (or ~0 when it is no candidate: the mask, or v = -inf at a
 * temperature). */
__device__ static inline uint64_t smp_ckey(float x, int32_t i, float temp, int32_t excl)
{
    if (i == excl) return ~0ull;
    const float v = temp > 0.0f && temp != 1.0f ? __fdiv_rn(x, temp) : x; /* x / 1 is x */
    if (temp > 0.0f && v == -INFINITY) return ~0ull;
    return smp_key(v, i);
}

struct spl_shared {
    uint32_t cnt[256];
    uint64_t shu[32];
    double shd[32];
    float shf[32];
    uint64_t prefix, bound;
    int32_t taken, done, n;
};

/* f(key) for the sampling key (smp_ckey) of every id of the slice [i0, i1), read in smp_ld_chunk's chunks */
template <typename T, typename F>
__device__ static inline void spl_each_key(const T *lg, int32_t i0, int32_t i1, bool vec, float temp, int32_t excl,
                                           F &&f)
{
    for (int32_t c = i0 + SMP_CHUNK * threadIdx.x; c < i1; c += SMP_CHUNK * blockDim.x) {
        float x[SMP_CHUNK];
        smp_ld_chunk(lg, c, i1, vec, x);
#pragma unroll
        for (int j = 0; j < SMP_CHUNK; j++) f(c + j < i1 ? smp_ckey(x[j], c + j, temp, excl) : ~0ull);
    }
}

/* The slice's keys (smp_ckey) below a bound into out (count <= cap, >= target unless that is all of
 * them): a radix descent, 8 bits a pass, taking whole bins while they fit. */
template <typename T>
__device__ static void spl_list(const T *lg, int32_t i0, int32_t i1, bool vec, float temp, int32_t excl,
                                int32_t target, int32_t cap, uint64_t *out, int32_t *n_out, uint64_t *bound_out,
                                spl_shared *sh)
{
    __syncthreads();
    if (threadIdx.x == 0) sh->prefix = 0, sh->taken = 0, sh->done = 0, sh->bound = ~0ull, sh->n = 0;
    for (int shift = 56; shift >= 0; shift -= 8) {
        const uint64_t hi = shift == 56 ? 0 : ~0ull << (shift + 8);
        for (int b = threadIdx.x; b < 256; b += blockDim.x) sh->cnt[b] = 0;
        __syncthreads();
        const uint64_t prefix = sh->prefix;
        spl_each_key(lg, i0, i1, vec, temp, excl, [&](uint64_t key) {
            if (key != ~0ull && (key & hi) == prefix) { /* one add per bin and warp: keys crowd a few bins */
                const uint32_t b = (uint32_t)(key >> shift) & 255u, peers = __match_any_sync(__activemask(), b);
                if ((threadIdx.x & 31) == __ffs(peers) - 1) atomicAdd(&sh->cnt[b], (uint32_t)__popc(peers));
            }
        });
        __syncthreads();
        if (threadIdx.x == 0) {
            int32_t t = sh->taken, ob = -1;
            for (int b = 0; b < 256; b++) {
                if (t + (int32_t)sh->cnt[b] > cap) {
                    ob = b;
                    break;
                }
                t += (int32_t)sh->cnt[b];
            }
            if (ob < 0) { /* the whole region fits: the bound is its end */
                const uint64_t end = shift == 56 ? 0 : prefix + (1ull << (shift + 8));
                sh->bound = end == 0 ? ~0ull : end, sh->done = 1;
            } else if (t >= target || shift == 0) {
                sh->bound = prefix | ((uint64_t)ob << shift), sh->done = 1;
            } else {
                sh->prefix = prefix | ((uint64_t)ob << shift), sh->taken = t;
            }
        }
        __syncthreads();
        if (sh->done) break;
    }
    const uint64_t bound = sh->bound;
    spl_each_key(lg, i0, i1, vec, temp, excl, [&](uint64_t key) {
        if (key < bound) {
            const int32_t slot = atomicAdd(&sh->n, 1);
            if (slot < cap) out[slot] = key;
        }
    });
    __syncthreads();
    if (threadIdx.x == 0) *n_out = min(sh->n, cap), *bound_out = bound;
}

template <typename T>
__global__ static void __launch_bounds__(SPL_THREADS)
    smp_split_kernel(const T *logits, int64_t ld, int32_t vocab, int32_t slice, const kern_sample_t *params,
                     smp_part *parts, uint64_t *cand, int32_t cap, uint64_t *lpc)
{
    __shared__ spl_shared sh;
    cu_pdl_enter();
    const int32_t r = blockIdx.y, S = gridDim.x, ps = r * S + blockIdx.x;
    const T *lg = logits + r * ld;
    const int32_t i0 = blockIdx.x * slice, i1 = min(vocab, i0 + slice);
    const kern_sample_t p = params[r];
    const int32_t mask = p.mask_token >= 0 && p.mask_token < vocab ? p.mask_token : -1;
    const float temp = p.temperature;

    /* one pass: each thread keeps running maxima and sums relative to them (rescaled when its maximum
     * grows), merged below; NaN and +inf make s NaN or infinite: the row's fault. The raw sum takes a
     * chunk's eight expf terms in fp32 (relative error <= ~5e-7 of a chunk's sum) and adds them to s in
     * double, and the greedy key is only built where a logit is not below the thread's best: the loop was
     * bound by its instructions (~30 a logit with a double add and a 64-bit key each) once the loads were
     * wide. */
    const bool need_sv = temp > 0.0f && !(p.top_k > 0 && p.top_k <= SMP_ROW_CANDS / 2);
    float m = -INFINITY, vm = -INFINITY, bx = -INFINITY;
    double s = 0, sv = 0;
    uint64_t best = ~0ull;
    int32_t nf = 0;
    const bool vec = smp_vec_ok(lg, i0);
#pragma unroll 2
    for (int32_t c = i0 + SMP_CHUNK * threadIdx.x; c < i1; c += SMP_CHUNK * blockDim.x) {
        float xs[SMP_CHUNK]; /* -inf past i1: no term, no key */
        smp_ld_chunk(lg, c, i1, vec, xs);
        float cm = -INFINITY;
#pragma unroll
        for (int j = 0; j < SMP_CHUNK; j++) cm = fmaxf(cm, xs[j]); /* NaN: ignored here, NaN in the sum */
        if (cm > m) s *= (double)expf(m - cm), m = cm;
        float cs = 0.0f;
#pragma unroll
        for (int j = 0; j < SMP_CHUNK; j++)
            if (xs[j] != -INFINITY) cs += expf(xs[j] - m);
        s += (double)cs;
#pragma unroll
        for (int j = 0; j < SMP_CHUNK; j++) {
            const int32_t i = c + j;
            const float x = xs[j];
            if (i >= i1 || i == mask) continue;
            if (!(x < bx)) { /* ties and NaN reach the key's order */
                const uint64_t k = smp_key(x, i);
                if (k < best) best = k, bx = x;
            }
            if (temp > 0.0f) {
                const float v = temp != 1.0f ? __fdiv_rn(x, temp) : x; /* x / 1 is x */
                if (v == -INFINITY) continue;
                nf++;
                if (!need_sv) vm = fmaxf(vm, v);
                else if (v > vm) sv = sv * exp((double)vm - v) + 1.0, vm = v;
                else sv += exp((double)v - vm);
            }
        }
    }
    const float mt = m, vmt = vm;
    m = cu_block_reduce(m, cu_op_max(), sh.shf, -INFINITY);
    s = cu_block_reduce(s != 0 ? s * exp((double)mt - m) : 0.0, cu_op_sumd(), sh.shd, 0.0);
    best = cu_block_reduce<uint64_t>(best, smp_op_minu(), sh.shu, ~0ull);
    if (temp > 0.0f) {
        vm = cu_block_reduce(vm, cu_op_max(), sh.shf, -INFINITY);
        nf = (int32_t)cu_block_reduce((double)nf, cu_op_sumd(), sh.shd, 0.0);
        if (need_sv) sv = cu_block_reduce(sv != 0 ? sv * exp((double)vmt - vm) : 0.0, cu_op_sumd(), sh.shd, 0.0);
    }

    smp_part *pt = &parts[ps];
    const int32_t nl = p.n_logprobs < 0 ? 0 : p.n_logprobs > KERN_MAX_LOGPROBS ? KERN_MAX_LOGPROBS : p.n_logprobs;
    if (nl > 0) spl_list(lg, i0, i1, vec, 0.0f, -1, nl, SMP_LP_CAP, lpc + (int64_t)ps * SMP_LP_CAP, &pt->n_lp,
                         &pt->lp_bound, &sh);
    if (temp > 0.0f) {
        const int32_t target = p.top_k > 0 && p.top_k <= cap ? p.top_k : max(1, cap * 3 / 4);
        spl_list(lg, i0, i1, vec, temp, mask, target, cap, cand + (int64_t)ps * cap, &pt->n_c, &pt->bound, &sh);
    }
    if (threadIdx.x == 0) {
        pt->s = s, pt->sv = need_sv ? sv : -1.0, pt->best = best, pt->m = m, pt->vmax = vm, pt->n_fin = nf;
        if (nl <= 0) pt->n_lp = 0, pt->lp_bound = 0;
        if (temp <= 0.0f) pt->n_c = 0, pt->bound = 0;
    }
}

/* Ascending bitonic sort of k[0..n) in shared memory, padded with ~0 to a power of two (<= room). */
__device__ static void smp_sort(uint64_t *k, int32_t n)
{
    int32_t P = 1;
    while (P < n) P <<= 1;
    for (int32_t i = n + threadIdx.x; i < P; i += blockDim.x) k[i] = ~0ull;
    __syncthreads();
    for (int32_t size = 2; size <= P; size <<= 1)
        for (int32_t stride = size >> 1; stride > 0; stride >>= 1) {
            for (int32_t i = threadIdx.x; i < P / 2; i += blockDim.x) {
                const int32_t lo = 2 * i - (i & (stride - 1)), hi = lo + stride;
                const bool up = (lo & size) == 0;
                const uint64_t a = k[lo], b = k[hi];
                if ((a > b) == up) k[lo] = b, k[hi] = a;
            }
            __syncthreads();
        }
}

/* The v of a key (smp_key inverted; -0 comes back as +0, which has the same mass). */
__device__ static inline float smp_key_val(uint64_t key)
{
    const uint32_t asc = ~(uint32_t)(key >> 32);
    return __uint_as_float((asc & 0x80000000u) ? (asc & 0x7fffffffu) : ~asc);
}

struct smp_merge_shared {
    union {
        uint64_t lp[SMP_MAX_SLICES * SMP_LP_CAP];
        struct {
            uint64_t keys[SMP_ROW_CANDS];
            double mass[SMP_ROW_CANDS]; /* inclusive prefix sums after the scan */
        } c;
    } u;
    double shd[32];
    float shf[32];
    uint64_t shu[32];
    double wsum[SMP_THREADS / 32];
    int32_t cnt[SMP_MAX_SLICES];
    int32_t n, found;
};

/* Inclusive prefix sums of a[0..n) in place (n <= 4 * blockDim.x). */
__device__ static void smp_scan(double *a, int32_t n, smp_merge_shared *sh)
{
    const int32_t per = (n + blockDim.x - 1) / blockDim.x, b = threadIdx.x * per, e = min(n, b + per);
    double t = 0;
    for (int32_t i = b; i < e; i++) t += a[i];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    double x = t;
    for (int o = 1; o < 32; o <<= 1) {
        const double y = __shfl_up_sync(0xffffffffu, x, o);
        if (lane >= o) x += y;
    }
    if (lane == 31) sh->wsum[warp] = x;
    __syncthreads();
    if (warp == 0) {
        double w = lane < (int)(blockDim.x >> 5) ? sh->wsum[lane] : 0;
        for (int o = 1; o < 32; o <<= 1) {
            const double y = __shfl_up_sync(0xffffffffu, w, o);
            if (lane >= o) w += y;
        }
        sh->wsum[lane] = w;
    }
    __syncthreads();
    double acc = x - t + (warp > 0 ? sh->wsum[warp - 1] : 0);
    for (int32_t i = b; i < e; i++) acc += a[i], a[i] = acc;
    __syncthreads();
}

/* The first i < n with a[i] >= thr (ge) or > thr (!ge); -1 when none. */
__device__ static int32_t smp_first(const double *a, int32_t n, double thr, bool ge, smp_merge_shared *sh)
{
    if (threadIdx.x == 0) sh->found = INT32_MAX;
    __syncthreads();
    for (int32_t i = threadIdx.x; i < n; i += blockDim.x)
        if (ge ? a[i] >= thr : a[i] > thr) atomicMin(&sh->found, i);
    __syncthreads();
    const int32_t f = sh->found;
    __syncthreads();
    return f == INT32_MAX ? -1 : f;
}

/* Gather the keys < bound of every slice's list into k; their count. All lists at once (a slice at a time
 * would wait on S dependent loads), one shared add a warp. */
__device__ static int32_t smp_gather(const uint64_t *lists, int32_t cap, const smp_part *pt, int32_t S, bool lp,
                                     uint64_t bound, uint64_t *k, smp_merge_shared *sh)
{
    if (threadIdx.x == 0) sh->n = 0;
    if (threadIdx.x < S) sh->cnt[threadIdx.x] = lp ? pt[threadIdx.x].n_lp : pt[threadIdx.x].n_c;
    __syncthreads();
    const int32_t total = S * cap, lane = threadIdx.x & 31;
    for (int32_t base = threadIdx.x - lane; base < total; base += blockDim.x) {
        const int32_t i = base + lane, s = i / cap;
        uint64_t key = ~0ull;
        if (i < total && i - s * cap < sh->cnt[s]) key = lists[i];
        const bool take = key < bound;
        const uint32_t m = __ballot_sync(0xffffffffu, take);
        int32_t at = 0;
        if (lane == 0 && m) at = atomicAdd(&sh->n, __popc(m));
        at = __shfl_sync(0xffffffffu, at, 0);
        if (take) k[at + __popc(m & ((1u << lane) - 1))] = key;
    }
    __syncthreads();
    return sh->n;
}

template <typename T>
__global__ static void __launch_bounds__(SMP_THREADS)
    smp_merge_kernel(const T *logits, int64_t ld, int32_t vocab, int32_t S, const kern_sample_t *params,
                     const smp_part *parts, const uint64_t *cand, int32_t cap, const uint64_t *lpc, smp_row *rows,
                     int32_t *tokens, float *logprob, int32_t *top_ids, float *top_lp, uint32_t *fault)
{
    __shared__ smp_merge_shared sh;
    cu_pdl_enter();
    const int32_t r = blockIdx.x;
    const T *lg = logits + r * ld;
    const smp_part *pt = parts + (int64_t)r * S;
    const kern_sample_t p = params[r];
    const int32_t mask = p.mask_token >= 0 && p.mask_token < vocab ? p.mask_token : -1;
    const int32_t t = threadIdx.x;

    /* log-sum-exp of the raw logits from the slices' (max, sum) */
    const float M = cu_block_reduce(t < S ? pt[t].m : -INFINITY, cu_op_max(), sh.shf, -INFINITY);
    double part = 0;
    if (t < S && pt[t].s != 0) part = pt[t].s * exp((double)pt[t].m - M); /* NaN stays NaN */
    const double lse = (double)M + log(cu_block_reduce(part, cu_op_sumd(), sh.shd, 0.0));
    if (!isfinite(lse)) { /* as the CPU: nothing to draw from; every thread has the same lse */
        if (t == 0) {
            tokens[r] = -1, logprob[r] = 0, rows[r].pending = 0;
            cu_fault(fault, KERN_FAULT_LOGITS);
        }
        return;
    }

    /* top-N logprobs: the keys below every slice's bound are the row's first, sorted */
    const int32_t nl = p.n_logprobs < 0 ? 0 : p.n_logprobs > KERN_MAX_LOGPROBS ? KERN_MAX_LOGPROBS : p.n_logprobs;
    if (nl > 0) {
        const uint64_t bl = cu_block_reduce<uint64_t>(t < S ? pt[t].lp_bound : ~0ull, smp_op_minu(), sh.shu, ~0ull);
        const int32_t n = smp_gather(lpc + (int64_t)r * S * SMP_LP_CAP, SMP_LP_CAP, pt, S, true, bl, sh.u.lp, &sh);
        smp_sort(sh.u.lp, n);
        if (t < min(n, nl)) {
            const int32_t id = (int32_t)(uint32_t)sh.u.lp[t];
            top_ids[(int64_t)r * KERN_MAX_LOGPROBS + t] = id;
            top_lp[(int64_t)r * KERN_MAX_LOGPROBS + t] = (float)((double)smp_ld(lg, id) - lse);
        }
        __syncthreads();
    }

    int32_t tok = -1;
    float vmax = -INFINITY; /* for the fallback */
    double sv = -1;
    if (p.temperature <= 0.0f) {
        tok = (int32_t)(uint32_t)cu_block_reduce<uint64_t>(t < S ? pt[t].best : ~0ull, smp_op_minu(), sh.shu, ~0ull);
    } else {
        vmax = cu_block_reduce(t < S ? pt[t].vmax : -INFINITY, cu_op_max(), sh.shf, -INFINITY);
        const int32_t n_fin = (int32_t)cu_block_reduce(t < S ? (double)pt[t].n_fin : 0.0, cu_op_sumd(), sh.shd, 0.0);
        const bool have_sv = pt[0].sv >= 0;
        double svp = 0;
        if (have_sv && t < S && pt[t].sv > 0) svp = pt[t].sv * exp((double)pt[t].vmax - vmax);
        sv = cu_block_reduce(svp, cu_op_sumd(), sh.shd, 0.0);
        if (!have_sv) sv = -1;
        const uint64_t bound = cu_block_reduce<uint64_t>(t < S ? pt[t].bound : ~0ull, smp_op_minu(), sh.shu, ~0ull);
        const int32_t G = smp_gather(cand + (int64_t)r * S * cap, cap, pt, S, false, bound, sh.u.c.keys, &sh);
        smp_sort(sh.u.c.keys, G);
        for (int32_t i = t; i < G; i += blockDim.x)
            sh.u.c.mass[i] = exp((double)smp_key_val(sh.u.c.keys[i]) - vmax);
        __syncthreads();
        smp_scan(sh.u.c.mass, G, &sh);
        const double *acc = sh.u.c.mass;
        /* as the CPU: n candidates (finite v), the first top_k kept, then top_p, then the draw; any step
         * that needs keys beyond the G known ones goes to the fallback (tok -1) */
        if (n_fin == 0) {
            tok = mask == 0 ? 1 : 0; /* every v -inf: the CPU keeps its first candidate, the lowest id */
        } else {
            int32_t keep = n_fin;
            double tot = -1;
            if (p.top_k > 0 && p.top_k < n_fin) {
                keep = p.top_k;
                if (keep <= G) tot = acc[keep - 1];
            } else if (G >= n_fin) {
                tot = acc[n_fin - 1];
            } else if (have_sv) {
                tot = sv;
            }
            if (tot >= 0 && p.top_p > 0.0f && p.top_p < 1.0f) {
                const int32_t i = smp_first(acc, min(keep, G), (double)p.top_p * tot, true, &sh);
                if (i >= 0) keep = i + 1, tot = acc[i];
                else if (keep > G) tot = -1;
            }
            if (tot >= 0) {
                const double u = kern_rng_uniform(p.seed, p.position) * tot;
                const int32_t j = smp_first(acc, min(keep, G), u, false, &sh);
                if (j >= 0) tok = (int32_t)(uint32_t)sh.u.c.keys[j];
                else if (keep <= G) tok = (int32_t)(uint32_t)sh.u.c.keys[keep - 1];
            }
        }
    }
    if (t == 0) {
        rows[r].pending = tok < 0, rows[r].lse = lse, rows[r].vmax = vmax, rows[r].sv = sv;
        if (tok >= 0) tokens[r] = tok, logprob[r] = (float)((double)smp_ld(lg, tok) - lse);
    }
}

/* A row the merge left: the whole-row radix select of a temperature draw, by one block.
 * On sm_90 a shared-memory atomicAdd of a double (or a float, or a 64-bit integer) is a compare-and-swap
 * loop (ATOMS.CAST.SPIN in the SASS), and a pass's keys crowd a few bins: such atomics made the old
 * fallback take 1-2 ms a row (T 1.0, vocab 129280). Here a pass has no atomics: every thread counts and
 * sums into its own column of a 16-bin histogram in shared memory (4 bits of the key a pass), and the
 * columns are added in a fixed order (so the select is deterministic). Each pass over the row reads and
 * divides every logit again, so once the chosen bin holds at most SFB_LIST keys they are gathered into
 * shared memory and the remaining passes, down to the id bits, walk that list. When the bin stays larger
 * (many equal values), the value bits (the key's high 32) are fixed by passes over the row and the ids left
 * all have the same v and mass: the k-th of them in id order is found in one pass by a block scan of
 * per-thread counts. */
#define SFB_BITS 4
#define SFB_BINS 16
#define SFB_LIST 8192
#define SFB_SMEM ((size_t)SFB_BINS * SMP_THREADS * (sizeof(double) + sizeof(uint16_t)) + SFB_LIST * sizeof(uint64_t))
/* a thread's count of a bin in a pass over the row (spl_each_key's chunks) fits the histogram's uint16_t */
#define SFB_MAX_VOCAB (65535 / SMP_CHUNK * SMP_CHUNK * SMP_THREADS)

struct smp_shared {
    double wm[SMP_THREADS / 32]; /* a pass's bin totals, two warps a bin */
    uint32_t wc[SMP_THREADS / 32];
    int32_t ws[SMP_THREADS / 32]; /* the id step's scan */
    double shd[32];
    float shf[32];
    uint64_t prefix, found;
    double base, mbase; /* weight (count or mass) and mass of the keys below the prefix's bin */
    uint32_t cnt;       /* keys in the chosen bin */
    int32_t k, nl;      /* nl: keys in the list, -1 before it is gathered */
    int done, fallback, gather, redo;
};

/* The chosen key of smp_select and the mass exp(v - cm) of the keys <= it; redo: an estimated pass could not
 * tell the bin (est), select again exactly. */
struct smp_sel {
    uint64_t key;
    double mass;
    bool redo;
};

/* est (the default; MS_SMP_FB_EST=0 runs the exact passes alone): the passes over the row weigh a key by an fp32 expf
 * instead of the double exp, which is most of a pass's instructions where every key matches (the first passes:
 * sign and exponent bits; ncu: the fallback is bound by one SM's issue rate). A key's estimate is within
 * SMP_EST_REL of its mass (the fp32 d = v - vmax <= 0 rounds by 2^-24 |d|, expf by 2 ulp: 2.4e-7 + 6e-8 |d|,
 * under 4e-6 for |d| <= 63; a key past that weighs < e^-63 relative, and its error less again; fp32 underflow
 * below d ~ -87 loses < 1e-38 a key, which SMP_EST_ABS covers), so a bin is taken only when the threshold
 * clears both of its edges by that margin, and otherwise the select is redone exactly. The masses below the
 * answer, which the draw needs exactly, are summed in double once, in the pass that gathers the list (or
 * counts the equal values' ids) — one double exp a key instead of one a key and pass. */
#define SMP_EST_REL 4e-6
#define SMP_EST_ABS 1e-12
#ifdef __USE_FAST_MATH__
#error "sample.cu: the estimate's margin assumes expf's 2-ulp bound; --use_fast_math makes it __expf's"
#endif

/* Over ids i != excl with key <= limit (v = logit/temp) and weight 1 (count) or exp(v - cm) (mass): the
 * smallest key K with W(key <= K) >= thr (ge) or > thr (!ge); the largest key when no K does. */
template <typename T, bool EST>
__device__ static smp_sel smp_select(const T *lg, int32_t vocab, bool vec, float temp, int32_t excl,
                                     uint64_t limit, bool use_mass, double cm, double thr, bool ge, double est_rel,
                                     smp_shared *sh)
{
    constexpr bool est = EST; /* a template parameter: the default kernel is the exact code alone */
    extern __shared__ double sfb_dyn[]; /* [SFB_BINS][SMP_THREADS] masses, the list, as many counts */
    double *hm = sfb_dyn;
    uint64_t *list = (uint64_t *)(hm + SFB_BINS * SMP_THREADS);
    uint16_t *hc = (uint16_t *)(list + SFB_LIST);
    const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
    auto cand = [&](uint64_t key) { return key != ~0ull && key <= limit; };
    __syncthreads(); /* every thread has read the previous select's result */
    if (t == 0) sh->prefix = 0, sh->base = 0, sh->mbase = 0, sh->done = 0, sh->fallback = 0, sh->nl = -1;
    if (t == 0) sh->gather = 0, sh->redo = 0;
    const float cmf = (float)cm; /* cm is a float's value (the merge's vmax) */
    int shift = 64 - SFB_BITS;
    for (;; shift -= SFB_BITS) {
        __syncthreads();
        const bool listed = sh->nl >= 0;
        if (shift < (listed ? 0 : 32)) break;
        const uint64_t hi = shift == 64 - SFB_BITS ? 0 : ~0ull << (shift + SFB_BITS), prefix = sh->prefix;
        for (int b = 0; b < SFB_BINS; b++) hm[b * SMP_THREADS + t] = 0, hc[b * SMP_THREADS + t] = 0;
        const bool rough = est && !listed; /* the list's passes are exact */
        auto add = [&](uint64_t key) {
            if (cand(key) && (key & hi) == prefix) {
                const int b = (int)(key >> shift) & (SFB_BINS - 1);
                hc[b * SMP_THREADS + t] += 1;
                /* a count select's estimated masses would go unused: est sums the exact masses below the answer
                 * in the gather or id pass, whichever ends the select */
                if (!rough || use_mass)
                    hm[b * SMP_THREADS + t] +=
                        rough ? (double)expf(smp_key_val(key) - cmf) : exp((double)smp_key_val(key) - cm);
            }
        };
        if (listed)
            for (int32_t i = t; i < sh->nl; i += SMP_THREADS) add(list[i]);
        else
            spl_each_key(lg, 0, vocab, vec, temp, excl, add);
        __syncthreads();
        static_assert(SMP_THREADS / SFB_BINS == 64, "two warps a bin");
        { /* bin b's column sums: threads [64 b, 64 b + 64), each 16 entries, then two warps */
            const int per = SMP_THREADS / SFB_BINS, b = t / per;
            double m = 0;
            uint32_t c = 0;
            for (int i = t % per; i < SMP_THREADS; i += per) m += hm[b * SMP_THREADS + i], c += hc[b * SMP_THREADS + i];
            for (int o = 16; o > 0; o >>= 1)
                m += __shfl_xor_sync(0xffffffffu, m, o), c += __shfl_xor_sync(0xffffffffu, c, o);
            if (lane == 0) sh->wm[warp] = m, sh->wc[warp] = c;
        }
        __syncthreads();
        if (t == 0) { /* bin b's totals: warps 2b and 2b + 1 (read from shared: no local arrays) */
            auto bm = [&](int b) { return sh->wm[2 * b] + sh->wm[2 * b + 1]; };
            auto bc = [&](int b) { return sh->wc[2 * b] + sh->wc[2 * b + 1]; };
            int chosen = -1, last = -1;
            double base = sh->base;
            for (int b = 0; b < SFB_BINS; b++) {
                if (!bc(b)) continue;
                last = b;
                if (sh->fallback) continue;
                const double wb = use_mass ? bm(b) : (double)bc(b);
                if (ge ? base + wb >= thr : base + wb > thr) {
                    chosen = b;
                    break;
                }
                base += wb;
            }
            if (chosen < 0) chosen = last, sh->fallback = 1; /* threshold beyond the set: its last key */
            if (chosen < 0) chosen = 0;                       /* empty set (cannot happen: the merge saw one) */
            double w = sh->base, mb = sh->mbase;
            for (int b = 0; b < chosen; b++) w += use_mass ? bm(b) : (double)bc(b), mb += bm(b);
            if (rough && use_mass) { /* estimated masses: the threshold must clear the bin's edges */
                const double hi_w = sh->fallback ? base : w + bm(chosen);
                const double m = est_rel * hi_w + SMP_EST_ABS;
                if (sh->fallback ? hi_w >= thr - m : !(w <= thr - m && hi_w >= thr + m)) sh->redo = 1;
            }
            sh->base = w, sh->mbase = mb, sh->cnt = bc(chosen);
            sh->done = bc(chosen) <= 1 || sh->redo;
            sh->prefix |= (uint64_t)chosen << shift;
            sh->gather = !listed && !sh->done && bc(chosen) <= SFB_LIST; /* below; its own flag, as nl moves */
            if (sh->gather) sh->nl = 0;
        }
        __syncthreads();
        if (sh->done) break;
        if (sh->gather) { /* the chosen bin's keys into the list (in no particular order) */
            const uint64_t hl = ~0ull << shift, pl = sh->prefix;
            double below = 0; /* est: the exact mass of the keys below the bin */
            spl_each_key(lg, 0, vocab, vec, temp, excl, [&](uint64_t key) {
                if (!cand(key)) return;
                if ((key & hl) == pl) list[atomicAdd(&sh->nl, 1)] = key; /* native: 32-bit */
                else if (est && key < pl) below += exp((double)smp_key_val(key) - cm);
            });
            if (est) {
                below = cu_block_reduce(below, cu_op_sumd(), sh->shd, 0.0);
                if (t == 0) sh->mbase = below, sh->base = use_mass ? below : sh->base;
            }
        }
    }
    /* The keys with the chosen high bits: one (done), one key (listed, all 64 bits chosen), or all of one v
     * (the value bits fixed), so the k-th of them in id order is the answer, k from the weights: all 1, or
     * all the same mass w. */
    if (sh->redo) return {~0ull, 0.0, true}; /* uniform: read after the pass's barrier */
    const bool listed = sh->nl >= 0;
    const uint64_t hi = shift < 0 ? ~0ull : ~0ull << (listed || shift >= 32 ? shift : 32), prefix = sh->prefix;
    auto pick = [&](double base) { /* thread 0: k, from the weight of the keys below the prefix */
        const uint32_t n = sh->cnt;
        int64_t k = n;
        if (n > 1 && !sh->fallback) {
            const double w = use_mass ? exp((double)smp_key_val(prefix) - cm) : 1.0;
            auto hit = [&](int64_t j) { const double a = base + (double)j * w; return ge ? a >= thr : a > thr; };
            const double q = w > 0 ? (thr - base) / w : (double)n;
            k = q >= 1 && q < (double)n ? (int64_t)q : q < 1 ? 1 : n;
            while (k > 1 && hit(k - 1)) k--;
            while (k < n && !hit(k)) k++;
        }
        sh->k = (int32_t)k, sh->found = ~0ull;
    };
    if (listed) { /* n <= 1 here: the list's passes went down to the id bits */
        if (t == 0) pick(sh->base);
        __syncthreads();
        for (int32_t i = t; i < sh->nl; i += SMP_THREADS)
            if ((list[i] & hi) == prefix) sh->found = list[i];
    } else {
        const int32_t per = (vocab + SMP_CHUNK * SMP_THREADS - 1) / (SMP_CHUNK * SMP_THREADS) * SMP_CHUNK;
        const int32_t a = min(vocab, t * per), e = min(vocab, a + per);
        auto each = [&](auto &&f) { /* this thread's ids in order */
            for (int32_t c = a; c < e; c += SMP_CHUNK) {
                float x[SMP_CHUNK];
                smp_ld_chunk(lg, c, e, vec, x);
                for (int j = 0; j < SMP_CHUNK && c + j < e; j++) {
                    const uint64_t key = smp_ckey(x[j], c + j, temp, excl);
                    if (cand(key) && (key & hi) == prefix) f(key);
                }
            }
        };
        int32_t n = 0;
        each([&](uint64_t) { n++; });
        if (est) { /* the exact mass of the keys below the prefix (the passes' sums were estimates) */
            double below = 0;
            for (int32_t c = a; c < e; c += SMP_CHUNK) {
                float xs[SMP_CHUNK];
                smp_ld_chunk(lg, c, e, vec, xs);
                for (int j = 0; j < SMP_CHUNK && c + j < e; j++) {
                    const uint64_t key = smp_ckey(xs[j], c + j, temp, excl);
                    if (cand(key) && key < prefix) below += exp((double)smp_key_val(key) - cm);
                }
            }
            below = cu_block_reduce(below, cu_op_sumd(), sh->shd, 0.0);
            if (t == 0) sh->mbase = below;
            if (t == 0) pick(use_mass ? below : sh->base);
        } else if (t == 0) {
            pick(sh->base);
        }
        __syncthreads();
        const int32_t k = sh->k;
        int32_t x = n; /* inclusive block scan of n */
        for (int o = 1; o < 32; o <<= 1) {
            const int32_t y = __shfl_up_sync(0xffffffffu, x, o);
            if (lane >= o) x += y;
        }
        if (lane == 31) sh->ws[warp] = x;
        __syncthreads();
        int32_t before = x - n;
        for (int w = 0; w < warp; w++) before += sh->ws[w];
        if (before < k && k <= before + n) {
            int32_t j = before;
            each([&](uint64_t key) { if (++j == k) sh->found = key; });
        }
    }
    __syncthreads();
    const uint64_t key = sh->found;
    return {key, sh->mbase + (double)sh->k * exp((double)smp_key_val(key) - cm), false}; /* k > 1: all of key's v */
}

template <typename T, bool EST>
__global__ static void __launch_bounds__(SMP_THREADS)
    smp_fallback_kernel(const T *logits, int64_t ld, int32_t vocab, const kern_sample_t *params, const smp_row *rows,
                        int32_t *tokens, float *logprob, double est_rel)
{
    __shared__ smp_shared sh;
    cu_pdl_enter();
    const int32_t r = blockIdx.x;
    if (!rows[r].pending) return;
    const T *lg = logits + r * ld;
    const kern_sample_t p = params[r];
    const int32_t mask = p.mask_token >= 0 && p.mask_token < vocab ? p.mask_token : -1;
    const float temp = p.temperature;
    const int32_t n = vocab - (mask >= 0);
    const bool vec = smp_vec_ok(lg, 0);
    const double cm = rows[r].vmax; /* the merge's max of v over ids != mask */
    uint64_t limit = ~0ull;
    double tot = rows[r].sv; /* the merge's Σ exp(v - vmax) over every candidate, or -1 */
    auto sel = [&](bool use_mass, double thr, bool ge) { /* est's select, exactly again where it could not tell */
        const smp_sel s = smp_select<T, EST>(lg, vocab, vec, temp, mask, limit, use_mass, cm, thr, ge, est_rel, &sh);
        if constexpr (EST)
            if (s.redo) return smp_select<T, false>(lg, vocab, vec, temp, mask, limit, use_mass, cm, thr, ge, 0.0, &sh);
        return s;
    };
    if (p.top_k > 0 && p.top_k < n) {
        const smp_sel s = sel(false, p.top_k, true);
        limit = s.key, tot = s.mass;
    } else if (tot < 0) {
        tot = sel(false, INFINITY, true).mass;
    }
    if (p.top_p > 0.0f && p.top_p < 1.0f) {
        const smp_sel s = sel(true, (double)p.top_p * tot, true);
        limit = s.key, tot = s.mass;
    }
    const double u = kern_rng_uniform(p.seed, p.position) * tot;
    const int32_t tok = (int32_t)(uint32_t)sel(true, u, false).key;
    if (threadIdx.x == 0) tokens[r] = tok, logprob[r] = (float)((double)smp_ld(lg, tok) - rows[r].lse);
}

/* The fallback's estimated passes unless MS_SMP_FB_EST=0 (exact passes only); =redo: the estimates with a
 * margin no estimate clears, so every estimated select is redone exactly (the redo path, for the harness). The
 * margin's relative part, 0 when off. Read once. */
static double smp_fb_est_rel(void)
{
    static const double rel = cu_env_is("MS_SMP_FB_EST", "0")      ? 0.0
                              : cu_env_is("MS_SMP_FB_EST", "redo") ? 1e300 /* margin inf or 1e300 x mass */
                                                                   : SMP_EST_REL;
    return rel;
}

template <typename T>
static ms_status_t smp_launch(kern_ctx_t *cx, const T *logits, int64_t ld, int32_t rows, int32_t vocab,
                              const kern_sample_t *params, int32_t *tokens, float *logprob, int32_t *top_ids,
                              float *top_lp)
{
    static bool smem_set; /* per T: the fallback's histograms are over the default 48 KB */
    if (!smem_set) {
        CUDA_CHECK(cudaFuncSetAttribute(smp_fallback_kernel<T, false>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)SFB_SMEM));
        CUDA_CHECK(cudaFuncSetAttribute(smp_fallback_kernel<T, true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)SFB_SMEM));
        smem_set = true;
    }
    const double est_rel = smp_fb_est_rel();
    int sms = 132;
    if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, cx->device) != cudaSuccess) sms = 132;
    /* the workspace after cuBLASLt's (gemm.cu): rows are sampled in chunks that fit it */
    const size_t off = cx->ws_bytes > KERN_CUDA_BLAS_WS ? KERN_CUDA_BLAS_WS : cx->ws_bytes;
    char *ws = (char *)cx->ws + off;
    const size_t room = cx->ws_bytes - off;
    for (int32_t r0 = 0; r0 < rows;) {
        int32_t nr = rows - r0, S, slice;
        size_t need;
        for (;;) {
            S = (4 * sms + nr - 1) / nr; /* ~4 slice blocks an SM (16 measured slower: 36 vs 32 µs, 128 rows) */
            S = max(1, min(S, min(SMP_MAX_SLICES, (vocab + 511) / 512)));
            slice = (vocab + S - 1) / S;
            slice = (slice + 31) / 32 * 32;
            S = (vocab + slice - 1) / slice;
            need = (size_t)nr * (S * (sizeof(smp_part) + 8 * (size_t)(SMP_ROW_CANDS / S + SMP_LP_CAP)) +
                                 sizeof(smp_row)) + 1024;
            if (need <= room || nr == 1) break;
            nr = (nr + 1) / 2;
        }
        if (need > room) return MS_ERR(MS_ERR_NOMEM, "cuda sample: workspace of %zu bytes, %zu needed", room, need);
        const int32_t cap = SMP_ROW_CANDS / S;
        smp_part *parts = (smp_part *)ws;
        uint64_t *cand = (uint64_t *)(parts + (size_t)nr * S);
        uint64_t *lpc = cand + (size_t)nr * S * cap;
        smp_row *rs = (smp_row *)(lpc + (size_t)nr * S * SMP_LP_CAP);
        const T *lg = logits + (int64_t)r0 * ld;
        const kern_sample_t *pr = params + r0;
        cu_launch(smp_split_kernel<T>, dim3(S, nr), SPL_THREADS, 0, CU_STREAM(cx), lg, ld, vocab, slice, pr, parts,
                  cand, cap, lpc);
        CU_LAUNCHED();
        cu_launch(smp_merge_kernel<T>, nr, SMP_THREADS, 0, CU_STREAM(cx), lg, ld, vocab, S, pr, parts,
                  (const uint64_t *)cand, cap, (const uint64_t *)lpc, rs, tokens + r0, logprob + r0,
                  top_ids + (int64_t)r0 * KERN_MAX_LOGPROBS, top_lp + (int64_t)r0 * KERN_MAX_LOGPROBS, cx->fault);
        CU_LAUNCHED();
        if (est_rel > 0)
            cu_launch(smp_fallback_kernel<T, true>, nr, SMP_THREADS, SFB_SMEM, CU_STREAM(cx), lg, ld, vocab, pr,
                      (const smp_row *)rs, tokens + r0, logprob + r0, est_rel);
        else
            cu_launch(smp_fallback_kernel<T, false>, nr, SMP_THREADS, SFB_SMEM, CU_STREAM(cx), lg, ld, vocab, pr,
                      (const smp_row *)rs, tokens + r0, logprob + r0, 0.0);
        CU_LAUNCHED();
        r0 += nr;
    }
    return MS_OK;
}

extern "C" ms_status_t kern_cuda_sample(kern_ctx_t *cx, const void *logits, ms_dtype_t dt, int64_t ld,
                                        int32_t rows, int32_t vocab, const kern_sample_t *params, int32_t *tokens,
                                        float *logprob, int32_t *top_ids, float *top_lp)
{
    if (vocab < 2) return MS_ERR(MS_ERR_INVALID, "cuda sample: vocabulary of %d", vocab);
    if (vocab > SFB_MAX_VOCAB)
        return MS_ERR(MS_ERR_UNSUPPORTED, "cuda sample: vocabulary of %d (at most %d)", vocab, SFB_MAX_VOCAB);
    if (rows <= 0) return MS_OK;
    if (dt == MS_DT_F32)
        return smp_launch(cx, (const float *)logits, ld, rows, vocab, params, tokens, logprob, top_ids, top_lp);
    if (dt == MS_DT_BF16)
        return smp_launch(cx, (const uint16_t *)logits, ld, rows, vocab, params, tokens, logprob, top_ids, top_lp);
    return MS_ERR(MS_ERR_UNSUPPORTED, "cuda sample: %s logits", ms_dtype_name(dt));
}
