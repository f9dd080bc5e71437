/* bench_ops_step.c — moeserve-bench-ops --model: one decode step of a model broken down by op (the engine on
 * a copy of the CUDA ops table that records an event after each call), the gemm row by weight shape, and the
 * same step replayed as a CUDA graph (--graphs 1), with the host's share of its wall time. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ms_build_config.h"
#if MS_HAVE_CUDA
#include <time.h>

#include <cublasLt.h>
#include <cuda_profiler_api.h>

#include "proto/proto.h"
#include "tools/bench_ops.h"
#include "worker/comm.h"
#include "worker/engine.h"

/* ---- one decode step, by op ---- */
#define MAXEV 65536
static cudaEvent_t g_ev[MAXEV];
static int g_op[MAXEV], g_tag[MAXEV], g_nev, g_on; /* g_tag: see gemm_tag */
static const char *const g_extra[] = {"upload", "download", "copy", "memset", "graph replay"};
#define OP_UPLOAD (KERN_N_OPS + 0)
#define OP_DOWNLOAD (KERN_N_OPS + 1)
#define OP_COPY (KERN_N_OPS + 2)
#define OP_MEMSET (KERN_N_OPS + 3)
#define OP_GRAPH (KERN_N_OPS + 4)
#define N_TRACK (KERN_N_OPS + 5)

int g_dense = -1; /* --dense-compute: dense linears' mode (-1 = auto: as --moe-compute) */
int g_mtp; /* --mtp N: the step's engine drafts N tokens a step (MTP), every decode step verifies them */
int g_trace;
static int g_traced; /* --trace-faults: synchronize after every op and name the first that raises a fault */
static const char *op_label(int op)
{
    return op < KERN_N_OPS ? kern_op_name((kern_op_t)op) : g_extra[op - KERN_N_OPS];
}

static void mark(kern_ctx_t *cx, int op)
{
    if (g_trace && !g_traced && cx->fault) {
        uint32_t f = 0;
        cudaError_t e = cudaStreamSynchronize((cudaStream_t)cx->stream);
        if (e == cudaSuccess) e = cudaMemcpy(&f, cx->fault, sizeof f, cudaMemcpyDeviceToHost);
        if (e != cudaSuccess || f) {
            fprintf(stderr, "bench-ops trace: after %s: fault word %#x (%s)\n", op_label(op), f,
                    e == cudaSuccess ? "ok" : cudaGetErrorString(e));
            g_traced = 1;
        }
    }
    if (!g_on || g_nev >= MAXEV) return;
    cudaEventRecord(g_ev[g_nev], (cudaStream_t)cx->stream);
    g_tag[g_nev] = -1;
    g_op[g_nev++] = op;
}

#define WRAP(name, OPID, PARAMS, ARGS)                                                                                 \
    static ms_status_t w_##name PARAMS                                                                                 \
    {                                                                                                                  \
        ms_status_t st = kern_cuda_ops.name ARGS;                                                                      \
        mark(cx, OPID);                                                                                                \
        return st;                                                                                                     \
    }
WRAP(upload, OP_UPLOAD, (kern_ctx_t * cx, void *d, const void *s, size_t n), (cx, d, s, n))
WRAP(download, OP_DOWNLOAD, (kern_ctx_t * cx, void *d, const void *s, size_t n), (cx, d, s, n))
WRAP(copy, OP_COPY, (kern_ctx_t * cx, void *d, const void *s, size_t n), (cx, d, s, n))
WRAP(memset, OP_MEMSET, (kern_ctx_t * cx, void *d, int v, size_t n), (cx, d, v, n))
WRAP(embed, KERN_OP_EMBED, (kern_ctx_t * cx, const int32_t *i, int32_t n, const bf16_t *t, int64_t v, int32_t d, bf16_t *o),
     (cx, i, n, t, v, d, o))
WRAP(add, KERN_OP_ADD, (kern_ctx_t * cx, const bf16_t *a, const bf16_t *b, bf16_t *y, int64_t n), (cx, a, b, y, n))
WRAP(cast, KERN_OP_CAST, (kern_ctx_t * cx, const void *x, ms_dtype_t a, void *y, ms_dtype_t b, int64_t n),
     (cx, x, a, y, b, n))
WRAP(gather_rows, KERN_OP_GATHER_ROWS, (kern_ctx_t * cx, const void *s, const int32_t *i, int32_t n, size_t rb, void *d),
     (cx, s, i, n, rb, d))
WRAP(silu_mul, KERN_OP_SILU_MUL, (kern_ctx_t * cx, const bf16_t *g, const bf16_t *u, bf16_t *o, int64_t n),
     (cx, g, u, o, n))
WRAP(rmsnorm, KERN_OP_RMSNORM,
     (kern_ctx_t * cx, const bf16_t *x, int64_t lx, const bf16_t *w, bf16_t *y, int64_t ly, int32_t r, int32_t d, float e),
     (cx, x, lx, w, y, ly, r, d, e))
WRAP(add_rmsnorm, KERN_OP_ADD_RMSNORM,
     (kern_ctx_t * cx, bf16_t *x, const bf16_t *rs, const bf16_t *w, bf16_t *y, int32_t r, int32_t d, float e),
     (cx, x, rs, w, y, r, d, e))
/* gemm calls by shape (the step table's gemm row split by weight): a shape = W rows x cols x dtype, x dtype,
 * m, batch, epilogue; g_tag[i] names the shape of event i's gemm (-1: not a gemm) */
typedef struct {
    int32_t n, k, m, batch;
    ms_dtype_t wdt, xdt;
    kern_epi_t epi;
} gemm_shape_t;
#define MAXSHAPE 64
static gemm_shape_t g_shape[MAXSHAPE];
static int g_nshape;
static int gemm_tag(const kern_gemm_t *g)
{
    const gemm_shape_t s = {g->w->rows, g->w->cols, g->m, g->batch > 1 ? g->batch : 1, g->w->dtype, g->xdt, g->epi};
    for (int i = 0; i < g_nshape; i++)
        if (!memcmp(&g_shape[i], &s, sizeof s)) return i;
    if (g_nshape == MAXSHAPE) return -1;
    g_shape[g_nshape] = s;
    return g_nshape++;
}
static ms_status_t w_gemm(kern_ctx_t *cx, const kern_gemm_t *g)
{
    ms_status_t st = kern_cuda_ops.gemm(cx, g);
    const int tag = gemm_tag(g), i = g_nev;
    mark(cx, KERN_OP_GEMM);
    if (g_nev > i) g_tag[i] = tag;
    return st;
}
/* The step's gemm row by weight shape: time per call and the weight-read rate (W bytes incl. fp8 scales) */
static void print_gemm_shapes(void)
{
    double ms[MAXSHAPE] = {0};
    int calls[MAXSHAPE] = {0};
    for (int i = 1; i < g_nev; i++) {
        if (g_op[i] != KERN_OP_GEMM || g_tag[i] < 0) continue;
        float t;
        CKC(cudaEventElapsedTime(&t, g_ev[i - 1], g_ev[i]));
        ms[g_tag[i]] += t, calls[g_tag[i]]++;
    }
    printf("\n| gemm W rows x cols (dtype), x dtype, m, batch | calls | ms | us a call | W MB | W GB/s |\n"
           "|---|---|---|---|---|---|\n");
    for (int j = 0; j < g_nshape; j++) {
        if (!calls[j]) continue;
        const gemm_shape_t *s = &g_shape[j];
        const double wb = (double)s->batch * s->n * s->k * ms_dtype_size(s->wdt) +
                          (s->wdt == MS_DT_F8E4M3 ? 4.0 * s->batch * kern_fp8_blocks(s->n) * kern_fp8_blocks(s->k) : 0);
        const double per = 1e3 * ms[j] / calls[j];
        printf("| %d x %d (%s)%s, %s, m %d, batch %d | %d | %.4f | %.1f | %.1f | %.0f |\n", s->n, s->k,
               ms_dtype_name(s->wdt), s->epi == KERN_EPI_SILU_MUL ? " silu_mul" : "", ms_dtype_name(s->xdt), s->m,
               s->batch, calls[j], ms[j], per, wb * 1e-6, per > 0 ? wb / (per * 1e3) : 0);
    }
}

WRAP(act_quant, KERN_OP_ACT_QUANT,
     (kern_ctx_t * cx, const bf16_t *x, int64_t lx, int32_t r, int32_t c, uint8_t *q, int64_t lq, float *s, int64_t ls),
     (cx, x, lx, r, c, q, lq, s, ls))
WRAP(rope, KERN_OP_ROPE,
     (kern_ctx_t * cx, bf16_t *x, int32_t r, int32_t h, int64_t lr, int64_t lh, const int32_t *p, const float *f, float a,
      int32_t d, int32_t il),
     (cx, x, r, h, lr, lh, p, f, a, d, il))
WRAP(kv_store, KERN_OP_KV_STORE,
     (kern_ctx_t * cx, const kern_kv_t *kv, const bf16_t *c, int64_t lc, const bf16_t *k, int64_t lk, const int32_t *s,
      int32_t n),
     (cx, kv, c, lc, k, lk, s, n))
WRAP(kv_gather, KERN_OP_KV_GATHER,
     (kern_ctx_t * cx, const kern_kv_t *kv, const kern_attn_seq_t *s, int32_t n, const int32_t *b, bf16_t *o),
     (cx, kv, s, n, b, o))
WRAP(mla_naive, KERN_OP_MLA_NAIVE,
     (kern_ctx_t * cx, const bf16_t *q, const bf16_t *kv, const bf16_t *kp, int64_t lk, const kern_attn_seq_t *s,
      int32_t n, int32_t h, int32_t dn, int32_t dr, int32_t dv, float sc, bf16_t *o),
     (cx, q, kv, kp, lk, s, n, h, dn, dr, dv, sc, o))
WRAP(mla_latent, KERN_OP_MLA_LATENT,
     (kern_ctx_t * cx, const void *q, ms_dtype_t qd, const bf16_t *qp, int64_t lp, int64_t lph, const kern_kv_t *kv,
      const int32_t *bt, const kern_attn_seq_t *s, int32_t n, int32_t h, float sc, void *o, ms_dtype_t od),
     (cx, q, qd, qp, lp, lph, kv, bt, s, n, h, sc, o, od))
WRAP(moe_route, KERN_OP_MOE_ROUTE,
     (kern_ctx_t * cx, const float *l, const float *b, int32_t T, int32_t E_, int32_t ng, int32_t tg, int32_t tk,
      int32_t nt, float sc, int32_t *i, float *w),
     (cx, l, b, T, E_, ng, tg, tk, nt, sc, i, w))
WRAP(moe_plan, KERN_OP_MOE_PLAN,
     (kern_ctx_t * cx, const int32_t *i, int32_t T, int32_t K_, const kern_moe_place_t *pl, int32_t *s, int32_t *r,
      int32_t *c, int64_t *ld),
     (cx, i, T, K_, pl, s, r, c, ld))
WRAP(moe_scatter, KERN_OP_MOE_SCATTER,
     (kern_ctx_t * cx, const bf16_t *x, int32_t T, int32_t K_, int32_t D_, const int32_t *s, const int32_t *r,
      const int32_t *c, int32_t s0, int32_t nl, int32_t cap, bf16_t *rv, int32_t *rc, int32_t *rp),
     (cx, x, T, K_, D_, s, r, c, s0, nl, cap, rv, rc, rp))
WRAP(moe_experts, KERN_OP_MOE_EXPERTS,
     (kern_ctx_t * cx, const bf16_t *x, const int32_t *c, int32_t nl, int32_t cap, const kern_moe_slots_t *w, bf16_t *o,
      void *ws, size_t wb),
     (cx, x, c, nl, cap, w, o, ws, wb))
WRAP(moe_combine, KERN_OP_MOE_COMBINE,
     (kern_ctx_t * cx, const bf16_t *r, const int32_t *rp, const int32_t *i, const float *w, int32_t T, int32_t K_,
      int32_t h, bf16_t *o),
     (cx, r, rp, i, w, T, K_, h, o))
WRAP(moe_combine_add, KERN_OP_MOE_COMBINE_ADD,
     (kern_ctx_t * cx, const bf16_t *r, const int32_t *rp, const int32_t *i, const float *w, int32_t T, int32_t K_,
      int32_t h, const bf16_t *a, bf16_t *o),
     (cx, r, rp, i, w, T, K_, h, a, o))
WRAP(rmsnorm_quant, KERN_OP_RMSNORM_QUANT,
     (kern_ctx_t * cx, bf16_t *x, int64_t lx, const bf16_t *rs, const bf16_t *w, bf16_t *y, int64_t ly, int32_t r,
      int32_t d, float e, uint8_t *q, int64_t lq, float *sc, int64_t ls),
     (cx, x, lx, rs, w, y, ly, r, d, e, q, lq, sc, ls))
WRAP(kv_store_rope, KERN_OP_KV_STORE_ROPE,
     (kern_ctx_t * cx, const kern_kv_t *kv, const bf16_t *c, int64_t lc, bf16_t *kp, int64_t lk, const int32_t *sl,
      int32_t n, const int32_t *p, const float *inv, float af, int32_t il),
     (cx, kv, c, lc, kp, lk, sl, n, p, inv, af, il))
WRAP(log_softmax, KERN_OP_LOG_SOFTMAX, (kern_ctx_t * cx, const float *x, int64_t ld, int32_t r, int32_t n, float *y),
     (cx, x, ld, r, n, y))
WRAP(mtp_prep, KERN_OP_MTP_PREP, (kern_ctx_t * cx, const kern_mtp_prep_t *p), (cx, p))
WRAP(sample, KERN_OP_SAMPLE,
     (kern_ctx_t * cx, const void *l, ms_dtype_t dt, int64_t ld, int32_t r, int32_t v, const kern_sample_t *p,
      int32_t *t, float *lp, int32_t *ti, float *tl),
     (cx, l, dt, ld, r, v, p, t, lp, ti, tl))

/* Host clock stamps of a step (--graphs): upload entry and return, graph launch entry and return (eager: the
 * same stamps as the upload's return), synchronize entry and return. */
enum { TS_UP0, TS_UP1, TS_L0, TS_L1, TS_S0, TS_S1, TS_N };
static struct timespec g_ts[TS_N];
static double ts_us(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e6 + (double)(b->tv_nsec - a->tv_nsec) * 1e-3;
}
static ms_status_t w_graph_launch(kern_ctx_t *cx, kern_graph_t g)
{
    clock_gettime(CLOCK_MONOTONIC, &g_ts[TS_L0]);
    ms_status_t st = kern_cuda_ops.graph_launch(cx, g);
    clock_gettime(CLOCK_MONOTONIC, &g_ts[TS_L1]);
    mark(cx, OP_GRAPH);
    return st;
}
static ms_status_t w_stamped_upload(kern_ctx_t *cx, void *d, const void *h, size_t n)
{
    clock_gettime(CLOCK_MONOTONIC, &g_ts[TS_UP0]);
    ms_status_t st = w_upload(cx, d, h, n);
    clock_gettime(CLOCK_MONOTONIC, &g_ts[TS_UP1]);
    g_ts[TS_L0] = g_ts[TS_L1] = g_ts[TS_UP1];
    return st;
}
static ms_status_t w_synchronize(kern_ctx_t *cx)
{
    clock_gettime(CLOCK_MONOTONIC, &g_ts[TS_S0]);
    ms_status_t st = kern_cuda_ops.synchronize(cx);
    clock_gettime(CLOCK_MONOTONIC, &g_ts[TS_S1]);
    return st;
}

static kern_ops_t g_tops;
/* Contexts of the timed table point back at it, so ops reached through cx->ops (MoE dispatch) are timed too. */
static ms_status_t w_ctx_create(int device, size_t ws, kern_ctx_t **out)
{
    MS_TRY(kern_cuda_ops.ctx_create(device, ws, out));
    (*out)->ops = &g_tops;
    return MS_OK;
}

static kern_ops_t timed_ops(void)
{
    kern_ops_t t = kern_cuda_ops;
    t.ctx_create = w_ctx_create;
    t.upload = w_upload, t.download = w_download, t.copy = w_copy, t.memset = w_memset;
    t.embed = w_embed, t.add = w_add, t.cast = w_cast, t.gather_rows = w_gather_rows, t.silu_mul = w_silu_mul;
    t.rmsnorm = w_rmsnorm, t.add_rmsnorm = w_add_rmsnorm, t.gemm = w_gemm, t.act_quant = w_act_quant;
    t.rope = w_rope, t.kv_store = w_kv_store, t.kv_gather = w_kv_gather, t.mla_naive = w_mla_naive;
    t.mla_latent = w_mla_latent, t.moe_route = w_moe_route, t.moe_plan = w_moe_plan, t.moe_scatter = w_moe_scatter;
    t.moe_experts = w_moe_experts, t.moe_combine = w_moe_combine, t.log_softmax = w_log_softmax, t.sample = w_sample;
    t.mtp_prep = w_mtp_prep, t.moe_combine_add = w_moe_combine_add, t.rmsnorm_quant = w_rmsnorm_quant;
    t.kv_store_rope = w_kv_store_rope;
    t.graph_launch = w_graph_launch, t.upload = w_stamped_upload, t.synchronize = w_synchronize;
    return t;
}

static int cmp_dbl(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One engine (graphs: the decode step's batch captured as a CUDA graph) over B sequences of ctx tokens:
 * prefill, warm-up decode steps, then `reps` timed decode steps. Prints the per-op breakdown of the last
 * eager step, and for both modes the host wall time of engine_step (median) beside the GPU span of the step
 * (its first transfer to its last, CUDA events): their difference is what the host adds. */
static int bench_step_mode(const char *model, int B, int ctx, int kv_fp8, int dummy, int moe_cap, int max_tok,
                           int moe_fp8, int graph, int reps, double *wall_med, double *span_med, double *host)
{
    kern_ops_t *tops_p = &g_tops;
    const int W = g_mtp + 1, bs = 64, nbpp = (ctx + (2 * reps + 8) * W + g_mtp + bs - 1) / bs, nblk = nbpp * B;
    const int gsize[1] = {B};
    engine_opts_t o = {.kv_blocks = nblk, .block_size = bs, .kv_fp8 = kv_fp8, .max_batch = B,
                       .max_tokens_per_step = max_tok, .backend = "cuda", .load_dummy = dummy, .mla = ENGINE_MLA_AUTO,
                       .moe_max_num_tokens = moe_cap, .moe_fp8 = moe_fp8, .dense_fp8 = g_dense < 0 ? moe_fp8 : g_dense, .ops = tops_p,
                       .n_graph_sizes = graph ? 1 : 0, .graph_sizes = gsize, .graph_padding = 1,
                       .mtp_drafts = g_mtp};
    par_t par = par_single();
    comm_t *comm = NULL;
    engine_t *eng = NULL;
    if (comm_local_create(tops_p, &comm) != MS_OK || engine_create(model, &par, &o, comm, &eng) != MS_OK) return 1;
    int32_t *blocks = malloc(sizeof(int32_t) * (size_t)nblk), *toks = malloc(sizeof(int32_t) * (size_t)max_tok);
    for (int i = 0; i < nblk; i++) blocks[i] = i;
    const int vocab = engine_config(eng)->vocab_size;
    for (int i = 0; i < max_tok; i++) toks[i] = (int32_t)((1000 + (int64_t)i * 37) % vocab);
    proto_planbuf_t pb;
    proto_planbuf_init(&pb);
    proto_result_t *res = calloc((size_t)B, sizeof *res);
    double *wall = calloc((size_t)reps, sizeof *wall), *span = calloc((size_t)reps, sizeof *span);
    /* MTP: each sequence's position, and what it feeds next (its last token and the drafts to verify) */
    int *pos = calloc((size_t)B, sizeof *pos), *nfeed = calloc((size_t)B, sizeof *nfeed);
    int32_t (*feed)[1 + PROTO_MAX_DRAFT] = calloc((size_t)B, sizeof *feed);
    long accepted = 0;

    uint32_t step = 0;
    /* prefill every sequence's ctx tokens, as many sequences a step as max_num_tokens allows */
    for (int s0 = 0; s0 < B;) {
        proto_planbuf_reset(&pb);
        int used = 0, s = s0;
        for (; s < B; s++) {
            const int n = ctx;
            if (used + n > max_tok) break;
            proto_seq_t q = {.slot = s, .dp_rank = -1, .top_p = 1, .n_logprobs = -1, .pos = 0,
                             .flags = g_mtp ? PROTO_SEQ_SAMPLE | PROTO_SEQ_DRAFT : 0u};
            CK(proto_planbuf_add(&pb, &q, toks, n, blocks + s * nbpp, nbpp));
            used += n;
        }
        const proto_plan_t *plan;
        CK(proto_planbuf_finish(&pb, step++, &plan));
        CK(engine_step(eng, plan, res));
        for (int j = s0; j < s; j++) { /* the prompt's token and first drafts */
            pos[j] = ctx, nfeed[j] = 1 + res[j - s0].n_draft, feed[j][0] = res[j - s0].token;
            memcpy(feed[j] + 1, res[j - s0].drafts, sizeof(int32_t) * (size_t)res[j - s0].n_draft);
        }
        s0 = s;
    }
    /* decode steps: three untimed, then the timed ones (events on each; the last eager one is broken down) */
    const int warm = 3, prof = getenv("MS_BENCH_PROFILE_STEP") != NULL && graph;
    /* after the timed steps (events on), `reps` plain ones: no event on the host's path, clock stamps only */
    double *plain = calloc((size_t)reps, sizeof *plain), *part[4];
    for (int i = 0; i < 4; i++) part[i] = calloc((size_t)reps, sizeof *part[i]);
    for (int it = 0; it < warm + 2 * reps + prof; it++) {
        proto_planbuf_reset(&pb);
        for (int s = 0; s < B; s++) {
            proto_seq_t q = {.slot = s, .dp_rank = -1, .top_p = 1, .n_logprobs = -1, .pos = ctx + it,
                             .flags = PROTO_SEQ_SAMPLE};
            if (g_mtp) {
                q.pos = pos[s];
                q.flags |= PROTO_SEQ_DRAFT | (nfeed[s] > 1 ? PROTO_SEQ_VERIFY : 0u);
                CK(proto_planbuf_add(&pb, &q, feed[s], nfeed[s], blocks + s * nbpp, nbpp));
            } else {
                CK(proto_planbuf_add(&pb, &q, toks + s, 1, blocks + s * nbpp, nbpp));
            }
        }
        const proto_plan_t *plan;
        CK(proto_planbuf_finish(&pb, step++, &plan));
        const int timed = it >= warm && it < warm + reps;
        /* the step's first op is its metadata upload: the timeline starts there; the untimed steps after the
         * timed ones leave the last timed step's events for the per-op table */
        g_on = timed;
        if (timed) g_nev = 0;
        /* MS_BENCH_PROFILE_STEP: one more replayed step inside a profiler range (ncu --profile-from-start off) */
        if (prof && it == warm + 2 * reps) CKC(cudaProfilerStart());
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        CK(engine_step(eng, plan, res));
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (prof && it == warm + 2 * reps) CKC(cudaProfilerStop());
        g_on = 0;
        for (int s = 0; g_mtp && s < B; s++) { /* accepted drafts, the step's token, the next drafts */
            pos[s] += nfeed[s] > 1 ? 1 + res[s].n_accepted : 1;
            accepted += res[s].n_accepted;
            nfeed[s] = 1 + res[s].n_draft, feed[s][0] = res[s].token;
            memcpy(feed[s] + 1, res[s].drafts, sizeof(int32_t) * (size_t)res[s].n_draft);
        }
        if (it >= warm + reps && it < warm + 2 * reps) {
            const int j = it - warm - reps;
            plain[j] = ts_us(&t0, &t1);
            part[0][j] = ts_us(&t0, &g_ts[TS_UP0]), part[1][j] = ts_us(&g_ts[TS_UP0], &g_ts[TS_L1]);
            part[2][j] = ts_us(&g_ts[TS_S0], &g_ts[TS_S1]), part[3][j] = ts_us(&g_ts[TS_S1], &t1);
        }
        if (!timed) continue;
        wall[it - warm] = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-6;
        float ms = 0;
        if (g_nev > 1) CKC(cudaEventElapsedTime(&ms, g_ev[0], g_ev[g_nev - 1]));
        span[it - warm] = ms;
    }
    if (!graph) {
        /* with MTP, ops from the step's mtp_prep on are the draft passes' (phase 1), the rest the main pass's */
        double per[2][N_TRACK] = {{0}}, tot = 0, ph[2] = {0};
        int calls[N_TRACK] = {0}, phase = 0;
        for (int i = 1; i < g_nev; i++) {
            float ms;
            CKC(cudaEventElapsedTime(&ms, g_ev[i - 1], g_ev[i]));
            if (g_op[i] == KERN_OP_MTP_PREP) phase = 1;
            if (g_op[i] == OP_DOWNLOAD) phase = 0; /* the results' download closes the step */
            per[phase][g_op[i]] += ms, calls[g_op[i]]++, tot += ms, ph[phase] += ms;
        }
        if (g_nev > 0) calls[g_op[0]]++;
        printf("\n#### One decode step: %s, batch %d, context %d, %s KV, moe_experts %s mode%s, dense %s (GPU time between "
               "consecutive ops, charged to the later op)\n\n", model, B, ctx, kv_fp8 ? "fp8" : "bf16",
               moe_fp8 ? "fp8" : "dequant", g_mtp ? ", MTP verify+draft" : "",
               (g_dense < 0 ? moe_fp8 : g_dense) ? "fp8" : "dequant");
        if (g_mtp) printf("MTP: %d drafts a step, %.2f accepted a sequence-step (dummy weights: meaningless).\n\n", g_mtp,
                          (double)accepted / ((double)(warm + 2 * reps + prof) * B));
        printf(g_mtp ? "| op | calls | ms | share | main pass ms | draft passes ms |\n|---|---|---|---|---|---|\n"
                     : "| op | calls | ms | share |\n|---|---|---|---|\n");
        for (int op = 0; op < N_TRACK; op++) {
            if (!calls[op]) continue;
            const double t = per[0][op] + per[1][op];
            printf("| %s | %d | %.4f | %.1f%% |", op_label(op), calls[op], t, tot > 0 ? 100.0 * t / tot : 0);
            if (g_mtp) printf(" %.4f | %.4f |", per[0][op], per[1][op]);
            printf("\n");
        }
        printf("| **total (first to last op)** | %d | %.4f | 100%% |", g_nev, tot);
        if (g_mtp) printf(" %.4f | %.4f |", ph[0], ph[1]);
        printf("\n\nHost wall time of engine_step: %.3f ms.\n", wall[reps - 1]);
        print_gemm_shapes();
    }
    int ng;
    long gsteps, gpad;
    engine_graph_stats(eng, &ng, &gsteps, &gpad);
    if (graph && gsteps < warm + 2 * reps) {
        fprintf(stderr, "bench-ops: the graph engine replayed %ld of %d decode steps\n", gsteps, warm + 2 * reps);
        return 1;
    }
    qsort(wall, (size_t)reps, sizeof *wall, cmp_dbl);
    qsort(span, (size_t)reps, sizeof *span, cmp_dbl);
    qsort(plain, (size_t)reps, sizeof *plain, cmp_dbl);
    for (int i = 0; i < 4; i++) qsort(part[i], (size_t)reps, sizeof *part[i], cmp_dbl);
    *wall_med = wall[reps / 2], *span_med = span[reps / 2];
    host[0] = plain[reps / 2] * 1e-3;
    for (int i = 0; i < 4; i++) host[1 + i] = part[i][reps / 2];
    free(blocks), free(toks), free(res), free(wall), free(span), free(plain), free(pos), free(nfeed), free(feed);
    for (int i = 0; i < 4; i++) free(part[i]);
    proto_planbuf_free(&pb);
    engine_destroy(eng);
    comm_destroy(comm);
    return 0;
}

int bench_step(const char *model, int B, int ctx, int kv_fp8, int dummy, int moe_cap, int max_tok, int moe_fp8,
                      int graphs)
{
    g_tops = timed_ops();
    if (ctx < 1 || ctx > max_tok) {
        fprintf(stderr, "moeserve-bench-ops: --step-ctx must be in [1, %d]\n", max_tok);
        return 2;
    }
    if (g_mtp < 0 || g_mtp > PROTO_MAX_DRAFT || B * (g_mtp + 1) > max_tok) {
        fprintf(stderr, "moeserve-bench-ops: --mtp must be in [0, %d] with step-batch x (mtp + 1) <= --step-tokens\n",
                PROTO_MAX_DRAFT);
        return 2;
    }
    for (int i = 0; i < MAXEV; i++) CKC(cudaEventCreate(&g_ev[i]));
    const int reps = 20;
    double wall[2] = {0}, span[2] = {0}, host[2][5] = {{0}};
    for (int g = 0; g <= (graphs ? 1 : 0); g++) {
        int rc = bench_step_mode(model, B, ctx, kv_fp8, dummy, moe_cap, max_tok, moe_fp8, g, reps, &wall[g], &span[g],
                                 host[g]);
        if (rc) return rc;
    }
    printf("\n#### Decode step, eager%s: batch %d, context %d (medians of %d steps; GPU span = the step's upload to "
           "its download, CUDA events; host = wall - span)\n\n", graphs ? " vs CUDA graph" : "", B, ctx, reps);
    printf("| mode | batch | engine_step wall ms (events) | GPU span ms | wall ms (no events) | host us = wall (no "
           "events) - span | before upload us | upload + launch us | in synchronize us | after it us |\n"
           "|---|---|---|---|---|---|---|---|---|---|\n");
    for (int g = 0; g <= (graphs ? 1 : 0); g++)
        printf("| %s | %d | %.4f | %.4f | %.4f | %.1f | %.1f | %.1f | %.1f | %.1f |\n", g ? "graph" : "eager", B,
               wall[g], span[g], host[g][0], (host[g][0] - span[g]) * 1e3, host[g][1], host[g][2], host[g][3],
               host[g][4]);
    if (graphs) printf("\nGraph vs eager step wall time: %.2fx.\n", wall[0] / wall[1]);
    return 0;
}
#endif
