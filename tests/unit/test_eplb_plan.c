/* test_eplb_plan.c — the EPLB planner: DeepSeek's published example slot for
 * slot (deepseek-ai/EPLB README: 2 layers × 12 experts, 16 slots, 4 groups,
 * 2 nodes, 8 GPUs), the global policy's invariants, imbalance, slot keeping
 * and bad shapes. */
#include "test.h"
#include "coordinator/eplb_plan.h"

static const float readme_load[2 * 12] = {
    90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86,
    20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27,
};
static const int32_t readme_phy2log[2 * 16] = {
    5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1,
    7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1,
};

/* every expert appears logcnt times, log2phy inverts phy2log */
static void check_consistent(const eplb_placement_t *p)
{
    for (int l = 0; l < p->n_layers; l++) {
        int seen[512] = {0};
        for (int s = 0; s < p->n_slots; s++) {
            int e = p->phy2log[l * p->n_slots + s];
            T_CHECK(e >= 0 && e < p->n_experts);
            seen[e]++;
            int r = p->phy_rank[l * p->n_slots + s];
            T_CHECK(r >= 0 && r < p->max_replicas && p->log2phy[(l * p->n_experts + e) * p->max_replicas + r] == s);
        }
        for (int e = 0; e < p->n_experts; e++) T_CHECK(seen[e] == p->logcnt[l * p->n_experts + e] && seen[e] >= 1);
    }
}

int main(void)
{
    eplb_placement_t p;
    eplb_shape_t sh = {.n_slots = 16, .n_groups = 4, .n_nodes = 2, .n_ranks = 8};
    T_CHECK(eplb_plan(readme_load, 2, 12, &sh, &p) == MS_OK);
    T_CHECK(memcmp(p.phy2log, readme_phy2log, sizeof readme_phy2log) == 0);
    for (int i = 0; i < 32; i++)
        T_CHECK_MSG(p.phy2log[i] == readme_phy2log[i], "slot %d of layer %d: %d, want %d", i % 16, i / 16,
                    p.phy2log[i], readme_phy2log[i]);
    check_consistent(&p);
    /* replication lowers the hottest rank's excess below a one-slot-per-expert layout's */
    eplb_placement_t flat = {.n_layers = 2, .n_experts = 12, .n_slots = 12, .max_replicas = 1};
    int32_t f_p2l[24], f_rank[24] = {0}, f_cnt[24];
    for (int i = 0; i < 24; i++) f_p2l[i] = i % 12, f_cnt[i] = 1;
    flat.phy2log = f_p2l, flat.phy_rank = f_rank, flat.logcnt = f_cnt;
    for (int l = 0; l < 2; l++) {
        double before = eplb_imbalance(readme_load, &flat, l, 4), after = eplb_imbalance(readme_load, &p, l, 8);
        T_CHECK_MSG(after < before, "layer %d imbalance %.3f -> %.3f", l, before, after);
    }

    /* keep_slots: planning again from the same loads moves nothing */
    eplb_placement_t q;
    T_CHECK(eplb_plan(readme_load, 2, 12, &sh, &q) == MS_OK);
    T_CHECK(eplb_keep_slots(&p, &q, 8) == 0);
    /* a different load: the renumbered plan holds the same expert set per rank,
     * and moves no more slots than the raw plan would */
    float load2[24];
    for (int i = 0; i < 24; i++) load2[i] = readme_load[(i * 7) % 24];
    eplb_placement_t a, b;
    T_CHECK(eplb_plan(load2, 2, 12, &sh, &a) == MS_OK && eplb_plan(load2, 2, 12, &sh, &b) == MS_OK);
    int raw = 0;
    for (int i = 0; i < 32; i++) raw += a.phy2log[i] != p.phy2log[i];
    int kept = eplb_keep_slots(&p, &b, 8);
    T_CHECK_MSG(kept >= 0 && kept <= raw, "moves %d kept vs %d raw", kept, raw);
    for (int l = 0; l < 2; l++)
        for (int r = 0; r < 8; r++) {
            int ca[12] = {0}, cb[12] = {0};
            for (int i = 0; i < 2; i++) ca[a.phy2log[l * 16 + r * 2 + i]]++, cb[b.phy2log[l * 16 + r * 2 + i]]++;
            T_CHECK(memcmp(ca, cb, sizeof ca) == 0);
        }
    check_consistent(&b);
    T_CHECK(eplb_imbalance(load2, &a, 0, 8) == eplb_imbalance(load2, &b, 0, 8));

    /* DeepSeek-V3-like skew on one node: 256 experts in 8 groups, 384 slots, 8 ranks */
    static float big[256];
    for (int e = 0; e < 256; e++) big[e] = (e % 17 == 0) ? 900.0f : (float)(10 + (e * 37) % 50);
    eplb_placement_t g;
    eplb_shape_t gs = {.n_slots = 384, .n_groups = 8, .n_nodes = 1, .n_ranks = 8};
    T_CHECK(eplb_plan(big, 1, 256, &gs, &g) == MS_OK);
    check_consistent(&g);
    T_CHECK_MSG(eplb_imbalance(big, &g, 0, 8) < 0.05, "imbalance %.4f", eplb_imbalance(big, &g, 0, 8));
    T_CHECK(g.logcnt[0] > 1 && g.logcnt[1] == 1); /* the hot expert got replicas, a cold one none */
    /* a rank never holds one expert twice (the server refuses such a placement):
     * 16 experts, 3 very hot, 24 slots on 2 ranks — replicas capped at the ranks */
    {
        float sk[2 * 16];
        for (int i = 0; i < 32; i++) sk[i] = (float)(50 + (i * 29) % 50) * ((i % 16) < 3 ? 10.0f : 1.0f);
        eplb_placement_t d;
        eplb_shape_t ds = {.n_slots = 24, .n_groups = 4, .n_nodes = 1, .n_ranks = 2};
        T_CHECK(eplb_plan(sk, 2, 16, &ds, &d) == MS_OK);
        check_consistent(&d);
        for (int l = 0; l < 2; l++)
            for (int s = 0; s < 24; s++)
                for (int t = s - s % 12; t < s; t++)
                    T_CHECK_MSG(d.phy2log[l * 24 + t] != d.phy2log[l * 24 + s], "layer %d: slots %d and %d hold "
                                "expert %d on one rank", l, t, s, d.phy2log[l * 24 + s]);
        T_CHECK(eplb_imbalance(sk, &d, 0, 2) < 0.05);
        eplb_placement_free(&d);
    }
    eplb_placement_t h;
    eplb_shape_t hs = {.n_slots = 16, .n_groups = 3, .n_nodes = 2, .n_ranks = 8};
    T_CHECK(eplb_plan(readme_load, 2, 12, &hs, &h) == MS_OK); /* 3 groups over 2 nodes: global */
    check_consistent(&h);

    /* bad shapes */
    eplb_placement_t x;
    eplb_shape_t bad1 = {.n_slots = 10, .n_groups = 4, .n_nodes = 2, .n_ranks = 8};  /* fewer slots than experts */
    eplb_shape_t bad2 = {.n_slots = 20, .n_groups = 4, .n_nodes = 2, .n_ranks = 8};  /* not a multiple of ranks */
    eplb_shape_t bad3 = {.n_slots = 16, .n_groups = 5, .n_nodes = 1, .n_ranks = 8};  /* 12 experts, 5 groups */
    eplb_shape_t bad4 = {.n_slots = 16, .n_groups = 4, .n_nodes = 3, .n_ranks = 8};  /* 8 ranks over 3 nodes */
    T_CHECK(eplb_plan(readme_load, 2, 12, &bad1, &x) == MS_ERR_INVALID);
    T_CHECK(eplb_plan(readme_load, 2, 12, &bad2, &x) == MS_ERR_INVALID);
    T_CHECK(eplb_plan(readme_load, 2, 12, &bad3, &x) == MS_ERR_INVALID);
    T_CHECK(eplb_plan(readme_load, 2, 12, &bad4, &x) == MS_ERR_INVALID);

    eplb_placement_free(&p), eplb_placement_free(&q), eplb_placement_free(&a), eplb_placement_free(&b);
    eplb_placement_free(&g), eplb_placement_free(&h);
    return t_done();
}
