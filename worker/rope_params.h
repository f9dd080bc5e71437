/* rope_params.h — rotary frequencies and the attention softmax scale for a
 * model, computed on the host exactly as transformers v5 does (fp32 tensor
 * arithmetic for inv_freq; Python doubles for the scalars). */
#ifndef MS_ROPE_PARAMS_H
#define MS_ROPE_PARAMS_H

#include "worker/model_config.h"

typedef struct {
    float inv_freq[256];  /* [qk_rope_head_dim / 2] */
    float attn_factor;    /* cos/sin multiplier (YaRN attention_factor; 1.0 for V3/R1) */
    float softmax_scale;  /* qk_head_dim^-0.5, times mscale(factor, mscale_all_dim)^2 under YaRN */
    int yarn_low, yarn_high; /* correction range (diagnostics, tests) */
} rope_params_t;

ms_status_t rope_params_compute(const mcfg_t *c, rope_params_t *out);

#endif
