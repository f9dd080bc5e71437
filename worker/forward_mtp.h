/* forward_mtp.h — DeepSeek's multi-token-prediction (MTP) module as a draft
 * model for speculative decoding (internal to worker/; engine.c is its only
 * caller). Reference: shared/reference/deepseek-v3.md section 5.
 *
 * After the main model's forward pass and sampling of a step (the main
 * model's final-normed hidden rows h are still in f->xn), pass 1 runs the
 * module over every token row of the step:
 *
 *   u[r] = eh_proj([RMSNorm_e(Embed(next[r])) ; RMSNorm_h(h[r])])
 *   u    = DecoderBlock(u) at the row's position, over the module's own KV cache
 *   draft[s] = argmax(head(RMSNorm_shared(u[row_s])))   for each drafting seq s
 *
 * next[r] is the token that follows row r's (the next fed token, or the
 * sampled one where it is the last known); filling the module's cache for
 * every position is what lets it attend over the whole context. Passes 2..N
 * chain the module autoregressively (TensorRT-LLM's rule for N above the
 * checkpoint's module count): one row per drafting seq, its previous pass's
 * output residual as h and its previous draft as the token, one position on.
 *
 * The module's KV cache has the main cache's geometry (same block ids, same
 * block tables): rank 0's allocator covers it with the same blocks, and a
 * rejected position is rolled back the same way, by not advancing the
 * sequence (every later step rewrites those rows before any query reads
 * them). Drafts are greedy (argmax): verification samples the main model
 * and compares, which is rejection sampling against a point-mass draft and
 * keeps the target distribution exactly (engine.c).
 *
 * The module runs through the same layer code as the main model
 * (fwd_attention, fwd_moe) on a view of fwd_t whose weights, KV cache and
 * placement are the module's; activations are shared but for xn, so the
 * main pass's final-normed rows outlive the passes (prompt logprobs read
 * them after the step). */
#ifndef MS_FORWARD_MTP_H
#define MS_FORWARD_MTP_H

#include "proto/plan.h"
#include "worker/forward.h"

typedef struct {
    int N;                /* drafts per step, 1..PROTO_MAX_DRAFT */
    wmtp_t m;             /* the module (the checkpoint's first; reused for every pass) */
    placement_t pl;       /* its expert placement (one layer, default assignment, the main model's num_slots) */
    kvc_t kv;             /* its KV cache (one layer) */
    int T_max, B_max;
    void *mem;            /* one device allocation: */
    size_t bytes;
    int32_t *pl_log2phy, *pl_nrep, *pl_phy2log; /* device placement tables */
    int64_t *load;        /* (E) routed pairs of the module's MoE */
    bf16_t *eh;           /* (T, 2D) eh_proj input */
    bf16_t *xn;           /* (T, D) the module's normed rows (the passes' view has its own: f->xn survives them) */
    bf16_t *hprev;        /* (B, D) output residual rows of the last pass (the next pass's h) */
    bf16_t *lg16;         /* (B, V) the last pass's head output (its own: the main pass's logits stay readable;
                           * sampled as bf16, engine_mtp_logits converts on the host) */
    /* made by mtp_prep each step (kernels.h) */
    int32_t *next;        /* (T) pass 1's token per row */
    int32_t *row;         /* (B) the drafting row of each entry */
    int32_t *chain_pos, *chain_slot; /* (N-1, B) passes 2..N */
    kern_attn_seq_t *chain_seqs;     /* (N-1, B) */
    int32_t *chain_pad;   /* (B) -1 real entry, 0 padding */
    kern_sample_t *sp;    /* (B) greedy, set at creation */
    float *s_lp;          /* sampler outputs nobody reads */
    int32_t *s_top_ids;
    float *s_top_lp;
    /* the transferred block (layout in forward_mtp.c) and its pinned host mirror */
    void *io;
    size_t io_bytes, io_acc, io_fault, io_seqs, io_next_src;
    void *stage;
} mtp_t;

/* Host side of one step's MTP work: the engine fills next_src and seqs before mtp_upload; drafts, acc
 * and fault are valid after mtp_download and the step's synchronize. Pointers into t's staging block. */
typedef struct {
    int T;                /* rows of pass 1 (the step's rows on this rank, padding included) */
    int n_d;              /* entries (sampled sequences that verify or draft, padding included) */
    int32_t *next_src;    /* (T) kern_mtp_prep_t.next_src */
    kern_draft_t *seqs;   /* (n_d) */
    const int32_t *drafts;/* (N, n_d) pass-major */
    const int32_t *acc;   /* (n_d, 2) accepted drafts, drafts to verify next step */
    uint32_t *fault;      /* the module's KERN_FAULT_* bits */
} mtp_step_t;

/* Load module 0 of the checkpoint and allocate its cache and buffers.
 * num_slots as engine_opts_t; kv geometry as the main cache's. */
ms_status_t mtp_create(mtp_t *t, const fwd_t *f, const ckpt_t *ck, int N, int max_seqs, int num_slots, int kv_blocks,
                       int block_size, ms_dtype_t kv_dtype);
void mtp_destroy(mtp_t *t, const kern_ops_t *k);

/* Bytes of the module's device buffers (mtp_create's allocation, without its weights or cache) for
 * T rows and B sampled rows per step, N drafts, its one-layer placement of n_slots slots and a replica
 * table of stride rep_cap (the main model's fwd_t.rep_cap; worker/sizing.c). */
size_t mtp_buffer_bytes(const mcfg_t *c, int n_slots, int rep_cap, int T, int B, int N);

/* The host arrays of s point into t's staging block (valid until the next call). */
void mtp_step_begin(mtp_t *t, int T, int n_d, mtp_step_t *s);
/* Rows [r_from, r_to) and entries [e_from, e_to) of s as padding (a step padded to a graph's size). */
void mtp_pad(mtp_step_t *s, int r_from, int r_to, int e_from, int e_to);
/* Queue the upload of s's inputs (and a zero fault word). */
ms_status_t mtp_upload(mtp_t *t, const fwd_t *f, const mtp_step_t *s);
/* Queue mtp_prep and the N passes on the main pass's f->xn and samples f->tok (st: the main pass's step,
 * whose seqs/pos/slots/blocks/pad pass 1 reuses) for n_d entries. Device work only (no transfer, no
 * synchronize): a step graph captures it after the main pass. Every rank runs all N passes, with or
 * without rows, so the MoE collectives line up. */
ms_status_t mtp_run(mtp_t *t, fwd_t *f, const fwd_step_t *st, int n_d);
/* Queue the download of the results (drafts, acc, fault) into the staging block. */
ms_status_t mtp_download(mtp_t *t, const fwd_t *f);

#endif
