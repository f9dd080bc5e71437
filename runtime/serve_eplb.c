/* serve_eplb.c — expert-load statistics of `serve`: every rank's routed-token
 * counters (engine_expert_load) reach rank 0's window (coordinator/
 * eplb_window.h) without a step ever waiting for them.
 *
 * Every moeserve.eplb_stats_interval steps, after the step's results are
 * gathered (between steps, never inside one), each rank downloads its
 * counters, takes the delta since its last read, and starts a non-blocking
 * MPI_Ireduce(SUM) of it to rank 0 on a communicator of its own. Later
 * steps test it; rank 0 pushes the sum into the window once it completed.
 * Only one reduce is in flight: if the previous one has not completed by the
 * next interval (it has had `interval` steps), that rank waits for it there,
 * still between steps. Every rank starts its reduces at the same plan steps,
 * so the collectives match. Counts that arrive after the last interval of a
 * burst of traffic are shipped with the next interval. */
#include "serve_internal.h"

#include <stdlib.h>
#include <string.h>

#include "coordinator/eplb_window.h"

struct serve_eplb {
    MPI_Comm comm;
    int rank, interval;
    size_t n;            /* layers * experts */
    int64_t *last;       /* counters at the last read */
    int64_t *send, *recv; /* the delta in flight; rank 0: the sum */
    MPI_Request rq;
    uint64_t rq_step;
    eplb_window_t *win;  /* rank 0 */
    char dump[MS_CFG_PATH_MAX];
};

ms_status_t serve_eplb_create(const ms_config_t *cfg, const mcfg_t *mc, int rank, int ep, serve_eplb_t **out)
{
    *out = NULL;
    if (mc->n_routed_experts == 0) return MS_OK;
    serve_eplb_t *s = calloc(1, sizeof *s);
    if (!s) return MS_ERR(MS_ERR_NOMEM, "eplb: out of memory");
    s->rank = rank;
    s->interval = cfg->ms.eplb_stats_interval;
    s->n = (size_t)mc->num_hidden_layers * mc->n_routed_experts;
    s->rq = MPI_REQUEST_NULL;
    s->comm = MPI_COMM_NULL;
    snprintf(s->dump, sizeof s->dump, "%s", cfg->ms.eplb_dump);
    s->last = calloc(s->n, sizeof *s->last);
    s->send = calloc(s->n, sizeof *s->send);
    s->recv = calloc(s->n, sizeof *s->recv);
    ms_status_t st = MS_OK;
    if (!s->last || !s->send || !s->recv) {
        st = MS_ERR(MS_ERR_NOMEM, "eplb: out of memory for %zu counters", s->n);
        goto fail;
    }
    if (MPI_Comm_dup(MPI_COMM_WORLD, &s->comm) != MPI_SUCCESS) {
        st = MS_ERR(MS_ERR_MPI, "eplb: MPI_Comm_dup failed");
        goto fail;
    }
    if (rank == 0) {
        int moe[mc->num_hidden_layers];
        for (int l = 0; l < mc->num_hidden_layers; l++) moe[l] = mcfg_layer_is_moe(mc, l);
        int slots = cfg->moe.load_balancer.enabled ? cfg->moe.load_balancer.num_slots : 0;
        eplb_window_opts_t o = {.n_layers = mc->num_hidden_layers, .moe = moe, .n_experts = mc->n_routed_experts,
                                .n_group = mc->n_group, .ep_size = ep, .n_slots = slots ? slots : mc->n_routed_experts,
                                .window_steps = cfg->ms.eplb_window_steps, .interval = s->interval};
        MS_TRY_GOTO(st, eplb_window_create(&o, &s->win), fail);
    }
    *out = s;
    return MS_OK;
fail:
    serve_eplb_destroy(s);
    return st;
}

eplb_window_t *serve_eplb_window(serve_eplb_t *s) { return s ? s->win : NULL; }

void serve_eplb_placed(serve_eplb_t *s, const engine_t *e, uint64_t step, bool changed)
{
    const placement_t *p = engine_placement(e);
    if (s && s->win && p) eplb_window_set_placement(s->win, p->phy2log, step, changed);
}

/* A completed reduce: rank 0 takes the sum into the window. */
static void take(serve_eplb_t *s)
{
    if (s->win) eplb_window_push(s->win, s->recv, s->rq_step);
}

void serve_eplb_poll(serve_eplb_t *s)
{
    if (!s || s->rq == MPI_REQUEST_NULL) return;
    int done = 0;
    MPI_Test(&s->rq, &done, MPI_STATUS_IGNORE);
    if (done) take(s);
}

bool serve_eplb_pending(const serve_eplb_t *s) { return s && s->rq != MPI_REQUEST_NULL; }

ms_status_t serve_eplb_after_step(serve_eplb_t *s, engine_t *e, uint64_t step, int tokens)
{
    if (!s) return MS_OK;
    if (s->win) eplb_window_step(s->win, step + 1, tokens);
    serve_eplb_poll(s);
    if ((step + 1) % (uint64_t)s->interval) return MS_OK;
    if (s->rq != MPI_REQUEST_NULL) { /* `interval` steps were not enough: wait here, between steps */
        MPI_Wait(&s->rq, MPI_STATUS_IGNORE);
        take(s);
    }
    /* the counters come from the device: a download between steps, never inside one */
    static int64_t *cur;
    static size_t cur_n;
    if (cur_n < s->n) {
        free(cur);
        cur = malloc(sizeof *cur * s->n);
        cur_n = cur ? s->n : 0;
        if (!cur) return MS_ERR(MS_ERR_NOMEM, "eplb: out of memory");
    }
    MS_TRY(engine_expert_load(e, cur));
    for (size_t i = 0; i < s->n; i++) s->send[i] = cur[i] - s->last[i], s->last[i] = cur[i];
    s->rq_step = step + 1;
    if (MPI_Ireduce(s->send, s->recv, (int)s->n, MPI_INT64_T, MPI_SUM, 0, s->comm, &s->rq) != MPI_SUCCESS)
        return MS_ERR(MS_ERR_MPI, "eplb: MPI_Ireduce of the expert counters failed");
    return MS_OK;
}

void serve_eplb_finish(serve_eplb_t *s)
{
    if (!s) return;
    if (s->rq != MPI_REQUEST_NULL) {
        MPI_Wait(&s->rq, MPI_STATUS_IGNORE);
        take(s);
    }
    if (s->win && s->dump[0]) {
        if (eplb_window_dump(s->win, s->dump) == MS_OK) MS_INFO("eplb_dump: expert load statistics written to %s", s->dump);
    }
}

void serve_eplb_destroy(serve_eplb_t *s)
{
    if (!s) return;
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin && s->comm != MPI_COMM_NULL) MPI_Comm_free(&s->comm);
    eplb_window_destroy(s->win);
    free(s->last), free(s->send), free(s->recv);
    free(s);
}
