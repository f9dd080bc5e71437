/* kernels.h — the one ops table every backend fills (ggml's ggml_backend_i,
 * UCX's uct_iface_ops_t). Model code (worker/) calls these with device
 * pointers only and never touches tensor memory itself (DESIGN invariant 1):
 * the CPU backend's "device" is host memory, the CUDA backend's is GPU memory.
 *
 * Conventions for every op:
 *  - The first argument is the backend context (kern_ctx_t: stream, workspace,
 *    library handles, fault flag); then raw device pointers, sizes, strides
 *    (in elements unless the name says bytes). Small plain descriptor structs
 *    (kern_mat_t, kern_gemm_t, kern_kv_t, kern_attn_seq_t, kern_sample_t) are passed by host pointer;
 *    arrays of them that an op reads per row live in device memory.
 *  - Ops are asynchronous with respect to the host on a stream; results are
 *    visible to the host after download + synchronize. The CPU backend runs
 *    everything synchronously.
 *  - An op a backend lacks returns MS_ERR_UNSUPPORTED (never a NULL pointer)
 *    and supports_op() says so up front, so an engine rejects a backend at
 *    creation, not at its first step.
 *  - An op's status reports launch and shape errors only (bad sizes, an
 *    unsupported dtype). A data fault — a token id outside the vocabulary, a
 *    slot or block id out of range — never fails the call: the op ORs a
 *    KERN_FAULT_* bit into the context's device fault word, treats the row as
 *    padding, and the engine reads the word once per step with its results.
 *  - Padded rows (a slot, row or token index of -1) are no-ops in every op
 *    that takes an index: nothing is read for them and their outputs are
 *    left as they were, or zero where the op says so.
 *  - Numerics follow transformers v5 in bf16 (shared/reference/deepseek-v3.md):
 *    activations are bf16 where transformers stores bf16 tensors; inside an op
 *    sums accumulate in fp32 and round once on store. Each op's comment says
 *    where it rounds.
 *  - Weight matrices are PyTorch Linear layout [out, in] row-major. FP8 e4m3
 *    weights carry fp32 scale_inv in KERN_FP8_BLOCK × KERN_FP8_BLOCK blocks:
 *    W[i,j] = bf16(fp8(W)[i,j] * scale_inv[i/128, j/128]); the bf16 rounding of
 *    the dequantized value makes an fp8 checkpoint compute exactly like its
 *    dequantized bf16 twin.
 */
#ifndef MS_KERNELS_H
#define MS_KERNELS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus /* CUDA sources include this header as C++ */
extern "C" {
#define KERN_STATIC_ASSERT static_assert
#else
#define KERN_STATIC_ASSERT _Static_assert
#endif

#include "status.h"
#include "dtype.h"

/* Helpers every backend must compute alike (the sampler's random numbers, the FP8 KV scale, dummy
 * weights): CUDA sources compile them for the device too. */
#ifdef __CUDACC__
#define KERN_HOST_DEVICE __host__ __device__
#else
#define KERN_HOST_DEVICE
#endif

#define KERN_FP8_BLOCK 128
#define KERN_MAX_LOGPROBS 20 /* = PROTO_MAX_LOGPROBS */

/* Data-fault bits an op ORs into *kern_ctx_t.fault (never a failed status). */
enum {
    KERN_FAULT_TOKEN = 1u << 0, /* a token id outside [0, vocab) */
    KERN_FAULT_SLOT = 1u << 1,  /* an expert / slot id outside the placement table */
    KERN_FAULT_BLOCK = 1u << 2, /* a KV row or block id outside the cache */
    KERN_FAULT_CAPACITY = 1u << 3, /* more rows for a receive slot than its capacity */
    KERN_FAULT_LOGITS = 1u << 4,   /* a sampled row's logits hold a NaN or +inf (or are all -inf) */
};

/* The backend context every op takes: one stream of work plus what the ops on
 * it share. Made by ops->ctx_create (the main one) and ops->ctx_create_side (a
 * second stream sharing the device, library handles and fault word, with its
 * own workspace), destroyed by ops->ctx_destroy. Fields are the backend's;
 * model code reads none of them except to repoint `fault` into its own result
 * block (so faults come back in the step's one download). Not thread-safe:
 * one thread drives a context. */
typedef struct kern_ctx {
    const struct kern_ops *ops; /* the backend that made it */
    void *stream;               /* CUDA: cudaStream_t; CPU: NULL (ops run synchronously) */
    void *blas;                 /* CUDA: cublasLtHandle_t, shared with side contexts; CPU: NULL */
    void *ws;                   /* device workspace for ops on this stream (ws_bytes), e.g. GEMM scratch */
    size_t ws_bytes;
    uint32_t *fault;            /* device word: OR of KERN_FAULT_* raised by ops; owned unless repointed */
    uint32_t *own_fault;        /* the word ctx_create allocated (freed by ctx_destroy) */
    uint32_t *sk_count;         /* CUDA: the stream-K GEMMs' tile counters (stream_k.cuh), zero between calls, owned */
    int device;                 /* CUDA device ordinal; 0 on CPU */
    int is_side;                /* made by ctx_create_side: shares blas and fault */
} kern_ctx_t;

typedef void *kern_event_t; /* CUDA: cudaEvent_t; CPU: a dummy non-NULL token */
typedef void *kern_graph_t; /* CUDA: cudaGraphExec_t (a captured, instantiated graph) */
#define KERN_IPC_HANDLE_BYTES 64 /* kern_ops_t ipc_export's handle (CUDA: cudaIpcMemHandle_t) */

/* Every op of the table, for supports_op() and kern_op_name(). */
typedef enum {
    KERN_OP_EMBED, KERN_OP_ADD, KERN_OP_CAST, KERN_OP_GATHER_ROWS, KERN_OP_SILU_MUL, KERN_OP_RMSNORM,
    KERN_OP_ADD_RMSNORM, KERN_OP_GEMM, KERN_OP_ACT_QUANT, KERN_OP_ROPE, KERN_OP_KV_STORE, KERN_OP_KV_GATHER,
    KERN_OP_MLA_NAIVE, KERN_OP_MLA_LATENT,
    KERN_OP_MOE_ROUTE, KERN_OP_MOE_PLAN, KERN_OP_MOE_SCATTER, KERN_OP_MOE_EXPERTS, KERN_OP_MOE_COMBINE,
    KERN_OP_LOG_SOFTMAX,
    KERN_OP_SAMPLE, KERN_OP_LOGITS_ADJUST, KERN_OP_MTP_PREP,
    KERN_OP_RMSNORM_QUANT, KERN_OP_MOE_COMBINE_ADD, KERN_OP_KV_STORE_ROPE,
    KERN_N_OPS
} kern_op_t;

/* "gemm", "moe_experts", ... ("?" outside the enum) */
const char *kern_op_name(kern_op_t op);

/* A weight matrix, or a stack of n equal matrices (routed experts): matrix e
 * starts at data + e*rows*cols elements and its scales at
 * scale_inv + e*ceil(rows/128)*ceil(cols/128). */
typedef struct {
    const void *data;       /* [rows, cols] row-major: BF16, F8E4M3 or F32 */
    const float *scale_inv; /* F8E4M3 only: [ceil(rows/128), ceil(cols/128)]; else NULL */
    ms_dtype_t dtype;
    int32_t rows, cols;     /* out, in */
} kern_mat_t;

static inline int32_t kern_fp8_blocks(int32_t n) { return (n + KERN_FP8_BLOCK - 1) / KERN_FP8_BLOCK; }

/* Epilogue of a GEMM. */
typedef enum {
    KERN_EPI_NONE = 0,
    /* Fused gated activation over a fused gate|up weight: W has 2n rows, gate rows 0..n then up rows n..2n;
     * the GEMM writes n outputs y[:, j] = bf16(bf16(silu(bf16(g_j))) * bf16(u_j)), g/u the fp32 sums. These
     * are exactly the roundings of gemm(gate) + gemm(up) to bf16 followed by silu_mul. y must be BF16. */
    KERN_EPI_SILU_MUL,
} kern_epi_t;

/* One GEMM call (a descriptor keeps the signature readable): for b < batch (0 counts as 1),
 *   y_b[i, n] = Σ_k x_b[i, k] · W_b[n, k]      i < m, n < w->rows (w->rows/2 with KERN_EPI_SILU_MUL), k < w->cols
 * with x_b = x + b*bsx (row i at i*ldx), W_b = w->data + b*bsw, y_b = y + b*bsy (row i at i*ldy). Strides
 * are in elements of their own dtype; a batch stride of 0 shares the operand between batches (0 for W
 * with batch 1 is the usual case). Per-head absorption is H such GEMMs over column slices of q.
 *
 * W (w->rows = out, w->cols = in): row n starts at data + n*ldw (ldw 0 = w->cols). w_trans = 1: W is
 * stored transposed, element (n, k) at data[k*ldw + n] (ldw 0 = w->rows); BF16/F32 only (kv_b's W_UK
 * rows read as q_nope·W_UK). FP8 W: scale_inv is the [ceil(rows/128), ceil(ldw/128)] grid of the
 * stored matrix; batch > 1 needs stacked matrices (bsw = rows*ldw, scales stacked per matrix).
 *
 * dtypes: x BF16 or F32 (fp32 accumulation over bf16/fp32 values, one rounding on store), or F8E4M3
 * with x_scale (kern_ops_t.act_quant's output: x_scale[i*ld_xs + k/128], per token per 128 channels,
 * bs_xs per batch); FP8 x needs FP8 W and accumulates like DeepSeek's fp8_gemm / DeepGEMM: per 128-wide
 * K block the fp8·fp8 products are summed in fp32, then scaled by x_scale·w_scale and added to the fp32
 * accumulator. This mode is not transformers' and not the default; it exists so a GPU FP8×FP8 GEMM can
 * be compared with a CPU reference of the same numerics. y BF16 or F32.
 * x BF16 + W BF16 + y F32 is the router's fp32 GEMM (bf16 values are exact in fp32). */
typedef struct {
    const void *x;
    const float *x_scale;
    const kern_mat_t *w;
    void *y;
    ms_dtype_t xdt, ydt;
    int32_t m, batch;
    int64_t ldx, bsx, ld_xs, bs_xs;
    int64_t ldw, bsw;
    int64_t ldy, bsy;
    int32_t w_trans;
    kern_epi_t epi;
} kern_gemm_t;

/* Bytes of FP8 activation scales for rows x cols (one fp32 per 128 channels per row). */
static inline int64_t kern_act_scales(int32_t rows, int32_t cols) { return (int64_t)rows * kern_fp8_blocks(cols); }

/* One layer of the paged latent KV cache. Row index = block * block_size + offset; row r starts at
 * data + r * row_bytes (see kern_kv_row_bytes). Two row layouts, typed by bytes:
 *  - BF16 (kv_cache_config.dtype bf16/auto): [d_c bf16 ckv | d_r bf16 kpe], 2*(d_c+d_r) bytes
 *    (1152 for DeepSeek-V3).
 *  - F8E4M3 (kv_cache_config.dtype fp8; FlashMLA's FP8 row): [d_c e4m3 ckv | ceil(d_c/128) fp32 scale
 *    slots | d_r bf16 kpe], d_c + 4*ceil(d_c/128) + 2*d_r bytes (656 for DeepSeek-V3, 16-byte aligned
 *    rows and kpe). One scale a token: s = kern_kv_fp8_scale(amax of the token's d_c channels), a power
 *    of two, written into every slot (so a reader of FlashMLA's per-128-channel slots reads it right),
 *    ckv stored as e4m3(ckv / s). A reader's e4m3 · s is then exact in bf16 and f32, and one scale a
 *    key lets an attention kernel take the e4m3 codes as they are and scale its scores and
 *    probabilities by s instead of dequantizing every value. kpe stays bf16: rope keys are small and
 *    position-sensitive. d_c must be a multiple of 4 (scale alignment). */
typedef struct {
    void *data;          /* this layer's rows (device) */
    ms_dtype_t dtype;    /* MS_DT_BF16 or MS_DT_F8E4M3 (of the ckv part) */
    int32_t d_c, d_r;
    int32_t block_size;  /* tokens per block; 64 is FlashMLA's page */
    int32_t n_blocks;    /* blocks in this layer; block ids outside [0, n_blocks) are data faults */
    int32_t row_bytes;   /* kern_kv_row_bytes(dtype, d_c, d_r) */
} kern_kv_t;

static inline int32_t kern_kv_row_bytes(ms_dtype_t dt, int32_t d_c, int32_t d_r)
{
    return dt == MS_DT_F8E4M3 ? d_c + 4 * kern_fp8_blocks(d_c) + 2 * d_r : 2 * (d_c + d_r);
}

/* The FP8 KV row's scale for a token whose ckv channels have max |x| = amax: the smallest power of two
 * s with max(amax, 1e-4) / s <= 448 (act_quant's floor; DeepSeek-V3.2's UE8M0 scales are powers of two
 * too). Against act_quant's amax/448 it gives up at most one bit at the bottom of e4m3's 2^17 range;
 * it buys exact dequantization. An infinite or NaN amax gives act_quant's scale, amax/448. */
KERN_HOST_DEVICE static inline float kern_kv_fp8_scale(float amax)
{
    const float x = (amax > 1e-4f ? amax : 1e-4f) / 448.0f;
    if (!(x <= 3.0e38f)) return x;
    int e;
    const float m = frexpf(x, &e); /* x = m * 2^e, m in [0.5, 1) */
    return ldexpf(1.0f, m == 0.5f ? e - 1 : e);
}

/* One sequence's slice of a batched attention call (device array of these).
 * Query tokens q_off .. q_off+n_q-1 sit at positions pos0 .. pos0+n_q-1 and
 * attend causally to positions 0 .. their own (the KV cache already holds
 * them: kv_store runs before attention). */
typedef struct {
    int32_t q_off;   /* first query row in the step's token arrays */
    int32_t n_q;     /* query rows */
    int32_t pos0;    /* position of the first query row */
    int32_t kv_off;  /* naive path: first row of this seq in the gathered KV */
    int32_t blk_off; /* first entry of this seq's block table in the block array */
    int32_t kv_pos0; /* kv_gather window: first position gathered (with kv_len > 0) */
    int32_t kv_len;  /* kv_gather window length; 0 = positions 0 .. pos0+n_q-1 (the whole causal context) */
    int32_t pad_;
} kern_attn_seq_t;
KERN_STATIC_ASSERT(sizeof(kern_attn_seq_t) == 32, "kern_attn_seq_t layout");

/* One sampled sequence's entry for kern_ops_t.mtp_prep (device array): a sequence that verifies drafts
 * (its rows r0+1 .. r0+n_verify carry them) or drafts the next step's (worker/forward_mtp.h). */
typedef struct {
    int32_t r0;       /* its first row in the step; -1: padding (drafts from row 0, writes nothing) */
    int32_t j;        /* its first sampled row (tok[j ..]) */
    int32_t n_verify; /* drafts its rows verify: ids[r0+1+u] against tok[j+u], u < n_verify */
    int32_t last;     /* the row (from r0) that drafts when n_verify is 0: its last */
    int32_t pos;      /* position of row r0 */
    int32_t blk_off;  /* its block table in `blocks` */
    int32_t cover;    /* positions its block table covers (n_blocks * block_size) */
    int32_t pad_;
} kern_draft_t;
KERN_STATIC_ASSERT(sizeof(kern_draft_t) == 32, "kern_draft_t layout");

/* kern_ops_t.mtp_prep's arguments (host struct; every pointer is device memory). */
typedef struct {
    const int32_t *next_src; /* (T) where row r's successor token comes from: >= 0 ids[i], <= -2 tok[-2 - i],
                              * -1 none (a padding row: next -1) */
    int32_t T;
    const kern_draft_t *seqs; /* (n) */
    int32_t n, N, block_size;
    const int32_t *ids, *tok, *blocks; /* the step's token ids, sampled tokens and block tables */
    int32_t *next;       /* (T) out: the successor token of each row */
    int32_t *row;        /* (n) out: the row whose module output drafts (0 for padding) */
    int32_t *acc;        /* (n, 2) out: drafts accepted, drafts the next step can verify (1..N; 0 padding) */
    int32_t *chain_pos;  /* (N-1, n) out: positions of the chained passes 2..N, pass-major */
    int32_t *chain_slot; /* (N-1, n) out: their cache rows, -1 past the block table (no write) */
    kern_attn_seq_t *chain_seqs; /* (N-1, n) out: their one-row attention descriptors (n_q 0 past it) */
    int32_t *chain_pad;  /* (n) out: -1 real, 0 padding (fwd_t.pad of the chained passes) */
} kern_mtp_prep_t;

/* Per-row sampling parameters (device array). The random draw is a pure
 * function of (seed, position): the same request samples the same token
 * whatever else shares the batch. */
typedef struct {
    float temperature; /* 0 = greedy argmax (first index on ties, as torch.argmax) */
    float top_p;       /* 1 = off */
    int32_t top_k;     /* <= 0 = off */
    int32_t n_logprobs;/* top-N logprobs to report, 0..KERN_MAX_LOGPROBS */
    uint64_t seed;
    int64_t position;  /* position of the token being sampled */
    int32_t mask_token;/* token id that may not be sampled (EOS under min_tokens), -1 = none */
    int32_t pad_;
} kern_sample_t;
KERN_STATIC_ASSERT(sizeof(kern_sample_t) == 40, "kern_sample_t layout");

/* One entry of a sequence's penalty list (device, kern_ops_t.logits_adjust): a token the sequence
 * holds (prompt or generated) or biases. A list is unordered and holds each token at most once. */
typedef struct {
    int32_t token;
    int32_t n_out;      /* times the token was generated (presence/frequency penalties) */
    float bias;         /* logit_bias, already clamped to [-100, 100]; 0 = none */
    uint32_t in_prompt; /* 1: the token occurs in the prompt (repetition penalty counts it too) */
} kern_pen_t;
KERN_STATIC_ASSERT(sizeof(kern_pen_t) == 16, "kern_pen_t layout");

/* A write into the lists buffer: lists[at] = e (applied before any row is adjusted). */
typedef struct {
    int64_t at;
    kern_pen_t e;
} kern_pen_set_t;
KERN_STATIC_ASSERT(sizeof(kern_pen_set_t) == 24, "kern_pen_set_t layout");

/* Per-row logits processing (device array; one per sampled row): vLLM's sampling controls. */
typedef struct {
    float presence;    /* subtracted once from a generated token's logit (0 = off) */
    float frequency;   /* subtracted per generation of the token (0 = off) */
    float repetition;  /* prompt or generated tokens: l > 0 ? l / r : l * r (1 = off) */
    float min_p;       /* after temperature, tokens with p < min_p * p_max are removed (0 = off) */
    float temperature; /* the row's sampling temperature (min_p is relative to it; 0 = greedy: min_p off) */
    int32_t mask_token;/* = kern_sample_t.mask_token: removed before min_p takes the maximum; -1 = none */
    int64_t list_off;  /* the row's list: lists[list_off .. list_off + n_list) */
    int32_t n_list;
    int32_t pad_;
} kern_adjust_t;
KERN_STATIC_ASSERT(sizeof(kern_adjust_t) == 40, "kern_adjust_t layout");

/* ---- MoE data shapes (placement tables, slot records) ---- */

/* One MoE layer's expert placement, as device tables (what an EPLB rewrites).
 * n_slots physical slots in all; EP rank r holds global slots
 * [r*slots_per_rank, (r+1)*slots_per_rank) as its local slots 0.. . Expert e
 * has n_rep[e] >= 1 replicas at global slots log2phy[e*max_rep + 0 .. n_rep[e]). */
typedef struct {
    const int32_t *log2phy; /* device [E, max_rep]; -1 past n_rep[e] */
    const int32_t *n_rep;   /* device [E] */
    int32_t E, max_rep, n_slots, slots_per_rank;
} kern_moe_place_t;

/* The local slots' routed-expert weights: one contiguous record per slot,
 * `stride` bytes apart, so an expert moves as one copy. A record holds
 *   gate|up [2*inter, hidden] (gate rows first) at byte 0, down [hidden, inter]
 *   at off_down; for F8E4M3 the fp32 scale_inv blocks of gate
 *   [ceil(inter/128), ceil(hidden/128)], then up (same), then down
 *   [ceil(hidden/128), ceil(inter/128)] from off_scale.
 * When inter % 128 == 0, gate|up with its scales is exactly one fused
 * [2*inter, hidden] block-scaled matrix (DeepSeek-V3: inter 2048).
 *
 * mode: how FP8 records are computed (BF16 records ignore it):
 *   KERN_MOE_DEQUANT (0, the CPU spec = transformers): weights dequantized to bf16, bf16 x · bf16 W with
 *     fp32 accumulation, h = bf16(bf16(silu(bf16 g)) · bf16 u), out = bf16(h · downᵀ).
 *   KERN_MOE_FP8 (DeepSeek's inference code / DeepGEMM): xq,xs = act_quant(x) (1×128 groups, the
 *     act_quant op's rule); g|u = FP8×FP8 per 128-K block summed in fp32, × xs·ws into the fp32
 *     accumulator (the gemm op's FP8-x mode); h rounded as above; hq,hs = act_quant(h);
 *     out = bf16(hq·downᵀ) the same way. Rounding points: bf16 g and u, bf16 h, e4m3 codes of x and h;
 *     backends differ only in the fp32 summation order (kernels/cuda/moe_gemm.h). */
typedef enum { KERN_MOE_DEQUANT = 0, KERN_MOE_FP8 = 1 } kern_moe_mode_t;

typedef struct {
    const void *base;       /* record of local slot 0 */
    size_t stride;          /* bytes between records (256-aligned) */
    ms_dtype_t dtype;       /* BF16 or F8E4M3 */
    int32_t hidden, inter;
    size_t off_down, off_scale;
    kern_moe_mode_t mode;   /* FP8 records: dequant (default) or fp8 compute, above */
    int32_t rows_hint;      /* the rows a slot is expected to hold this step (0: unknown): a backend may pick its
                             * kernel by it (CUDA's grouped FP8 GEMM: the token block); results do not depend on it */
} kern_moe_slots_t;

static inline size_t kern_align256(size_t n) { return (n + 255) & ~(size_t)255; }

/* The record layout for dtype/hidden/inter (base NULL). */
static inline kern_moe_slots_t kern_moe_slots_layout(ms_dtype_t dt, int32_t hidden, int32_t inter)
{
    kern_moe_slots_t w = {NULL, 0, dt, hidden, inter, 0, 0, KERN_MOE_DEQUANT, 0};
    size_t es = ms_dtype_size(dt), mat = (size_t)hidden * (size_t)inter * es;
    w.off_down = kern_align256(2 * mat);
    w.off_scale = kern_align256(w.off_down + mat);
    size_t end = w.off_scale;
    if (dt == MS_DT_F8E4M3) end += sizeof(float) * 3 * (size_t)kern_fp8_blocks(hidden) * (size_t)kern_fp8_blocks(inter);
    w.stride = kern_align256(end);
    return w;
}

/* Matrix `which` (0 gate [inter, hidden], 1 up, 2 down [hidden, inter]) of local slot j, as a kern_mat_t view. */
static inline kern_mat_t kern_moe_slot_mat(const kern_moe_slots_t *w, int32_t j, int which)
{
    const char *rec = (const char *)w->base + (size_t)j * w->stride;
    size_t es = ms_dtype_size(w->dtype), mat = (size_t)w->hidden * (size_t)w->inter * es;
    size_t sblk = (size_t)kern_fp8_blocks(w->hidden) * (size_t)kern_fp8_blocks(w->inter);
    kern_mat_t m;
    m.dtype = w->dtype;
    m.rows = which == 2 ? w->hidden : w->inter;
    m.cols = which == 2 ? w->inter : w->hidden;
    m.data = rec + (which == 2 ? w->off_down : (size_t)which * mat);
    m.scale_inv = w->dtype == MS_DT_F8E4M3 ? (const float *)(rec + w->off_scale) + (size_t)which * sblk : NULL;
    return m;
}

/* Workspace bytes kern_ops_t.moe_experts needs for slots of `cap` rows. */
static inline size_t kern_moe_ws_bytes(int64_t cap, int64_t inter)
{
    return (size_t)cap * (size_t)inter * 2 * 2 + 64;
}

/* Workspace bytes with which moe_experts runs all n_local slots in one pass: besides kern_moe_ws_bytes,
 * the fp8 mode's quantized copies of every slot's rows (x and h in e4m3 with their 1x128 scales, h in bf16).
 * Given less, a backend goes in chunks of slots through its context workspace: on the GPU each chunk is
 * four more launches over fewer experts, which at R1's 32 slots of 512 rows cost ~1.5x the layer. The CUDA
 * carve (moe_gemm_fp8.cu kern_cuda_moe_fp8_ws_bytes) is these five pieces, each padded to 256 bytes. */
static inline size_t kern_moe_ws_bytes_all(int64_t n_local, int64_t cap, int64_t hidden, int64_t inter)
{
    const size_t rows = (size_t)(n_local * cap), bh = (size_t)kern_fp8_blocks((int32_t)hidden),
                 bi = (size_t)kern_fp8_blocks((int32_t)inter);
    const size_t fp8 = rows * ((size_t)hidden + 4 * bh + 3 * (size_t)inter + 4 * bi) + 5 * 256;
    const size_t one = kern_moe_ws_bytes(cap, inter);
    return fp8 > one ? fp8 : one;
}

typedef struct kern_ops {
    const char *name; /* "cpu", "cuda" */
    int graphs;       /* 1: graph_begin .. graph_destroy capture and replay CUDA graphs (below); 0: none */

    /* ---- memory and streams ---- */
    ms_status_t (*alloc)(size_t bytes, void **out); /* zero-filled, 256-byte aligned */
    void (*free)(void *p);
    ms_status_t (*upload)(kern_ctx_t *cx, void *dst_dev, const void *src_host, size_t bytes);
    ms_status_t (*download)(kern_ctx_t *cx, void *dst_host, const void *src_dev, size_t bytes);
    ms_status_t (*copy)(kern_ctx_t *cx, void *dst_dev, const void *src_dev, size_t bytes);
    ms_status_t (*memset)(kern_ctx_t *cx, void *dst_dev, int value, size_t bytes);
    /* wait until everything queued on cx has run */
    ms_status_t (*synchronize)(kern_ctx_t *cx);

    /* ---- contexts, events, pinned host memory ---- */
    /* main context on `device` with ws_bytes of workspace and its own fault word (zeroed) */
    ms_status_t (*ctx_create)(int device, size_t ws_bytes, kern_ctx_t **out);
    /* a second stream beside `main`: shares device, library handles and fault word; own workspace */
    ms_status_t (*ctx_create_side)(kern_ctx_t *main, size_t ws_bytes, kern_ctx_t **out);
    void (*ctx_destroy)(kern_ctx_t *cx);
    ms_status_t (*event_create)(kern_ctx_t *cx, kern_event_t *out);
    void (*event_destroy)(kern_event_t ev);
    /* record ev after the work queued so far on cx */
    ms_status_t (*event_record)(kern_ctx_t *cx, kern_event_t ev);
    /* work queued on cx after this waits for ev (no host wait) */
    ms_status_t (*event_wait)(kern_ctx_t *cx, kern_event_t ev);
    /* a host poll, never a wait: 1 when the work before ev's last record has run (or ev was never
     * recorded), 0 while it is pending, -1 on a device error */
    int (*event_query)(kern_event_t ev);
    /* page-locked host memory (plain memory on CPU), zero-filled: the staging
     * that lets upload/download be asynchronous and graph-capturable */
    ms_status_t (*host_alloc)(size_t bytes, void **out);
    void (*host_free)(void *p);
    /* CUDA graphs (DESIGN "The GPU step", 3). graph_begin starts capturing cx's stream: the ops queued on
     * cx after it are recorded, not run, so nothing between begin and end may synchronize, allocate or read
     * device memory on the host; every device pointer and launch shape is baked into the graph. graph_end
     * stops the capture and instantiates it into *out (on a failed capture it ends it and reports the
     * error: the stream is usable again). graph_launch queues one replay on cx; graph_destroy frees one.
     * `graphs` (above) is 1 where these work; the CPU backend has none: they answer MS_ERR_UNSUPPORTED. */
    ms_status_t (*graph_begin)(kern_ctx_t *cx);
    ms_status_t (*graph_end)(kern_ctx_t *cx, kern_graph_t *out);
    ms_status_t (*graph_launch)(kern_ctx_t *cx, kern_graph_t g);
    void (*graph_destroy)(kern_graph_t g);
    /* Device memory shared between processes of one host (CUDA IPC); backends without it answer
     * MS_ERR_UNSUPPORTED (without logging: callers fall back).
     * ipc_export: a handle (KERN_IPC_HANDLE_BYTES) for the allocation `base` (an alloc result);
     * ipc_import: that allocation mapped in this process (another process's handle only);
     * ipc_close: unmap it. What is mapped may be read by copy on any context. */
    ms_status_t (*ipc_export)(void *base, void *handle);
    ms_status_t (*ipc_import)(const void *handle, void **base);
    void (*ipc_close)(void *base);
    /* 1 when the op is implemented by this backend, 0 when it answers MS_ERR_UNSUPPORTED */
    int (*supports_op)(kern_op_t op);
    /* devices this backend sees: CUDA cudaGetDeviceCount (0 without a GPU or driver, never an error); CPU 1 */
    int (*device_count)(void);
    /* free and total bytes of `device`'s memory now: CUDA cudaMemGetInfo on that device; CPU
     * MemAvailable and MemTotal of /proc/meminfo. What the KV pool is sized from (serve.c). */
    ms_status_t (*mem_info)(int device, size_t *free_bytes, size_t *total_bytes);
    /* load_format dummy: fill a [rows, cols] block of dst (row-major, cols elements a row) with the
     * deterministic pseudo-random values kern_dummy_f32 / kern_dummy_fp8 give element (r, c) at position
     * pos0 + r*ld_pos + c of a stream `seed` (ld_pos = the full tensor's row length, so a rank's slice of
     * a tensor holds exactly the values the whole tensor has there, whatever the layout). dt BF16 / F32:
     * offset + scale*(2u-1) (rounded to bf16); F8E4M3: kern_dummy_fp8 bytes (scale, offset unused).
     * Runs on the device (CUDA: one kernel), so no weight byte crosses the host. */
    ms_status_t (*fill_dummy)(kern_ctx_t *cx, void *dst, ms_dtype_t dt, int64_t rows, int64_t cols, int64_t ld_pos,
                              int64_t pos0, uint64_t seed, float scale, float offset);

    /* ---- elementwise / layout ---- */
    /* out[i,:] = table[ids[i],:]. A padded row (id -1) is written as zeros; an id outside [0, vocab) raises
     * KERN_FAULT_TOKEN and is written as zeros too. */
    ms_status_t (*embed)(kern_ctx_t *cx, const int32_t *ids, int32_t n, const bf16_t *table, int64_t vocab,
                         int32_t dim, bf16_t *out);
    /* y = bf16(a + b), n elements */
    ms_status_t (*add)(kern_ctx_t *cx, const bf16_t *a, const bf16_t *b, bf16_t *y, int64_t n);
    /* y = convert(x): F32<->BF16 (round-to-nearest-even), n elements */
    ms_status_t (*cast)(kern_ctx_t *cx, const void *x, ms_dtype_t xdt, void *y, ms_dtype_t ydt, int64_t n);
    /* dst row i = src row idx[i]; rows of row_bytes bytes, contiguous. idx -1: dst row i is left as it was */
    ms_status_t (*gather_rows)(kern_ctx_t *cx, const void *src, const int32_t *idx, int32_t n, size_t row_bytes,
                               void *dst);
    /* out = bf16(bf16(silu(gate)) * up), n elements (transformers: act_fn(gate) * up in bf16) */
    ms_status_t (*silu_mul)(kern_ctx_t *cx, const bf16_t *gate, const bf16_t *up, bf16_t *out, int64_t n);

    /* ---- normalization / projection ---- */
    /* y[r] = bf16(w * bf16(x[r] * rsqrt(mean(x[r]^2) + eps)))   (fp32 statistics) */
    ms_status_t (*rmsnorm)(kern_ctx_t *cx, const bf16_t *x, int64_t ldx, const bf16_t *w, bf16_t *y, int64_t ldy,
                           int32_t rows, int32_t dim, float eps);
    /* Residual add fused with the next RMSNorm: per row x[r] := bf16(x[r] + res[r]), then
     * y[r] = rmsnorm(x[r]) as rmsnorm above; bit-identical to add followed by rmsnorm. Rows are dim wide
     * and contiguous (x, res, y: [rows, dim]); y must not alias x or res. */
    ms_status_t (*add_rmsnorm)(kern_ctx_t *cx, bf16_t *x, const bf16_t *res, const bf16_t *w, bf16_t *y, int32_t rows,
                               int32_t dim, float eps);
    /* rmsnorm (res NULL) or add_rmsnorm (res set: x[r] := bf16(x[r] + res[r]) first, res rows dim wide and
     * contiguous; y must not alias x or res) whose bf16 output is also act_quant'ed: y exactly as that op,
     * then q, scale = act_quant(y) (1x128 groups of the bf16 y values, the act_quant rule; q row r at r*ldq,
     * scale[r*lds + g]). Bit-identical to the norm op followed by act_quant. Without res, y may be x (in
     * place, as rmsnorm). What feeds an FP8-activation GEMM (the dense fp8 mode) quantized in the norm's pass. */
    ms_status_t (*rmsnorm_quant)(kern_ctx_t *cx, bf16_t *x, int64_t ldx, const bf16_t *res, const bf16_t *w, bf16_t *y,
                                 int64_t ldy, int32_t rows, int32_t dim, float eps, uint8_t *q, int64_t ldq,
                                 float *scale, int64_t lds);
    /* y = x · Wᵀ per batch, with strides, epilogue and FP8 activations: see kern_gemm_t. */
    ms_status_t (*gemm)(kern_ctx_t *cx, const kern_gemm_t *g);
    /* FP8 activation quantization as DeepSeek's act_quant (1×128 per-token groups): for row r and group
     * g (columns 128g..), s = max(amax, 1e-4) / 448, q[r, c] = e4m3(x[r, c] / s) (round to nearest even,
     * saturating), scale[r*lds + g] = s. cols need not be a multiple of 128 (the last group is short). */
    ms_status_t (*act_quant)(kern_ctx_t *cx, const bf16_t *x, int64_t ldx, int32_t rows, int32_t cols, uint8_t *q,
                             int64_t ldq, float *scale, int64_t lds);

    /* ---- attention ---- */
    /* In-place rotary embedding on x[r*ld_row + h*ld_head + 0..dim) for rows r < rows, heads h < heads, at
     * position pos[r], with inv_freq[dim/2] (fp32) and cos/sin scaled by attn_factor then rounded to bf16.
     * interleaved=1 (rope_interleave, V3/R1): channels are pairs (2i, 2i+1); as transformers does, they are
     * first permuted to halves [x0,x2,..,x1,x3,..] and the result stays in that layout (q_pe and k_pe use
     * the same layout, so dot products are unaffected). Rotation in bf16 as transformers:
     * out_i = bf16(bf16(x_i*cos_i) + bf16(rot_i*sin_i)). */
    ms_status_t (*rope)(kern_ctx_t *cx, bf16_t *x, int32_t rows, int32_t heads, int64_t ld_row, int64_t ld_head,
                        const int32_t *pos, const float *inv_freq, float attn_factor, int32_t dim, int32_t interleaved);
    /* cache row slots[i] = [ckv[i*ld_ckv ..] | kpe[i*ld_kpe ..]] in kv's row layout (FP8: one
     * power-of-two scale a token, see kern_kv_t). slot -1: padding, nothing written; a slot outside the
     * cache raises KERN_FAULT_BLOCK and is skipped. */
    ms_status_t (*kv_store)(kern_ctx_t *cx, const kern_kv_t *kv, const bf16_t *ckv, int64_t ld_ckv, const bf16_t *kpe,
                            int64_t ld_kpe, const int32_t *slots, int32_t n);
    /* rope on the rows' k_pe followed by kv_store, in one pass: kpe row i (d_r = kv->d_r values at
     * kpe + i*ld_kpe, one head) is rotated in place at pos[i] exactly as rope(kpe, n, 1, ld_kpe, 0, pos,
     * inv_freq, attn_factor, kv->d_r, interleaved), then the cache rows are written as kv_store. Bit-identical
     * to that sequence (a row is roped whatever its slot; padding as each of the two ops treats it). */
    ms_status_t (*kv_store_rope)(kern_ctx_t *cx, const kern_kv_t *kv, const bf16_t *ckv, int64_t ld_ckv, bf16_t *kpe,
                                 int64_t ld_kpe, const int32_t *slots, int32_t n, const int32_t *pos,
                                 const float *inv_freq, float attn_factor, int32_t interleaved);
    /* For each seq: out rows kv_off .. kv_off+pos0+n_q-1 = the bf16 rows [ckv | kpe] (d_c+d_r wide,
     * dequantized for FP8) of positions 0 .. pos0+n_q-1; with kv_len > 0 only positions kv_pos0 ..
     * kv_pos0+kv_len-1, into rows kv_off .. kv_off+kv_len-1 (a bounded window: prefill attention in chunks).
     * A block-table entry outside [0, n_blocks) raises KERN_FAULT_BLOCK; its rows are written as zeros. */
    ms_status_t (*kv_gather)(kern_ctx_t *cx, const kern_kv_t *kv, const kern_attn_seq_t *seqs, int32_t n_seqs,
                             const int32_t *block_tables, bf16_t *out);
    /* Naive MLA (what transformers computes): per head h, K_h = [k_nope_h ; kpe], V_h = v_h; rounding as
     * transformers' eager attention: s = bf16(bf16(Q·K) * scale), p = bf16(softmax_fp32(s)), out = bf16(p·V)
     * (fp32 sums).
     * q:   [T, H*(dn+dr)] per head [nope dn | roped pe dr]
     * kv:  [S, H*(dn+dv)] (kv_b_proj output over the gathered latents) per head [k_nope dn | v dv]
     * kpe: gathered rows, row r at kpe + r*ld_kpe (dr values, roped)
     * out: [T, H*dv] */
    ms_status_t (*mla_naive)(kern_ctx_t *cx, const bf16_t *q, const bf16_t *kv, const bf16_t *kpe, int64_t ld_kpe,
                             const kern_attn_seq_t *seqs, int32_t n_seqs, int32_t heads, int32_t dn, int32_t dr,
                             int32_t dv, float scale, bf16_t *out);
    /* Paged latent attention, the middle op of absorbed MLA (FlashMLA's shape; the first and last are
     * batched GEMMs q_lat = q_nope·W_UK and o = o_lat·W_UVᵀ per head, see kern_gemm_t):
     *   score_t = (q_lat_h·ckv_t + q_pe_h·kpe_t) * scale   over the seq's cache rows t = 0 .. pos of the query
     *   o_lat_h = Σ_t softmax_fp32(score)_t · ckv_t       fp32 sums, one rounding on store (odt)
     * q_lat: [T, H, d_c] (row t at t*H*d_c) of dtype qdt (F32 or BF16); q_pe: head h of row t at
     * q_pe + t*ld_pe + h*ld_pe_head (dr = kv->d_r roped values, bf16); o_lat: [T, H, d_c] of dtype odt
     * (F32 or BF16); only rows of the given seqs are written. Cache rows are read in kv's layout (FP8
     * dequantized to bf16 values). A block-table entry outside [0, n_blocks) raises KERN_FAULT_BLOCK and
     * its keys are left out of the softmax. */
    ms_status_t (*mla_latent)(kern_ctx_t *cx, const void *q_lat, ms_dtype_t qdt, const bf16_t *q_pe, int64_t ld_pe,
                              int64_t ld_pe_head, const kern_kv_t *kv, const int32_t *block_tables,
                              const kern_attn_seq_t *seqs, int32_t n_seqs, int32_t heads, float scale, void *o_lat,
                              ms_dtype_t odt);

    /* ---- MoE ---- */
    /* noaux_tc router on fp32 logits [T, E]: s = sigmoid, c = s + bias; group score = top-2 sum of c per group;
     * keep the topk_group best groups (ties: lower index), c of the others := 0.0 (as transformers);
     * idx = top_k of c (ties: lower index), sorted by descending c; w = s[idx], normalized when
     * norm_topk_prob (sum + 1e-20), times scaling. idx, w: [T, top_k] */
    ms_status_t (*moe_route)(kern_ctx_t *cx, const float *logits, const float *bias, int32_t T, int32_t E,
                             int32_t n_group, int32_t topk_group, int32_t top_k, int32_t norm_topk_prob, float scaling,
                             int32_t *idx, float *w);
    /* Dispatch layout of the T*K pairs p = t*K + k (expert e = idx[p]) over the layer's placement. Replica
     * rule: the pair goes to replica r = (t + k) % n_rep[e], global slot slot_of_pair[p] = log2phy[e][r]
     * (consecutive tokens and a token's k alternate replicas; replicas hold identical weights and the
     * expert op is row-independent, so the choice never changes a result, whatever the layout).
     * rank_in_slot[p] = pairs q < p of this call with the same slot; slot_counts[s] = pairs per global slot
     * (n_slots entries, all written); load[e] += pairs routed to expert e (int64, accumulated; NULL = none).
     * idx -1 is padding (slot -1, not counted); an expert outside [0,E) or a slot outside [0,n_slots)
     * raises KERN_FAULT_SLOT and the pair becomes padding. */
    ms_status_t (*moe_plan)(kern_ctx_t *cx, const int32_t *idx, int32_t T, int32_t K, const kern_moe_place_t *pl,
                            int32_t *slot_of_pair, int32_t *rank_in_slot, int32_t *slot_counts, int64_t *load);
    /* The same-rank half of a dispatch (all of it in one process): pairs p with slot_of_pair[p] in
     * [slot0, slot0+n_local) land at row (slot - slot0)*cap + rank_in_slot[p] of recv [n_local, cap, D]:
     * recv[row] = x[p / K], row_of_pair[p] = row; every other pair gets row_of_pair -1. recv_count[j] =
     * min(slot_counts[slot0 + j], cap). A pair at rank_in_slot >= cap raises KERN_FAULT_CAPACITY and is
     * dropped (row -1): never a silent truncation. */
    ms_status_t (*moe_scatter)(kern_ctx_t *cx, const bf16_t *x, int32_t T, int32_t K, int32_t D,
                               const int32_t *slot_of_pair, const int32_t *rank_in_slot, const int32_t *slot_counts,
                               int32_t slot0, int32_t n_local, int32_t cap, bf16_t *recv, int32_t *recv_count,
                               int32_t *row_of_pair);
    /* Routed experts in the masked grouped-GEMM shape: x and out are [n_local, cap, hidden]; local slot j
     * runs its record's expert on rows 0 .. counts[j] (device counts) and leaves rows beyond untouched.
     * out row = bf16(down(bf16(bf16(silu(gate x)) * bf16(up x)))) unweighted. A count outside [0, cap]
     * raises KERN_FAULT_CAPACITY and is clamped. ws has kern_moe_ws_bytes(cap, inter), or
     * kern_moe_ws_bytes_all(n_local, cap, hidden, inter) to run every slot in one pass. FP8 records are
     * computed in w->mode (kern_moe_mode_t): dequant, or fp8 (act_quant'ed rows, FP8×FP8). */
    ms_status_t (*moe_experts)(kern_ctx_t *cx, const bf16_t *x, const int32_t *counts, int32_t n_local, int32_t cap,
                               const kern_moe_slots_t *w, bf16_t *out, void *ws, size_t ws_bytes);
    /* out[t] = bf16(Σ over k, in ascending expert id, of rows[row_of_pair[t*K+k]] * w[t*K+k]) with an fp32
     * sum (transformers 5.17's grouped/batched experts path: fp32 products, fp32 sum, one rounding).
     * A pair with row -1 (padding, or dropped by a fault) adds nothing. */
    ms_status_t (*moe_combine)(kern_ctx_t *cx, const bf16_t *rows, const int32_t *row_of_pair, const int32_t *idx,
                               const float *w, int32_t T, int32_t K, int32_t hidden, bf16_t *out);
    /* moe_combine followed by add of the shared expert's output: out[t] = bf16(bf16(Σ) + add[t]) with Σ the
     * moe_combine sum (two roundings, as combine then add). add: [T, hidden]; out may be add (each element
     * is read before it is written) but must not alias rows. Bit-identical to moe_combine then add. */
    ms_status_t (*moe_combine_add)(kern_ctx_t *cx, const bf16_t *rows, const int32_t *row_of_pair, const int32_t *idx,
                                   const float *w, int32_t T, int32_t K, int32_t hidden, const bf16_t *add,
                                   bf16_t *out);

    /* ---- logits ---- */
    /* y[r] = log_softmax(x[r]) in fp32 (max-subtracted, double-free); y may be x (in place: each row is
     * reduced before any of it is written) */
    ms_status_t (*log_softmax)(kern_ctx_t *cx, const float *x, int64_t ld, int32_t rows, int32_t n, float *y);
    /* Sample one token per row of logits [rows, vocab] (ld elements between rows), dt MS_DT_F32 or MS_DT_BF16
     * (bf16 values are read exactly as floats: the same results as casting to fp32 first, so the engine
     * skips the cast unless logits_adjust needs fp32 logits). logprob and the top-N list
     * are under the unmodified distribution (log_softmax of the raw logits). top_ids/top_lp: [rows,
     * KERN_MAX_LOGPROBS], the first n_logprobs filled, descending. A row with nothing to draw from (a NaN
     * or +inf logit, or every logit -inf: its log-sum-exp is not finite) raises KERN_FAULT_LOGITS and gets
     * token -1 and logprob 0, its top-N left as they were; the other rows are unaffected. */
    ms_status_t (*sample)(kern_ctx_t *cx, const void *logits, ms_dtype_t dt, int64_t ld, int32_t rows, int32_t vocab,
                          const kern_sample_t *params, int32_t *tokens, float *logprob, int32_t *top_ids,
                          float *top_lp);
    /* vLLM's logits processing, in place on fp32 logits [rows, vocab] (ld between rows), before sample:
     * first lists[sets[i].at] = sets[i].e for i < n_sets (distinct `at`, each in [0, lists_cap): else
     * KERN_FAULT_BLOCK and the write is skipped); then per row r with adj[r] (list entries e):
     *   l = logits[e.token] + e.bias;
     *   if (e.in_prompt || e.n_out > 0) l = l > 0 ? l / repetition : l * repetition;
     *   l -= frequency * e.n_out + presence * (e.n_out > 0);
     * (vLLM's order: logit_bias, then repetition, frequency and presence penalties); then, when
     * min_p > 0 and temperature > 0, mask_token is set to -inf and every logit with
     * exp((l - max) / temperature) < min_p becomes -inf. A row with no list and min_p 0 is untouched
     * (no pass over its vocabulary). An entry's token outside [0, vocab) raises KERN_FAULT_TOKEN and is
     * skipped. sample's logprobs of an adjusted row are those of the adjusted logits. */
    ms_status_t (*logits_adjust)(kern_ctx_t *cx, float *logits, int64_t ld, int32_t rows, int32_t vocab,
                                 const kern_adjust_t *adj, kern_pen_t *lists, int64_t lists_cap,
                                 const kern_pen_set_t *sets, int32_t n_sets);

    /* ---- speculative decoding ---- */
    /* MTP drafting metadata of a step from its samples, on the device (so a drafting step needs no host
     * round trip between verifying and drafting, and a graph can hold both). Per row r:
     * next[r] from next_src[r]. Per entry s (padding: r0 -1): a = the longest u-prefix with
     * ids[r0+1+u] == tok[j+u] (u < n_verify); rr = n_verify > 0 ? a : last; P = pos + rr;
     * row[s] = r0 + rr; acc[s] = {a, min(N, cover - P)}; for c in 1..N-1, p = P + c, while p < cover:
     * chain_pos = p, chain_slot = blocks[blk_off + p / bs] * bs + p % bs, chain_seqs {q_off s, n_q 1,
     * pos0 p, blk_off}; past cover: pos P, slot -1, n_q 0. A block id read is not range-checked here
     * (the plan check covers the table). */
    ms_status_t (*mtp_prep)(kern_ctx_t *cx, const kern_mtp_prep_t *p);
} kern_ops_t;

extern const kern_ops_t kern_cpu_ops;

/* The common case of the gemm op: one GEMM, natural weight strides, no epilogue:
 * y[m, 0..w->rows) = x[m, 0..w->cols) · Wᵀ. */
static inline ms_status_t kern_gemm_plain(const kern_ops_t *k, kern_ctx_t *cx, const void *x, ms_dtype_t xdt,
                                          int64_t ldx, const kern_mat_t *w, void *y, ms_dtype_t ydt, int64_t ldy,
                                          int32_t m)
{
    kern_gemm_t g = {.x = x, .w = w, .y = y, .xdt = xdt, .ydt = ydt, .m = m, .ldx = ldx, .ldy = ldy};
    return k->gemm(cx, &g);
}

/* MS_OK when backend k implements every op of ops[0..n); otherwise
 * MS_ERR_UNSUPPORTED naming the first missing op and the backend. */
ms_status_t kern_require_ops(const kern_ops_t *k, const kern_op_t *ops, int n);

/* The dtype, mode and stride checks of a gemm call, shared by the backends (MS_ERR_UNSUPPORTED or
 * MS_ERR_INVALID naming the problem; MS_OK when the call is well formed). */
ms_status_t kern_gemm_check(const kern_gemm_t *g);

/* Pick a backend by name ("cpu" or "cuda"). A backend not compiled in is
 * MS_ERR_UNSUPPORTED with a message saying so. */
ms_status_t kern_backend_get(const char *name, const kern_ops_t **out);
/* Devices the named backend sees; 0 when it is not compiled in or unknown, without logging an error
 * (for "auto" choices: a CPU-only build is not a fault there). */
int kern_backend_devices(const char *name);

/* The sampler's counter-based random number: uniform in [0,1), a pure
 * function of (seed, position). Shared by all backends so they agree. */
KERN_HOST_DEVICE static inline double kern_rng_uniform(uint64_t seed, int64_t position)
{
    /* splitmix64 finalizer over a mix of seed and position (two rounds so
     * adjacent positions of one seed decorrelate). */
    uint64_t z = seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(position + 1));
    for (int i = 0; i < 2; i++) {
        z += 0x9e3779b97f4a7c15ull;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
    }
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

/* load_format dummy's values (kern_ops_t.fill_dummy), shared by all backends so a dummy model computes
 * the same on each. BF16/F32: uniform in offset ± scale. FP8 e4m3: a random sign and a magnitude in
 * [0.25, 3.75] (exponent fields 5..8: no NaN, no subnormal; rms ≈ 1.6), so the tensor's scale_inv sets
 * the weights' size. */
KERN_HOST_DEVICE static inline float kern_dummy_f32(uint64_t seed, int64_t pos, float scale, float offset)
{
    return offset + scale * (float)(2.0 * kern_rng_uniform(seed, pos) - 1.0);
}
KERN_HOST_DEVICE static inline uint8_t kern_dummy_fp8(uint64_t seed, int64_t pos)
{
    uint32_t h = (uint32_t)(kern_rng_uniform(seed, pos) * 4294967296.0);
    return (uint8_t)(((h >> 24) & 0x80u) | (0x28u + (h & 0x1fu)));
}

#ifdef __cplusplus
}
#endif
#endif
