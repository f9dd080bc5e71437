/* serve.c — the `serve` command: `mpirun -np N build/moeserve serve MODEL
 * [trtllm-serve flags] --extra_llm_api_options cfg.yaml` (N = 1 also runs
 * without mpirun: Open MPI's singleton init).
 *
 * Owns the process: configuration, MPI bootstrap, the layout of ranks, the
 * KV pool size, signals, startup and shutdown order. The loops themselves
 * are in serve_loop.c.
 *
 * Roles: every rank is a worker holding its share of the weights and its KV
 * cache. Rank 0 also runs the tokenizer, the scheduler and the HTTP gateway
 * (its own thread); rank 0's main thread is the only thread that calls MPI,
 * so MPI_THREAD_FUNNELED suffices.
 *
 * Layout (TensorRT-LLM's vocabulary): world size = tp_size. Attention is
 * data-parallel across the ranks when enable_attention_dp (each rank its own
 * sequences and KV pool), tensor-parallel otherwise (heads split, one shared
 * sequence set). MoE experts are split over ep_size ranks (groups of ep_size
 * consecutive ranks; unset = the world size).
 *
 * Startup agreement: every fallible stage ends with an all-rank vote
 * (MPI_Allreduce), so a failure on one rank (bad model dir, port in use, out
 * of memory) makes every rank exit 1 with the reason logged, not wait forever.
 *
 * Signals, the graceful drain and dead ranks: shutdown.c and heartbeat.c.
 */
#include "commands.h"
#include "config.h"
#include "heartbeat.h"
#include "serve_internal.h"
#include "shutdown.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "coordinator/http.h"
#include "coordinator/output.h"
#include "kernels/kernels.h"
#include "ms_build_config.h"
#include "worker/comm_mpi.h"
#if MS_HAVE_NCCL
#include "worker/comm_nccl.h"
#endif
#include "worker/sizing.h"

/* Every rank says whether its stage went well; true when all did. */
static bool all_ok(bool ok)
{
    int mine = ok ? 1 : 0, all = 0;
    MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return all == 1;
}

/* The kernels backend and device of this rank (DESIGN: one rank per GPU).
 * auto: CUDA when the build has it and a GPU is visible, else CPU; cuda
 * forced without either is an error. device = the rank's index on its node
 * (OMPI_COMM_WORLD_LOCAL_RANK) modulo the visible GPUs, so several ranks may
 * share one GPU (tests do); *sharing = ranks of this node on that device. */
static ms_status_t serve_pick_device(const ms_config_t *cfg, int local_rank, int local_ranks, const kern_ops_t **k,
                                     int *device, int *sharing)
{
    const int n = cfg->ms.device != MS_DEVICE_CPU ? kern_backend_devices("cuda") : 0;
    *device = 0, *sharing = local_ranks;
    if (cfg->ms.device == MS_DEVICE_CUDA && n == 0)
        return MS_ERR(MS_ERR_UNSUPPORTED, "moeserve.device cuda: %s",
                      kern_backend_get("cuda", k) == MS_OK ? "no GPU is visible (CUDA_VISIBLE_DEVICES, driver)"
                                                           : "this build has no CUDA backend (-Dcuda=enabled)");
    if (n == 0) {
        *k = &kern_cpu_ops;
        return MS_OK;
    }
    MS_TRY(kern_backend_get("cuda", k));
    *device = local_rank % n;
    *sharing = local_ranks / n + (local_rank % n < local_ranks % n ? 1 : 0);
    return MS_OK;
}

/* KV pool per rank. kv_cache_config.max_tokens caps it when given (the whole
 * pool on CPU ranks). CUDA: the blocks that take free_gpu_memory_fraction of
 * this GPU's free memory (cudaMemGetInfo through the ops table, split
 * between the ranks sharing the GPU) once this rank's weights and activation
 * arena are placed, by worker/sizing.h's arithmetic (plan-memory's).
 * CPU: a quarter of MemAvailable split over the local ranks. Both are capped
 * at what max_batch_size sequences of max_seq_len could use. 0 with the
 * reason logged when nothing fits. */
static int kv_blocks_for_cfg(const ms_config_t *cfg, const mcfg_t *m, const par_t *par, const sizing_limits_t *lim,
                             int max_seq_len, const kern_ops_t *k, int device, int sharing)
{
    const int bs = cfg->kv_cache.tokens_per_block;
    const bool fp8 = cfg->kv_cache.dtype == MS_KV_DTYPE_FP8;
    int64_t tokens = (int64_t)cfg->max_batch_size * max_seq_len;
    if (cfg->kv_cache.max_tokens > 0 && (strcmp(k->name, "cpu") == 0 || cfg->kv_cache.max_tokens < tokens))
        tokens = cfg->kv_cache.max_tokens;
    size_t free_b = 0, total_b = 0;
    if (k->mem_info(device, &free_b, &total_b) != MS_OK) return 0;
    if (strcmp(k->name, "cpu") != 0) {
        sizing_t sz;
        if (sizing_rank(m, par, lim, fp8, 0, free_b / (size_t)sharing, cfg->kv_cache.free_gpu_memory_fraction, &sz) !=
            MS_OK)
            return 0;
        if ((int64_t)sz.kv_blocks * bs < tokens) tokens = (int64_t)sz.kv_blocks * bs;
    } else if (cfg->kv_cache.max_tokens <= 0) {
        int64_t per_tok = (int64_t)sizing_kv_token_bytes(m, fp8);
        if (free_b > 0 && per_tok > 0) {
            int64_t fit = (int64_t)((double)free_b / 4 * cfg->kv_cache.free_gpu_memory_fraction / sharing / per_tok);
            if (fit < tokens) tokens = fit;
        }
        if (tokens < max_seq_len) tokens = max_seq_len;
    }
    int64_t blocks = tokens / bs;
    if (strcmp(k->name, "cpu") == 0) blocks = (tokens + bs - 1) / bs;
    if (blocks > (1 << 30)) blocks = 1 << 30;
    if (blocks < 1) (void)MS_ERR(MS_ERR_NOMEM, "KV cache: no block fits on device %d", device);
    return (int)blocks;
}

/* Before anything is allocated: weights + activations + KV of this rank (worker/sizing.h, plan-memory's
 * arithmetic) against what the device has free (CUDA: cudaMemGetInfo; CPU: MemAvailable), shared with the
 * other ranks on it. A layout that cannot fit is one line naming the numbers, not an allocation failure
 * (or an OOM kill) halfway through loading. */
static bool serve_fits(const mcfg_t *m, const par_t *par, const sizing_limits_t *lim, bool kv_fp8, int kv_blocks,
                       const kern_ops_t *k, int device, int sharing, int rank)
{
    sizing_t sz;
    if (sizing_rank(m, par, lim, kv_fp8, kv_blocks, 0, 0, &sz) != MS_OK) return false;
    size_t free_b = 0, total_b = 0;
    if (k->mem_info(device, &free_b, &total_b) != MS_OK || free_b == 0) return true; /* cannot tell: let it try */
    const double gib = 1073741824.0, need = (double)sz.weights + (double)sz.activations + (double)sz.kv;
    const double have = (double)free_b / (sharing > 0 ? sharing : 1);
    if (need <= have) return true;
    (void)MS_ERR(MS_ERR_NOMEM,
                 "rank %d needs %.2f GiB (weights %.2f, activations %.2f, KV %.2f for %d blocks) but %s %d has %.2f "
                 "GiB free for it: lower max_batch_size / max_num_tokens / max_seq_len or use more ranks "
                 "(moeserve plan-memory prints the arithmetic)", rank, need / gib, sz.weights / gib,
                 sz.activations / gib, sz.kv / gib, kv_blocks, strcmp(k->name, "cpu") ? "GPU" : "host", device,
                 have / gib);
    return false;
}

/* The rank's index on its node: Open MPI's OMPI_COMM_WORLD_LOCAL_RANK, else its rank in the node's
 * shared-memory communicator (the same number under Open MPI). */
static int serve_local_rank(int node_rank)
{
    const char *s = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    return s && *s ? atoi(s) : node_rank;
}

int cmd_serve(int argc, char **argv)
{
    /* Flags + --extra_llm_api_options YAML; a bad config is exit code 2. */
    static ms_config_t cfg;
    if (cfg_parse_serve_args(argc, argv, &cfg) != MS_OK) return 2;
    if (cfg.help) return 0;
    ms_log_set_level(cfg.log_level);

    shutdown_signals_block(); /* before MPI starts its threads, so they all inherit the mask */

    int provided = 0;
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "moeserve: MPI_Init_thread failed\n");
        return 1;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size > 1) ms_log_set_rank(rank);
    shutdown_signals_start(rank, cfg.ms.drain_timeout);
    int local_ranks = 1, node_rank = 0;
    {
        MPI_Comm node;
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
        MPI_Comm_size(node, &local_ranks);
        MPI_Comm_rank(node, &node_rank);
        MPI_Comm_free(&node);
    }

    int rc = 1;
    serve_ctx_t sc = {.cfg = &cfg, .rank = rank, .size = size, .eos_id = -1};
    tok_t *tok = NULL;
    http_server_t *http = NULL;
    comm_t *comm = NULL;
    hb_t *hb = NULL;
    const kern_ops_t *kops = NULL;
    mcfg_t mc;
    bool ok = true;
    int32_t *assign = NULL; /* initial_global_assignments as the engine's table */

    /* ---- layout ---- */
    if (cfg.tp_size != size) {
        if (cfg.tp_size == 1) {
            if (rank == 0) MS_INFO("tp_size not given: using the world size %d", size);
            cfg.tp_size = size;
        } else {
            (void)MS_ERR(MS_ERR_INVALID, "--tp_size %d but mpirun started %d ranks: they must match", cfg.tp_size, size);
            ok = false;
        }
    }
    int ep = cfg.ep_size > 0 ? cfg.ep_size : size;
    if (ok && (ep > size || size % ep)) {
        (void)MS_ERR(MS_ERR_INVALID, "--ep_size %d must divide the %d ranks", ep, size);
        ok = false;
    }
    if (ok && cfg_resolve_model(cfg.model, cfg.model_dir, sizeof cfg.model_dir) != MS_OK) ok = false;
    if (!all_ok(ok)) {
        rc = 2; /* bad usage: the layout or MODEL as given */
        goto out_mpi;
    }
    if (!all_ok(mcfg_load(cfg.model_dir, &mc) == MS_OK)) {
        rc = 2; /* a bad config.json: the message names the file and key */
        goto out_mpi;
    }
    int max_seq_len = cfg.max_seq_len > 0 ? cfg.max_seq_len : mc.max_position_embeddings;
    bool dp = cfg.enable_attention_dp && size > 1;
    int groups = dp ? size : 1;
    par_t par;
    sizing_limits_t lim;
    if (!all_ok(serve_layout(&cfg, size, rank, &par, &lim) == MS_OK)) goto out_mpi;
    lim.max_seq_len = max_seq_len; /* resolved: the engine bounds its block tables by it too */
    int device = 0, sharing = 1;
    if (!all_ok(serve_pick_device(&cfg, serve_local_rank(node_rank), local_ranks, &kops, &device, &sharing) == MS_OK)) {
        rc = 2;
        goto out_mpi;
    }
    {
        char gpu[96] = "";
        size_t fb = 0, tb = 0;
        if (strcmp(kops->name, "cpu") != 0 && kops->mem_info(device, &fb, &tb) == MS_OK)
            snprintf(gpu, sizeof gpu, " GPU %d (%.1f of %.1f GiB free, %d rank%s on it)", device, fb / 1073741824.0,
                     tb / 1073741824.0, sharing, sharing > 1 ? "s" : "");
        MS_INFO("rank %d: %s backend%s", rank, kops->name, gpu);
        if (rank == 0 && mc.weight_dtype == MS_DT_F8E4M3)
            MS_INFO("routed experts: %s compute (moeserve.moe_compute %s, moe_config.backend %s; configs/README.md)",
                    cfg_moe_fp8(&cfg, !strcmp(kops->name, "cuda")) ? "fp8 (act_quant + FP8xFP8)" : "dequant (bf16)",
                    cfg_moe_compute_name(cfg.ms.moe_compute), cfg_moe_backend_name(cfg.moe.backend));
        if (rank == 0 && mc.weight_dtype == MS_DT_F8E4M3)
            MS_INFO("dense linears: %s compute (moeserve.dense_compute %s)",
                    cfg_dense_fp8(&cfg, !strcmp(kops->name, "cuda")) ? "fp8 (act_quant + FP8xFP8)" : "dequant (bf16)",
                    cfg_moe_compute_name(cfg.ms.dense_compute));
    }
    int kv_blocks = kv_blocks_for_cfg(&cfg, &mc, &par, &lim, max_seq_len, kops, device, sharing);
    {   /* one pool size for every rank: the scheduler plans with one number */
        int mine = kv_blocks, least = 0;
        MPI_Allreduce(&mine, &least, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
        kv_blocks = least;
    }
    if (kv_blocks < 1) goto out_mpi;
    if (!all_ok(serve_placement(&cfg, &mc, ep, rank, &assign) == MS_OK)) {
        rc = 2; /* a bad load balancer config, found once the model is known */
        goto out_mpi;
    }
    /* after the placement check, whose messages name the load_balancer keys */
    if (!all_ok(serve_fits(&mc, &par, &lim, cfg.kv_cache.dtype == MS_KV_DTYPE_FP8, kv_blocks, kops, device, sharing,
                           rank))) {
        rc = 2; /* the layout and limits ask for more memory than the rank has */
        goto out_mpi;
    }
    /* cuda_graph_config: the sizes to capture (the engine drops those above its limits and says when its
     * layout cannot use graphs); a backend without graphs runs eagerly, said once when the file asked */
    int graph_sizes[MS_CFG_MAX_GRAPH_BATCHES];
    int n_graph = cfg_graph_sizes(&cfg, graph_sizes, MS_CFG_MAX_GRAPH_BATCHES);
    if (n_graph > 0 && !kops->graphs) {
        if (rank == 0 && (cfg.cuda_graph.enable_padding || cfg.cuda_graph.max_batch_size > 0 ||
                          cfg.cuda_graph.n_batch_sizes > 0))
            MS_WARN("config key 'cuda_graph_config': the %s backend has no CUDA graphs: decode steps run eagerly, "
                    "batches are not padded", kops->name);
        n_graph = 0;
    }
    engine_opts_t eo = {
        .kv_blocks = kv_blocks,
        .block_size = lim.block_size,
        .kv_fp8 = cfg.kv_cache.dtype == MS_KV_DTYPE_FP8, /* auto = the checkpoint's activations: bf16 */
        /* per rank (attention DP: its own sequences; TP: the one group) */
        .max_batch = lim.max_batch,
        .max_tokens_per_step = lim.max_tokens,
        .backend = kops->name,
        .device = device,
        .load_dummy = cfg.load_format == MS_LOAD_DUMMY,
        .mla = ENGINE_MLA_AUTO,
        .moe_fp8 = cfg_moe_fp8(&cfg, !strcmp(kops->name, "cuda")),
        .dense_fp8 = cfg_dense_fp8(&cfg, !strcmp(kops->name, "cuda")),
        .num_slots = lim.num_slots,
        .assignment = assign,
        .moe_max_num_tokens = lim.moe_max_num_tokens,
        .mtp_drafts = cfg.speculative.enabled ? cfg.speculative.num_nextn_predict_layers : 0,
        .max_seq_len = max_seq_len,
        .n_graph_sizes = n_graph,
        .graph_sizes = graph_sizes,
        .graph_padding = cfg.cuda_graph.enable_padding,
    };
    sc.max_seqs = cfg.max_batch_size * groups; /* rank 0's whole plan */
    {
        sizing_t sz;
        if (sizing_rank(&mc, &par, &lim, cfg.kv_cache.dtype == MS_KV_DTYPE_FP8, eo.kv_blocks, 0, 0, &sz) == MS_OK &&
            rank == 0) {
            MS_INFO("per rank: weights %.2f GiB, activations %.2f GiB (MoE receive %lld rows, naive attention %d "
                    "rows), KV %.2f GiB (%d blocks x %d tokens, %zu bytes a token)", sz.weights / 1073741824.0,
                    sz.activations / 1073741824.0, (long long)sz.moe_recv_rows, sz.naive_ctx, sz.kv / 1073741824.0,
                    eo.kv_blocks, eo.block_size, sz.kv_token);
            sc.kv_bytes = sz.kv;
        }
    }
    sc.vocab_size = mc.vocab_size;
    if (rank == 0) {
        cfg_warn_inactive(&cfg);
        MS_INFO("moeserve %s: model %s (%s), %d rank%s: attention %s %d, experts EP %d; max_batch_size %d, "
                "max_num_tokens %d, max_seq_len %d, KV %d blocks x %d tokens per %s",
                MS_VERSION, cfg.model, cfg.model_dir, size, size > 1 ? "s" : "", dp ? "DP" : "TP", size, ep,
                cfg.max_batch_size, cfg.max_num_tokens, max_seq_len, eo.kv_blocks, eo.block_size,
                dp ? "rank" : "job");
    }

    /* ---- data plane ---- */
    if (size == 1) {
        ok = comm_local_create(kops, &comm) == MS_OK;
    } else if (cfg.ms.data_plane == MS_DATA_PLANE_NCCL) { /* auto stays mpi until NCCL has run on several GPUs */
#if MS_HAVE_NCCL
        if (strcmp(kops->name, "cuda") != 0)
            ok = MS_ERR(MS_ERR_INVALID, "moeserve.data_plane: nccl needs the cuda backend (moeserve.device), this rank "
                        "runs %s", kops->name) == MS_OK;
        else
            ok = comm_nccl_create(MPI_COMM_WORLD, ep, kops, &comm) == MS_OK;
#else
        ok = MS_ERR(MS_ERR_UNSUPPORTED, "moeserve.data_plane: nccl: this build has no NCCL data plane (nccl.h was not "
                    "found when it was built)") == MS_OK;
#endif
    } else {
        ok = comm_mpi_create(MPI_COMM_WORLD, ep, kops, &comm) == MS_OK;
    }
    if (ok) ok = proto_link_create(MPI_COMM_WORLD, &sc.link) == MS_OK;
    if (ok) ok = serve_eplb_create(&cfg, &mc, rank, ep, &sc.eplb) == MS_OK;
    if (!all_ok(ok)) goto out_comm;
    if (!all_ok(hb_start(MPI_COMM_WORLD, &hb) == MS_OK)) goto out_comm;

    /* ---- rank 0: tokenizer, scheduler, gateway (answers 503 while loading) ---- */
    if (rank == 0) {
        const char *tokdir = cfg.tokenizer[0] ? cfg.tokenizer : cfg.model_dir;
        sched_config_t scfg = {
            .n_groups = groups,
            .attention_dp = dp,
            .max_batch_size = cfg.max_batch_size,
            .max_num_tokens = cfg.max_num_tokens,
            .max_seq_len = max_seq_len,
            .block_size = eo.block_size,
            .n_blocks = eo.kv_blocks,
            .chunked_prefill = cfg.enable_chunked_prefill,
            .block_reuse = cfg.kv_cache.enable_block_reuse,
            .spec_drafts = eo.mtp_drafts,
        };
        ok = tok_load(tokdir, &tok) == MS_OK && coord_create(cfg.ms.max_queue_size, &sc.coord) == MS_OK &&
             sched_create(&scfg, &sc.sched) == MS_OK;
        if (ok) {
            sc.tok = tok;
            sc.eos_id = tok_eos_id(tok);
            shutdown_set_coord(sc.coord);
            http_opts_t ho = {
                .host = cfg.host,
                .port = cfg.port,
                .served_model_name = cfg.served_model_name[0] ? cfg.served_model_name : cfg.model,
                .max_seq_len = sched_seq_limit(sc.sched),
                .vocab_size = mc.vocab_size,
                .max_body_bytes = (size_t)cfg.ms.max_body_bytes,
                .stream_interval = cfg.stream_interval,
                .tok = tok,
                .coord = sc.coord,
                .max_connections = cfg.ms.max_connections,
                .request_timeout_s = cfg.ms.request_timeout,
                .eplb = serve_eplb_window(sc.eplb),
            };
            ok = http_server_create(&ho, &http) == MS_OK && http_server_start(http) == MS_OK;
            if (ok)
                MS_INFO("HTTP gateway listening on http://%s:%d (503 until the model is loaded)", cfg.host,
                        http_server_port(http));
        }
    }
    if (!all_ok(ok)) goto out_rank0;

    /* ---- weights ---- */
    double t0 = out_now();
    MS_INFO("rank %d (pid %d): loading %s (attention %s rank %d/%d, experts %d/%d)", rank, (int)getpid(),
            cfg.model_dir, dp ? "DP" : "TP", rank, size, par.ep_rank, ep);
    ok = engine_create(cfg.model_dir, &par, &eo, comm, &sc.engine) == MS_OK;
    free(assign);
    assign = NULL;
    if (ok) {
        size_t fb = 0, tb = 0;
        char left[64] = "";
        if (strcmp(kops->name, "cpu") != 0 && kops->mem_info(device, &fb, &tb) == MS_OK)
            snprintf(left, sizeof left, "; GPU %d has %.2f GiB free", device, fb / 1073741824.0);
        MS_INFO("rank %d: loaded in %.1f s%s%s", rank, out_now() - t0, eo.load_dummy ? " (load_format dummy)" : "",
                left);
    }
    if (ok) ok = serve_eplb_engine(sc.eplb, sc.engine) == MS_OK;
    if (!all_ok(ok)) goto out_engine;

    /* ---- serve ---- */
    ms_status_t st;
    if (rank == 0) {
        MS_INFO("ready: serving %s on http://%s:%d", cfg.served_model_name[0] ? cfg.served_model_name : cfg.model,
                cfg.host, http_server_port(http));
        shutdown_set_http(http);
        hb_arm(hb);
        st = serve_loop_rank0(&sc);
        http_server_stop(http); /* every request was ended: the gateway only flushes replies */
        hb_disarm(hb);          /* the workers are told to exit: their sockets closing is no death */
        ms_status_t st2 = serve_shutdown_workers(&sc);
        if (st == MS_OK) st = st2;
    } else {
        st = serve_loop_worker(&sc);
    }
    serve_eplb_finish(sc.eplb);
    shutdown_mark_exiting();
    rc = st == MS_OK ? 0 : 1;
    if (rank == 0) MS_INFO("shut down %s", rc == 0 ? "cleanly" : "after an error");

out_engine:
    engine_destroy(sc.engine);
out_rank0:
    shutdown_set_http(NULL);
    if (http) {
        http_server_stop(http);
        http_server_destroy(http);
    }
    shutdown_set_coord(NULL);
    sched_destroy(sc.sched);
    coord_destroy(sc.coord);
    tok_free(tok);
out_comm:
    serve_eplb_destroy(sc.eplb);
    hb_destroy(hb);
    proto_link_destroy(sc.link);
    comm_destroy(comm);
out_mpi:
    free(assign);
    shutdown_mark_exiting();
    MPI_Finalize();
    return rc;
}
