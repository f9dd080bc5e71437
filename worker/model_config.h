/* model_config.h — the model description read from a Hugging Face config.json
 * (model_type deepseek_v3). Keys and defaults follow transformers'
 * DeepseekV3Config; see shared/reference/deepseek-v3.md section 1.
 * Plain struct: filled once by mcfg_load, then read-only and copied freely. */
#ifndef MS_MODEL_CONFIG_H
#define MS_MODEL_CONFIG_H

#include <stdbool.h>
#include "status.h"
#include "dtype.h"

typedef struct {
    int vocab_size;
    int hidden_size;
    int intermediate_size;      /* dense MLP of the first first_k_dense_replace layers */
    int moe_intermediate_size;  /* each routed expert and each shared expert */
    int num_hidden_layers;
    int first_k_dense_replace;
    int moe_layer_freq;
    int n_routed_experts;
    int n_shared_experts;
    int num_experts_per_tok;
    int n_group;
    int topk_group;
    float routed_scaling_factor;
    bool norm_topk_prob;
    int q_lora_rank;            /* 0 when config.json says null: q_proj directly */
    int kv_lora_rank;
    int qk_nope_head_dim;
    int qk_rope_head_dim;
    int v_head_dim;
    int num_attention_heads;
    int num_key_value_heads;
    int max_position_embeddings;
    double rope_theta;
    bool rope_interleave;       /* transformers' rope_interleave; true for V3/R1 checkpoints */
    struct {
        bool enabled;           /* rope_scaling.type/rope_type == "yarn" */
        double factor;
        int original_max_position_embeddings;
        double beta_fast, beta_slow, mscale, mscale_all_dim;
    } yarn;
    float rms_norm_eps;
    int num_nextn_predict_layers;
    bool tie_word_embeddings;
    int bos_token_id;
    int eos_token_id;
    /* quantization_config: fp8 with block scales, or none (bf16). */
    ms_dtype_t weight_dtype;    /* MS_DT_BF16 or MS_DT_F8E4M3 */
    int weight_block[2];        /* [128, 128] for fp8 */
    char scoring_func[16];      /* "sigmoid" */
    char topk_method[16];       /* "noaux_tc" */
    ms_dtype_t torch_dtype;     /* "bfloat16" */
} mcfg_t;

/* Read MODEL_DIR/config.json. Unknown model_type, missing required keys, wrong
 * types or inconsistent values (e.g. n_routed_experts % n_group) give one
 * error line naming the file and key. */
ms_status_t mcfg_load(const char *model_dir, mcfg_t *out);

static inline int mcfg_qk_head_dim(const mcfg_t *c) { return c->qk_nope_head_dim + c->qk_rope_head_dim; }
static inline bool mcfg_layer_is_moe(const mcfg_t *c, int layer)
{
    return c->n_routed_experts > 0 && layer >= c->first_k_dense_replace && layer % c->moe_layer_freq == 0;
}

#endif
