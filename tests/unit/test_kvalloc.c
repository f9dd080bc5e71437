/* test_kvalloc.c — KV block pool and block tables: all-or-nothing
 * allocation, unique ids, double-free detection, no leaks after random
 * churn. */
#include "../test.h"
#include "coordinator/kvalloc.h"

#include <stdint.h>

static uint64_t rng = 88172645463325252ull;
static uint32_t xr(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

static void test_pool_basic(void)
{
    kv_pool_t *p = NULL;
    T_CHECK(kv_pool_create(0, &p) != MS_OK);
    T_CHECK(kv_pool_create(8, &p) == MS_OK);
    T_CHECK(kv_pool_n_free(p) == 8 && kv_pool_n_blocks(p) == 8);
    int32_t ids[8];
    T_CHECK(kv_pool_alloc(p, 3, ids));
    T_CHECK(ids[0] == 0 && ids[1] == 1 && ids[2] == 2); /* fresh pools hand out low ids first */
    T_CHECK(kv_pool_n_free(p) == 5);
    T_CHECK(!kv_pool_alloc(p, 6, ids + 3)); /* all or nothing */
    T_CHECK(kv_pool_n_free(p) == 5);
    T_CHECK(kv_pool_alloc(p, 5, ids + 3));
    T_CHECK(kv_pool_n_free(p) == 0);
    uint8_t seen[8] = {0};
    for (int i = 0; i < 8; i++) {
        T_CHECK(ids[i] >= 0 && ids[i] < 8 && !seen[ids[i]]);
        if (ids[i] >= 0 && ids[i] < 8) seen[ids[i]] = 1;
    }
    T_CHECK(kv_pool_free(p, ids, 8) == MS_OK);
    T_CHECK(kv_pool_n_free(p) == 8);
    /* double free and foreign ids are caught and change nothing */
    T_CHECK(kv_pool_free(p, ids, 1) != MS_OK);
    int32_t bad = 99;
    T_CHECK(kv_pool_free(p, &bad, 1) != MS_OK);
    bad = -1;
    T_CHECK(kv_pool_free(p, &bad, 1) != MS_OK);
    T_CHECK(kv_pool_n_free(p) == 8);
    kv_pool_destroy(p);
}

static void test_table(void)
{
    kv_pool_t *p = NULL;
    T_CHECK(kv_pool_create(10, &p) == MS_OK);
    kv_table_t a = {0}, b = {0};
    T_CHECK(kv_blocks_for(0, 4) == 0 && kv_blocks_for(1, 4) == 1 && kv_blocks_for(4, 4) == 1 && kv_blocks_for(5, 4) == 2);
    T_CHECK(kv_table_reserve(&a, p, 9, 4) && a.n == 3);
    T_CHECK(kv_table_reserve(&a, p, 12, 4) && a.n == 3); /* already covered */
    T_CHECK(kv_table_reserve(&a, p, 13, 4) && a.n == 4);
    T_CHECK(kv_table_reserve(&b, p, 24, 4) && b.n == 6);
    T_CHECK(kv_pool_n_free(p) == 0);
    T_CHECK(!kv_table_reserve(&a, p, 17, 4) && a.n == 4); /* unchanged on failure */
    kv_table_release(&b, p);
    T_CHECK(b.n == 0 && kv_pool_n_free(p) == 6);
    T_CHECK(kv_table_reserve(&a, p, 40, 4) && a.n == 10);
    kv_table_release(&a, p);
    T_CHECK(kv_pool_n_free(p) == 10);
    kv_table_free(&a);
    kv_table_free(&b);
    kv_pool_destroy(p);
}

/* Random churn over many tables: the union of tables and the free list is
 * always exactly the pool, and everything comes back at the end. */
static void test_churn(void)
{
    enum { NB = 64, NT = 12, BS = 3 };
    kv_pool_t *p = NULL;
    T_CHECK(kv_pool_create(NB, &p) == MS_OK);
    kv_table_t t[NT] = {{0}};
    int tokens[NT] = {0};
    int bad_partition = 0, bad_count = 0;
    for (int it = 0; it < 20000; it++) {
        int i = (int)(xr() % NT);
        if (xr() % 4 == 0) {
            kv_table_release(&t[i], p);
            tokens[i] = 0;
        } else {
            int want = tokens[i] + (int)(xr() % 7);
            int before = t[i].n, free_before = kv_pool_n_free(p);
            if (kv_table_reserve(&t[i], p, want, BS)) {
                tokens[i] = want;
                if (free_before - kv_pool_n_free(p) != t[i].n - before) bad_count++;
            } else if (t[i].n != before || kv_pool_n_free(p) != free_before) {
                bad_count++;
            }
        }
        if (it % 97 == 0) {
            uint8_t own[NB] = {0};
            int held = 0;
            for (int k = 0; k < NT; k++)
                for (int j = 0; j < t[k].n; j++) {
                    if (own[t[k].ids[j]]++) bad_partition++;
                    held++;
                }
            if (held + kv_pool_n_free(p) != NB) bad_partition++;
        }
    }
    T_CHECK_MSG(bad_partition == 0, "%d partition violations", bad_partition);
    T_CHECK_MSG(bad_count == 0, "%d accounting violations", bad_count);
    for (int i = 0; i < NT; i++) {
        kv_table_release(&t[i], p);
        kv_table_free(&t[i]);
    }
    T_CHECK(kv_pool_n_free(p) == NB);
    kv_pool_destroy(p);
}

/* Prefix reuse: publish, exact match along the chain, reference counts,
 * idle blocks counted free, LRU eviction only when the free stack is empty. */
static void test_reuse(void)
{
    enum { NB = 6, BS = 4 };
    kv_pool_t *p = NULL;
    T_CHECK(kv_pool_create(NB, &p) == MS_OK && kv_pool_enable_reuse(p, BS) == MS_OK);
    int32_t toks[3 * BS], other[3 * BS];
    for (int i = 0; i < 3 * BS; i++) toks[i] = 100 + i, other[i] = 100 + i;
    other[BS + 1] = 7; /* differs in the second block */
    int32_t a[3];
    T_CHECK(kv_pool_alloc(p, 3, a));
    uint64_t h = 0;
    for (int i = 0; i < 3; i++) h = kv_pool_publish(p, a[i], h, toks + i * BS);
    int32_t m[3];
    int idle = -1;
    uint64_t chain = 0;
    T_CHECK(kv_pool_match(p, toks, 3, m, &idle, &chain) == 3 && idle == 0 && chain == h);
    T_CHECK(m[0] == a[0] && m[1] == a[1] && m[2] == a[2]);
    T_CHECK(kv_pool_match(p, other, 3, m, &idle, &chain) == 1 && m[0] == a[0]);
    /* a chain is positional: the second block's tokens alone do not match as a first block */
    T_CHECK(kv_pool_match(p, toks + BS, 2, m, &idle, &chain) == 0);
    /* shared: a second reference; freeing once keeps it in use */
    kv_pool_ref(p, a[0]);
    T_CHECK(kv_pool_free(p, a, 3) == MS_OK);
    T_CHECK(kv_pool_n_free(p) == NB - 1 && kv_pool_n_idle(p) == 2);
    T_CHECK(kv_pool_match(p, toks, 3, m, &idle, &chain) == 3 && idle == 2);
    T_CHECK(kv_pool_free(p, a, 1) == MS_OK && kv_pool_n_idle(p) == 3 && kv_pool_n_free(p) == NB);
    T_CHECK(kv_pool_free(p, a, 1) != MS_OK); /* no reference left: a double free */
    /* allocation takes never-published blocks first, then evicts oldest idle (a[1] was freed first) */
    int32_t b[4];
    T_CHECK(kv_pool_alloc(p, 3, b) && kv_pool_n_idle(p) == 3);
    T_CHECK(kv_pool_match(p, toks, 3, m, &idle, &chain) == 3);
    T_CHECK(kv_pool_alloc(p, 1, b + 3) && b[3] == a[1] && kv_pool_n_idle(p) == 2);
    T_CHECK(kv_pool_match(p, toks, 3, m, &idle, &chain) == 1); /* the chain breaks at the evicted block */
    /* a duplicate publish leaves the second block unpublished; it frees to the stack */
    uint64_t h0 = kv_pool_publish(p, b[0], 0, toks);
    T_CHECK(h0 == kv_block_hash(0, toks, BS));
    T_CHECK(kv_pool_free(p, b, 4) == MS_OK && kv_pool_n_free(p) == NB && kv_pool_n_idle(p) == 2);
    kv_pool_destroy(p);
}

int main(void)
{
    test_pool_basic();
    test_table();
    test_churn();
    test_reuse();
    return t_done();
}
