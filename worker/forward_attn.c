/* forward_attn.c — MLA attention of one layer over a step's tokens, writing
 * o_proj's output to f->tb (see shared/reference/deepseek-v3.md section 2):
 *
 *   xn = RMSNorm_input(x)
 *   q  = q_b(RMSNorm_qa(q_a(xn)))  or q_proj(xn)         (T, H*qk) bf16
 *   kva = kv_a(xn); kva[:, :dc] = RMSNorm_kva(kva[:, :dc]) (in place)
 *   RoPE on q's pe part of every head and on kva's k_pe, at each token's position
 *   kv_store: the cache row of each token = kva row  (ckv | kpe)
 *   naive seqs:   gather the seq's latents, kv_b over them, attention (transformers' form)
 *   absorbed seqs: attention straight over the paged cache
 *   o = o_proj(att) in fp32, all-reduced over the TP group (heads split), one bf16 rounding
 *
 * The cache is written before attention reads it, so a sequence's new tokens
 * attend to themselves through the cache like earlier ones. */
#include "worker/forward.h"

ms_status_t fwd_attention(fwd_t *f, int layer, const fwd_step_t *st)
{
    const kern_ops_t *k = f->k;
    const wlayer_t *y = &f->w->layers[layer];
    const int T = st->T, D = f->D, H = f->H, rw = f->dc + f->dr;
    const float eps = f->c->rms_norm_eps;
    bf16_t *cache = kvc_layer(f->kv, layer);

    if (T > 0) {
        MS_TRY(k->rmsnorm(f->cx, f->x, D, y->input_norm, f->xn, D, T, D, eps));
        if (f->q_lora > 0) {
            MS_TRY(k->gemm(f->cx, f->xn, MS_DT_BF16, D, &y->q_a, f->qa, MS_DT_BF16, f->q_lora, T));
            MS_TRY(k->rmsnorm(f->cx, f->qa, f->q_lora, y->q_a_norm, f->qa, f->q_lora, T, f->q_lora, eps));
            MS_TRY(k->gemm(f->cx, f->qa, MS_DT_BF16, f->q_lora, &y->q_b, f->q, MS_DT_BF16, (int64_t)H * f->qk, T));
        } else {
            MS_TRY(k->gemm(f->cx, f->xn, MS_DT_BF16, D, &y->q, f->q, MS_DT_BF16, (int64_t)H * f->qk, T));
        }
        MS_TRY(k->gemm(f->cx, f->xn, MS_DT_BF16, D, &y->kv_a, f->kva, MS_DT_BF16, rw, T));
        MS_TRY(k->rmsnorm(f->cx, f->kva, rw, y->kv_a_norm, f->kva, rw, T, f->dc, eps));
        const int il = f->c->rope_interleave ? 1 : 0;
        MS_TRY(k->rope(f->cx, f->q + f->dn, T, H, (int64_t)H * f->qk, f->qk, f->pos, f->inv_freq, f->rp.attn_factor,
                       f->dr, il));
        MS_TRY(k->rope(f->cx, f->kva + f->dc, T, 1, rw, 0, f->pos, f->inv_freq, f->rp.attn_factor, f->dr, il));
        MS_TRY(k->kv_store(f->cx, cache, f->kva, rw, f->kva + f->dc, rw, f->slots, T, f->dc, f->dr));
        const float scale = f->rp.softmax_scale;
        const int bs = f->kv->block_size;
        if (st->n_naive > 0) {
            MS_TRY(k->kv_gather(f->cx, cache, bs, rw, f->seqs, st->n_naive, f->blocks, f->gkv));
            MS_TRY(k->gemm(f->cx, f->gkv, MS_DT_BF16, rw, &y->kv_b, f->kvb, MS_DT_BF16, (int64_t)H * (f->dn + f->dv),
                           st->S_naive));
            MS_TRY(k->mla_naive(f->cx, f->q, f->kvb, f->gkv + f->dc, rw, f->seqs, st->n_naive, H, f->dn, f->dr, f->dv,
                                scale, f->att));
        }
        if (st->n_abs > 0)
            MS_TRY(k->mla_absorbed(f->cx, f->q, cache, bs, f->blocks, f->seqs + st->n_naive, st->n_abs, &y->kv_b, H,
                                   f->dn, f->dr, f->dv, f->dc, scale, f->att));
        MS_TRY(k->gemm(f->cx, f->att, MS_DT_BF16, (int64_t)H * f->dv, &y->o, f->of32, MS_DT_F32, D, T));
    }
    /* attention TP: heads are split, partial o_proj sums add up over the group */
    if (!f->par.attention_dp && f->par.tp_size > 1)
        MS_TRY(comm_allreduce_sum(f->comm, COMM_TP, f->of32, (int64_t)T * D, MS_DT_F32, f->cx));
    return k->cast(f->cx, f->of32, MS_DT_F32, f->tb, MS_DT_BF16, (int64_t)T * D);
}
