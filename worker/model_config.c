/* model_config.c — reads a Hugging Face config.json (model_type deepseek_v3)
 * into mcfg_t. Owns: key parsing with transformers' DeepseekV3Config
 * defaults, rope_scaling / rope_parameters (YaRN), quantization_config (fp8
 * block scales), and the consistency checks the engine relies on.
 *
 * Every error is one line naming the file and the key. A key that is absent
 * takes its transformers default; a key that is present with the wrong JSON
 * type is an error (never silently defaulted). */
#include "model_config.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Parsing context: the file name for messages. */
typedef struct {
    const char *path;
    json_t *root;
} mcfg_ctx_t;

/* Read an optional integer key. `null` is accepted only where allow_null;
 * then *is_null is set and *out untouched. */
static ms_status_t mcfg_int(const mcfg_ctx_t *c, json_t *obj, const char *prefix, const char *key, int def, int *out,
                            bool allow_null, bool *is_null)
{
    json_t *v = json_object_get(obj, key);
    if (is_null) *is_null = false;
    if (!v) {
        *out = def;
        return MS_OK;
    }
    if (json_is_null(v) && allow_null) {
        if (is_null) *is_null = true;
        return MS_OK;
    }
    /* HF configs sometimes carry integral values as reals (e.g. 4096.0). */
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d == floor(d) && fabs(d) <= INT_MAX) {
            *out = (int)d;
            return MS_OK;
        }
    }
    if (!json_is_integer(v))
        return MS_ERR(MS_ERR_INVALID, "%s: key %s%s: expected an integer", c->path, prefix, key);
    json_int_t i = json_integer_value(v);
    if (i < INT_MIN || i > INT_MAX)
        return MS_ERR(MS_ERR_INVALID, "%s: key %s%s: value %lld out of range", c->path, prefix, key, (long long)i);
    *out = (int)i;
    return MS_OK;
}

static ms_status_t mcfg_num(const mcfg_ctx_t *c, json_t *obj, const char *prefix, const char *key, double def,
                            double *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v) {
        *out = def;
        return MS_OK;
    }
    if (!json_is_number(v))
        return MS_ERR(MS_ERR_INVALID, "%s: key %s%s: expected a number", c->path, prefix, key);
    *out = json_number_value(v);
    return MS_OK;
}

static ms_status_t mcfg_bool(const mcfg_ctx_t *c, json_t *obj, const char *key, bool def, bool *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v) {
        *out = def;
        return MS_OK;
    }
    if (!json_is_boolean(v)) return MS_ERR(MS_ERR_INVALID, "%s: key %s: expected true or false", c->path, key);
    *out = json_is_true(v);
    return MS_OK;
}

/* Optional string; NULL when absent. */
static ms_status_t mcfg_str(const mcfg_ctx_t *c, json_t *obj, const char *prefix, const char *key, const char **out)
{
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v || json_is_null(v)) return MS_OK;
    if (!json_is_string(v)) return MS_ERR(MS_ERR_INVALID, "%s: key %s%s: expected a string", c->path, prefix, key);
    *out = json_string_value(v);
    return MS_OK;
}

/* bos/eos may be an int or a list of ints (generation configs use lists);
 * the first element is the one the engine stops on. */
static ms_status_t mcfg_token_id(const mcfg_ctx_t *c, const char *key, int def, int *out)
{
    json_t *v = json_object_get(c->root, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return MS_OK;
    }
    if (json_is_array(v)) {
        if (json_array_size(v) == 0 || !json_is_integer(json_array_get(v, 0)))
            return MS_ERR(MS_ERR_INVALID, "%s: key %s: expected an integer or a non-empty list of integers", c->path,
                          key);
        v = json_array_get(v, 0);
    }
    if (!json_is_integer(v))
        return MS_ERR(MS_ERR_INVALID, "%s: key %s: expected an integer or a list of integers", c->path, key);
    json_int_t i = json_integer_value(v);
    if (i < 0 || i > INT_MAX) return MS_ERR(MS_ERR_INVALID, "%s: key %s: %lld is not a token id", c->path, key, (long long)i);
    *out = (int)i;
    return MS_OK;
}

static ms_status_t mcfg_dtype_name(const mcfg_ctx_t *c, const char *key, const char *s, ms_dtype_t *out)
{
    if (strcmp(s, "bfloat16") == 0) *out = MS_DT_BF16;
    else if (strcmp(s, "float16") == 0) *out = MS_DT_F16;
    else if (strcmp(s, "float32") == 0) *out = MS_DT_F32;
    else return MS_ERR(MS_ERR_UNSUPPORTED, "%s: key %s: unsupported dtype \"%s\"", c->path, key, s);
    return MS_OK;
}

/* rope_scaling (v4 files, "type" or "rope_type") or rope_parameters (v5
 * files, which also carry rope_theta). Only YaRN and no scaling are known. */
static ms_status_t mcfg_rope(const mcfg_ctx_t *c, mcfg_t *m)
{
    const char *key = "rope_scaling";
    json_t *rs = json_object_get(c->root, key);
    if (!rs || json_is_null(rs)) {
        key = "rope_parameters";
        rs = json_object_get(c->root, key);
    }
    if (!rs || json_is_null(rs)) return MS_OK;
    if (!json_is_object(rs)) return MS_ERR(MS_ERR_INVALID, "%s: key %s: expected an object or null", c->path, key);

    char prefix[32];
    snprintf(prefix, sizeof prefix, "%s.", key);
    if (json_object_get(rs, "rope_theta")) MS_TRY(mcfg_num(c, rs, prefix, "rope_theta", m->rope_theta, &m->rope_theta));

    const char *type = NULL;
    MS_TRY(mcfg_str(c, rs, prefix, "rope_type", &type));
    if (!type) MS_TRY(mcfg_str(c, rs, prefix, "type", &type));
    if (!type || strcmp(type, "default") == 0) return MS_OK;
    if (strcmp(type, "yarn") != 0)
        return MS_ERR(MS_ERR_UNSUPPORTED, "%s: key %stype: rope scaling \"%s\" is not supported (only yarn)", c->path,
                      prefix, type);

    m->yarn.enabled = true;
    if (!json_object_get(rs, "factor"))
        return MS_ERR(MS_ERR_INVALID, "%s: key %sfactor: missing (required for yarn)", c->path, prefix);
    MS_TRY(mcfg_num(c, rs, prefix, "factor", 1.0, &m->yarn.factor));
    /* transformers falls back to max_position_embeddings when the original is absent. */
    MS_TRY(mcfg_int(c, rs, prefix, "original_max_position_embeddings", m->max_position_embeddings,
                    &m->yarn.original_max_position_embeddings, false, NULL));
    MS_TRY(mcfg_num(c, rs, prefix, "beta_fast", 32.0, &m->yarn.beta_fast));
    MS_TRY(mcfg_num(c, rs, prefix, "beta_slow", 1.0, &m->yarn.beta_slow));
    MS_TRY(mcfg_num(c, rs, prefix, "mscale", 1.0, &m->yarn.mscale));
    MS_TRY(mcfg_num(c, rs, prefix, "mscale_all_dim", 0.0, &m->yarn.mscale_all_dim));

    if (!(m->yarn.factor >= 1.0))
        return MS_ERR(MS_ERR_INVALID, "%s: key %sfactor: %g must be >= 1", c->path, prefix, m->yarn.factor);
    if (m->yarn.original_max_position_embeddings <= 0)
        return MS_ERR(MS_ERR_INVALID, "%s: key %soriginal_max_position_embeddings: must be positive", c->path, prefix);
    if (!(m->yarn.beta_fast > 0) || !(m->yarn.beta_slow > 0))
        return MS_ERR(MS_ERR_INVALID, "%s: key %sbeta_fast: beta_fast and beta_slow must be positive", c->path, prefix);
    return MS_OK;
}

static ms_status_t mcfg_quant(const mcfg_ctx_t *c, mcfg_t *m)
{
    const char *key = "quantization_config";
    json_t *q = json_object_get(c->root, key);
    m->weight_dtype = m->torch_dtype;
    m->weight_block[0] = m->weight_block[1] = 0;
    if (!q || json_is_null(q)) return MS_OK;
    if (!json_is_object(q)) return MS_ERR(MS_ERR_INVALID, "%s: key %s: expected an object", c->path, key);

    const char *method = NULL, *fmt = NULL;
    MS_TRY(mcfg_str(c, q, "quantization_config.", "quant_method", &method));
    MS_TRY(mcfg_str(c, q, "quantization_config.", "fmt", &fmt));
    if (!method || strcmp(method, "fp8") != 0)
        return MS_ERR(MS_ERR_UNSUPPORTED, "%s: key quantization_config.quant_method: \"%s\" is not supported (only fp8)",
                      c->path, method ? method : "(missing)");
    if (fmt && strcmp(fmt, "e4m3") != 0)
        return MS_ERR(MS_ERR_UNSUPPORTED, "%s: key quantization_config.fmt: \"%s\" is not supported (only e4m3)",
                      c->path, fmt);
    json_t *bs = json_object_get(q, "weight_block_size");
    if (!bs || !json_is_array(bs) || json_array_size(bs) != 2 || !json_is_integer(json_array_get(bs, 0)) ||
        !json_is_integer(json_array_get(bs, 1)) || json_integer_value(json_array_get(bs, 0)) <= 0 ||
        json_integer_value(json_array_get(bs, 1)) <= 0 || json_integer_value(json_array_get(bs, 0)) > 65536 ||
        json_integer_value(json_array_get(bs, 1)) > 65536)
        return MS_ERR(MS_ERR_INVALID,
                      "%s: key quantization_config.weight_block_size: expected two positive integers like [128, 128]",
                      c->path);
    m->weight_dtype = MS_DT_F8E4M3;
    m->weight_block[0] = (int)json_integer_value(json_array_get(bs, 0));
    m->weight_block[1] = (int)json_integer_value(json_array_get(bs, 1));
    return MS_OK;
}

/* Checks the engine depends on; each names the key at fault. */
static ms_status_t mcfg_check(const mcfg_ctx_t *c, const mcfg_t *m)
{
    /* Upper bounds are sanity limits far above DeepSeek-V3/R1 (61 layers, hidden 7168, vocab 129280, 256
     * experts): a malformed config.json (num_hidden_layers 1e9) is one line naming the key, before any
     * size is computed from it; whether a sane model fits the rank is serve's memory check. */
    const struct { const char *key; int v, max; } pos[] = {
        {"vocab_size", m->vocab_size, 1 << 22},
        {"hidden_size", m->hidden_size, 1 << 16},
        {"intermediate_size", m->intermediate_size, 1 << 18},
        {"num_hidden_layers", m->num_hidden_layers, 1024},
        {"num_attention_heads", m->num_attention_heads, 1024},
        {"num_key_value_heads", m->num_key_value_heads, 1024},
        {"kv_lora_rank", m->kv_lora_rank, 1 << 14},
        {"qk_nope_head_dim", m->qk_nope_head_dim, 4096},
        {"qk_rope_head_dim", m->qk_rope_head_dim, 4096},
        {"v_head_dim", m->v_head_dim, 4096},
        {"max_position_embeddings", m->max_position_embeddings, 1 << 24},
        {"moe_layer_freq", m->moe_layer_freq, 1024},
    };
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++) {
        if (pos[i].v <= 0) return MS_ERR(MS_ERR_INVALID, "%s: key %s: %d must be positive", c->path, pos[i].key, pos[i].v);
        if (pos[i].v > pos[i].max)
            return MS_ERR(MS_ERR_INVALID, "%s: key %s: %d is beyond the supported %d", c->path, pos[i].key, pos[i].v,
                          pos[i].max);
    }
    if (m->n_routed_experts > 16384 || m->n_shared_experts > 64 || m->q_lora_rank > (1 << 16) ||
        m->num_nextn_predict_layers > 64)
        return MS_ERR(MS_ERR_INVALID, "%s: key %s: beyond the supported range", c->path,
                      m->n_routed_experts > 16384 ? "n_routed_experts" : m->n_shared_experts > 64 ? "n_shared_experts"
                      : m->q_lora_rank > (1 << 16) ? "q_lora_rank" : "num_nextn_predict_layers");
    const struct { const char *key; int v; } nonneg[] = {
        {"q_lora_rank", m->q_lora_rank},
        {"first_k_dense_replace", m->first_k_dense_replace},
        {"n_routed_experts", m->n_routed_experts},
        {"n_shared_experts", m->n_shared_experts},
        {"num_nextn_predict_layers", m->num_nextn_predict_layers},
    };
    for (size_t i = 0; i < sizeof nonneg / sizeof nonneg[0]; i++)
        if (nonneg[i].v < 0)
            return MS_ERR(MS_ERR_INVALID, "%s: key %s: %d must not be negative", c->path, nonneg[i].key, nonneg[i].v);

    if (m->qk_rope_head_dim % 2)
        return MS_ERR(MS_ERR_INVALID, "%s: key qk_rope_head_dim: %d must be even (rotary pairs)", c->path,
                      m->qk_rope_head_dim);
    if (m->num_key_value_heads != m->num_attention_heads)
        return MS_ERR(MS_ERR_INVALID, "%s: key num_key_value_heads: %d must equal num_attention_heads %d (MLA)", c->path,
                      m->num_key_value_heads, m->num_attention_heads);
    if (m->first_k_dense_replace > m->num_hidden_layers)
        return MS_ERR(MS_ERR_INVALID, "%s: key first_k_dense_replace: %d exceeds num_hidden_layers %d", c->path,
                      m->first_k_dense_replace, m->num_hidden_layers);
    if (!(m->rms_norm_eps > 0)) return MS_ERR(MS_ERR_INVALID, "%s: key rms_norm_eps: must be positive", c->path);
    if (!(m->rope_theta > 0)) return MS_ERR(MS_ERR_INVALID, "%s: key rope_theta: must be positive", c->path);
    if (m->bos_token_id >= m->vocab_size)
        return MS_ERR(MS_ERR_INVALID, "%s: key bos_token_id: %d is outside vocab_size %d", c->path, m->bos_token_id,
                      m->vocab_size);
    if (m->eos_token_id >= m->vocab_size)
        return MS_ERR(MS_ERR_INVALID, "%s: key eos_token_id: %d is outside vocab_size %d", c->path, m->eos_token_id,
                      m->vocab_size);

    /* MoE only matters if some layer is MoE. */
    if (m->n_routed_experts > 0 && m->first_k_dense_replace < m->num_hidden_layers) {
        if (m->n_group <= 0) return MS_ERR(MS_ERR_INVALID, "%s: key n_group: %d must be positive", c->path, m->n_group);
        if (m->n_routed_experts % m->n_group)
            return MS_ERR(MS_ERR_INVALID, "%s: key n_group: n_routed_experts %d is not divisible by n_group %d", c->path,
                          m->n_routed_experts, m->n_group);
        int per_group = m->n_routed_experts / m->n_group;
        /* Group score = sum of the top-2 experts of each group. */
        if (m->n_group > 1 && per_group < 2)
            return MS_ERR(MS_ERR_INVALID, "%s: key n_group: %d groups leave %d expert per group (need at least 2)",
                          c->path, m->n_group, per_group);
        if (m->topk_group <= 0 || m->topk_group > m->n_group)
            return MS_ERR(MS_ERR_INVALID, "%s: key topk_group: %d must be in 1..n_group (%d)", c->path, m->topk_group,
                          m->n_group);
        if (m->num_experts_per_tok <= 0 || m->num_experts_per_tok > m->topk_group * per_group)
            return MS_ERR(MS_ERR_INVALID,
                          "%s: key num_experts_per_tok: %d must be in 1..%d (topk_group * experts per group)", c->path,
                          m->num_experts_per_tok, m->topk_group * per_group);
        if (m->moe_intermediate_size <= 0)
            return MS_ERR(MS_ERR_INVALID, "%s: key moe_intermediate_size: %d must be positive", c->path,
                          m->moe_intermediate_size);
        if (strcmp(m->scoring_func, "sigmoid") != 0)
            return MS_ERR(MS_ERR_UNSUPPORTED, "%s: key scoring_func: \"%s\" is not supported (only sigmoid)", c->path,
                          m->scoring_func);
        if (strcmp(m->topk_method, "noaux_tc") != 0)
            return MS_ERR(MS_ERR_UNSUPPORTED, "%s: key topk_method: \"%s\" is not supported (only noaux_tc)", c->path,
                          m->topk_method);
    }
    return MS_OK;
}

static ms_status_t mcfg_parse(const mcfg_ctx_t *c, mcfg_t *m)
{
    json_t *r = c->root;
    const char *s = NULL;

    MS_TRY(mcfg_str(c, r, "", "model_type", &s));
    if (!s) return MS_ERR(MS_ERR_INVALID, "%s: key model_type: missing (expected \"deepseek_v3\")", c->path);
    if (strcmp(s, "deepseek_v3") != 0)
        return MS_ERR(MS_ERR_UNSUPPORTED, "%s: key model_type: \"%s\" is not supported (expected \"deepseek_v3\")",
                      c->path, s);

    /* Integer keys with DeepseekV3Config's defaults. */
    const struct { const char *key; int def; int *dst; } ints[] = {
        {"vocab_size", 129280, &m->vocab_size},
        {"hidden_size", 7168, &m->hidden_size},
        {"intermediate_size", 18432, &m->intermediate_size},
        {"moe_intermediate_size", 2048, &m->moe_intermediate_size},
        {"num_hidden_layers", 61, &m->num_hidden_layers},
        {"first_k_dense_replace", 3, &m->first_k_dense_replace},
        {"moe_layer_freq", 1, &m->moe_layer_freq},
        {"n_routed_experts", 256, &m->n_routed_experts},
        {"n_shared_experts", 1, &m->n_shared_experts},
        {"num_experts_per_tok", 8, &m->num_experts_per_tok},
        {"n_group", 8, &m->n_group},
        {"topk_group", 4, &m->topk_group},
        {"kv_lora_rank", 512, &m->kv_lora_rank},
        {"qk_nope_head_dim", 128, &m->qk_nope_head_dim},
        {"qk_rope_head_dim", 64, &m->qk_rope_head_dim},
        {"v_head_dim", 128, &m->v_head_dim},
        {"num_attention_heads", 128, &m->num_attention_heads},
        {"max_position_embeddings", 4096, &m->max_position_embeddings},
        {"num_nextn_predict_layers", 0, &m->num_nextn_predict_layers},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        MS_TRY(mcfg_int(c, r, "", ints[i].key, ints[i].def, ints[i].dst, false, NULL));

    /* null → q_proj directly (no q compression). */
    bool q_null = false;
    MS_TRY(mcfg_int(c, r, "", "q_lora_rank", 1536, &m->q_lora_rank, true, &q_null));
    if (q_null) m->q_lora_rank = 0;
    /* null → num_attention_heads, as transformers does for old files. */
    bool kvh_null = false;
    MS_TRY(mcfg_int(c, r, "", "num_key_value_heads", m->num_attention_heads, &m->num_key_value_heads, true, &kvh_null));
    if (kvh_null) m->num_key_value_heads = m->num_attention_heads;

    double d;
    MS_TRY(mcfg_num(c, r, "", "routed_scaling_factor", 2.5, &d));
    m->routed_scaling_factor = (float)d;
    MS_TRY(mcfg_num(c, r, "", "rms_norm_eps", 1e-6, &d));
    m->rms_norm_eps = (float)d;
    MS_TRY(mcfg_num(c, r, "", "rope_theta", 10000.0, &m->rope_theta));
    MS_TRY(mcfg_bool(c, r, "norm_topk_prob", true, &m->norm_topk_prob));
    MS_TRY(mcfg_bool(c, r, "rope_interleave", true, &m->rope_interleave));
    MS_TRY(mcfg_bool(c, r, "tie_word_embeddings", false, &m->tie_word_embeddings));
    MS_TRY(mcfg_token_id(c, "bos_token_id", 0, &m->bos_token_id));
    MS_TRY(mcfg_token_id(c, "eos_token_id", 1, &m->eos_token_id));

    MS_TRY(mcfg_str(c, r, "", "hidden_act", &s));
    if (s && strcmp(s, "silu") != 0)
        return MS_ERR(MS_ERR_UNSUPPORTED, "%s: key hidden_act: \"%s\" is not supported (only silu)", c->path, s);
    bool attn_bias = false;
    MS_TRY(mcfg_bool(c, r, "attention_bias", false, &attn_bias));
    if (attn_bias) return MS_ERR(MS_ERR_UNSUPPORTED, "%s: key attention_bias: true is not supported", c->path);

    const struct { const char *key; const char *def; char *dst; size_t cap; } strs[] = {
        {"scoring_func", "sigmoid", m->scoring_func, sizeof m->scoring_func},
        {"topk_method", "noaux_tc", m->topk_method, sizeof m->topk_method},
    };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        MS_TRY(mcfg_str(c, r, "", strs[i].key, &s));
        if (!s) s = strs[i].def;
        if (strlen(s) >= strs[i].cap)
            return MS_ERR(MS_ERR_UNSUPPORTED, "%s: key %s: \"%s\" is not supported", c->path, strs[i].key, s);
        snprintf(strs[i].dst, strs[i].cap, "%s", s);
    }

    /* transformers v5 writes "dtype", v4 "torch_dtype". */
    m->torch_dtype = MS_DT_BF16;
    const char *dkey = json_object_get(r, "torch_dtype") ? "torch_dtype" : "dtype";
    MS_TRY(mcfg_str(c, r, "", dkey, &s));
    if (s) MS_TRY(mcfg_dtype_name(c, dkey, s, &m->torch_dtype));

    MS_TRY(mcfg_rope(c, m));
    MS_TRY(mcfg_quant(c, m));
    return mcfg_check(c, m);
}

ms_status_t mcfg_load(const char *model_dir, mcfg_t *out)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/config.json", model_dir) >= (int)sizeof path)
        return MS_ERR(MS_ERR_INVALID, "%s: model directory path too long", model_dir);

    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (jerr.line < 0 || strstr(jerr.text, "unable to open"))
            return MS_ERR(MS_ERR_IO, "%s: cannot read: %s", path, jerr.text);
        return MS_ERR(MS_ERR_FORMAT, "%s:%d: invalid JSON: %s", path, jerr.line, jerr.text);
    }
    ms_status_t st = MS_OK;
    if (!json_is_object(root)) {
        st = MS_ERR(MS_ERR_FORMAT, "%s: expected a JSON object at the top level", path);
        goto out_root;
    }
    mcfg_t m;
    memset(&m, 0, sizeof m);
    mcfg_ctx_t c = {.path = path, .root = root};
    MS_TRY_GOTO(st, mcfg_parse(&c, &m), out_root);
    *out = m;
out_root:
    json_decref(root);
    return st;
}
