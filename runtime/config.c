/* config.c — defaults, the table of TensorRT-LLM keys, value conversion,
 * whole-config checks and the startup printout of ms_config_t.
 *
 * The YAML reader (config_yaml.c) and the flag parser (config_cli.c) only walk
 * their input; what a key means and accepts lives here, once.
 */
#include "config_internal.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------ enums */

const cfg_enum_t cfg_enum_backend[] = {
    {"pytorch", MS_BACKEND_PYTORCH}, {"tensorrt", MS_BACKEND_TENSORRT}, {"trt", MS_BACKEND_TENSORRT},
    {"_autodeploy", MS_BACKEND_AUTODEPLOY}, {NULL, 0}};
const cfg_enum_t cfg_enum_kv_dtype[] = {
    {"auto", MS_KV_DTYPE_AUTO}, {"fp8", MS_KV_DTYPE_FP8}, {"bf16", MS_KV_DTYPE_BF16},
    {"bfloat16", MS_KV_DTYPE_BF16}, {NULL, 0}};
const cfg_enum_t cfg_enum_moe_backend[] = {
    {"CUTLASS", MS_MOE_BACKEND_CUTLASS}, {"AUTO", MS_MOE_BACKEND_AUTO}, {"TRTLLM", MS_MOE_BACKEND_TRTLLM},
    {"DEEPGEMM", MS_MOE_BACKEND_DEEPGEMM}, {"WIDEEP", MS_MOE_BACKEND_WIDEEP}, {"CUTEDSL", MS_MOE_BACKEND_CUTEDSL},
    {"VANILLA", MS_MOE_BACKEND_VANILLA}, {"TRITON", MS_MOE_BACKEND_TRITON}, {NULL, 0}};
const cfg_enum_t cfg_enum_attn[] = {
    {"TRTLLM", MS_ATTN_BACKEND_TRTLLM}, {"FLASHINFER", MS_ATTN_BACKEND_FLASHINFER},
    {"VANILLA", MS_ATTN_BACKEND_VANILLA}, {"FLASHINFER_STAR_ATTENTION", MS_ATTN_BACKEND_FLASHINFER_STAR_ATTENTION},
    {NULL, 0}};
const cfg_enum_t cfg_enum_spec[] = {{"MTP", MS_SPEC_MTP}, {NULL, 0}};
const cfg_enum_t cfg_enum_moe_compute[] = {
    {"auto", MS_MOE_COMPUTE_AUTO}, {"dequant", MS_MOE_COMPUTE_DEQUANT}, {"fp8", MS_MOE_COMPUTE_FP8}, {NULL, 0}};
const cfg_enum_t cfg_enum_data_plane[] = {
    {"auto", MS_DATA_PLANE_AUTO}, {"mpi", MS_DATA_PLANE_MPI}, {"nccl", MS_DATA_PLANE_NCCL}, {NULL, 0}};
const cfg_enum_t cfg_enum_device[] = {
    {"auto", MS_DEVICE_AUTO}, {"cpu", MS_DEVICE_CPU}, {"cuda", MS_DEVICE_CUDA}, {NULL, 0}};
const cfg_enum_t cfg_enum_load_format[] = {{"auto", MS_LOAD_AUTO}, {"dummy", MS_LOAD_DUMMY}, {NULL, 0}};
/* trtllm-serve's --log_level choices, folded onto our four levels. */
const cfg_enum_t cfg_enum_log_level[] = {
    {"internal_error", MS_LOG_ERROR}, {"error", MS_LOG_ERROR}, {"warning", MS_LOG_WARN}, {"info", MS_LOG_INFO},
    {"verbose", MS_LOG_DEBUG}, {"debug", MS_LOG_DEBUG}, {"trace", MS_LOG_DEBUG}, {NULL, 0}};
static const cfg_enum_t enum_allreduce[] = {
    {"AUTO", 0}, {"NCCL", 1}, {"UB", 2}, {"MINLATENCY", 3}, {"ONESHOT", 4}, {"TWOSHOT", 5},
    {"LOWPRECISION", 6}, {"MNNVL", 7}, {"NCCL_SYMMETRIC", 8}, {NULL, 0}};

static const char *enum_name(const cfg_enum_t *e, int v)
{
    for (; e->name; e++)
        if (e->value == v) return e->name;
    return "?";
}

const char *cfg_kv_dtype_name(ms_kv_dtype_t d) { return enum_name(cfg_enum_kv_dtype, (int)d); }
const char *cfg_moe_backend_name(ms_moe_backend_t b) { return enum_name(cfg_enum_moe_backend, (int)b); }
const char *cfg_moe_compute_name(ms_moe_compute_t m) { return enum_name(cfg_enum_moe_compute, (int)m); }
const char *cfg_data_plane_name(ms_data_plane_t d) { return enum_name(cfg_enum_data_plane, (int)d); }

int cfg_moe_fp8(const ms_config_t *c, int on_cuda)
{
    if (c->ms.moe_compute != MS_MOE_COMPUTE_AUTO) return c->ms.moe_compute == MS_MOE_COMPUTE_FP8;
    return on_cuda && c->moe.backend != MS_MOE_BACKEND_VANILLA;
}
int cfg_dense_fp8(const ms_config_t *c, int on_cuda)
{
    if (c->ms.dense_compute != MS_MOE_COMPUTE_AUTO) return c->ms.dense_compute == MS_MOE_COMPUTE_FP8;
    return cfg_moe_fp8(c, on_cuda);
}
int cfg_graph_sizes(const ms_config_t *c, int *out, int max)
{
    if (!c->cuda_graph.enabled) return 0;
    int n = 0;
    if (c->cuda_graph.n_batch_sizes > 0) {
        for (int i = 0; i < c->cuda_graph.n_batch_sizes && n < max; i++) out[n++] = c->cuda_graph.batch_sizes[i];
        return n;
    }
    /* TensorRT-LLM's generated list (CudaGraphConfig._generate_cuda_graph_batch_sizes): with padding
     * 1, 2, 4 and the multiples of 8 up to 128, without it 1..32, 64 and 128; then the powers of two
     * from 256 below max; all <= max, and max itself last. */
    const int mx = c->cuda_graph.max_batch_size > 0 ? c->cuda_graph.max_batch_size : 128;
    int cand[64], nc = 0;
    if (c->cuda_graph.enable_padding) {
        cand[nc++] = 1, cand[nc++] = 2, cand[nc++] = 4;
        for (int b = 8; b <= 128; b += 8) cand[nc++] = b;
    } else {
        for (int b = 1; b <= 32; b++) cand[nc++] = b;
        cand[nc++] = 64, cand[nc++] = 128;
    }
    for (int64_t p2 = 256; p2 < mx && nc < 64; p2 *= 2) cand[nc++] = (int)p2; /* 2^i, 8 <= i < ceil(log2 max) */
    for (int i = 0; i < nc && n < max; i++)
        if (cand[i] <= mx) out[n++] = cand[i];
    if ((n == 0 || out[n - 1] != mx) && n < max) out[n++] = mx;
    return n;
}

const char *cfg_attn_backend_name(ms_attn_backend_t b) { return enum_name(cfg_enum_attn, (int)b); }
const char *cfg_device_name(ms_device_t d) { return enum_name(cfg_enum_device, (int)d); }
const char *cfg_load_format_name(ms_load_format_t f) { return enum_name(cfg_enum_load_format, (int)f); }

/* --------------------------------------------------------------- defaults */

void cfg_defaults(ms_config_t *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->host, sizeof c->host, "localhost");
    c->port = 8000;
    c->backend = MS_BACKEND_PYTORCH;
    c->log_level = MS_LOG_INFO;
    c->max_batch_size = 2048; /* TensorRT-LLM BuildConfig defaults */
    c->max_num_tokens = 8192;
    c->max_seq_len = 0;
    c->max_beam_width = 1;
    c->tp_size = 1;
    c->pp_size = 1;
    c->ep_size = 0;
    c->stream_interval = 1;
    c->attention_backend = MS_ATTN_BACKEND_TRTLLM;
    c->cuda_graph.enabled = true; /* TorchLlmArgs: cuda_graph_config defaults to CudaGraphConfig() */
    c->kv_cache.dtype = MS_KV_DTYPE_AUTO;
    c->kv_cache.free_gpu_memory_fraction = 0.9;
    c->kv_cache.enable_block_reuse = true;
    c->kv_cache.tokens_per_block = 32;
    c->speculative.decoding_type = MS_SPEC_MTP;
    c->speculative.num_nextn_predict_layers = 1;
    c->speculative.relaxed_topk = 1;
    c->moe.backend = MS_MOE_BACKEND_CUTLASS;
    c->ms.device = MS_DEVICE_AUTO;
    c->ms.max_queue_size = 4096;
    c->ms.max_body_bytes = 16ll << 20;
    c->ms.max_connections = 8192;
    c->ms.request_timeout = 60;
    c->ms.drain_timeout = 30;
    c->ms.eplb_window_steps = 1000; /* vLLM's EPLB window */
    c->ms.eplb_stats_interval = 50;
    c->ms.eplb_min_gain = 0.05;
}

/* ------------------------------------------------------------- key table */

#define OFF(f) offsetof(ms_config_t, f)
#define I32MAX ((double)INT_MAX)
#define I64MAX 9.0e18

/* Scalar entry: name, kind, field, min, max, flags */
#define KINT(n, f, lo, hi, fl) {.name = n, .kind = CK_INT, .off = OFF(f), .min = lo, .max = hi, .flags = fl}
#define KI64(n, f, lo, hi, fl) {.name = n, .kind = CK_I64, .off = OFF(f), .min = lo, .max = hi, .flags = fl}
#define KFLT(n, f, lo, hi) {.name = n, .kind = CK_FLOAT, .off = OFF(f), .min = lo, .max = hi}
#define KBOOL(n, f) {.name = n, .kind = CK_BOOL, .off = OFF(f)}
#define KENUM(n, f, e) {.name = n, .kind = CK_ENUM, .off = OFF(f), .enums = e}
/* Accepted for compatibility, checked, not stored. */
#define XINT(n, lo) {.name = n, .kind = CK_INT, .off = CFG_NO_FIELD, .min = lo, .max = I32MAX, .flags = CFG_IGNORED}
#define XBOOL(n) {.name = n, .kind = CK_BOOL, .off = CFG_NO_FIELD, .flags = CFG_IGNORED}

static const cfg_key_t keys_cuda_graph[] = {
    KBOOL("enable_padding", cuda_graph.enable_padding),
    KINT("max_batch_size", cuda_graph.max_batch_size, 0, I32MAX, 0),
    {.name = "batch_sizes", .kind = CK_INTLIST, .off = OFF(cuda_graph.batch_sizes),
     .size = MS_CFG_MAX_GRAPH_BATCHES, .off2 = OFF(cuda_graph.n_batch_sizes), .min = 1, .max = I32MAX,
     .flags = CFG_NULLABLE},
    {NULL}};

static const cfg_key_t keys_kv_cache[] = {
    KENUM("dtype", kv_cache.dtype, cfg_enum_kv_dtype),
    KFLT("free_gpu_memory_fraction", kv_cache.free_gpu_memory_fraction, 0.0, 1.0),
    KBOOL("enable_block_reuse", kv_cache.enable_block_reuse),
    KI64("max_tokens", kv_cache.max_tokens, 1, I64MAX, CFG_NULLABLE),
    KINT("tokens_per_block", kv_cache.tokens_per_block, 1, 1024, CFG_POW2),
    {NULL}};

static const cfg_key_t keys_spec[] = {
    {.name = "decoding_type", .kind = CK_ENUM, .off = OFF(speculative.decoding_type), .enums = cfg_enum_spec,
     .flags = CFG_REQUIRED, .note = "moeserve implements MTP speculative decoding only"},
    KINT("num_nextn_predict_layers", speculative.num_nextn_predict_layers, 1, 4, 0), /* PROTO_MAX_DRAFT */
    KBOOL("use_relaxed_acceptance_for_thinking", speculative.use_relaxed_acceptance_for_thinking),
    KINT("relaxed_topk", speculative.relaxed_topk, 1, I32MAX, 0),
    KFLT("relaxed_delta", speculative.relaxed_delta, 0.0, 1e30),
    {NULL}};

static const cfg_key_t keys_load_balancer[] = {
    KINT("num_slots", moe.load_balancer.num_slots, 1, I32MAX, CFG_NULLABLE),
    KINT("layer_updates_per_iter", moe.load_balancer.layer_updates_per_iter, 0, I32MAX, 0),
    {.name = "initial_global_assignments", .kind = CK_ASSIGN, .off = CFG_NO_FIELD, .flags = CFG_NULLABLE},
    {NULL}};

static const cfg_key_t keys_moe[] = {
    KENUM("backend", moe.backend, cfg_enum_moe_backend),
    KINT("max_num_tokens", moe.max_num_tokens, 1, I32MAX, CFG_NULLABLE),
    {.name = "load_balancer", .kind = CK_MAP, .off = OFF(moe.load_balancer.enabled), .children = keys_load_balancer,
     .flags = CFG_NULLABLE | CFG_FILE},
    {NULL}};

/* Children of an ignored map: checked, not stored, warned once for the map. */
static const cfg_key_t keys_attention_dp[] = {
    {.name = "enable_balance", .kind = CK_BOOL, .off = CFG_NO_FIELD},
    {.name = "batching_wait_iters", .kind = CK_INT, .off = CFG_NO_FIELD, .min = 0, .max = I32MAX},
    {.name = "timeout_iters", .kind = CK_INT, .off = CFG_NO_FIELD, .min = 0, .max = I32MAX},
    {NULL}};

static const cfg_key_t keys_moeserve[] = {
    KENUM("device", ms.device, cfg_enum_device),
    KENUM("moe_compute", ms.moe_compute, cfg_enum_moe_compute),
    KENUM("dense_compute", ms.dense_compute, cfg_enum_moe_compute),
    KENUM("data_plane", ms.data_plane, cfg_enum_data_plane),
    KINT("max_queue_size", ms.max_queue_size, 1, I32MAX, 0),
    KI64("max_body_bytes", ms.max_body_bytes, 1024, I64MAX, 0),
    KINT("max_connections", ms.max_connections, 16, I32MAX, 0),
    KFLT("request_timeout", ms.request_timeout, 0.1, 1e6),
    KFLT("drain_timeout", ms.drain_timeout, 0.0, 1e6),
    KINT("eplb_window_steps", ms.eplb_window_steps, 1, 1000000, 0),
    KINT("eplb_stats_interval", ms.eplb_stats_interval, 1, 1000000, 0),
    KFLT("eplb_min_gain", ms.eplb_min_gain, 0.0, 1e30),
    {.name = "eplb_dump", .kind = CK_STR, .off = OFF(ms.eplb_dump), .size = MS_CFG_PATH_MAX, .flags = CFG_NULLABLE},
    {NULL}};

const cfg_key_t cfg_yaml_keys[] = {
    KENUM("backend", backend, cfg_enum_backend),
    KINT("max_batch_size", max_batch_size, 1, I32MAX, 0),
    KINT("max_num_tokens", max_num_tokens, 1, I32MAX, 0),
    KINT("max_seq_len", max_seq_len, 1, I32MAX, CFG_NULLABLE),
    {.name = "max_beam_width", .kind = CK_INT, .off = OFF(max_beam_width), .min = 1, .max = 1,
     .note = "beam search is not supported"},
    KINT("tensor_parallel_size", tp_size, 1, I32MAX, 0),
    {.name = "pipeline_parallel_size", .kind = CK_INT, .off = OFF(pp_size), .min = 1, .max = 1,
     .note = "pipeline parallelism is not supported"},
    KINT("moe_expert_parallel_size", ep_size, 1, I32MAX, CFG_NULLABLE),
    KINT("gpus_per_node", gpus_per_node, 1, I32MAX, CFG_NULLABLE),
    KBOOL("enable_attention_dp", enable_attention_dp),
    KBOOL("enable_chunked_prefill", enable_chunked_prefill),
    KBOOL("disable_overlap_scheduler", disable_overlap_scheduler),
    KBOOL("print_iter_log", print_iter_log),
    KINT("stream_interval", stream_interval, 1, I32MAX, 0),
    KENUM("attention_backend", attention_backend, cfg_enum_attn),
    {.name = "attn_backend", .kind = CK_ENUM, .off = OFF(attention_backend), .enums = cfg_enum_attn,
     .canon = "attention_backend"},
    KBOOL("trust_remote_code", trust_remote_code),
    KENUM("load_format", load_format, cfg_enum_load_format),
    KINT("num_postprocess_workers", num_postprocess_workers, 0, I32MAX, 0),
    {.name = "cuda_graph_config", .kind = CK_MAP, .off = OFF(cuda_graph.enabled), .children = keys_cuda_graph,
     .flags = CFG_NULLABLE},
    {.name = "kv_cache_config", .kind = CK_MAP, .off = CFG_NO_FIELD, .children = keys_kv_cache},
    {.name = "speculative_config", .kind = CK_MAP, .off = OFF(speculative.enabled), .children = keys_spec,
     .flags = CFG_NULLABLE},
    {.name = "moe_config", .kind = CK_MAP, .off = CFG_NO_FIELD, .children = keys_moe},
    /* Seen in TensorRT-LLM's DeepSeek recipes; harmless to accept, nothing to do. */
    XBOOL("enable_lm_head_tp_in_adp"),
    XBOOL("enable_iter_perf_stats"),
    XBOOL("enable_iter_req_stats"),
    XBOOL("enable_autotuner"),
    {.name = "allreduce_strategy", .kind = CK_ENUM, .off = CFG_NO_FIELD, .enums = enum_allreduce,
     .flags = CFG_IGNORED},
    {.name = "attention_dp_config", .kind = CK_MAP, .off = CFG_NO_FIELD, .children = keys_attention_dp,
     .flags = CFG_NULLABLE | CFG_IGNORED},
    {.name = "moeserve", .kind = CK_MAP, .off = CFG_NO_FIELD, .children = keys_moeserve},
    {NULL}};

/* ------------------------------------------------------ value conversion */

static void enum_list(const cfg_enum_t *e, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (; e->name && used < n; e++) used += (size_t)snprintf(buf + used, n - used, "%s%s", used ? ", " : "", e->name);
}

static void fmt_num(double v, char *buf, size_t n)
{
    if (v >= I64MAX) snprintf(buf, n, "inf");
    else if (v == floor(v) && fabs(v) < 1e15) snprintf(buf, n, "%.0f", v);
    else snprintf(buf, n, "%g", v);
}

void cfg_expect(const cfg_key_t *k, char *buf, size_t n)
{
    char lo[32], hi[32];
    fmt_num(k->min, lo, sizeof lo);
    fmt_num(k->max, hi, sizeof hi);
    switch (k->kind) {
    case CK_INT:
    case CK_I64:
        if (k->flags & CFG_POW2) snprintf(buf, n, "a power of two in [%s, %s]", lo, hi);
        else if (k->min == k->max) snprintf(buf, n, "%s", lo);
        else if (k->min == 1 && k->max >= I32MAX) snprintf(buf, n, "a positive integer");
        else if (k->min == 0 && k->max >= I32MAX) snprintf(buf, n, "a non-negative integer");
        else if (k->max >= I32MAX) snprintf(buf, n, "an integer >= %s", lo);
        else snprintf(buf, n, "an integer in [%s, %s]", lo, hi);
        break;
    case CK_FLOAT:
        if (k->max >= 1e30) snprintf(buf, n, "a number >= %s", lo);
        else snprintf(buf, n, "a number in [%s, %s]", lo, hi);
        break;
    case CK_BOOL: snprintf(buf, n, "true or false"); break;
    case CK_STR: snprintf(buf, n, "a string"); break;
    case CK_ENUM: {
        char list[512];
        enum_list(k->enums, list, sizeof list);
        snprintf(buf, n, "one of %s", list);
        break;
    }
    case CK_INTLIST: snprintf(buf, n, "a list of positive integers"); break;
    case CK_MAP: snprintf(buf, n, (k->flags & CFG_FILE) ? "a map or the path of a YAML file holding one" : "a map"); break;
    case CK_ASSIGN: snprintf(buf, n, "a map of layer index to a list of expert ids, one per slot"); break;
    }
}

/* Decimal integer, optional sign, '_' allowed between digits (YAML 1.1). */
int cfg_int_parse(const char *s, long long *out)
{
    char digits[64];
    size_t n = 0;
    const char *p = s;
    if (*p == '+' || *p == '-') digits[n++] = *p++;
    if (!isdigit((unsigned char)*p)) return -1;
    for (; *p; p++) {
        if (isdigit((unsigned char)*p)) {
            if (n + 1 >= sizeof digits) return -1;
            digits[n++] = *p;
        } else if (*p == '_' && isdigit((unsigned char)p[-1]) && isdigit((unsigned char)p[1])) {
            continue;
        } else {
            return -1;
        }
    }
    digits[n] = '\0';
    errno = 0;
    long long v = strtoll(digits, NULL, 10);
    if (errno == ERANGE) return -1;
    *out = v;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(s, yes[i])) return *out = true, 0;
        if (!strcasecmp(s, no[i])) return *out = false, 0;
    }
    return -1;
}

int cfg_value_set(const cfg_key_t *k, const char *text, bool is_null, ms_config_t *cfg, char *why, size_t n)
{
    /* Ignored keys are still converted, into a slot nobody reads. */
    static _Thread_local union {
        long long i;
        double d;
        char s[MS_CFG_PATH_MAX];
    } scratch;
    void *dst = k->off == CFG_NO_FIELD ? (void *)&scratch : (void *)((char *)cfg + k->off);
    char expect[600];
    cfg_expect(k, expect, sizeof expect);
    char shown[80];
    snprintf(shown, sizeof shown, "%s", text ? text : "");
    if (text && strlen(text) >= sizeof shown) memcpy(shown + sizeof shown - 4, "...", 4);

    if (is_null) {
        if (!(k->flags & CFG_NULLABLE)) {
            snprintf(why, n, "expected %s, got null", expect);
            return -1;
        }
        switch (k->kind) {
        case CK_INT: case CK_ENUM: *(int *)dst = 0; break;
        case CK_I64: *(int64_t *)dst = 0; break;
        case CK_FLOAT: *(double *)dst = 0; break;
        case CK_BOOL: *(bool *)dst = false; break;
        case CK_STR: ((char *)dst)[0] = '\0'; break;
        default: break;
        }
        return 0;
    }

    switch (k->kind) {
    case CK_INT:
    case CK_I64: {
        long long v;
        if (cfg_int_parse(text, &v) != 0 || v < k->min || (double)v > k->max ||
            ((k->flags & CFG_POW2) && (v & (v - 1)) != 0)) {
            snprintf(why, n, "expected %s, got '%s'%s%s", expect, shown, k->note ? ": " : "", k->note ? k->note : "");
            return -1;
        }
        if (k->kind == CK_INT) *(int *)dst = (int)v;
        else *(int64_t *)dst = (int64_t)v;
        return 0;
    }
    case CK_FLOAT: {
        char *end;
        errno = 0;
        double v = strtod(text, &end);
        if (end == text || *end != '\0' || errno == ERANGE || !isfinite(v) || v < k->min || v > k->max) {
            snprintf(why, n, "expected %s, got '%s'", expect, shown);
            return -1;
        }
        *(double *)dst = v;
        return 0;
    }
    case CK_BOOL: {
        bool v;
        if (parse_bool(text, &v) != 0) {
            snprintf(why, n, "expected %s, got '%s'", expect, shown);
            return -1;
        }
        *(bool *)dst = v;
        return 0;
    }
    case CK_STR: {
        size_t cap = k->off == CFG_NO_FIELD ? sizeof scratch.s : k->size;
        if (strlen(text) >= cap) {
            snprintf(why, n, "expected a string shorter than %zu characters, got '%s'", cap, shown);
            return -1;
        }
        memcpy(dst, text, strlen(text) + 1);
        return 0;
    }
    case CK_ENUM:
        for (const cfg_enum_t *e = k->enums; e->name; e++)
            if (!strcasecmp(e->name, text)) {
                *(int *)dst = e->value;
                return 0;
            }
        snprintf(why, n, "expected %s, got '%s'%s%s", expect, shown, k->note ? ": " : "", k->note ? k->note : "");
        return -1;
    default:
        snprintf(why, n, "expected %s, got '%s'", expect, shown);
        return -1;
    }
}

/* ------------------------------------------------------- whole-config checks */

static void where(char *buf, size_t n, const cfg_origin_t *o, int line)
{
    if (o && o->yaml_path && line > 0) snprintf(buf, n, "%s:%d: ", o->yaml_path, line);
    else buf[0] = '\0';
}

ms_status_t cfg_check(const ms_config_t *c, const cfg_origin_t *o)
{
    char w[MS_CFG_PATH_MAX + 32];
    /* TensorRT-LLM's mapping requires moe_tp * moe_ep == tp (cluster size 1). */
    if (c->ep_size > 0 && c->tp_size % c->ep_size != 0) {
        where(w, sizeof w, o, o ? (o->line_ep ? o->line_ep : o->line_tp) : 0);
        return MS_ERR(MS_ERR_INVALID,
                      "%skey 'moe_expert_parallel_size' (--ep_size) = %d must divide tensor_parallel_size "
                      "(--tp_size) = %d",
                      w, c->ep_size, c->tp_size);
    }
    if (c->moe.load_balancer.enabled && c->moe.load_balancer.num_slots > 0) {
        int ep = c->ep_size > 0 ? c->ep_size : 1;
        if (c->moe.load_balancer.num_slots % ep != 0) {
            cfg_origin_t so = o ? *o : (cfg_origin_t){0};
            if (so.slots_path) so.yaml_path = so.slots_path;
            where(w, sizeof w, o ? &so : NULL, so.line_slots);
            return MS_ERR(MS_ERR_INVALID,
                          "%skey 'moe_config.load_balancer.num_slots': %d is not a multiple of "
                          "moe_expert_parallel_size (--ep_size) = %d",
                          w, c->moe.load_balancer.num_slots, ep);
        }
    }
    const int na = c->moe.load_balancer.enabled ? c->moe.load_balancer.n_assign : 0;
    if (na > 0 && c->moe.load_balancer.num_slots != c->moe.load_balancer.assign_len)
        return MS_ERR(MS_ERR_INVALID,
                      "%skey 'moe_config.load_balancer.initial_global_assignments': lists of %d expert ids, but "
                      "num_slots is %d%s",
                      c->moe.load_balancer.assign_where, c->moe.load_balancer.assign_len,
                      c->moe.load_balancer.num_slots, c->moe.load_balancer.num_slots ? "" : " (unset)");
    return MS_OK;
}

ms_status_t cfg_check_placement(const ms_config_t *c, int n_layers, int first_moe_layer, int n_experts, int ep)
{
    const char *key = "moe_config.load_balancer";
    int slots = c->moe.load_balancer.enabled ? c->moe.load_balancer.num_slots : 0;
    if (slots == 0) slots = n_experts;
    if (slots < n_experts)
        return MS_ERR(MS_ERR_INVALID, "key '%s.num_slots': %d is fewer than the model's %d routed experts", key, slots,
                      n_experts);
    if (ep < 1 || slots % ep)
        return MS_ERR(MS_ERR_INVALID, "key '%s.num_slots': %d is not a multiple of the %d EP ranks", key, slots, ep);
    if (!c->moe.load_balancer.enabled) return MS_OK;
    const char *w = c->moe.load_balancer.assign_where;
    const int spr = slots / ep;
    uint8_t *seen = calloc((size_t)n_experts, 1);
    if (!seen) return MS_ERR(MS_ERR_NOMEM, "out of memory checking %s", key);
    ms_status_t st = MS_OK;
    for (int i = 0; i < c->moe.load_balancer.n_assign && st == MS_OK; i++) {
        const int layer = c->moe.load_balancer.assign_layer[i];
        const int16_t *row = c->moe.load_balancer.assign + (size_t)i * slots;
        if (layer < first_moe_layer || layer >= n_layers) {
            st = MS_ERR(MS_ERR_INVALID, "%skey '%s.initial_global_assignments': layer %d is not a MoE layer of the "
                        "model (MoE layers are %d..%d)", w, key, layer, first_moe_layer, n_layers - 1);
            break;
        }
        memset(seen, 0, (size_t)n_experts);
        for (int s = 0; s < slots && st == MS_OK; s++) {
            if (row[s] < 0 || row[s] >= n_experts) {
                st = MS_ERR(MS_ERR_INVALID, "%skey '%s.initial_global_assignments.%d': slot %d names expert %d; the "
                            "model's experts are 0..%d", w, key, layer, s, row[s], n_experts - 1);
                break;
            }
            seen[row[s]] = 1;
            for (int t = s - s % spr; t < s; t++)
                if (row[t] == row[s])
                    st = MS_ERR(MS_ERR_INVALID, "%skey '%s.initial_global_assignments.%d': EP rank %d holds expert %d "
                                "twice (slots %d and %d; a rank holds slots %d per layer)", w, key, layer, s / spr,
                                row[s], t, s, spr);
        }
        for (int e = 0; e < n_experts && st == MS_OK; e++)
            if (!seen[e])
                st = MS_ERR(MS_ERR_INVALID, "%skey '%s.initial_global_assignments.%d': expert %d has no slot", w, key,
                            layer, e);
    }
    free(seen);
    return st;
}

ms_status_t cfg_validate(const ms_config_t *cfg) { return cfg_check(cfg, NULL); }

ms_status_t cfg_load_yaml(const char *path, ms_config_t *cfg)
{
    ms_config_t *tmp = malloc(sizeof *tmp);
    if (!tmp) return MS_ERR(MS_ERR_NOMEM, "out of memory reading %s", path);
    *tmp = *cfg;
    cfg_origin_t origin = {0};
    ms_status_t st = cfg_yaml_apply(path, tmp, &origin);
    if (st == MS_OK) st = cfg_check(tmp, &origin);
    if (st == MS_OK) *cfg = *tmp;
    free(tmp);
    return st;
}

/* ---------------------------------------------------------------- printing */

void cfg_print(const ms_config_t *c, FILE *f)
{
    fprintf(f, "config:\n");
    fprintf(f, "  model: %s\n", c->model);
    fprintf(f, "  model_dir: %s\n", c->model_dir[0] ? c->model_dir : "(not resolved yet)");
    fprintf(f, "  served_model_name: %s\n", c->served_model_name);
    fprintf(f, "  tokenizer: %s\n", c->tokenizer[0] ? c->tokenizer : "(model directory)");
    if (c->revision[0]) fprintf(f, "  revision: %s\n", c->revision);
    fprintf(f, "  extra_llm_api_options: %s\n", c->extra_llm_api_options[0] ? c->extra_llm_api_options : "(none)");
    fprintf(f, "  host: %s\n  port: %d\n", c->host, c->port);
    fprintf(f, "  backend: %s (recorded; moeserve runs its own engine)\n", enum_name(cfg_enum_backend, c->backend));
    fprintf(f, "  log_level: %s\n", enum_name(cfg_enum_log_level, c->log_level));
    fprintf(f, "  trust_remote_code: %s\n", c->trust_remote_code ? "true" : "false");
    fprintf(f, "  load_format: %s\n", cfg_load_format_name(c->load_format));
    if (c->reasoning_parser[0]) fprintf(f, "  reasoning_parser: %s\n", c->reasoning_parser);
    fprintf(f, "  max_batch_size: %d\n  max_num_tokens: %d\n", c->max_batch_size, c->max_num_tokens);
    if (c->max_seq_len) fprintf(f, "  max_seq_len: %d\n", c->max_seq_len);
    else fprintf(f, "  max_seq_len: (from the model's max_position_embeddings)\n");
    fprintf(f, "  tensor_parallel_size: %d\n  pipeline_parallel_size: %d\n", c->tp_size, c->pp_size);
    if (c->ep_size) fprintf(f, "  moe_expert_parallel_size: %d\n", c->ep_size);
    else fprintf(f, "  moe_expert_parallel_size: (unset)\n");
    if (c->gpus_per_node) fprintf(f, "  gpus_per_node: %d\n", c->gpus_per_node);
    fprintf(f, "  enable_attention_dp: %s\n", c->enable_attention_dp ? "true" : "false");
    fprintf(f, "  enable_chunked_prefill: %s\n", c->enable_chunked_prefill ? "true" : "false");
    fprintf(f, "  disable_overlap_scheduler: %s\n", c->disable_overlap_scheduler ? "true" : "false");
    fprintf(f, "  print_iter_log: %s\n", c->print_iter_log ? "true" : "false");
    fprintf(f, "  stream_interval: %d\n", c->stream_interval);
    fprintf(f, "  attention_backend: %s\n", cfg_attn_backend_name(c->attention_backend));
    if (c->cuda_graph.enabled) {
        fprintf(f, "  cuda_graph_config: {enable_padding: %s, max_batch_size: %d, batch_sizes: [",
                c->cuda_graph.enable_padding ? "true" : "false", c->cuda_graph.max_batch_size);
        for (int i = 0; i < c->cuda_graph.n_batch_sizes; i++)
            fprintf(f, "%s%d", i ? ", " : "", c->cuda_graph.batch_sizes[i]);
        fprintf(f, "]}\n");
    } else {
        fprintf(f, "  cuda_graph_config: null\n");
    }
    fprintf(f, "  kv_cache_config: {dtype: %s, free_gpu_memory_fraction: %g, enable_block_reuse: %s, ",
            cfg_kv_dtype_name(c->kv_cache.dtype), c->kv_cache.free_gpu_memory_fraction,
            c->kv_cache.enable_block_reuse ? "true" : "false");
    if (c->kv_cache.max_tokens) fprintf(f, "max_tokens: %lld, ", (long long)c->kv_cache.max_tokens);
    fprintf(f, "tokens_per_block: %d}\n", c->kv_cache.tokens_per_block);
    if (c->speculative.enabled)
        fprintf(f, "  speculative_config: {decoding_type: %s, num_nextn_predict_layers: %d}\n",
                enum_name(cfg_enum_spec, c->speculative.decoding_type), c->speculative.num_nextn_predict_layers);
    else
        fprintf(f, "  speculative_config: null\n");
    fprintf(f, "  moe_config: {backend: %s", cfg_moe_backend_name(c->moe.backend));
    if (c->moe.max_num_tokens) fprintf(f, ", max_num_tokens: %d", c->moe.max_num_tokens);
    if (c->moe.load_balancer.enabled) {
        fprintf(f, ", load_balancer: {num_slots: ");
        if (c->moe.load_balancer.num_slots) fprintf(f, "%d", c->moe.load_balancer.num_slots);
        else fprintf(f, "(number of experts)");
        fprintf(f, ", layer_updates_per_iter: %d", c->moe.load_balancer.layer_updates_per_iter);
        if (c->moe.load_balancer.n_assign)
            fprintf(f, ", initial_global_assignments: (%d layers)", c->moe.load_balancer.n_assign);
        fprintf(f, "}");
    }
    fprintf(f, "}\n");
    fprintf(f,
            "  moeserve: {device: %s, moe_compute: %s, dense_compute: %s, data_plane: %s, max_queue_size: %d, max_body_bytes: %lld, max_connections: %d, "
            "request_timeout: %g, drain_timeout: %g, eplb_window_steps: %d, eplb_stats_interval: %d, eplb_min_gain: %g%s%s}\n",
            cfg_device_name(c->ms.device), cfg_moe_compute_name(c->ms.moe_compute),
            cfg_moe_compute_name(c->ms.dense_compute), cfg_data_plane_name(c->ms.data_plane),
            c->ms.max_queue_size,
            (long long)c->ms.max_body_bytes, c->ms.max_connections, c->ms.request_timeout, c->ms.drain_timeout,
            c->ms.eplb_window_steps, c->ms.eplb_stats_interval, c->ms.eplb_min_gain, c->ms.eplb_dump[0] ? ", eplb_dump: " : "",
            c->ms.eplb_dump);
}
