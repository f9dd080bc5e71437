/* config.h — the one validated server configuration (`ms_config_t`).
 *
 * Filled, in this order (later wins):
 *   1. cfg_defaults()                      TensorRT-LLM's documented defaults
 *   2. trtllm-serve style command line     `moeserve serve MODEL --max_batch_size 64 ...`
 *   3. the YAML file of --extra_llm_api_options, with TensorRT-LLM's keys
 *      (a key given in the YAML overrides the same setting given as a flag,
 *      as trtllm-serve does; configs/README.md lists every key).
 * then checked as a whole. Any error is one line naming the file and line or
 * the flag, and the key: `cfg.yaml:7: key 'moe_config.load_balancer.num_slots':
 * expected a positive integer, got 'abc'`; `moeserve serve` exits 2 on it.
 *
 * The struct is plain data with no pointers, so rank 0 can parse it once and
 * MPI_Bcast it to every rank as bytes. A value 0 in a field documented "0 =
 * unset" means TensorRT-LLM's `None`: derived later from the model or the
 * machine by whoever owns that decision (noted per field).
 */
#ifndef MS_CONFIG_H
#define MS_CONFIG_H

#include "status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define MS_CFG_PATH_MAX 4096
#define MS_CFG_NAME_MAX 256
#define MS_CFG_MAX_GRAPH_BATCHES 128
/* extra_llm_api_options files nesting deeper than this are refused (config_yaml.c says why) */
#define MS_CFG_YAML_MAX_DEPTH 32
/* moe_config.load_balancer.initial_global_assignments capacity: layers
 * listed, and expert ids in all (R1: 58 MoE layers x 288 slots = 16704) */
#define MS_CFG_LB_MAX_LAYERS 1024
#define MS_CFG_LB_MAX_ENTRIES 65536

/* --backend: accepted for trtllm-serve compatibility. moeserve always runs its
 * own engine; the value is only recorded and logged. */
typedef enum { MS_BACKEND_PYTORCH = 0, MS_BACKEND_TENSORRT, MS_BACKEND_AUTODEPLOY } ms_cfg_backend_t;

typedef enum { MS_KV_DTYPE_AUTO = 0, MS_KV_DTYPE_FP8, MS_KV_DTYPE_BF16 } ms_kv_dtype_t;

typedef enum {
    MS_MOE_BACKEND_CUTLASS = 0, /* TensorRT-LLM's default (per the R1 quickstart) */
    MS_MOE_BACKEND_AUTO,
    MS_MOE_BACKEND_TRTLLM,
    MS_MOE_BACKEND_DEEPGEMM,
    MS_MOE_BACKEND_WIDEEP,
    MS_MOE_BACKEND_CUTEDSL,
    MS_MOE_BACKEND_VANILLA,
    MS_MOE_BACKEND_TRITON,
} ms_moe_backend_t;

typedef enum {
    MS_ATTN_BACKEND_TRTLLM = 0,
    MS_ATTN_BACKEND_FLASHINFER,
    MS_ATTN_BACKEND_VANILLA,
    MS_ATTN_BACKEND_FLASHINFER_STAR_ATTENTION,
} ms_attn_backend_t;

typedef enum { MS_SPEC_MTP = 0 } ms_spec_type_t;

/* Which kernels backend the ranks use (moeserve addition). auto: CUDA when the
 * build has it and a GPU is visible, else CPU. */
typedef enum { MS_DEVICE_AUTO = 0, MS_DEVICE_CPU, MS_DEVICE_CUDA } ms_device_t;

/* How FP8 routed experts compute (moeserve.moe_compute; kernels.h kern_moe_mode_t): dequant (the CPU
 * spec, transformers' numerics) or fp8 (act_quant'ed rows, FP8×FP8 as DeepSeek's inference code). auto
 * follows moe_config.backend: see cfg_moe_fp8. */
typedef enum { MS_MOE_COMPUTE_AUTO = 0, MS_MOE_COMPUTE_DEQUANT, MS_MOE_COMPUTE_FP8 } ms_moe_compute_t;
/* The data plane between ranks (moeserve.data_plane; worker/comm.h): auto = mpi until the NCCL plane has run on
 * several GPUs (issue 15), mpi = worker/comm_mpi.c (any backend, ranks may share a GPU), nccl =
 * worker/comm_nccl.c (CUDA ranks, one GPU each; builds with NCCL only). */
typedef enum { MS_DATA_PLANE_AUTO = 0, MS_DATA_PLANE_MPI, MS_DATA_PLANE_NCCL } ms_data_plane_t;

/* load_format (TensorRT-LLM's key): auto reads the checkpoint; dummy makes deterministic random weights
 * on the device from config.json alone (worker/weights.h), for measuring without weight files. */
typedef enum { MS_LOAD_AUTO = 0, MS_LOAD_DUMMY } ms_load_format_t;

typedef struct {
    /* ---- trtllm-serve command line ---- */
    char model[MS_CFG_PATH_MAX];             /* MODEL exactly as given (dir or HF repo id) */
    char model_dir[MS_CFG_PATH_MAX];         /* "" until cfg_resolve_model() fills it */
    char served_model_name[MS_CFG_PATH_MAX]; /* --served_model_name; defaults to `model` */
    char tokenizer[MS_CFG_PATH_MAX];         /* --tokenizer; "" = the model directory */
    char revision[MS_CFG_NAME_MAX];          /* --revision; "" = main (HF cache lookup) */
    char extra_llm_api_options[MS_CFG_PATH_MAX]; /* --extra_llm_api_options / --config; "" = none */
    char host[MS_CFG_NAME_MAX];              /* --host, default "localhost" */
    int port;                                /* --port, default 8000 */
    ms_cfg_backend_t backend;                /* --backend, default pytorch (recorded only) */
    ms_log_level_t log_level;                /* --log_level, default info */
    bool trust_remote_code;                  /* accepted; moeserve never runs remote code */
    int num_postprocess_workers;             /* accepted, default 0; not acted on */
    char reasoning_parser[32];               /* --reasoning_parser: "" or "deepseek-r1" */
    bool help;                               /* --help given: usage printed, exit 0 */

    /* ---- LlmArgs top level (flag or YAML) ---- */
    int max_batch_size;     /* default 2048 */
    int max_num_tokens;     /* default 8192 */
    int max_seq_len;        /* 0 = unset: the model's max_position_embeddings */
    int max_beam_width;     /* must be 1 (no beam search) */
    int tp_size;            /* tensor_parallel_size, default 1 */
    int pp_size;            /* pipeline_parallel_size, must be 1 */
    int ep_size;            /* moe_expert_parallel_size; 0 = unset (trtllm: MoE TP over tp_size, EP 1) */
    int gpus_per_node;      /* 0 = unset: detect */
    bool enable_attention_dp;
    bool enable_chunked_prefill;
    bool disable_overlap_scheduler;
    bool print_iter_log;
    int stream_interval;    /* tokens per streamed chunk, default 1 */
    ms_attn_backend_t attention_backend; /* recorded only: moeserve has one MLA path */
    ms_load_format_t load_format; /* default auto; --load_format */

    struct {
        bool enabled;        /* default true; `cuda_graph_config: null` turns graphs off */
        bool enable_padding; /* default false */
        int max_batch_size;  /* 0 = unset (trtllm: derived); else max of batch_sizes */
        int n_batch_sizes;   /* 0 = unset: derived from max_batch_size */
        int batch_sizes[MS_CFG_MAX_GRAPH_BATCHES]; /* ascending, unique */
    } cuda_graph;

    struct {
        ms_kv_dtype_t dtype;             /* default auto (= the checkpoint's activation dtype) */
        double free_gpu_memory_fraction; /* default 0.9; --kv_cache_free_gpu_memory_fraction */
        bool enable_block_reuse;         /* default true */
        int64_t max_tokens;              /* 0 = unset: sized from free memory */
        int tokens_per_block;            /* default 32; a power of two */
    } kv_cache;

    struct {
        bool enabled;                     /* speculative_config given (and not null) */
        ms_spec_type_t decoding_type;     /* MTP */
        int num_nextn_predict_layers;     /* default 1 */
        bool use_relaxed_acceptance_for_thinking; /* default false */
        int relaxed_topk;                 /* default 1 */
        double relaxed_delta;             /* default 0 */
    } speculative;

    struct {
        ms_moe_backend_t backend; /* default CUTLASS (recorded; moeserve picks its own kernels) */
        int max_num_tokens;       /* 0 = unset: no chunking of the MoE input */
        struct {
            bool enabled;               /* load_balancer given (and not null) */
            int num_slots;              /* 0 = unset: number of routed experts */
            int layer_updates_per_iter; /* default 0 = static placement */
            /* initial_global_assignments: {layer: [expert id of each global slot]}; checked
             * against the model by cfg_check_placement once config.json is read */
            int n_assign;                 /* layers listed; 0 = none (default placement) */
            int assign_len;               /* ids per listed layer (all lists have one length) */
            int16_t assign_layer[MS_CFG_LB_MAX_LAYERS]; /* model layer index of each list, file order */
            int16_t assign[MS_CFG_LB_MAX_ENTRIES];      /* [n_assign][assign_len] */
            char assign_where[MS_CFG_PATH_MAX];         /* "file:line: " of the key, for later messages */
        } load_balancer;
    } moe;

    /* ---- moeserve additions (YAML section `moeserve:` or flags) ---- */
    struct {
        ms_device_t device;     /* --device, default auto */
        ms_moe_compute_t moe_compute; /* --moe_compute, default auto */
        ms_moe_compute_t dense_compute; /* --dense_compute, default auto (= the routed experts' mode) */
        ms_data_plane_t data_plane;   /* --data_plane, default auto */
        int max_queue_size;     /* --max_queue_size: waiting requests before 429, default 4096 */
        int64_t max_body_bytes; /* HTTP request body limit (413 above it), default 16 MiB */
        int max_connections;    /* open HTTP connections at most (503 above), default 8192; the gateway
                                   lowers it to what the fd limit allows */
        double request_timeout; /* seconds to receive one whole request, head and body, default 60 */
        double drain_timeout;   /* SIGTERM/SIGINT: seconds in-flight requests may take to finish, default 30 */
        /* expert-load statistics (coordinator/eplb_window.h) */
        int eplb_window_steps;   /* sliding window of steps the load statistics cover, default 1000 */
        int eplb_stats_interval; /* every this many steps each rank ships its counter deltas, default 50 */
        double eplb_min_gain;    /* a rebalance must lower the step imbalance by this much, default 0.05 */
        char eplb_dump[MS_CFG_PATH_MAX]; /* "" = none; else the window's statistics are written here
                                          * (eplb-plan's input format) at shutdown */
    } ms;
} ms_config_t;

/* TensorRT-LLM's defaults; every string empty except host. */
void cfg_defaults(ms_config_t *cfg);

/* Parse `serve` arguments (argv[0] is "serve" and is skipped), then the YAML
 * file named by --extra_llm_api_options, then validate. `out` is written only
 * on success. `--help`: prints usage to stdout and returns MS_OK with
 * out->help set. Errors are logged once (ms_error_last() has the line):
 * MS_ERR_INVALID bad flag/key/value, MS_ERR_FORMAT YAML syntax, MS_ERR_IO
 * unreadable file. The caller exits 2 on any of them. Does not touch the
 * filesystem for MODEL (see cfg_resolve_model). */
ms_status_t cfg_parse_serve_args(int argc, char **argv, ms_config_t *out);

/* Apply a TensorRT-LLM extra_llm_api_options YAML file on top of `cfg` and
 * validate the result. On error `cfg` is left unchanged. */
ms_status_t cfg_load_yaml(const char *path, ms_config_t *cfg);

/* Cross-field checks (also run by the two functions above). */
ms_status_t cfg_validate(const ms_config_t *cfg);

/* The load balancer against the model, once its config.json is known
 * (serve, every rank): num_slots (0 = n_experts) >= n_experts and a multiple
 * of ep_size; each initial_global_assignments list names a MoE layer in
 * [first_moe_layer, n_layers), has num_slots ids in [0, n_experts), every
 * expert at least once, and no EP rank's slots (ep_size consecutive groups
 * of num_slots / ep_size) hold one expert twice. One-line MS_ERR_INVALID
 * naming the file:line and key; serve exits 2. */
ms_status_t cfg_check_placement(const ms_config_t *cfg, int n_layers, int first_moe_layer, int n_experts, int ep_size);

/* Every setting, one `key: value` line each, for the startup log. */
void cfg_print(const ms_config_t *cfg, FILE *f);

/* Configured keys that do not act yet (config_honesty.c): the key and what
 * the server does today. Returns how many (entries past max are counted,
 * not written). */
typedef struct {
    const char *key;
    char what[240];
} cfg_inactive_t;
int cfg_inactive(const ms_config_t *cfg, cfg_inactive_t *out, int max);
/* Log one warning per cfg_inactive entry (serve, rank 0, at startup). */
void cfg_warn_inactive(const ms_config_t *cfg);

/* `moeserve serve --help` text. */
void cfg_usage(FILE *f);

/* Resolve MODEL to a directory: an existing directory is itself; otherwise a
 * Hugging Face repo id ("org/name") looked up in the local HF cache
 * ($HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub,
 * else ~/.cache/huggingface/hub): models--org--name/refs/main ->
 * snapshots/<hash>/ (or the only snapshot when refs/main is missing). Never
 * downloads. MS_ERR_NOT_FOUND with the places it looked when absent. */
ms_status_t cfg_resolve_model(const char *model_arg, char *dir_out, size_t n);
/* Same, for a revision (branch/tag name under refs/, or a snapshot hash);
 * NULL or "" means "main". */
ms_status_t cfg_resolve_model_rev(const char *model_arg, const char *revision, char *dir_out, size_t n);

/* Names for logging. */
const char *cfg_kv_dtype_name(ms_kv_dtype_t d);
const char *cfg_moe_backend_name(ms_moe_backend_t b);
/* 1 when FP8 routed experts run in the fp8 mode on this backend (on_cuda: the CUDA one): moe_compute
 * dequant/fp8 decides; auto: on the CPU dequant (the reference; its fp8 mode is slower and off
 * transformers' numerics), on CUDA moe_config.backend VANILLA = dequant and every other value = fp8
 * (CUTLASS, DEEPGEMM, TRTLLM: FP8 block-scale GEMMs in TensorRT-LLM; AUTO: fp8 is the faster mode and
 * passes tests/golden at its looser tolerance; WIDEEP/CUTEDSL/TRITON: no kernel of their own, as AUTO). */
int cfg_moe_fp8(const ms_config_t *c, int on_cuda);
/* 1 when FP8 dense linears (attention projections, shared experts, dense MLPs) take act_quant'ed input
 * (moeserve.dense_compute fp8); auto = the routed experts' mode (cfg_moe_fp8), so one knob moves the whole
 * FP8 path. */
int cfg_dense_fp8(const ms_config_t *c, int on_cuda);
/* The batch sizes cuda_graph_config captures, ascending, into out[0..max): batch_sizes when given, else
 * TensorRT-LLM's list generated from max_batch_size (128 when unset; enable_padding picks the coarser
 * list); 0 when cuda_graph_config is null. The engine drops sizes above its step limits. */
int cfg_graph_sizes(const ms_config_t *c, int *out, int max);
const char *cfg_moe_compute_name(ms_moe_compute_t m);
const char *cfg_data_plane_name(ms_data_plane_t d);
const char *cfg_attn_backend_name(ms_attn_backend_t b);
const char *cfg_device_name(ms_device_t d);
const char *cfg_load_format_name(ms_load_format_t f);

#endif
