/* forward_moe.c — one MoE layer on f->xn, output in f->tb:
 *
 *   router (fp32 GEMM) → noaux_tc top-k → dispatch plan (pairs by expert slot)
 *   → gather rows → all-to-all over COMM_EP (rows and their slots)
 *   → local experts (grouped GEMM) → all-to-all back
 *   → combine (weights, bf16 sums in expert order, as transformers v5)
 *   + shared expert
 *
 * The combine always sums a token's expert outputs in ascending expert id on
 * the token's home rank, so every EP layout rounds exactly like the single
 * process. In attention-TP mode (tokens replicated on the TP group) each rank
 * routes only its slice of the tokens and the slices are all-gathered. The
 * host reads only the per-slot pair counts, to size the all-to-all. */
#include "worker/forward.h"

#include <string.h>

ms_status_t fwd_moe(fwd_t *f, int layer, const fwd_step_t *st)
{
    const kern_ops_t *k = f->k;
    const wlayer_t *y = &f->w->layers[layer];
    const int D = f->D, E = f->E, K = f->K, El = f->El;
    const size_t row = sizeof(bf16_t) * (size_t)D;
    const bool sliced = !f->par.attention_dp && f->par.tp_size > 1;
    const int tp = f->par.tp_size, tr = f->par.tp_rank, ep = f->par.ep_size;
    int t0 = 0, tn = st->T;
    if (sliced) t0 = (int)((int64_t)st->T * tr / tp), tn = (int)((int64_t)st->T * (tr + 1) / tp) - t0;
    const bf16_t *xs = f->xn + (size_t)t0 * D;
    bf16_t *out = f->tb + (size_t)t0 * D;

    int64_t send_rows[1024], recv_rows[1024];
    if (ep > 1024) return MS_ERR(MS_ERR_UNSUPPORTED, "moe: ep_size %d > 1024", ep);
    for (int r = 0; r < ep; r++) send_rows[r] = 0;
    if (tn > 0) {
        MS_TRY(kern_gemm_plain(k, f->cx, xs, MS_DT_BF16, D, &y->router, f->rlog, MS_DT_F32, E, tn));
        MS_TRY(k->moe_route(f->cx, f->rlog, y->router_bias, tn, E, f->c->n_group, f->c->topk_group, K,
                            f->c->norm_topk_prob, f->c->routed_scaling_factor, f->ridx, f->rw));
        MS_TRY(k->moe_plan(f->cx, f->ridx, tn, K, f->e2slot, E, E, f->tos, f->pos_of_pair, f->sos, f->slot_counts));
        MS_TRY(k->download(f->cx, f->h_counts, f->slot_counts, sizeof(int32_t) * (size_t)E));
        MS_TRY(k->gather_rows(f->cx, xs, f->tos, tn * K, row, f->send));
        MS_TRY(k->synchronize(f->cx));
        for (int sl = 0; sl < E; sl++) send_rows[sl / El] += f->h_counts[sl];
    }
    MS_TRY(comm_alltoall_counts(f->comm, COMM_EP, send_rows, recv_rows));
    int64_t R = 0;
    for (int r = 0; r < ep; r++) R += recv_rows[r];
    if (R > f->R_max) return MS_ERR(MS_ERR_INTERNAL, "moe: %lld rows received > capacity %d", (long long)R, f->R_max);
    MS_TRY(comm_alltoallv(f->comm, COMM_EP, f->send, send_rows, f->recv, recv_rows, row, f->cx));
    MS_TRY(comm_alltoallv(f->comm, COMM_EP, f->sos, send_rows, f->recv_slot, recv_rows, sizeof(int32_t), f->cx));
    MS_TRY(k->moe_experts(f->cx, f->recv, f->recv_slot, (int32_t)R, f->par.ep_rank * El, El, &y->ex_gate, &y->ex_up,
                          &y->ex_down, f->eout, f->moe_ws, f->moe_ws_bytes));
    MS_TRY(comm_alltoallv(f->comm, COMM_EP, f->eout, recv_rows, f->back, send_rows, row, f->cx));
    if (tn > 0) {
        MS_TRY(k->moe_combine(f->cx, f->back, f->pos_of_pair, f->ridx, f->rw, tn, K, D, f->routed));
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
