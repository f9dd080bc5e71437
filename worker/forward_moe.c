/* forward_moe.c — one MoE layer on f->xn, output in f->tb:
 *
 *   router (fp32 GEMM) → noaux_tc top-k
 *   → comm_moe_dispatch over COMM_EP (the layer's placement picks a replica
 *     and slot per (token, k); rows land grouped by local slot in
 *     [slots, cap, D] with a device count per slot; load counters bumped)
 *   → local experts (masked grouped GEMM over the slot blocks)
 *   → comm_moe_combine (rows home; weights, fp32 sum in ascending expert id,
 *     one rounding, as transformers v5)
 *   + shared expert (inside the combine: moe_combine_add, unless
 *     MS_FUSE_COMBINE_ADD=0 — then after it, as an add); on CUDA it runs on a
 *     second stream beside the router, dispatch and routed experts
 *     (MS_SHARED_OVERLAP=0: in line, before the combine)
 *
 * The combine always sums a token's expert outputs in ascending expert id on
 * the token's home rank, and replicas are identical copies on row-independent
 * GEMMs, so every EP layout and every placement rounds exactly like the single
 * process. In attention-TP mode (tokens replicated on the TP group) each rank
 * routes only its slice of the tokens and the slices are all-gathered. No
 * count is read on the host here: the layer issues no download and no
 * synchronize of its own. */
#include "worker/forward.h"

/* The device placement tables of one layer. */
static kern_moe_place_t fwd_layer_place(const fwd_t *f, int layer)
{
    const placement_t *pl = f->pl;
    return (kern_moe_place_t){
        .log2phy = f->pl_log2phy + (size_t)layer * f->E * f->rep_cap,
        .n_rep = f->pl_nrep + (size_t)layer * f->E,
        .E = f->E,
        .max_rep = f->rep_cap,
        .n_slots = pl->n_slots,
        .slots_per_rank = pl->slots_per_rank,
    };
}

ms_status_t fwd_moe(fwd_t *f, int layer, const fwd_step_t *st)
{
    const kern_ops_t *k = f->k;
    const wlayer_t *y = &f->w->layers[layer];
    const int D = f->D, E = f->E, K = f->K;
    const size_t row = sizeof(bf16_t) * (size_t)D;
    const bool sliced = !f->par.attention_dp && f->par.tp_size > 1;
    const int tp = f->par.tp_size, tr = f->par.tp_rank;
    int t0 = 0, tn = st->T;
    if (sliced) t0 = (int)((int64_t)st->T * tr / tp), tn = (int)((int64_t)st->T * (tr + 1) / tp) - t0;
    const bf16_t *xs = f->xn + (size_t)t0 * D;
    bf16_t *out = f->tb + (size_t)t0 * D;

    /* the shared expert forked onto the side stream (MS_SHARED_OVERLAP): it reads xs (and the codes the norm
     * wrote into xq) and writes g, u, xq and shared, which nothing on the main stream touches before the join */
    const bool fork = f->side && tn > 0 && f->Is > 0 && f->fuse_combine_add;
    if (fork) {
        kern_ctx_t *main_cx = f->cx;
        f->side->fault = main_cx->fault; /* faults land where the main stream's do now (the MTP module repoints) */
        MS_TRY(k->event_record(main_cx, f->ev_fork));
        MS_TRY(k->event_wait(f->side, f->ev_fork));
        f->cx = f->side;
        const ms_status_t st_sh = fwd_shared_expert(f, y, xs, tn, f->shared);
        f->cx = main_cx;
        MS_TRY(st_sh);
        MS_TRY(k->event_record(f->side, f->ev_join));
    }
    if (tn > 0) {
        MS_TRY(kern_gemm_plain(k, f->cx, xs, MS_DT_BF16, D, &y->router, f->rlog, MS_DT_F32, E, tn));
        MS_TRY(k->moe_route(f->cx, f->rlog, y->router_bias, tn, E, f->c->n_group, f->c->topk_group, K,
                            f->c->norm_topk_prob, f->c->routed_scaling_factor, f->ridx, f->rw));
        /* padding rows route nowhere: their K ids become -1 (row 0 of neg_row), real rows are left */
        if (st->padded)
            MS_TRY(k->gather_rows(f->cx, f->neg_row, f->pad + t0, tn, sizeof(int32_t) * (size_t)K, f->ridx));
    }
    comm_moe_t *m = &f->moe;
    m->idx = f->ridx, m->w = f->rw, m->T = tn, m->K = K, m->D = D;
    m->place = fwd_layer_place(f, layer);
    m->load = f->load + (size_t)layer * E;
    /* collective over COMM_EP: a rank with no tokens still takes part */
    MS_TRY(comm_moe_dispatch(f->comm, COMM_EP, m, xs, f->cx));
    /* the rows a slot is expected to get: every EP rank's tn tokens times top-k over the E experts (~32 at an
     * R1 decode batch of 128 a rank, against a slot capacity of 512); the CUDA grouped GEMM picks its token
     * block by it, a hint only: any count is computed whole */
    kern_moe_slots_t ex = y->experts;
    const int64_t per = ((int64_t)tn * (f->par.ep_size > 1 ? f->par.ep_size : 1) * K + E - 1) / E;
    ex.rows_hint = (int32_t)(per < 1 ? 1 : per > m->cap ? m->cap : per);
    MS_TRY(k->moe_experts(f->cx, m->recv, m->recv_count, m->n_local, m->cap, &ex, f->eout, f->moe_ws,
                          f->moe_ws_bytes));
    /* The shared expert's output added inside the combine (moe_combine_add, the same two roundings as
     * combine then add): it runs first, into f->shared, which no part of the combine reads or writes
     * (its scratch g/u/xq are the dense path's; the combine reads eout, the plan and its transport's
     * buffers), and the sum lands in out directly. */
    m->add = NULL;
    if (fork) {
        MS_TRY(k->event_wait(f->cx, f->ev_join));
        m->add = f->shared;
    } else if (tn > 0 && f->Is > 0 && f->fuse_combine_add) {
        MS_TRY(fwd_shared_expert(f, y, xs, tn, f->shared));
        m->add = f->shared;
    }
    MS_TRY(comm_moe_combine(f->comm, COMM_EP, m, f->eout, m->add ? out : f->routed, f->cx));
    if (tn > 0 && !m->add) {
        if (f->Is > 0) {
            MS_TRY(fwd_shared_expert(f, y, xs, tn, f->shared));
            MS_TRY(k->add(f->cx, f->routed, f->shared, out, (int64_t)tn * D));
        } else {
            MS_TRY(k->copy(f->cx, out, f->routed, (size_t)tn * row));
        }
    }
    if (sliced) {
        int64_t rows[1024];
        if (tp > 1024) return MS_ERR(MS_ERR_UNSUPPORTED, "moe: tp_size %d > 1024", tp);
        for (int r = 0; r < tp; r++)
            rows[r] = (int64_t)st->T * (r + 1) / tp - (int64_t)st->T * r / tp;
        MS_TRY(comm_allgatherv(f->comm, COMM_TP, out, f->tb, rows, row, f->cx));
    }
    return MS_OK;
}
