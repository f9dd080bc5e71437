/* test_graphs_mtp.c — cuda_graph_config with MTP (worker/step_graph.h,
 * worker/forward_mtp.h): a decode step that verifies N drafts and drafts N
 * more is one graph of the main pass and the N draft passes. A schedule of
 * drafting prefills and verify+draft decode steps at batch 1, 3, 5, 8 and 9
 * runs on MTP engines without graphs, with graphs of sizes {1, 2, 4, 8} and
 * padding, and without padding, compared step by step.
 *
 *   test_graphs_mtp [MKMODEL [cpu|cuda]]   (as test_graphs)
 *
 * Checked: every engine returns the eager one's tokens, accepted drafts and
 * new drafts (on CUDA the replayed engine equals its emulated twin bit for
 * bit: same shapes); every step, drafting included, is one synchronize (the
 * drafts need no host round trip), a decode step two uploads and two
 * downloads (the main block and the MTP block); the steps that took a graph
 * are exactly the verify+draft steps of N + 1 rows a sequence at a fitting
 * size, with (G - n) * (N + 1) padding rows; padding rows route nowhere (MoE
 * load counters equal the unpadded engine's); a fault injected into a
 * replayed step fails it as MS_ERR_DATA and the next step runs; NaN in one
 * entry's draft passes drops that entry's drafts only. */
#include <stdio.h>

#include "tests/engine/graph_engines.h"

#define NSLOT 10
#define BS 16
#define NBLK 6 /* blocks a slot: its table covers every position the schedule reaches, so drafts are never cut */
#define N 2    /* drafts a step (the checkpoint's one module, chained for the second) */

/* A slot's sequence: the tokens so far (the last one not yet fed) and the drafts to verify next. */
typedef struct {
    int32_t tok[NBLK * BS + 8];
    int n, prompt;
    int32_t feed[N + 1];
    int n_draft;
} slot_t;

static bool same_result(const proto_result_t *a, const proto_result_t *b)
{
    if (a->token != b->token || a->n_accepted != b->n_accepted || a->n_draft != b->n_draft) return false;
    for (int u = 0; u < a->n_accepted; u++)
        if (a->accepted[u] != b->accepted[u]) return false;
    for (int c = 0; c < a->n_draft; c++)
        if (a->drafts[c] != b->drafts[c]) return false;
    return true;
}

int main(int argc, char **argv)
{
    ge_t g;
    const int rc = ge_args(&g, argc, argv);
    if (rc) return rc;
    const int cuda = g.cuda;
    const char *dir = et_model(g.mkmodel, "--preset tiny --dtype bf16 --seed 11 --mtp");
    T_CHECK(dir != NULL);
    if (!dir) return t_done();
    const engine_opts_t o = {.kv_blocks = NSLOT * NBLK, .block_size = BS, .max_batch = NSLOT, .max_tokens_per_step = 256,
                             .mtp_drafts = N};
    if (ge_create(&g, dir, o)) return t_done();
    engine_t **E = g.E;
    const int V = engine_config(E[0])->vocab_size;

    static slot_t sl[NSLOT];
    int32_t blk[NSLOT][NBLK];
    for (int s = 0; s < NSLOT; s++) {
        sl[s].prompt = sl[s].n = 5 + 3 * s;
        for (int i = 0; i < sl[s].n; i++) sl[s].tok[i] = (int32_t)((7 + 31 * s + 13 * i) % V);
        for (int b = 0; b < NBLK; b++) blk[s][b] = s * NBLK + b;
    }
    /* prefill (p) or decode (d) of slot ranges, as test_graphs: decode-only steps of N + 1 rows a sequence
     * take a graph when their batch fits one (1 → 1, 3 → 4, 8 → 8, 5 → 8, 9 → none) */
    struct { int p0, p1, d0, d1, reps; } sched[] = {
        {0, 1, 0, 0, 1},  {0, 0, 0, 1, 3},
        {1, 3, 0, 1, 1},  {0, 0, 0, 3, 4},
        {3, 10, 0, 3, 1}, {0, 0, 0, 8, 3},
        {0, 0, 0, 5, 2},  {0, 0, 0, 9, 2},
        {0, 0, 0, 2, 2},
    };
    long want_steps = 0, want_pad = 0, want_exact = 0, accepted = 0, verified = 0;
    int step = 0, bad = 0;
    for (size_t r = 0; r < sizeof sched / sizeof sched[0]; r++)
        for (int rep = 0; rep < sched[r].reps; rep++, step++) {
            et_seq_t q[NSLOT];
            int n = 0, all_full = 1;
            for (int s = sched[r].d0; s < sched[r].d1; s++) { /* verify: the last token and its drafts */
                slot_t *x = &sl[s];
                x->feed[0] = x->tok[x->n - 1];
                all_full &= x->n_draft == N;
                q[n++] = (et_seq_t){.slot = s, .pos = x->n - 1, .n = 1 + x->n_draft, .tokens = x->feed,
                                    .blocks = blk[s], .n_blocks = NBLK, .sample = 1, .n_logprobs = -1,
                                    .flags = PROTO_SEQ_VERIFY | PROTO_SEQ_DRAFT};
            }
            for (int s = sched[r].p0; s < sched[r].p1; s++)
                q[n++] = (et_seq_t){.slot = s, .pos = 0, .n = sl[s].prompt, .tokens = sl[s].tok, .blocks = blk[s],
                                    .n_blocks = NBLK, .sample = 1, .n_logprobs = -1, .flags = PROTO_SEQ_DRAFT};
            const int nd = sched[r].d1 - sched[r].d0, decode_only = sched[r].p1 == sched[r].p0;
            if (decode_only && all_full && nd <= 8) {
                const int G = nd <= 1 ? 1 : nd <= 2 ? 2 : nd <= 4 ? 4 : 8;
                want_steps++, want_pad += (long)(G - nd) * (N + 1), want_exact += G == nd;
            }
            proto_result_t res[4][NSLOT];
            ops_count_reset();
            for (int i = 0; i < 4; i++)
                if (E[i]) T_CHECK(et_step(E[i], q, n, res[i]) == MS_OK);
            const ops_count_t oc = ops_count_get();
            /* drafting needs no host round trip: the step's one synchronize */
            T_CHECK_MSG(oc.synchronize == 1, "step %d: %ld synchronizes", step, oc.synchronize);
            if (decode_only)
                T_CHECK_MSG(oc.upload == 2 && oc.download == 2, "step %d: %ld uploads, %ld downloads", step,
                            oc.upload, oc.download);
            for (int j = 0; j < n; j++) {
                for (int i = 1; i < 4; i++) {
                    if (!E[i]) continue;
                    const bool ok = same_result(&res[i][j], &res[0][j]);
                    if (!ok && bad++ < 8)
                        fprintf(stderr, "step %d seq %d: engine %d token %d (%d accepted, %d drafts), eager %d (%d, %d)\n",
                                step, j, i, res[i][j].token, res[i][j].n_accepted, res[i][j].n_draft,
                                res[0][j].token, res[0][j].n_accepted, res[0][j].n_draft);
                    T_CHECK(ok);
                }
                const int twin = cuda ? 2 : 0;
                T_CHECK(res[1][j].logprob == res[twin][j].logprob);
                T_CHECK(res[0][j].n_draft == N); /* the block tables cover every chained position */
            }
            /* commit: accepted drafts, then the step's token; its new drafts are verified next */
            for (int j = 0; j < n; j++) {
                slot_t *x = &sl[q[j].slot];
                const proto_result_t *a = &res[0][j];
                if (q[j].flags & PROTO_SEQ_VERIFY) verified += q[j].n - 1, accepted += a->n_accepted;
                for (int u = 0; u < a->n_accepted; u++) x->tok[x->n++] = a->accepted[u];
                x->tok[x->n++] = a->token;
                x->n_draft = a->n_draft;
                memcpy(x->feed + 1, a->drafts, sizeof(int32_t) * (size_t)a->n_draft);
                /* the tiny model's drafts are almost always right: spoil some so that acceptance (and with it
                 * the drafting row and the chained positions, made on the device) varies in every batch */
                if ((step + q[j].slot) % 3 == 0) x->feed[1 + (step + q[j].slot) % N] ^= 1;
                T_CHECK(x->n + N + 1 <= NBLK * BS);
            }
        }
    printf("%s: %d steps, %ld of %ld drafts accepted\n", g.backend, step, accepted, verified);
    T_CHECK(verified > 0 && accepted > verified / 3 && accepted < verified);

    ge_check_graph_use(&g, want_steps, want_pad, want_exact);
    int ng;
    long steps, pad;

    /* a fault in a replayed (padded) verify+draft step fails that step only */
    {
        et_seq_t q[3];
        for (int s = 0; s < 3; s++) {
            slot_t *x = &sl[s];
            x->feed[0] = x->tok[x->n - 1];
            q[s] = (et_seq_t){.slot = s, .pos = x->n - 1, .n = 1 + x->n_draft, .tokens = x->feed, .blocks = blk[s],
                              .n_blocks = NBLK, .sample = 1, .n_logprobs = -1,
                              .flags = PROTO_SEQ_VERIFY | PROTO_SEQ_DRAFT};
        }
        proto_result_t res[3];
        long s0;
        engine_graph_stats(E[1], &ng, &s0, &pad);
        engine_inject_fault(E[1], ENGINE_FAULT_INJECTED);
        T_CHECK(et_step(E[1], q, 3, res) == MS_ERR_DATA);
        T_CHECK(et_step(E[1], q, 3, res) == MS_OK && res[0].token >= 0 && res[0].n_draft == N);
        engine_graph_stats(E[1], &ng, &steps, &pad);
        T_CHECK(steps == s0 + 2);
        /* NaN in one entry's draft-pass input (its main pass is clean): the module's sampler faults on its rows
         * only; the step succeeds, that entry keeps its token and loses its drafts, the others are as eager */
        proto_result_t ref[3];
        T_CHECK(et_step(E[0], q, 3, ref) == MS_OK);
        engine_inject_seq_fault(E[1], 1, ENGINE_INJECT_MTP_NAN);
        T_CHECK(et_step(E[1], q, 3, res) == MS_OK);
        T_CHECK(res[1].fault == 0 && res[1].token == ref[1].token && res[1].n_accepted == ref[1].n_accepted &&
                res[1].n_draft == 0 && ref[1].n_draft == N);
        T_CHECK(same_result(&res[0], &ref[0]) && same_result(&res[2], &ref[2]));
    }
    /* block tables that end at the fed rows (rank 0 could not reserve the chained positions): each slot feeds
     * the drafts that end its rows on a block's last position, so with them accepted its chain is cut and it
     * drafts what its table can hold; every engine agrees (such steps run eagerly) */
    {
        et_seq_t q[NSLOT];
        int n = 0, cut = 0;
        for (int s = 0; s < NSLOT; s++) {
            slot_t *x = &sl[s];
            const int k = (BS - 1 - (x->n - 1) % BS) % BS; /* drafts to feed: the last row ends a block */
            if (k > x->n_draft) continue;
            x->feed[0] = x->tok[x->n - 1];
            q[n++] = (et_seq_t){.slot = s, .pos = x->n - 1, .n = 1 + k, .tokens = x->feed, .blocks = blk[s],
                                .n_blocks = (x->n - 1 + k) / BS + 1, .sample = 1, .n_logprobs = -1,
                                .flags = PROTO_SEQ_DRAFT | (k > 0 ? PROTO_SEQ_VERIFY : 0u)};
        }
        proto_result_t res[4][NSLOT];
        for (int i = 0; i < 4; i++)
            if (E[i] && n) T_CHECK(et_step(E[i], q, n, res[i]) == MS_OK);
        for (int j = 0; j < n; j++) {
            const int cover = q[j].n_blocks * BS, P = q[j].pos + res[0][j].n_accepted;
            const int want = cover - P < N ? cover - P : N;
            T_CHECK_MSG(res[0][j].n_draft == want, "cut chain: %d drafts, want %d", res[0][j].n_draft, want);
            cut += want < N;
            for (int i = 1; i < 4; i++)
                if (E[i]) T_CHECK(same_result(&res[i][j], &res[0][j]));
        }
        printf("cut chains: %d of %d sequences drafted fewer than %d\n", cut, n, N);
        T_CHECK(cut > 0);
    }
    ge_destroy(&g);
    return t_done();
}
