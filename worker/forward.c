/* forward.c — activation buffers, the layer loop, dense MLP and the logits /
 * sampling tail of the forward pass (see forward.h). Rounding follows
 * transformers v5 in bf16: every op output that transformers stores as a bf16
 * tensor is bf16 here too (the ops document where they round). */
#include "worker/forward.h"

#include <stdlib.h>
#include <string.h>

#include "worker/step_io.h"

typedef struct {
    char *base;
    size_t off;
} carve_t;

static void *carve(carve_t *cv, size_t bytes)
{
    size_t o = cv->off;
    cv->off += (bytes + 255) & ~(size_t)255;
    return cv->base ? cv->base + o : NULL;
}

static int imax(int a, int b) { return a > b ? a : b; }

/* Lay out every activation; with base NULL only the size is computed. */
static void fwd_layout(fwd_t *f, char *base)
{
    carve_t cv = {base, 0};
    const size_t T = (size_t)f->T_max, B = (size_t)f->B_max, S = (size_t)f->S_max, R = (size_t)f->R_max;
    const size_t P = T * (size_t)f->K, F = (size_t)imax(f->I, f->Is);
    f->inv_freq = carve(&cv, sizeof(float) * (size_t)(f->dr / 2));
    f->e2slot = carve(&cv, sizeof(int32_t) * (size_t)f->E);
    f->x = carve(&cv, 2 * T * f->D);
    f->xn = carve(&cv, 2 * T * f->D);
    f->qa = carve(&cv, 2 * T * (size_t)f->q_lora);
    f->q = carve(&cv, 2 * T * f->H * f->qk);
    f->kva = carve(&cv, 2 * T * (f->dc + f->dr));
    f->att = carve(&cv, 2 * T * f->H * f->dv);
    f->of32 = carve(&cv, 4 * T * f->D);
    f->tb = carve(&cv, 2 * T * f->D);
    f->gkv = carve(&cv, 2 * S * (f->dc + f->dr));
    f->kvb = carve(&cv, 2 * S * f->H * (f->dn + f->dv));
    f->g = carve(&cv, 2 * T * F);
    f->u = carve(&cv, 2 * T * F);
    f->rlog = carve(&cv, 4 * T * f->E);
    f->ridx = carve(&cv, 4 * P);
    f->rw = carve(&cv, 4 * P);
    f->tos = carve(&cv, 4 * P);
    f->pos_of_pair = carve(&cv, 4 * P);
    f->sos = carve(&cv, 4 * P);
    f->slot_counts = carve(&cv, 4 * (size_t)f->E);
    f->recv_slot = carve(&cv, 4 * R);
    f->send = carve(&cv, 2 * P * f->D);
    f->back = carve(&cv, 2 * P * f->D);
    f->recv = carve(&cv, 2 * R * f->D);
    f->eout = carve(&cv, 2 * R * f->D);
    f->moe_ws_bytes = f->E ? kern_moe_ws_bytes((int64_t)R, f->D, f->Im, f->El) : 0;
    f->moe_ws = carve(&cv, f->moe_ws_bytes);
    f->routed = carve(&cv, 2 * T * f->D);
    f->shared = carve(&cv, 2 * T * f->D);
    f->last = carve(&cv, 2 * B * f->D);
    f->lastn = carve(&cv, 2 * B * f->D);
    f->lg16 = carve(&cv, 2 * B * f->V);
    f->logits = carve(&cv, 4 * B * f->V);
    /* step metadata and results: one block, pointers set per step (step_io.h) */
    step_io_layout_t io;
    step_io_layout(&io, f->T_max, f->B_max, f->B_max, f->blk_max);
    f->io_bytes = io.end;
    f->io = carve(&cv, f->io_bytes);
    f->bytes = cv.off;
}

/* Every dimension the layout reads (fwd_create and fwd_bytes agree by construction). */
static void fwd_dims(fwd_t *f, const mcfg_t *c, const par_t *p, int T_max, int B_max, int S_max, int blk_max,
                     int64_t R_max)
{
    f->D = c->hidden_size, f->V = c->vocab_size, f->H = par_heads_local(p, c);
    f->dn = c->qk_nope_head_dim, f->dr = c->qk_rope_head_dim, f->dv = c->v_head_dim, f->dc = c->kv_lora_rank;
    f->qk = f->dn + f->dr, f->q_lora = c->q_lora_rank, f->I = c->intermediate_size;
    f->E = c->n_routed_experts, f->K = c->num_experts_per_tok, f->El = par_experts_local(p, c);
    f->Im = c->moe_intermediate_size, f->Is = c->moe_intermediate_size * c->n_shared_experts;
    f->T_max = T_max, f->B_max = B_max, f->S_max = S_max, f->blk_max = blk_max;
    f->R_max = (int)R_max;
}

size_t fwd_bytes(const mcfg_t *c, const par_t *p, int T_max, int B_max, int S_max, int blk_max, int64_t R_max)
{
    fwd_t f;
    memset(&f, 0, sizeof f);
    fwd_dims(&f, c, p, T_max, B_max, S_max, blk_max, R_max);
    fwd_layout(&f, NULL);
    return f.bytes;
}

ms_status_t fwd_create(fwd_t *f, const mcfg_t *c, const par_t *p, const kern_ops_t *k, kern_ctx_t *cx, comm_t *comm,
                       weights_t *w, kvc_t *kv, int T_max, int B_max, int S_max, int blk_max, int64_t R_max)
{
    ms_status_t st;
    memset(f, 0, sizeof *f);
    f->c = c, f->par = *p, f->k = k, f->cx = cx, f->comm = comm, f->w = w, f->kv = kv;
    MS_TRY(rope_params_compute(c, &f->rp));
    if (R_max > (1 << 30)) return MS_ERR(MS_ERR_INVALID, "forward: MoE receive capacity %lld rows is too large", (long long)R_max);
    fwd_dims(f, c, p, T_max, B_max, S_max, blk_max, R_max);
    f->h_counts = calloc((size_t)(f->E ? f->E : 1), sizeof(int32_t));
    if (!f->h_counts) return MS_ERR(MS_ERR_NOMEM, "forward: out of memory");
    fwd_layout(f, NULL);
    MS_TRY_GOTO(st, k->alloc(f->bytes, &f->mem), out_counts);
    fwd_layout(f, f->mem);
    MS_TRY_GOTO(st, k->upload(cx, f->inv_freq, f->rp.inv_freq, sizeof(float) * (size_t)(f->dr / 2)), out_mem);
    if (f->E) {
        int32_t *e2s = malloc(sizeof(int32_t) * (size_t)f->E);
        if (!e2s) {
            st = MS_ERR(MS_ERR_NOMEM, "forward: out of memory");
            goto out_mem;
        }
        for (int e = 0; e < f->E; e++) e2s[e] = par_expert_slot(p, c, e);
        st = k->upload(cx, f->e2slot, e2s, sizeof(int32_t) * (size_t)f->E);
        if (st == MS_OK) st = k->synchronize(cx);
        free(e2s);
        if (st != MS_OK) goto out_mem;
    }
    MS_INFO("forward: %.1f MiB of activations for %d tokens, %d sequences, %d MoE receive rows, %d naive-attention "
            "rows per step", (double)f->bytes / (1 << 20), T_max, B_max, f->R_max, S_max);
    return MS_OK;
out_mem:
    k->free(f->mem);
out_counts:
    free(f->h_counts);
    memset(f, 0, sizeof *f);
    return st;
}

void fwd_destroy(fwd_t *f)
{
    if (!f || !f->k) return;
    f->k->free(f->mem);
    free(f->h_counts);
    memset(f, 0, sizeof *f);
}

/* down(silu(gate(xn)) * up(xn)) into out, for n rows */
static ms_status_t fwd_mlp(fwd_t *f, const kern_mat_t *gate, const kern_mat_t *up, const kern_mat_t *down,
                           const bf16_t *xn, int n, bf16_t *out)
{
    const kern_ops_t *k = f->k;
    const int F = gate->rows;
    MS_TRY(k->gemm(f->cx, xn, MS_DT_BF16, f->D, gate, f->g, MS_DT_BF16, F, n));
    MS_TRY(k->gemm(f->cx, xn, MS_DT_BF16, f->D, up, f->u, MS_DT_BF16, F, n));
    MS_TRY(k->silu_mul(f->cx, f->g, f->u, f->g, (int64_t)n * F));
    return k->gemm(f->cx, f->g, MS_DT_BF16, F, down, out, MS_DT_BF16, f->D, n);
}

ms_status_t fwd_shared_expert(fwd_t *f, const wlayer_t *y, const bf16_t *xn, int n, bf16_t *out)
{
    return fwd_mlp(f, &y->sh_gate, &y->sh_up, &y->sh_down, xn, n, out);
}

ms_status_t fwd_run(fwd_t *f, const fwd_step_t *st)
{
    const kern_ops_t *k = f->k;
    const int T = st->T, D = f->D;
    const float eps = f->c->rms_norm_eps;
    MS_TRY(k->embed(f->cx, f->ids, T, f->w->embed, f->V, D, f->x));
    for (int l = 0; l < f->w->n_layers; l++) {
        const wlayer_t *y = &f->w->layers[l];
        /* h = x + MLA(RMSNorm_input(x)) */
        MS_TRY(fwd_attention(f, l, st));
        MS_TRY(k->add(f->cx, f->x, f->tb, f->x, (int64_t)T * D));
        /* out = h + FFN(RMSNorm_post(h)) */
        MS_TRY(k->rmsnorm(f->cx, f->x, D, y->post_norm, f->xn, D, T, D, eps));
        if (y->is_moe) MS_TRY(fwd_moe(f, l, st));
        else MS_TRY(fwd_mlp(f, &y->gate, &y->up, &y->down, f->xn, T, f->tb));
        MS_TRY(k->add(f->cx, f->x, f->tb, f->x, (int64_t)T * D));
    }
    if (st->n_sample == 0) return MS_OK;
    const int B = st->n_sample;
    MS_TRY(k->gather_rows(f->cx, f->x, f->last_row, B, sizeof(bf16_t) * (size_t)D, f->last));
    MS_TRY(k->rmsnorm(f->cx, f->last, D, f->w->norm, f->lastn, D, B, D, eps));
    MS_TRY(k->gemm(f->cx, f->lastn, MS_DT_BF16, D, &f->w->lm_head, f->lg16, MS_DT_BF16, f->V, B));
    MS_TRY(k->cast(f->cx, f->lg16, MS_DT_BF16, f->logits, MS_DT_F32, (int64_t)B * f->V));
    return k->sample(f->cx, f->logits, f->V, B, f->V, f->sp, f->tok, f->lp, f->top_ids, f->top_lp);
}
