/* graph_engines.h — the four engines the CUDA-graph tests compare (test_graphs.c, test_graphs_mtp.c) and
 * the backend choice they share:
 *
 *   test_graphs[_mtp] [MKMODEL [cpu|cuda]]   (MKMODEL default: moeserve-mkmodel on PATH;
 *                                            backend default: cuda when a GPU is visible)
 *
 * Engines: 0 eager (no graphs); 1 sizes {1, 2, 4, 8} with padding, on the counting ops table; 2 the same
 * emulated (padded rows run eagerly: CUDA only, the replayed engine's bit-for-bit twin); 3 no padding. On
 * the CPU backend (no graphs) engines 1 and 3 emulate. */
#ifndef MS_TEST_GRAPH_ENGINES_H
#define MS_TEST_GRAPH_ENGINES_H

#include <stdio.h>

#include "tests/engine/etest.h"
#include "tests/engine/ops_count.h"
#include "worker/engine.h"

typedef struct {
    const char *backend;   /* "cpu" or "cuda" */
    const kern_ops_t *base;
    int cuda;              /* the backend captures graphs */
    const char *mkmodel;
    comm_t *comm[4];
    engine_t *E[4];
} ge_t;

/* Parse argv and pick the backend; 77 (print SKIP) when it is not here, else 0. */
static inline int ge_args(ge_t *g, int argc, char **argv)
{
    memset(g, 0, sizeof *g);
    /* run.sh cuda-tests passes its own arguments (an op name) to every test: only a path counts here */
    if (argc > 1 && !strchr(argv[1], '/')) argc = 1;
    g->mkmodel = argc > 1 ? argv[1] : "moeserve-mkmodel";
    if (argc > 2) g->backend = argv[2];
    else {
        const kern_ops_t *cu;
        g->backend = kern_backend_get("cuda", &cu) == MS_OK && cu->device_count() > 0 ? "cuda" : "skip";
    }
    if (!strcmp(g->backend, "skip") || kern_backend_get(g->backend, &g->base) != MS_OK ||
        g->base->device_count() < 1) {
        printf("SKIP: no %s backend here\n", argc > 2 ? g->backend : "cuda");
        return 77;
    }
    g->cuda = g->base->graphs;
    return 0;
}

/* Engine `mode` (0..3, above) on dir with the test's other options in o (graph fields are set here). */
static inline engine_t *ge_make(ge_t *g, const char *dir, int mode, engine_opts_t o, comm_t **comm)
{
    static const int sizes[] = {1, 2, 4, 8};
    const kern_ops_t *ops = mode == 1 ? ops_count_wrap(g->base) : NULL;
    o.backend = g->backend, o.mla = ENGINE_MLA_AUTO, o.ops = ops;
    o.n_graph_sizes = mode ? 4 : 0, o.graph_sizes = sizes, o.graph_padding = mode != 3;
    o.graph_emulate = mode == 2 || (mode && !g->base->graphs);
    par_t p = par_single();
    engine_t *e = NULL;
    if (comm_local_create(ops ? ops : g->base, comm) != MS_OK) return NULL;
    if (engine_create(dir, &p, &o, *comm, &e) != MS_OK) return NULL;
    return e;
}

/* The four engines (engine 2 on CUDA only); 0 when every one that should exist does. */
static inline int ge_create(ge_t *g, const char *dir, engine_opts_t o)
{
    for (int i = 0; i < 4; i++)
        if (i != 2 || g->cuda) g->E[i] = ge_make(g, dir, i, o, &g->comm[i]);
    const int ok = g->E[0] && g->E[1] && g->E[3] && (!g->cuda || g->E[2]);
    T_CHECK(ok);
    return ok ? 0 : 1;
}

/* After the schedule: the graphed engine took a graph's size in want_steps steps with want_pad padding rows,
 * the unpadded one in want_exact steps with none, the eager one never; and padding rows routed nowhere (the
 * MoE load counters equal the eager engine's). */
static inline void ge_check_graph_use(const ge_t *g, long want_steps, long want_pad, long want_exact)
{
    int ng;
    long steps, pad;
    engine_graph_stats(g->E[1], &ng, &steps, &pad);
    T_CHECK_MSG(ng == 4 && steps == want_steps && pad == want_pad,
                "padding: %d graphs, %ld steps (want %ld), %ld padding rows (want %ld)", ng, steps, want_steps, pad,
                want_pad);
    engine_graph_stats(g->E[3], &ng, &steps, &pad);
    T_CHECK_MSG(steps == want_exact && pad == 0, "no padding: %ld steps (want %ld), %ld padding rows", steps,
                want_exact, pad);
    engine_graph_stats(g->E[0], &ng, &steps, &pad);
    T_CHECK(ng == 0 && steps == 0);
    const mcfg_t *c = engine_config(g->E[0]);
    const size_t nl = (size_t)c->num_hidden_layers * (size_t)c->n_routed_experts;
    int64_t *l0 = calloc(nl + 1, sizeof *l0), *l1 = calloc(nl + 1, sizeof *l1);
    T_CHECK(l0 && l1 && engine_expert_load(g->E[0], l0) == MS_OK && engine_expert_load(g->E[1], l1) == MS_OK);
    T_CHECK(nl > 0 && l0 && l1 && memcmp(l0, l1, sizeof *l0 * nl) == 0);
    free(l0), free(l1);
}

static inline void ge_destroy(ge_t *g)
{
    for (int i = 0; i < 4; i++) {
        engine_destroy(g->E[i]);
        comm_destroy(g->comm[i]);
    }
}

#endif
