/* eplb_rebalance.c — whether and where to move experts (eplb_rebalance.h). */
#include "coordinator/eplb_rebalance.h"

#include <stdlib.h>
#include <string.h>

#include "coordinator/eplb_plan.h"
#include "coordinator/eplb_window.h"

ms_status_t eplb_rebalance_propose(const eplb_rebalance_opts_t *o, const int64_t *load, const int32_t *cur,
                                   int32_t *target, int *changed, int *n_changed, int *slots, double *before,
                                   double *after)
{
    const int L = o->n_layers, E = o->n_experts, S = o->n_slots, R = o->ep_size;
    *n_changed = 0, *slots = 0;
    int M = 0;
    for (int l = 0; l < L; l++) M += o->moe[l] != 0;
    if (M == 0) return MS_OK;
    float *fl = malloc(sizeof *fl * (size_t)M * E);
    int *rows = malloc(sizeof *rows * (size_t)M);
    eplb_placement_t c = {.n_layers = M, .n_experts = E, .n_slots = S};
    c.phy2log = malloc(sizeof *c.phy2log * (size_t)M * S);
    double *rl = malloc(sizeof *rl * (size_t)R);
    ms_status_t st = MS_OK;
    if (!fl || !rows || !c.phy2log || !rl) {
        st = MS_ERR(MS_ERR_NOMEM, "eplb: out of memory planning");
        goto out;
    }
    int64_t total = 0;
    for (int l = 0, m = 0; l < L; l++) {
        if (!o->moe[l]) continue;
        rows[m] = l;
        for (int e = 0; e < E; e++) fl[(size_t)m * E + e] = (float)load[(size_t)l * E + e], total += load[(size_t)l * E + e];
        memcpy(c.phy2log + (size_t)m * S, cur + (size_t)l * S, sizeof *c.phy2log * (size_t)S);
        m++;
    }
    if (total == 0) goto out; /* nothing routed yet */
    eplb_shape_t sh = {.n_slots = S, .n_groups = o->n_group > 0 && E % o->n_group == 0 ? o->n_group : 1,
                       .n_nodes = 1, .n_ranks = R};
    eplb_placement_t next;
    MS_TRY_GOTO(st, eplb_plan(fl, M, E, &sh, &next), out);
    int moves = eplb_keep_slots(&c, &next, R);
    memcpy(target, cur, sizeof *target * (size_t)L * S);
    for (int m = 0; m < M; m++)
        memcpy(target + (size_t)rows[m] * S, next.phy2log + (size_t)m * S, sizeof *target * (size_t)S);
    eplb_placement_free(&next);
    *before = eplb_imbalance_of(load, cur, L, o->moe, E, S, R, rl, NULL);
    *after = eplb_imbalance_of(load, target, L, o->moe, E, S, R, rl, NULL);
    if (moves <= 0 || *before - *after < o->min_gain) goto out;
    for (int m = 0; m < M; m++)
        if (memcmp(target + (size_t)rows[m] * S, cur + (size_t)rows[m] * S, sizeof *target * (size_t)S))
            changed[(*n_changed)++] = rows[m];
    *slots = moves;
out:
    free(fl), free(rows), free(c.phy2log), free(rl);
    return st;
}
