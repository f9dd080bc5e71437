/* mla_naive.c — MLA attention in the form transformers computes it: per head
 * K = [k_nope ; k_pe] (k_pe shared by all heads), V = v, both materialized by
 * kv_b_proj over the gathered latents. Rounding as transformers' eager
 * attention in bf16 (the golden reference):
 *   s = bf16(Q·K) (fp32 sum); s = bf16(s * scale); p = softmax_fp32(s);
 *   p = bf16(p); out = bf16(Σ p·V) (fp32 sum)
 * Causal: the query at position p sees keys 0..p. */
#include "cpu.h"

#include <math.h>
#include <stdlib.h>

ms_status_t kern_cpu_mla_naive(kern_ctx_t *cx, const bf16_t *q, const bf16_t *kv, const bf16_t *kpe, int64_t ld_kpe,
                               const kern_attn_seq_t *seqs, int32_t n_seqs, int32_t heads, int32_t dn, int32_t dr,
                               int32_t dv, float scale, bf16_t *out)
{
    const int32_t dqk = dn + dr;
    const int64_t ldq = (int64_t)heads * dqk, ldkv = (int64_t)heads * (dn + dv), ldo = (int64_t)heads * dv;
    int32_t max_len = 0;
    for (int32_t i = 0; i < n_seqs; i++)
        if (seqs[i].pos0 + seqs[i].n_q > max_len) max_len = seqs[i].pos0 + seqs[i].n_q;
    /* per (seq, head): K [len, dqk] and V [len, dv] in fp32, scores [len], query and output [dqk + dv] */
    float *buf = malloc(sizeof(float) * ((size_t)max_len * (dqk + dv + 1) + dqk + dv + 8));
    if (!buf) return MS_ERR(MS_ERR_NOMEM, "mla_naive: out of memory (context %d)", max_len);
    float *K = buf, *V = K + (size_t)max_len * dqk, *P = V + (size_t)max_len * dv, *qf = P + max_len, *o = qf + dqk;

    for (int32_t si = 0; si < n_seqs; si++) {
        const kern_attn_seq_t *sq = &seqs[si];
        const int32_t len = sq->pos0 + sq->n_q;
        for (int32_t h = 0; h < heads; h++) {
            for (int32_t j = 0; j < len; j++) {
                const bf16_t *kvr = kv + (int64_t)(sq->kv_off + j) * ldkv + (int64_t)h * (dn + dv);
                kern_cpu_bf16_to_f32(kvr, K + (size_t)j * dqk, dn);
                kern_cpu_bf16_to_f32(kpe + (int64_t)(sq->kv_off + j) * ld_kpe, K + (size_t)j * dqk + dn, dr);
                kern_cpu_bf16_to_f32(kvr + dn, V + (size_t)j * dv, dv);
            }
            for (int32_t i = 0; i < sq->n_q; i++) {
                const int32_t t = sq->q_off + i, nk = sq->pos0 + i + 1;
                kern_cpu_bf16_to_f32(q + t * ldq + (int64_t)h * dqk, qf, dqk);
                float mx = -INFINITY;
                for (int32_t j = 0; j < nk; j++) {
                    P[j] = bf16_round(bf16_round(kern_cpu_dot(qf, K + (size_t)j * dqk, dqk)) * scale);
                    if (P[j] > mx) mx = P[j];
                }
                float sum = 0;
                for (int32_t j = 0; j < nk; j++) {
                    P[j] = expf(P[j] - mx);
                    sum += P[j];
                }
                for (int32_t d = 0; d < dv; d++) o[d] = 0;
                for (int32_t j = 0; j < nk; j++) {
                    const float pj = bf16_round(P[j] / sum), *vj = V + (size_t)j * dv;
                    for (int32_t d = 0; d < dv; d++) o[d] += pj * vj[d];
                }
                bf16_t *orow = out + t * ldo + (int64_t)h * dv;
                for (int32_t d = 0; d < dv; d++) orow[d] = f32_to_bf16(o[d]);
            }
        }
    }
    free(buf);
    return MS_OK;
}
