/* forward_mtp.c — the MTP draft passes (see forward_mtp.h): the module's
 * weights, cache and buffers, and the N passes of a step.
 *
 * Per step the host stages one small block (the successor source of each
 * row and one kern_draft_t per sampled sequence), uploaded with the main
 * pass's metadata; mtp_prep derives everything that depends on the step's
 * samples (accepted drafts, the drafting rows, the chained positions) on the
 * device, and the drafts come back with the main pass's tokens: one round
 * trip per step, and nothing a captured graph could not hold. */
#include "worker/forward_mtp.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

/* Byte offsets of the transferred block, sized for the capacities (T_max rows, B_max entries, N
 * passes), so they never move between steps (a captured graph reads them where it was captured):
 *   [drafts | acc | fault | seqs | next_src]
 *    <---- download ---->
 *                  <------- upload ------->  (next_src up to the step's T rows) */
typedef struct {
    size_t drafts, acc, fault, seqs, next_src, end;
} mtp_io_t;

static size_t al16(size_t x) { return (x + 15) & ~(size_t)15; }

static void mtp_io_layout(mtp_io_t *L, int T, int B, int N)
{
    size_t o = 0, Bs = (size_t)B;
    L->drafts = o, o = al16(o + 4 * (size_t)N * Bs);
    L->acc = o, o = al16(o + 8 * Bs);
    L->fault = o, o = al16(o + 4);
    L->seqs = o, o = al16(o + sizeof(kern_draft_t) * Bs);
    L->next_src = o, o = al16(o + 4 * (size_t)T);
    L->end = o;
}

/* The module's one device allocation, carved from base (NULL: sizes only); returns its bytes. Scalars
 * only, so worker/sizing.c computes the same bytes without a module (mtp_buffer_bytes). */
static size_t mtp_layout_at(mtp_t *t, char *base, size_t E, size_t NS, size_t R, int T, int B, int N, size_t D,
                            size_t V)
{
    fwd_carve_t cv = {base, 0};
    const size_t Bs = (size_t)B, C = (size_t)(N - 1) * Bs;
    t->pl_log2phy = fwd_carve(&cv, 4 * E * R);
    t->pl_nrep = fwd_carve(&cv, 4 * E);
    t->pl_phy2log = fwd_carve(&cv, 4 * NS);
    t->load = fwd_carve(&cv, 8 * E);
    t->eh = fwd_carve(&cv, 2 * (size_t)T * 2 * D);
    t->xn = fwd_carve(&cv, 2 * (size_t)T * D);
    t->hprev = fwd_carve(&cv, 2 * Bs * D);
    t->lg16 = fwd_carve(&cv, 2 * Bs * V);
    /* made on the device each step by mtp_prep (never transferred) */
    t->next = fwd_carve(&cv, 4 * (size_t)T);
    t->row = fwd_carve(&cv, 4 * Bs);
    t->chain_pos = fwd_carve(&cv, 4 * C);
    t->chain_slot = fwd_carve(&cv, 4 * C);
    t->chain_seqs = fwd_carve(&cv, sizeof(kern_attn_seq_t) * C);
    t->chain_pad = fwd_carve(&cv, 4 * Bs);
    /* greedy knobs (set once) and the sampler outputs nobody reads */
    t->sp = fwd_carve(&cv, sizeof(kern_sample_t) * Bs);
    t->s_lp = fwd_carve(&cv, 4 * Bs);
    t->s_top_ids = fwd_carve(&cv, 4 * Bs * KERN_MAX_LOGPROBS);
    t->s_top_lp = fwd_carve(&cv, 4 * Bs * KERN_MAX_LOGPROBS);
    mtp_io_t io;
    mtp_io_layout(&io, T, B, N);
    t->io_bytes = io.end;
    t->io_acc = io.acc, t->io_fault = io.fault, t->io_seqs = io.seqs, t->io_next_src = io.next_src;
    t->io = fwd_carve(&cv, io.end);
    return cv.off;
}

static void mtp_layout(mtp_t *t, const fwd_t *f, char *base)
{
    /* the replica table has the main model's stride (rep_cap): fwd_moe reads it through the view */
    const size_t E = (size_t)f->E, NS = f->E ? (size_t)t->pl.n_slots : 0, R = f->E ? (size_t)f->rep_cap : 0;
    t->bytes = mtp_layout_at(t, base, E, NS, R, t->T_max, t->B_max, t->N, (size_t)f->D, (size_t)f->V);
}

size_t mtp_buffer_bytes(const mcfg_t *c, int n_slots, int rep_cap, int T, int B, int N)
{
    mtp_t t;
    const size_t E = (size_t)c->n_routed_experts;
    return mtp_layout_at(&t, NULL, E, E ? (size_t)n_slots : 0, E ? (size_t)rep_cap : 0, T, B, N,
                         (size_t)c->hidden_size, (size_t)c->vocab_size);
}

ms_status_t mtp_create(mtp_t *t, const fwd_t *f, const ckpt_t *ck, int N, int max_seqs, int num_slots, int kv_blocks,
                       int block_size, ms_dtype_t kv_dtype)
{
    ms_status_t st;
    const kern_ops_t *k = f->k;
    memset(t, 0, sizeof *t);
    if (N < 1 || N > PROTO_MAX_DRAFT)
        return MS_ERR(MS_ERR_INVALID, "mtp: num_nextn_predict_layers %d is not in 1..%d", N, PROTO_MAX_DRAFT);
    /* drafting rows: one per sequence (the main pass samples more rows when it verifies) */
    t->N = N, t->T_max = f->T_max, t->B_max = max_seqs < f->B_max ? max_seqs : f->B_max;
    const mcfg_t *c = f->c;
    if (f->E) MS_TRY(placement_create(1, f->E, num_slots, f->par.ep_size, NULL, &t->pl));
    MS_TRY_GOTO(st, weights_load_mtp(k, f->cx, ck, c, &f->par, f->E ? &t->pl : NULL, f->w, 0, &t->m), out_pl);
    MS_TRY_GOTO(st, kvc_create(k, 1, kv_blocks, block_size, kv_dtype, c->kv_lora_rank, c->qk_rope_head_dim, &t->kv),
                out_w);
    mtp_layout(t, f, NULL);
    MS_TRY_GOTO(st, k->alloc(t->bytes, &t->mem), out_kv);
    mtp_layout(t, f, t->mem);
    MS_TRY_GOTO(st, k->host_alloc(t->io_bytes, &t->stage), out_mem);
    if (f->E) {
        /* the main model's upload, on a view whose tables are the module's (the same replica stride) */
        fwd_t v = *f;
        v.pl = &t->pl, v.pl_log2phy = t->pl_log2phy, v.pl_nrep = t->pl_nrep, v.pl_phy2log = t->pl_phy2log;
        MS_TRY_GOTO(st, fwd_placement_upload(&v), out_stage);
        MS_TRY_GOTO(st, k->memset(f->cx, t->load, 0, 8 * (size_t)f->E), out_stage);
    }
    {
        /* drafts are greedy: the sampler's knobs never change (the staging block lends its bytes once) */
        const size_t n = sizeof(kern_sample_t) * (size_t)t->B_max;
        kern_sample_t *sp = malloc(n);
        if (!sp) MS_TRY_GOTO(st, MS_ERR(MS_ERR_NOMEM, "mtp: out of memory"), out_stage);
        for (int j = 0; j < t->B_max; j++) sp[j] = (kern_sample_t){.temperature = 0.0f, .top_p = 1.0f, .mask_token = -1};
        st = k->upload(f->cx, t->sp, sp, n);
        if (st == MS_OK) st = k->synchronize(f->cx);
        free(sp);
        if (st != MS_OK) goto out_stage;
    }
    MS_TRY_GOTO(st, k->synchronize(f->cx), out_stage);
    if (c->num_nextn_predict_layers > 1)
        MS_INFO("mtp: the checkpoint has %d MTP modules; module 0 drafts every position (chained)",
                c->num_nextn_predict_layers);
    MS_INFO("mtp: %d draft token%s per step, module layer %d, %.1f MiB of buffers, KV %.1f MiB", N, N > 1 ? "s" : "",
            t->m.layer, (double)t->bytes / (1 << 20), (double)t->kv.layer_bytes / (1 << 20));
    return MS_OK;
out_stage:
    k->host_free(t->stage);
out_mem:
    k->free(t->mem);
out_kv:
    kvc_destroy(&t->kv);
out_w:
    weights_free_mtp(&t->m);
out_pl:
    placement_free(&t->pl);
    memset(t, 0, sizeof *t);
    return st;
}

void mtp_destroy(mtp_t *t, const kern_ops_t *k)
{
    if (!t || !t->N) return;
    k->host_free(t->stage);
    k->free(t->mem);
    kvc_destroy(&t->kv);
    weights_free_mtp(&t->m);
    placement_free(&t->pl);
    memset(t, 0, sizeof *t);
}

void mtp_step_begin(mtp_t *t, int T, int n_d, mtp_step_t *s)
{
    mtp_io_t L;
    mtp_io_layout(&L, t->T_max, t->B_max, t->N);
    char *h = t->stage;
    *s = (mtp_step_t){
        .T = T,
        .n_d = n_d,
        .next_src = (int32_t *)(h + L.next_src),
        .seqs = (kern_draft_t *)(h + L.seqs),
        .drafts = (const int32_t *)(h + L.drafts),
        .acc = (const int32_t *)(h + L.acc),
        .fault = (uint32_t *)(h + L.fault),
    };
}

void mtp_pad(mtp_step_t *s, int r_from, int r_to, int e_from, int e_to)
{
    for (int r = r_from; r < r_to; r++) s->next_src[r] = -1;
    for (int i = e_from; i < e_to; i++) s->seqs[i] = (kern_draft_t){.r0 = -1};
}

ms_status_t mtp_upload(mtp_t *t, const fwd_t *f, const mtp_step_t *s)
{
    mtp_io_t L;
    mtp_io_layout(&L, t->T_max, t->B_max, t->N);
    *s->fault = 0;
    return f->k->upload(f->cx, (char *)t->io + L.fault, (char *)t->stage + L.fault,
                        L.next_src + 4 * (size_t)s->T - L.fault);
}

ms_status_t mtp_download(mtp_t *t, const fwd_t *f)
{
    mtp_io_t L;
    mtp_io_layout(&L, t->T_max, t->B_max, t->N);
    return f->k->download(f->cx, t->stage, t->io, L.fault + 4);
}

/* The module's decoder block on v->x (its normed input already in v->xn),
 * then the shared head's norm into v->xn; v->x keeps the output residual. */
static ms_status_t mtp_block(fwd_t *v, const fwd_step_t *st)
{
    const kern_ops_t *k = v->k;
    const wlayer_t *y = &v->w->layers[0];
    const float eps = v->c->rms_norm_eps;
    MS_TRY(fwd_attention(v, 0, st));
    if (st->T > 0) MS_TRY(k->add_rmsnorm(v->cx, v->x, v->tb, y->post_norm, v->xn, st->T, v->D, eps));
    if (y->is_moe) MS_TRY(fwd_moe(v, 0, st));
    else if (st->T > 0) MS_TRY(fwd_mlp(v, &y->gate_up, &y->gate, &y->up, &y->down, v->xn, st->T, v->tb));
    if (st->T > 0) MS_TRY(k->add_rmsnorm(v->cx, v->x, v->tb, v->w->norm, v->xn, st->T, v->D, eps));
    return MS_OK;
}

/* x = eh_proj([RMSNorm_e(Embed(ids)) ; RMSNorm_h(h)]) for n rows, then xn = RMSNorm_input(x). */
static ms_status_t mtp_input(mtp_t *t, fwd_t *v, const int32_t *ids, const bf16_t *h, int n)
{
    const kern_ops_t *k = v->k;
    const int D = v->D;
    const float eps = v->c->rms_norm_eps;
    MS_TRY(k->embed(v->cx, ids, n, t->m.w.embed, v->V, D, v->tb));
    MS_TRY(k->rmsnorm(v->cx, v->tb, D, t->m.enorm, t->eh, 2 * D, n, D, eps));
    MS_TRY(k->rmsnorm(v->cx, h, D, t->m.hnorm, t->eh + D, 2 * D, n, D, eps));
    MS_TRY(kern_gemm_plain(k, v->cx, t->eh, MS_DT_BF16, 2 * D, &t->m.eh_proj, v->x, MS_DT_BF16, D, n));
    return k->rmsnorm(v->cx, v->x, D, t->m.w.layers[0].input_norm, v->xn, D, n, D, eps);
}

/* Greedy drafts of n rows of xn (gathered by rows, or rows 0..n-1 when rows is NULL) into out. */
static ms_status_t mtp_head(mtp_t *t, fwd_t *v, const int32_t *rows, int n, int32_t *out)
{
    const kern_ops_t *k = v->k;
    const bf16_t *src = v->xn;
    if (rows) {
        MS_TRY(k->gather_rows(v->cx, v->xn, rows, n, sizeof(bf16_t) * (size_t)v->D, v->lastn));
        src = v->lastn;
    }
    MS_TRY(kern_gemm_plain(k, v->cx, src, MS_DT_BF16, v->D, &t->m.w.lm_head, t->lg16, MS_DT_BF16, v->V, n));
    return k->sample(v->cx, t->lg16, MS_DT_BF16, v->V, n, v->V, t->sp, out, t->s_lp, t->s_top_ids, t->s_top_lp);
}

/* The N passes (mtp_run) on view v, with the module's fault word current. */
static ms_status_t mtp_passes(mtp_t *t, fwd_t *f, fwd_t *v, const fwd_step_t *st, int n_d, int32_t *drafts)
{
    const kern_ops_t *k = f->k;
    const size_t row = sizeof(bf16_t) * (size_t)f->D;
    const kern_mtp_prep_t pp = {
        .next_src = (const int32_t *)((char *)t->io + t->io_next_src), .T = st->T,
        .seqs = (const kern_draft_t *)((char *)t->io + t->io_seqs), .n = n_d, .N = t->N,
        .block_size = f->kv->block_size, .ids = f->ids, .tok = f->tok, .blocks = f->blocks,
        .next = t->next, .row = t->row, .acc = (int32_t *)((char *)t->io + t->io_acc), .chain_pos = t->chain_pos,
        .chain_slot = t->chain_slot, .chain_seqs = t->chain_seqs, .chain_pad = t->chain_pad,
    };
    if (st->T > 0 || n_d > 0) MS_TRY(k->mtp_prep(f->cx, &pp));
    /* pass 1: every row of the step, on the main model's final-normed hidden rows */
    if (st->T > 0) MS_TRY(mtp_input(t, v, t->next, f->xn, st->T));
    MS_TRY(mtp_block(v, st));
    if (n_d > 0) {
        MS_TRY(mtp_head(t, v, t->row, n_d, drafts));
        MS_TRY(k->gather_rows(f->cx, v->x, t->row, n_d, row, t->hprev));
    }
    /* passes 2..N: one row per entry, chained on the previous pass */
    v->pad = t->chain_pad;
    for (int p = 1; p < t->N; p++) {
        const size_t o = (size_t)(p - 1) * (size_t)n_d;
        fwd_step_t cs = {.T = n_d, .n_abs = n_d, .n_sample = n_d, .padded = st->padded};
        v->pos = t->chain_pos + o, v->slots = t->chain_slot + o, v->seqs = t->chain_seqs + o;
        if (n_d > 0) MS_TRY(mtp_input(t, v, drafts + (size_t)(p - 1) * n_d, t->hprev, n_d));
        MS_TRY(mtp_block(v, &cs));
        if (n_d > 0) {
            MS_TRY(mtp_head(t, v, NULL, n_d, drafts + (size_t)p * n_d));
            MS_TRY(k->copy(f->cx, t->hprev, v->x, row * (size_t)n_d));
        }
    }
    return MS_OK;
}

ms_status_t mtp_run(mtp_t *t, fwd_t *f, const fwd_step_t *st, int n_d)
{
    /* A view of the forward pass whose weights, cache and placement are the module's. */
    fwd_t v = *f;
    v.w = &t->m.w, v.kv = &t->kv;
    v.xn = t->xn; /* its own normed rows: the main pass's f->xn stays readable (prompt logprobs after the passes) */
    if (f->E) v.pl = &t->pl, v.pl_log2phy = t->pl_log2phy, v.pl_nrep = t->pl_nrep, v.pl_phy2log = t->pl_phy2log;
    v.load = t->load;
    /* the module's data faults go to its own word: the main pass's are traced to sequences on their own */
    uint32_t *main_fault = f->cx->fault;
    f->cx->fault = (uint32_t *)((char *)t->io + t->io_fault);
    ms_status_t st2 = mtp_passes(t, f, &v, st, n_d, (int32_t *)t->io);
    f->cx->fault = main_fault;
    return st2;
}
