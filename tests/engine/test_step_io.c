/* test_step_io.c — the engine's step I/O rule under mpirun (np 1, 2, 4):
 * for every layout the world allows (attention TP and DP, every ep_size that
 * divides it), a decode step issues exactly one host→device upload, one
 * device→host download and one synchronize on every rank, whatever the layer
 * count — counted by a wrapper around the CPU ops table (ops_count.h). A
 * fault word raised on any rank ends that step with MS_ERR_DATA on that rank
 * only, every rank finishes the step (no hang), and the next step is right.
 *
 * argv[1] = moeserve-mkmodel, argv[2] = extra mkmodel arguments (e.g.
 * "--layers 1" for a dense-only model), argv[3] "mtp" (optional): the model
 * has an MTP module (give --mtp in argv[2]) and the engines draft 2 tokens a
 * step: every step is then two uploads and two downloads (the MTP block) and
 * still one synchronize, the sizing includes the module's buffers, and every
 * rank's drafts equal those of a single-process engine on the same steps (the
 * module's MoE under every EP layout routes as the main model's does). */
#include <mpi.h>

#include "tests/engine/etest.h"
#include "tests/engine/ops_count.h"
#include "worker/comm_mpi.h"
#include "worker/sizing.h"

enum { NSEQ = 4, BS = 4, PRE = 5 };
static const int32_t TOK[8] = {0, 400, 221, 344, 391, 52, 17, 250};

static int g_rank, g_size, g_mtp;

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
                          .flags = PROTO_SEQ_SAMPLE | (g_mtp ? PROTO_SEQ_DRAFT : 0u), .top_p = 1.0f,
                          .n_logprobs = g_mtp ? -1 : q[i].n_logprobs, .seed = 7};
        st = proto_planbuf_add(&pb, &ps, q[i].tokens, q[i].n, q[i].blocks, q[i].n_blocks);
    }
    const proto_plan_t *plan = NULL;
    if (st == MS_OK) st = proto_planbuf_finish(&pb, (uint32_t)decode, &plan);
    if (st == MS_OK) st = engine_step(e, plan, res);
    proto_planbuf_free(&pb);
    return st;
}

static bool mine(bool dp, int i) { return !dp || i % g_size == g_rank; }

/* MTP: the single-process engine's drafts of steps 0 (prefill) and 1 (decode at batch NSEQ) and the module's
 * logits they came from (its last pass), once. */
static proto_result_t g_ref[2][NSEQ];
static float *g_ref_lg[2][NSEQ];
static int g_vocab;
static bool g_have_ref;

static void keep_mtp_logits(engine_t *e, int d)
{
    for (int i = 0; i < NSEQ; i++) {
        g_ref_lg[d][i] = malloc(sizeof(float) * (size_t)g_vocab);
        T_CHECK(g_ref_lg[d][i] && engine_mtp_logits(e, i, g_ref_lg[d][i]) == MS_OK);
    }
}

static void reference(const char *dir)
{
    comm_t *comm = NULL;
    engine_t *e = NULL;
    par_t par = par_single();
    engine_opts_t o = {.kv_blocks = 64, .block_size = BS, .max_batch = 8, .max_tokens_per_step = 64,
                       .mla = ENGINE_MLA_AUTO, .mtp_drafts = g_mtp};
    T_CHECK(comm_local_create(&kern_cpu_ops, &comm) == MS_OK && engine_create(dir, &par, &o, comm, &e) == MS_OK);
    if (e) {
        g_vocab = engine_config(e)->vocab_size;
        T_CHECK(step(e, false, NSEQ, 0, g_ref[0]) == MS_OK);
        keep_mtp_logits(e, 0);
        T_CHECK(step(e, false, NSEQ, 1, g_ref[1]) == MS_OK);
        keep_mtp_logits(e, 1);
        g_have_ref = true;
    }
    engine_destroy(e);
    comm_destroy(comm);
}

static void check_drafts(engine_t *e, bool dp, int ep, int d, const proto_result_t *res)
{
    float *lg = malloc(sizeof(float) * (size_t)(g_vocab > 0 ? g_vocab : 1));
    for (int i = 0; i < NSEQ && g_have_ref && lg; i++) {
        if (!mine(dp, i)) continue;
        /* the module's logits, not only its argmax: a draft survives a wrong expert on a peaky model */
        T_CHECK(engine_mtp_logits(e, i, lg) == MS_OK);
        const double md = et_maxdiff(lg, g_ref_lg[d][i], g_vocab);
        T_CHECK_MSG(md < 1e-3, "rank %d, attention %s, ep %d, step %d, seq %d: MTP logits differ from the single "
                    "process by %g", g_rank, dp ? "DP" : "TP", ep, d, i, md);
        const proto_result_t *r = &g_ref[d][i];
        bool same = res[i].token == r->token && res[i].n_draft == r->n_draft && r->n_draft == g_mtp;
        for (int c = 0; same && c < r->n_draft; c++) same = res[i].drafts[c] == r->drafts[c];
        T_CHECK_MSG(same, "rank %d, attention %s, ep %d, step %d, seq %d: token %d drafts %d [%d %d], single "
                    "process %d drafts %d [%d %d]", g_rank, dp ? "DP" : "TP", ep, d, i, res[i].token,
                    res[i].n_draft, res[i].drafts[0], res[i].drafts[1], r->token, r->n_draft, r->drafts[0],
                    r->drafts[1]);
    }
    free(lg);
}

static void run(const char *dir, bool dp, int ep, const kern_ops_t *ops)
{
    par_t par = {.tp_rank = g_rank, .tp_size = g_size, .ep_rank = g_rank % ep, .ep_size = ep, .attention_dp = dp};
    comm_t *comm = NULL;
    ms_status_t st = g_size == 1 ? comm_local_create(&kern_cpu_ops, &comm)
                                 : comm_mpi_create(MPI_COMM_WORLD, ep, &kern_cpu_ops, &comm);
    T_CHECK(st == MS_OK);
    engine_opts_t o = {.kv_blocks = 64, .block_size = BS, .max_batch = 8, .max_tokens_per_step = 64,
                       .mla = ENGINE_MLA_AUTO, .ops = ops, .mtp_drafts = g_mtp};
    engine_t *e = NULL;
    T_CHECK(engine_create(dir, &par, &o, comm, &e) == MS_OK);
    if (!e) {
        MPI_Abort(MPI_COMM_WORLD, 1); /* the other ranks would wait in a collective */
        return;
    }
    /* what the engine allocated is what plan-memory predicts from config.json */
    size_t w, a, kv;
    engine_memory(e, &w, &a, &kv);
    sizing_limits_t lim = {.max_batch = o.max_batch, .max_tokens = o.max_tokens_per_step, .block_size = BS,
                           .mtp_drafts = g_mtp};
    sizing_t sz;
    T_CHECK(sizing_rank(engine_config(e), &par, &lim, false, o.kv_blocks, 0, 0, &sz) == MS_OK);
    T_CHECK_MSG(sz.weights == w && sz.activations == a && sz.kv == kv,
                "rank %d: sizing says weights %zu, activations %zu, KV %zu; the engine has %zu, %zu, %zu", g_rank,
                sz.weights, sz.activations, sz.kv, w, a, kv);
    proto_result_t res[NSEQ];
    T_CHECK(step(e, dp, NSEQ, 0, res) == MS_OK); /* prefill: not counted */
    if (g_mtp) check_drafts(e, dp, ep, 0, res);
    const long want = g_mtp ? 2 : 1; /* transfers a step: the step's block (and the MTP block) */
    /* decode at batch 4, then batch 1 (DP: ranks 1.. have no tokens but take part) */
    const int batch[2] = {NSEQ, 1};
    for (int d = 1; d <= 2; d++) {
        ops_count_reset();
        st = step(e, dp, batch[d - 1], d, res);
        ops_count_t n = ops_count_get();
        T_CHECK(st == MS_OK);
        T_CHECK_MSG(n.upload == want && n.download == want && n.synchronize == 1,
                    "rank %d, attention %s, ep %d, decode batch %d: %ld uploads, %ld downloads, %ld synchronizes "
                    "(want %ld, %ld, 1)", g_rank, dp ? "DP" : "TP", ep, batch[d - 1], n.upload, n.download,
                    n.synchronize, want, want);
        if (g_mtp && d == 1) check_drafts(e, dp, ep, 1, res);
        for (int i = 0; i < batch[d - 1]; i++)
            if (mine(dp, i)) T_CHECK(res[i].token >= 0 && res[i].token < 512 && res[i].n_top == (g_mtp ? 0 : 2));
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
    T_CHECK(n.upload == want && n.download == want && n.synchronize == 1);
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
        fprintf(stderr, "usage: test_step_io MKMODEL 'MKMODEL ARGS' [mtp]\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    g_mtp = argc > 3 && !strcmp(argv[3], "mtp") ? 2 : 0;
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
    if (g_mtp) reference(dir);
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
