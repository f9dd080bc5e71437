/* config_honesty.c — which configured keys do not act yet, and what the
 * server does instead (configs/README.md says the same). Every key a
 * TensorRT-LLM recipe sets either changes what moeserve does or is named
 * here; `serve` logs one warning per entry at startup on rank 0. A key
 * counts as set when its value differs from the default (or, for a map, when
 * it is present and not null). When a feature lands, its entry goes. */
#include "config.h"

#include <stdio.h>
#include <string.h>

static void add(cfg_inactive_t *out, int max, int *n, const char *key, const char *fmt, const char *arg)
{
    if (*n < max) {
        out[*n].key = key;
        snprintf(out[*n].what, sizeof out[*n].what, fmt, arg);
    }
    (*n)++;
}

int cfg_inactive(const ms_config_t *c, cfg_inactive_t *out, int max)
{
    int n = 0;
    /* cuda_graph_config acts on CUDA (worker/step_graph.h); serve says when the backend has no graphs */
    if (c->speculative.enabled && c->speculative.use_relaxed_acceptance_for_thinking)
        add(out, max, &n, "speculative_config.use_relaxed_acceptance_for_thinking",
            "relaxed acceptance is not implemented: drafts are accepted only where they equal the main model's "
            "sample (exact)%s", "");
    /* moe_config.backend acts through cfg_moe_fp8 (fp8 or dequant compute); these names have no kernel */
    if (c->moe.backend == MS_MOE_BACKEND_WIDEEP || c->moe.backend == MS_MOE_BACKEND_CUTEDSL ||
        c->moe.backend == MS_MOE_BACKEND_TRITON)
        add(out, max, &n, "moe_config.backend",
            "%s has no moeserve kernel: FP8 experts run as AUTO (fp8 compute on CUDA, dequant on CPU)",
            cfg_moe_backend_name(c->moe.backend));
    if (c->attention_backend != MS_ATTN_BACKEND_TRTLLM)
        add(out, max, &n, "attention_backend", "%s is recorded only: moeserve has one MLA path",
            cfg_attn_backend_name(c->attention_backend));
    return n;
}

void cfg_warn_inactive(const ms_config_t *c)
{
    cfg_inactive_t w[16];
    int n = cfg_inactive(c, w, 16);
    for (int i = 0; i < n && i < 16; i++) MS_WARN("config key '%s': %s", w[i].key, w[i].what);
}
