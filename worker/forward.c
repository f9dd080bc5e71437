/* forward.c — activation buffers, the layer loop, dense MLP and the logits /
 * sampling tail of the forward pass (see forward.h). Rounding follows
 * transformers v5 in bf16: every op output that transformers stores as a bf16
 * tensor is bf16 here too (the ops document where they round). */
#include "worker/forward.h"

#include <stdlib.h>
#include <string.h>

#include "worker/sizing.h"
#include "worker/step_io.h"

void *fwd_carve(fwd_carve_t *cv, size_t bytes)
{
    size_t o = cv->off;
    cv->off += (bytes + 255) & ~(size_t)255;
    return cv->base ? cv->base + o : NULL;
}

static int imax(int a, int b) { return a > b ? a : b; }

/* Lay out every activation; with base NULL only the size is computed. */
static void fwd_layout(fwd_t *f, char *base)
{
    fwd_carve_t cv = {base, 0};
    const size_t T = (size_t)f->T_max, B = (size_t)f->B_max, S = (size_t)f->S_max;
    const size_t P = T * (size_t)f->K, F = (size_t)imax(f->I, f->Is);
    f->inv_freq = fwd_carve(&cv, sizeof(float) * (size_t)(f->dr / 2));
    const size_t L = (size_t)f->c->num_hidden_layers, NS = f->pl ? (size_t)f->pl->n_slots : 0;
    const size_t Sl = f->pl ? (size_t)f->pl->slots_per_rank : 0, RR = Sl * (size_t)f->moe_cap;
    f->pl_log2phy = fwd_carve(&cv, 4 * L * f->E * (size_t)f->rep_cap);
    f->pl_nrep = fwd_carve(&cv, 4 * L * f->E);
    f->pl_phy2log = fwd_carve(&cv, 4 * L * NS);
    f->load = fwd_carve(&cv, 8 * L * f->E);
    f->neg_row = fwd_carve(&cv, 4 * (size_t)f->K);
    f->x = fwd_carve(&cv, 2 * T * f->D);
    f->xn = fwd_carve(&cv, 2 * T * f->D);
    /* qa and kva side by side in rows of ld_qkva, as the fused q_a|kv_a GEMM writes them */
    f->ld_qkva = f->q_lora + f->dc + f->dr;
    f->qa = fwd_carve(&cv, 2 * T * (size_t)f->ld_qkva);
    f->kva = f->qa ? f->qa + f->q_lora : NULL;
    f->q = fwd_carve(&cv, 2 * T * f->H * f->qk);
    f->att = fwd_carve(&cv, 2 * T * f->H * f->dv);
    f->of32 = fwd_carve(&cv, 4 * T * f->D);
    f->tb = fwd_carve(&cv, 2 * T * f->D);
    {   /* naive scratch and absorbed latents are used one after the other inside a layer: one region */
        size_t naive = ((2 * S * (f->dc + f->dr) + 255) & ~(size_t)255) + 2 * S * f->H * (f->dn + f->dv);
        size_t lat = ((2 * T * f->H * f->dc + 255) & ~(size_t)255) + 2 * T * f->H * f->dc;
        fwd_carve_t un = {cv.base ? cv.base + cv.off : NULL, 0};
        f->gkv = fwd_carve(&un, 2 * S * (f->dc + f->dr));
        f->kvb = fwd_carve(&un, 2 * S * f->H * (f->dn + f->dv));
        un.off = 0;
        f->qlat = fwd_carve(&un, 2 * T * f->H * f->dc);
        f->olat = fwd_carve(&un, 2 * T * f->H * f->dc);
        fwd_carve(&cv, naive > lat ? naive : lat);
    }
    f->g = fwd_carve(&cv, 2 * T * F);
    f->u = fwd_carve(&cv, 2 * T * F);
    f->rlog = fwd_carve(&cv, 4 * T * f->E);
    f->ridx = fwd_carve(&cv, 4 * P);
    f->rw = fwd_carve(&cv, 4 * P);
    comm_moe_t *m = &f->moe;
    m->slot_of_pair = fwd_carve(&cv, 4 * P);
    m->rank_in_slot = fwd_carve(&cv, 4 * P);
    m->row_of_pair = fwd_carve(&cv, 4 * P);
    m->slot_counts = fwd_carve(&cv, 4 * NS);
    m->recv_count = fwd_carve(&cv, 4 * Sl);
    m->recv = fwd_carve(&cv, 2 * RR * f->D);
    /* rows move in send order only between ranks */
    m->send = f->par.ep_size > 1 ? fwd_carve(&cv, 2 * P * f->D) : NULL;
    m->back = f->par.ep_size > 1 ? fwd_carve(&cv, 2 * P * f->D) : NULL;
    f->eout = fwd_carve(&cv, 2 * RR * f->D);
    f->moe_ws_bytes = f->E ? kern_moe_ws_bytes_all((int64_t)Sl, f->moe_cap, f->D, f->Im) : 0;
    f->moe_ws = fwd_carve(&cv, f->moe_ws_bytes);
    f->xq = fwd_carve(&cv, T * (size_t)f->Kq);
    f->xqs = fwd_carve(&cv, 4 * T * (size_t)kern_fp8_blocks(f->Kq));
    f->routed = fwd_carve(&cv, 2 * T * f->D);
    f->shared = fwd_carve(&cv, 2 * T * f->D);
    f->lastn = fwd_carve(&cv, 2 * B * f->D);
    f->lg16 = fwd_carve(&cv, 2 * B * f->V);
    f->logits = fwd_carve(&cv, 4 * B * f->V);
    /* step metadata and results: one block, pointers set per step (step_io.h) */
    step_io_layout_t io;
    step_io_layout(&io, f->T_max, f->B_max, f->B_max, f->blk_max);
    f->io_bytes = io.end;
    f->io = fwd_carve(&cv, f->io_bytes);
    f->bytes = cv.off;
}

ms_status_t fwd_placement_upload(fwd_t *f)
{
    const placement_t *pl = f->pl;
    const size_t L = (size_t)pl->n_layers, E = (size_t)pl->n_experts, R = (size_t)f->rep_cap;
    if (pl->max_rep > f->rep_cap)
        return MS_ERR(MS_ERR_INVALID, "forward: a placement with %d replicas of an expert exceeds the table's %d",
                      pl->max_rep, f->rep_cap);
    int32_t *l2p = malloc(4 * L * E * R);
    if (!l2p) return MS_ERR(MS_ERR_NOMEM, "forward: out of memory for the placement table");
    for (size_t i = 0; i < L * E; i++)
        for (size_t r = 0; r < R; r++) l2p[i * R + r] = (int)r < pl->max_rep ? pl->log2phy[i * pl->max_rep + r] : -1;
    ms_status_t st = f->k->upload(f->cx, f->pl_log2phy, l2p, 4 * L * E * R);
    if (st == MS_OK) st = f->k->upload(f->cx, f->pl_nrep, pl->n_rep, 4 * L * E);
    if (st == MS_OK) st = f->k->upload(f->cx, f->pl_phy2log, pl->phy2log, 4 * L * (size_t)pl->n_slots);
    if (st == MS_OK) st = f->k->synchronize(f->cx); /* the host copies may change after this */
    free(l2p);
    return st;
}

/* At load: the placement tables, and the load counters from zero. */
static ms_status_t fwd_upload_placement(fwd_t *f)
{
    MS_TRY(f->k->memset(f->cx, f->load, 0, 8 * (size_t)f->pl->n_layers * (size_t)f->E));
    MS_TRY(f->k->memset(f->cx, f->neg_row, 0xff, 4 * (size_t)f->K)); /* int32 -1 in every byte order */
    return fwd_placement_upload(f);
}

/* Every dimension the layout reads: fwd_create and fwd_bytes agree by construction. */
static ms_status_t fwd_dims(fwd_t *f, const mcfg_t *c, const par_t *p, const placement_t *pl, int T_max, int B_max,
                            int S_max, int blk_max, int moe_max_tokens)
{
    f->c = c, f->par = *p;
    f->D = c->hidden_size, f->V = c->vocab_size, f->H = par_heads_local(p, c);
    f->dn = c->qk_nope_head_dim, f->dr = c->qk_rope_head_dim, f->dv = c->v_head_dim, f->dc = c->kv_lora_rank;
    f->qk = f->dn + f->dr, f->q_lora = c->q_lora_rank, f->I = c->intermediate_size;
    f->E = c->n_routed_experts, f->K = c->num_experts_per_tok;
    f->Im = c->moe_intermediate_size, f->Is = c->moe_intermediate_size * c->n_shared_experts;
    f->T_max = T_max, f->B_max = B_max, f->S_max = S_max, f->blk_max = blk_max;
    f->Kq = imax(imax(f->D, f->q_lora), imax(f->H * f->dv, imax(f->I, f->Is)));
    if (f->E) {
        if (!pl || pl->n_layers != c->num_hidden_layers || pl->n_experts != f->E || pl->ep_size != p->ep_size)
            return MS_ERR(MS_ERR_INVALID, "forward: the expert placement does not match the model and layout");
        f->pl = pl;
        f->moe_cap = sizing_moe_slot_cap(moe_max_tokens, p->ep_size, T_max);
        f->moe.cap = f->moe_cap, f->moe.n_local = pl->slots_per_rank;
        f->rep_cap = imax(pl->max_rep, p->ep_size);
    }
    return MS_OK;
}

/* A fused path's switch: on unless the variable is set to 0. */
static int fwd_env_on(const char *name)
{
    const char *v = getenv(name);
    return !(v && !strcmp(v, "0"));
}

size_t fwd_bytes(const mcfg_t *c, const par_t *p, const placement_t *pl, int T_max, int B_max, int S_max, int blk_max,
                 int moe_max_tokens)
{
    fwd_t f;
    memset(&f, 0, sizeof f);
    if (fwd_dims(&f, c, p, pl, T_max, B_max, S_max, blk_max, moe_max_tokens) != MS_OK) return 0;
    fwd_layout(&f, NULL);
    return f.bytes;
}

static void fwd_destroy_side(fwd_t *f)
{
    if (f->ev_fork) f->k->event_destroy(f->ev_fork);
    if (f->ev_join) f->k->event_destroy(f->ev_join);
    if (f->side) f->k->ctx_destroy(f->side);
    f->side = NULL, f->ev_fork = f->ev_join = NULL;
}

ms_status_t fwd_create(fwd_t *f, const mcfg_t *c, const par_t *p, const kern_ops_t *k, kern_ctx_t *cx, comm_t *comm,
                       weights_t *w, kvc_t *kv, const placement_t *pl, int T_max, int B_max, int S_max, int blk_max,
                       int moe_max_tokens)
{
    ms_status_t st;
    memset(f, 0, sizeof *f);
    f->k = k, f->cx = cx, f->comm = comm, f->w = w, f->kv = kv;
    MS_TRY(rope_params_compute(c, &f->rp));
    f->fuse_combine_add = fwd_env_on("MS_FUSE_COMBINE_ADD") && k->supports_op(KERN_OP_MOE_COMBINE_ADD);
    f->fuse_norm_quant = fwd_env_on("MS_FUSE_NORM_QUANT") && k->supports_op(KERN_OP_RMSNORM_QUANT);
    f->fuse_rope_kv = fwd_env_on("MS_FUSE_ROPE_KV") && k->supports_op(KERN_OP_KV_STORE_ROPE);
    MS_TRY(fwd_dims(f, c, p, pl, T_max, B_max, S_max, blk_max, moe_max_tokens));
    fwd_layout(f, NULL);
    if (fwd_env_on("MS_SHARED_OVERLAP") && !strcmp(k->name, "cuda") && f->E > 0 && f->Is > 0 && f->fuse_combine_add) {
        /* its own workspace, as large as the main one (the shared expert's GEMMs take their scratch from it) */
        MS_TRY_GOTO(st, k->ctx_create_side(cx, cx->ws_bytes, &f->side), out_side);
        MS_TRY_GOTO(st, k->event_create(cx, &f->ev_fork), out_side);
        MS_TRY_GOTO(st, k->event_create(cx, &f->ev_join), out_side);
    }
    MS_TRY_GOTO(st, k->alloc(f->bytes, &f->mem), out_side);
    fwd_layout(f, f->mem);
    MS_TRY_GOTO(st, k->upload(cx, f->inv_freq, f->rp.inv_freq, sizeof(float) * (size_t)(f->dr / 2)), out_mem);
    if (f->E) MS_TRY_GOTO(st, fwd_upload_placement(f), out_mem);
    MS_INFO("forward: %.1f MiB of activations for %d tokens, %d sequences per step (MoE: %d slots x %d rows%s)",
            (double)f->bytes / (1 << 20), T_max, B_max, f->moe.n_local, f->moe_cap,
            f->side ? "; the shared expert on a second stream" : "");
    return MS_OK;
out_mem:
    k->free(f->mem);
out_side:
    fwd_destroy_side(f);
    memset(f, 0, sizeof *f);
    return st;
}

void fwd_destroy(fwd_t *f)
{
    if (!f || !f->k) return;
    f->k->free(f->mem);
    fwd_destroy_side(f);
    memset(f, 0, sizeof *f);
}

/* down(silu(gate(xn)) * up(xn)) into out, for n rows */
ms_status_t fwd_linear_epi(fwd_t *f, const bf16_t *x, int64_t ldx, int n, const kern_mat_t *w, void *y, ms_dtype_t ydt,
                           int64_t ldy, int requant, kern_epi_t epi)
{
    const kern_ops_t *k = f->k;
    const int32_t K = w->cols;
    kern_gemm_t g = {.x = x, .xdt = MS_DT_BF16, .ldx = ldx, .w = w, .y = y, .ydt = ydt, .ldy = ldy, .m = n, .epi = epi};
    if (!f->dense_fp8 || w->dtype != MS_DT_F8E4M3 || ydt != MS_DT_BF16 || K % KERN_FP8_BLOCK || K > f->Kq || n <= 0)
        return n > 0 ? k->gemm(f->cx, &g) : MS_OK;
    const int64_t lds = kern_fp8_blocks(K);
    const int have = f->xq_of == x && f->xq_k == K && (!requant || f->xq_fresh);
    if (!have) MS_TRY(k->act_quant(f->cx, x, ldx, n, K, f->xq, K, f->xqs, lds));
    f->xq_of = x, f->xq_k = K, f->xq_fresh = 0;
    g.x = f->xq, g.x_scale = f->xqs, g.xdt = MS_DT_F8E4M3, g.ldx = K, g.ld_xs = lds;
    return k->gemm(f->cx, &g);
}

ms_status_t fwd_norm(fwd_t *f, bf16_t *x, int64_t ldx, const bf16_t *res, const bf16_t *w, bf16_t *y, int64_t ldy,
                     int rows, int dim, const kern_mat_t *next)
{
    const kern_ops_t *k = f->k;
    const float eps = f->c->rms_norm_eps;
    if (f->xq_of == y) f->xq_of = NULL; /* y changes: xq no longer holds its codes */
    f->xq_fresh = 0;
    /* fwd_linear_epi's condition for quantizing its x, for the linear `next` of width dim */
    const int quant = f->fuse_norm_quant && f->dense_fp8 && next && next->data && next->dtype == MS_DT_F8E4M3 &&
                      next->cols == dim && dim % KERN_FP8_BLOCK == 0 && dim <= f->Kq && rows > 0;
    if (quant) {
        MS_TRY(k->rmsnorm_quant(f->cx, x, ldx, res, w, y, ldy, rows, dim, eps, f->xq, dim, f->xqs,
                                kern_fp8_blocks(dim)));
        f->xq_of = y, f->xq_k = dim, f->xq_fresh = 1;
        return MS_OK;
    }
    if (res) return k->add_rmsnorm(f->cx, x, res, w, y, rows, dim, eps);
    return k->rmsnorm(f->cx, x, ldx, w, y, ldy, rows, dim, eps);
}

ms_status_t fwd_linear(fwd_t *f, const bf16_t *x, int64_t ldx, int n, const kern_mat_t *w, void *y, ms_dtype_t ydt,
                       int64_t ldy, int requant)
{
    return fwd_linear_epi(f, x, ldx, n, w, y, ydt, ldy, requant, KERN_EPI_NONE);
}

ms_status_t fwd_mlp(fwd_t *f, const kern_mat_t *gate_up, const kern_mat_t *gate, const kern_mat_t *up,
                    const kern_mat_t *down, const bf16_t *xn, int n, bf16_t *out)
{
    const kern_ops_t *k = f->k;
    const int F = gate->rows;
    if (gate_up->data) { /* one GEMM over [gate | up] with the SiLU·mul epilogue: the same roundings */
        MS_TRY(fwd_linear_epi(f, xn, f->D, n, gate_up, f->g, MS_DT_BF16, F, 1, KERN_EPI_SILU_MUL));
        return fwd_linear(f, f->g, F, n, down, out, MS_DT_BF16, f->D, 1);
    }
    MS_TRY(fwd_linear(f, xn, f->D, n, gate, f->g, MS_DT_BF16, F, 1));
    MS_TRY(fwd_linear(f, xn, f->D, n, up, f->u, MS_DT_BF16, F, 0));
    MS_TRY(k->silu_mul(f->cx, f->g, f->u, f->g, (int64_t)n * F));
    return fwd_linear(f, f->g, F, n, down, out, MS_DT_BF16, f->D, 1);
}

ms_status_t fwd_shared_expert(fwd_t *f, const wlayer_t *y, const bf16_t *xn, int n, bf16_t *out)
{
    return fwd_mlp(f, &y->sh_gate_up, &y->sh_gate, &y->sh_up, &y->sh_down, xn, n, out);
}

void fwd_point_io(fwd_t *f, const step_io_layout_t *L)
{
    char *d = f->io;
    f->ids = (int32_t *)(d + L->ids), f->pos = (int32_t *)(d + L->pos), f->slots = (int32_t *)(d + L->slots);
    f->seqs = (kern_attn_seq_t *)(d + L->seqs), f->blocks = (int32_t *)(d + L->blocks);
    f->last_row = (int32_t *)(d + L->last_row), f->sp = (kern_sample_t *)(d + L->sp);
    f->adj = (kern_adjust_t *)(d + L->adj), f->pad = (int32_t *)(d + L->pad);
    f->tok = (int32_t *)(d + L->tok), f->lp = (float *)(d + L->lp);
    f->top_ids = (int32_t *)(d + L->top_ids), f->top_lp = (float *)(d + L->top_lp);
    f->cx->fault = (uint32_t *)(d + L->fault); /* ops' data faults land in the downloaded block */
}

ms_status_t fwd_run(fwd_t *f, const fwd_step_t *st)
{
    const kern_ops_t *k = f->k;
    const int T = st->T, D = f->D, L = f->w->n_layers;
    MS_TRY(k->embed(f->cx, f->ids, T, f->w->embed, f->V, D, f->x));
    /* Each residual add is fused with the RMSNorm that follows it (the next sublayer's input norm, or the
     * final norm after the last layer): xn always holds the normed input of what runs next. */
    /* (fwd_norm: in the dense fp8 mode the norm also quantizes xn for the FP8 linear that reads it next) */
    MS_TRY(fwd_norm(f, f->x, D, NULL, L > 0 ? f->w->layers[0].input_norm : f->w->norm, f->xn, D, T, D,
                    L > 0 ? fwd_attn_first(f, &f->w->layers[0]) : NULL));
    for (int l = 0; l < L; l++) {
        const wlayer_t *y = &f->w->layers[l];
        /* h = x + MLA(RMSNorm_input(x)) */
        MS_TRY(fwd_attention(f, l, st));
        /* the FFN's first FP8 linear on xn: the shared expert's (the router's GEMM is bf16) or the MLP's */
        const kern_mat_t *ffn_in = !y->is_moe ? fwd_mlp_first(&y->gate_up, &y->gate)
                                   : f->Is > 0 ? fwd_mlp_first(&y->sh_gate_up, &y->sh_gate)
                                               : NULL;
        MS_TRY(fwd_norm(f, f->x, D, f->tb, y->post_norm, f->xn, D, T, D, ffn_in));
        /* out = h + FFN(RMSNorm_post(h)) */
        if (y->is_moe) MS_TRY(fwd_moe(f, l, st));
        else MS_TRY(fwd_mlp(f, &y->gate_up, &y->gate, &y->up, &y->down, f->xn, T, f->tb));
        MS_TRY(fwd_norm(f, f->x, D, f->tb, l + 1 < L ? f->w->layers[l + 1].input_norm : f->w->norm, f->xn, D, T, D,
                        l + 1 < L ? fwd_attn_first(f, &f->w->layers[l + 1]) : NULL));
    }
    const int B = st->n_sample;
    /* penalty-list writes land even in a step that samples nothing (a prefill chunk) */
    if (st->n_sets > 0 && (B == 0 || !st->adjust))
        MS_TRY(k->logits_adjust(f->cx, f->logits, f->V, 0, f->V, f->adj, st->lists, st->lists_cap, st->sets,
                                st->n_sets));
    if (B == 0) return MS_OK;
    MS_TRY(k->gather_rows(f->cx, f->xn, f->last_row, B, sizeof(bf16_t) * (size_t)D, f->lastn));
    MS_TRY(kern_gemm_plain(k, f->cx, f->lastn, MS_DT_BF16, D, &f->w->lm_head, f->lg16, MS_DT_BF16, f->V, B));
    /* the sampler reads the bf16 head output as it is (exactly as its fp32 cast); logits_adjust works in
     * place on fp32 logits, so only a step that adjusts casts (engine_logits reads whichever was sampled) */
    if (!st->adjust) return k->sample(f->cx, f->lg16, MS_DT_BF16, f->V, B, f->V, f->sp, f->tok, f->lp, f->top_ids,
                                      f->top_lp);
    MS_TRY(k->cast(f->cx, f->lg16, MS_DT_BF16, f->logits, MS_DT_F32, (int64_t)B * f->V));
    MS_TRY(k->logits_adjust(f->cx, f->logits, f->V, B, f->V, f->adj, st->lists, st->lists_cap, st->sets,
                            st->n_sets));
    return k->sample(f->cx, f->logits, MS_DT_F32, f->V, B, f->V, f->sp, f->tok, f->lp, f->top_ids, f->top_lp);
}
