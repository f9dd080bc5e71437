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
 * burst of traffic are shipped with the next interval.
 *
 * Online moves (moe_config.load_balancer.layer_updates_per_iter > 0, EP > 1):
 * at each interval rank 0 plans on the window (coordinator/eplb_rebalance.h:
 * nothing moves unless the step imbalance drops by moeserve.eplb_min_gain)
 * and broadcasts the proposal with a non-blocking MPI_Ibcast; every rank
 * adopts it at the next interval (the same step everywhere: the broadcast
 * had an interval to complete). Then, one batch of up to
 * layer_updates_per_iter layers at a time, each rank posts its record moves
 * (worker/eplb_move.h) and every step votes with a non-blocking
 * MPI_Iallreduce(MIN) of "my transfers completed" (1), "in flight" (0) or
 * "failed" (-1); the vote started after step N is read after step N+1, and
 * then every rank flips the batch's layers (all 1), drops the batch keeping
 * the old placement (any -1), or waits another step (any 0). So the flip
 * step is agreed collectively, no step waits for a transfer, and what a
 * step waits for at most is a one-integer vote started a step earlier. */
#include "serve_internal.h"

#include <stdlib.h>
#include <string.h>

#include "coordinator/eplb_rebalance.h"
#include "kernels/kernels.h"
#include "coordinator/eplb_window.h"
#include "worker/eplb_move.h"

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
    /* online moves (lupi > 0) */
    int lupi, L, E, S, ep, n_group;
    double min_gain;
    int *moe;               /* [L] */
    int32_t *prop;          /* [1 + L*S] the proposal broadcast: flag, then the placement */
    MPI_Request prop_rq;
    int32_t *target;        /* [L*S] adopted */
    int pending[1024], n_pending; /* its layers not yet moved */
    bool active;            /* a target is being moved */
    eplb_move_t *mv;
    int vote_send, vote_recv;
    MPI_Request vote_rq;
    int rebalances, target_slots;
    int64_t target_bytes;   /* record bytes sent between ranks for the target so far */
    double t_adopted;       /* MPI_Wtime when the target was adopted */
    uint64_t step_adopted;
    int64_t *load_tmp;      /* rank 0 planning scratch [L*E] */
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
    s->prop_rq = s->vote_rq = MPI_REQUEST_NULL;
    s->L = mc->num_hidden_layers, s->E = mc->n_routed_experts, s->ep = ep, s->n_group = mc->n_group;
    s->S = cfg->moe.load_balancer.enabled && cfg->moe.load_balancer.num_slots ? cfg->moe.load_balancer.num_slots : s->E;
    s->min_gain = cfg->ms.eplb_min_gain;
    if (cfg->moe.load_balancer.enabled && cfg->moe.load_balancer.layer_updates_per_iter > 0) {
        s->lupi = cfg->moe.load_balancer.layer_updates_per_iter;
        if (ep == 1) {
            if (rank == 0) MS_INFO("load_balancer: one EP rank holds every slot: nothing to rebalance");
            s->lupi = 0;
        }
    }
    s->last = calloc(s->n, sizeof *s->last);
    s->send = calloc(s->n, sizeof *s->send);
    s->recv = calloc(s->n, sizeof *s->recv);
    ms_status_t st = MS_OK;
    if (!s->last || !s->send || !s->recv) {
        st = MS_ERR(MS_ERR_NOMEM, "eplb: out of memory for %zu counters", s->n);
        goto fail;
    }
    if (s->lupi) {
        s->moe = calloc((size_t)s->L, sizeof *s->moe);
        s->prop = calloc(1 + (size_t)s->L * s->S, sizeof *s->prop);
        s->target = calloc((size_t)s->L * s->S, sizeof *s->target);
        s->load_tmp = calloc(s->n, sizeof *s->load_tmp);
        if (!s->moe || !s->prop || !s->target || !s->load_tmp) {
            st = MS_ERR(MS_ERR_NOMEM, "eplb: out of memory");
            goto fail;
        }
        for (int l = 0; l < s->L; l++) s->moe[l] = mcfg_layer_is_moe(mc, l);
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

ms_status_t serve_eplb_engine(serve_eplb_t *s, engine_t *e)
{
    serve_eplb_placed(s, e, 0, true);
    if (!s || !s->lupi) return MS_OK;
    MS_TRY(eplb_move_create(e, s->lupi, &s->mv));
    if (s->rank == 0) {
        size_t rec = 0;
        for (int l = 0; l < s->L && !rec; l++) engine_slot_record(e, l, 0, &rec);
        MS_INFO("load_balancer: online rebalancing, %d layer(s) per batch, every %d steps at most; staging %.1f MiB "
                "per rank (%d records of %zu bytes)%s; a rebalance must lower the imbalance by %g",
                s->lupi, s->interval, (double)rec * s->lupi * (s->S / s->ep) / 1048576.0, s->lupi * (s->S / s->ep),
                rec, eplb_move_ipc(s->mv) ? ", pulled from the peers' device memory (CUDA IPC) on a side stream"
                     : eplb_move_host_staged(s->mv) ? ", moved through pinned host memory on a side stream" : "",
                s->min_gain);
    }
    return MS_OK;
}

/* Every step while a target is being moved: read last step's vote, act on it,
 * start the next batch, vote again. */
static ms_status_t moves_step(serve_eplb_t *s, engine_t *e, uint64_t step)
{
    if (!s->active) return MS_OK;
    if (s->vote_rq != MPI_REQUEST_NULL) {
        MPI_Wait(&s->vote_rq, MPI_STATUS_IGNORE); /* one int, started a step ago */
        if (eplb_move_busy(s->mv) && s->vote_recv == 1) {
            int slots;
            int64_t bytes;
            MS_TRY(eplb_move_flip(s->mv, &slots, &bytes));
            const bool first = s->target_slots == 0;
            s->target_slots += slots, s->target_bytes += bytes;
            if (s->win) {
                eplb_window_rebalanced(s->win, slots, bytes, first);
                serve_eplb_placed(s, e, step + 1, true);
            }
        } else if (eplb_move_busy(s->mv) && s->vote_recv < 0) {
            eplb_move_abort(s->mv);
            s->n_pending = 0; /* give the target up: the placement in force stays */
            if (s->rank == 0) MS_WARN("load_balancer: a record transfer failed; the old placement stays in force");
        }
    }
    if (!eplb_move_busy(s->mv)) {
        if (s->n_pending == 0) {
            s->active = false;
            if (s->rank == 0)
                MS_INFO("load_balancer: rebalance %d done at step %llu: %d slots moved, %.1f MiB between ranks, "
                        "%.1f ms over %llu steps", s->rebalances, (unsigned long long)step + 1, s->target_slots,
                        (double)s->target_bytes / 1048576.0, 1e3 * (MPI_Wtime() - s->t_adopted),
                        (unsigned long long)(step + 1 - s->step_adopted));
            return MS_OK;
        }
        int n = s->n_pending < s->lupi ? s->n_pending : s->lupi;
        ms_status_t st = eplb_move_start(s->mv, s->pending, n, s->target);
        if (st != MS_OK) return st;
        memmove(s->pending, s->pending + n, sizeof *s->pending * (size_t)(s->n_pending - n));
        s->n_pending -= n;
    }
    s->vote_send = eplb_move_ready(s->mv);
    if (MPI_Iallreduce(&s->vote_send, &s->vote_recv, 1, MPI_INT, MPI_MIN, s->comm, &s->vote_rq) != MPI_SUCCESS)
        return MS_ERR(MS_ERR_MPI, "eplb: MPI_Iallreduce of the move vote failed");
    return MS_OK;
}

/* At an interval: adopt last interval's proposal; rank 0 plans the next. */
static ms_status_t moves_interval(serve_eplb_t *s, uint64_t step)
{
    if (s->prop_rq != MPI_REQUEST_NULL) {
        MPI_Wait(&s->prop_rq, MPI_STATUS_IGNORE); /* started an interval ago */
        if (s->prop[0] > 0 && !s->active) {
            memcpy(s->target, s->prop + 1, sizeof *s->target * (size_t)s->L * s->S);
            s->n_pending = 0;
            const placement_t *p = engine_placement(eplb_move_engine(s->mv));
            for (int l = 0; l < s->L && s->n_pending < 1024; l++)
                if (memcmp(p->phy2log + (size_t)l * s->S, s->target + (size_t)l * s->S, sizeof *s->target * s->S))
                    s->pending[s->n_pending++] = l;
            s->active = s->n_pending > 0;
            s->rebalances++;
            s->target_slots = 0, s->target_bytes = 0;
            s->t_adopted = MPI_Wtime(), s->step_adopted = step + 1;
        }
    }
    s->prop[0] = 0;
    if (s->rank == 0 && !s->active) {
        int64_t steps;
        eplb_window_load(s->win, s->load_tmp, &steps);
        const placement_t *p = engine_placement(eplb_move_engine(s->mv));
        eplb_rebalance_opts_t o = {.n_layers = s->L, .n_experts = s->E, .n_group = s->n_group, .n_slots = s->S,
                                   .ep_size = s->ep, .moe = s->moe, .min_gain = s->min_gain};
        int changed[1024], n_changed = 0, slots = 0;
        double before = 0, after = 0;
        MS_TRY(eplb_rebalance_propose(&o, s->load_tmp, p->phy2log, s->prop + 1, changed, &n_changed, &slots, &before,
                                      &after));
        if (n_changed > 0) {
            s->prop[0] = 1;
            MS_INFO("load_balancer: rebalance %d planned at step %llu from %lld steps of load: imbalance %.3f -> "
                    "%.3f, %d slots in %d layers", s->rebalances + 1, (unsigned long long)step + 1, (long long)steps,
                    before, after, slots, n_changed);
        }
    }
    if (MPI_Ibcast(s->prop, (int)(1 + (size_t)s->L * s->S), MPI_INT32_T, 0, s->comm, &s->prop_rq) != MPI_SUCCESS)
        return MS_ERR(MS_ERR_MPI, "eplb: MPI_Ibcast of the placement proposal failed");
    return MS_OK;
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
    if (s->lupi) MS_TRY(moves_step(s, e, step));
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
    if (s->lupi) MS_TRY(moves_interval(s, step));
    return MS_OK;
}

void serve_eplb_finish(serve_eplb_t *s)
{
    if (!s) return;
    /* every rank started the same collectives: complete them before the communicator goes */
    if (s->vote_rq != MPI_REQUEST_NULL) MPI_Wait(&s->vote_rq, MPI_STATUS_IGNORE);
    if (s->prop_rq != MPI_REQUEST_NULL) MPI_Wait(&s->prop_rq, MPI_STATUS_IGNORE);
    if (s->mv) eplb_move_abort(s->mv);
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
    eplb_move_destroy(s->mv);
    free(s->moe), free(s->prop), free(s->target), free(s->load_tmp);
    free(s->last), free(s->send), free(s->recv);
    free(s);
}
