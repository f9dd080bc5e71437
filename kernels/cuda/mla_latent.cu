/* mla_latent.cu — paged latent attention, the middle op of absorbed MLA
 * (kernels.h; the CPU spec is kernels/cpu/mla_latent.c), shaped for decode as
 * FlashMLA is: one CTA per (sequence, group of MLL_HG heads), one warp per
 * head, the cache rows of a tile of MLL_TILE positions staged once in shared
 * memory as bf16 values (FP8 rows dequantized to bf16(e4m3 · s_g) while
 * staging) and read by every head of the group. Softmax is online in fp32
 * (running max and sum per head, the output rescaled as the max grows), one
 * rounding on store (none for F32 o_lat).
 *
 * Parallelism beyond heads: a sequence of few query rows (decode, n_q == 1,
 * or an MTP verify step, n_q <= MLL_SPLIT_ROWS) splits its context into
 * `splits` chunks over gridDim.z; each chunk writes every row's (max, sum,
 * unnormalized o) to the context workspace and a second kernel merges them
 * (scratch n_seqs·MLL_SPLIT_ROWS·H·splits·(d_c+2) floats: it grows with the
 * batch, never with the context). A sequence with more query rows (a prefill
 * chunk) splits its rows over gridDim.z instead and writes o_lat directly.
 *
 * Differences from the CPU: scores and sums are reduced in another order and
 * the softmax is normalized at the end, so results agree to fp32 rounding
 * (the harness states the tolerance), not bit for bit. A block-table entry
 * outside [0, n_blocks) raises KERN_FAULT_BLOCK and its keys are left out;
 * with every key left out o_lat is zero, as on the CPU.
 *
 * The op runs the Hopper kernel (mla_latent_wgmma.cu: R1's shapes, heads a
 * multiple of 64 on an sm_90 GPU; 1.3-2.6x faster than the mma kernel at batch
 * 1-128, context 1k-16k) where it fits, else the tensor-core kernel
 * (mla_latent_mma.cu: 1.3-22x faster than this one) wherever its shapes fit,
 * else this SIMT kernel. MS_MLA_KERNEL=mma or =simt picks one for every call
 * (shapes it does not take fall back as above); MS_MLA_WGMMA=1 picks the Hopper
 * file's first kernel (mw_kernel) over its warp-specialized one (mw2_kernel). */
#include "mla_latent.cuh"
#include "wgmma.cuh" /* mg_num_sms */

#include <stdlib.h>
#include <string.h>

__global__ static void __launch_bounds__(MLL_THREADS) mll_kernel(mll_args a)
{
    __shared__ int okf[MLL_TILE];
    extern __shared__ uint16_t sk[]; /* [MLL_TILE][d_c + d_r] */
    const kern_attn_seq_t sq = a.seqs[blockIdx.x];
    if (sq.n_q <= 0 || sq.q_off < 0) return;
    const int32_t warp = threadIdx.x / 32, lane = threadIdx.x & 31, h = blockIdx.y * MLL_HG + warp;
    const int32_t dc = a.kv.d_c, dr = a.kv.d_r, rw = dc + dr;
    const bool hv = h < a.H, ctx_split = mll_ctx_split(sq, a.splits);
    const int32_t *bt = a.bt + sq.blk_off;
    for (int32_t i = ctx_split ? 0 : blockIdx.z; i < sq.n_q; i += ctx_split ? 1 : gridDim.z) {
        const int32_t t = sq.q_off + i, nk = sq.pos0 + i + 1;
        const int2 keys = mll_keys(nk, ctx_split, a.splits);
        const int32_t j0 = keys.x, j1 = keys.y;
        float qa[MLL_MAXC], qp[MLL_MAXR], o[MLL_MAXC];
        const int64_t base = ((int64_t)t * a.H + h) * dc;
#pragma unroll
        for (int j = 0; j < MLL_MAXC; j++) {
            const int32_t c = lane + 32 * j;
            qa[j] = 0.f, o[j] = 0.f;
            if (hv && c < dc)
                qa[j] = a.qdt == MS_DT_F32 ? ((const float *)a.q)[base + c] : cu_bf16_f(((const uint16_t *)a.q)[base + c]);
        }
#pragma unroll
        for (int j = 0; j < MLL_MAXR; j++) {
            const int32_t c = lane + 32 * j;
            qp[j] = hv && c < dr ? cu_bf16_f(a.qpe[t * a.ld_pe + h * a.ld_pe_head + c]) : 0.f;
        }
        float m = -INFINITY, l = 0.f;
        for (int32_t tb = j0; tb < j1; tb += MLL_TILE) {
            const int32_t n = min(MLL_TILE, j1 - tb);
            __syncthreads(); /* the previous tile has been read */
            for (int32_t r = warp; r < n; r += MLL_HG) {
                const int ok = mll_stage(a, bt, tb + r, sk + r * rw, lane);
                if (lane == 0) okf[r] = ok;
            }
            __syncthreads();
            if (!hv) continue;
            for (int32_t r = 0; r < n; r++) {
                if (!okf[r]) continue;
                const uint16_t *kr = sk + r * rw;
                float d = 0.f;
#pragma unroll
                for (int j = 0; j < MLL_MAXC; j++)
                    if (lane + 32 * j < dc) d = fmaf(qa[j], cu_bf16_f(kr[lane + 32 * j]), d);
#pragma unroll
                for (int j = 0; j < MLL_MAXR; j++)
                    if (lane + 32 * j < dr) d = fmaf(qp[j], cu_bf16_f(kr[dc + lane + 32 * j]), d);
                for (int off = 16; off > 0; off >>= 1) d += __shfl_xor_sync(0xffffffffu, d, off);
                const float s = d * a.scale, mn = fmaxf(m, s);
                const float corr = expf(m - mn), p = expf(s - mn); /* m = -inf at the first key: corr 0 */
                l = l * corr + p;
#pragma unroll
                for (int j = 0; j < MLL_MAXC; j++)
                    if (lane + 32 * j < dc) o[j] = o[j] * corr + p * cu_bf16_f(kr[lane + 32 * j]);
                m = mn;
            }
        }
        if (!hv) continue;
        if (ctx_split) {
            float *pp = mll_part(a, blockIdx.x, i, h, blockIdx.z);
            if (lane == 0) pp[0] = m, pp[1] = l;
#pragma unroll
            for (int j = 0; j < MLL_MAXC; j++)
                if (lane + 32 * j < dc) pp[2 + lane + 32 * j] = o[j];
            continue;
        }
        const float inv = l > 0.f ? 1.0f / l : 0.f;
#pragma unroll
        for (int j = 0; j < MLL_MAXC; j++) {
            const int32_t c = lane + 32 * j;
            if (c >= dc) continue;
            const float v = o[j] * inv;
            if (a.odt == MS_DT_F32) ((float *)a.o)[base + c] = v;
            else ((uint16_t *)a.o)[base + c] = cu_f_bf16(v);
        }
    }
}

/* row i of sequence sq, head blockIdx.y: one rounding of the splits' softmax-weighted sum. The first warp weighs
 * the splits (an empty one, m = -inf, weighs 0 and is skipped), then every thread sums its channels; wz and
 * inv_l are the block's shared scratch, free again when it returns. */
__device__ static void mll_merge_row(const mll_args &a, const kern_attn_seq_t &sq, int32_t i, float *wz, float *inv_l)
{
    const int32_t h = blockIdx.y, dc = a.kv.d_c, S = a.splits;
    const float *pp = mll_part(a, blockIdx.x, i, h, 0);
    if (threadIdx.x < 32) {
        float M = -INFINITY, L = 0.f;
        for (int32_t z = threadIdx.x; z < S; z += 32) M = fmaxf(M, pp[z * (dc + 2)]);
        for (int off = 16; off > 0; off >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, off));
        for (int32_t z = threadIdx.x; z < S; z += 32) {
            const float mz = pp[z * (dc + 2)], w = mz == -INFINITY ? 0.f : expf(mz - M);
            wz[z] = w;
            L += pp[z * (dc + 2) + 1] * w;
        }
        for (int off = 16; off > 0; off >>= 1) L += __shfl_xor_sync(0xffffffffu, L, off);
        if (threadIdx.x == 0) *inv_l = L > 0.f ? 1.0f / L : 0.f;
    }
    __syncthreads();
    const float inv = *inv_l;
    const int64_t base = ((int64_t)(sq.q_off + i) * a.H + h) * dc;
    /* channel pairs (float2: the partial rows are dc + 2 floats, so even when dc is), the splits' loads unrolled
     * so they are in flight together: the sum over z per channel keeps its ascending order */
    const bool pair = dc % 2 == 0;
    const int32_t step = pair ? 2 * (int32_t)blockDim.x : (int32_t)blockDim.x;
    for (int32_t c = pair ? 2 * (int32_t)threadIdx.x : (int32_t)threadIdx.x; c < dc; c += step) {
        float v0 = 0.f, v1 = 0.f;
#pragma unroll 16
        for (int32_t z = 0; z < S; z++) {
            const float wv = wz[z];
            if (wv == 0.f) continue;
            const float *q = pp + z * (dc + 2) + 2 + c;
            if (pair) {
                const float2 t = *(const float2 *)q;
                v0 += t.x * wv, v1 += t.y * wv;
            } else {
                v0 += q[0] * wv;
            }
        }
        for (int e = 0; e < (pair ? 2 : 1); e++) {
            const float v = (e ? v1 : v0) * inv;
            if (a.odt == MS_DT_F32) ((float *)a.o)[base + c + e] = v;
            else ((uint16_t *)a.o)[base + c + e] = cu_f_bf16(v);
        }
    }
    __syncthreads();
}

/* merge the context chunks of the sequences that split them: grid (n_seqs, H), a row at a time. (A thread per
 * 4 channels walking the splits 4 loads at a time took ~17 µs for one 1k-context sequence of 128 heads.) */
#define MLL_MERGE_THREADS 256
__global__ static void mll_merge_kernel(mll_args a)
{
    __shared__ float wz[MLL_SPLIT_MAX], inv_l;
    const kern_attn_seq_t sq = a.seqs[blockIdx.x];
    if (sq.n_q <= 0 || sq.q_off < 0 || !mll_ctx_split(sq, a.splits)) return;
    for (int32_t i = 0; i < sq.n_q; i++) mll_merge_row(a, sq, i, wz, &inv_l);
}

extern "C" ms_status_t kern_cuda_mla_latent(kern_ctx_t *cx, const void *q_lat, ms_dtype_t qdt, const bf16_t *q_pe,
                                            int64_t ld_pe, int64_t ld_pe_head, const kern_kv_t *kv,
                                            const int32_t *block_tables, const kern_attn_seq_t *seqs, int32_t n_seqs,
                                            int32_t heads, float scale, void *o_lat, ms_dtype_t odt)
{
    MS_TRY(kern_cuda_kv_check(kv, "mla_latent"));
    if ((qdt != MS_DT_F32 && qdt != MS_DT_BF16) || (odt != MS_DT_F32 && odt != MS_DT_BF16))
        return MS_ERR(MS_ERR_UNSUPPORTED, "cuda mla_latent: q_lat %s / o_lat %s must be F32 or BF16",
                      ms_dtype_name(qdt), ms_dtype_name(odt));
    if (kv->d_c > 32 * MLL_MAXC || kv->d_r > 32 * MLL_MAXR || kv->d_c < 1)
        return MS_ERR(MS_ERR_UNSUPPORTED, "cuda mla_latent: d_c %d / d_r %d above the kernel's %d / %d", kv->d_c,
                      kv->d_r, 32 * MLL_MAXC, 32 * MLL_MAXR);
    if (n_seqs <= 0 || heads <= 0) return MS_OK;
    mll_args a = {q_lat, qdt, odt, q_pe, ld_pe, ld_pe_head, *kv, block_tables, seqs, heads, 1, scale, o_lat,
                  (float *)cx->ws, cx->fault};
    /* The Hopper kernel (mla_latent_wgmma.cu) where it fits, unless MS_MLA_KERNEL says mma or simt; the
     * tensor-core one (mla_latent_mma.cu) where its shapes fit, unless it says simt; the SIMT one otherwise. The
     * Hopper kernel's CTAs (one per SM too) count as the mma kernel's for the splits. Read per call (host side
     * only: a captured graph keeps the kernel it was captured with). */
    const bool simt = cu_env_is("MS_MLA_KERNEL", "simt"), pick_mma = cu_env_is("MS_MLA_KERNEL", "mma");
    const bool wg = !simt && !pick_mma && n_seqs <= 65535 && mll_wg_fits(a); /* sequences: mw_kernel's grid y */
    const bool mma = wg || (!simt && mll_mma_fits(a));
    const int32_t n_hg = wg ? heads / 64 : mma ? mll_mma_head_groups(heads) : (heads + MLL_HG - 1) / MLL_HG;
    if (n_hg > 65535) return MS_ERR(MS_ERR_UNSUPPORTED, "cuda mla_latent: %d heads", heads);
    /* context splits, bounded by the workspace: SIMT, enough CTAs for ~2 waves of 132 SMs; the tensor-core kernel
     * (one CTA per SM) as many splits as still fit in one wave — none once the batch fills the GPU, as a split
     * costs its partial results' round trip and the merge — up to 64, so one sequence's 2 CTAs fill it too */
    const int64_t ctas = (int64_t)n_seqs * n_hg;
    int64_t splits = mma ? mg_num_sms() / ctas : (264 + ctas - 1) / ctas;
    if (splits > (mma ? MLL_SPLIT_MAX : MLL_SPLIT_SIMT)) splits = mma ? MLL_SPLIT_MAX : MLL_SPLIT_SIMT;
    const size_t per_split = (size_t)n_seqs * MLL_SPLIT_ROWS * heads * (kv->d_c + 2) * sizeof(float);
    if (splits > 1 && (size_t)splits * per_split > cx->ws_bytes) splits = (int64_t)(cx->ws_bytes / per_split);
    if (splits < 1) splits = 1;
    a.splits = (int32_t)splits;
    if (wg) {
        CUDA_CHECK(mll_wg_launch(a, n_seqs, (int32_t)splits, CU_STREAM(cx)));
    } else if (mma) {
        CUDA_CHECK(mll_mma_launch(a, n_seqs, (int32_t)splits, CU_STREAM(cx)));
    } else {
        const size_t smem = (size_t)MLL_TILE * (kv->d_c + kv->d_r) * sizeof(uint16_t);
        if (smem > 48 * 1024)
            CUDA_CHECK(cudaFuncSetAttribute(mll_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        mll_kernel<<<dim3((unsigned)n_seqs, (unsigned)n_hg, (unsigned)splits), MLL_THREADS, smem, CU_STREAM(cx)>>>(a);
        CU_LAUNCHED();
    }
    if (splits > 1) {
        mll_merge_kernel<<<dim3((unsigned)n_seqs, (unsigned)heads), MLL_MERGE_THREADS, 0, CU_STREAM(cx)>>>(a);
        CU_LAUNCHED();
    }
    return MS_OK;
}
