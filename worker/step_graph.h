/* step_graph.h — CUDA graphs of decode steps (cuda_graph_config, as
 * TensorRT-LLM defines it; DESIGN "The GPU step", 3).
 *
 * At engine creation, for each configured batch size G: the forward pass of
 * an all-padding decode step of G rows runs once eagerly (warm-up: cuBLASLt
 * plans, kernel attributes, first-call lookups), is captured into a graph,
 * and the graph is replayed once and checked (no fault raised). A later
 * decode-only step of n sequences takes the smallest captured G >= n (G == n
 * without enable_padding); its metadata is laid out for G rows — step_io.h
 * offsets depend on the sizes only, so each replay finds its inputs where the
 * capture read them — rows n .. G-1 are padding, and the graph replays
 * between the step's one upload and its one download.
 *
 * What capture relies on: every buffer the forward pass touches is carved
 * once (forward.c) and the I/O block is fixed; cuBLASLt's workspace is the
 * context's; ops read per-row parameters, block tables and MoE counts from
 * device memory and size their launches from host arguments that depend on
 * G alone; no op synchronizes, allocates or reads device memory on the host.
 * The fp8 expert GEMM's TMA descriptors are kernel parameters built from the
 * (fixed) weight and workspace addresses and the slot capacity, so the
 * captured ones stay valid. */
#ifndef MS_WORKER_STEP_GRAPH_H
#define MS_WORKER_STEP_GRAPH_H

#include "worker/forward.h"
#include "worker/forward_mtp.h"
#include "worker/step_io.h"

#define SGRAPH_MAX 160 /* = MS_CFG_MAX_GRAPH_BATCHES and more than TensorRT-LLM's generated lists */

typedef struct {
    int n;                          /* sizes with a graph (or emulated) */
    int sizes[SGRAPH_MAX];          /* ascending */
    kern_graph_t graph[SGRAPH_MAX]; /* NULL when emulated */
    int padding;                    /* enable_padding: n takes the next size up */
    double capture_ms;              /* warm-up + capture + check of all sizes */
    size_t bytes;                   /* device memory the graphs took (cudaMemGetInfo before - after) */
} sgraph_t;

/* Capture the graphs of sizes[0..n) (ascending, each within f's limits) on f's context, using the
 * engine's pinned staging block `stage`; with emulate only run each size's warm-up (no capture: every
 * backend). With mtp (NULL: none) a size G is G sequences of N + 1 rows each and the graph holds the
 * main pass and the N draft passes (mtp_run). A failed capture is MS_ERR_* with nothing kept (g->n = 0). */
ms_status_t sgraph_create(sgraph_t *g, fwd_t *f, mtp_t *mtp, void *stage, int device, const int *sizes, int n,
                          int padding, int emulate);
void sgraph_destroy(sgraph_t *g, const kern_ops_t *k);

/* The index of the size a decode step of n rows runs at; -1 when none fits (then it runs eagerly). */
int sgraph_pick(const sgraph_t *g, int n);

/* Fill sequences [from, to) of the staging block at layout L as padding, w rows each (all sampled) —
 * token id -1, cache slot -1, position 0, pad 0, greedy sampling without logprobs of a copy of row 0
 * (last_row 0), no logits adjustment, attention seq with no query row — and mark rows [0, from * w)
 * real (pad -1). */
void sgraph_pad(char *stage, const step_io_layout_t *L, int from, int to, int w);

#endif
