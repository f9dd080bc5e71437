/* serve_layout.c — from a validated configuration and a world size to one
 * rank's layout (par_t) and per-step limits: the one place `serve` and
 * `plan-memory` agree on what a rank runs (TensorRT-LLM's vocabulary: world
 * = tp_size; enable_attention_dp makes each rank its own attention group;
 * experts over ep_size ranks, unset = the world). Limits are per rank:
 * attention DP gives a rank max_batch_size sequences and max_num_tokens
 * tokens of its own, never the whole job's. */
#include "serve_internal.h"

ms_status_t serve_layout(const ms_config_t *cfg, int world, int rank, par_t *par, sizing_limits_t *lim)
{
    int tp = cfg->tp_size == 1 ? world : cfg->tp_size;
    if (tp != world)
        return MS_ERR(MS_ERR_INVALID, "--tp_size %d but the job has %d ranks: they must match", cfg->tp_size, world);
    int ep = cfg->ep_size > 0 ? cfg->ep_size : world;
    if (ep > world || world % ep)
        return MS_ERR(MS_ERR_INVALID, "--ep_size %d must divide the %d ranks", ep, world);
    bool dp = cfg->enable_attention_dp && world > 1;
    *par = (par_t){.tp_rank = rank, .tp_size = world, .ep_rank = rank % ep, .ep_size = ep, .attention_dp = dp};
    *lim = (sizing_limits_t){.max_batch = cfg->max_batch_size,
                             .max_tokens = cfg->max_num_tokens,
                             .moe_max_num_tokens = cfg->moe.max_num_tokens,
                             .num_slots = cfg->moe.load_balancer.enabled ? cfg->moe.load_balancer.num_slots : 0,
                             .block_size = cfg->kv_cache.tokens_per_block,
                             .mtp_drafts = cfg->speculative.enabled ? cfg->speculative.num_nextn_predict_layers : 0};
    return MS_OK;
}
