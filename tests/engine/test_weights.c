/* test_weights.c — weights_load for one rank's share, against the full load
 * (CPU backend: device memory is host memory, so the test can compare):
 *  - attention TP (tp 2, rank 1): q_b / kv_b hold the rows of heads 2..3,
 *    o_proj the matching columns; everything else is the full tensor;
 *  - EP (ep 2, rank 1, default placement): local slot j holds global expert
 *    2j+1, its record byte-equal to the full load's record of that expert;
 *  - replicas (24 slots over ep 2, an explicit assignment repeating experts):
 *    every local slot's record equals the full record of the expert the
 *    assignment puts there, replicas included (fp8 records too: data and
 *    scales in one record);
 *  - attention DP keeps full heads;
 *  - fp8 head shards that cut a 128×128 scale block are refused (par_validate);
 *  - the TP/EP rank's allocation is smaller than the full one (DP with ep 1: equal).
 * argv[1] = moeserve-mkmodel. */
#include "etest.h"
#include "worker/checkpoint.h"
#include "worker/weights.h"

static int mat_rows_equal(const kern_mat_t *a, const kern_mat_t *full, int r0, int nr, int c0, int nc)
{
    size_t es = ms_dtype_size(a->dtype);
    if (a->rows != nr || a->cols != nc || a->dtype != full->dtype) return 0;
    for (int r = 0; r < nr; r++)
        if (memcmp((const char *)a->data + (size_t)r * nc * es,
                   (const char *)full->data + ((size_t)(r0 + r) * full->cols + c0) * es, (size_t)nc * es))
            return 0;
    return 1;
}

/* slot j's record of a equals slot e's record of full (default ep1 placement: slot e holds expert e) */
static int expert_equal(const kern_moe_slots_t *a, int j, const kern_moe_slots_t *full, int e)
{
    return a->stride == full->stride && a->dtype == full->dtype &&
           !memcmp((const char *)a->base + (size_t)j * a->stride, (const char *)full->base + (size_t)e * full->stride,
                   a->stride);
}

/* Every MoE layer's local slots of `w` (rank ep_rank of pl) hold the records of the experts pl puts there. */
static int slots_match(const mcfg_t *c, const placement_t *pl, int ep_rank, const weights_t *w, const weights_t *full)
{
    int ok = 1;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        if (!w->layers[l].is_moe) continue;
        for (int j = 0; j < pl->slots_per_rank; j++)
            ok &= expert_equal(&w->layers[l].experts, j, &full->layers[l].experts,
                               placement_expert(pl, l, ep_rank * pl->slots_per_rank + j));
    }
    return ok;
}

int main(int argc, char **argv)
{
    if (argc < 2) return 2;
    const char *dir = et_model(argv[1], "--preset tiny --dtype bf16 --seed 9");
    const char *fp8 = et_model(argv[1], "--preset tiny --dtype fp8 --seed 9");
    T_CHECK(dir && fp8);
    if (!dir || !fp8) return t_done();
    mcfg_t c;
    ckpt_t *ck;
    T_CHECK(mcfg_load(dir, &c) == MS_OK && ckpt_open(dir, &ck) == MS_OK);
    const kern_ops_t *k = &kern_cpu_ops;
    weights_t full, part, dp;
    par_t p1 = par_single(), p2 = {.tp_rank = 1, .tp_size = 2, .ep_rank = 1, .ep_size = 2},
          p3 = {.tp_rank = 1, .tp_size = 2, .ep_rank = 0, .ep_size = 1, .attention_dp = true};
    T_CHECK(par_validate(&p2, &c) == MS_OK && par_validate(&p3, &c) == MS_OK);
    const int L = c.num_hidden_layers, E = c.n_routed_experts;
    placement_t pl1, pl2, plr;
    T_CHECK(placement_create(L, E, 0, 1, NULL, &pl1) == MS_OK && placement_create(L, E, 0, 2, NULL, &pl2) == MS_OK);
    T_CHECK(weights_load(k, NULL, ck, &c, &p1, &pl1, &full) == MS_OK);
    T_CHECK(weights_load(k, NULL, ck, &c, &p2, &pl2, &part) == MS_OK);
    T_CHECK(weights_load(k, NULL, ck, &c, &p3, &pl1, &dp) == MS_OK);
    T_CHECK(weights_load(k, NULL, ck, &c, &p2, NULL, &dp) == MS_ERR_INVALID); /* no placement */
    int32_t *as = malloc(sizeof(int32_t) * (size_t)L * (E + E / 2));
    for (int l = 0; l < L; l++) /* experts 0..E-1, then 3 and 5 again, then 7.. : replicas on both ranks */
        for (int i = 0; i < E + E / 2; i++) as[l * (E + E / 2) + i] = i < E ? (i * 5 + l) % E : (i * 3 + l) % E;
    T_CHECK(placement_create(L, E, E + E / 2, 2, as, &plr) == MS_OK);
    T_CHECK(plr.max_rep == 2 && plr.slots_per_rank == (E + E / 2) / 2);
    weights_t rep0, rep1;
    par_t pr0 = {.tp_rank = 0, .tp_size = 2, .ep_rank = 0, .ep_size = 2}, pr1 = pr0;
    pr1.tp_rank = pr1.ep_rank = 1;
    T_CHECK(weights_load(k, NULL, ck, &c, &pr0, &plr, &rep0) == MS_OK);
    T_CHECK(weights_load(k, NULL, ck, &c, &pr1, &plr, &rep1) == MS_OK);
    T_CHECK(slots_match(&c, &plr, 0, &rep0, &full) && slots_match(&c, &plr, 1, &rep1, &full));
    T_CHECK(slots_match(&c, &pl2, 1, &part, &full));
    weights_free(&rep0), weights_free(&rep1);
    T_CHECK(part.bytes < full.bytes && dp.bytes == full.bytes);
    const int H = c.num_attention_heads, Hl = H / 2, h0 = Hl, qk = c.qk_nope_head_dim + c.qk_rope_head_dim;
    const int dn = c.qk_nope_head_dim, dv = c.v_head_dim, D = c.hidden_size;
    int ok = 1, moe_layers = 0;
    for (int l = 0; l < c.num_hidden_layers; l++) {
        const wlayer_t *f = &full.layers[l], *s = &part.layers[l], *d = &dp.layers[l];
        ok &= mat_rows_equal(&s->q_b, &f->q_b, h0 * qk, Hl * qk, 0, f->q_b.cols);
        ok &= mat_rows_equal(&s->kv_b, &f->kv_b, h0 * (dn + dv), Hl * (dn + dv), 0, f->kv_b.cols);
        ok &= mat_rows_equal(&s->o, &f->o, 0, D, h0 * dv, Hl * dv);
        ok &= mat_rows_equal(&s->q_a, &f->q_a, 0, f->q_a.rows, 0, f->q_a.cols);
        ok &= mat_rows_equal(&s->kv_a, &f->kv_a, 0, f->kv_a.rows, 0, f->kv_a.cols);
        ok &= mat_rows_equal(&d->q_b, &f->q_b, 0, f->q_b.rows, 0, f->q_b.cols); /* DP: all heads */
        ok &= mat_rows_equal(&d->o, &f->o, 0, D, 0, f->o.cols);
        ok &= !memcmp(s->input_norm, f->input_norm, 2 * (size_t)D);
        /* BF16: q_a|kv_a and gate|up are loaded fused, the parts views of one matrix (weights.c wl_fused) */
        const int64_t R = c.q_lora_rank, rw = c.kv_lora_rank + c.qk_rope_head_dim;
        if (R > 0)
            ok &= f->qkv_a.data == f->q_a.data && f->qkv_a.rows == R + rw && f->q_a.rows == R &&
                  f->kv_a.data == (const char *)f->qkv_a.data + 2 * (size_t)(R * D) && f->kv_a.rows == rw;
        const kern_mat_t *gu = f->is_moe ? &f->sh_gate_up : &f->gate_up, *g = f->is_moe ? &f->sh_gate : &f->gate,
                         *u = f->is_moe ? &f->sh_up : &f->up;
        if (g->rows > 0)
            ok &= gu->data == g->data && gu->rows == 2 * g->rows &&
                  u->data == (const char *)g->data + 2 * (size_t)g->rows * (size_t)D;
        if (!f->is_moe) continue;
        moe_layers++;
        ok &= mat_rows_equal(&s->router, &f->router, 0, f->router.rows, 0, D);
        ok &= !memcmp(s->router_bias, f->router_bias, sizeof(float) * (size_t)c.n_routed_experts);
        for (int j = 0; j < c.n_routed_experts / 2; j++) {
            ok &= expert_equal(&s->experts, j, &f->experts, 2 * j + 1);
            ok &= expert_equal(&d->experts, 2 * j + 1, &f->experts, 2 * j + 1);
        }
        ok &= mat_rows_equal(&s->sh_down, &f->sh_down, 0, D, 0, f->sh_down.cols);
    }
    T_CHECK(ok);
    T_CHECK(moe_layers == c.num_hidden_layers - c.first_k_dense_replace);
    fprintf(stderr, "full %.2f MiB, tp2/ep2 rank 1 %.2f MiB, dp rank with ep1 %.2f MiB\n", full.bytes / 1048576.0,
            part.bytes / 1048576.0, dp.bytes / 1048576.0);
    weights_free(&full), weights_free(&part), weights_free(&dp);
    ckpt_close(ck);

    /* fp8: 2 heads x 48 = 96 rows of q_b cut a 128-row scale block */
    mcfg_t c8;
    T_CHECK(mcfg_load(fp8, &c8) == MS_OK);
    T_CHECK(par_validate(&p2, &c8) == MS_ERR_UNSUPPORTED);
    par_t ep_only = {.tp_rank = 0, .tp_size = 1, .ep_rank = 1, .ep_size = 4};
    T_CHECK(par_validate(&ep_only, &c8) == MS_OK);
    T_CHECK(mcfg_load(fp8, &c8) == MS_OK && ckpt_open(fp8, &ck) == MS_OK);
    placement_t pl4, plr4;
    T_CHECK(placement_create(L, E, 0, 4, NULL, &pl4) == MS_OK && placement_create(L, E, E + E / 2, 4, as, &plr4) == MS_OK);
    T_CHECK(weights_load(k, NULL, ck, &c8, &ep_only, &pl4, &part) == MS_OK);
    T_CHECK(part.layers[1].experts.dtype == MS_DT_F8E4M3 && part.layers[1].experts.off_scale > 0);
    T_CHECK(weights_load(k, NULL, ck, &c8, &p1, &pl1, &full) == MS_OK);
    weights_t rep;
    T_CHECK(weights_load(k, NULL, ck, &c8, &ep_only, &plr4, &rep) == MS_OK);
    T_CHECK(slots_match(&c8, &pl4, 1, &part, &full) && slots_match(&c8, &plr4, 1, &rep, &full));
    /* FP8: fused only where the first part ends on a 128-row scale block */
    for (int l = 0; l < c8.num_hidden_layers; l++) {
        const wlayer_t *y = &full.layers[l];
        T_CHECK((y->qkv_a.data != NULL) == (c8.q_lora_rank > 0 && c8.q_lora_rank % 128 == 0));
        const int64_t I = y->is_moe ? (int64_t)c8.moe_intermediate_size * c8.n_shared_experts : c8.intermediate_size;
        T_CHECK(((y->is_moe ? y->sh_gate_up.data : y->gate_up.data) != NULL) == (I > 0 && I % 128 == 0));
    }
    weights_free(&part), weights_free(&full), weights_free(&rep);
    placement_free(&pl1), placement_free(&pl2), placement_free(&plr), placement_free(&pl4), placement_free(&plr4);
    free(as);
    ckpt_close(ck);
    return t_done();
}
