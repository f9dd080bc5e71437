/* kvalloc.h — paged KV cache block allocator (rank 0 bookkeeping only: the
 * KV memory itself lives on the workers; rank 0 decides which block ids each
 * sequence owns and sends them in the plan's block tables).
 *
 * One pool per attention-DP rank (or one pool when attention is TP): a pool
 * hands out block ids 0..n_blocks-1. Blocks are all-or-nothing: kv_pool_alloc
 * either returns every requested block or none. Freeing a block more times
 * than it was taken, or one the pool never gave out, is a caught bug
 * (MS_ERR_INTERNAL), not corruption.
 *
 * Prefix reuse (kv_cache_config.enable_block_reuse, kv_pool_enable_reuse):
 * a full block whose KV is computed can be published under the hash chain
 * of its tokens (its parent's chain hash + its own tokens; the pool keeps
 * both the parent hash and the tokens, so a match is exact, not a 64-bit
 * guess). Blocks are reference counted: a published block may sit in many
 * sequences' tables at once (they only read it: a sequence never writes
 * below its cached prefix). When its last reference goes, a published block
 * stays "idle": still counted free, kept in LRU order, and evicted (its hash
 * forgotten) only when an allocation finds no never-published block free. */
#ifndef MS_KVALLOC_H
#define MS_KVALLOC_H

#include <stdbool.h>
#include <stdint.h>
#include "status.h"

typedef struct kv_pool kv_pool_t;

ms_status_t kv_pool_create(int n_blocks, kv_pool_t **out);
void kv_pool_destroy(kv_pool_t *p);
/* Turn prefix reuse on for blocks of block_size tokens (before any allocation). */
ms_status_t kv_pool_enable_reuse(kv_pool_t *p, int block_size);
bool kv_pool_reuses(const kv_pool_t *p);
/* Blocks an allocation can take now: never-published free ones + idle published ones. */
int kv_pool_n_free(const kv_pool_t *p);
int kv_pool_n_blocks(const kv_pool_t *p);
/* Published blocks nobody references (reusable, evictable). */
int kv_pool_n_idle(const kv_pool_t *p);
/* n blocks into ids[0..n), each with one reference; false (nothing taken)
 * when fewer than n are free. Evicts idle published blocks, oldest first,
 * only when the never-published ones run out. */
bool kv_pool_alloc(kv_pool_t *p, int n, int32_t *ids);
/* Drop one reference of each block. */
ms_status_t kv_pool_free(kv_pool_t *p, const int32_t *ids, int n);

/* The hash chain: a block's key from its parent's (0 for the first block). */
uint64_t kv_block_hash(uint64_t parent, const int32_t *tokens, int block_size);
/* Longest run of published blocks matching tokens[0 .. max_blocks*bs), block
 * by block along the chain: their ids into ids[], how many of them are idle
 * into *n_idle, the last one's chain hash into *chain (untouched when none
 * match). Takes no reference. 0 when reuse is off. */
int kv_pool_match(const kv_pool_t *p, const int32_t *tokens, int max_blocks, int32_t *ids, int *n_idle,
                  uint64_t *chain);
/* Take one more reference of a block (a match). */
void kv_pool_ref(kv_pool_t *p, int32_t id);
/* Publish referenced block id as holding `tokens` after the chain `parent`;
 * returns its chain hash. When a block with the same content is already
 * published, id stays unpublished (freed normally) and the hash is the same. */
uint64_t kv_pool_publish(kv_pool_t *p, int32_t id, uint64_t parent, const int32_t *tokens);

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
/* Append matched blocks ids[0..n) to an empty t, taking a reference of each
 * (kv_pool_match's result). false (t unchanged) when memory runs out. */
bool kv_table_adopt(kv_table_t *t, kv_pool_t *p, const int32_t *ids, int n);
/* Return every block of t to p and empty t (keeps its memory). */
void kv_table_release(kv_table_t *t, kv_pool_t *p);
void kv_table_free(kv_table_t *t);

#endif
