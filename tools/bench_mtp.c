/* bench_mtp.c — moeserve-bench-mtp: what MTP speculative decoding costs per
 * decode step (issue 13 item 6). For each draft count N (0 = no MTP) and
 * batch B it builds an engine on MODEL (load_format dummy by default: a
 * config-only directory with num_nextn_predict_layers set is enough, e.g.
 * `moeserve-mkmodel --preset r1 --layers 4 --config-only --mtp`), prefills B
 * sequences of CTX tokens, then times STEPS decode steps by host wall clock
 * around engine_step (which ends synchronized: each step is complete). With
 * N > 0 every step verifies the previous step's N drafts and drafts N more
 * (PROTO_SEQ_VERIFY | PROTO_SEQ_DRAFT), so a step runs 1 + N rows per
 * sequence through the main model and N passes of the module.
 *
 * Dummy weights make the drafts' acceptance meaningless (it is printed, not
 * used): the per-user rate a real checkpoint would reach is computed from
 * the measured step time and an assumed acceptance, tokens per step =
 * 1 + a + a^2 + ... + a^N (draft k is accepted only if drafts 1..k-1 were,
 * each with probability a; DeepSeek reports a = 0.85-0.90 for its second
 * token), rate = tokens per step / step time.
 *
 *   moeserve-bench-mtp --model DIR [--batch 1,32] [--drafts 0,1,3] [--ctx 1024] [--steps 20]
 *                      [--accept 0.85] [--kv-dtype fp8] [--moe-compute fp8] [--moe-cap 512] [--device cpu|cuda]
 *                      [--graphs 1]
 * (--graphs 1: cuda_graph_config of the one batch size B, so every decode step — a verify+draft step of
 * N + 1 rows a sequence with MTP — replays one graph of the main pass and the N draft passes.)
 * A markdown table on stdout (BENCHMARKS.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"
#include "proto/proto.h"
#include "worker/comm.h"
#include "worker/engine.h"

typedef struct {
    const char *model, *backend;
    int ctx, steps, kv_fp8, moe_fp8, moe_cap, graphs;
} bench_t;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

/* One step of B sequences: seq s feeds n[s] tokens from feed[s] at pos[s]. */
static ms_status_t run_step(engine_t *e, proto_planbuf_t *pb, int B, const int *pos, int32_t (*feed)[1 + PROTO_MAX_DRAFT],
                            const int *n, uint32_t flags, const int32_t *blocks, int nbpp, uint32_t step,
                            proto_result_t *res)
{
    proto_planbuf_reset(pb);
    for (int s = 0; s < B; s++) {
        proto_seq_t q = {.slot = s, .dp_rank = -1, .pos = pos[s], .top_p = 1, .n_logprobs = -1,
                         .flags = PROTO_SEQ_SAMPLE | (n[s] > 1 ? flags : flags & ~(uint32_t)PROTO_SEQ_VERIFY)};
        MS_TRY(proto_planbuf_add(pb, &q, feed[s], n[s], blocks + (size_t)s * nbpp, nbpp));
    }
    const proto_plan_t *plan;
    MS_TRY(proto_planbuf_finish(pb, step, &plan));
    return engine_step(e, plan, res);
}

/* Mean wall ms of a decode step with N drafts at batch B; *acc = mean drafts accepted per sequence-step. */
static int bench_one(const bench_t *b, int B, int N, double *ms, double *acc)
{
    const int bs = 64, room = b->ctx + b->steps * (N + 1) + 2 * N + 8, nbpp = (room + bs - 1) / bs;
    const int max_tok = b->ctx > B * (1 + N) ? b->ctx : B * (1 + N);
    engine_opts_t o = {.kv_blocks = nbpp * B, .block_size = bs, .kv_fp8 = b->kv_fp8, .max_batch = B,
                       .max_tokens_per_step = max_tok, .backend = b->backend, .load_dummy = 1,
                       .mla = ENGINE_MLA_AUTO, .moe_max_num_tokens = b->moe_cap, .moe_fp8 = b->moe_fp8, .dense_fp8 = b->moe_fp8,
                       .mtp_drafts = N, .n_graph_sizes = b->graphs ? 1 : 0, .graph_sizes = &B,
                       .graph_padding = 1};
    const kern_ops_t *k;
    par_t par = par_single();
    comm_t *comm = NULL;
    engine_t *e = NULL;
    if (kern_backend_get(b->backend, &k) != MS_OK || comm_local_create(k, &comm) != MS_OK ||
        engine_create(b->model, &par, &o, comm, &e) != MS_OK) {
        fprintf(stderr, "moeserve-bench-mtp: %s\n", ms_error_last());
        if (comm) comm_destroy(comm);
        return 1;
    }
    const int V = engine_config(e)->vocab_size;
    int32_t *blocks = malloc(sizeof(int32_t) * (size_t)nbpp * B), *prompt = malloc(sizeof(int32_t) * (size_t)b->ctx);
    int32_t (*feed)[1 + PROTO_MAX_DRAFT] = calloc((size_t)B, sizeof *feed);
    int *pos = calloc((size_t)B, sizeof(int)), *n = calloc((size_t)B, sizeof(int));
    proto_result_t *res = calloc((size_t)B, sizeof *res);
    proto_planbuf_t pb;
    proto_planbuf_init(&pb);
    int rc = 1;
    if (!blocks || !prompt || !feed || !pos || !n || !res) goto out;
    for (int i = 0; i < nbpp * B; i++) blocks[i] = i;
    for (int i = 0; i < b->ctx; i++) prompt[i] = (int32_t)((1000 + (int64_t)i * 37) % V);
    uint32_t step = 0;
    /* prefill: one sequence a step, its whole prompt, sampled (and drafting when N > 0) */
    for (int s = 0; s < B; s++) {
        proto_planbuf_reset(&pb);
        proto_seq_t q = {.slot = s, .dp_rank = -1, .top_p = 1, .n_logprobs = -1,
                         .flags = PROTO_SEQ_SAMPLE | (N ? PROTO_SEQ_DRAFT : 0u)};
        const proto_plan_t *plan;
        if (proto_planbuf_add(&pb, &q, prompt, b->ctx, blocks + (size_t)s * nbpp, nbpp) != MS_OK ||
            proto_planbuf_finish(&pb, step++, &plan) != MS_OK || engine_step(e, plan, res) != MS_OK)
            goto fail;
        pos[s] = b->ctx, n[s] = 1 + res[0].n_draft, feed[s][0] = res[0].token;
        memcpy(feed[s] + 1, res[0].drafts, sizeof(int32_t) * (size_t)res[0].n_draft);
    }
    const uint32_t flags = N ? PROTO_SEQ_VERIFY | PROTO_SEQ_DRAFT : 0u;
    double t_sum = 0;
    long accepted = 0, timed = 0;
    for (int it = 0; it < b->steps + 2; it++) {
        const double t0 = now_ms();
        if (run_step(e, &pb, B, pos, feed, n, flags, blocks, nbpp, step++, res) != MS_OK) goto fail;
        const double t1 = now_ms();
        for (int s = 0; s < B; s++) {
            if (it >= 2) accepted += res[s].n_accepted;
            pos[s] += n[s] > 1 ? 1 + res[s].n_accepted : 1;
            n[s] = 1 + res[s].n_draft, feed[s][0] = res[s].token;
            memcpy(feed[s] + 1, res[s].drafts, sizeof(int32_t) * (size_t)res[s].n_draft);
        }
        if (it >= 2) t_sum += t1 - t0, timed++; /* two warm-up steps */
    }
    *ms = t_sum / (double)timed;
    *acc = (double)accepted / ((double)timed * B);
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "moeserve-bench-mtp: step failed: %s\n", ms_error_last());
out:
    proto_planbuf_free(&pb);
    free(blocks), free(prompt), free(feed), free(pos), free(n), free(res);
    engine_destroy(e);
    comm_destroy(comm);
    return rc;
}

static int parse_list(const char *s, int *out, int max)
{
    int k = 0;
    for (char *end; *s && k < max; s = *end ? end + 1 : end) {
        out[k++] = (int)strtol(s, &end, 10);
        if (end == s) return -1;
    }
    return k;
}

int main(int argc, char **argv)
{
    bench_t b = {.backend = "cuda", .ctx = 1024, .steps = 20, .moe_cap = 512};
    int batch[8] = {1, 32}, nb = 2, drafts[8] = {0, 1, 3}, nd = 3;
    double a = 0.85;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *o = argv[i], *v = argv[i + 1];
        if (!strcmp(o, "--model")) b.model = v;
        else if (!strcmp(o, "--batch")) nb = parse_list(v, batch, 8);
        else if (!strcmp(o, "--drafts")) nd = parse_list(v, drafts, 8);
        else if (!strcmp(o, "--ctx")) b.ctx = atoi(v);
        else if (!strcmp(o, "--steps")) b.steps = atoi(v);
        else if (!strcmp(o, "--accept")) a = atof(v);
        else if (!strcmp(o, "--kv-dtype")) b.kv_fp8 = !strcmp(v, "fp8");
        else if (!strcmp(o, "--moe-compute")) b.moe_fp8 = !strcmp(v, "fp8");
        else if (!strcmp(o, "--moe-cap")) b.moe_cap = atoi(v);
        else if (!strcmp(o, "--device")) b.backend = v;
        else if (!strcmp(o, "--graphs")) b.graphs = atoi(v);
        else {
            fprintf(stderr, "moeserve-bench-mtp: unknown option %s\n", o);
            return 2;
        }
    }
    if (!b.model || nb < 1 || nd < 1 || b.ctx < 1 || b.steps < 1 || !(a >= 0 && a <= 1)) {
        fprintf(stderr, "usage: moeserve-bench-mtp --model DIR [--batch 1,32] [--drafts 0,1,3] [--ctx 1024] "
                        "[--steps 20] [--accept 0.85] [--kv-dtype fp8] [--moe-compute fp8] [--moe-cap 512] "
                        "[--device cpu|cuda] [--graphs 0|1]\n");
        return 2;
    }
    for (int j = 0; j < nd; j++)
        if (drafts[j] < 0 || drafts[j] > PROTO_MAX_DRAFT) {
            fprintf(stderr, "moeserve-bench-mtp: --drafts: %d is not in 0..%d\n", drafts[j], PROTO_MAX_DRAFT);
            return 2;
        }
    printf("%s\n\n| drafts N | batch | step ms | vs N=0 | accepted/step (dummy) | tokens/step at a=%.2f | tok/s per user |\n"
           "|---|---|---|---|---|---|---|\n", b.graphs ? "decode steps replay a CUDA graph" : "decode steps run eagerly", a);
    for (int i = 0; i < nb; i++) {
        double base = 0;
        for (int j = 0; j < nd; j++) {
            double ms, acc;
            if (bench_one(&b, batch[i], drafts[j], &ms, &acc)) return 1;
            if (drafts[j] == 0) base = ms;
            double tps = 1, ak = 1;
            for (int c = 0; c < drafts[j]; c++) tps += ak *= a;
            char rel[32] = "-";
            if (base > 0) snprintf(rel, sizeof rel, "%.2fx", ms / base);
            printf("| %d | %d | %.3f | %s | %.2f | %.2f | %.1f |\n", drafts[j], batch[i], ms, rel, acc, tps,
                   1e3 * tps / ms);
            fflush(stdout);
        }
    }
    return 0;
}
