/* tok_bpe.c — byte-level BPE on one pre-tokenized word, the per-thread word
 * cache, and the per-thread scratch (tok_tls_t).
 *
 * Merge order is the Rust library's: repeatedly apply the adjacent pair with
 * the lowest merge rank, the leftmost one among equals. Short words (almost
 * all) use a compact array with a linear scan for the minimum; long words (a
 * 10 000-space run is one word) use a heap, so the cost stays O(n log n).
 *
 * The word cache maps a word's bytes to its ids. It lives in thread-local
 * scratch so a shared tok_t stays read-only; it is cleared when full, which
 * only costs speed, never changes output. */
#include "tok_internal.h"

#include <string.h>

#define CACHE_SLOTS (1u << 16)
#define CACHE_MAX_ENTRIES (CACHE_SLOTS / 2)
#define CACHE_KEY_ARENA (1u << 20)
#define CACHE_ID_ARENA (1u << 18)
#define CACHE_MAX_WORD 255
#define SMALL_WORD 64

typedef struct {
    uint64_t hash; /* 0: empty */
    uint32_t key_off, ids_off;
    uint16_t key_len, n_ids;
} cache_slot_t;

typedef struct {
    uint32_t rank, pos;
    int32_t new_id;
} heap_ent_t;

struct tok_tls {
    pcre2_match_data *md;
    pcre2_match_context *mc; /* carries the JIT stack */
    pcre2_jit_stack *jit_stack;
    cache_slot_t *slots;
    uint8_t *keys;
    int32_t *ids;
    size_t n_entries, keys_used, ids_used;
    /* heap-path scratch, grown on demand */
    int32_t *sym, *prev, *next;
    heap_ent_t *heap;
    size_t scratch_cap, heap_cap;
};

void tok_tls_destroy(void *p)
{
    tok_tls_t *t = p;
    if (!t) return;
    pcre2_match_data_free(t->md);
    pcre2_match_context_free(t->mc);
    pcre2_jit_stack_free(t->jit_stack);
    free(t->slots);
    free(t->keys);
    free(t->ids);
    free(t->sym);
    free(t->prev);
    free(t->next);
    free(t->heap);
    free(t);
}

tok_tls_t *tok_tls_get(const tok_t *tok)
{
    tok_tls_t *t = pthread_getspecific(tok->tls_key);
    if (t) return t;
    t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->md = pcre2_match_data_create(16, NULL);
    /* The JIT keeps a backtrack entry per character of a greedy repeat: the
     * default 32 KiB stack fails on a few thousand spaces. Address space is
     * reserved up front and pages are touched only as a match needs them. */
    t->mc = pcre2_match_context_create(NULL);
    t->jit_stack = pcre2_jit_stack_create(64 * 1024, TOK_JIT_STACK_MAX, NULL);
    if (t->mc && t->jit_stack) pcre2_jit_stack_assign(t->mc, NULL, t->jit_stack);
    t->slots = calloc(CACHE_SLOTS, sizeof *t->slots);
    t->keys = malloc(CACHE_KEY_ARENA);
    t->ids = malloc(CACHE_ID_ARENA * sizeof *t->ids);
    if (!t->md || !t->mc || !t->jit_stack || !t->slots || !t->keys || !t->ids || pthread_setspecific(tok->tls_key, t)) {
        tok_tls_destroy(t);
        return NULL;
    }
    return t;
}

pcre2_match_data *tok_tls_match_data(tok_tls_t *tls) { return tls->md; }
pcre2_match_context *tok_tls_match_context(tok_tls_t *tls) { return tls->mc; }

static inline uint64_t hash_bytes(const uint8_t *s, size_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ n;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ v) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
        s += 8, n -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, s, n);
    h = (h ^ v) * 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 29;
    return h | 1;
}

static inline bool merge_lookup(const tok_t *tok, int32_t a, int32_t b, uint32_t *rank, int32_t *id)
{
    uint64_t v;
    if (!tok_map_get(&tok->merges, (uint64_t)(uint32_t)a << 32 | (uint32_t)b, &v)) return false;
    *rank = (uint32_t)(v >> 32);
    *id = (int32_t)(uint32_t)v;
    return true;
}

/* Short words: arrays compacted in place; m <= SMALL_WORD. */
static size_t bpe_small(const tok_t *tok, const uint8_t *w, size_t n, int32_t *sym)
{
    uint32_t rank[SMALL_WORD];
    int32_t nid[SMALL_WORD];
    size_t m = n;
    for (size_t i = 0; i < n; i++) sym[i] = tok->byte_id[w[i]];
    for (size_t i = 0; i + 1 < m; i++)
        if (!merge_lookup(tok, sym[i], sym[i + 1], &rank[i], &nid[i])) rank[i] = UINT32_MAX;
    while (m > 1) {
        size_t best = 0;
        for (size_t i = 1; i + 1 < m; i++)
            if (rank[i] < rank[best]) best = i;
        if (rank[best] == UINT32_MAX) break;
        size_t i = best;
        sym[i] = nid[i];
        memmove(sym + i + 1, sym + i + 2, (m - i - 2) * sizeof *sym);
        memmove(rank + i, rank + i + 1, (m - i - 2) * sizeof *rank);
        memmove(nid + i, nid + i + 1, (m - i - 2) * sizeof *nid);
        m--;
        if (i > 0 && !merge_lookup(tok, sym[i - 1], sym[i], &rank[i - 1], &nid[i - 1])) rank[i - 1] = UINT32_MAX;
        if (i + 1 < m && !merge_lookup(tok, sym[i], sym[i + 1], &rank[i], &nid[i])) rank[i] = UINT32_MAX;
    }
    return m;
}

static inline bool heap_less(const heap_ent_t *a, const heap_ent_t *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(heap_ent_t *h, size_t *n, heap_ent_t e)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&e, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static heap_ent_t heap_pop(heap_ent_t *h, size_t *n)
{
    heap_ent_t top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

/* Long words: linked symbols + a heap of candidate merges, validated when
 * popped (the Rust algorithm). Appends the result ids to out. */
static ms_status_t bpe_large(const tok_t *tok, tok_tls_t *t, const uint8_t *w, size_t n, tok_ids_t *out)
{
    if (n > t->scratch_cap) {
        size_t cap = n * 2;
        int32_t *s = realloc(t->sym, cap * sizeof *s), *p = s ? realloc(t->prev, cap * sizeof *p) : NULL;
        if (s) t->sym = s;
        if (p) t->prev = p;
        int32_t *x = (s && p) ? realloc(t->next, cap * sizeof *x) : NULL;
        if (x) t->next = x;
        heap_ent_t *h = x ? realloc(t->heap, cap * 3 * sizeof *h) : NULL; /* n-1 pushes + 2 per merge */
        if (!h) return MS_ERR(MS_ERR_NOMEM, "tokenizer: out of memory (word of %zu bytes)", n);
        t->heap = h;
        t->scratch_cap = cap;
        t->heap_cap = cap * 3;
    }
    int32_t *sym = t->sym, *prev = t->prev, *next = t->next;
    heap_ent_t *heap = t->heap;
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        sym[i] = tok->byte_id[w[i]];
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        heap_ent_t e = {.pos = (uint32_t)i};
        if (merge_lookup(tok, sym[i], sym[i + 1], &e.rank, &e.new_id)) heap_push(heap, &hn, e);
    }
    while (hn) {
        heap_ent_t top = heap_pop(heap, &hn);
        size_t pos = top.pos;
        if (sym[pos] < 0 || next[pos] < 0) continue; /* merged away, or last */
        size_t right = (size_t)next[pos];
        uint32_t r;
        int32_t id;
        if (!merge_lookup(tok, sym[pos], sym[right], &r, &id) || id != top.new_id) continue; /* stale */
        sym[pos] = id;
        sym[right] = -1;
        next[pos] = next[right];
        if (next[pos] >= 0) prev[next[pos]] = (int32_t)pos;
        heap_ent_t e;
        if (prev[pos] >= 0 && merge_lookup(tok, sym[prev[pos]], sym[pos], &e.rank, &e.new_id)) {
            e.pos = (uint32_t)prev[pos];
            heap_push(heap, &hn, e);
        }
        if (next[pos] >= 0 && merge_lookup(tok, sym[pos], sym[next[pos]], &e.rank, &e.new_id)) {
            e.pos = (uint32_t)pos;
            heap_push(heap, &hn, e);
        }
    }
    for (int32_t i = 0; i >= 0; i = next[i]) MS_TRY(tok_ids_push(out, sym[i]));
    return MS_OK;
}

static void cache_clear(tok_tls_t *t)
{
    memset(t->slots, 0, CACHE_SLOTS * sizeof *t->slots);
    t->n_entries = t->keys_used = t->ids_used = 0;
}

ms_status_t tok_bpe_word(const tok_t *tok, tok_tls_t *t, const uint8_t *w, size_t len, tok_ids_t *out)
{
    if (len == 0) return MS_OK;
    if (len == 1) return tok_ids_push(out, tok->byte_id[w[0]]);
    if (len > SMALL_WORD) return bpe_large(tok, t, w, len, out);

    uint64_t h = hash_bytes(w, len);
    size_t i = (size_t)h & (CACHE_SLOTS - 1);
    for (;;) {
        cache_slot_t *s = &t->slots[i];
        if (s->hash == 0) break;
        if (s->hash == h && s->key_len == len && !memcmp(t->keys + s->key_off, w, len)) {
            if (out->n + s->n_ids > out->cap) {
                size_t nc = (out->n + s->n_ids) * 2;
                int32_t *nv = realloc(out->v, nc * sizeof *nv);
                if (!nv) return MS_ERR(MS_ERR_NOMEM, "tokenizer: out of memory");
                out->v = nv, out->cap = nc;
            }
            memcpy(out->v + out->n, t->ids + s->ids_off, s->n_ids * sizeof *out->v);
            out->n += s->n_ids;
            return MS_OK;
        }
        i = (i + 1) & (CACHE_SLOTS - 1);
    }

    int32_t sym[SMALL_WORD];
    size_t m = bpe_small(tok, w, len, sym);
    for (size_t k = 0; k < m; k++) MS_TRY(tok_ids_push(out, sym[k]));

    if (t->n_entries >= CACHE_MAX_ENTRIES || t->keys_used + len > CACHE_KEY_ARENA ||
        t->ids_used + m > CACHE_ID_ARENA) {
        cache_clear(t);
        i = (size_t)h & (CACHE_SLOTS - 1); /* the probe slot moved: the table is empty now */
    }
    cache_slot_t *s = &t->slots[i];
    s->hash = h;
    s->key_off = (uint32_t)t->keys_used;
    s->key_len = (uint16_t)len;
    s->ids_off = (uint32_t)t->ids_used;
    s->n_ids = (uint16_t)m;
    memcpy(t->keys + t->keys_used, w, len);
    memcpy(t->ids + t->ids_used, sym, m * sizeof *sym);
    t->keys_used += len;
    t->ids_used += m;
    t->n_entries++;
    return MS_OK;
}
