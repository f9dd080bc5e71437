/* mkmodel.c — `moeserve-mkmodel`: writes a deterministic random DeepSeek-V3
 * checkpoint in the Hugging Face format (config.json,
 * generation_config.json, model.safetensors or shards + index, optionally
 * the tokenizer files). Owns the presets and the config.json writer; the
 * tensors themselves are in mkmodel_write.c.
 *
 *   moeserve-mkmodel --preset tiny|tiny-noq|r1 --dtype bf16|fp8 --out DIR
 *       [--seed N] [--tokenizer TOKDIR] [--mtp] [--config-only] [--layers N]
 *       [--shard-mb N] [--dequant-twin DIR2]
 *
 * The written config.json is read back with mcfg_load, so every checkpoint
 * this tool writes is one the engine accepts. */
#include "mkmodel.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    const char *name;
    const char *about;
    uint64_t shard_mb; /* default shard size: tiny shards so its tests read the sharded path */
} mk_preset_t;

static const mk_preset_t mk_presets[] = {
    {"tiny", "q-LoRA, YaRN, 4 groups (top 2), 1 dense + 2 MoE layers, vocab 512; sharded (4 MiB)", 4},
    {"tiny-noq", "no q-LoRA, 1 group, no rope scaling, 2 shared experts, norm_topk_prob false; one file", 0},
    {"r1", "DeepSeek-R1 geometry (671B); --layers N truncates", 4096},
    {"r1-ep8", "one EP8 rank of R1: R1's layers with 32 experts (top 8, 8 groups top 4), all MoE; --layers N", 4096},
};

static void mk_preset_tiny(mcfg_t *c)
{
    c->vocab_size = 512;
    c->hidden_size = 256;
    c->intermediate_size = 512;
    c->moe_intermediate_size = 192; /* not a multiple of 128: partial fp8 blocks */
    c->num_hidden_layers = 3;
    c->first_k_dense_replace = 1;
    c->n_routed_experts = 16;
    c->n_shared_experts = 1;
    c->num_experts_per_tok = 4;
    c->n_group = 4;
    c->topk_group = 2;
    c->routed_scaling_factor = 2.5f;
    c->norm_topk_prob = true;
    c->q_lora_rank = 96;
    c->kv_lora_rank = 64;
    c->qk_nope_head_dim = 32;
    c->qk_rope_head_dim = 16;
    c->v_head_dim = 32;
    c->num_attention_heads = 4;
    c->max_position_embeddings = 4096;
    c->yarn.enabled = true; /* max_position_embeddings / original == factor (see the reference doc) */
    c->yarn.factor = 4.0;
    c->yarn.original_max_position_embeddings = 1024;
    c->yarn.beta_fast = 32;
    c->yarn.beta_slow = 1;
    c->yarn.mscale = 1.0;
    c->yarn.mscale_all_dim = 1.0;
}

static void mk_preset_tiny_noq(mcfg_t *c)
{
    c->vocab_size = 512;
    c->hidden_size = 192;
    c->intermediate_size = 384;
    c->moe_intermediate_size = 96;
    c->num_hidden_layers = 2;
    c->first_k_dense_replace = 1;
    c->n_routed_experts = 8;
    c->n_shared_experts = 2;
    c->num_experts_per_tok = 2;
    c->n_group = 1;
    c->topk_group = 1;
    c->routed_scaling_factor = 1.5f;
    c->norm_topk_prob = false;
    c->q_lora_rank = 0;
    c->kv_lora_rank = 32;
    c->qk_nope_head_dim = 16;
    c->qk_rope_head_dim = 8;
    c->v_head_dim = 24;
    c->num_attention_heads = 3;
    c->max_position_embeddings = 2048;
    c->yarn.enabled = false;
}

static void mk_preset_r1(mcfg_t *c)
{
    c->vocab_size = 129280;
    c->hidden_size = 7168;
    c->intermediate_size = 18432;
    c->moe_intermediate_size = 2048;
    c->num_hidden_layers = 61;
    c->first_k_dense_replace = 3;
    c->n_routed_experts = 256;
    c->n_shared_experts = 1;
    c->num_experts_per_tok = 8;
    c->n_group = 8;
    c->topk_group = 4;
    c->routed_scaling_factor = 2.5f;
    c->norm_topk_prob = true;
    c->q_lora_rank = 1536;
    c->kv_lora_rank = 512;
    c->qk_nope_head_dim = 128;
    c->qk_rope_head_dim = 64;
    c->v_head_dim = 128;
    c->num_attention_heads = 128;
    c->max_position_embeddings = 163840;
    c->yarn.enabled = true;
    c->yarn.factor = 40;
    c->yarn.original_max_position_embeddings = 4096;
    c->yarn.beta_fast = 32;
    c->yarn.beta_slow = 1;
    c->yarn.mscale = 1.0;
    c->yarn.mscale_all_dim = 1.0;
}

/* Integral doubles are written as JSON integers, as DeepSeek's files do. */
static json_t *mk_num(double v) { return v == (double)(json_int_t)v ? json_integer((json_int_t)v) : json_real(v); }

static json_t *mk_config_json(const mcfg_t *c, bool fp8)
{
    json_t *j = json_object();
    json_object_set_new(j, "architectures", json_pack("[s]", "DeepseekV3ForCausalLM"));
    json_object_set_new(j, "attention_bias", json_false());
    json_object_set_new(j, "attention_dropout", json_real(0.0));
    json_object_set_new(j, "bos_token_id", json_integer(c->bos_token_id));
    json_object_set_new(j, "eos_token_id", json_integer(c->eos_token_id));
    json_object_set_new(j, "first_k_dense_replace", json_integer(c->first_k_dense_replace));
    json_object_set_new(j, "hidden_act", json_string("silu"));
    json_object_set_new(j, "hidden_size", json_integer(c->hidden_size));
    json_object_set_new(j, "initializer_range", json_real(0.02));
    json_object_set_new(j, "intermediate_size", json_integer(c->intermediate_size));
    json_object_set_new(j, "kv_lora_rank", json_integer(c->kv_lora_rank));
    json_object_set_new(j, "max_position_embeddings", json_integer(c->max_position_embeddings));
    json_object_set_new(j, "model_type", json_string("deepseek_v3"));
    json_object_set_new(j, "moe_intermediate_size", json_integer(c->moe_intermediate_size));
    json_object_set_new(j, "moe_layer_freq", json_integer(c->moe_layer_freq));
    json_object_set_new(j, "n_group", json_integer(c->n_group));
    json_object_set_new(j, "n_routed_experts", json_integer(c->n_routed_experts));
    json_object_set_new(j, "n_shared_experts", json_integer(c->n_shared_experts));
    json_object_set_new(j, "norm_topk_prob", json_boolean(c->norm_topk_prob));
    json_object_set_new(j, "num_attention_heads", json_integer(c->num_attention_heads));
    json_object_set_new(j, "num_experts_per_tok", json_integer(c->num_experts_per_tok));
    json_object_set_new(j, "num_hidden_layers", json_integer(c->num_hidden_layers));
    json_object_set_new(j, "num_key_value_heads", json_integer(c->num_key_value_heads));
    json_object_set_new(j, "num_nextn_predict_layers", json_integer(c->num_nextn_predict_layers));
    if (fp8) {
        json_t *q = json_object();
        json_object_set_new(q, "activation_scheme", json_string("dynamic"));
        json_object_set_new(q, "fmt", json_string("e4m3"));
        json_object_set_new(q, "quant_method", json_string("fp8"));
        json_object_set_new(q, "weight_block_size", json_pack("[ii]", 128, 128));
        json_object_set_new(j, "quantization_config", q);
    }
    json_object_set_new(j, "q_lora_rank", c->q_lora_rank > 0 ? json_integer(c->q_lora_rank) : json_null());
    json_object_set_new(j, "qk_nope_head_dim", json_integer(c->qk_nope_head_dim));
    json_object_set_new(j, "qk_rope_head_dim", json_integer(c->qk_rope_head_dim));
    json_object_set_new(j, "rms_norm_eps", json_real(c->rms_norm_eps == 1e-6f ? 1e-6 : (double)c->rms_norm_eps));
    if (c->yarn.enabled) {
        json_t *r = json_object();
        json_object_set_new(r, "beta_fast", mk_num(c->yarn.beta_fast));
        json_object_set_new(r, "beta_slow", mk_num(c->yarn.beta_slow));
        json_object_set_new(r, "factor", mk_num(c->yarn.factor));
        json_object_set_new(r, "mscale", json_real(c->yarn.mscale));
        json_object_set_new(r, "mscale_all_dim", json_real(c->yarn.mscale_all_dim));
        json_object_set_new(r, "original_max_position_embeddings", json_integer(c->yarn.original_max_position_embeddings));
        json_object_set_new(r, "type", json_string("yarn"));
        json_object_set_new(j, "rope_scaling", r);
    } else {
        json_object_set_new(j, "rope_scaling", json_null());
    }
    json_object_set_new(j, "rope_theta", mk_num(c->rope_theta));
    json_object_set_new(j, "routed_scaling_factor", mk_num(c->routed_scaling_factor));
    json_object_set_new(j, "scoring_func", json_string(c->scoring_func));
    json_object_set_new(j, "tie_word_embeddings", json_boolean(c->tie_word_embeddings));
    json_object_set_new(j, "topk_group", json_integer(c->topk_group));
    json_object_set_new(j, "topk_method", json_string(c->topk_method));
    json_object_set_new(j, "torch_dtype", json_string("bfloat16"));
    json_object_set_new(j, "transformers_version", json_string("4.46.3"));
    json_object_set_new(j, "use_cache", json_true());
    json_object_set_new(j, "v_head_dim", json_integer(c->v_head_dim));
    json_object_set_new(j, "vocab_size", json_integer(c->vocab_size));
    return j;
}

static ms_status_t mk_dump(json_t *j, const char *dir, const char *file)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    int rc = json_dump_file(j, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    json_decref(j);
    if (rc != 0) return MS_ERR(MS_ERR_IO, "%s: cannot write", path);
    return MS_OK;
}

static ms_status_t mk_write_configs(const char *dir, const mcfg_t *c, bool fp8)
{
    MS_TRY(mk_dump(mk_config_json(c, fp8), dir, "config.json"));
    json_t *g = json_object();
    json_object_set_new(g, "_from_model_config", json_true());
    json_object_set_new(g, "bos_token_id", json_integer(c->bos_token_id));
    json_object_set_new(g, "eos_token_id", json_integer(c->eos_token_id));
    json_object_set_new(g, "do_sample", json_true());
    json_object_set_new(g, "temperature", json_real(0.6));
    json_object_set_new(g, "top_p", json_real(0.95));
    json_object_set_new(g, "transformers_version", json_string("4.46.3"));
    MS_TRY(mk_dump(g, dir, "generation_config.json"));
    /* Read it back: what this tool writes, the engine must accept. */
    mcfg_t back;
    MS_TRY(mcfg_load(dir, &back));
    return MS_OK;
}

static ms_status_t mk_copy_file(const char *from_dir, const char *to_dir, const char *file)
{
    char src[4096], dst[4096];
    snprintf(src, sizeof src, "%s/%s", from_dir, file);
    snprintf(dst, sizeof dst, "%s/%s", to_dir, file);
    FILE *in = fopen(src, "rb");
    if (!in) return MS_ERR(MS_ERR_IO, "%s: cannot read: %s", src, strerror(errno));
    FILE *out = fopen(dst, "wb");
    ms_status_t st = MS_OK;
    if (!out) {
        st = MS_ERR(MS_ERR_IO, "%s: cannot create: %s", dst, strerror(errno));
        goto out_in;
    }
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) {
            st = MS_ERR(MS_ERR_IO, "%s: write failed: %s", dst, strerror(errno));
            break;
        }
    if (st == MS_OK && ferror(in)) st = MS_ERR(MS_ERR_IO, "%s: read failed", src);
    if (fclose(out) != 0 && st == MS_OK) st = MS_ERR(MS_ERR_IO, "%s: write failed: %s", dst, strerror(errno));
out_in:
    fclose(in);
    return st;
}

/* Create DIR and drop weights a previous run left there, so a sharded run
 * after a single-file run (or the reverse) leaves no stale tensors behind. */
static ms_status_t mk_prepare_dir(const char *dir)
{
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) return MS_ERR(MS_ERR_IO, "%s: cannot create: %s", dir, strerror(errno));
    DIR *d = opendir(dir);
    if (!d) return MS_ERR(MS_ERR_IO, "%s: cannot open: %s", dir, strerror(errno));
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        size_t len = strlen(n);
        bool weights = strcmp(n, "model.safetensors") == 0 || strcmp(n, "model.safetensors.index.json") == 0 ||
                       (strncmp(n, "model-", 6) == 0 && len > 12 && strcmp(n + len - 12, ".safetensors") == 0);
        if (!weights) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, n);
        if (unlink(path) != 0) {
            closedir(d);
            return MS_ERR(MS_ERR_IO, "%s: cannot remove: %s", path, strerror(errno));
        }
    }
    closedir(d);
    return MS_OK;
}

static void mk_usage(FILE *f)
{
    fprintf(f,
            "usage: moeserve-mkmodel --preset NAME --dtype bf16|fp8 --out DIR [--seed N] [--tokenizer TOKDIR]\n"
            "                        [--mtp] [--config-only] [--layers N] [--shard-mb N] [--dequant-twin DIR2]\n"
            "  --shard-mb N        start a new shard past N MiB of data (0: one file); default per preset\n"
            "  --dequant-twin DIR2 with --dtype fp8: also write the bf16 checkpoint holding exactly the\n"
            "                      dequantized weights (what transformers loads to check the fp8 path)\n"
            "presets:\n");
    for (size_t i = 0; i < sizeof mk_presets / sizeof mk_presets[0]; i++)
        fprintf(f, "  %-9s %s\n", mk_presets[i].name, mk_presets[i].about);
}

static int mk_parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || *s == '-') return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    const char *preset = NULL, *dtype = NULL, *out = NULL, *tokdir = NULL, *twin = NULL;
    uint64_t seed = 0, layers = 0, shard_mb = 0;
    bool mtp = false, config_only = false, have_layers = false, have_shard = false;
    uint64_t hot = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = strcmp(a, "--preset") == 0 || strcmp(a, "--dtype") == 0 || strcmp(a, "--out") == 0 ||
                     strcmp(a, "--seed") == 0 || strcmp(a, "--tokenizer") == 0 || strcmp(a, "--layers") == 0 ||
                     strcmp(a, "--shard-mb") == 0 || strcmp(a, "--dequant-twin") == 0 ||
                     strcmp(a, "--hot-experts") == 0;
        if (takes && !v) {
            fprintf(stderr, "moeserve-mkmodel: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--preset") == 0) preset = argv[++i];
        else if (strcmp(a, "--dtype") == 0) dtype = argv[++i];
        else if (strcmp(a, "--out") == 0) out = argv[++i];
        else if (strcmp(a, "--tokenizer") == 0) tokdir = argv[++i];
        else if (strcmp(a, "--dequant-twin") == 0) twin = argv[++i];
        else if (strcmp(a, "--hot-experts") == 0) {
            const char *v = argv[++i];
            for (char *end; *v; v = *end == ',' ? end + 1 : end) {
                long e = strtol(v, &end, 10);
                if (end == v || e < 0 || e > 63 || (*end && *end != ',')) {
                    fprintf(stderr, "moeserve-mkmodel: --hot-experts: expected expert ids in 0..63 separated by "
                                    "commas, got \"%s\"\n", argv[i]);
                    return 2;
                }
                hot |= 1ull << e;
            }
        }
        else if (strcmp(a, "--seed") == 0 || strcmp(a, "--layers") == 0 || strcmp(a, "--shard-mb") == 0) {
            uint64_t x;
            if (mk_parse_u64(argv[++i], &x) != 0) {
                fprintf(stderr, "moeserve-mkmodel: %s: \"%s\" is not a non-negative integer\n", a, argv[i]);
                return 2;
            }
            if (a[2] == 's' && a[3] == 'e') seed = x;
            else if (a[2] == 'l') layers = x, have_layers = true;
            else shard_mb = x, have_shard = true;
        } else if (strcmp(a, "--mtp") == 0) mtp = true;
        else if (strcmp(a, "--config-only") == 0) config_only = true;
        else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            mk_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "moeserve-mkmodel: unknown argument %s\n", a);
            mk_usage(stderr);
            return 2;
        }
    }
    if (!preset || !out) {
        fprintf(stderr, "moeserve-mkmodel: --preset and --out are required\n");
        mk_usage(stderr);
        return 2;
    }
    if (!dtype) dtype = "bf16";
    bool fp8 = strcmp(dtype, "fp8") == 0;
    if (!fp8 && strcmp(dtype, "bf16") != 0) {
        fprintf(stderr, "moeserve-mkmodel: --dtype: \"%s\" is not bf16 or fp8\n", dtype);
        return 2;
    }
    if (twin && !fp8) {
        fprintf(stderr, "moeserve-mkmodel: --dequant-twin needs --dtype fp8\n");
        return 2;
    }

    mcfg_t c;
    memset(&c, 0, sizeof c);
    /* Fields every preset shares; the preset overrides the geometry. */
    c.moe_layer_freq = 1;
    c.rope_theta = 10000;
    c.rope_interleave = true;
    c.rms_norm_eps = 1e-6f;
    c.bos_token_id = 0;
    c.eos_token_id = 1;
    c.torch_dtype = MS_DT_BF16;
    snprintf(c.scoring_func, sizeof c.scoring_func, "sigmoid");
    snprintf(c.topk_method, sizeof c.topk_method, "noaux_tc");
    const mk_preset_t *p = NULL;
    for (size_t i = 0; i < sizeof mk_presets / sizeof mk_presets[0]; i++)
        if (strcmp(preset, mk_presets[i].name) == 0) p = &mk_presets[i];
    if (!p) {
        fprintf(stderr, "moeserve-mkmodel: --preset: unknown preset \"%s\"\n", preset);
        mk_usage(stderr);
        return 2;
    }
    if (strcmp(p->name, "tiny") == 0) mk_preset_tiny(&c);
    else if (strcmp(p->name, "tiny-noq") == 0) mk_preset_tiny_noq(&c);
    else mk_preset_r1(&c);
    if (strcmp(p->name, "r1-ep8") == 0) { /* what one of 8 EP ranks holds and reads each step (issue 10 item 6) */
        c.first_k_dense_replace = 0;
        c.n_routed_experts = 32;
    }
    c.num_key_value_heads = c.num_attention_heads;
    if (have_layers) {
        if (layers < 1 || layers > 1000) {
            fprintf(stderr, "moeserve-mkmodel: --layers: %llu is not in 1..1000\n", (unsigned long long)layers);
            return 2;
        }
        c.num_hidden_layers = (int)layers;
        if (c.first_k_dense_replace > c.num_hidden_layers) c.first_k_dense_replace = c.num_hidden_layers;
    }
    c.num_nextn_predict_layers = mtp ? 1 : 0;
    /* The real tokenizer's ids go up to 128814; DeepSeek pads the vocab to 129280. */
    if (tokdir) c.vocab_size = 129280;
    if (fp8) {
        c.weight_dtype = MS_DT_F8E4M3;
        c.weight_block[0] = c.weight_block[1] = 128;
    } else {
        c.weight_dtype = MS_DT_BF16;
    }
    mk_opts_t o = {.seed = seed, .mtp = mtp, .hot_experts = hot, .shard_bytes = (have_shard ? shard_mb : p->shard_mb) << 20};

    const char *dirs[2] = {out, twin};
    for (int k = 0; k < (twin ? 2 : 1); k++) {
        const char *d = dirs[k];
        bool is_twin = k == 1;
        if (mk_prepare_dir(d) != MS_OK) return 1;
        if (mk_write_configs(d, &c, fp8 && !is_twin) != MS_OK) return 1;
        if (tokdir && (mk_copy_file(tokdir, d, "tokenizer.json") != MS_OK ||
                       mk_copy_file(tokdir, d, "tokenizer_config.json") != MS_OK))
            return 1;
        if (config_only) continue;
        mk_out_t mode = is_twin ? MK_OUT_TWIN : fp8 ? MK_OUT_FP8 : MK_OUT_BF16;
        if (mk_write_weights(d, &c, &o, mode) != MS_OK) return 1;
    }
    return 0;
}
