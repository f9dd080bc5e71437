/* test_model_config.c — config.json reading: transformers' defaults, the
 * DeepSeek-R1 file, the spellings HF files use (null q_lora_rank, "type" vs
 * "rope_type", rope_parameters, eos lists), and one error per bad key that
 * names config.json and the key. */
#include "worker/model_config.h"
#include "test.h"
#include "ckpt_testutil.h"

static const char *R1 =
    "{\"architectures\":[\"DeepseekV3ForCausalLM\"],\"attention_bias\":false,\"attention_dropout\":0.0,"
    "\"auto_map\":{\"AutoConfig\":\"configuration_deepseek.DeepseekV3Config\"},"
    "\"aux_loss_alpha\":0.001,\"bos_token_id\":0,\"eos_token_id\":1,\"ep_size\":1,\"first_k_dense_replace\":3,"
    "\"hidden_act\":\"silu\",\"hidden_size\":7168,\"initializer_range\":0.02,\"intermediate_size\":18432,"
    "\"kv_lora_rank\":512,\"max_position_embeddings\":163840,\"model_type\":\"deepseek_v3\","
    "\"moe_intermediate_size\":2048,\"moe_layer_freq\":1,\"n_group\":8,\"n_routed_experts\":256,"
    "\"n_shared_experts\":1,\"norm_topk_prob\":true,\"num_attention_heads\":128,\"num_experts_per_tok\":8,"
    "\"num_hidden_layers\":61,\"num_key_value_heads\":128,\"num_nextn_predict_layers\":1,\"pretraining_tp\":1,"
    "\"q_lora_rank\":1536,\"qk_nope_head_dim\":128,\"qk_rope_head_dim\":64,"
    "\"quantization_config\":{\"activation_scheme\":\"dynamic\",\"fmt\":\"e4m3\",\"quant_method\":\"fp8\","
    "\"weight_block_size\":[128,128]},\"rms_norm_eps\":1e-06,"
    "\"rope_scaling\":{\"beta_fast\":32,\"beta_slow\":1,\"factor\":40,\"mscale\":1.0,\"mscale_all_dim\":1.0,"
    "\"original_max_position_embeddings\":4096,\"type\":\"yarn\"},\"rope_theta\":10000,"
    "\"routed_scaling_factor\":2.5,\"scoring_func\":\"sigmoid\",\"seq_aux\":true,\"tie_word_embeddings\":false,"
    "\"topk_group\":4,\"topk_method\":\"noaux_tc\",\"torch_dtype\":\"bfloat16\",\"transformers_version\":\"4.46.3\","
    "\"use_cache\":true,\"v_head_dim\":128,\"vocab_size\":129280}";

static int load_text(const char *text, mcfg_t *c)
{
    const char *d = tu_subdir("cfg");
    tu_write_str(d, "config.json", text);
    ms_error_clear();
    return mcfg_load(d, c);
}

/* R1 with one "key":value replaced (or added when old is not found). */
static int load_r1_with(const char *old, const char *new_, mcfg_t *c)
{
    char buf[8192];
    const char *p = strstr(R1, old);
    if (p) snprintf(buf, sizeof buf, "%.*s%s%s", (int)(p - R1), R1, new_, p + strlen(old));
    else snprintf(buf, sizeof buf, "{%s,%s", new_, R1 + 1);
    return load_text(buf, c);
}

/* The change must fail, naming config.json and every needle. */
static void bad(const char *old, const char *new_, const char *n1, const char *n2)
{
    mcfg_t c;
    int st = load_r1_with(old, new_, &c);
    const char *m = ms_error_last();
    T_CHECK_MSG(st != MS_OK, "accepted: %s", new_);
    T_CHECK_MSG(tu_has(m, "config.json"), "\"%s\" lacks the file", m);
    T_CHECK_MSG(tu_has(m, n1), "\"%s\" lacks \"%s\"", m, n1);
    T_CHECK_MSG(!n2 || tu_has(m, n2), "\"%s\" lacks \"%s\"", m, n2);
}

static void test_r1(void)
{
    mcfg_t c;
    T_CHECK(load_text(R1, &c) == MS_OK);
    T_CHECK(c.vocab_size == 129280 && c.hidden_size == 7168 && c.num_hidden_layers == 61);
    T_CHECK(c.q_lora_rank == 1536 && c.kv_lora_rank == 512 && mcfg_qk_head_dim(&c) == 192);
    T_CHECK(c.n_group == 8 && c.topk_group == 4 && c.num_experts_per_tok == 8 && c.n_routed_experts == 256);
    T_CHECK(c.routed_scaling_factor == 2.5f && c.norm_topk_prob && c.rms_norm_eps == 1e-6f);
    T_CHECK(c.yarn.enabled && c.yarn.factor == 40 && c.yarn.original_max_position_embeddings == 4096);
    T_CHECK(c.yarn.beta_fast == 32 && c.yarn.beta_slow == 1 && c.yarn.mscale == 1 && c.yarn.mscale_all_dim == 1);
    T_CHECK(c.weight_dtype == MS_DT_F8E4M3 && c.weight_block[0] == 128 && c.weight_block[1] == 128);
    T_CHECK(c.torch_dtype == MS_DT_BF16 && c.rope_interleave && c.rope_theta == 10000);
    T_CHECK(c.num_nextn_predict_layers == 1 && c.bos_token_id == 0 && c.eos_token_id == 1);
    T_CHECK(!mcfg_layer_is_moe(&c, 2) && mcfg_layer_is_moe(&c, 3) && mcfg_layer_is_moe(&c, 60));
    T_CHECK(strcmp(c.scoring_func, "sigmoid") == 0 && strcmp(c.topk_method, "noaux_tc") == 0);
}

static void test_defaults_and_spellings(void)
{
    mcfg_t c;
    /* Only model_type: everything else is DeepseekV3Config's default. */
    T_CHECK(load_text("{\"model_type\": \"deepseek_v3\"}", &c) == MS_OK);
    T_CHECK(c.vocab_size == 129280 && c.hidden_size == 7168 && c.intermediate_size == 18432);
    T_CHECK(c.moe_intermediate_size == 2048 && c.num_hidden_layers == 61 && c.first_k_dense_replace == 3);
    T_CHECK(c.q_lora_rank == 1536 && c.max_position_embeddings == 4096 && !c.yarn.enabled);
    T_CHECK(c.num_key_value_heads == 128 && c.moe_layer_freq == 1 && c.num_nextn_predict_layers == 0);
    T_CHECK(c.weight_dtype == MS_DT_BF16 && c.rope_theta == 10000 && !c.tie_word_embeddings);

    T_CHECK(load_r1_with("\"q_lora_rank\":1536", "\"q_lora_rank\":null", &c) == MS_OK && c.q_lora_rank == 0);
    T_CHECK(load_r1_with("\"type\":\"yarn\"", "\"rope_type\":\"yarn\"", &c) == MS_OK && c.yarn.enabled);
    T_CHECK(load_r1_with("\"eos_token_id\":1", "\"eos_token_id\":[7,1]", &c) == MS_OK && c.eos_token_id == 7);
    T_CHECK(load_r1_with("\"max_position_embeddings\":163840", "\"max_position_embeddings\":163840.0", &c) == MS_OK &&
            c.max_position_embeddings == 163840);
    T_CHECK(load_r1_with("\"quantization_config\":{", "\"quantization_config\":null,\"x\":{", &c) == MS_OK &&
            c.weight_dtype == MS_DT_BF16);
    T_CHECK(load_r1_with("\"num_key_value_heads\":128", "\"num_key_value_heads\":null", &c) == MS_OK &&
            c.num_key_value_heads == 128);
    T_CHECK(load_r1_with("\"torch_dtype\":\"bfloat16\"", "\"dtype\":\"bfloat16\"", &c) == MS_OK);
    /* Defaults inside rope_scaling: mscale_all_dim 0, original = max_position_embeddings. */
    T_CHECK(load_r1_with("\"rope_scaling\":{", "\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4},\"z\":{", &c) ==
                MS_OK &&
            c.yarn.factor == 4 && c.yarn.mscale_all_dim == 0 && c.yarn.original_max_position_embeddings == 163840 &&
            c.yarn.beta_fast == 32);
    /* transformers v5 spelling: rope_parameters carries rope_theta too. */
    T_CHECK(load_r1_with("\"rope_scaling\":{",
                         "\"rope_scaling\":null,\"rope_parameters\":{\"rope_type\":\"yarn\",\"rope_theta\":50000.0,"
                         "\"factor\":8.0,\"original_max_position_embeddings\":2048},\"z\":{",
                         &c) == MS_OK &&
            c.yarn.factor == 8 && c.rope_theta == 50000 && c.yarn.original_max_position_embeddings == 2048);
    T_CHECK(load_r1_with("\"rope_scaling\":{",
                         "\"rope_scaling\":null,\"rope_parameters\":{\"rope_type\":\"default\",\"rope_theta\":10000.0},\"z\":{",
                         &c) == MS_OK &&
            !c.yarn.enabled);
    T_CHECK(load_r1_with("\"rope_scaling\":{", "\"rope_scaling\":null,\"z\":{", &c) == MS_OK && !c.yarn.enabled);
}

static void test_errors(void)
{
    mcfg_t c;
    /* File-level errors. */
    const char *d = tu_subdir("nocfg");
    T_CHECK(mcfg_load(d, &c) != MS_OK && tu_has(ms_error_last(), "config.json"));
    T_CHECK(load_text("{\"model_type\": \"deepseek_v3\",\n \"hidden_size\": }", &c) != MS_OK);
    T_CHECK_MSG(tu_has(ms_error_last(), "config.json:2"), "%s", ms_error_last());
    T_CHECK(load_text("[1]", &c) != MS_OK && tu_has(ms_error_last(), "config.json"));
    T_CHECK(load_text("{\"model_type\":\"deepseek_v3\",\"vocab_size\":1,\"vocab_size\":2}", &c) != MS_OK);

    bad("\"model_type\":\"deepseek_v3\",", "", "model_type", "missing");
    bad("\"model_type\":\"deepseek_v3\"", "\"model_type\":\"llama\"", "model_type", "llama");
    bad("\"hidden_size\":7168", "\"hidden_size\":\"7168\"", "hidden_size", "integer");
    bad("\"hidden_size\":7168", "\"hidden_size\":7168.5", "hidden_size", "integer");
    bad("\"hidden_size\":7168", "\"hidden_size\":0", "hidden_size", "positive");
    bad("\"vocab_size\":129280", "\"vocab_size\":99999999999", "vocab_size", "range");
    bad("\"rms_norm_eps\":1e-06", "\"rms_norm_eps\":\"tiny\"", "rms_norm_eps", "number");
    bad("\"norm_topk_prob\":true", "\"norm_topk_prob\":1", "norm_topk_prob", NULL);
    bad("\"q_lora_rank\":1536", "\"q_lora_rank\":-1", "q_lora_rank", NULL);
    bad("\"n_group\":8", "\"n_group\":7", "n_group", "divisible");
    bad("\"n_group\":8", "\"n_group\":256", "n_group", "at least 2");
    bad("\"topk_group\":4", "\"topk_group\":9", "topk_group", NULL);
    bad("\"num_experts_per_tok\":8", "\"num_experts_per_tok\":200", "num_experts_per_tok", NULL);
    bad("\"qk_rope_head_dim\":64", "\"qk_rope_head_dim\":63", "qk_rope_head_dim", "even");
    bad("\"num_key_value_heads\":128", "\"num_key_value_heads\":1", "num_key_value_heads", NULL);
    bad("\"first_k_dense_replace\":3", "\"first_k_dense_replace\":62", "first_k_dense_replace", NULL);
    bad("\"eos_token_id\":1", "\"eos_token_id\":129280", "eos_token_id", "vocab_size");
    bad("\"eos_token_id\":1", "\"eos_token_id\":[]", "eos_token_id", NULL);
    bad("\"eos_token_id\":1", "\"eos_token_id\":\"</s>\"", "eos_token_id", NULL);
    bad("\"hidden_act\":\"silu\"", "\"hidden_act\":\"gelu\"", "hidden_act", "gelu");
    bad("\"attention_bias\":false", "\"attention_bias\":true", "attention_bias", NULL);
    bad("\"scoring_func\":\"sigmoid\"", "\"scoring_func\":\"softmax\"", "scoring_func", "softmax");
    bad("\"topk_method\":\"noaux_tc\"", "\"topk_method\":\"greedy\"", "topk_method", "greedy");
    bad("\"torch_dtype\":\"bfloat16\"", "\"torch_dtype\":\"int4\"", "torch_dtype", "int4");
    bad("\"type\":\"yarn\"", "\"type\":\"linear\"", "rope_scaling.type", "linear");
    bad("\"factor\":40,", "", "rope_scaling.factor", "missing");
    bad("\"factor\":40", "\"factor\":0.5", "rope_scaling.factor", NULL);
    bad("\"beta_fast\":32", "\"beta_fast\":\"x\"", "rope_scaling.beta_fast", "number");
    bad("\"rope_scaling\":{", "\"rope_scaling\":7,\"z\":{", "rope_scaling", NULL);
    bad("\"quant_method\":\"fp8\"", "\"quant_method\":\"awq\"", "quantization_config.quant_method", "awq");
    bad("\"fmt\":\"e4m3\"", "\"fmt\":\"e5m2\"", "quantization_config.fmt", "e5m2");
    bad("\"weight_block_size\":[128,128]", "\"weight_block_size\":[128]", "quantization_config.weight_block_size",
        NULL);
    bad("\"weight_block_size\":[128,128]", "\"weight_block_size\":[0,128]", "quantization_config.weight_block_size",
        NULL);
}

int main(void)
{
    ms_log_set_level((ms_log_level_t)(MS_LOG_ERROR + 1));
    tu_mkdir();
    test_r1();
    test_defaults_and_spellings();
    test_errors();
    tu_cleanup();
    return t_done();
}
