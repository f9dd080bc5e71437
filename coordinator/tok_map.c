/* tok_map.c — the tokenizer's small containers: an open-addressing
 * uint64 -> uint64 map (BPE merge pairs, trie edges) and the byte trie that
 * finds added tokens leftmost-longest, as the Rust library's Aho-Corasick
 * (MatchKind::LeftmostLongest) does. */
#include "tok_internal.h"

#include <string.h>

static ms_status_t map_alloc(tok_map_t *m, size_t cap)
{
    m->ent = malloc(cap * sizeof *m->ent);
    if (!m->ent) return MS_ERR(MS_ERR_NOMEM, "tokenizer: out of memory (map of %zu)", cap);
    for (size_t i = 0; i < cap; i++) m->ent[i].key = TOK_MAP_EMPTY;
    m->mask = cap - 1;
    m->n = 0;
    return MS_OK;
}

ms_status_t tok_map_init(tok_map_t *m, size_t expected)
{
    size_t cap = 16;
    while (cap < expected * 2) cap *= 2; /* load factor <= 1/2 keeps probes short */
    return map_alloc(m, cap);
}

void tok_map_free(tok_map_t *m)
{
    free(m->ent);
    memset(m, 0, sizeof *m);
}

static void map_put_nogrow(tok_map_t *m, uint64_t key, uint64_t val)
{
    size_t i = (size_t)tok_hash64(key) & m->mask;
    while (m->ent[i].key != TOK_MAP_EMPTY && m->ent[i].key != key) i = (i + 1) & m->mask;
    if (m->ent[i].key == TOK_MAP_EMPTY) m->n++;
    m->ent[i].key = key;
    m->ent[i].val = val;
}

ms_status_t tok_map_put(tok_map_t *m, uint64_t key, uint64_t val)
{
    if ((m->n + 1) * 2 > m->mask + 1) {
        tok_map_t bigger;
        MS_TRY(map_alloc(&bigger, (m->mask + 1) * 2));
        for (size_t i = 0; i <= m->mask; i++)
            if (m->ent[i].key != TOK_MAP_EMPTY) map_put_nogrow(&bigger, m->ent[i].key, m->ent[i].val);
        tok_map_free(m);
        *m = bigger;
    }
    map_put_nogrow(m, key, val);
    return MS_OK;
}

bool tok_trie_find(const tok_trie_t *t, const uint8_t *s, size_t len, size_t *start, size_t *mlen, int32_t *id)
{
    if (t->n_tokens == 0) return false;
    for (size_t i = 0; i < len; i++) {
        if (!t->first[s[i]]) continue;
        uint64_t node = 0, child;
        size_t best = 0;
        int32_t best_id = -1;
        for (size_t j = i; j < len; j++) {
            if (!tok_map_get(&t->edges, node << 8 | s[j], &child)) break;
            node = child;
            if (t->term[node] >= 0) {
                best = j + 1 - i;
                best_id = t->term[node];
            }
        }
        if (best_id >= 0) {
            *start = i;
            *mlen = best;
            *id = best_id;
            return true;
        }
    }
    return false;
}
