/* forward_mtp.c — the MTP draft passes (see forward_mtp.h): the module's
 * weights, cache and buffers, and the N passes of a step.
 *
 * Per step the host stages one block (mtp_io_t: pass 1's tokens, the draft
 * rows, greedy sampling knobs, the chained passes' positions, cache rows and
 * attention descriptors), uploads it once, and downloads the drafts once:
 * with the main pass's upload and download that is two round trips per step
 * (the second needs the accepted lengths, which the host computes from the
 * main pass's samples). */
#include "worker/forward_mtp.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

/* Byte offsets of the staged block, sized for the capacities (T_max rows,
 * B_max drafting seqs, N passes), so they never move between steps. */
typedef struct {
    size_t next, row, sp, chain_pos, chain_slot, chain_seqs; /* uploaded: [0, drafts) */
    size_t drafts;                                                 /* downloaded */
    size_t lp, top_ids, top_lp;                                    /* sampler outputs nobody reads */
    size_t end;
} mtp_io_t;

static size_t al16(size_t x) { return (x + 15) & ~(size_t)15; }

static void mtp_io_layout(mtp_io_t *L, int T, int B, int N)
{
    size_t o = 0, Bs = (size_t)B, C = (size_t)(N - 1) * Bs;
    L->next = o, o = al16(o + 4 * (size_t)T);
    L->row = o, o = al16(o + 4 * Bs);
    L->sp = o, o = al16(o + sizeof(kern_sample_t) * Bs);
    L->chain_pos = o, o = al16(o + 4 * C);
    L->chain_slot = o, o = al16(o + 4 * C);
    L->chain_seqs = o, o = al16(o + sizeof(kern_attn_seq_t) * C);
    L->drafts = o, o = al16(o + 4 * (size_t)N * Bs);
    L->lp = o, o = al16(o + 4 * Bs);
    L->top_ids = o, o = al16(o + 4 * Bs * KERN_MAX_LOGPROBS);
    L->top_lp = o, o = al16(o + 4 * Bs * KERN_MAX_LOGPROBS);
    L->end = o;
}

/* The module's one device allocation, carved from base (NULL: sizes only); returns its bytes. Scalars
 * only, so worker/sizing.c computes the same bytes without a module (mtp_buffer_bytes). */
static size_t mtp_layout_at(mtp_t *t, char *base, size_t E, size_t NS, size_t R, int T, int B, int N, size_t D,
                            size_t V)
{
    fwd_carve_t cv = {base, 0};
    t->pl_log2phy = fwd_carve(&cv, 4 * E * R);
    t->pl_nrep = fwd_carve(&cv, 4 * E);
    t->pl_phy2log = fwd_carve(&cv, 4 * NS);
    t->load = fwd_carve(&cv, 8 * E);
    t->eh = fwd_carve(&cv, 2 * (size_t)T * 2 * D);
    t->hprev = fwd_carve(&cv, 2 * (size_t)B * D);
    t->lg16 = fwd_carve(&cv, 2 * (size_t)B * V);
    t->logits = fwd_carve(&cv, 4 * (size_t)B * V);
    mtp_io_t io;
    mtp_io_layout(&io, T, B, N);
    t->io_bytes = io.end;
    t->io = fwd_carve(&cv, io.end);
    return cv.off;
}

static void mtp_layout(mtp_t *t, const fwd_t *f, char *base)
{
    const size_t E = (size_t)f->E, NS = f->E ? (size_t)t->pl.n_slots : 0, R = f->E ? (size_t)t->pl.max_rep : 0;
    t->bytes = mtp_layout_at(t, base, E, NS, R, t->T_max, t->B_max, t->N, (size_t)f->D, (size_t)f->V);
}

size_t mtp_buffer_bytes(const mcfg_t *c, int n_slots, int max_rep, int T, int B, int N)
{
    mtp_t t;
    const size_t E = (size_t)c->n_routed_experts;
    return mtp_layout_at(&t, NULL, E, E ? (size_t)n_slots : 0, E ? (size_t)max_rep : 0, T, B, N,
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
        const size_t E = (size_t)f->E;
        MS_TRY_GOTO(st, k->upload(f->cx, t->pl_log2phy, t->pl.log2phy, 4 * E * (size_t)t->pl.max_rep), out_stage);
        MS_TRY_GOTO(st, k->upload(f->cx, t->pl_nrep, t->pl.n_rep, 4 * E), out_stage);
        MS_TRY_GOTO(st, k->upload(f->cx, t->pl_phy2log, t->pl.phy2log, 4 * (size_t)t->pl.n_slots), out_stage);
        MS_TRY_GOTO(st, k->memset(f->cx, t->load, 0, 8 * E), out_stage);
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
        .next = (int32_t *)(h + L.next),
        .row = (int32_t *)(h + L.row),
        .chain_pos = (int32_t *)(h + L.chain_pos),
        .chain_slot = (int32_t *)(h + L.chain_slot),
        .chain_seqs = (kern_attn_seq_t *)(h + L.chain_seqs),
        .drafts = (int32_t *)(h + L.drafts),
    };
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
    else if (st->T > 0) MS_TRY(fwd_mlp(v, &y->gate, &y->up, &y->down, v->xn, st->T, v->tb));
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
static ms_status_t mtp_head(mtp_t *t, fwd_t *v, const int32_t *rows, int n, const mtp_io_t *L, int32_t *out)
{
    const kern_ops_t *k = v->k;
    char *d = t->io;
    const bf16_t *src = v->xn;
    if (rows) {
        MS_TRY(k->gather_rows(v->cx, v->xn, rows, n, sizeof(bf16_t) * (size_t)v->D, v->lastn));
        src = v->lastn;
    }
    MS_TRY(kern_gemm_plain(k, v->cx, src, MS_DT_BF16, v->D, &t->m.w.lm_head, t->lg16, MS_DT_BF16, v->V, n));
    MS_TRY(k->cast(v->cx, t->lg16, MS_DT_BF16, t->logits, MS_DT_F32, (int64_t)n * v->V));
    return k->sample(v->cx, t->logits, v->V, n, v->V, (const kern_sample_t *)(d + L->sp), out, (float *)(d + L->lp),
                     (int32_t *)(d + L->top_ids), (float *)(d + L->top_lp));
}

ms_status_t mtp_run(mtp_t *t, fwd_t *f, const fwd_step_t *st, mtp_step_t *s)
{
    const kern_ops_t *k = f->k;
    const int n_d = s->n_d, D = f->D;
    const size_t row = sizeof(bf16_t) * (size_t)D;
    mtp_io_t L;
    mtp_io_layout(&L, t->T_max, t->B_max, t->N);
    char *h = t->stage, *d = t->io;
    kern_sample_t *sp = (kern_sample_t *)(h + L.sp);
    for (int j = 0; j < n_d; j++)
        sp[j] = (kern_sample_t){.temperature = 0.0f, .top_p = 1.0f, .mask_token = -1};
    MS_TRY(k->upload(f->cx, d, h, L.drafts));

    /* A view of the forward pass whose weights, cache and placement are the module's. */
    fwd_t v = *f;
    v.w = &t->m.w, v.kv = &t->kv;
    if (f->E) v.pl = &t->pl, v.pl_log2phy = t->pl_log2phy, v.pl_nrep = t->pl_nrep, v.pl_phy2log = t->pl_phy2log;
    v.load = t->load;
    int32_t *drafts = (int32_t *)(d + L.drafts);

    /* pass 1: every row of the step, on the main model's final-normed hidden rows */
    if (st->T > 0) MS_TRY(mtp_input(t, &v, (const int32_t *)(d + L.next), f->xn, st->T));
    MS_TRY(mtp_block(&v, st));
    if (n_d > 0) {
        MS_TRY(mtp_head(t, &v, (const int32_t *)(d + L.row), n_d, &L, drafts));
        MS_TRY(k->gather_rows(f->cx, v.x, (const int32_t *)(d + L.row), n_d, row, t->hprev));
    }
    /* passes 2..N: one row per drafting seq, chained on the previous pass */
    for (int p = 1; p < t->N; p++) {
        const size_t o = (size_t)(p - 1) * (size_t)n_d;
        fwd_step_t cs = {.T = n_d, .n_abs = n_d, .n_sample = n_d};
        v.pos = (int32_t *)(d + L.chain_pos) + o;
        v.slots = (int32_t *)(d + L.chain_slot) + o;
        v.seqs = (kern_attn_seq_t *)(d + L.chain_seqs) + o;
        if (n_d > 0) MS_TRY(mtp_input(t, &v, drafts + (size_t)(p - 1) * n_d, t->hprev, n_d));
        MS_TRY(mtp_block(&v, &cs));
        if (n_d > 0) {
            MS_TRY(mtp_head(t, &v, NULL, n_d, &L, drafts + (size_t)p * n_d));
            MS_TRY(k->copy(f->cx, t->hprev, v.x, row * (size_t)n_d));
        }
    }
    if (n_d > 0) MS_TRY(k->download(f->cx, s->drafts, drafts, 4 * (size_t)t->N * (size_t)n_d));
    return k->synchronize(f->cx);
}
