/* proto.h — building, checking and moving control-plane messages (plan.h).
 *
 * Building: a proto_planbuf_t is a growable byte buffer the scheduler fills
 * one sequence at a time; proto_planbuf_finish lays it out as plan.h says
 * (header, seqs, tokens, block tables) and returns a view into the buffer.
 *
 * Checking: proto_plan_check validates a received buffer completely (magic,
 * version, type, length, every offset and count) so a worker never indexes
 * outside a plan, whatever arrives. */
#ifndef MS_PROTO_H
#define MS_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include "plan.h"
#include "status.h"

typedef struct {
    /* staging, separate arrays so adding is O(1) amortized */
    proto_seq_t *seqs;
    int n_seqs, cap_seqs;
    int32_t *tokens;
    int n_tokens, cap_tokens;
    int32_t *blocks;
    int n_blocks, cap_blocks;
    proto_bias_t *bias;
    int n_bias, cap_bias;
    /* the finished message */
    uint8_t *msg;
    size_t msg_cap;
} proto_planbuf_t;

void proto_planbuf_init(proto_planbuf_t *b);
void proto_planbuf_free(proto_planbuf_t *b);
void proto_planbuf_reset(proto_planbuf_t *b);
/* Append one sequence: `seq`'s slot, dp_rank, pos, flags and sampling knobs
 * are copied; n_tokens/tok_off/blk_off/n_blocks are filled from the arrays. */
ms_status_t proto_planbuf_add(proto_planbuf_t *b, const proto_seq_t *seq, const int32_t *tokens, int n_tokens,
                              const int32_t *blocks, int n_blocks);
/* Attach logit_bias entries to the sequence added last (its n_bias/bias_off). */
ms_status_t proto_planbuf_add_bias(proto_planbuf_t *b, const proto_bias_t *bias, int n);
/* Lay out the message; the returned plan lives in b until the next reset. */
ms_status_t proto_planbuf_finish(proto_planbuf_t *b, uint32_t step, const proto_plan_t **out);

/* Rank `rank`'s part of a full plan: the sequences it runs (attention DP:
 * its own, dp_rank == rank; TP: all, dp_rank -1), in plan order, with their
 * tokens and block tables, offsets rebased. Writes it to dst when not NULL;
 * returns its size in bytes either way. Other DP ranks' sequences never
 * reach a rank: nothing in its step needs them. */
size_t proto_plan_part(const proto_plan_t *full, int rank, void *dst);

/* Delta-encoded parts (plan_delta.c): a mirror of one rank's sequence
 * state, kept by rank 0 for each rank and by the rank itself. */
typedef struct proto_mirror proto_mirror_t;
ms_status_t proto_mirror_create(proto_mirror_t **out);
void proto_mirror_destroy(proto_mirror_t *m);
/* Rank 0: rank's part of `full` (as proto_plan_part), decode steps of
 * sequences the rank already holds as proto_delta_t entries, into *buf
 * (grown as needed; *len bytes); updates the rank's mirror m. */
ms_status_t proto_plan_part_delta(const proto_plan_t *full, int rank, proto_mirror_t *m, uint8_t **buf, size_t *cap,
                                  size_t *len);
/* The rank: a received part back to full entries (no deltas), in plan
 * order, exactly those proto_plan_part would give; updates its mirror. The
 * plan lives in pb until its next reset. MS_ERR_FORMAT when a delta names a
 * slot the mirror does not hold (the two ends disagree: a bug). */
ms_status_t proto_plan_expand(const proto_plan_t *part, proto_mirror_t *m, proto_planbuf_t *pb,
                              const proto_plan_t **out);

/* The names of the set bits of `bits` (from names[n_names]), ", "-joined, into buf (n bytes);
 * "unknown fault bits 0x..." when no name matches. */
typedef struct {
    uint32_t bit;
    const char *what;
} proto_bit_name_t;
void proto_bits_describe(const proto_bit_name_t *names, size_t n_names, uint32_t bits, char *buf, size_t n);
/* Names of PROTO_FAULT_* bits (a sequence's result fault word). */
void proto_fault_describe(uint32_t bits, char *buf, size_t n);

/* A header for a message without a body (PROTO_MSG_SHUTDOWN). */
proto_hdr_t proto_hdr_make(proto_msg_type_t type, uint32_t length, uint32_t step);
/* Header sanity: magic, version, type in range, length within [16, max_len]. */
ms_status_t proto_hdr_check(const proto_hdr_t *h, size_t max_len);
/* Whole-plan sanity; len = bytes received. */
ms_status_t proto_plan_check(const void *buf, size_t len);

#endif
