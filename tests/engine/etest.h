/* etest.h — helpers for engine tests: a synthetic checkpoint from
 * moeserve-mkmodel in a temp dir, single-sequence and batched plans, and
 * logits comparison. */
#ifndef MS_TEST_ETEST_H
#define MS_TEST_ETEST_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/test.h"
#include "proto/proto.h"
#include "worker/engine.h"

static char et_dirs[8][200];
static int et_ndirs;

static void et_cleanup(void)
{
    for (int i = 0; i < et_ndirs; i++) {
        char cmd[sizeof et_dirs[0] + 16];
        snprintf(cmd, sizeof cmd, "rm -rf '%.190s'", et_dirs[i]);
        if (system(cmd)) {
        }
    }
}

/* A new temp dir, removed at exit (static storage). */
static char *et_tmpdir(void)
{
    if (et_ndirs == 8) return NULL;
    char *d = et_dirs[et_ndirs];
    snprintf(d, 200, "/tmp/ms-engine-test-XXXXXX");
    if (!mkdtemp(d)) return NULL;
    if (et_ndirs++ == 0) atexit(et_cleanup);
    return d;
}

/* Write a checkpoint with `mkmodel ARGS --out TMP/m [--dequant-twin TMP/twin]`; returns TMP/m, and the twin's
 * path in *twin when asked (static storage). */
static inline const char *et_model_twin(const char *mkmodel, const char *args, const char **twin)
{
    static char paths[16][256];
    static int np;
    char *d = et_tmpdir();
    if (!d || np + 2 > 16) return NULL;
    char *m = paths[np++], *t = paths[np++];
    snprintf(m, 256, "%s/m", d);
    snprintf(t, 256, "%s/twin", d);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' %s --out '%s'%s%s%s >/dev/null", mkmodel, args, m, twin ? " --dequant-twin '" : "",
             twin ? t : "", twin ? "'" : "");
    if (system(cmd) != 0) {
        fprintf(stderr, "cannot run: %s\n", cmd);
        return NULL;
    }
    if (twin) *twin = t;
    return m;
}
static inline const char *et_model(const char *mkmodel, const char *args) { return et_model_twin(mkmodel, args, NULL); }

/* 1: engines made by et_engine store FP8 latent rows (kv_cache_config.dtype fp8) */
static int et_kv_fp8;

static inline engine_t *et_engine(const char *dir, engine_mla_t mla, int kv_blocks, int block_size, int max_batch,
                           int max_tokens, comm_t **comm)
{
    engine_opts_t o = {.kv_blocks = kv_blocks, .block_size = block_size, .max_batch = max_batch,
                       .max_tokens_per_step = max_tokens, .backend = "cpu", .mla = mla, .kv_fp8 = et_kv_fp8};
    par_t p = par_single();
    engine_t *e = NULL;
    if (comm_local_create(&kern_cpu_ops, comm) != MS_OK) return NULL;
    if (engine_create(dir, &p, &o, *comm, &e) != MS_OK) return NULL;
    return e;
}

/* One sequence of a step. */
typedef struct {
    int slot, pos, n;
    const int32_t *tokens;
    const int32_t *blocks;
    int n_blocks;
    int sample;
    float temperature, top_p;
    int top_k, n_logprobs;
    uint64_t seed;
    uint32_t flags; /* extra PROTO_SEQ_* */
} et_seq_t;

/* Run one step of several sequences; results[i] for seqs[i]. */
static inline ms_status_t et_step(engine_t *e, const et_seq_t *seqs, int n, proto_result_t *results)
{
    proto_planbuf_t pb;
    proto_planbuf_init(&pb);
    ms_status_t st = MS_OK;
    for (int i = 0; i < n && st == MS_OK; i++) {
        const et_seq_t *s = &seqs[i];
        proto_seq_t q = {.slot = s->slot, .dp_rank = -1, .pos = s->pos,
                         .flags = (s->sample ? PROTO_SEQ_SAMPLE : 0u) | s->flags, .temperature = s->temperature,
                         .top_p = s->top_p > 0 ? s->top_p : 1.0f, .top_k = s->top_k,
                         .n_logprobs = s->n_logprobs, .seed = s->seed};
        st = proto_planbuf_add(&pb, &q, s->tokens, s->n, s->blocks, s->n_blocks);
    }
    const proto_plan_t *plan = NULL;
    if (st == MS_OK) st = proto_planbuf_finish(&pb, 0, &plan);
    if (st == MS_OK) st = engine_step(e, plan, results);
    proto_planbuf_free(&pb);
    return st;
}

static inline int et_blocks_for(int len, int bs) { return (len + bs - 1) / bs; }

/* One step of a mixed schedule: rows {slot, pos, n} (slot -1 = unused) of sequences whose tokens and
 * block tables are tok[slot] / blk[slot], blocks of bs tokens, each sampled. Returns the count in q;
 * *fed (when given) grows by the tokens fed. */
static inline int et_step_seqs(const int (*rows)[3], int n_rows, const int32_t *const *tok, const int32_t *const *blk,
                               int bs, et_seq_t *q, int *fed)
{
    int n = 0;
    for (int i = 0; i < n_rows; i++) {
        const int *d = rows[i];
        if (d[0] < 0) continue;
        q[n++] = (et_seq_t){.slot = d[0], .pos = d[1], .n = d[2], .tokens = tok[d[0]] + d[1], .blocks = blk[d[0]],
                            .n_blocks = et_blocks_for(d[1] + d[2], bs), .sample = 1, .n_logprobs = -1};
        if (fed) *fed += d[2];
    }
    return n;
}

static inline double et_maxdiff(const float *a, const float *b, int n)
{
    double m = 0;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d; /* NaN-safe */
    }
    return m;
}

#endif
