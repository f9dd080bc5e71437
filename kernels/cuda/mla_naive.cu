/* mla_naive.cu — MLA attention as transformers computes it (prefill chunks),
 * with the rounding points of kernels/cpu/mla_naive.c:
 *   s = bf16(bf16(Q·K) * scale); p = bf16(exp(s - max) / Σ exp); out = bf16(Σ p·V)
 * Q·K reproduces the CPU's kern_cpu_dot order exactly (8 strided partial
 * sums, a fixed pairwise tree, then the tail), one group of 8 lanes per key,
 * and Σ p·V runs sequentially over keys per output channel as the CPU does;
 * only Σ exp is a parallel fp32 sum (the CPU sums sequentially), so p may
 * differ from the CPU's in rare last-bit cases.
 * Grid (n_seqs, heads, MLA_QSPLIT); a block loops over its share of the
 * sequence's query rows (lengths live in device memory). Scores of up to
 * MLA_SCAP keys stay in shared memory; longer contexts recompute them tile by
 * tile in each pass, so no scratch scales with the context. */
#include "common.cuh"

#define MLA_QSPLIT 8
#define MLA_SCAP 8192
#define MLA_MAX_DQK 512
#define MLA_THREADS 256

struct mla_args {
    const uint16_t *q, *kv, *kpe;
    int64_t ld_kpe, ldq, ldkv, ldo;
    int32_t dn, dr, dv;
    float scale;
    uint16_t *out;
};

/* scores of keys [t0, t1) for head h into S[0..t1-t0) (8 lanes per key) */
__device__ static void mla_scores(const mla_args &a, const float *qf, int32_t kv_off, int32_t h, int32_t t0,
                                  int32_t t1, float *S)
{
    const int32_t dqk = a.dn + a.dr, body = dqk / 8 * 8, l8 = threadIdx.x & 7;
    const int32_t keys_per_iter = blockDim.x >> 3, warp_first = (threadIdx.x >> 5) * 4;
    /* the loop bound is uniform across a warp so every lane reaches the shuffles */
    for (int32_t jb = t0 + warp_first; jb < t1; jb += keys_per_iter) {
        const int32_t j = jb + ((threadIdx.x & 31) >> 3);
        const bool ok = j < t1;
        const uint16_t *kn = a.kv + (int64_t)(kv_off + j) * a.ldkv + (int64_t)h * (a.dn + a.dv);
        const uint16_t *kp = a.kpe + (int64_t)(kv_off + j) * a.ld_kpe;
        float acc = 0.f;
        if (ok)
            for (int32_t d = l8; d < body; d += 8) {
                float k = cu_bf16_f(d < a.dn ? kn[d] : kp[d - a.dn]);
                acc = __fadd_rn(acc, __fmul_rn(qf[d], k));
            }
        acc = __fadd_rn(acc, __shfl_xor_sync(0xffffffffu, acc, 1));
        acc = __fadd_rn(acc, __shfl_xor_sync(0xffffffffu, acc, 2));
        acc = __fadd_rn(acc, __shfl_xor_sync(0xffffffffu, acc, 4));
        if (ok && l8 == 0) {
            for (int32_t d = body; d < dqk; d++)
                acc = __fadd_rn(acc, __fmul_rn(qf[d], cu_bf16_f(d < a.dn ? kn[d] : kp[d - a.dn])));
            S[j - t0] = cu_bf16_round(__fmul_rn(cu_bf16_round(acc), a.scale));
        }
    }
}

struct mla_op_sum { __device__ float operator()(float x, float y) const { return __fadd_rn(x, y); } };

__global__ static void __launch_bounds__(MLA_THREADS) mla_naive_kernel(mla_args a, const kern_attn_seq_t *seqs)
{
    __shared__ float S[MLA_SCAP];
    __shared__ float qf[MLA_MAX_DQK];
    __shared__ float shf[32];
    const kern_attn_seq_t sq = seqs[blockIdx.x];
    const int32_t h = blockIdx.y, dqk = a.dn + a.dr;
    for (int32_t i = blockIdx.z; i < sq.n_q; i += gridDim.z) {
        const int32_t t = sq.q_off + i, nk = sq.pos0 + i + 1;
        const bool fits = nk <= MLA_SCAP;
        __syncthreads();
        for (int32_t d = threadIdx.x; d < dqk; d += blockDim.x) qf[d] = cu_bf16_f(a.q[t * a.ldq + (int64_t)h * dqk + d]);
        __syncthreads();
        float mx = -INFINITY;
        for (int32_t t0 = 0; t0 < nk; t0 += MLA_SCAP) {
            const int32_t t1 = min(nk, t0 + MLA_SCAP);
            __syncthreads();
            mla_scores(a, qf, sq.kv_off, h, t0, t1, S);
            __syncthreads();
            for (int32_t j = threadIdx.x; j < t1 - t0; j += blockDim.x) mx = fmaxf(mx, S[j]);
        }
        mx = cu_block_reduce(mx, cu_op_max(), shf, -INFINITY);
        float sum = 0.f;
        for (int32_t t0 = 0; t0 < nk; t0 += MLA_SCAP) {
            const int32_t t1 = min(nk, t0 + MLA_SCAP);
            if (!fits) {
                __syncthreads();
                mla_scores(a, qf, sq.kv_off, h, t0, t1, S);
                __syncthreads();
            }
            for (int32_t j = threadIdx.x; j < t1 - t0; j += blockDim.x) {
                float e = cu_expf(__fsub_rn(S[j], mx));
                if (fits) S[j] = e;
                sum = __fadd_rn(sum, e);
            }
        }
        sum = cu_block_reduce(sum, mla_op_sum(), shf, 0.0f);
        /* pass 3: out[d] = Σ_j bf16(e_j / sum) * V_j[d], sequential in j as the CPU */
        for (int32_t d0 = 0; d0 < a.dv; d0 += blockDim.x) {
            const int32_t d = d0 + threadIdx.x;
            float o = 0.f;
            for (int32_t t0 = 0; t0 < nk; t0 += MLA_SCAP) {
                const int32_t t1 = min(nk, t0 + MLA_SCAP);
                if (!fits) {
                    __syncthreads();
                    mla_scores(a, qf, sq.kv_off, h, t0, t1, S);
                    __syncthreads();
                    for (int32_t j = threadIdx.x; j < t1 - t0; j += blockDim.x) S[j] = cu_expf(__fsub_rn(S[j], mx));
                }
                __syncthreads();
                if (d < a.dv) {
                    const uint16_t *v = a.kv + (int64_t)(sq.kv_off + t0) * a.ldkv + (int64_t)h * (a.dn + a.dv) + a.dn + d;
                    for (int32_t j = 0; j < t1 - t0; j++)
                        o = __fadd_rn(o, __fmul_rn(cu_bf16_round(__fdiv_rn(S[j], sum)), cu_bf16_f(v[(int64_t)j * a.ldkv])));
                }
            }
            if (d < a.dv) a.out[t * a.ldo + (int64_t)h * a.dv + d] = cu_f_bf16(o);
        }
    }
}

extern "C" ms_status_t kern_cuda_mla_naive(kern_ctx_t *cx, const bf16_t *q, const bf16_t *kv, const bf16_t *kpe,
                                           int64_t ld_kpe, const kern_attn_seq_t *seqs, int32_t n_seqs,
                                           int32_t heads, int32_t dn, int32_t dr, int32_t dv, float scale,
                                           bf16_t *out)
{
    if (dn < 0 || dr < 0 || dv <= 0 || dn + dr <= 0 || dn + dr > MLA_MAX_DQK)
        return MS_ERR(MS_ERR_INVALID, "cuda mla_naive: head dims %d+%d / %d unsupported (qk at most %d)", dn, dr, dv,
                      MLA_MAX_DQK);
    if (n_seqs <= 0 || heads <= 0) return MS_OK;
    if (heads > 65535) return MS_ERR(MS_ERR_INVALID, "cuda mla_naive: %d heads", heads);
    mla_args a = {q, kv, kpe, ld_kpe, (int64_t)heads * (dn + dr), (int64_t)heads * (dn + dv), (int64_t)heads * dv,
                  dn, dr, dv, scale, out};
    mla_naive_kernel<<<dim3((unsigned)n_seqs, (unsigned)heads, MLA_QSPLIT), MLA_THREADS, 0, CU_STREAM(cx)>>>(a, seqs);
    CU_LAUNCHED();
    return MS_OK;
}
