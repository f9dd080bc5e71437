/* serve_placement.c — the expert placement `serve` starts with: the
 * configured load balancer checked against the model (a bad one is exit 2,
 * like any bad config) and moe_config.load_balancer.initial_global_assignments
 * turned into the engine's assignment table, layers not listed keeping the
 * default placement (worker/placement.h). Rank 0 logs each listed layer's
 * placement, rank by rank, so a run shows what it serves with. */
#include "serve_internal.h"

#include <stdlib.h>
#include <string.h>

#include "worker/placement.h"

ms_status_t serve_placement(const ms_config_t *cfg, const mcfg_t *mc, int ep, int rank, int32_t **assign_out)
{
    *assign_out = NULL;
    int first = mc->num_hidden_layers;
    for (int l = 0; l < mc->num_hidden_layers; l++)
        if (mcfg_layer_is_moe(mc, l)) {
            first = l;
            break;
        }
    if (mc->n_routed_experts == 0) return MS_OK; /* a dense model: nothing to place */
    MS_TRY(cfg_check_placement(cfg, mc->num_hidden_layers, first, mc->n_routed_experts, ep));
    const typeof(cfg->moe.load_balancer) *lb = &cfg->moe.load_balancer;
    if (!lb->enabled || lb->n_assign == 0) return MS_OK;
    const int S = lb->num_slots, spr = S / ep;
    int32_t *a = malloc(sizeof *a * (size_t)mc->num_hidden_layers * S);
    if (!a) return MS_ERR(MS_ERR_NOMEM, "out of memory for the expert placement");
    for (int l = 0; l < mc->num_hidden_layers; l++) placement_default_row(mc->n_routed_experts, S, ep, a + (size_t)l * S);
    for (int i = 0; i < lb->n_assign; i++) {
        int32_t *row = a + (size_t)lb->assign_layer[i] * S;
        for (int s = 0; s < S; s++) row[s] = lb->assign[(size_t)i * S + s];
        if (rank != 0) continue;
        /* "layer 1 placement (...): rank 0 [0 5 9 ...] rank 1 [...]" */
        size_t cap = (size_t)S * 7 + (size_t)ep * 16 + 96, used = 0;
        char *out = malloc(cap);
        if (!out) continue;
        used += (size_t)snprintf(out, cap, "load_balancer: layer %d placement (initial_global_assignments):",
                                 lb->assign_layer[i]);
        for (int r = 0; r < ep && used < cap; r++) {
            used += (size_t)snprintf(out + used, cap - used, " rank %d [", r);
            for (int j = 0; j < spr && used < cap; j++)
                used += (size_t)snprintf(out + used, cap - used, j ? " %d" : "%d", row[r * spr + j]);
            if (used < cap) used += (size_t)snprintf(out + used, cap - used, "]");
        }
        MS_INFO("%s", out);
        free(out);
    }
    *assign_out = a;
    return MS_OK;
}
