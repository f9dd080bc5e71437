/* config_cli.c — `moeserve serve MODEL [flags]`: trtllm-serve's flag names,
 * aliases and defaults, then the --extra_llm_api_options YAML on top.
 *
 * Flags take `--flag value` or `--flag=value`; boolean flags
 * (--trust_remote_code, --enable_chunked_prefill) take no value. Values go
 * through the same converter as YAML keys (config.c), so `--max_batch_size
 * abc` and `max_batch_size: abc` fail the same way.
 */
#include "config_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define OFF(f) offsetof(ms_config_t, f)
#define I32MAX ((double)INT_MAX)

typedef struct {
    const char *names[3]; /* primary, then trtllm-serve's aliases; without "--" */
    cfg_key_t key;
    const char *meta; /* NULL for a boolean flag */
    const char *help;
} cli_flag_t;

#define STRF(f) {.kind = CK_STR, .off = OFF(f), .size = sizeof(((ms_config_t *)0)->f)}
#define INTF(f, lo, hi) {.kind = CK_INT, .off = OFF(f), .min = lo, .max = hi}

static const cli_flag_t g_flags[] = {
    {{"host"}, STRF(host), "HOST", "server hostname (default localhost)"},
    {{"port"}, INTF(port, 1, 65535), "PORT", "server port (default 8000)"},
    {{"backend"}, {.kind = CK_ENUM, .off = OFF(backend), .enums = cfg_enum_backend}, "NAME",
     "pytorch|tensorrt|trt|_autodeploy (default pytorch); accepted for compatibility, moeserve always runs its "
     "own engine"},
    {{"log_level"}, {.kind = CK_ENUM, .off = OFF(log_level), .enums = cfg_enum_log_level}, "LEVEL",
     "internal_error|error|warning|info|verbose|debug|trace (default info)"},
    {{"tokenizer"}, STRF(tokenizer), "PATH", "tokenizer directory (default: the model directory)"},
    {{"max_beam_width"}, {.kind = CK_INT, .off = OFF(max_beam_width), .min = 1, .max = 1,
                          .note = "beam search is not supported"}, "N", "must be 1"},
    {{"max_batch_size"}, INTF(max_batch_size, 1, I32MAX), "N", "max requests scheduled together (default 2048)"},
    {{"max_num_tokens"}, INTF(max_num_tokens, 1, I32MAX), "N", "max batched tokens per step (default 8192)"},
    {{"max_seq_len"}, INTF(max_seq_len, 1, I32MAX), "N",
     "max prompt + output tokens of one request (default: the model's max_position_embeddings)"},
    {{"tp_size", "tensor_parallel_size"}, INTF(tp_size, 1, I32MAX), "N", "tensor-parallel size (default 1)"},
    {{"pp_size", "pipeline_parallel_size"}, {.kind = CK_INT, .off = OFF(pp_size), .min = 1, .max = 1,
                                             .note = "pipeline parallelism is not supported"}, "N", "must be 1"},
    {{"ep_size", "moe_expert_parallel_size"}, INTF(ep_size, 1, I32MAX), "N",
     "expert-parallel size (default: unset, as trtllm-serve)"},
    {{"gpus_per_node"}, INTF(gpus_per_node, 1, I32MAX), "N", "GPUs per node (default: detected)"},
    {{"kv_cache_free_gpu_memory_fraction", "free_gpu_memory_fraction"},
     {.kind = CK_FLOAT, .off = OFF(kv_cache.free_gpu_memory_fraction), .min = 0, .max = 1}, "F",
     "fraction of free GPU memory for the KV cache after weights (default 0.9)"},
    {{"num_postprocess_workers"}, INTF(num_postprocess_workers, 0, I32MAX), "N", "accepted, not used (default 0)"},
    {{"trust_remote_code"}, {.kind = CK_BOOL, .off = OFF(trust_remote_code)}, NULL,
     "accepted for compatibility; moeserve never runs model code"},
    {{"revision"}, STRF(revision), "REV", "Hugging Face cache revision: branch, tag or commit (default main)"},
    {{"extra_llm_api_options", "config"}, STRF(extra_llm_api_options), "FILE",
     "YAML file of TensorRT-LLM options; its keys override these flags (configs/README.md)"},
    {{"reasoning_parser"}, STRF(reasoning_parser), "NAME", "deepseek-r1"},
    {{"enable_chunked_prefill"}, {.kind = CK_BOOL, .off = OFF(enable_chunked_prefill)}, NULL,
     "split long prompts across steps"},
    {{"served_model_name"}, STRF(served_model_name), "NAME",
     "model name in /v1/models and responses (default: MODEL as given)"},
    {{"device"}, {.kind = CK_ENUM, .off = OFF(ms.device), .enums = cfg_enum_device}, "auto|cpu|cuda",
     "moeserve: kernels backend (default auto: CUDA when built with it and a GPU is visible)"},
    {{"moe_compute"}, {.kind = CK_ENUM, .off = OFF(ms.moe_compute), .enums = cfg_enum_moe_compute},
     "auto|dequant|fp8", "moeserve: FP8 routed experts' numerics (default auto: moe_config.backend decides)"},
    {{"dense_compute"}, {.kind = CK_ENUM, .off = OFF(ms.dense_compute), .enums = cfg_enum_moe_compute},
     "auto|dequant|fp8", "moeserve: FP8 dense linears' numerics (default auto: as the routed experts)"},
    {{"data_plane"}, {.kind = CK_ENUM, .off = OFF(ms.data_plane), .enums = cfg_enum_data_plane}, "auto|mpi|nccl",
     "moeserve: the data plane between ranks (default auto = mpi; nccl: CUDA ranks, one GPU each)"},
    {{"load_format"}, {.kind = CK_ENUM, .off = OFF(load_format), .enums = cfg_enum_load_format}, "auto|dummy",
     "dummy: random weights made on the device, no weight file read (config.json alone)"},
    {{"max_queue_size"}, INTF(ms.max_queue_size, 1, I32MAX), "N",
     "moeserve: waiting requests before 429 (default 4096)"},
};
#define N_FLAGS (sizeof g_flags / sizeof g_flags[0])

static const char *g_reasoning_parsers[] = {"deepseek-r1", NULL};

void cfg_usage(FILE *f)
{
    fprintf(f, "usage: moeserve serve MODEL [options]\n"
               "  MODEL  a model directory, or a Hugging Face repo id (org/name) already in the local\n"
               "         Hugging Face cache ($HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub);\n"
               "         nothing is downloaded\n"
               "options (trtllm-serve names; `--flag value` or `--flag=value`):\n");
    for (size_t i = 0; i < N_FLAGS; i++) {
        const cli_flag_t *fl = &g_flags[i];
        char names[160];
        int used = snprintf(names, sizeof names, "--%s", fl->names[0]);
        for (int a = 1; a < 3 && fl->names[a]; a++)
            used += snprintf(names + used, sizeof names - (size_t)used, ", --%s", fl->names[a]);
        if (fl->meta) snprintf(names + used, sizeof names - (size_t)used, " %s", fl->meta);
        fprintf(f, "  %s\n      %s\n", names, fl->help);
    }
    fprintf(f, "  -h, --help\n      this text\n");
}

static const cli_flag_t *find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < N_FLAGS; i++)
        for (int a = 0; a < 3 && g_flags[i].names[a]; a++)
            if (strlen(g_flags[i].names[a]) == len && !strncmp(g_flags[i].names[a], name, len)) return &g_flags[i];
    return NULL;
}

static ms_status_t parse_into(int argc, char **argv, ms_config_t *c)
{
    bool only_positional = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!only_positional && !strcmp(a, "--")) {
            only_positional = true;
            continue;
        }
        if (!only_positional && (!strcmp(a, "--help") || !strcmp(a, "-h"))) {
            c->help = true;
            continue;
        }
        if (!only_positional && a[0] == '-' && a[1] != '\0') {
            if (a[1] != '-')
                return MS_ERR(MS_ERR_INVALID, "unknown option '%s' (options are --name; see moeserve serve --help)",
                              a);
            const char *name = a + 2, *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            const cli_flag_t *fl = find_flag(name, len);
            if (!fl)
                return MS_ERR(MS_ERR_INVALID, "unknown option '--%.*s' (see moeserve serve --help)", (int)len, name);
            const char *val = eq ? eq + 1 : NULL;
            if (!fl->meta && !val) val = "true"; /* boolean flag */
            if (!val) {
                if (i + 1 >= argc || (argv[i + 1][0] == '-' && argv[i + 1][1] == '-'))
                    return MS_ERR(MS_ERR_INVALID, "option '--%.*s' needs a value (%s)", (int)len, name, fl->meta);
                val = argv[++i];
            }
            char why[800];
            if (cfg_value_set(&fl->key, val, false, c, why, sizeof why) != 0)
                return MS_ERR(MS_ERR_INVALID, "option '--%.*s': %s", (int)len, name, why);
            if (fl->key.off == OFF(reasoning_parser)) {
                bool ok = false;
                for (const char **p = g_reasoning_parsers; *p; p++) ok |= !strcmp(*p, val);
                if (!ok) return MS_ERR(MS_ERR_INVALID, "option '--reasoning_parser': expected deepseek-r1, got '%s'", val);
            }
            if (fl->key.kind == CK_STR && val[0] == '\0')
                return MS_ERR(MS_ERR_INVALID, "option '--%.*s': expected a non-empty value", (int)len, name);
            continue;
        }
        if (c->model[0])
            return MS_ERR(MS_ERR_INVALID, "unexpected argument '%s': MODEL is already '%s' (one MODEL only)", a,
                          c->model);
        if (a[0] == '\0') return MS_ERR(MS_ERR_INVALID, "MODEL is empty");
        if (strlen(a) >= sizeof c->model) return MS_ERR(MS_ERR_INVALID, "MODEL is longer than %zu characters", sizeof c->model - 1);
        snprintf(c->model, sizeof c->model, "%s", a);
    }
    return MS_OK;
}

ms_status_t cfg_parse_serve_args(int argc, char **argv, ms_config_t *out)
{
    ms_status_t st = MS_OK;
    ms_config_t *c = malloc(sizeof *c);
    if (!c) return MS_ERR(MS_ERR_NOMEM, "out of memory parsing arguments");
    cfg_defaults(c);
    MS_TRY_GOTO(st, parse_into(argc, argv, c), out_free);
    if (c->help) {
        cfg_usage(stdout);
        *out = *c;
        goto out_free;
    }
    if (!c->model[0]) {
        st = MS_ERR(MS_ERR_INVALID, "missing MODEL: a model directory or a Hugging Face repo id "
                                    "(usage: moeserve serve MODEL [options])");
        goto out_free;
    }
    cfg_origin_t origin = {0};
    if (c->extra_llm_api_options[0])
        MS_TRY_GOTO(st, cfg_yaml_apply(c->extra_llm_api_options, c, &origin), out_free);
    if (!c->served_model_name[0]) snprintf(c->served_model_name, sizeof c->served_model_name, "%s", c->model);
    MS_TRY_GOTO(st, cfg_check(c, &origin), out_free);
    *out = *c;
out_free:
    free(c);
    return st;
}
