/* test_placement.c — expert placement as data, through the whole engine
 * (tiny model: 16 experts, top 4, 1 dense + 2 MoE layers; argv[1] =
 * moeserve-mkmodel):
 *  1. A run on the default placement (16 slots) gives the per-expert load
 *     counters; an engine with 24 slots (1.5x) whose extra slots replicate
 *     each layer's 4 hottest experts twice (3 replicas each), in a shuffled
 *     slot order, gives bit-identical logits at every step (mixed prefill,
 *     chunk and decode batches) and identical load counters.
 *  2. The counters add up: each MoE layer counts tokens x top_k pairs, the
 *     dense layer none; they accumulate over steps.
 *  3. Bad placements fail engine_create naming the problem: num_slots below
 *     the expert count, an assignment missing an expert, an expert id out of
 *     range.
 *  4. A receive capacity below what a step needs (moe_max_num_tokens 2 for a
 *     5-token prefill) fails that step instead of truncating, and the engine
 *     keeps working for steps that fit. */
#include "etest.h"

static engine_t *mk(const char *dir, int num_slots, const int32_t *assign, int moe_max, comm_t **c)
{
    engine_opts_t o = {.kv_blocks = 64, .block_size = 4, .max_batch = 4, .max_tokens_per_step = 32, .backend = "cpu",
                       .mla = ENGINE_MLA_AUTO, .num_slots = num_slots, .assignment = assign,
                       .moe_max_num_tokens = moe_max};
    par_t p = par_single();
    engine_t *e = NULL;
    if (comm_local_create(&kern_cpu_ops, c) != MS_OK) return NULL;
    if (engine_create(dir, &p, &o, *c, &e) != MS_OK) {
        comm_destroy(*c);
        *c = NULL;
        return NULL;
    }
    return e;
}

static const int32_t SEQ[16] = {0, 400, 221, 344, 391, 52, 17, 250, 3, 99, 128, 301, 77, 460, 5, 210};

/* Three steps mixing prefill, chunk and decode; logits of every sampled row into lg[step][i] (V floats each).
 * Returns the tokens fed. */
static int run(engine_t *e, float *lg, int V, int *ok)
{
    const int32_t bA[4] = {3, 7, 1, 12}, bB[4] = {0, 8, 30, 6}, bC[4] = {15, 4, 22, 2};
    const int32_t *tok[3] = {SEQ, SEQ + 3, SEQ + 5}, *blk[3] = {bA, bB, bC};
    static const int steps[3][3][3] = {
        {{0, 0, 5}, {1, 0, 3}, {-1, 0, 0}},
        {{2, 0, 7}, {0, 5, 1}, {1, 3, 4}},
        {{1, 7, 1}, {2, 7, 1}, {0, 6, 1}},
    };
    int fed = 0;
    for (int s = 0; s < 3; s++) {
        et_seq_t q[3];
        const int n = et_step_seqs(steps[s], 3, tok, blk, 4, q, &fed);
        proto_result_t r[3];
        *ok &= et_step(e, q, n, r) == MS_OK;
        for (int i = 0; i < 3; i++)
            *ok &= i >= n || engine_logits(e, i, lg + (size_t)(s * 3 + i) * V) == MS_OK;
    }
    return fed;
}

int main(int argc, char **argv)
{
    if (argc < 2) return 2;
    const char *dir = et_model(argv[1], "--preset tiny --dtype bf16 --seed 3");
    T_CHECK(dir != NULL);
    if (!dir) return t_done();
    comm_t *c0, *c1;
    engine_t *e0 = mk(dir, 0, NULL, 0, &c0);
    T_CHECK(e0 != NULL);
    if (!e0) return t_done();
    const mcfg_t *mc = engine_config(e0);
    const int V = mc->vocab_size, L = mc->num_hidden_layers, E = mc->n_routed_experts, K = mc->num_experts_per_tok;
    const int S = E + E / 2, HOT = 4;
    float *a = calloc((size_t)9 * V, sizeof(float)), *b = calloc((size_t)9 * V, sizeof(float));
    int64_t *la = calloc((size_t)L * E, sizeof(int64_t)), *lb = calloc((size_t)L * E, sizeof(int64_t));
    int ok = 1;
    const int fed = run(e0, a, V, &ok);
    T_CHECK(ok && engine_expert_load(e0, la) == MS_OK);

    /* 2. counters add up per layer */
    for (int l = 0; l < L; l++) {
        int64_t sum = 0;
        for (int x = 0; x < E; x++) sum += la[(size_t)l * E + x];
        int moe = mcfg_layer_is_moe(mc, l);
        T_CHECK_MSG(sum == (moe ? (int64_t)fed * K : 0), "layer %d: %lld routed pairs for %d tokens", l,
                    (long long)sum, fed);
    }

    /* 1. replicate each layer's hottest experts */
    int32_t *as = malloc(sizeof(int32_t) * (size_t)L * S);
    for (int l = 0; l < L; l++) {
        int32_t hot[4];
        const int64_t *ld = la + (size_t)l * E;
        for (int h = 0; h < HOT; h++) {
            int best = -1;
            for (int x = 0; x < E; x++) {
                int taken = 0;
                for (int g = 0; g < h; g++) taken |= hot[g] == x;
                if (!taken && (best < 0 || ld[x] > ld[best])) best = x;
            }
            hot[h] = best;
        }
        int32_t *row = as + (size_t)l * S;
        for (int i = 0; i < E; i++) row[i] = i;
        for (int i = 0; i < 2 * HOT; i++) row[E + i] = hot[i % HOT];
        for (int i = S - 1; i > 0; i--) { /* shuffle the slot order (deterministic) */
            int j = (i * 7 + l * 3) % (i + 1);
            int32_t t = row[i];
            row[i] = row[j], row[j] = t;
        }
    }
    engine_t *e1 = mk(dir, S, as, 0, &c1);
    T_CHECK(e1 != NULL);
    if (e1) {
        ok = 1;
        T_CHECK(run(e1, b, V, &ok) == fed && ok);
        T_CHECK_MSG(et_maxdiff(a, b, 9 * V) == 0, "24 slots with replicas vs 16 slots: max |logit diff| %g",
                    et_maxdiff(a, b, 9 * V));
        T_CHECK(engine_expert_load(e1, lb) == MS_OK && !memcmp(la, lb, sizeof(int64_t) * (size_t)L * E));
        /* accumulate: a second identical run doubles every counter */
        ok = 1;
        run(e1, b, V, &ok);
        T_CHECK(ok && engine_expert_load(e1, lb) == MS_OK);
        int doubled = 1;
        for (int i = 0; i < L * E; i++) doubled &= lb[i] == 2 * la[i];
        T_CHECK(doubled);
        engine_destroy(e1), comm_destroy(c1);
    }
    fprintf(stderr, "placement: %d slots, hottest experts x3, %d tokens: logits identical to 16 slots\n", S, fed);

    /* 3. bad placements */
    engine_t *bad;
    T_CHECK((bad = mk(dir, E - 1, NULL, 0, &c1)) == NULL);
    int32_t *miss = malloc(sizeof(int32_t) * (size_t)L * S);
    for (int i = 0; i < L * S; i++) miss[i] = i % S % (E - 1); /* expert E-1 never placed */
    T_CHECK((bad = mk(dir, S, miss, 0, &c1)) == NULL);
    for (int i = 0; i < L * S; i++) miss[i] = i % S == 3 ? E : i % S % E;
    T_CHECK((bad = mk(dir, S, miss, 0, &c1)) == NULL);
    free(miss);

    /* 4. capacity: 5 tokens of one sequence send 5 rows to some slot when a slot takes 2 */
    engine_t *ec = mk(dir, 0, NULL, 2, &c1);
    T_CHECK(ec != NULL);
    if (ec) {
        const int32_t blk[2] = {0, 1};
        proto_result_t r;
        et_seq_t s5 = {.slot = 0, .pos = 0, .n = 5, .tokens = SEQ, .blocks = blk, .n_blocks = 2, .sample = 1,
                       .n_logprobs = -1};
        T_CHECK(et_step(ec, &s5, 1, &r) != MS_OK);
        et_seq_t s1 = {.slot = 0, .pos = 0, .n = 1, .tokens = SEQ, .blocks = blk, .n_blocks = 1, .sample = 1,
                       .n_logprobs = -1};
        T_CHECK(et_step(ec, &s1, 1, &r) == MS_OK && r.token >= 0);
        engine_destroy(ec), comm_destroy(c1);
    }
    engine_destroy(e0), comm_destroy(c0);
    free(a), free(b), free(la), free(lb), free(as);
    return t_done();
}
