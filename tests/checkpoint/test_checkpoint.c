/* test_checkpoint.c — safetensors reader: good files load and look up; every
 * kind of bad checkpoint fails at ckpt_open/ckpt_expect with one message that
 * names the file and the tensor. argv[1] is the moeserve-mkmodel binary (for
 * the real-checkpoint cases). */
#include "worker/checkpoint.h"
#include "worker/model_config.h"
#include "test.h"
#include "ckpt_testutil.h"

#include <sys/stat.h>

/* ckpt_open must fail and the last error must contain every needle. */
static void expect_open_fails(const char *dir, const char *n1, const char *n2, const char *n3)
{
    ckpt_t *ck = NULL;
    ms_error_clear();
    ms_status_t st = ckpt_open(dir, &ck);
    T_CHECK_MSG(st != MS_OK, "%s opened but should fail", dir);
    if (st == MS_OK) {
        ckpt_close(ck);
        return;
    }
    const char *m = ms_error_last();
    T_CHECK_MSG(n1 == NULL || tu_has(m, n1), "error \"%s\" lacks \"%s\"", m, n1);
    T_CHECK_MSG(n2 == NULL || tu_has(m, n2), "error \"%s\" lacks \"%s\"", m, n2);
    T_CHECK_MSG(n3 == NULL || tu_has(m, n3), "error \"%s\" lacks \"%s\"", m, n3);
}

static void test_good_single(void)
{
    const char *d = tu_subdir("good1");
    /* Header padded with spaces as safetensors writes it. */
    const char *h = "{\"__metadata__\":{\"format\":\"pt\"},"
                    "\"b.weight\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
                    "\"a.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]},"
                    "\"c.scale\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[20,24]},"
                    "\"d.empty\":{\"dtype\":\"F64\",\"shape\":[0],\"data_offsets\":[24,24]}}    ";
    tu_write_st(d, "model.safetensors", h, (uint64_t)-1, 24);
    ckpt_t *ck = NULL;
    T_CHECK(ckpt_open(d, &ck) == MS_OK);
    if (!ck) return;
    T_CHECK(ckpt_count(ck) == 4);
    T_CHECK(strcmp(ckpt_name_at(ck, 0), "a.bias") == 0); /* sorted */
    T_CHECK(ckpt_name_at(ck, 4) == NULL);
    T_CHECK(ckpt_has(ck, "b.weight") && !ckpt_has(ck, "b.weigh") && !ckpt_has(ck, "__metadata__"));
    ckpt_tensor_t t;
    int64_t shp[2] = {2, 3};
    T_CHECK(ckpt_expect(ck, "b.weight", MS_DT_BF16, 2, shp, &t) == MS_OK);
    T_CHECK(t.nbytes == 12 && t.ndim == 2 && t.shape[1] == 3 && tu_has(t.file, "model.safetensors"));
    T_CHECK(((const uint8_t *)t.data)[0] == 1 && ((const uint8_t *)t.data)[1] == 8);
    T_CHECK(ckpt_get(ck, "a.bias", &t) == MS_OK && t.dtype == MS_DT_F32 && ((const uint8_t *)t.data)[0] == (uint8_t)(12 * 7 + 1));
    T_CHECK(ckpt_get(ck, "c.scale", &t) == MS_OK && t.dtype == MS_DT_F8E4M3 && t.nbytes == 4);
    /* A dtype moeserve never computes with validates, but cannot be fetched. */
    ms_error_clear();
    T_CHECK(ckpt_get(ck, "d.empty", &t) == MS_ERR_UNSUPPORTED && tu_has(ms_error_last(), "F64"));

    /* Missing tensor: names the checkpoint and the tensor. */
    ms_error_clear();
    T_CHECK(ckpt_get(ck, "model.layers.9.mlp.gate.weight", &t) == MS_ERR_NOT_FOUND);
    T_CHECK(tu_has(ms_error_last(), d) && tu_has(ms_error_last(), "model.layers.9.mlp.gate.weight"));
    ms_error_clear();
    T_CHECK(ckpt_expect(ck, "missing.weight", MS_DT_BF16, 2, shp, &t) != MS_OK);
    T_CHECK(tu_has(ms_error_last(), "missing.weight"));

    /* Wrong shape, wrong rank, wrong dtype: name the shard file and tensor with both values. */
    int64_t bad[2] = {3, 2};
    ms_error_clear();
    T_CHECK(ckpt_expect(ck, "b.weight", MS_DT_BF16, 2, bad, &t) == MS_ERR_FORMAT);
    T_CHECK_MSG(tu_has(ms_error_last(), "model.safetensors: tensor b.weight: shape [2,3] but expected [3,2]"), "%s",
                ms_error_last());
    ms_error_clear();
    T_CHECK(ckpt_expect(ck, "b.weight", MS_DT_BF16, 1, shp, &t) == MS_ERR_FORMAT);
    T_CHECK_MSG(tu_has(ms_error_last(), "shape [2,3] but expected [2]"), "%s", ms_error_last());
    ms_error_clear();
    T_CHECK(ckpt_expect(ck, "b.weight", MS_DT_F8E4M3, 2, shp, &t) == MS_ERR_FORMAT);
    T_CHECK_MSG(tu_has(ms_error_last(), "model.safetensors: tensor b.weight: dtype BF16 but expected F8_E4M3"), "%s",
                ms_error_last());
    ckpt_close(ck);

    /* Trailing slash on the directory is harmless. */
    char slash[700];
    snprintf(slash, sizeof slash, "%s/", d);
    T_CHECK(ckpt_open(slash, &ck) == MS_OK);
    if (ck) {
        T_CHECK(ckpt_get(ck, "b.weight", &t) == MS_OK && !tu_has(t.file, "//"));
        ckpt_close(ck);
    }
}

static void test_bad_single(void)
{
    const char *good = "{\"w\":{\"dtype\":\"BF16\",\"shape\":[4,4],\"data_offsets\":[0,32]}}";
    const char *d;

    d = tu_subdir("none");
    expect_open_fails(d, d, "model.safetensors", NULL);

    /* Truncated: the data ends before the tensor does. */
    d = tu_subdir("trunc");
    tu_write_st(d, "model.safetensors", good, (uint64_t)-1, 20);
    expect_open_fails(d, "model.safetensors", "tensor w", "truncated");

    /* Truncated inside the length prefix. */
    d = tu_subdir("tiny");
    tu_write(d, "model.safetensors", "\x10\0\0", 3);
    expect_open_fails(d, "model.safetensors", "too short", NULL);

    /* Header length larger than the file. */
    d = tu_subdir("badlen");
    tu_write_st(d, "model.safetensors", good, 1u << 20, 32);
    expect_open_fails(d, "model.safetensors", "header length", NULL);
    d = tu_subdir("hugelen");
    tu_write_st(d, "model.safetensors", good, UINT64_MAX - 3, 32);
    expect_open_fails(d, "model.safetensors", "header length", NULL);

    /* Header length cuts the JSON short; and outright bad JSON. */
    d = tu_subdir("shortlen");
    tu_write_st(d, "model.safetensors", good, 20, 32);
    expect_open_fails(d, "model.safetensors", "JSON", NULL);
    d = tu_subdir("badjson");
    tu_write_st(d, "model.safetensors", "{\"w\":{\"dtype\":\"BF16\",,}}", (uint64_t)-1, 32);
    expect_open_fails(d, "model.safetensors", "JSON", NULL);
    d = tu_subdir("notobj");
    tu_write_st(d, "model.safetensors", "[1,2,3]", (uint64_t)-1, 0);
    expect_open_fails(d, "model.safetensors", "not a JSON object", NULL);

    /* Offsets past the end of the data. */
    d = tu_subdir("pastend");
    tu_write_st(d, "model.safetensors",
                "{\"w\":{\"dtype\":\"BF16\",\"shape\":[4,4],\"data_offsets\":[32,64]},"
                "\"v\":{\"dtype\":\"BF16\",\"shape\":[4,4],\"data_offsets\":[0,32]}}",
                (uint64_t)-1, 32);
    expect_open_fails(d, "model.safetensors", "tensor w", "past the end");

    /* Offsets inconsistent with dtype × shape, reversed, or malformed. */
    d = tu_subdir("size");
    tu_write_st(d, "model.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4,4],\"data_offsets\":[0,32]}}",
                (uint64_t)-1, 32);
    expect_open_fails(d, "model.safetensors", "tensor w", "F32 [4,4] needs 64");
    d = tu_subdir("reversed");
    tu_write_st(d, "model.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[8,0]}}",
                (uint64_t)-1, 32);
    expect_open_fails(d, "model.safetensors", "tensor w", "reversed");
    d = tu_subdir("negoff");
    tu_write_st(d, "model.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[-2,0]}}",
                (uint64_t)-1, 32);
    expect_open_fails(d, "model.safetensors", "tensor w", "data_offsets");
    d = tu_subdir("noshape");
    tu_write_st(d, "model.safetensors", "{\"w\":{\"dtype\":\"U8\",\"data_offsets\":[0,2]}}", (uint64_t)-1, 32);
    expect_open_fails(d, "model.safetensors", "tensor w", "shape");
    d = tu_subdir("baddim");
    tu_write_st(d, "model.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[2,-1],\"data_offsets\":[0,2]}}",
                (uint64_t)-1, 32);
    expect_open_fails(d, "model.safetensors", "tensor w", "shape");
    d = tu_subdir("5d");
    tu_write_st(d, "model.safetensors",
                "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,2],\"data_offsets\":[0,2]}}", (uint64_t)-1, 32);
    expect_open_fails(d, "model.safetensors", "tensor w", "dimensions");
    d = tu_subdir("overflow");
    tu_write_st(d, "model.safetensors",
                "{\"w\":{\"dtype\":\"F64\",\"shape\":[1099511627776,1099511627776,64],\"data_offsets\":[0,0]}}",
                (uint64_t)-1, 32);
    expect_open_fails(d, "model.safetensors", "tensor w", "too large");
    d = tu_subdir("dtype");
    tu_write_st(d, "model.safetensors", "{\"w\":{\"dtype\":\"Q4_K\",\"shape\":[2],\"data_offsets\":[0,2]}}",
                (uint64_t)-1, 32);
    expect_open_fails(d, "model.safetensors", "tensor w", "Q4_K");
    d = tu_subdir("dup");
    tu_write_st(d, "model.safetensors",
                "{\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                "\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}",
                (uint64_t)-1, 32);
    expect_open_fails(d, "model.safetensors", "JSON", NULL);
}

static void test_index(void)
{
    const char *h1 = "{\"__metadata__\":{},\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}";
    const char *h2 = "{\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,6]},"
                     "\"c\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[6,10]}}";
    const char *f1 = "model-00001-of-00002.safetensors", *f2 = "model-00002-of-00002.safetensors";
    const char *idx = "{\"metadata\":{\"total_size\":14},\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
                      "\"b\":\"model-00002-of-00002.safetensors\",\"c\":\"model-00002-of-00002.safetensors\"}}";
    const char *d = tu_subdir("idx");
    tu_write_st(d, f1, h1, (uint64_t)-1, 4);
    tu_write_st(d, f2, h2, (uint64_t)-1, 10);
    tu_write_str(d, "model.safetensors.index.json", idx);
    /* A stale single file is ignored when the index exists. */
    tu_write_str(d, "model.safetensors", "garbage");
    ckpt_t *ck = NULL;
    T_CHECK(ckpt_open(d, &ck) == MS_OK);
    if (ck) {
        ckpt_tensor_t t;
        int64_t s3 = 3;
        T_CHECK(ckpt_count(ck) == 3);
        T_CHECK(ckpt_expect(ck, "b", MS_DT_BF16, 1, &s3, &t) == MS_OK && tu_has(t.file, f2));
        int64_t s4 = 4;
        ms_error_clear();
        T_CHECK(ckpt_expect(ck, "b", MS_DT_BF16, 1, &s4, &t) != MS_OK);
        T_CHECK_MSG(tu_has(ms_error_last(), "model-00002-of-00002.safetensors: tensor b: shape [3] but expected [4]"),
                    "%s", ms_error_last());
        ckpt_close(ck);
    }

    /* The index names a shard that does not exist. */
    d = tu_subdir("idx_missing");
    tu_write_st(d, f1, h1, (uint64_t)-1, 4);
    tu_write_str(d, "model.safetensors.index.json", idx);
    expect_open_fails(d, "model-00002-of-00002.safetensors", "tensor b", "does not exist");

    /* The index lists a tensor its shard lacks. */
    d = tu_subdir("idx_lacks");
    tu_write_st(d, f1, h1, (uint64_t)-1, 4);
    tu_write_st(d, f2, "{\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,6]}}", (uint64_t)-1, 6);
    tu_write_str(d, "model.safetensors.index.json", idx);
    expect_open_fails(d, "model-00002-of-00002.safetensors", "tensor c", "not in the shard");

    /* The index puts a tensor in the wrong shard. */
    d = tu_subdir("idx_wrong");
    tu_write_st(d, f1, h1, (uint64_t)-1, 4);
    tu_write_st(d, f2, h2, (uint64_t)-1, 10);
    tu_write_str(d, "model.safetensors.index.json",
                 "{\"weight_map\":{\"a\":\"model-00002-of-00002.safetensors\",\"b\":\"model-00002-of-00002.safetensors\","
                 "\"c\":\"model-00001-of-00002.safetensors\"}}");
    expect_open_fails(d, "tensor a", "model-00001-of-00002.safetensors", "index says");

    /* Same tensor in two shards. */
    d = tu_subdir("idx_dup");
    tu_write_st(d, f1, h1, (uint64_t)-1, 4);
    tu_write_st(d, f2, "{\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}", (uint64_t)-1, 4);
    tu_write_str(d, "model.safetensors.index.json", idx);
    expect_open_fails(d, "tensor a", "two shards", NULL);

    /* A corrupt shard behind an index still names that shard and tensor. */
    d = tu_subdir("idx_trunc");
    tu_write_st(d, f1, h1, (uint64_t)-1, 4);
    tu_write_st(d, f2, h2, (uint64_t)-1, 7);
    tu_write_str(d, "model.safetensors.index.json", idx);
    expect_open_fails(d, "model-00002-of-00002.safetensors", "tensor c", "past the end");

    /* Broken index files. */
    d = tu_subdir("idx_json");
    tu_write_str(d, "model.safetensors.index.json", "{\"weight_map\": {");
    expect_open_fails(d, "model.safetensors.index.json", "JSON", NULL);
    d = tu_subdir("idx_nomap");
    tu_write_str(d, "model.safetensors.index.json", "{\"metadata\": {}}");
    expect_open_fails(d, "model.safetensors.index.json", "weight_map", NULL);
    d = tu_subdir("idx_escape");
    tu_write_str(d, "model.safetensors.index.json", "{\"weight_map\": {\"a\": \"../../etc/passwd\"}}");
    expect_open_fails(d, "model.safetensors.index.json", "tensor a", "plain file name");
}

/* Many tensors: lookup must find each one (sorted table + bsearch). */
static void test_many(void)
{
    const int n = 20000;
    size_t cap = (size_t)n * 96 + 64;
    char *h = malloc(cap);
    size_t o = 0;
    o += snprintf(h + o, cap - o, "{");
    for (int i = 0; i < n; i++)
        o += snprintf(h + o, cap - o, "%s\"model.layers.%d.mlp.experts.%d.w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[%d,%d]}",
                      i ? "," : "", i % 61, i, i, i + 1);
    snprintf(h + o, cap - o, "}");
    const char *d = tu_subdir("many");
    tu_write_st(d, "model.safetensors", h, (uint64_t)-1, (size_t)n);
    free(h);
    ckpt_t *ck = NULL;
    T_CHECK(ckpt_open(d, &ck) == MS_OK);
    if (!ck) return;
    T_CHECK(ckpt_count(ck) == (size_t)n);
    int found = 0;
    for (int i = 0; i < n; i++) {
        char name[96];
        snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.w", i % 61, i);
        ckpt_tensor_t t;
        if (ckpt_get(ck, name, &t) == MS_OK && ((const uint8_t *)t.data)[0] == (uint8_t)(i * 7 + 1)) found++;
    }
    T_CHECK(found == n);
    ckpt_close(ck);
}

/* A real moeserve-mkmodel checkpoint: every tensor the engine reads, with its
 * shape; then a truncated shard fails naming that shard. */
static void test_mkmodel(const char *mkmodel)
{
    const char *d = tu_subdir("mk_fp8");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' --preset tiny --dtype fp8 --out '%s' --shard-mb 1 --mtp", mkmodel, d);
    T_CHECK(system(cmd) == 0);
    mcfg_t c;
    T_CHECK(mcfg_load(d, &c) == MS_OK);
    T_CHECK(c.weight_dtype == MS_DT_F8E4M3 && c.weight_block[0] == 128 && c.num_nextn_predict_layers == 1);
    ckpt_t *ck = NULL;
    T_CHECK(ckpt_open(d, &ck) == MS_OK);
    if (!ck) return;
    ckpt_tensor_t t;
    const int64_t H = c.hidden_size, nh = c.num_attention_heads;
    int64_t s[2];
    s[0] = c.vocab_size, s[1] = H;
    T_CHECK(ckpt_expect(ck, "model.embed_tokens.weight", MS_DT_BF16, 2, s, &t) == MS_OK);
    T_CHECK(ckpt_expect(ck, "lm_head.weight", MS_DT_BF16, 2, s, &t) == MS_OK);
    T_CHECK(ckpt_expect(ck, "model.layers.3.shared_head.head.weight", MS_DT_BF16, 2, s, &t) == MS_OK);
    s[0] = H, s[1] = 2 * H;
    T_CHECK(ckpt_expect(ck, "model.layers.3.eh_proj.weight", MS_DT_BF16, 2, s, &t) == MS_OK);
    s[0] = nh * mcfg_qk_head_dim(&c), s[1] = c.q_lora_rank;
    T_CHECK(ckpt_expect(ck, "model.layers.0.self_attn.q_b_proj.weight", MS_DT_F8E4M3, 2, s, &t) == MS_OK);
    s[0] = 2, s[1] = 1; /* ceil(192/128), ceil(96/128) */
    T_CHECK(ckpt_expect(ck, "model.layers.0.self_attn.q_b_proj.weight_scale_inv", MS_DT_F32, 2, s, &t) == MS_OK);
    s[0] = c.kv_lora_rank + c.qk_rope_head_dim, s[1] = H;
    T_CHECK(ckpt_expect(ck, "model.layers.2.self_attn.kv_a_proj_with_mqa.weight", MS_DT_F8E4M3, 2, s, &t) == MS_OK);
    s[0] = H, s[1] = c.moe_intermediate_size;
    T_CHECK(ckpt_expect(ck, "model.layers.1.mlp.experts.15.down_proj.weight", MS_DT_F8E4M3, 2, s, &t) == MS_OK);
    s[0] = 2, s[1] = 2; /* ceil(256/128), ceil(192/128) */
    T_CHECK(ckpt_expect(ck, "model.layers.1.mlp.experts.15.down_proj.weight_scale_inv", MS_DT_F32, 2, s, &t) == MS_OK);
    s[0] = c.n_routed_experts, s[1] = H;
    T_CHECK(ckpt_expect(ck, "model.layers.1.mlp.gate.weight", MS_DT_BF16, 2, s, &t) == MS_OK);
    T_CHECK(ckpt_expect(ck, "model.layers.1.mlp.gate.e_score_correction_bias", MS_DT_F32, 1, s, &t) == MS_OK);
    s[0] = c.intermediate_size, s[1] = H;
    T_CHECK(ckpt_expect(ck, "model.layers.0.mlp.up_proj.weight", MS_DT_F8E4M3, 2, s, &t) == MS_OK);
    s[0] = c.kv_lora_rank;
    T_CHECK(ckpt_expect(ck, "model.layers.0.self_attn.kv_a_layernorm.weight", MS_DT_BF16, 1, s, &t) == MS_OK);
    T_CHECK(!ckpt_has(ck, "model.layers.0.mlp.gate.weight")); /* layer 0 is dense */
    T_CHECK(!ckpt_has(ck, "model.layers.0.self_attn.q_proj.weight"));
    ckpt_close(ck);

    /* Truncate the last shard by one byte: its last tensor runs past the end. */
    char path[1024];
    snprintf(cmd, sizeof cmd, "cd '%s' && f=$(ls model-0*.safetensors | tail -1) && truncate -s -1 $f && echo $f", d);
    FILE *p = popen(cmd, "r");
    char shard[256] = "";
    if (p) {
        if (!fgets(shard, sizeof shard, p)) shard[0] = '\0';
        pclose(p);
    }
    shard[strcspn(shard, "\n")] = '\0';
    T_CHECK(shard[0] != '\0');
    snprintf(path, sizeof path, "%s/%s", d, shard);
    expect_open_fails(d, path, "tensor lm_head.weight", "truncated");

    /* Remove a shard the index names. */
    snprintf(cmd, sizeof cmd, "rm '%s'", path);
    T_CHECK(system(cmd) == 0);
    expect_open_fails(d, shard, "does not exist", "model.safetensors.index.json");
}

int main(int argc, char **argv)
{
    /* Errors are expected by the dozen: record them (ms_error_last) without printing. */
    ms_log_set_level((ms_log_level_t)(MS_LOG_ERROR + 1));
    tu_mkdir();
    test_good_single();
    test_bad_single();
    test_index();
    test_many();
    if (argc > 1) test_mkmodel(argv[1]);
    else T_CHECK_MSG(0, "usage: test_checkpoint MKMODEL");
    tu_cleanup();
    return t_done();
}
