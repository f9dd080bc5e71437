/* mla_absorbed.c — MLA with kv_b_proj absorbed into the query and output
 * (DeepSeek's decode form), reading the paged latent cache directly:
 *   q_abs = W_UKᵀ q_nope;  score_t = (q_abs·ckv_t + q_pe·kpe_t) * scale
 *   o_lat = Σ_t softmax_t ckv_t;  out = W_UV o_lat
 * Mathematically the naive form; everything stays fp32 until the one bf16
 * store, so it differs from mla_naive only by the bf16 rounding of k_nope/v.
 * Loop order: per sequence the latents are converted to fp32 once; per head
 * its W_UK/W_UV rows once; then every query token of the sequence. */
#include "cpu.h"

#include <math.h>
#include <stdlib.h>

ms_status_t kern_cpu_mla_absorbed(kern_ctx_t *cx, const bf16_t *q, const bf16_t *cache, int32_t block_size,
                                  const int32_t *block_tables, const kern_attn_seq_t *seqs, int32_t n_seqs,
                                  const kern_mat_t *kv_b, int32_t heads, int32_t dn, int32_t dr, int32_t dv,
                                  int32_t d_c, float scale, bf16_t *out)
{
    if (kv_b->rows != heads * (dn + dv) || kv_b->cols != d_c)
        return MS_ERR(MS_ERR_INVALID, "mla_absorbed: kv_b is [%d, %d], expected [%d, %d]", kv_b->rows, kv_b->cols,
                      heads * (dn + dv), d_c);
    const int32_t dqk = dn + dr, rw = d_c + dr;
    const int64_t ldq = (int64_t)heads * dqk, ldo = (int64_t)heads * dv;
    int32_t max_len = 0;
    for (int32_t i = 0; i < n_seqs; i++)
        if (seqs[i].pos0 + seqs[i].n_q > max_len) max_len = seqs[i].pos0 + seqs[i].n_q;
    size_t nf = (size_t)max_len * rw + (size_t)(dn + dv) * d_c + max_len + dqk + 2 * (size_t)d_c + 8;
    float *buf = malloc(sizeof(float) * nf);
    if (!buf) return MS_ERR(MS_ERR_NOMEM, "mla_absorbed: out of memory (context %d)", max_len);
    float *L = buf, *W = L + (size_t)max_len * rw, *P = W + (size_t)(dn + dv) * d_c, *qf = P + max_len;
    float *qa = qf + dqk, *ol = qa + d_c;

    for (int32_t si = 0; si < n_seqs; si++) {
        const kern_attn_seq_t *sq = &seqs[si];
        const int32_t len = sq->pos0 + sq->n_q;
        const int32_t *bt = block_tables + sq->blk_off;
        for (int32_t j = 0; j < len; j++) {
            int64_t slot = (int64_t)bt[j / block_size] * block_size + j % block_size;
            kern_cpu_bf16_to_f32(cache + slot * rw, L + (size_t)j * rw, rw);
        }
        for (int32_t h = 0; h < heads; h++) {
            for (int32_t r = 0; r < dn + dv; r++) kern_cpu_mat_row(kv_b, 0, h * (dn + dv) + r, 0, d_c, W + (size_t)r * d_c);
            for (int32_t i = 0; i < sq->n_q; i++) {
                const int32_t t = sq->q_off + i, nk = sq->pos0 + i + 1;
                kern_cpu_bf16_to_f32(q + t * ldq + (int64_t)h * dqk, qf, dqk);
                for (int32_t c = 0; c < d_c; c++) qa[c] = 0;
                for (int32_t d = 0; d < dn; d++) {
                    const float qd = qf[d], *wr = W + (size_t)d * d_c;
                    for (int32_t c = 0; c < d_c; c++) qa[c] += qd * wr[c];
                }
                float mx = -INFINITY;
                for (int32_t j = 0; j < nk; j++) {
                    const float *lj = L + (size_t)j * rw;
                    P[j] = (kern_cpu_dot(qa, lj, d_c) + kern_cpu_dot(qf + dn, lj + d_c, dr)) * scale;
                    if (P[j] > mx) mx = P[j];
                }
                float sum = 0;
                for (int32_t j = 0; j < nk; j++) {
                    P[j] = expf(P[j] - mx);
                    sum += P[j];
                }
                for (int32_t c = 0; c < d_c; c++) ol[c] = 0;
                for (int32_t j = 0; j < nk; j++) {
                    const float pj = P[j] / sum, *lj = L + (size_t)j * rw;
                    for (int32_t c = 0; c < d_c; c++) ol[c] += pj * lj[c];
                }
                bf16_t *orow = out + t * ldo + (int64_t)h * dv;
                for (int32_t d = 0; d < dv; d++) orow[d] = f32_to_bf16(kern_cpu_dot(W + (size_t)(dn + d) * d_c, ol, d_c));
            }
        }
    }
    free(buf);
    return MS_OK;
}
