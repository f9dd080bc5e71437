/* placement.c — building and checking the per-layer expert placement tables
 * (placement.h). */
#include "worker/placement.h"

#include <stdlib.h>
#include <string.h>

ms_status_t placement_create(int n_layers, int n_experts, int n_slots, int ep_size, const int32_t *assign,
                             placement_t *out)
{
    ms_status_t st = MS_OK;
    if (n_slots == 0) n_slots = n_experts;
    if (n_layers < 1 || n_experts < 1 || ep_size < 1)
        return MS_ERR(MS_ERR_INVALID, "placement: %d layers, %d experts, ep_size %d", n_layers, n_experts, ep_size);
    if (n_slots < n_experts)
        return MS_ERR(MS_ERR_INVALID, "placement: moe_config.load_balancer.num_slots %d < n_routed_experts %d",
                      n_slots, n_experts);
    if (n_slots % ep_size)
        return MS_ERR(MS_ERR_INVALID, "placement: moe_config.load_balancer.num_slots %d is not a multiple of ep_size %d",
                      n_slots, ep_size);
    placement_t p = {.n_layers = n_layers, .n_experts = n_experts, .n_slots = n_slots, .ep_size = ep_size,
                     .slots_per_rank = n_slots / ep_size};
    const size_t LS = (size_t)n_layers * n_slots, LE = (size_t)n_layers * n_experts;
    p.phy2log = malloc(sizeof(int32_t) * LS);
    p.n_rep = calloc(LE, sizeof(int32_t));
    if (!p.phy2log || !p.n_rep) {
        st = MS_ERR(MS_ERR_NOMEM, "placement: out of memory");
        goto fail;
    }
    for (int l = 0; l < n_layers; l++) {
        if (!assign) {
            placement_default_row(n_experts, n_slots, ep_size, p.phy2log + (size_t)l * n_slots);
            continue;
        }
        for (int i = 0; i < n_slots; i++) {
            int e = assign[(size_t)l * n_slots + i];
            if (e < 0 || e >= n_experts) {
                st = MS_ERR(MS_ERR_INVALID, "placement: layer %d slot %d holds expert %d outside [0, %d)", l, i, e,
                            n_experts);
                goto fail;
            }
            p.phy2log[(size_t)l * n_slots + i] = e;
        }
    }
    for (size_t i = 0; i < LS; i++) p.n_rep[(i / n_slots) * n_experts + p.phy2log[i]]++;
    for (size_t i = 0; i < LE; i++) {
        if (!p.n_rep[i]) {
            st = MS_ERR(MS_ERR_INVALID, "placement: layer %d: expert %d has no slot", (int)(i / n_experts),
                        (int)(i % n_experts));
            goto fail;
        }
        if (p.n_rep[i] > p.max_rep) p.max_rep = p.n_rep[i];
    }
    p.log2phy = malloc(sizeof(int32_t) * LE * p.max_rep);
    if (!p.log2phy) {
        st = MS_ERR(MS_ERR_NOMEM, "placement: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < LE * p.max_rep; i++) p.log2phy[i] = -1;
    for (int l = 0; l < n_layers; l++) {
        int32_t *row = p.log2phy + (size_t)l * n_experts * p.max_rep;
        for (int e = 0; e < n_experts; e++) p.n_rep[(size_t)l * n_experts + e] = 0; /* refilled in slot order */
        for (int s = 0; s < n_slots; s++) {
            int e = p.phy2log[(size_t)l * n_slots + s];
            row[(size_t)e * p.max_rep + p.n_rep[(size_t)l * n_experts + e]++] = s;
        }
    }
    *out = p;
    return MS_OK;
fail:
    placement_free(&p);
    return st;
}

void placement_default_row(int n_experts, int n_slots, int ep_size, int32_t *row)
{
    const int spr = n_slots / ep_size;
    for (int i = 0; i < n_slots; i++) row[(i % ep_size) * spr + i / ep_size] = i % n_experts;
}

void placement_free(placement_t *p)
{
    if (!p) return;
    free(p->phy2log), free(p->log2phy), free(p->n_rep);
    memset(p, 0, sizeof *p);
}
