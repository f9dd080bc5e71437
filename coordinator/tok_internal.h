/* tok_internal.h — the tokenizer's private state, shared by tok_*.c and
 * chat_template.c. Everything here is built by tok_load and read-only after. */
#ifndef MS_TOK_INTERNAL_H
#define MS_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include "tok.h"

#include <pcre2.h>
#include <pthread.h>
#include <stdlib.h>

/* Open-addressing map uint64 -> uint64 (linear probing). TOK_MAP_EMPTY is
 * never a real key: keys are pairs of 31-bit ids or small node/byte codes. */
#define TOK_MAP_EMPTY UINT64_MAX
typedef struct {
    uint64_t key, val; /* together: one cache line fetch per probe */
} tok_map_ent_t;

typedef struct {
    tok_map_ent_t *ent;
    size_t mask; /* capacity - 1, capacity a power of two */
    size_t n;
} tok_map_t;

ms_status_t tok_map_init(tok_map_t *m, size_t expected);
void tok_map_free(tok_map_t *m);
ms_status_t tok_map_put(tok_map_t *m, uint64_t key, uint64_t val); /* overwrites */

static inline uint64_t tok_hash64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

/* Returns true and *val when found. Inline: this is the BPE inner loop. */
static inline bool tok_map_get(const tok_map_t *m, uint64_t key, uint64_t *val)
{
    size_t i = (size_t)tok_hash64(key) & m->mask;
    for (;;) {
        uint64_t k = m->ent[i].key;
        if (k == key) {
            *val = m->ent[i].val;
            return true;
        }
        if (k == TOK_MAP_EMPTY) return false;
        i = (i + 1) & m->mask;
    }
}

/* Byte trie over added-token contents; leftmost-longest matching. */
typedef struct {
    tok_map_t edges;  /* (node << 8 | byte) -> child node */
    int32_t *term;    /* per node: token id ending here, or -1 */
    size_t n_nodes;
    size_t cap_nodes;
    bool first[256];  /* bytes that can start a token: fast skip */
    size_t n_tokens;
} tok_trie_t;

/* Find the leftmost-longest token in s[0..len). Returns true with the match's
 * start offset, length and id. */
bool tok_trie_find(const tok_trie_t *t, const uint8_t *s, size_t len, size_t *start, size_t *mlen, int32_t *id);

#define TOK_MAX_SPLITS 8

/* Per-id flags. */
enum { TOK_F_EXISTS = 1, TOK_F_SPECIAL = 2, TOK_F_ADDED = 4 };

struct tok {
    /* Token table: id -> decoded bytes (what the ByteLevel decoder emits). */
    size_t n_ids;        /* highest id + 1 */
    uint32_t *tok_off;   /* (n_ids) offset into tok_blob */
    uint32_t *tok_len;   /* (n_ids) */
    uint8_t *tok_flags;  /* (n_ids) TOK_F_* */
    char *tok_blob;

    /* BPE model. */
    int32_t byte_id[256]; /* id of the single byte-level symbol for each byte */
    tok_map_t merges;     /* (left << 32 | right) -> (rank << 32 | merged id) */
    size_t n_merges;

    /* Added tokens: matched on the raw text first (normalized=false), then on
     * what is left (normalized=true); the normalizer is the identity. */
    tok_trie_t added_raw;
    tok_trie_t added_norm;

    /* Pre-tokenizer: a sequence of regex splits, each Isolated. */
    pcre2_code *split[TOK_MAX_SPLITS];
    bool split_jit[TOK_MAX_SPLITS]; /* JIT-compiled: pcre2_jit_match, the fast path */
    size_t n_split;

    /* tokenizer_config.json */
    int32_t bos_id, eos_id;
    bool add_bos, add_eos;
    char *bos_text; /* what {{bos_token}} renders to; "" when none */
    chat_flavor_t flavor;
    bool chat_think_prefix;    /* generation prompt ends "<think>\n" */
    bool chat_strip_reasoning; /* assistant history keeps only text after the last </think> */
    bool chat_tool_nl;         /* later tool outputs start with "\n" */

    pthread_key_t tls_key; /* per-thread tok_tls_t (word cache, match data) */
};

/* Per-thread scratch, created on a thread's first encode. */
typedef struct tok_tls tok_tls_t;
tok_tls_t *tok_tls_get(const tok_t *tok);
void tok_tls_destroy(void *p);

/* Growable id vector. */
typedef struct {
    int32_t *v;
    size_t n, cap;
} tok_ids_t;

static inline ms_status_t tok_ids_push(tok_ids_t *a, int32_t id)
{
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 64;
        int32_t *nv = realloc(a->v, nc * sizeof *nv);
        if (!nv) return MS_ERR(MS_ERR_NOMEM, "tokenizer: out of memory");
        a->v = nv;
        a->cap = nc;
    }
    a->v[a->n++] = id;
    return MS_OK;
}

/* BPE-encode one pre-tokenized word (raw UTF-8 bytes; the ByteLevel mapping is
 * implicit in byte_id) and append its ids. Uses the thread's word cache. */
ms_status_t tok_bpe_word(const tok_t *tok, tok_tls_t *tls, const uint8_t *w, size_t len, tok_ids_t *out);

/* Run the pre-tokenizer on s[0..len) and BPE every piece. */
ms_status_t tok_pretok_encode(const tok_t *tok, tok_tls_t *tls, const uint8_t *s, size_t len, tok_ids_t *out);
pcre2_match_data *tok_tls_match_data(tok_tls_t *tls);
pcre2_match_context *tok_tls_match_context(tok_tls_t *tls);
#define TOK_JIT_STACK_MAX (256u << 20) /* per thread, reserved not committed */

/* Loading helpers (tok_load.c / tok_pretok.c / chat_template.c). */
ms_status_t tok_pretok_compile(tok_t *tok, const char *path, const void *pre_tokenizer_json);
ms_status_t chat_template_detect(tok_t *tok, const char *path, const char *tmpl);

/* ByteLevel alphabet: the code point each byte maps to. */
void tok_bytelevel_table(uint32_t cp_of_byte[256]);

/* UTF-8 helpers (tok_decode.c). */
bool tok_utf8_valid(const uint8_t *s, size_t len);
/* Length of the valid UTF-8 sequence starting at s (1..4), 0 when s[0..len)
 * starts a sequence that is valid so far but incomplete, or -k when the first
 * k bytes are a maximal invalid subpart (one U+FFFD each, as Rust/WHATWG). */
int tok_utf8_step(const uint8_t *s, size_t len);

#endif
