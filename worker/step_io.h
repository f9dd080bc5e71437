/* step_io.h — the byte layout of one engine step's device I/O block: what
 * the host uploads (step metadata) and downloads (sampled tokens and the
 * fault word), so a step is exactly one upload, one download and one
 * synchronize whatever the layer count (DESIGN "The GPU step", 3).
 *
 *   [tok | lp | top_ids | top_lp | fault | sp | adj | seqs | ids | pos | slots | last_row | pad | blocks]
 *    <-------------- download ------------->
 *                                  <-------------------- upload -------------------------------------->
 *
 * The fault word sits where both ranges meet: the upload writes it (zero, or
 * the bits a test injects) before any op runs, ops OR KERN_FAULT_* into it
 * (the engine repoints cx->fault there), and it comes back with the tokens.
 * Each array is 16-byte aligned. Offsets depend on (n_sample, n_seqs, T)
 * and, for nothing but the end, on n_blocks (blocks go last): a decode step
 * of batch b always has the same offsets, which a captured CUDA graph needs.
 * The host staging buffer (pinned, kern_ops_t.host_alloc) mirrors the device
 * block byte for byte, so both copies are single memcpy-shaped transfers. */
#ifndef MS_STEP_IO_H
#define MS_STEP_IO_H

#include <stddef.h>

typedef struct step_io_layout {
    size_t tok;      /* int32 (n_sample) sampled tokens */
    size_t lp;       /* float (n_sample) their logprobs */
    size_t top_ids;  /* int32 (n_sample, KERN_MAX_LOGPROBS) */
    size_t top_lp;   /* float (n_sample, KERN_MAX_LOGPROBS) */
    size_t fault;    /* uint32: OR of KERN_FAULT_* raised during the step */
    size_t sp;       /* kern_sample_t (n_sample) */
    size_t adj;      /* kern_adjust_t (n_sample): logits_adjust rows (read only in steps that adjust) */
    size_t seqs;     /* kern_attn_seq_t (n_seqs): naive seqs first, then absorbed */
    size_t ids;      /* int32 (T) token ids */
    size_t pos;      /* int32 (T) positions */
    size_t slots;    /* int32 (T) cache rows */
    size_t last_row; /* int32 (n_sample) token row of each sampled seq */
    size_t pad;      /* int32 (T) 0 for a padding row of a step padded to a graph's size, -1 for a real
                      * one (the index gather_rows takes to mask padding rows' routing: forward_moe.c) */
    size_t blocks;   /* int32 (n_blocks) block tables of this rank's seqs */
    size_t end;      /* bytes of the whole block */
} step_io_layout_t;

void step_io_layout(step_io_layout_t *L, int T, int n_seqs, int n_sample, int n_blocks);

/* Bytes moved each way: the download is [0, dl_bytes), the upload
 * [L->fault, L->end). */
static inline size_t step_io_dl_bytes(const step_io_layout_t *L) { return L->fault + 4; }
static inline size_t step_io_ul_bytes(const step_io_layout_t *L) { return L->end - L->fault; }

#endif
