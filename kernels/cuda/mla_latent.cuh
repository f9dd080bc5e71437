/* mla_latent.cuh — what the two mla_latent kernels share (mla_latent.cu: the
 * SIMT kernel, the split merge and the op; mla_latent_mma.cu: the tensor-core
 * decode kernel): the argument block and the staging of one cache row. */
#ifndef MS_KERN_CUDA_MLA_LATENT_CUH
#define MS_KERN_CUDA_MLA_LATENT_CUH

#include "common.cuh"

#define MLL_HG 8                 /* heads per CTA, one warp each */
#define MLL_THREADS (MLL_HG * 32)
#define MLL_MAXC 16              /* d_c / 32 channels per lane: d_c <= 512 */
#define MLL_MAXR 2               /* d_r <= 64 */
#define MLL_TILE 32
#define MLL_SPLIT_MAX 64        /* the merge's bound; the tensor-core kernel goes this far */
#define MLL_SPLIT_SIMT 16       /* the SIMT kernel's: 8 CTAs of heads per sequence already */
#define MLL_SPLIT_ROWS 4        /* a sequence of at most this many query rows (decode, MTP verify) splits its context */

struct mll_args {
    const void *q;
    ms_dtype_t qdt, odt;
    const uint16_t *qpe;
    int64_t ld_pe, ld_pe_head;
    kern_kv_t kv;
    const int32_t *bt;
    const kern_attn_seq_t *seqs;
    int32_t H, splits;
    float scale;
    void *o;
    float *part; /* [n_seqs, MLL_SPLIT_ROWS, H, splits, d_c + 2]: m, l, o[d_c] (mll_part) */
    uint32_t *fault;
};

/* stage cache row of position p into dst (rw bf16 values); 0 for a faulted block */
__device__ static int mll_stage(const mll_args &a, const int32_t *bt, int32_t p, uint16_t *dst, int32_t lane)
{
    const kern_kv_t &kv = a.kv;
    const int32_t blk = bt[p / kv.block_size];
    if (blk < 0 || blk >= kv.n_blocks) {
        if (lane == 0) cu_fault(a.fault, KERN_FAULT_BLOCK);
        return 0;
    }
    const uint8_t *row = (const uint8_t *)kv.data + ((int64_t)blk * kv.block_size + p % kv.block_size) * kv.row_bytes;
    if (kv.dtype != MS_DT_F8E4M3) {
        const uint16_t *src = (const uint16_t *)row;
        for (int32_t j = lane; j < kv.d_c + kv.d_r; j += 32) dst[j] = src[j];
        return 1;
    }
    for (int32_t j = lane; j < kv.d_c; j += 32) {
        const uint8_t *sp = row + kv.d_c + 4 * (j / KERN_FP8_BLOCK);
        const float s =
            __uint_as_float((uint32_t)sp[0] | (uint32_t)sp[1] << 8 | (uint32_t)sp[2] << 16 | (uint32_t)sp[3] << 24);
        dst[j] = cu_f_bf16(__fmul_rn(cu_fp8_f(row[j]), s));
    }
    const uint8_t *kp = row + kv.d_c + 4 * ((kv.d_c + KERN_FP8_BLOCK - 1) / KERN_FP8_BLOCK);
    for (int32_t j = lane; j < kv.d_r; j += 32) dst[kv.d_c + j] = (uint16_t)(kp[2 * j] | kp[2 * j + 1] << 8);
    return 1;
}

/* Whether sequence sd splits its context over gridDim.z (each CTA takes a key range of every query row, the
 * merge kernel combines them) rather than its query rows (a prefill chunk: each CTA whole rows, o_lat written
 * directly). Few rows split the context: a decode or MTP verify step has too few CTAs otherwise (one sequence
 * at batch 1), and its rows' keys are nearly the same. */
__device__ static inline bool mll_ctx_split(const kern_attn_seq_t &sd, int32_t splits)
{
    return sd.n_q <= MLL_SPLIT_ROWS && splits > 1;
}

/* The partial (m, l, o[d_c]) of query row i of sequence s, head h, context split z. */
__device__ static inline float *mll_part(const mll_args &a, int32_t s, int32_t i, int32_t h, int32_t z)
{
    return a.part + ((((int64_t)s * MLL_SPLIT_ROWS + i) * a.H + h) * a.splits + z) * (a.kv.d_c + 2);
}

/* The keys [x, y) a CTA of context split blockIdx.z takes of a query row with nk keys (all of them unless
 * the row's sequence splits its context). */
__device__ static inline int2 mll_keys(int32_t nk, bool ctx_split, int32_t splits)
{
    if (!ctx_split) return make_int2(0, nk);
    const int32_t per = (nk + splits - 1) / splits, j0 = min(nk, (int32_t)blockIdx.z * per);
    return make_int2(j0, min(nk, j0 + per));
}

/* The tensor-core kernel (mla_latent_mma.cu): whether it takes this call's shapes, and its launch over
 * (n_seqs, head blocks, splits) — the same split layout and workspace as the SIMT kernel, so the merge serves
 * both. */
bool mll_mma_fits(const mll_args &a);
int mll_mma_head_groups(int32_t H);
cudaError_t mll_mma_launch(const mll_args &a, int32_t n_seqs, int32_t splits, cudaStream_t stream);

#endif
