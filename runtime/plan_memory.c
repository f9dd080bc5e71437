/* plan_memory.c — `moeserve plan-memory MODEL [serve flags] --world N
 * [--gpu-memory-gb G]`: what each rank of a `serve` job with these flags
 * would hold — weights, activations, KV cache — computed from config.json
 * alone (a config-only directory is enough: nothing is read or allocated
 * beyond it). The arithmetic is worker/sizing.h's, the layout
 * serve_layout()'s: the same as `serve` uses at startup.
 *
 * KV: kv_cache_config.max_tokens when given; else kv_cache_free_gpu_memory_
 * fraction of what the device (G GB, default 141: an H200) has left after
 * weights and activations, as TensorRT-LLM sizes it. Exit 0 when every rank
 * fits, 1 when one does not (the line says by how much), 2 on bad usage. */
#include "commands.h"
#include "config.h"
#include "serve_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GIB 1073741824.0

int cmd_plan_memory(int argc, char **argv)
{
    int world = 0;
    double gpu_gb = 141.0;
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    if (!rest) return 1;
    int n = 0;
    for (int i = 0; i < argc; i++) {
        if ((!strcmp(argv[i], "--world") || !strcmp(argv[i], "--gpu-memory-gb")) && i + 1 < argc) {
            char *end = NULL;
            double v = strtod(argv[i + 1], &end);
            if (!end || *end || !(v > 0) || (!strcmp(argv[i], "--world") && (v != (int)v || v > 65536))) {
                fprintf(stderr, "moeserve plan-memory: %s: expected a positive %s, got '%s'\n", argv[i],
                        strcmp(argv[i], "--world") ? "number" : "integer", argv[i + 1]);
                free(rest);
                return 2;
            }
            if (!strcmp(argv[i], "--world")) world = (int)v;
            else gpu_gb = v;
            i++;
            continue;
        }
        rest[n++] = argv[i];
    }
    static ms_config_t cfg;
    int rc = 2;
    if (cfg_parse_serve_args(n, rest, &cfg) != MS_OK) goto out;
    if (cfg.help) {
        printf("usage: moeserve plan-memory MODEL [serve flags] --world N [--gpu-memory-gb G]\n");
        rc = 0;
        goto out;
    }
    if (world < 1) {
        fprintf(stderr, "moeserve plan-memory: --world N (the number of ranks, as mpirun -np N) is required\n");
        goto out;
    }
    if (cfg_resolve_model(cfg.model, cfg.model_dir, sizeof cfg.model_dir) != MS_OK) goto out;
    mcfg_t mc;
    rc = 1;
    if (mcfg_load(cfg.model_dir, &mc) != MS_OK) goto out;
    const size_t dev = (size_t)(gpu_gb * 1e9);
    const bool kv_fp8 = cfg.kv_cache.dtype == MS_KV_DTYPE_FP8;
    int kv_blocks = 0;
    if (cfg.kv_cache.max_tokens > 0)
        kv_blocks = (int)((cfg.kv_cache.max_tokens + cfg.kv_cache.tokens_per_block - 1) / cfg.kv_cache.tokens_per_block);
    printf("plan-memory: %s, %d ranks, device %.1f GB (%.2f GiB), KV %s, free_gpu_memory_fraction %.2f\n",
           cfg.model_dir, world, gpu_gb, dev / GIB, kv_fp8 ? "fp8" : "bf16", cfg.kv_cache.free_gpu_memory_fraction);
    rc = 0;
    for (int r = 0; r < world; r++) {
        par_t par;
        sizing_limits_t lim;
        if (serve_layout(&cfg, world, r, &par, &lim) != MS_OK) {
            rc = 2;
            break;
        }
        if (r == 0)
            printf("layout: attention %s, EP %d (%d expert slots per rank); per rank %d sequences, %d tokens per "
                   "step, MoE max_num_tokens %d\n", par.attention_dp ? "DP" : "TP", par.ep_size,
                   (lim.num_slots > 0 ? lim.num_slots : mc.n_routed_experts) / par.ep_size, lim.max_batch,
                   lim.max_tokens, lim.moe_max_num_tokens);
        if (par_validate(&par, &mc) != MS_OK) {
            rc = 2;
            break;
        }
        sizing_t s;
        if (sizing_rank(&mc, &par, &lim, kv_fp8, kv_blocks, dev, cfg.kv_cache.free_gpu_memory_fraction, &s) != MS_OK) {
            printf("rank %d: does not fit: %s\n", r, ms_error_last());
            rc = 1;
            continue;
        }
        size_t total = s.weights + s.activations + s.kv;
        printf("rank %d: weights %.2f GiB, activations %.2f GiB, KV %.2f GiB (%d blocks x %d tokens), total %.2f GiB "
               "of %.2f GiB | bytes weights=%zu activations=%zu kv=%zu kv_token=%zu kv_blocks=%d moe_slot_cap=%d moe_recv_rows=%lld "
               "naive_ctx=%d\n", r, s.weights / GIB, s.activations / GIB, s.kv / GIB, s.kv_blocks, lim.block_size,
               total / GIB, dev / GIB, s.weights, s.activations, s.kv, s.kv_token, s.kv_blocks, s.moe_slot_cap,
               (long long)s.moe_recv_rows, s.naive_ctx);
    }
out:
    free(rest);
    return rc;
}
