/* forward.h — the DeepSeek-V3 forward pass of one rank over one step's
 * tokens (internal to worker/; engine.c is its only caller).
 *
 * Tokens of all sequences of a step are concatenated (T rows); every per-token
 * op (norms, GEMMs, router, MoE) runs once over all of them, and attention
 * gets per-sequence descriptors (kern_attn_seq_t). The model code only calls
 * the kernels ops table and worker/comm (DESIGN invariant 1 and 2): it reads
 * no tensor memory, MoE counts included (they stay on the device; see
 * comm.h's comm_moe_t).
 *
 * All activations live in one device allocation made at creation for the
 * largest step (T_max tokens, B_max sequences): llm.c's one-allocation-per-
 * lifetime style. Shapes below use T_max rows unless said otherwise. */
#ifndef MS_FORWARD_H
#define MS_FORWARD_H

#include <stdbool.h>

#include "kernels/kernels.h"
#include "worker/comm.h"
#include "worker/kv_cache.h"
#include "worker/model_config.h"
#include "worker/par.h"
#include "worker/placement.h"
#include "worker/rope_params.h"
#include "worker/weights.h"

typedef struct {
    const mcfg_t *c;
    par_t par;
    const kern_ops_t *k;
    kern_ctx_t *cx;
    comm_t *comm;     /* borrowed */
    weights_t *w;     /* borrowed */
    kvc_t *kv;        /* borrowed */
    const placement_t *pl; /* borrowed: the host tables the device copies below came from */
    rope_params_t rp;

    /* dimensions (local to this rank) */
    int D, V, H, dn, dr, dv, dc, qk, q_lora, I, E, K, Im, Is;
    int T_max, B_max, S_max, blk_max;
    int moe_cap;      /* rows per local expert slot in the MoE receive buffer */
    int rep_cap;      /* replica stride of pl_log2phy: max(the placement's max_rep, ep_size), so a
                       * rebalanced placement (a rank holds an expert at most once) fits the same table */

    void *mem;        /* the activation allocation */
    size_t bytes;
    /* constants */
    float *inv_freq;  /* (dr/2) */
    int32_t *pl_log2phy; /* (L, E, rep_cap) device copy of the placement (placement.h), -1 padded */
    int32_t *pl_nrep;    /* (L, E) */
    int32_t *pl_phy2log; /* (L, n_slots) */
    int64_t *load;       /* (L, E) routed (token, k) pairs per expert since creation, this rank's tokens */
    int32_t *neg_row;    /* (K) all -1: the expert ids a padding row's routing is overwritten with */
    /* residual stream and attention */
    bf16_t *x;        /* (T, D) residual */
    bf16_t *xn;       /* (T, D) normed input of attention / FFN */
    int ld_qkva;      /* row stride of qa and kva: q_lora + dc + dr (one [T, ld_qkva] region) */
    bf16_t *qa;       /* (T, q_lora) row stride ld_qkva */
    bf16_t *q;        /* (T, H*qk) per head [nope | roped pe] */
    bf16_t *kva;      /* (T, dc+dr) row stride ld_qkva, = qa + q_lora: [RMSNorm_kva(c_kv) | RoPE(k_pe)] after
                       * normalization in place */
    bf16_t *att;      /* (T, H*dv) */
    float *of32;      /* (T, D) o_proj partial sums (fp32 so a TP all-reduce rounds once) */
    bf16_t *tb;       /* (T, D) attention / FFN output before the residual add */
    bf16_t *gkv;      /* (S_max, dc+dr) gathered latents (naive path) */
    bf16_t *kvb;      /* (S_max, H*(dn+dv)) kv_b_proj over them */
    bf16_t *qlat;     /* (T, H, dc) q_nope·W_UK (absorbed path; shares memory with gkv/kvb: used before them) */
    bf16_t *olat;     /* (T, H, dc) latent attention output */
    /* FFN */
    bf16_t *g, *u;    /* (T, max(I, Is)) gate / up, then silu(gate)*up in g */
    float *rlog;      /* (T, E) router logits fp32 */
    int32_t *ridx;    /* (T, K) */
    float *rw;        /* (T, K) */
    comm_moe_t moe;                   /* dispatch/combine buffers: plan (T*K), recv (Sl, moe_cap, D), counts */
    bf16_t *eout;                     /* (Sl, moe_cap, D) expert outputs, slot-grouped like moe.recv */
    void *moe_ws;
    size_t moe_ws_bytes;
    /* dense fp8 mode (fwd_linear): FP8 linears take x act_quant'ed 1x128, as the routed experts' fp8 mode */
    int dense_fp8;
    int Kq;                           /* the widest input a linear quantizes: max(D, q_lora, H*dv, I, Is) */
    uint8_t *xq;                      /* (T, Kq) e4m3 rows of the last quantized input */
    float *xqs;                       /* (T, Kq/128) their scales */
    const bf16_t *xq_of;              /* the x they were quantized from (a requant 0 on another x requantizes) */
    int xq_k;                         /* ... and its width (the K of that linear) */
    int xq_fresh;                     /* 1: a norm just wrote xq for xq_of (fwd_norm); the next FP8 linear of
                                       * that x takes it even with requant 1 */
    /* fused paths, each bit-identical to the sequence it replaces; on unless the environment says 0 (read
     * at fwd_create, so a GPU failure can be worked around without a rebuild) */
    int fuse_combine_add;             /* MS_FUSE_COMBINE_ADD: the shared expert's add inside the MoE combine */
    int fuse_norm_quant;              /* MS_FUSE_NORM_QUANT: a norm that feeds an FP8 linear (dense fp8 mode)
                                       * quantizes its output in the same kernel (rmsnorm_quant) */
    int fuse_rope_kv;                 /* MS_FUSE_ROPE_KV: k_pe's rope inside the cache store (kv_store_rope) */
    /* MS_SHARED_OVERLAP (CUDA, MoE layers with a shared expert, combine_add fused): the shared expert runs on a
     * second stream, forked after the post-attention norm and joined before the combine, beside the router,
     * dispatch and routed experts — the same ops on the same inputs, so the same bits */
    kern_ctx_t *side;
    kern_event_t ev_fork, ev_join;
    bf16_t *routed, *shared;          /* (T, D) */
    /* logits and sampling, B_max rows */
    bf16_t *lastn;                    /* (B, D) final-normed rows of the sampled tokens */
    bf16_t *lg16;                     /* (B, V) lm_head output (bf16, as transformers) */
    float *logits;                    /* (B, V) the same values in fp32 (cast only in steps that adjust them) */
    int32_t *tok;                     /* (B) */
    float *lp;                        /* (B) */
    int32_t *top_ids;                 /* (B, KERN_MAX_LOGPROBS) */
    float *top_lp;                    /* (B, KERN_MAX_LOGPROBS) */
    /* The step I/O block (worker/step_io.h): the engine points the fields
     * below into it each step (results first, then the uploaded metadata). */
    void *io;
    size_t io_bytes;                  /* capacity: step_io_layout(T_max, B_max, B_max, blk_max) */
    /* step metadata uploaded by the engine */
    int32_t *ids, *pos, *slots;       /* (T) */
    kern_attn_seq_t *seqs;            /* (B) naive seqs first, then absorbed */
    int32_t *blocks;                  /* (blk_max) */
    int32_t *last_row;                /* (B) token row of each sampled seq */
    kern_sample_t *sp;                /* (B) */
    kern_adjust_t *adj;               /* (B) logits_adjust rows */
    int32_t *pad;                     /* (T) 0 = padding row, -1 = real (read when fwd_step_t.padded) */
} fwd_t;

/* Carving one allocation into 256-byte aligned pieces; with base NULL only the size is counted (llm.c's
 * one allocation per lifetime: forward.c's activations, forward_mtp.c's buffers). */
typedef struct {
    char *base;
    size_t off;
} fwd_carve_t;
void *fwd_carve(fwd_carve_t *cv, size_t bytes);

/* What the engine uploaded for this step. */
typedef struct {
    int T;         /* tokens (rows) */
    int n_naive;   /* seqs[0..n_naive) take the naive MLA path */
    int n_abs;     /* seqs[n_naive..n_naive+n_abs) the absorbed path */
    int S_naive;   /* gathered latent rows for the naive seqs */
    int n_sample;  /* rows of last_row / sp */
    /* Rows padded to a captured graph's size (worker/step_graph.h): padding rows (token id -1, cache slot -1,
     * attention seqs with no query row; their sampled rows copy row 0) are no-ops in every op but the router,
     * whose choice for them is masked to -1 (f->pad) so they take no MoE capacity and bump no load counter. */
    bool padded;
    /* logits_adjust (worker/penalty.h): run when adjust (rows adj) or n_sets > 0 */
    bool adjust;
    const kern_pen_set_t *sets;
    int n_sets;
    kern_pen_t *lists;
    int64_t lists_cap;
} fwd_step_t;

/* moe_max_tokens: moe_config.max_num_tokens (TensorRT-LLM: tokens a rank's MoE takes per step), 0 = unset.
 * A token sends at most one row to a slot, so a slot's capacity is min(moe_max_tokens, ep_size * T_max):
 * the worst case of every token of the EP group on one slot when unset. */
ms_status_t fwd_create(fwd_t *f, const mcfg_t *c, const par_t *p, const kern_ops_t *k, kern_ctx_t *cx, comm_t *comm,
                       weights_t *w, kvc_t *kv, const placement_t *pl, int T_max, int B_max, int S_max, int blk_max,
                       int moe_max_tokens);
/* Bytes fwd_create would allocate for these limits (no allocation; worker/sizing.c). */
/* Upload the host placement tables f->pl (all layers) to the device copies;
 * between steps (EPLB flips: worker/eplb_move.c). MS_ERR_INVALID when a
 * placement has more replicas than rep_cap. */
ms_status_t fwd_placement_upload(fwd_t *f);

size_t fwd_bytes(const mcfg_t *c, const par_t *p, const placement_t *pl, int T_max, int B_max, int S_max, int blk_max,
                 int moe_max_tokens);
void fwd_destroy(fwd_t *f);

/* embed → layers → final norm → lm_head → sample (results stay on the device
 * in tok, lp, top_ids, top_lp and logits until the engine downloads them). */
ms_status_t fwd_run(fwd_t *f, const fwd_step_t *st);

/* Point the step metadata and result fields (ids .. top_lp, pad) and the context's fault word into the
 * step I/O block at layout L (worker/step_io.h): what the engine uploads and downloads each step. */
struct step_io_layout;
void fwd_point_io(fwd_t *f, const struct step_io_layout *L);

/* internal pieces (forward_attn.c, forward_moe.c) */
/* MLA of one layer on f->xn (= RMSNorm_input(x), made by the caller's fused add+norm), output in f->tb */
ms_status_t fwd_attention(fwd_t *f, int layer, const fwd_step_t *st);
ms_status_t fwd_moe(fwd_t *f, int layer, const fwd_step_t *st);
/* y = x·Wᵀ for n rows of bf16 x (row stride ldx) into y (ydt, row stride ldy). In the dense fp8 mode an FP8 W
 * with bf16 y takes x act_quant'ed (1x128 e4m3 + scales) and the FP8xFP8 gemm; requant 0 says x is the
 * input the previous fwd_linear quantized, unchanged since (two linears of one input quantize it once). */
ms_status_t fwd_linear(fwd_t *f, const bf16_t *x, int64_t ldx, int n, const kern_mat_t *w, void *y, ms_dtype_t ydt,
                       int64_t ldy, int requant);
/* fwd_linear with an epilogue (KERN_EPI_SILU_MUL: w is a fused [gate | up], y gets n-wide SiLU·mul rows) */
ms_status_t fwd_linear_epi(fwd_t *f, const bf16_t *x, int64_t ldx, int n, const kern_mat_t *w, void *y, ms_dtype_t ydt,
                           int64_t ldy, int requant, kern_epi_t epi);
/* down(silu(gate(xn)) * up(xn)) into out for n rows: the dense MLP; one GEMM over gate_up when the loader
 * fused them (gate_up->data set), else gate, up and silu_mul */
ms_status_t fwd_mlp(fwd_t *f, const kern_mat_t *gate_up, const kern_mat_t *gate, const kern_mat_t *up,
                    const kern_mat_t *down, const bf16_t *xn, int n, bf16_t *out);
/* The norm in front of a linear, rows x dim into y (row stride ldy): add_rmsnorm when res is set (x := x +
 * res first; x, res, y contiguous dim-wide rows) or rmsnorm (x at ldx; y may be x). `next` is the first
 * linear that reads y (NULL: none, or not one that quantizes): in the dense fp8 mode with an FP8 next of
 * width dim, the fused rmsnorm_quant also leaves y's act_quant in xq for it, so fwd_linear skips its own. */
ms_status_t fwd_norm(fwd_t *f, bf16_t *x, int64_t ldx, const bf16_t *res, const bf16_t *w, bf16_t *y, int64_t ldy,
                     int rows, int dim, const kern_mat_t *next);
/* the first linear of a layer's attention (what reads xn: q_a|kv_a, q_a or q; forward_attn.c) and of an
 * MLP (gate|up or gate) */
const kern_mat_t *fwd_attn_first(const fwd_t *f, const wlayer_t *y);
static inline const kern_mat_t *fwd_mlp_first(const kern_mat_t *gate_up, const kern_mat_t *gate)
{
    return gate_up->data ? gate_up : gate;
}
/* the shared experts of an MoE layer on n rows of xn (forward.c, beside the dense MLP it equals) */
ms_status_t fwd_shared_expert(fwd_t *f, const wlayer_t *y, const bf16_t *xn, int n, bf16_t *out);

#endif
