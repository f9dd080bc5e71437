/* step_io.c — offsets of the step I/O block (step_io.h). */
#include "worker/step_io.h"

#include <stdint.h>

#include "kernels/kernels.h"

static size_t take(size_t *off, size_t bytes)
{
    size_t o = *off;
    *off = (o + bytes + 15) & ~(size_t)15;
    return o;
}

void step_io_layout(step_io_layout_t *L, int T, int n_seqs, int n_sample, int n_blocks)
{
    size_t off = 0;
    const size_t t = (size_t)(T > 0 ? T : 0), s = (size_t)(n_sample > 0 ? n_sample : 0);
    L->tok = take(&off, 4 * s);
    L->lp = take(&off, 4 * s);
    L->top_ids = take(&off, 4 * s * KERN_MAX_LOGPROBS);
    L->top_lp = take(&off, 4 * s * KERN_MAX_LOGPROBS);
    L->fault = take(&off, sizeof(uint32_t));
    L->sp = take(&off, sizeof(kern_sample_t) * s);
    L->adj = take(&off, sizeof(kern_adjust_t) * s);
    L->seqs = take(&off, sizeof(kern_attn_seq_t) * (size_t)(n_seqs > 0 ? n_seqs : 0));
    L->ids = take(&off, 4 * t);
    L->pos = take(&off, 4 * t);
    L->slots = take(&off, 4 * t);
    L->last_row = take(&off, 4 * s);
    L->pad = take(&off, 4 * t);
    L->blocks = take(&off, 4 * (size_t)(n_blocks > 0 ? n_blocks : 0));
    L->end = off;
}
