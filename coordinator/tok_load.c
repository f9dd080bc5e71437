/* tok_load.c — builds a tok_t from tokenizer.json and tokenizer_config.json.
 *
 * Owns validation: every field that changes how text is tokenized is checked
 * against what this implementation reproduces exactly (BPE model without
 * dropout/byte fallback/affixes, identity normalizer, Isolated regex splits
 * then ByteLevel, ByteLevel decoder, plain added tokens). Anything else is
 * MS_ERR_UNSUPPORTED naming the file and key. After tok_load the tok_t is
 * read-only. */
#include "tok_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

void tok_bytelevel_table(uint32_t cp_of_byte[256])
{
    /* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the
     * rest to 256, 257, ... in byte order. */
    uint32_t next = 256;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        cp_of_byte[b] = keep ? (uint32_t)b : next++;
    }
}

/* Decode one UTF-8 code point from a valid string (jansson validated it). */
static uint32_t utf8_next(const uint8_t **p)
{
    const uint8_t *s = *p;
    uint32_t c = s[0];
    int n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (n == 2) c = ((c & 0x1F) << 6) | (s[1] & 0x3F);
    else if (n == 3) c = ((c & 0x0F) << 12) | ((s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    else if (n == 4) c = ((c & 0x07) << 18) | ((s[1] & 0x3F) << 12) | ((s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    *p = s + n;
    return c;
}

/* What the ByteLevel decoder turns a token string into: its bytes when every
 * character is in the byte alphabet, else the string's own UTF-8 (the Rust
 * decoder's fallback, which is how "<｜User｜>" decodes to itself). Writes at
 * most strlen(s) bytes into out. */
static size_t bytelevel_decode(const int16_t *byte_of_cp, const char *s, char *out)
{
    size_t n = 0;
    const uint8_t *p = (const uint8_t *)s;
    while (*p) {
        uint32_t c = utf8_next(&p);
        if (c >= 512 || byte_of_cp[c] < 0) {
            size_t l = strlen(s);
            memcpy(out, s, l);
            return l;
        }
        out[n++] = (char)byte_of_cp[c];
    }
    return n;
}

static ms_status_t trie_init(tok_trie_t *t)
{
    memset(t, 0, sizeof *t);
    MS_TRY(tok_map_init(&t->edges, 1024));
    t->cap_nodes = 1024;
    t->term = malloc(t->cap_nodes * sizeof *t->term);
    if (!t->term) return MS_ERR(MS_ERR_NOMEM, "tokenizer: out of memory");
    t->term[0] = -1;
    t->n_nodes = 1;
    return MS_OK;
}

static void trie_free(tok_trie_t *t)
{
    tok_map_free(&t->edges);
    free(t->term);
    memset(t, 0, sizeof *t);
}

static ms_status_t trie_add(tok_trie_t *t, const uint8_t *s, size_t len, int32_t id)
{
    uint64_t node = 0, child;
    for (size_t i = 0; i < len; i++) {
        if (!tok_map_get(&t->edges, node << 8 | s[i], &child)) {
            if (t->n_nodes == t->cap_nodes) {
                int32_t *nt = realloc(t->term, 2 * t->cap_nodes * sizeof *nt);
                if (!nt) return MS_ERR(MS_ERR_NOMEM, "tokenizer: out of memory");
                t->term = nt;
                t->cap_nodes *= 2;
            }
            child = t->n_nodes++;
            t->term[child] = -1;
            MS_TRY(tok_map_put(&t->edges, node << 8 | s[i], child));
        }
        node = child;
    }
    t->term[node] = id; /* a duplicate content keeps the last id, as a map insert would */
    t->first[s[0]] = true;
    t->n_tokens++;
    return MS_OK;
}

static json_t *load_json(const char *dir, const char *name, char *path, size_t cap, ms_status_t *st)
{
    snprintf(path, cap, "%s/%s", dir, name);
    json_error_t err;
    json_t *j = json_load_file(path, JSON_ALLOW_NUL, &err);
    if (!j) {
        FILE *f = fopen(path, "rb");
        if (!f) {
            *st = MS_ERR(MS_ERR_NOT_FOUND, "%s: cannot open", path);
        } else {
            fclose(f);
            *st = MS_ERR(MS_ERR_FORMAT, "%s:%d: invalid JSON: %s", path, err.line, err.text);
        }
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        *st = MS_ERR(MS_ERR_FORMAT, "%s: top level is not a JSON object", path);
        return NULL;
    }
    *st = MS_OK;
    return j;
}

static bool json_is_nullish(const json_t *j)
{
    return j == NULL || json_is_null(j) || json_is_false(j);
}

static ms_status_t check_model(const char *path, json_t *model)
{
    if (!json_is_object(model)) return MS_ERR(MS_ERR_FORMAT, "%s: missing object 'model'", path);
    const char *type = json_string_value(json_object_get(model, "type"));
    if (type && strcmp(type, "BPE"))
        return MS_ERR(MS_ERR_UNSUPPORTED, "%s: model.type '%s' is unsupported (only BPE)", path, type);
    json_t *v;
    if (!json_is_nullish(v = json_object_get(model, "dropout")) && !(json_is_number(v) && json_number_value(v) == 0.0))
        return MS_ERR(MS_ERR_UNSUPPORTED, "%s: model.dropout is unsupported", path);
    if (!json_is_nullish(json_object_get(model, "byte_fallback")))
        return MS_ERR(MS_ERR_UNSUPPORTED, "%s: model.byte_fallback is unsupported", path);
    if (!json_is_nullish(json_object_get(model, "ignore_merges")))
        return MS_ERR(MS_ERR_UNSUPPORTED, "%s: model.ignore_merges is unsupported", path);
    const char *affix[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        v = json_object_get(model, affix[i]);
        if (!json_is_nullish(v) && !(json_is_string(v) && json_string_length(v) == 0))
            return MS_ERR(MS_ERR_UNSUPPORTED, "%s: model.%s is unsupported", path, affix[i]);
    }
    if (!json_is_object(json_object_get(model, "vocab")))
        return MS_ERR(MS_ERR_FORMAT, "%s: model.vocab is not an object", path);
    if (!json_is_array(json_object_get(model, "merges")))
        return MS_ERR(MS_ERR_FORMAT, "%s: model.merges is not an array", path);
    return MS_OK;
}

static ms_status_t check_pipeline(const char *path, json_t *root)
{
    json_t *norm = json_object_get(root, "normalizer");
    if (!json_is_nullish(norm)) {
        const char *t = json_string_value(json_object_get(norm, "type"));
        json_t *list = json_object_get(norm, "normalizers");
        if (!t || strcmp(t, "Sequence") || !json_is_array(list) || json_array_size(list) != 0)
            return MS_ERR(MS_ERR_UNSUPPORTED, "%s: normalizer '%s' is unsupported (only none or an empty Sequence)",
                          path, t ? t : "?");
    }
    json_t *dec = json_object_get(root, "decoder");
    const char *dt = json_string_value(json_object_get(dec, "type"));
    if (!dt || strcmp(dt, "ByteLevel"))
        return MS_ERR(MS_ERR_UNSUPPORTED, "%s: decoder '%s' is unsupported (only ByteLevel)", path, dt ? dt : "none");
    json_t *post = json_object_get(root, "post_processor");
    if (!json_is_nullish(post)) {
        const char *pt = json_string_value(json_object_get(post, "type"));
        /* ByteLevel post-processing only adjusts offsets; BOS/EOS come from
         * tokenizer_config.json. A template processor would add tokens. */
        if (!pt || strcmp(pt, "ByteLevel"))
            return MS_ERR(MS_ERR_UNSUPPORTED, "%s: post_processor '%s' is unsupported (only ByteLevel)", path,
                          pt ? pt : "?");
    }
    return MS_OK;
}

static ms_status_t load_vocab(tok_t *tok, const char *path, json_t *root)
{
    json_t *vocab = json_object_get(json_object_get(root, "model"), "vocab");
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_array(added)) return MS_ERR(MS_ERR_FORMAT, "%s: added_tokens is not an array", path);

    /* Size the tables: highest id over vocab and added tokens. */
    size_t n_ids = 0, blob = 0;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        json_int_t id = json_integer_value(val);
        if (!json_is_integer(val) || id < 0 || id >= INT32_MAX)
            return MS_ERR(MS_ERR_FORMAT, "%s: model.vocab['%s'] is not a valid id", path, key);
        if ((size_t)id + 1 > n_ids) n_ids = (size_t)id + 1;
        blob += strlen(key);
    }
    size_t i;
    json_array_foreach(added, i, val) {
        json_t *jid = json_object_get(val, "id");
        const char *content = json_string_value(json_object_get(val, "content"));
        if (!json_is_integer(jid) || json_integer_value(jid) < 0 || json_integer_value(jid) >= INT32_MAX || !content ||
            !*content)
            return MS_ERR(MS_ERR_FORMAT, "%s: added_tokens[%zu] needs an id and a non-empty content", path, i);
        if ((size_t)json_integer_value(jid) + 1 > n_ids) n_ids = (size_t)json_integer_value(jid) + 1;
        blob += strlen(content);
        const char *flags[] = {"single_word", "lstrip", "rstrip"};
        for (int f = 0; f < 3; f++)
            if (json_is_true(json_object_get(val, flags[f])))
                return MS_ERR(MS_ERR_UNSUPPORTED, "%s: added_tokens[%zu] ('%s') sets %s, which is unsupported", path,
                              i, content, flags[f]);
    }
    if (n_ids == 0) return MS_ERR(MS_ERR_FORMAT, "%s: empty vocabulary", path);

    tok->n_ids = n_ids;
    tok->tok_off = calloc(n_ids, sizeof *tok->tok_off);
    tok->tok_len = calloc(n_ids, sizeof *tok->tok_len);
    tok->tok_flags = calloc(n_ids, 1);
    tok->tok_blob = malloc(blob + 1);
    if (!tok->tok_off || !tok->tok_len || !tok->tok_flags || !tok->tok_blob)
        return MS_ERR(MS_ERR_NOMEM, "tokenizer: out of memory");

    uint32_t cp_of_byte[256];
    int16_t byte_of_cp[512];
    tok_bytelevel_table(cp_of_byte);
    memset(byte_of_cp, 0xff, sizeof byte_of_cp);
    for (int b = 0; b < 256; b++) byte_of_cp[cp_of_byte[b]] = (int16_t)b;

    size_t off = 0;
    json_object_foreach(vocab, key, val) {
        size_t id = (size_t)json_integer_value(val);
        tok->tok_off[id] = (uint32_t)off;
        tok->tok_len[id] = (uint32_t)bytelevel_decode(byte_of_cp, key, tok->tok_blob + off);
        tok->tok_flags[id] = TOK_F_EXISTS;
        off += tok->tok_len[id];
    }
    for (int b = 0; b < 256; b++) {
        char s[4];
        uint32_t c = cp_of_byte[b];
        if (c < 0x80) {
            s[0] = (char)c, s[1] = 0;
        } else {
            s[0] = (char)(0xC0 | (c >> 6)), s[1] = (char)(0x80 | (c & 0x3F)), s[2] = 0;
        }
        json_t *jid = json_object_get(vocab, s);
        if (!jid) return MS_ERR(MS_ERR_UNSUPPORTED, "%s: model.vocab lacks the byte-level symbol for byte 0x%02x", path, b);
        tok->byte_id[b] = (int32_t)json_integer_value(jid);
    }

    MS_TRY(trie_init(&tok->added_raw));
    MS_TRY(trie_init(&tok->added_norm));
    json_array_foreach(added, i, val) {
        size_t id = (size_t)json_integer_value(json_object_get(val, "id"));
        const char *content = json_string_value(json_object_get(val, "content"));
        bool special = json_is_true(json_object_get(val, "special"));
        bool normalized = json_is_true(json_object_get(val, "normalized"));
        tok->tok_off[id] = (uint32_t)off;
        tok->tok_len[id] = (uint32_t)bytelevel_decode(byte_of_cp, content, tok->tok_blob + off);
        tok->tok_flags[id] = TOK_F_EXISTS | TOK_F_ADDED | (special ? TOK_F_SPECIAL : 0);
        off += tok->tok_len[id];
        MS_TRY(trie_add(normalized ? &tok->added_norm : &tok->added_raw, (const uint8_t *)content, strlen(content),
                        (int32_t)id));
    }
    return MS_OK;
}

static ms_status_t load_merges(tok_t *tok, const char *path, json_t *root)
{
    json_t *model = json_object_get(root, "model");
    json_t *vocab = json_object_get(model, "vocab");
    json_t *merges = json_object_get(model, "merges");
    size_t n = json_array_size(merges);
    MS_TRY(tok_map_init(&tok->merges, n));
    char *buf = NULL;
    size_t cap = 0;
    ms_status_t st = MS_OK;
    size_t i;
    json_t *m;
    json_array_foreach(merges, i, m) {
        const char *a, *b;
        size_t la, lb;
        if (json_is_string(m)) {
            /* "left right": byte-level symbols never contain a space. */
            const char *s = json_string_value(m);
            const char *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                st = MS_ERR(MS_ERR_FORMAT, "%s: model.merges[%zu] '%s' is not two symbols", path, i, s);
                goto out;
            }
            a = s, la = (size_t)(sp - s), b = sp + 1, lb = strlen(b);
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0)), la = strlen(a);
            b = json_string_value(json_array_get(m, 1)), lb = strlen(b);
        } else {
            st = MS_ERR(MS_ERR_FORMAT, "%s: model.merges[%zu] is neither \"a b\" nor [a, b]", path, i);
            goto out;
        }
        if (la + lb + 2 > cap) {
            cap = (la + lb + 2) * 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                st = MS_ERR(MS_ERR_NOMEM, "tokenizer: out of memory");
                goto out;
            }
            buf = nb;
        }
        /* buf = "a\0b\0" then "ab\0" for the merged symbol. */
        json_t *ja, *jb, *jab;
        memcpy(buf, a, la), buf[la] = 0;
        ja = json_object_get(vocab, buf);
        memcpy(buf, b, lb), buf[lb] = 0;
        jb = json_object_get(vocab, buf);
        memcpy(buf, a, la), memcpy(buf + la, b, lb), buf[la + lb] = 0;
        jab = json_object_get(vocab, buf);
        if (!ja || !jb || !jab) {
            st = MS_ERR(MS_ERR_FORMAT, "%s: model.merges[%zu] names a symbol missing from model.vocab", path, i);
            goto out;
        }
        uint64_t key = (uint64_t)json_integer_value(ja) << 32 | (uint64_t)json_integer_value(jb);
        /* A repeated pair keeps its last rank: Rust collects into a HashMap. */
        MS_TRY_GOTO(st, tok_map_put(&tok->merges, key, (uint64_t)i << 32 | (uint64_t)json_integer_value(jab)), out);
    }
    tok->n_merges = n;
out:
    free(buf);
    return st;
}

/* bos_token / eos_token: a string, an {"content": ...} object, or null. */
static const char *config_token(json_t *cfg, const char *key)
{
    json_t *v = json_object_get(cfg, key);
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v)) return json_string_value(json_object_get(v, "content"));
    return NULL;
}

static ms_status_t load_config(tok_t *tok, const char *path, json_t *cfg)
{
    const char *bos = config_token(cfg, "bos_token");
    const char *eos = config_token(cfg, "eos_token");
    tok->bos_id = bos ? tok_token_id(tok, bos) : -1;
    tok->eos_id = eos ? tok_token_id(tok, eos) : -1;
    if (bos && tok->bos_id < 0) return MS_ERR(MS_ERR_FORMAT, "%s: bos_token '%s' is not a token", path, bos);
    if (eos && tok->eos_id < 0) return MS_ERR(MS_ERR_FORMAT, "%s: eos_token '%s' is not a token", path, eos);
    tok->bos_text = strdup(bos ? bos : "");
    if (!tok->bos_text) return MS_ERR(MS_ERR_NOMEM, "tokenizer: out of memory");

    /* transformers' LlamaTokenizerFast adds BOS unless told otherwise. */
    const char *cls = json_string_value(json_object_get(cfg, "tokenizer_class"));
    bool llama = cls && (!strcmp(cls, "LlamaTokenizerFast") || !strcmp(cls, "LlamaTokenizer"));
    json_t *ab = json_object_get(cfg, "add_bos_token"), *ae = json_object_get(cfg, "add_eos_token");
    tok->add_bos = ab ? json_is_true(ab) : llama;
    tok->add_eos = ae ? json_is_true(ae) : false;
    if (tok->add_bos && tok->bos_id < 0) return MS_ERR(MS_ERR_FORMAT, "%s: add_bos_token without a bos_token", path);
    if (tok->add_eos && tok->eos_id < 0) return MS_ERR(MS_ERR_FORMAT, "%s: add_eos_token without an eos_token", path);

    json_t *tmpl = json_object_get(cfg, "chat_template");
    if (json_is_array(tmpl)) { /* [{name, template}, ...]: the "default" one */
        size_t i;
        json_t *e, *found = NULL;
        json_array_foreach(tmpl, i, e) {
            const char *name = json_string_value(json_object_get(e, "name"));
            if (name && !strcmp(name, "default")) found = json_object_get(e, "template");
        }
        tmpl = found;
    }
    if (json_is_string(tmpl)) return chat_template_detect(tok, path, json_string_value(tmpl));
    tok->flavor = (chat_flavor_t)-1; /* no template: chat_render refuses */
    return MS_OK;
}

ms_status_t tok_load(const char *model_dir, tok_t **out)
{
    char path[4096], cfg_path[4096];
    ms_status_t st;
    tok_t *tok = calloc(1, sizeof *tok);
    if (!tok) return MS_ERR(MS_ERR_NOMEM, "tokenizer: out of memory");
    tok->bos_id = tok->eos_id = -1;
    if (pthread_key_create(&tok->tls_key, tok_tls_destroy)) {
        free(tok);
        return MS_ERR(MS_ERR_INTERNAL, "tokenizer: pthread_key_create failed");
    }

    json_t *root = load_json(model_dir, "tokenizer.json", path, sizeof path, &st);
    if (!root) goto fail;
    json_t *cfg = load_json(model_dir, "tokenizer_config.json", cfg_path, sizeof cfg_path, &st);
    if (!cfg) goto fail_root;

    MS_TRY_GOTO(st, check_model(path, json_object_get(root, "model")), fail_cfg);
    MS_TRY_GOTO(st, check_pipeline(path, root), fail_cfg);
    MS_TRY_GOTO(st, load_vocab(tok, path, root), fail_cfg);
    MS_TRY_GOTO(st, load_merges(tok, path, root), fail_cfg);
    MS_TRY_GOTO(st, tok_pretok_compile(tok, path, json_object_get(root, "pre_tokenizer")), fail_cfg);
    MS_TRY_GOTO(st, load_config(tok, cfg_path, cfg), fail_cfg);
    json_decref(cfg);
    json_decref(root);
    *out = tok;
    return MS_OK;

fail_cfg:
    json_decref(cfg);
fail_root:
    json_decref(root);
fail:
    tok_free(tok);
    return st;
}

void tok_free(tok_t *tok)
{
    if (!tok) return;
    /* The calling thread's scratch; other threads free theirs when they exit. */
    void *tls = pthread_getspecific(tok->tls_key);
    if (tls) tok_tls_destroy(tls);
    pthread_key_delete(tok->tls_key);
    for (size_t i = 0; i < tok->n_split; i++) pcre2_code_free(tok->split[i]);
    trie_free(&tok->added_raw);
    trie_free(&tok->added_norm);
    tok_map_free(&tok->merges);
    free(tok->tok_off);
    free(tok->tok_len);
    free(tok->tok_flags);
    free(tok->tok_blob);
    free(tok->bos_text);
    free(tok);
}

size_t tok_vocab_size(const tok_t *tok) { return tok->n_ids; }
int32_t tok_bos_id(const tok_t *tok) { return tok->bos_id; }
int32_t tok_eos_id(const tok_t *tok) { return tok->eos_id; }

bool tok_is_special(const tok_t *tok, int32_t id)
{
    return id >= 0 && (size_t)id < tok->n_ids && (tok->tok_flags[id] & TOK_F_SPECIAL);
}

const char *tok_token_bytes(const tok_t *tok, int32_t id, size_t *len)
{
    if (id < 0 || (size_t)id >= tok->n_ids || !(tok->tok_flags[id] & TOK_F_EXISTS)) return NULL;
    *len = tok->tok_len[id];
    return tok->tok_blob + tok->tok_off[id];
}

int32_t tok_token_id(const tok_t *tok, const char *content)
{
    size_t len = strlen(content), start, mlen;
    int32_t id;
    const tok_trie_t *tries[2] = {&tok->added_raw, &tok->added_norm};
    for (int t = 0; t < 2; t++)
        if (tok_trie_find(tries[t], (const uint8_t *)content, len, &start, &mlen, &id) && start == 0 && mlen == len)
            return id;
    /* A plain token: compare decoded bytes (rare; linear is fine). */
    for (size_t i = 0; i < tok->n_ids; i++)
        if ((tok->tok_flags[i] & TOK_F_EXISTS) && tok->tok_len[i] == len &&
            !memcmp(tok->tok_blob + tok->tok_off[i], content, len))
            return (int32_t)i;
    return -1;
}
