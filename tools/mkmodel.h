/* mkmodel.h — internals shared by the synthetic checkpoint writer's files:
 * mkmodel.c (command line, presets, config.json) and mkmodel_write.c
 * (tensor list, deterministic values, safetensors shards). */
#ifndef MS_MKMODEL_H
#define MS_MKMODEL_H

#include <stdbool.h>
#include <stdint.h>
#include "worker/model_config.h"

typedef enum {
    MK_OUT_BF16 = 0, /* plain bf16 checkpoint */
    MK_OUT_FP8,      /* F8_E4M3 linears + F32 weight_scale_inv */
    MK_OUT_TWIN,     /* bf16 holding exactly the dequantized values of MK_OUT_FP8 */
} mk_out_t;

typedef struct {
    uint64_t seed;
    bool mtp;              /* write the MTP layer (index num_hidden_layers) */
    uint64_t shard_bytes;  /* start a new shard past this much data; 0 = one file */
    uint64_t hot_experts;  /* --hot-experts: bit e set = expert e's router bias (e_score_correction_bias)
                            * gets +MK_HOT_BIAS in every MoE layer, so top-k picks it for most tokens
                            * (a skewed load for the load balancer's tests) */
} mk_opts_t;
#define MK_HOT_BIAS 0.5f

/* Write the safetensors files (and the index when sharded) into dir.
 * Deterministic: the same (cfg, opts, mode) gives byte-identical files. */
ms_status_t mk_write_weights(const char *dir, const mcfg_t *cfg, const mk_opts_t *opts, mk_out_t mode);

#endif
