/* par.h — how this rank's work is split (TensorRT-LLM's vocabulary).
 *
 * Attention:
 *  - attention_dp: each rank of the tp group is its own data-parallel
 *    attention rank (dp rank = tp_rank) with full heads and its own sequences
 *    (plan seqs whose dp_rank == tp_rank); no attention communication.
 *  - otherwise tensor parallel: every rank sees every sequence; heads are split
 *    into tp_size contiguous shards, rank r holding heads
 *    [r*H/tp_size, (r+1)*H/tp_size) of q_b_proj/q_proj and kv_b_proj rows and the
 *    matching o_proj columns; o_proj partial sums are all-reduced (fp32) over
 *    COMM_TP. The latent KV cache (shared by all heads) is replicated.
 * MoE (expert parallel over COMM_EP, ep_size ranks):
 *  - which expert sits in which of this rank's slots is data: the per-layer
 *    placement tables of placement.h (num_slots / ep_size slots per rank,
 *    replicas allowed; by default expert e on rank e % ep_size).
 *  - in attention-TP mode the tokens are replicated over COMM_TP, so rank r
 *    routes only its contiguous slice of them and the slices are all-gathered
 *    after the MoE.
 * Dense layers, norms, embeddings, router and lm_head are replicated.
 */
#ifndef MS_PAR_H
#define MS_PAR_H

#include <stdbool.h>
#include "status.h"
#include "worker/model_config.h"

typedef struct {
    int tp_rank, tp_size; /* attention group (TP shards, or DP ranks when attention_dp) */
    int ep_rank, ep_size; /* expert-parallel group */
    bool attention_dp;
} par_t;

static inline par_t par_single(void) { return (par_t){0, 1, 0, 1, false}; }

/* Heads this rank holds, and the first of them. */
static inline int par_heads_local(const par_t *p, const mcfg_t *c)
{
    return p->attention_dp ? c->num_attention_heads : c->num_attention_heads / p->tp_size;
}
static inline int par_head0(const par_t *p, const mcfg_t *c)
{
    return p->attention_dp ? 0 : p->tp_rank * par_heads_local(p, c);
}

/* Check ranks and sizes against the model (divisibility, fp8 block alignment of
 * head shards); one error line naming the offending value. */
ms_status_t par_validate(const par_t *p, const mcfg_t *c);

#endif
