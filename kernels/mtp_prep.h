/* mtp_prep.h — the per-row and per-entry rule of kern_ops_t.mtp_prep
 * (kernels.h), written once: the CPU op loops over it and the CUDA kernel
 * runs it one thread per row or entry, so both backends draft from exactly
 * the same rows and positions. */
#ifndef MS_KERN_MTP_PREP_H
#define MS_KERN_MTP_PREP_H

#include "kernels/kernels.h"

/* next[r] */
KERN_HOST_DEVICE static inline void kern_mtp_prep_row(const kern_mtp_prep_t *p, int32_t r)
{
    const int32_t s = p->next_src[r];
    p->next[r] = s >= 0 ? p->ids[s] : s == -1 ? -1 : p->tok[-2 - s];
}

/* row, acc, chain_* of entry i */
KERN_HOST_DEVICE static inline void kern_mtp_prep_entry(const kern_mtp_prep_t *p, int32_t i)
{
    const kern_draft_t d = p->seqs[i];
    const int32_t n = p->n, bs = p->block_size;
    const int real = d.r0 >= 0;
    int32_t a = 0;
    if (real)
        while (a < d.n_verify && p->ids[d.r0 + 1 + a] == p->tok[d.j + a]) a++;
    const int32_t rr = d.n_verify > 0 ? a : d.last, P = real ? d.pos + rr : 0;
    int32_t can = real ? d.cover - P : 0;
    can = can > p->N ? p->N : can < (real ? 1 : 0) ? (real ? 1 : 0) : can;
    p->row[i] = real ? d.r0 + rr : 0;
    p->acc[2 * i] = a, p->acc[2 * i + 1] = can;
    p->chain_pad[i] = real ? -1 : 0;
    for (int32_t c = 1; c < p->N; c++) {
        const int32_t pos = P + c, o = (c - 1) * n + i;
        const int ok = real && pos < d.cover;
        p->chain_pos[o] = ok ? pos : P;
        p->chain_slot[o] = ok ? p->blocks[d.blk_off + pos / bs] * bs + pos % bs : -1;
        kern_attn_seq_t q; /* every field set: C++ (nvcc) warns of a partial initializer */
        q.q_off = i, q.n_q = ok ? 1 : 0, q.pos0 = ok ? pos : P, q.kv_off = 0, q.blk_off = real ? d.blk_off : 0;
        q.kv_pos0 = 0, q.kv_len = 0, q.pad_ = 0;
        p->chain_seqs[o] = q;
    }
}

#endif
