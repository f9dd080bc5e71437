/* engine.h — one rank's inference engine: weights, paged latent KV cache and
 * the forward pass, driven one step plan at a time (proto/plan.h).
 *
 * A step mixes sequences freely: prefill chunks (n_tokens > 1, pos = tokens
 * already cached) and decode steps (n_tokens = 1). Each sequence's KV lives
 * in the blocks its block table lists (rank 0's allocator owns the table; the
 * engine owns the storage). Sequences flagged PROTO_SEQ_SAMPLE get a token.
 *
 * Lifetime: engine_create borrows `comm` (it must outlive the engine) and
 * copies par and opts; engine_destroy frees everything the engine made.
 * Not thread-safe: one thread drives an engine. */
#ifndef MS_ENGINE_H
#define MS_ENGINE_H

#include <stddef.h> /* proto/plan.h uses size_t */
#include "proto/plan.h"
#include "status.h"
#include "worker/comm.h"
#include "worker/model_config.h"
#include "worker/par.h"
#include "worker/placement.h"

typedef enum {
    ENGINE_MLA_AUTO = 0, /* prefill chunks naive (transformers' form), decode absorbed */
    ENGINE_MLA_NAIVE,    /* every sequence naive (a reference; needs max_naive_ctx room) */
    ENGINE_MLA_ABSORBED, /* every sequence absorbed over the paged cache */
} engine_mla_t;

typedef struct {
    int kv_blocks;           /* blocks in the paged cache (per layer) */
    int block_size;          /* tokens per block, e.g. 32 (64 = FlashMLA's page) */
    int kv_fp8;              /* 1: FP8 latent rows with per-128 scales (kv_cache_config.dtype fp8); 0: BF16 */
    int max_batch;           /* sequences per step (slots) */
    int max_tokens_per_step; /* fed tokens per step */
    const char *backend;     /* "cpu" (default) or "cuda" */
    int device;              /* the backend's device ordinal (CUDA: the GPU this rank uses) */
    int load_dummy;          /* load_format dummy: no weight file is read, weights are made on the device
                              * (weights.h); config.json alone describes the model */
    engine_mla_t mla;
    int moe_fp8;             /* FP8 routed experts in the fp8 mode (kern_moe_mode_t; runtime cfg_moe_fp8), else dequant */
    int dense_fp8;           /* FP8 dense linears take act_quant'ed input (fwd_linear; runtime cfg_dense_fp8) */
    int max_naive_ctx;       /* gathered latent rows per step for the naive path; 0 = sizing_naive_ctx()
                              * (bounded, never the whole pool). In AUTO, prefill seqs beyond it fall back
                              * to the absorbed path. */
    /* MoE (placement.h) */
    int num_slots;           /* moe_config.load_balancer.num_slots; 0 = n_routed_experts */
    const int32_t *assignment; /* [num_hidden_layers][num_slots] expert per global slot, NULL = default;
                                * borrowed during engine_create only */
    int moe_max_num_tokens;  /* moe_config.max_num_tokens: rows per expert slot; 0 = the worst case
                              * (worker/sizing.h sizing_moe_slot_cap) */
    int max_seq_len;         /* longest sequence (bounds the per-slot penalty lists); 0 = the whole KV pool */
    const struct kern_ops *ops; /* tests: this ops table instead of `backend` (e.g. a counting wrapper); borrowed */
    int mtp_drafts;          /* speculative_config (MTP): draft tokens per step, 1..PROTO_MAX_DRAFT; 0 = off.
                              * Needs the checkpoint's MTP module (worker/forward_mtp.h). */
    /* cuda_graph_config (worker/step_graph.h): a decode-only step of n sequences replays the CUDA graph
     * captured at creation for batch n, or with graph_padding for the smallest captured size above n
     * (padding rows are no-ops); other steps (prefill, mixed, larger, penalties, MTP) run eagerly.
     * Sizes above max_batch / max_tokens_per_step are dropped. Graphs need a backend with graphs
     * (CUDA) and a device-only data plane (one rank): elsewhere the engine logs why and runs eagerly. */
    int n_graph_sizes;          /* 0 = no graphs */
    const int *graph_sizes;     /* ascending; borrowed during engine_create only */
    int graph_padding;
    int graph_emulate;          /* tests: pad such steps exactly as for a graph, but run them eagerly (any
                                 * backend, nothing captured): the padding is checked where graphs cannot be */
} engine_opts_t;

/* A fault-word bit of no op: engine_inject_fault's, so a test can tell it from
 * a real data fault (kernels.h KERN_FAULT_* use the low bits). */
#define ENGINE_FAULT_INJECTED (1u << 31)
/* engine_inject_seq_fault's ENGINE_INJECT_FAULT: a fault-word bit that its slot's rows raised. */
#define ENGINE_FAULT_INJECTED_SEQ (1u << 30)
enum {
    ENGINE_INJECT_FAULT = 1, /* the entry's rows raise a data fault (as an op that flags a row would) */
    ENGINE_INJECT_TOKEN = 2, /* its first row is fed a token id outside the vocabulary after the plan check
                              * (as a bug between check and upload would): embed raises KERN_FAULT_TOKEN */
    ENGINE_INJECT_MTP_NAN = 3, /* MTP: the draft passes' input rows of the entry are NaN (its main pass is not):
                                * the module's sampler faults on its rows; the step and the sequence go on, without
                                * that entry's drafts */
};

typedef struct engine engine_t;

/* Load MODEL_DIR (config.json + safetensors) for this rank's share (par) and
 * allocate the cache and activations. */
ms_status_t engine_create(const char *model_dir, const par_t *par, const engine_opts_t *opts, comm_t *comm,
                          engine_t **out);
void engine_destroy(engine_t *e);

/* Test hook: the next step's device fault word starts as `bits` instead of
 * 0, so that step runs in full and then fails exactly as a data fault
 * raised by an op would (MS_ERR_DATA). */
void engine_inject_fault(engine_t *e, uint32_t bits);
/* Test hook: in the next step the entry of `slot` (when this rank runs it)
 * fails alone, as `kind` (ENGINE_INJECT_*) says; the step's other entries
 * are computed and returned as usual, and its result carries the fault. */
void engine_inject_seq_fault(engine_t *e, int slot, int kind);

/* Run one step: one upload of the step's metadata, the forward pass, one
 * download of its results and the fault word, one synchronize
 * (worker/step_io.h). results has plan->n_seqs entries, in plan order: slot, the
 * sampled token (-1 when the seq had no PROTO_SEQ_SAMPLE or is another
 * attention-DP rank's), its logprob and top-N logprobs. A bad plan as a
 * whole (header, too many sequences or tokens) is MS_ERR_INVALID and nothing
 * is computed. A bad entry (a token id out of vocabulary, a block id out of
 * range, bad sampling knobs, a bad slot...) is that sequence's alone: the
 * step runs without it and its result has fault PROTO_FAULT_PLAN and token
 * -1. A data fault raised by an op during the step (the device fault word,
 * kernels.h) that the engine traces to the rows of some sequences (a bad
 * token id in embed, a bad cache row or block, a sampled row of non-finite
 * logits) fails only those (their
 * results' fault, PROTO_FAULT_*); one it cannot trace (MoE slot or capacity)
 * is MS_ERR_DATA naming the fault after the whole step ran on every rank
 * (faulty rows were padding, every collective completed): no token is
 * returned, the caller ends the step's requests, and the ranks stay in step.
 * Either way a failed sequence's per-slot state (penalty lists) is dropped.
 *
 * MTP (opts.mtp_drafts > 0): a PROTO_SEQ_VERIFY sequence samples every fed
 * row and its result carries the accepted drafts before `token`; a
 * PROTO_SEQ_DRAFT one gets the module's drafts for the next step (plan.h). */
ms_status_t engine_step(engine_t *e, const proto_plan_t *plan, proto_result_t *results);

/* engine_step in two halves (what overlap scheduling needs: runtime/serve_loop.c).
 * engine_step_launch checks the plan, uploads the step's metadata, queues the forward pass and the
 * download of its results; it first completes the step launched before, if any (a
 * PROTO_SEQ_FEED_LAST entry feeds the token this rank sampled for its slot there). The plan is copied:
 * the caller's buffer may change before the wait. It returns MS_OK, or the step's failure: a
 * non-survivable one (anything but MS_ERR_INVALID / MS_ERR_DATA) means the step failed part-way and
 * the caller must abort at once (other ranks may sit in its collectives). At most two steps are held
 * (MS_ERR_INTERNAL, nothing launched, for a third).
 * engine_step_wait takes the oldest launched step: synchronizes, reads its results (its plan's n_seqs
 * entries, as engine_step) and returns its status (MS_ERR_INVALID, MS_ERR_DATA as engine_step).
 * engine_prompt_lp then reads that step's prompt logprobs until the next launch or wait. On the CPU
 * backend the ops run as they are called, so the launch does the work and the wait only hands it
 * back. */
ms_status_t engine_step_launch(engine_t *e, const proto_plan_t *plan);
ms_status_t engine_step_wait(engine_t *e, proto_result_t *results);

/* The fp32 logits (vocab_size values, what sampling saw: lm_head output
 * rounded to bf16 as transformers) of plan sequence `seq_index` of the last
 * step; MS_ERR_NOT_FOUND if that sequence was not sampled on this rank. */
ms_status_t engine_logits(engine_t *e, int seq_index, float *out);

/* MTP: the fp32 logits of the module's last pass (what its greedy draft was taken from: with one
 * draft token, the draft distribution of the position after the step's sampled token) for plan
 * sequence `seq_index`, a PROTO_SEQ_DRAFT entry of the last step; MS_ERR_NOT_FOUND otherwise. */
ms_status_t engine_mtp_logits(engine_t *e, int seq_index, float *out);

/* The prompt logprobs (*n entries, borrowed until the next step) of plan
 * sequence `seq_index` of the last completed step: one per row of a
 * PROTO_SEQ_PROMPT_LP entry this rank ran whose next token is known
 * (proto_seq_plp_rows), in position order; *n = 0 otherwise. */
const proto_plp_t *engine_prompt_lp(const engine_t *e, int seq_index, int *n);

const mcfg_t *engine_config(const engine_t *e);

/* cuda_graph_config at work: the sizes captured (or emulated), the steps run at one of them (replayed, or
 * eagerly when they adjust logits or emulate) and the padding rows those steps added. */
void engine_graph_stats(const engine_t *e, int *n_graphs, long *steps, long *pad_rows);

/* The routed-pair counters load[layer][expert] (num_hidden_layers * n_routed_experts
 * int64, dense layers 0): (token, k) pairs this rank's tokens routed to each
 * expert since creation (a device buffer the MoE layers bump; read between
 * steps, no step is stopped). Summed over the ranks that route disjoint tokens
 * (DP ranks, TP slices) it is the job's load. */
ms_status_t engine_expert_load(engine_t *e, int64_t *out);

/* The expert placement in force (placement.h); NULL for a dense model. */
const placement_t *engine_placement(const engine_t *e);

/* ---- EPLB (worker/eplb_move.c); between steps only ---- */
/* The backend and data plane (borrowed). */
void engine_backend(engine_t *e, const struct kern_ops **k, struct kern_ctx **cx, comm_t **comm);
/* Device address and size of local slot j's record in MoE layer `layer`
 * (one contiguous record: fused gate|up, down, FP8 scales). NULL for a
 * dense layer or j out of range. */
/* The main model's one weight allocation (slot records sit at the same offsets in it on every rank of
 * a layout: the load balancer's CUDA IPC moves read peers' records there). */
void *engine_weights_base(const engine_t *e, size_t *bytes);
void *engine_slot_record(engine_t *e, int layer, int j, size_t *bytes);
/* Flip `layer` to a new placement: row = its expert per global slot
 * (n_slots); the n local slots listed get their record from staged[i]
 * (device copies, local), then the tables are rebuilt and uploaded. On an
 * error the old placement stays in force. */
ms_status_t engine_placement_flip(engine_t *e, int layer, const int32_t *row, const int *local_slots,
                                  void *const *staged, int n);

/* Bytes this engine allocated: weights, the activation arena, the KV cache
 * (what worker/sizing.h predicts from config.json alone). */
void engine_memory(const engine_t *e, size_t *weights, size_t *activations, size_t *kv);

#endif
