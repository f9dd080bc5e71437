/* eplb_window.h — rank 0's view of expert load for the load balancer, the
 * dashboard and /metrics: routed-token counts per (MoE layer, expert) over a
 * sliding window of engine steps, the placement in force, and the balancer's
 * counters.
 *
 * The window is a ring of chunks, one per statistics interval (each rank's
 * counter delta over `interval` steps, summed over the ranks: the job's
 * load); the window holds the last ceil(window_steps / interval) chunks and
 * their sum. Memory: (chunks + 1) * layers * experts int64 (R1 at the
 * defaults: 21 * 58 * 256 * 8 B = 2.4 MiB).
 *
 * Thread-safe: the engine thread writes (push, placement, counters), the
 * gateway thread reads (JSON, metrics text) under one mutex. */
#ifndef MS_EPLB_WINDOW_H
#define MS_EPLB_WINDOW_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "status.h"

typedef struct eplb_window eplb_window_t;

typedef struct {
    int n_layers;       /* model layers (counter rows); only MoE ones are reported */
    const int *moe;     /* n_layers flags: 1 = MoE layer (borrowed during create) */
    int n_experts, n_group, ep_size, n_slots;
    int window_steps, interval;
} eplb_window_opts_t;

ms_status_t eplb_window_create(const eplb_window_opts_t *o, eplb_window_t **out);
void eplb_window_destroy(eplb_window_t *w);

/* One interval's job-wide counter delta [n_layers][n_experts], ending at
 * engine step `step`. */
void eplb_window_push(eplb_window_t *w, const int64_t *delta, uint64_t step);
/* The placement now serving: phy2log [n_layers][n_slots]; changed: true when
 * it differs from the previous one (placement age restarts). */
void eplb_window_set_placement(eplb_window_t *w, const int32_t *phy2log, uint64_t step, bool changed);
/* Engine progress: steps run and tokens sampled (tokens/s on the page). */
void eplb_window_step(eplb_window_t *w, uint64_t step, int tokens);
/* A batch of a rebalance applied: slots whose expert changed and bytes
 * copied; first: the rebalance's first batch (counts one rebalance). */
void eplb_window_rebalanced(eplb_window_t *w, int slots, int64_t bytes, bool first);

/* Copy the window's load [n_layers][n_experts] (dense layers 0) and the
 * steps it covers. load has n_layers * n_experts entries. */
void eplb_window_load(eplb_window_t *w, int64_t *load, int64_t *steps);

/* Imbalance of a load under a placement, per MoE layer and over the job
 * (eplb_window.c: each expert's load split evenly over its replicas, as
 * kernels.h moe_plan's replica rule does on average). rank_load: ep_size
 * entries, summed over layers; layer_imb: n_layers entries (dense 0).
 * Returns the step imbalance sum_l max_r / sum_l mean_r - 1: how much longer
 * the MoE part of a step takes than with perfect balance. */
double eplb_imbalance_of(const int64_t *load, const int32_t *phy2log, int n_layers, const int *moe, int n_experts,
                         int n_slots, int ep_size, double *rank_load, double *layer_imb);

/* GET /dashboard/data: {"layers", "num_experts", "n_group", "load", "steps"}
 * (moeserve eplb-plan's statistics format) plus ep_size, num_slots,
 * rank_load, imbalance, layer_imbalance, output_tokens, engine_steps,
 * window_steps, rebalances, slots_moved, bytes_moved, placement_age. New
 * reference. */
json_t *eplb_window_json(eplb_window_t *w);
/* The moeserve_eplb_* lines of GET /metrics, appended to *buf (malloc'd,
 * grown; *len bytes). */
ms_status_t eplb_window_metrics(eplb_window_t *w, char **buf, size_t *len);
/* eplb_window_json to a file (moeserve.eplb_dump). */
ms_status_t eplb_window_dump(eplb_window_t *w, const char *path);

#endif
