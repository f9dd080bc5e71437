/* forward_attn.c — MLA attention of one layer over a step's tokens, from
 * f->xn (= RMSNorm_input(x), made by fwd_run's fused add+norm) to o_proj's
 * output in f->tb (see shared/reference/deepseek-v3.md section 2):
 *
 *   q  = q_b(RMSNorm_qa(q_a(xn)))  or q_proj(xn)         (T, H*qk) bf16
 *   kva = kv_a(xn); kva[:, :dc] = RMSNorm_kva(kva[:, :dc]) (in place)
 *   RoPE on q's pe part of every head and on kva's k_pe, at each token's position
 *   kv_store: the cache row of each token = kva row  (ckv | kpe), in the cache's row layout
 *     (k_pe's rope and the store are one op, kv_store_rope, unless MS_FUSE_ROPE_KV=0)
 *   absorbed seqs (three ops, FlashMLA's shape):
 *     q_lat[t,h] = q_nope[t,h]·W_UK[h]        batched GEMM over heads, bf16 out
 *     o_lat = latent attention of q_lat, q_pe over the paged cache (bf16 out)
 *     att[t,h] = W_UV[h]·o_lat[t,h]           batched GEMM over heads, one bf16 rounding
 *   naive seqs: gather the seq's latents, kv_b over them, attention (transformers' form)
 *   o = o_proj(att): with attention TP in fp32, all-reduced over the group (heads split), then one bf16
 *   rounding; without, the gemm stores bf16 (the same one rounding)
 *   linears run through fwd_linear (the dense fp8 mode quantizes their input)
 *
 * The absorbed GEMMs run over all T rows (absorbed rows are scattered among
 * the step's rows); the naive path runs after them and overwrites its own
 * rows of att, so what the absorbed GEMMs wrote there does not matter. The
 * latents are bf16 between the three ops, one rounding each as transformers'
 * unabsorbed form rounds V, P and P·V (its V = C·W_UVᵀ is bf16, so bf16 latents
 * are no further from it than fp32 ones); the tensor-core MLA kernels round
 * q_lat to bf16 for their MMAs anyway, and fp32 latents made W_UV an fp32-x GEMM
 * that cost ~4x a bf16 one and twice the bytes of both latents at decode.
 *
 * The cache is written before attention reads it, so a sequence's new tokens
 * attend to themselves through the cache like earlier ones. */
#include "worker/forward.h"

/* q_lat = q_nope·W_UK and att = o_lat·W_UVᵀ, per head, for T rows (bf16 latents: see the top) */
static ms_status_t fwd_absorbed(fwd_t *f, const wlayer_t *y, const kern_kv_t *kv, const fwd_step_t *st)
{
    const kern_ops_t *k = f->k;
    const int T = st->T, H = f->H, dn = f->dn, dv = f->dv, dc = f->dc, qk = f->qk;
    const bf16_t *kvb = y->kv_b.data;
    /* W_UK[h]: rows h*(dn+dv) .. +dn of kv_b, [dn, dc]; read transposed as a [dc out, dn in] weight */
    kern_mat_t wuk = {.data = kvb, .dtype = MS_DT_BF16, .rows = dc, .cols = dn};
    kern_gemm_t g1 = {.x = f->q, .xdt = MS_DT_BF16, .ldx = (int64_t)H * qk, .bsx = qk, .w = &wuk, .w_trans = 1,
                      .ldw = dc, .bsw = (int64_t)(dn + dv) * dc, .y = f->qlat, .ydt = MS_DT_BF16,
                      .ldy = (int64_t)H * dc, .bsy = dc, .m = T, .batch = H};
    MS_TRY(k->gemm(f->cx, &g1));
    MS_TRY(k->mla_latent(f->cx, f->qlat, MS_DT_BF16, f->q + dn, (int64_t)H * qk, qk, kv, f->blocks,
                         f->seqs + st->n_naive, st->n_abs, H, f->rp.softmax_scale, f->olat, MS_DT_BF16));
    /* W_UV[h]: rows h*(dn+dv)+dn .. +dv of kv_b, [dv out, dc in] */
    kern_mat_t wuv = {.data = kvb + (size_t)dn * dc, .dtype = MS_DT_BF16, .rows = dv, .cols = dc};
    kern_gemm_t g2 = {.x = f->olat, .xdt = MS_DT_BF16, .ldx = (int64_t)H * dc, .bsx = dc, .w = &wuv, .ldw = dc,
                      .bsw = (int64_t)(dn + dv) * dc, .y = f->att, .ydt = MS_DT_BF16, .ldy = (int64_t)H * dv,
                      .bsy = dv, .m = T, .batch = H};
    return k->gemm(f->cx, &g2);
}

const kern_mat_t *fwd_attn_first(const fwd_t *f, const wlayer_t *y)
{
    return f->q_lora > 0 ? (y->qkv_a.data ? &y->qkv_a : &y->q_a) : &y->q;
}

ms_status_t fwd_attention(fwd_t *f, int layer, const fwd_step_t *st)
{
    const kern_ops_t *k = f->k;
    const wlayer_t *y = &f->w->layers[layer];
    const int T = st->T, D = f->D, H = f->H, rw = f->dc + f->dr;
    const float eps = f->c->rms_norm_eps;
    const kern_kv_t kv = kvc_layer(f->kv, layer);
    const int tp_sum = !f->par.attention_dp && f->par.tp_size > 1;

    if (T > 0) {
        /* q_a (or q) and kv_a both read xn: one GEMM over the fused [q_a | kv_a] when the loader fused them
         * (qa and kva are the two column ranges of its rows), else two with xn quantized once (fp8 mode) */
        const int64_t lq = f->ld_qkva;
        if (f->q_lora > 0) {
            if (y->qkv_a.data) {
                MS_TRY(fwd_linear(f, f->xn, D, T, &y->qkv_a, f->qa, MS_DT_BF16, lq, 1));
            } else {
                MS_TRY(fwd_linear(f, f->xn, D, T, &y->q_a, f->qa, MS_DT_BF16, lq, 1));
                MS_TRY(fwd_linear(f, f->xn, D, T, &y->kv_a, f->kva, MS_DT_BF16, lq, 0));
            }
            MS_TRY(fwd_norm(f, f->qa, lq, NULL, y->q_a_norm, f->qa, lq, T, f->q_lora, &y->q_b));
            MS_TRY(fwd_linear(f, f->qa, lq, T, &y->q_b, f->q, MS_DT_BF16, (int64_t)H * f->qk, 1));
        } else {
            MS_TRY(fwd_linear(f, f->xn, D, T, &y->q, f->q, MS_DT_BF16, (int64_t)H * f->qk, 1));
            MS_TRY(fwd_linear(f, f->xn, D, T, &y->kv_a, f->kva, MS_DT_BF16, lq, 0));
        }
        MS_TRY(k->rmsnorm(f->cx, f->kva, lq, y->kv_a_norm, f->kva, lq, T, f->dc, eps));
        const int il = f->c->rope_interleave ? 1 : 0;
        MS_TRY(k->rope(f->cx, f->q + f->dn, T, H, (int64_t)H * f->qk, f->qk, f->pos, f->inv_freq, f->rp.attn_factor,
                       f->dr, il));
        if (f->fuse_rope_kv) { /* the k_pe rope inside the store (bit-identical to the two ops below) */
            MS_TRY(k->kv_store_rope(f->cx, &kv, f->kva, lq, f->kva + f->dc, lq, f->slots, T, f->pos, f->inv_freq,
                                    f->rp.attn_factor, il));
        } else {
            MS_TRY(k->rope(f->cx, f->kva + f->dc, T, 1, lq, 0, f->pos, f->inv_freq, f->rp.attn_factor, f->dr, il));
            MS_TRY(k->kv_store(f->cx, &kv, f->kva, lq, f->kva + f->dc, lq, f->slots, T));
        }
        if (st->n_abs > 0) MS_TRY(fwd_absorbed(f, y, &kv, st));
        if (st->n_naive > 0) {
            MS_TRY(k->kv_gather(f->cx, &kv, f->seqs, st->n_naive, f->blocks, f->gkv));
            MS_TRY(kern_gemm_plain(k, f->cx, f->gkv, MS_DT_BF16, rw, &y->kv_b, f->kvb, MS_DT_BF16,
                                   (int64_t)H * (f->dn + f->dv), st->S_naive));
            MS_TRY(k->mla_naive(f->cx, f->q, f->kvb, f->gkv + f->dc, rw, f->seqs, st->n_naive, H, f->dn, f->dr, f->dv,
                                f->rp.softmax_scale, f->att));
        }
        /* without a TP all-reduce the one bf16 rounding of the fp32 sums is the gemm's own store */
        if (!tp_sum) return fwd_linear(f, f->att, (int64_t)H * f->dv, T, &y->o, f->tb, MS_DT_BF16, D, 1);
        MS_TRY(kern_gemm_plain(k, f->cx, f->att, MS_DT_BF16, (int64_t)H * f->dv, &y->o, f->of32, MS_DT_F32, D, T));
    }
    if (!tp_sum) return MS_OK;
    /* attention TP: heads are split, partial o_proj sums add up over the group (fp32, one rounding after) */
    MS_TRY(comm_allreduce_sum(f->comm, COMM_TP, f->of32, (int64_t)T * D, MS_DT_F32, f->cx));
    return k->cast(f->cx, f->of32, MS_DT_F32, f->tb, MS_DT_BF16, (int64_t)T * D);
}
