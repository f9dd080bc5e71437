/* engine_check.c — what a step plan may ask of this engine (the whole plan,
 * then each entry: a bad entry is its sequence's fault alone), and which
 * sequences a data fault raised during the step belongs to. */
#include "worker/engine_internal.h"

bool engine_seq_is_mine(const engine_t *e, const proto_seq_t *q)
{
    return !e->par.attention_dp || q->dp_rank == e->par.tp_rank;
}

/* Check the plan against itself and the engine's capacities before any work. */
ms_status_t engine_plan_check(const engine_t *e, const proto_plan_t *p)
{
    if (p->hdr.magic != PROTO_MAGIC || p->hdr.version != PROTO_VERSION || p->hdr.type != PROTO_MSG_PLAN)
        return MS_ERR(MS_ERR_INVALID, "engine: not a version %d plan (magic %#x version %u type %u)", PROTO_VERSION,
                      p->hdr.magic, p->hdr.version, p->hdr.type);
    if (p->n_seqs < 0 || p->n_seqs > e->opts.max_batch)
        return MS_ERR(MS_ERR_INVALID, "engine: plan has %d sequences, max_batch is %d", p->n_seqs, e->opts.max_batch);
    if (p->n_tokens < 0 || p->n_tokens > e->opts.max_tokens_per_step)
        return MS_ERR(MS_ERR_INVALID, "engine: plan has %d tokens, max_tokens_per_step is %d", p->n_tokens,
                      e->opts.max_tokens_per_step);
    if (p->n_blocks < 0) return MS_ERR(MS_ERR_INVALID, "engine: plan has %d block-table entries", p->n_blocks);
    if (p->n_deltas != 0 || p->n_bias < 0 || p->n_bias > p->n_seqs * PROTO_MAX_LOGIT_BIAS)
        return MS_ERR(MS_ERR_INVALID, "engine: plan has %d deltas and %d logit_bias entries for %d sequences",
                      p->n_deltas, p->n_bias, p->n_seqs);
    return MS_OK;
}

/* Check plan entry i before any work. A bad entry is its sequence's fault
 * alone: engine_step leaves it out of the step and reports it in its result
 * (PROTO_FAULT_PLAN). Each check reads only the plan, what every rank has
 * alike (the model, the engine's options) and the penalty state the same
 * entries built, so attention-TP ranks, which all run every entry and must
 * keep the same rows for their collectives, reject the same entries. */
ms_status_t engine_seq_check(const engine_t *e, const proto_plan_t *p, int i)
{
    const proto_seq_t *sq = proto_plan_seqs(p);
    const int32_t *tok = proto_plan_tokens(p), *blk = proto_plan_blocks(p);
    const int bs = e->opts.block_size;
    const proto_seq_t *q = &sq[i];
    if (q->slot < 0 || q->slot >= e->opts.max_batch)
        return MS_ERR(MS_ERR_INVALID, "engine: plan seq %d: slot %d outside [0, %d)", i, q->slot,
                      e->opts.max_batch);
    if (q->n_tokens < 1 || q->pos < 0 || q->tok_off < 0 || q->tok_off + q->n_tokens > p->n_tokens)
        return MS_ERR(MS_ERR_INVALID, "engine: plan seq %d (slot %d): tokens [%d, +%d) at pos %d outside the plan",
                      i, q->slot, q->tok_off, q->n_tokens, q->pos);
    if (e->opts.max_seq_len > 0 && (int64_t)q->pos + q->n_tokens > e->opts.max_seq_len)
        return MS_ERR(MS_ERR_INVALID, "engine: plan seq %d (slot %d): positions up to %lld beyond max_seq_len %d", i,
                      q->slot, (long long)q->pos + q->n_tokens - 1, e->opts.max_seq_len);
    if (q->n_blocks < 0 || q->blk_off < 0 || q->blk_off + q->n_blocks > p->n_blocks ||
        (int64_t)q->n_blocks * bs < (int64_t)q->pos + q->n_tokens)
        return MS_ERR(MS_ERR_INVALID, "engine: plan seq %d (slot %d): %d blocks of %d cannot hold %d positions", i,
                      q->slot, q->n_blocks, bs, q->pos + q->n_tokens);
    if (proto_sampling_check(q->temperature, q->top_p, q->top_k, q->n_logprobs, PROTO_MAX_LOGPROBS, NULL))
        return MS_ERR(MS_ERR_INVALID, "engine: plan seq %d (slot %d): bad sampling knobs (temperature %g, top_p %g, "
                                      "top_k %d, n_logprobs %d)", i, q->slot, q->temperature, q->top_p, q->top_k,
                      q->n_logprobs);
    if ((q->flags & (PROTO_SEQ_VERIFY | PROTO_SEQ_DRAFT)) &&
        (!e->mtp.N || !(q->flags & PROTO_SEQ_SAMPLE) ||
         ((q->flags & PROTO_SEQ_VERIFY) && (q->n_tokens < 2 || q->n_tokens - 1 > e->mtp.N))))
        return MS_ERR(MS_ERR_INVALID, "engine: plan seq %d (slot %d): MTP flags %#x with %d tokens, but this "
                                      "engine drafts %d tokens per step", i, q->slot, q->flags, q->n_tokens,
                      e->mtp.N);
    if ((q->flags & PROTO_SEQ_FEED_LAST) &&
        (q->n_tokens != 1 || !(q->flags & PROTO_SEQ_SAMPLE) ||
         (q->flags & (PROTO_SEQ_VERIFY | PROTO_SEQ_DRAFT | PROTO_SEQ_PROMPT_LP | PROTO_SEQ_START))))
        return MS_ERR(MS_ERR_INVALID, "engine: plan seq %d (slot %d): FEED_LAST with %d tokens and flags %#x (one "
                                      "sampled decode token of a running slot, no MTP or prompt logprobs)", i,
                      q->slot, q->n_tokens, q->flags);
    if ((q->flags & PROTO_SEQ_PROMPT_LP) && (q->next_token < -1 || q->next_token >= e->cfg.vocab_size))
        return MS_ERR(MS_ERR_INVALID, "engine: plan seq %d (slot %d): prompt logprobs with next token %d", i, q->slot,
                      q->next_token);
    if (proto_penalty_check(q->presence_penalty, q->frequency_penalty,
                            q->repetition_penalty != 0.0f ? q->repetition_penalty : 1.0f, q->min_p, NULL))
        return MS_ERR(MS_ERR_INVALID, "engine: plan seq %d (slot %d): bad penalties (presence %g, frequency %g, "
                                      "repetition %g, min_p %g)", i, q->slot, q->presence_penalty,
                      q->frequency_penalty, q->repetition_penalty, q->min_p);
    if (proto_seq_adjusts(q) && engine_seq_is_mine(e, q) && !e->k->supports_op(KERN_OP_LOGITS_ADJUST))
        return MS_ERR(MS_ERR_INVALID, "engine: plan seq %d (slot %d) uses penalties, logit_bias or min_p, which the "
                                      "'%s' kernels backend does not implement yet (op logits_adjust)", i, q->slot,
                      e->k->name);
    if (q->n_bias < 0 || q->bias_off < 0 || q->bias_off + q->n_bias > p->n_bias)
        return MS_ERR(MS_ERR_INVALID, "engine: plan seq %d (slot %d): bias entries outside the plan", i, q->slot);
    for (int b = 0; b < q->n_bias; b++)
        if (proto_plan_bias(p)[q->bias_off + b].token < 0 ||
            proto_plan_bias(p)[q->bias_off + b].token >= e->cfg.vocab_size)
            return MS_ERR(MS_ERR_INVALID, "engine: plan seq %d (slot %d): logit_bias token %d outside the vocabulary",
                          i, q->slot, proto_plan_bias(p)[q->bias_off + b].token);
    for (int b = 0; b < q->n_blocks; b++)
        if (blk[q->blk_off + b] < 0 || blk[q->blk_off + b] >= e->opts.kv_blocks)
            return MS_ERR(MS_ERR_INVALID, "engine: plan seq %d (slot %d): block id %d outside [0, %d)", i, q->slot,
                          blk[q->blk_off + b], e->opts.kv_blocks);
    for (int t = 0; t < q->n_tokens; t++)
        if (tok[q->tok_off + t] < 0 || tok[q->tok_off + t] >= e->cfg.vocab_size)
            return MS_ERR(MS_ERR_INVALID, "engine: plan seq %d (slot %d): token id %d outside vocabulary [0, %d)",
                          i, q->slot, tok[q->tok_off + t], e->cfg.vocab_size);
    if (engine_seq_is_mine(e, q)) MS_TRY(pen_check(e->pen, q, i));
    return MS_OK;
}

/* Names of the fault bits, for the step's error message. */
void engine_fault_describe(uint32_t bits, char *buf, size_t n)
{
    static const proto_bit_name_t names[] = {
        {KERN_FAULT_TOKEN, "token id outside the vocabulary"},
        {KERN_FAULT_SLOT, "expert slot outside the placement table"},
        {KERN_FAULT_BLOCK, "KV row or block outside the cache"},
        {KERN_FAULT_CAPACITY, "MoE receive capacity exceeded"},
        {KERN_FAULT_LOGITS, "non-finite logits (NaN or infinity)"},
        {ENGINE_FAULT_INJECTED, "injected failure (MOESERVE_FAULT_STEP test hook)"},
        {ENGINE_FAULT_INJECTED_SEQ, "injected failure of one sequence (MOESERVE_FAULT_SEQ test hook)"},
    };
    proto_bits_describe(names, sizeof names / sizeof names[0], bits, buf, n);
}

/* A data fault of the step (the fault word `faults` came back nonzero),
 * traced to the sequences whose rows raised it where the host can tell: the
 * per-row checks of embed (token id outside the vocabulary) and kv_store /
 * the paged reads (cache row or block id outside the cache) are functions of
 * what the host uploaded (ids, slots, block tables, still in the staging
 * block), the sampler marks a row of non-finite logits with token -1 in the
 * downloaded tokens, and the MOESERVE_FAULT_SEQ hook names its slot. Each traced
 * sequence gets its PROTO_FAULT_* (seq_fault) and its slot's state is
 * dropped. Returns the bits no sequence explains (MoE slot or capacity
 * faults, a fault in the MTP module or in logits_adjust's lists, the
 * whole-step hook): those fail the step as before.
 *
 * Why the other rows of the step stay right: a faulty row is padding where
 * it faulted (embed writes zeros, kv_store skips the write, paged reads
 * leave the key out), and every later op keeps rows apart. RMSNorm, RoPE,
 * every GEMM (dense, LM head, per-token FP8 activation scales) and the
 * sampler work per row; attention reads only the sequence's own block table,
 * and a faulty sequence's KV rows land in its own blocks, which rank 0 frees
 * without publishing them to the prefix cache (it ends the sequence before
 * sched_commit); a TP all-reduce sums each row with the same row. MoE:
 * a NaN or garbage hidden row routes to in-range experts (the router's
 * top-k, CPU and CUDA, takes the first untaken index when no comparison
 * holds), its expert outputs are its own rows of each slot's batch and the
 * combine sums only the row's own k outputs; it takes K slots of capacity
 * like any row. So the faulty sequence's result is dropped and nothing of it
 * reaches another sequence's token. A second, untraceable cause of the same
 * bit in the same step is hidden by a traced one: the word has one bit per
 * kind. */
uint32_t engine_step_attribute(engine_t *e, const proto_plan_t *p, const step_io_layout_t *L, uint32_t faults)
{
    const char *h = e->stage;
    const int32_t *ids = (const int32_t *)(h + L->ids), *slots = (const int32_t *)(h + L->slots);
    const int32_t *blocks = (const int32_t *)(h + L->blocks), *tok = (const int32_t *)(h + L->tok);
    const proto_seq_t *sq = proto_plan_seqs(p);
    const int V = e->cfg.vocab_size, NB = e->opts.kv_blocks;
    const int64_t rows = (int64_t)NB * e->opts.block_size;
    uint32_t traced = 0;
    for (int i = 0; i < p->n_seqs; i++) {
        const proto_seq_t *q = &sq[i];
        const int r0 = e->row0[i];
        if (r0 < 0) continue;
        uint32_t f = 0;
        if ((faults & ENGINE_FAULT_INJECTED_SEQ) && q->slot == e->cur_inject_slot) {
            f |= PROTO_FAULT_INJECTED;
            traced |= ENGINE_FAULT_INJECTED_SEQ;
        }
        for (int t = 0; t < q->n_tokens; t++) {
            const int32_t id = ids[r0 + t], sl = slots[r0 + t];
            if ((faults & KERN_FAULT_TOKEN) && id != -1 && (id < 0 || id >= V)) {
                f |= PROTO_FAULT_TOKEN;
                traced |= KERN_FAULT_TOKEN;
            }
            if ((faults & KERN_FAULT_BLOCK) && sl != -1 && (sl < 0 || sl >= rows)) {
                f |= PROTO_FAULT_BLOCK;
                traced |= KERN_FAULT_BLOCK;
            }
        }
        const int j = e->sample_of_seq[i], nr = (q->flags & PROTO_SEQ_VERIFY) ? q->n_tokens : 1;
        for (int u = 0; (faults & KERN_FAULT_LOGITS) && j >= 0 && u < nr; u++)
            if (tok[j + u] < 0) { /* the sampler's mark of a row with nothing to draw from */
                f |= PROTO_FAULT_LOGITS;
                traced |= KERN_FAULT_LOGITS;
            }
        for (int b = 0; (faults & KERN_FAULT_BLOCK) && b < q->n_blocks; b++)
            if (blocks[e->blk_off[i] + b] < 0 || blocks[e->blk_off[i] + b] >= NB) {
                f |= PROTO_FAULT_BLOCK;
                traced |= KERN_FAULT_BLOCK;
            }
        if (!f) continue;
        char what[160];
        proto_fault_describe(f, what, sizeof what);
        MS_WARN("engine: step %u: plan seq %d (slot %d) failed alone (%s); the step's other sequences go on",
                p->hdr.step, i, q->slot, what);
        e->seq_fault[i] |= f;
        pen_drop(e->pen, q->slot);
    }
    return faults & ~traced;
}
