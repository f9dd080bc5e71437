/* test_graphs.c — cuda_graph_config in the engine (worker/step_graph.h): a
 * schedule of prefill, mixed and decode steps at batch 1, 3, 5, 8 and 9 run
 * on engines without graphs, with graphs of sizes {1, 2, 4, 8} and padding,
 * and without padding, compared step by step.
 *
 *   test_graphs [MKMODEL [cpu|cuda]]   (MKMODEL default: moeserve-mkmodel on PATH;
 *                                       backend default: cuda when a GPU is visible)
 *
 * On the CPU backend (no graphs) the padded steps are emulated: the same
 * padded rows, run eagerly (engine_opts_t.graph_emulate), so CI checks the
 * padding itself. On CUDA the graphs are captured and replayed: a replayed
 * padded step must equal, bit for bit, the same padded step run eagerly
 * (emulated), and match the unpadded engine's greedy tokens. Everywhere: the
 * MoE load counters equal the unpadded engine's (padding rows route nowhere),
 * a replayed decode step is one upload, one download and one synchronize,
 * the steps that used a graph are exactly the decode-only ones at a fitting
 * size, a fault injected into a replayed step fails it as MS_ERR_DATA, and a
 * bad token in one entry of a padded step fails that entry alone. */
#include <math.h>
#include <stdio.h>

#include "tests/engine/graph_engines.h"

#define NSLOT 10
#define BS 16

int main(int argc, char **argv)
{
    ge_t g;
    const int rc = ge_args(&g, argc, argv);
    if (rc) return rc;
    const int cuda = g.cuda;
    const char *dir = et_model(g.mkmodel, "--preset tiny --dtype bf16 --seed 11");
    T_CHECK(dir != NULL);
    if (!dir) return t_done();
    const engine_opts_t o = {.kv_blocks = 96, .block_size = BS, .max_batch = NSLOT, .max_tokens_per_step = 256};
    if (ge_create(&g, dir, o)) return t_done();
    engine_t **E = g.E;
    const int V = engine_config(E[0])->vocab_size;

    /* sequences: a prompt each (lengths 5 .. 32); pos = the position of the token fed next */
    int32_t tok[NSLOT][64], blk[NSLOT][4];
    int len[NSLOT];
    for (int s = 0; s < NSLOT; s++) {
        len[s] = 5 + 3 * s;
        for (int i = 0; i < len[s]; i++) tok[s][i] = (int32_t)((7 + 31 * s + 13 * i) % V);
        for (int b = 0; b < 4; b++) blk[s][b] = s * 4 + b;
    }
    /* the schedule: prefill (p) or decode (d) of slot ranges; decode-only steps use a graph when their
     * batch fits one: 1 → 1, 3 → 4, 8 → 8, 5 → 8, 9 → none (above the largest) */
    struct { int p0, p1, d0, d1, reps; } sched[] = {
        {0, 1, 0, 0, 1},  {0, 0, 0, 1, 3},  /* batch 1: prefill, then decode */
        {1, 3, 0, 1, 1},  {0, 0, 0, 3, 4},  /* mixed, then batch 3 */
        {3, 10, 0, 3, 1}, {0, 0, 0, 8, 3},  /* mixed, then batch 8 */
        {0, 0, 0, 5, 2},  {0, 0, 0, 9, 2},  /* batch 5, batch 9 */
        {0, 0, 0, 2, 2},                    /* batch 2 */
    };
    int pos[NSLOT] = {0};
    long want_steps = 0, want_pad = 0, want_exact = 0;
    double maxd = 0;
    float *lg0 = malloc(sizeof(float) * (size_t)V), *lg1 = malloc(sizeof(float) * (size_t)V);
    int step = 0, bad = 0;
    for (size_t r = 0; r < sizeof sched / sizeof sched[0]; r++)
        for (int rep = 0; rep < sched[r].reps; rep++, step++) {
            et_seq_t q[NSLOT];
            int n = 0;
            for (int s = sched[r].d0; s < sched[r].d1; s++) /* decode: the last token at its position */
                q[n++] = (et_seq_t){.slot = s, .pos = pos[s], .n = 1, .tokens = &tok[s][pos[s]], .blocks = blk[s],
                                    .n_blocks = et_blocks_for(pos[s] + 1, BS), .sample = 1, .n_logprobs = 3};
            for (int s = sched[r].p0; s < sched[r].p1; s++)
                q[n++] = (et_seq_t){.slot = s, .pos = 0, .n = len[s], .tokens = tok[s], .blocks = blk[s],
                                    .n_blocks = et_blocks_for(len[s], BS), .sample = 1, .n_logprobs = 3};
            const int nd = sched[r].d1 - sched[r].d0, decode_only = sched[r].p1 == sched[r].p0;
            if (decode_only && nd <= 8) {
                const int G = nd <= 1 ? 1 : nd <= 2 ? 2 : nd <= 4 ? 4 : 8;
                want_steps++, want_pad += G - nd, want_exact += G == nd;
            }
            proto_result_t res[4][NSLOT];
            ops_count_reset();
            for (int i = 0; i < 4; i++)
                if (E[i]) T_CHECK(et_step(E[i], q, n, res[i]) == MS_OK);
            const ops_count_t oc = ops_count_get();
            if (decode_only) /* a decode step, replayed or not, is one upload, one download, one synchronize */
                T_CHECK_MSG(oc.upload == 1 && oc.download == 1 && oc.synchronize == 1,
                            "step %d: %ld uploads, %ld downloads, %ld synchronizes", step, oc.upload, oc.download,
                            oc.synchronize);
            for (int j = 0; j < n; j++) {
                const int t0 = res[0][j].token;
                for (int i = 1; i < 4; i++) {
                    if (!E[i]) continue;
                    if (res[i][j].token != t0 && bad++ < 8)
                        fprintf(stderr, "step %d seq %d: engine %d token %d, eager %d\n", step, j, i, res[i][j].token,
                                t0);
                    T_CHECK(res[i][j].token == t0 && res[i][j].n_top == res[0][j].n_top);
                }
                /* the replayed step equals its eager twin bit for bit: on CPU the unpadded engine, on CUDA the
                 * emulated one (same shapes; an unpadded GEMM of fewer rows may sum in another order) */
                const int twin = cuda ? 2 : 0;
                T_CHECK(res[1][j].logprob == res[twin][j].logprob);
                T_CHECK(engine_logits(E[1], j, lg1) == MS_OK && engine_logits(E[twin], j, lg0) == MS_OK);
                T_CHECK(et_maxdiff(lg0, lg1, V) == 0);
                T_CHECK(engine_logits(E[0], j, lg0) == MS_OK);
                double d = et_maxdiff(lg0, lg1, V);
                if (d > maxd) maxd = d;
            }
            /* feed each sampled token as the next one: a prompt's after its last token, a decode's after it */
            for (int j = 0; j < n; j++) {
                const int s = q[j].slot;
                pos[s] = q[j].n > 1 ? len[s] : pos[s] + 1;
                tok[s][pos[s]] = res[0][j].token;
            }
        }
    T_CHECK_MSG(maxd < 0.05, "graphs vs eager: max logit difference %g", maxd);
    printf("%s: %d steps, max logit difference padded vs unpadded %.3g\n", g.backend, step, maxd);

    /* which steps took a graph's size, how many padding rows they added; padding rows route nowhere */
    ge_check_graph_use(&g, want_steps, want_pad, want_exact);

    /* a fault in a replayed (padded) step fails that step only */
    {
        et_seq_t q[3];
        for (int s = 0; s < 3; s++)
            q[s] = (et_seq_t){.slot = s, .pos = pos[s], .n = 1, .tokens = &tok[s][pos[s]], .blocks = blk[s],
                              .n_blocks = et_blocks_for(pos[s] + 1, BS), .sample = 1, .n_logprobs = -1};
        proto_result_t res[3], ref[3];
        engine_inject_fault(E[1], ENGINE_FAULT_INJECTED);
        T_CHECK(et_step(E[1], q, 3, res) == MS_ERR_DATA);
        T_CHECK(et_step(E[1], q, 3, res) == MS_OK && res[0].token >= 0);
        /* a bad token fed to one entry of a padded step fails that entry alone: the others equal eager ones */
        T_CHECK(et_step(E[0], q, 3, ref) == MS_OK);
        engine_inject_seq_fault(E[1], 1, ENGINE_INJECT_TOKEN);
        T_CHECK(et_step(E[1], q, 3, res) == MS_OK);
        T_CHECK(res[1].fault != 0 && res[1].token == -1);
        T_CHECK(res[0].fault == 0 && res[0].token == ref[0].token && res[2].fault == 0 && res[2].token == ref[2].token);
    }
    free(lg0), free(lg1);
    ge_destroy(&g);
    return t_done();
}
