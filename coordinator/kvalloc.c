/* kvalloc.c — paged KV block pools and per-sequence block tables (kvalloc.h).
 * A pool is a stack of free ids (LIFO keeps recently freed, cache-warm blocks
 * in use) plus an in-use bitmap that turns double frees into errors. */
#include "kvalloc.h"

#include <stdlib.h>
#include <string.h>

struct kv_pool {
    int n_blocks;
    int n_free;
    int32_t *free_ids; /* stack: free_ids[0..n_free) */
    uint8_t *used;     /* per block: 1 while allocated */
};

ms_status_t kv_pool_create(int n_blocks, kv_pool_t **out)
{
    if (n_blocks <= 0) return MS_ERR(MS_ERR_INVALID, "kv pool: %d blocks (need at least 1)", n_blocks);
    kv_pool_t *p = calloc(1, sizeof *p);
    if (!p) goto nomem;
    p->free_ids = malloc(sizeof(int32_t) * (size_t)n_blocks);
    p->used = calloc((size_t)n_blocks, 1);
    if (!p->free_ids || !p->used) goto nomem_free;
    p->n_blocks = n_blocks;
    p->n_free = n_blocks;
    /* Highest id at the bottom so the first allocations get 0, 1, 2, ... */
    for (int i = 0; i < n_blocks; i++) p->free_ids[i] = n_blocks - 1 - i;
    *out = p;
    return MS_OK;
nomem_free:
    free(p->free_ids);
    free(p->used);
    free(p);
nomem:
    return MS_ERR(MS_ERR_NOMEM, "kv pool: out of memory for %d blocks", n_blocks);
}

void kv_pool_destroy(kv_pool_t *p)
{
    if (!p) return;
    free(p->free_ids);
    free(p->used);
    free(p);
}

int kv_pool_n_free(const kv_pool_t *p) { return p->n_free; }
int kv_pool_n_blocks(const kv_pool_t *p) { return p->n_blocks; }

bool kv_pool_alloc(kv_pool_t *p, int n, int32_t *ids)
{
    if (n < 0 || n > p->n_free) return false;
    for (int i = 0; i < n; i++) {
        int32_t b = p->free_ids[--p->n_free];
        p->used[b] = 1;
        ids[i] = b;
    }
    return true;
}

ms_status_t kv_pool_free(kv_pool_t *p, const int32_t *ids, int n)
{
    for (int i = 0; i < n; i++) {
        int32_t b = ids[i];
        if (b < 0 || b >= p->n_blocks || !p->used[b])
            return MS_ERR(MS_ERR_INTERNAL, "kv pool: freeing block %d that is not allocated", b);
        p->used[b] = 0;
        p->free_ids[p->n_free++] = b;
    }
    return MS_OK;
}

bool kv_table_reserve(kv_table_t *t, kv_pool_t *p, int n_tokens, int block_size)
{
    int need = kv_blocks_for(n_tokens, block_size) - t->n;
    if (need <= 0) return true;
    if (need > p->n_free) return false;
    if (t->n + need > t->cap) {
        int cap = t->cap ? t->cap : 4;
        while (cap < t->n + need) cap *= 2;
        int32_t *ids = realloc(t->ids, sizeof(int32_t) * (size_t)cap);
        if (!ids) return false;
        t->ids = ids;
        t->cap = cap;
    }
    kv_pool_alloc(p, need, t->ids + t->n);
    t->n += need;
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
