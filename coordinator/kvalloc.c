/* kvalloc.c — paged KV block pools, prefix reuse and per-sequence block
 * tables (kvalloc.h).
 *
 * A pool is a stack of never-published free ids (LIFO keeps recently freed,
 * cache-warm blocks in use), a reference count per block (a free with no
 * reference left is a caught double free) and, with reuse on, the published
 * blocks: a chained hash table from chain hash to block, each block's parent
 * hash and tokens (so a match compares content), and a doubly linked LRU
 * list of the idle ones (published, no reference; head = oldest).
 *
 * Invariants: n_free = stack + idle; a block is in the stack iff ref == 0
 * and unpublished; in the LRU list iff ref == 0 and published. */
#include "kvalloc.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    int32_t ref;
    bool published;
    uint64_t hash, parent;
    int32_t bucket_next;    /* next block in its hash bucket, -1 */
    int32_t lru_prev, lru_next;
} kv_blk_t;

struct kv_pool {
    int n_blocks;
    int n_stack;
    int32_t *free_ids; /* stack: free_ids[0..n_stack) */
    kv_blk_t *b;
    /* reuse (NULL/0 when off) */
    int block_size;
    int32_t *tokens;   /* [n_blocks][block_size] of published blocks */
    int32_t *buckets;  /* [n_buckets] first block, -1 */
    uint32_t n_buckets;
    int32_t lru_head, lru_tail;
    int n_idle;
};

ms_status_t kv_pool_create(int n_blocks, kv_pool_t **out)
{
    if (n_blocks <= 0) return MS_ERR(MS_ERR_INVALID, "kv pool: %d blocks (need at least 1)", n_blocks);
    kv_pool_t *p = calloc(1, sizeof *p);
    if (!p) goto nomem;
    p->free_ids = malloc(sizeof(int32_t) * (size_t)n_blocks);
    p->b = calloc((size_t)n_blocks, sizeof *p->b);
    if (!p->free_ids || !p->b) goto nomem_free;
    p->n_blocks = n_blocks;
    p->n_stack = n_blocks;
    p->lru_head = p->lru_tail = -1;
    /* Highest id at the bottom so the first allocations get 0, 1, 2, ... */
    for (int i = 0; i < n_blocks; i++) p->free_ids[i] = n_blocks - 1 - i;
    *out = p;
    return MS_OK;
nomem_free:
    free(p->free_ids);
    free(p->b);
    free(p);
nomem:
    return MS_ERR(MS_ERR_NOMEM, "kv pool: out of memory for %d blocks", n_blocks);
}

void kv_pool_destroy(kv_pool_t *p)
{
    if (!p) return;
    free(p->free_ids);
    free(p->b);
    free(p->tokens);
    free(p->buckets);
    free(p);
}

ms_status_t kv_pool_enable_reuse(kv_pool_t *p, int block_size)
{
    if (block_size < 1) return MS_ERR(MS_ERR_INVALID, "kv pool: block size %d", block_size);
    uint32_t nb = 16;
    while (nb < (uint32_t)p->n_blocks && nb < (1u << 30)) nb <<= 1;
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)p->n_blocks * (size_t)block_size);
    int32_t *bk = malloc(sizeof(int32_t) * nb);
    if (!tok || !bk) {
        free(tok), free(bk);
        return MS_ERR(MS_ERR_NOMEM, "kv pool: out of memory for the prefix cache of %d blocks", p->n_blocks);
    }
    memset(bk, 0xff, sizeof(int32_t) * nb);
    p->tokens = tok, p->buckets = bk, p->n_buckets = nb, p->block_size = block_size;
    return MS_OK;
}

bool kv_pool_reuses(const kv_pool_t *p) { return p->tokens != NULL; }
int kv_pool_n_free(const kv_pool_t *p) { return p->n_stack + p->n_idle; }
int kv_pool_n_blocks(const kv_pool_t *p) { return p->n_blocks; }
int kv_pool_n_idle(const kv_pool_t *p) { return p->n_idle; }

static void lru_remove(kv_pool_t *p, int32_t id)
{
    kv_blk_t *b = &p->b[id];
    if (b->lru_prev >= 0) p->b[b->lru_prev].lru_next = b->lru_next;
    else p->lru_head = b->lru_next;
    if (b->lru_next >= 0) p->b[b->lru_next].lru_prev = b->lru_prev;
    else p->lru_tail = b->lru_prev;
    b->lru_prev = b->lru_next = -1;
    p->n_idle--;
}

static void lru_push(kv_pool_t *p, int32_t id)
{
    kv_blk_t *b = &p->b[id];
    b->lru_next = -1;
    b->lru_prev = p->lru_tail;
    if (p->lru_tail >= 0) p->b[p->lru_tail].lru_next = id;
    else p->lru_head = id;
    p->lru_tail = id;
    p->n_idle++;
}

static void unpublish(kv_pool_t *p, int32_t id)
{
    kv_blk_t *b = &p->b[id];
    int32_t *link = &p->buckets[b->hash & (p->n_buckets - 1)];
    while (*link >= 0 && *link != id) link = &p->b[*link].bucket_next;
    if (*link == id) *link = b->bucket_next;
    b->bucket_next = -1;
    b->published = false;
}

bool kv_pool_alloc(kv_pool_t *p, int n, int32_t *ids)
{
    if (n < 0 || n > kv_pool_n_free(p)) return false;
    for (int i = 0; i < n; i++) {
        int32_t id;
        if (p->n_stack > 0) {
            id = p->free_ids[--p->n_stack];
        } else { /* evict the oldest idle published block */
            id = p->lru_head;
            lru_remove(p, id);
            unpublish(p, id);
        }
        p->b[id].ref = 1;
        ids[i] = id;
    }
    return true;
}

ms_status_t kv_pool_free(kv_pool_t *p, const int32_t *ids, int n)
{
    for (int i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= p->n_blocks || p->b[id].ref <= 0)
            return MS_ERR(MS_ERR_INTERNAL, "kv pool: freeing block %d that is not allocated", id);
        if (--p->b[id].ref > 0) continue;
        if (p->b[id].published) lru_push(p, id);
        else p->free_ids[p->n_stack++] = id;
    }
    return MS_OK;
}

uint64_t kv_block_hash(uint64_t parent, const int32_t *tokens, int block_size)
{
    /* FNV-1a over the parent and the token ids, then a splitmix finalizer */
    uint64_t h = 0xcbf29ce484222325ull ^ parent;
    for (int i = 0; i < block_size; i++) {
        h ^= (uint32_t)tokens[i];
        h *= 0x100000001b3ull;
    }
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

/* The published block with exactly this content after `parent`, or -1. */
static int32_t find(const kv_pool_t *p, uint64_t h, uint64_t parent, const int32_t *tokens)
{
    const size_t bs = (size_t)p->block_size;
    for (int32_t id = p->buckets[h & (p->n_buckets - 1)]; id >= 0; id = p->b[id].bucket_next) {
        const kv_blk_t *b = &p->b[id];
        if (b->hash == h && b->parent == parent && !memcmp(p->tokens + (size_t)id * bs, tokens, sizeof(int32_t) * bs))
            return id;
    }
    return -1;
}

int kv_pool_match(const kv_pool_t *p, const int32_t *tokens, int max_blocks, int32_t *ids, int *n_idle,
                  uint64_t *chain)
{
    *n_idle = 0;
    if (!p->tokens) return 0;
    uint64_t parent = 0;
    int n = 0;
    for (; n < max_blocks; n++) {
        const int32_t *t = tokens + (size_t)n * (size_t)p->block_size;
        uint64_t h = kv_block_hash(parent, t, p->block_size);
        int32_t id = find(p, h, parent, t);
        if (id < 0) break;
        ids[n] = id;
        *n_idle += p->b[id].ref == 0;
        parent = h;
    }
    if (n > 0) *chain = parent;
    return n;
}

void kv_pool_ref(kv_pool_t *p, int32_t id)
{
    if (p->b[id].ref == 0 && p->b[id].published) lru_remove(p, id);
    p->b[id].ref++;
}

uint64_t kv_pool_publish(kv_pool_t *p, int32_t id, uint64_t parent, const int32_t *tokens)
{
    uint64_t h = kv_block_hash(parent, tokens, p->block_size);
    if (!p->tokens || p->b[id].published || p->b[id].ref <= 0 || find(p, h, parent, tokens) >= 0) return h;
    kv_blk_t *b = &p->b[id];
    memcpy(p->tokens + (size_t)id * (size_t)p->block_size, tokens, sizeof(int32_t) * (size_t)p->block_size);
    b->hash = h, b->parent = parent, b->published = true;
    int32_t *head = &p->buckets[h & (p->n_buckets - 1)];
    b->bucket_next = *head;
    *head = id;
    return h;
}

static bool table_grow(kv_table_t *t, int n)
{
    if (n <= t->cap) return true;
    int cap = t->cap ? t->cap : 4;
    while (cap < n) cap *= 2;
    int32_t *ids = realloc(t->ids, sizeof(int32_t) * (size_t)cap);
    if (!ids) return false;
    t->ids = ids;
    t->cap = cap;
    return true;
}

bool kv_table_reserve(kv_table_t *t, kv_pool_t *p, int n_tokens, int block_size)
{
    int need = kv_blocks_for(n_tokens, block_size) - t->n;
    if (need <= 0) return true;
    if (need > kv_pool_n_free(p)) return false;
    if (!table_grow(t, t->n + need)) return false;
    kv_pool_alloc(p, need, t->ids + t->n);
    t->n += need;
    return true;
}

bool kv_table_adopt(kv_table_t *t, kv_pool_t *p, const int32_t *ids, int n)
{
    if (!table_grow(t, t->n + n)) return false;
    for (int i = 0; i < n; i++) {
        kv_pool_ref(p, ids[i]);
        t->ids[t->n++] = ids[i];
    }
    return true;
}

void kv_table_release(kv_table_t *t, kv_pool_t *p)
{
    if (t->n > 0 && kv_pool_free(p, t->ids, t->n) != MS_OK)
        MS_WARN("kv table: block table was inconsistent with its pool (bug); continuing");
    t->n = 0;
}

void kv_table_free(kv_table_t *t)
{
    free(t->ids);
    memset(t, 0, sizeof *t);
}
