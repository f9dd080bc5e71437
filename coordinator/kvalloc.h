/* kvalloc.h — paged KV cache block allocator (rank 0 bookkeeping only: the
 * KV memory itself lives on the workers; rank 0 decides which block ids each
 * sequence owns and sends them in the plan's block tables).
 *
 * One pool per attention-DP rank (or one pool when attention is TP): a pool
 * hands out block ids 0..n_blocks-1. Blocks are all-or-nothing: kv_pool_alloc
 * either returns every requested block or none. Freeing a block twice or one
 * the pool never gave out is a caught bug (MS_ERR_INTERNAL), not corruption. */
#ifndef MS_KVALLOC_H
#define MS_KVALLOC_H

#include <stdbool.h>
#include <stdint.h>
#include "status.h"

typedef struct kv_pool kv_pool_t;

ms_status_t kv_pool_create(int n_blocks, kv_pool_t **out);
void kv_pool_destroy(kv_pool_t *p);
int kv_pool_n_free(const kv_pool_t *p);
int kv_pool_n_blocks(const kv_pool_t *p);
/* n blocks into ids[0..n); false (nothing taken) when fewer than n are free. */
bool kv_pool_alloc(kv_pool_t *p, int n, int32_t *ids);
ms_status_t kv_pool_free(kv_pool_t *p, const int32_t *ids, int n);

/* A sequence's block table: block i holds positions [i*bs, (i+1)*bs). */
typedef struct {
    int32_t *ids;
    int n, cap;
} kv_table_t;

/* Tokens -> blocks needed to hold them. */
static inline int kv_blocks_for(int n_tokens, int block_size) { return (n_tokens + block_size - 1) / block_size; }
/* Grow t to cover n_tokens positions, taking blocks from p. false (t
 * unchanged) when the pool has too few free blocks or memory runs out. */
bool kv_table_reserve(kv_table_t *t, kv_pool_t *p, int n_tokens, int block_size);
/* Return every block of t to p and empty t (keeps its memory). */
void kv_table_release(kv_table_t *t, kv_pool_t *p);
void kv_table_free(kv_table_t *t);

#endif
