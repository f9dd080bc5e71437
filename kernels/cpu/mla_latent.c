/* mla_latent.c — the middle op of absorbed MLA (DeepSeek's decode form,
 * FlashMLA's shape): attention of per-head latent queries over the paged
 * latent cache, with the rope part beside it:
 *   score_t = (q_lat·ckv_t + q_pe·kpe_t) * scale;  o_lat = Σ_t softmax_t ckv_t
 * The two batched GEMMs around it (q_nope·W_UK before, o_lat·W_UVᵀ after)
 * are the gemm op. Softmax and sums in fp32, one rounding on store (none for
 * an F32 o_lat). Loop order: per sequence its cache rows are read (and FP8
 * dequantized) to fp32 once, then every head of every query token. A bad
 * block id is a data fault: its keys are left out. */
#include "cpu.h"

#include <stdlib.h>

static void load_row(const void *p, ms_dtype_t dt, int64_t off, int32_t n, float *out)
{
    if (dt == MS_DT_F32) for (int32_t i = 0; i < n; i++) out[i] = ((const float *)p)[off + i];
    else kern_cpu_bf16_to_f32((const bf16_t *)p + off, out, n);
}

ms_status_t kern_cpu_mla_latent(kern_ctx_t *cx, const void *q_lat, ms_dtype_t qdt, const bf16_t *q_pe, int64_t ld_pe,
                                int64_t ld_pe_head, const kern_kv_t *kv, const int32_t *block_tables,
                                const kern_attn_seq_t *seqs, int32_t n_seqs, int32_t heads, float scale, void *o_lat,
                                ms_dtype_t odt)
{
    MS_TRY(kern_cpu_kv_check(kv, "mla_latent"));
    if ((qdt != MS_DT_F32 && qdt != MS_DT_BF16) || (odt != MS_DT_F32 && odt != MS_DT_BF16))
        return MS_ERR(MS_ERR_UNSUPPORTED, "mla_latent: q_lat %s / o_lat %s must be F32 or BF16", ms_dtype_name(qdt),
                      ms_dtype_name(odt));
    const int32_t dc = kv->d_c, dr = kv->d_r, rw = dc + dr;
    int32_t max_len = 0;
    for (int32_t i = 0; i < n_seqs; i++)
        if (seqs[i].pos0 + seqs[i].n_q > max_len) max_len = seqs[i].pos0 + seqs[i].n_q;
    float *buf = malloc(sizeof(float) * ((size_t)max_len * rw + max_len + 2 * (size_t)dc + dr + 8));
    char *ok = malloc((size_t)max_len + 1);
    if (!buf || !ok) {
        free(buf), free(ok);
        return MS_ERR(MS_ERR_NOMEM, "mla_latent: out of memory (context %d)", max_len);
    }
    float *L = buf, *P = L + (size_t)max_len * rw, *qa = P + max_len, *qp = qa + dc, *ol = qp + dr;

    for (int32_t si = 0; si < n_seqs; si++) {
        const kern_attn_seq_t *sq = &seqs[si];
        const int32_t len = sq->pos0 + sq->n_q;
        const int32_t *bt = block_tables + sq->blk_off;
        if (sq->n_q <= 0 || sq->q_off < 0) continue;
        for (int32_t j = 0; j < len; j++) {
            int64_t slot = kern_cpu_kv_slot(cx, kv, bt, j);
            ok[j] = slot >= 0;
            if (ok[j]) kern_cpu_kv_row_read(kv, slot, L + (size_t)j * rw);
        }
        for (int32_t i = 0; i < sq->n_q; i++) {
            const int32_t t = sq->q_off + i, nk = sq->pos0 + i + 1;
            for (int32_t h = 0; h < heads; h++) {
                const int64_t base = ((int64_t)t * heads + h) * dc;
                load_row(q_lat, qdt, base, dc, qa);
                kern_cpu_bf16_to_f32(q_pe + t * ld_pe + h * ld_pe_head, qp, dr);
                float mx = -INFINITY;
                for (int32_t j = 0; j < nk; j++) {
                    if (!ok[j]) continue;
                    const float *lj = L + (size_t)j * rw;
                    P[j] = (kern_cpu_dot(qa, lj, dc) + kern_cpu_dot(qp, lj + dc, dr)) * scale;
                    if (P[j] > mx) mx = P[j];
                }
                float sum = 0;
                for (int32_t j = 0; j < nk; j++) {
                    if (!ok[j]) continue;
                    P[j] = expf(P[j] - mx);
                    sum += P[j];
                }
                for (int32_t c = 0; c < dc; c++) ol[c] = 0;
                for (int32_t j = 0; j < nk && sum > 0; j++) {
                    if (!ok[j]) continue;
                    const float pj = P[j] / sum, *lj = L + (size_t)j * rw;
                    for (int32_t c = 0; c < dc; c++) ol[c] += pj * lj[c];
                }
                if (odt == MS_DT_F32)
                    for (int32_t c = 0; c < dc; c++) ((float *)o_lat)[base + c] = ol[c];
                else
                    for (int32_t c = 0; c < dc; c++) ((bf16_t *)o_lat)[base + c] = f32_to_bf16(ol[c]);
            }
        }
    }
    free(buf), free(ok);
    return MS_OK;
}
