/* serve_internal.h — what runtime/serve.c (bootstrap, roles, shutdown)
 * shares with runtime/serve_loop.c (the engine loops). */
#ifndef MS_SERVE_INTERNAL_H
#define MS_SERVE_INTERNAL_H

#include <mpi.h>
#include <stdbool.h>

#include "config.h"
#include "coordinator/coord.h"
#include "coordinator/output.h"
#include "coordinator/sched.h"
#include "coordinator/tok.h"
#include "proto/transport.h"
#include "worker/engine.h"
#include "worker/sizing.h"

typedef struct serve_out serve_out_t;
typedef struct serve_eplb serve_eplb_t;
typedef struct eplb_window eplb_window_t;

typedef struct {
    const ms_config_t *cfg;
    int rank, size;
    engine_t *engine;
    proto_link_t *link;
    int max_seqs;            /* plan sequences at most (sizes the result buffers) */
    int vocab_size;
    size_t kv_bytes;         /* this rank's KV pool (the startup log and /metrics) */
    /* rank 0 only */
    coord_t *coord;
    sched_t *sched;
    const tok_t *tok;
    int32_t eos_id;
    serve_out_t *out;        /* the output thread (serve_output.c) */
    serve_eplb_t *eplb;      /* expert-load statistics (every rank; NULL for a dense model) */
} serve_ctx_t;

/* Expert-load statistics (serve_eplb.c). create is collective (every rank,
 * it dups MPI_COMM_WORLD); *out stays NULL for a dense model. Rank 0 owns
 * the window the gateway reads. after_step: every rank, after each step's
 * results (plan step `step`, `tokens` sampled). finish: every rank before
 * exiting (completes the reduce in flight; rank 0 writes eplb_dump). */
ms_status_t serve_eplb_create(const ms_config_t *cfg, const mcfg_t *mc, int rank, int ep, serve_eplb_t **out);
eplb_window_t *serve_eplb_window(serve_eplb_t *s);
void serve_eplb_placed(serve_eplb_t *s, const engine_t *e, uint64_t step, bool changed);
/* After engine_create: the placement in force, and (online moves) the mover. */
ms_status_t serve_eplb_engine(serve_eplb_t *s, engine_t *e);
ms_status_t serve_eplb_after_step(serve_eplb_t *s, engine_t *e, uint64_t step, int tokens);
void serve_eplb_poll(serve_eplb_t *s);
bool serve_eplb_pending(const serve_eplb_t *s);
void serve_eplb_finish(serve_eplb_t *s);
void serve_eplb_destroy(serve_eplb_t *s);

/* Rank 0's output thread (serve_output.c): detokenization, stop checks and
 * chunks off the MPI thread. A sequence's out_seq_t belongs to the thread
 * from its first token until serve_out_end (which frees it and releases r). */
ms_status_t serve_out_start(coord_t *coord, serve_out_t **out);
void serve_out_token(serve_out_t *so, out_seq_t *o, const proto_result_t *res, int n_total);
void serve_out_end(serve_out_t *so, out_seq_t *o, req_t *r, req_finish_t why, const char *msg);
/* n prompt-logprob entries for prompt positions pos0.. (copied; out_seq_prompt_lp). */
void serve_out_prompt_lp(serve_out_t *so, out_seq_t *o, int pos0, const proto_plp_t *e, int n);
/* Marks the end of step `step`'s tokens; serve_out_wait returns once the
 * thread processed everything up to that marker. */
void serve_out_step_done(serve_out_t *so, uint64_t step);
void serve_out_wait(serve_out_t *so, uint64_t step);
/* Runs what is queued, then stops the thread. */
void serve_out_stop(serve_out_t *so);

/* One rank's layout and per-step limits for a world of `world` ranks
 * (serve_layout.c); MS_ERR_INVALID naming tp_size / ep_size when they do not
 * fit the world. */
ms_status_t serve_layout(const ms_config_t *cfg, int world, int rank, par_t *par, sizing_limits_t *lim);

/* The configured load balancer against the model (serve_placement.c):
 * MS_ERR_INVALID for a bad one (serve exits 2); *assign is NULL (default
 * placement) or the [num_hidden_layers][num_slots] table built from
 * initial_global_assignments (the caller frees it). */
ms_status_t serve_placement(const ms_config_t *cfg, const mcfg_t *mc, int ep, int rank, int32_t **assign);

/* Rank 0: schedule, step and emit until coord_stop(); then ends every held
 * request (abort) so the gateway can drain. Returns MS_OK on an orderly stop. */
ms_status_t serve_loop_rank0(serve_ctx_t *sc);
/* Rank 0, after the gateway drained: tell the workers to exit. */
ms_status_t serve_shutdown_workers(serve_ctx_t *sc);
/* Workers: follow plans until SHUTDOWN. */
ms_status_t serve_loop_worker(serve_ctx_t *sc);

#endif
