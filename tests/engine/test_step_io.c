/* test_step_io.c — the engine's step I/O rule under mpirun (np 1, 2, 4):
 * for every layout the world allows (attention TP and DP, every ep_size that
 * divides it), a decode step issues exactly one host→device upload, one
 * device→host download and one synchronize on every rank, whatever the layer
 * count — counted by a wrapper around the CPU ops table (ops_count.h). A
 * fault word raised on any rank ends that step with MS_ERR_DATA on that rank
 * only, every rank finishes the step (no hang), and the next step is right.
 *
 * argv[1] = moeserve-mkmodel, argv[2] = extra mkmodel arguments (e.g.
 * "--layers 1" for a dense-only model). */
#include <mpi.h>

#include "tests/engine/etest.h"
#include "tests/engine/ops_count.h"
#include "worker/comm_mpi.h"
#include "worker/sizing.h"

enum { NSEQ = 4, BS = 4, PRE = 5 };
static const int32_t TOK[8] = {0, 400, 221, 344, 391, 52, 17, 250};

static int g_rank, g_size;

/* One step of the first n sequences: prefill (pos 0, PRE tokens) or decode (pos PRE + d, 1 token). */
static ms_status_t step(engine_t *e, bool dp, int n, int decode, proto_result_t *res)
{
    static int32_t blocks[NSEQ][4];
    for (int i = 0; i < NSEQ; i++)
        for (int b = 0; b < 4; b++) blocks[i][b] = i * 4 + b;
    et_seq_t q[NSEQ];
    for (int i = 0; i < n; i++) {
        int pos = decode ? PRE + decode - 1 : 0, nt = decode ? 1 : PRE;
        q[i] = (et_seq_t){.slot = i, .pos = pos, .n = nt, .tokens = decode ? &TOK[(i + decode) % 8] : TOK,
                          .blocks = blocks[i], .n_blocks = et_blocks_for(pos + nt, BS), .sample = 1,
                          .n_logprobs = 2};
    }
    /* et_step plans for attention TP (dp_rank -1); DP needs owners */
    proto_planbuf_t pb;
    proto_planbuf_init(&pb);
    ms_status_t st = MS_OK;
    for (int i = 0; i < n && st == MS_OK; i++) {
        proto_seq_t ps = {.slot = q[i].slot, .dp_rank = dp ? i % g_size : -1, .pos = q[i].pos,
                          .flags = PROTO_SEQ_SAMPLE, .top_p = 1.0f, .n_logprobs = q[i].n_logprobs, .seed = 7};
        st = proto_planbuf_add(&pb, &ps, q[i].tokens, q[i].n, q[i].blocks, q[i].n_blocks);
    }
    const proto_plan_t *plan = NULL;
    if (st == MS_OK) st = proto_planbuf_finish(&pb, (uint32_t)decode, &plan);
    if (st == MS_OK) st = engine_step(e, plan, res);
    proto_planbuf_free(&pb);
    return st;
}

static bool mine(bool dp, int i) { return !dp || i % g_size == g_rank; }

static void run(const char *dir, bool dp, int ep, const kern_ops_t *ops)
{
    par_t par = {.tp_rank = g_rank, .tp_size = g_size, .ep_rank = g_rank % ep, .ep_size = ep, .attention_dp = dp};
    comm_t *comm = NULL;
    ms_status_t st = g_size == 1 ? comm_local_create(&kern_cpu_ops, &comm)
                                 : comm_mpi_create(MPI_COMM_WORLD, ep, &kern_cpu_ops, &comm);
    T_CHECK(st == MS_OK);
    engine_opts_t o = {.kv_blocks = 64, .block_size = BS, .max_batch = 8, .max_tokens_per_step = 64,
                       .mla = ENGINE_MLA_AUTO, .ops = ops};
    engine_t *e = NULL;
    T_CHECK(engine_create(dir, &par, &o, comm, &e) == MS_OK);
    if (!e) {
        MPI_Abort(MPI_COMM_WORLD, 1); /* the other ranks would wait in a collective */
        return;
    }
    /* what the engine allocated is what plan-memory predicts from config.json */
    size_t w, a, kv;
    engine_memory(e, &w, &a, &kv);
    sizing_limits_t lim = {.max_batch = o.max_batch, .max_tokens = o.max_tokens_per_step, .block_size = BS};
    sizing_t sz;
    T_CHECK(sizing_rank(engine_config(e), &par, &lim, false, o.kv_blocks, 0, 0, &sz) == MS_OK);
    T_CHECK_MSG(sz.weights == w && sz.activations == a && sz.kv == kv,
                "rank %d: sizing says weights %zu, activations %zu, KV %zu; the engine has %zu, %zu, %zu", g_rank,
                sz.weights, sz.activations, sz.kv, w, a, kv);
    proto_result_t res[NSEQ];
    T_CHECK(step(e, dp, NSEQ, 0, res) == MS_OK); /* prefill: not counted */
    /* decode at batch 4, then batch 1 (DP: ranks 1.. have no tokens but take part) */
    const int batch[2] = {NSEQ, 1};
    for (int d = 1; d <= 2; d++) {
        ops_count_reset();
        st = step(e, dp, batch[d - 1], d, res);
        ops_count_t n = ops_count_get();
        T_CHECK(st == MS_OK);
        T_CHECK_MSG(n.upload == 1 && n.download == 1 && n.synchronize == 1,
                    "rank %d, attention %s, ep %d, decode batch %d: %ld uploads, %ld downloads, %ld synchronizes "
                    "(want 1 each)", g_rank, dp ? "DP" : "TP", ep, batch[d - 1], n.upload, n.download, n.synchronize);
        for (int i = 0; i < batch[d - 1]; i++)
            if (mine(dp, i)) T_CHECK(res[i].token >= 0 && res[i].token < 512 && res[i].n_top == 2);
    }
    /* a fault raised on the last rank only: that rank fails the step with
     * MS_ERR_DATA, the others finish it (no hang), nobody returns a token */
    if (g_rank == g_size - 1) engine_inject_fault(e, ENGINE_FAULT_INJECTED);
    st = step(e, dp, NSEQ, 3, res);
    if (g_rank == g_size - 1) {
        T_CHECK_MSG(st == MS_ERR_DATA, "rank %d: faulted step returned %s", g_rank, ms_status_str(st));
        T_CHECK(strstr(ms_error_last(), "injected failure") != NULL);
        for (int i = 0; i < NSEQ; i++) T_CHECK(res[i].token == -1);
    } else {
        T_CHECK(st == MS_OK);
    }
    /* the next step is clean again and still one of each */
    ops_count_reset();
    T_CHECK(step(e, dp, NSEQ, 4, res) == MS_OK);
    ops_count_t n = ops_count_get();
    T_CHECK(n.upload == 1 && n.download == 1 && n.synchronize == 1);
    engine_destroy(e);
    comm_destroy(comm);
}

int main(int argc, char **argv)
{
    int prov;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &prov);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    if (g_size > 1) ms_log_set_rank(g_rank);
    ms_log_set_level(MS_LOG_WARN);
    if (argc < 3) {
        fprintf(stderr, "usage: test_step_io MKMODEL 'MKMODEL ARGS'\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    char dir[256] = "";
    if (g_rank == 0) {
        char args[256];
        snprintf(args, sizeof args, "--preset tiny --dtype bf16 %s", argv[2]);
        const char *m = et_model(argv[1], args);
        if (m) snprintf(dir, sizeof dir, "%s", m);
    }
    MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, MPI_COMM_WORLD);
    T_CHECK(dir[0] != 0);
    if (!dir[0]) MPI_Abort(MPI_COMM_WORLD, 1);
    const kern_ops_t *ops = ops_count_wrap(&kern_cpu_ops);
    for (int dp = 0; dp <= (g_size > 1); dp++)
        for (int ep = 1; ep <= g_size; ep++)
            if (g_size % ep == 0) run(dir, dp, ep, ops);
    MPI_Barrier(MPI_COMM_WORLD); /* rank 0 removes the model dir at exit */
    int fails = t_failures, all = 0;
    MPI_Allreduce(&fails, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Finalize();
    int rc = t_done();
    return all ? 1 : rc;
}
