/* tok_pretok.c — the pre-tokenizer: a Sequence of regex Splits (behavior
 * Isolated) followed by ByteLevel, compiled with PCRE2 (UTF + UCP, JIT).
 *
 * Semantics follow the Rust library: each Split runs on every piece the
 * previous one produced, separately (a lookahead never sees past its piece's
 * end), and yields the matches and the gaps between them, in order. ByteLevel
 * with use_regex=false only maps bytes to symbols, which tok_bpe_word does
 * implicitly.
 *
 * Unicode version: the Rust library's Oniguruma knows newer Unicode than
 * Debian's PCRE2 10.42 (Unicode 14), so e.g. U+1FA77 (pink heart, Unicode 15)
 * is \p{S} there and unassigned here, which changes the split. Before
 * compiling, every \p{L|M|N|P|S} is widened with the code points Oniguruma
 * adds (tok_unicode.h, generated from data captured from the Rust library),
 * and \s drops U+180E, which PCRE2 counts as space and Oniguruma does not. */
#include "tok_internal.h"
#include "tok_unicode.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

/* ByteLevel's own split (use_regex=true), GPT-2's pattern. */
static const char k_gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef struct {
    char *v;
    size_t n, cap;
} pat_t;

static bool pat_add(pat_t *p, const char *s, size_t l)
{
    if (p->n + l + 1 > p->cap) {
        size_t nc = (p->n + l + 1) * 2;
        char *nv = realloc(p->v, nc);
        if (!nv) return false;
        p->v = nv, p->cap = nc;
    }
    memcpy(p->v + p->n, s, l);
    p->n += l;
    p->v[p->n] = 0;
    return true;
}

static const char *uni_add(char prop)
{
    switch (prop) {
    case 'L': return tok_uni_add_L;
    case 'M': return tok_uni_add_M;
    case 'N': return tok_uni_add_N;
    case 'P': return tok_uni_add_P;
    case 'S': return tok_uni_add_S;
    default: return NULL;
    }
}

/* Emit a finished character class. PCRE2's \s differs from Oniguruma's only
 * on the code points in tok_uni_space_remove (R): a class whose body holds \s
 * or \S is wrapped so those code points get Oniguruma's answer, decided by
 * the body without the \s/\S escapes (`rest`).
 *   [B] with \s:  (?:(?!R)[B]|(?=R)[rest])      [^B] with \s: (?:(?!R)[^B]|(?=R)[^rest])
 *   [B] with \S:  (?:(?!R)[B]|R)                [^B] with \S: (?!R)[^B]
 * (an empty `rest` matches nothing positive / everything negated). */
static bool emit_class(pat_t *p, bool neg, const pat_t *body, const pat_t *rest, bool has_s, bool has_S)
{
    const char *R = tok_uni_space_remove;
    char rl[64];
    snprintf(rl, sizeof rl, "[%s]", R);
    const char *b = body->v ? body->v : "", *r = rest->v ? rest->v : "";
    bool ok = true;
    if (!has_s && !has_S) return pat_add(p, neg ? "[^" : "[", neg ? 2 : 1) && pat_add(p, b, strlen(b)) && pat_add(p, "]", 1);
    ok = pat_add(p, "(?:(?!", 6) && pat_add(p, rl, strlen(rl)) && pat_add(p, ")", 1);
    ok = ok && pat_add(p, neg ? "[^" : "[", neg ? 2 : 1) && pat_add(p, b, strlen(b)) && pat_add(p, "]", 1);
    if (has_S) {
        if (!neg) ok = ok && pat_add(p, "|", 1) && pat_add(p, rl, strlen(rl));
    } else if (rest->n || neg) {
        ok = ok && pat_add(p, "|(?=", 4) && pat_add(p, rl, strlen(rl)) && pat_add(p, ")", 1);
        if (rest->n) ok = ok && pat_add(p, neg ? "[^" : "[", neg ? 2 : 1) && pat_add(p, r, strlen(r)) && pat_add(p, "]", 1);
        else ok = ok && pat_add(p, rl, strlen(rl)); /* [^] of nothing: any of R */
    }
    return ok && pat_add(p, ")", 1);
}

/* Rewrite a pattern for Oniguruma's Unicode view (see the top of the file).
 * Escapes are copied as they are except \p{X}/\pX for the five general
 * categories and \s/\S; constructs the scanner cannot follow are refused. */
static ms_status_t rewrite_pattern(const char *path, const char *what, const char *src, size_t len, char **out)
{
    pat_t top = {0}, body = {0}, rest = {0};
    bool in_class = false, neg = false, has_s = false, has_S = false, ok = true;
    bool space_differs = tok_uni_space_remove[0] != 0;
    ms_status_t st = MS_OK;
    for (size_t i = 0; i < len && ok; i++) {
        char c = src[i];
        if (c == '[' && !in_class) {
            in_class = true;
            neg = has_s = has_S = false;
            body.n = rest.n = 0;
            size_t j = i + 1;
            if (j < len && src[j] == '^') neg = true, j++;
            if (j < len && src[j] == ']') ok = pat_add(&body, "]", 1) && pat_add(&rest, "]", 1), j++; /* literal */
            i = j - 1;
            continue;
        }
        if (c == '[' && in_class && i + 1 < len && (src[i + 1] == ':' || src[i + 1] == '[')) {
            st = MS_ERR(MS_ERR_UNSUPPORTED, "%s: %s: POSIX or nested classes are unsupported", path, what);
            goto fail;
        }
        if (c == ']' && in_class) {
            in_class = false;
            ok = emit_class(&top, neg, &body, &rest, has_s, has_S);
            continue;
        }
        if (c != '\\' || i + 1 >= len) {
            ok = in_class ? pat_add(&body, &c, 1) && pat_add(&rest, &c, 1) : pat_add(&top, &c, 1);
            continue;
        }
        char e = src[i + 1];
        if (e == 'Q') {
            st = MS_ERR(MS_ERR_UNSUPPORTED, "%s: %s: \\Q...\\E quoting is unsupported", path, what);
            goto fail;
        }
        if (e == 'p' || e == 'P') {
            char prop = 0;
            size_t end; /* index of the escape's last char */
            if (i + 2 < len && src[i + 2] == '{') {
                const char *close = memchr(src + i + 3, '}', len - i - 3);
                if (close && close - (src + i + 3) == 1) prop = src[i + 3];
                end = close ? (size_t)(close - src) : len - 1;
            } else {
                prop = i + 2 < len ? src[i + 2] : 0;
                end = i + 2;
            }
            const char *add = uni_add(prop);
            if (!add || (e == 'P' && in_class)) {
                st = MS_ERR(MS_ERR_UNSUPPORTED,
                            "%s: %s: Unicode property '%.*s' is unsupported (only \\p{L|M|N|P|S}, and \\P{...} "
                            "outside classes)",
                            path, what, (int)(end + 1 - i), src + i);
                goto fail;
            }
            char esc[8] = {'\\', 'p', '{', prop, '}', 0};
            if (in_class) {
                ok = pat_add(&body, esc, 5) && pat_add(&body, add, strlen(add)) && pat_add(&rest, esc, 5) &&
                     pat_add(&rest, add, strlen(add));
            } else {
                ok = pat_add(&top, e == 'P' ? "[^" : "[", e == 'P' ? 2 : 1) && pat_add(&top, esc, 5) &&
                     pat_add(&top, add, strlen(add)) && pat_add(&top, "]", 1);
            }
            i = end;
            continue;
        }
        if ((e == 's' || e == 'S') && space_differs) {
            if (in_class) {
                if (e == 's') has_s = true;
                else has_S = true;
                ok = pat_add(&body, src + i, 2);
            } else {
                /* outside a class: the class [\s] or [\S] */
                pat_t one = {0}, none = {0};
                ok = pat_add(&one, src + i, 2) && emit_class(&top, false, &one, &none, e == 's', e == 'S');
                free(one.v);
            }
            i++;
            continue;
        }
        ok = in_class ? pat_add(&body, src + i, 2) && pat_add(&rest, src + i, 2) : pat_add(&top, src + i, 2);
        i++;
    }
    if (in_class) {
        st = MS_ERR(MS_ERR_UNSUPPORTED, "%s: %s: unterminated character class", path, what);
        goto fail;
    }
    if (!ok || !top.v) {
        st = MS_ERR(MS_ERR_NOMEM, "tokenizer: out of memory");
        goto fail;
    }
    free(body.v);
    free(rest.v);
    *out = top.v;
    return MS_OK;
fail:
    free(top.v);
    free(body.v);
    free(rest.v);
    return st;
}

static ms_status_t compile_one(tok_t *tok, const char *path, const char *what, const char *pat_in, size_t len_in,
                               uint32_t extra)
{
    if (tok->n_split == TOK_MAX_SPLITS)
        return MS_ERR(MS_ERR_UNSUPPORTED, "%s: pre_tokenizer has more than %d splits", path, TOK_MAX_SPLITS);
    char *pat = NULL;
    size_t len = len_in;
    if (!(extra & PCRE2_LITERAL)) {
        MS_TRY(rewrite_pattern(path, what, pat_in, len_in, &pat));
        len = strlen(pat);
    }
    int err;
    PCRE2_SIZE erroff;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(pat ? pat : pat_in), len, PCRE2_UTF | PCRE2_UCP | extra, &err,
                                   &erroff, NULL);
    free(pat);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return MS_ERR(MS_ERR_UNSUPPORTED, "%s: %s pattern does not compile with PCRE2 at offset %zu: %s", path, what,
                      (size_t)erroff, (const char *)msg);
    }
    /* JIT is a large speed-up; without it (an odd platform) pcre2_match still
     * interprets the same pattern. */
    tok->split_jit[tok->n_split] = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
    tok->split[tok->n_split++] = re;
    return MS_OK;
}

static ms_status_t compile_split(tok_t *tok, const char *path, json_t *sp)
{
    const char *behavior = json_string_value(json_object_get(sp, "behavior"));
    if (!behavior || strcmp(behavior, "Isolated"))
        return MS_ERR(MS_ERR_UNSUPPORTED, "%s: pre_tokenizer Split behavior '%s' is unsupported (only Isolated)", path,
                      behavior ? behavior : "?");
    if (json_is_true(json_object_get(sp, "invert")))
        return MS_ERR(MS_ERR_UNSUPPORTED, "%s: pre_tokenizer Split with invert=true is unsupported", path);
    json_t *pat = json_object_get(sp, "pattern");
    json_t *re = json_object_get(pat, "Regex"), *lit = json_object_get(pat, "String");
    if (json_is_string(re))
        return compile_one(tok, path, "pre_tokenizer Split Regex", json_string_value(re), json_string_length(re), 0);
    if (json_is_string(lit))
        return compile_one(tok, path, "pre_tokenizer Split String", json_string_value(lit), json_string_length(lit),
                           PCRE2_LITERAL);
    return MS_ERR(MS_ERR_FORMAT, "%s: pre_tokenizer Split needs pattern.Regex or pattern.String", path);
}

static ms_status_t compile_bytelevel(tok_t *tok, const char *path, json_t *bl)
{
    if (json_is_true(json_object_get(bl, "add_prefix_space")))
        return MS_ERR(MS_ERR_UNSUPPORTED, "%s: pre_tokenizer ByteLevel add_prefix_space=true is unsupported", path);
    json_t *ur = json_object_get(bl, "use_regex");
    if (!ur || json_is_true(ur)) /* the Rust default is true */
        return compile_one(tok, path, "ByteLevel", k_gpt2_pattern, sizeof k_gpt2_pattern - 1, 0);
    return MS_OK;
}

ms_status_t tok_pretok_compile(tok_t *tok, const char *path, const void *pre_tokenizer_json)
{
    json_t *pt = (json_t *)pre_tokenizer_json;
    const char *type = json_string_value(json_object_get(pt, "type"));
    if (!type)
        return MS_ERR(MS_ERR_UNSUPPORTED, "%s: pre_tokenizer missing: only a ByteLevel pre-tokenizer is supported",
                      path);
    if (!strcmp(type, "ByteLevel")) return compile_bytelevel(tok, path, pt);
    if (strcmp(type, "Sequence"))
        return MS_ERR(MS_ERR_UNSUPPORTED, "%s: pre_tokenizer type '%s' is unsupported", path, type);
    json_t *list = json_object_get(pt, "pretokenizers");
    size_t n = json_array_size(list);
    if (n == 0) return MS_ERR(MS_ERR_FORMAT, "%s: pre_tokenizer Sequence has no pretokenizers", path);
    for (size_t i = 0; i < n; i++) {
        json_t *p = json_array_get(list, i);
        const char *t = json_string_value(json_object_get(p, "type"));
        if (t && !strcmp(t, "Split") && i + 1 < n) {
            MS_TRY(compile_split(tok, path, p));
        } else if (t && !strcmp(t, "ByteLevel") && i + 1 == n) {
            MS_TRY(compile_bytelevel(tok, path, p));
        } else {
            return MS_ERR(MS_ERR_UNSUPPORTED,
                          "%s: pre_tokenizer.pretokenizers[%zu] type '%s' is unsupported here (only Splits, then "
                          "ByteLevel last)",
                          path, i, t ? t : "?");
        }
    }
    return MS_OK;
}

static inline size_t utf8_len(uint8_t c)
{
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

static ms_status_t split_level(const tok_t *tok, tok_tls_t *tls, pcre2_match_data *md, pcre2_match_context *mc,
                               size_t level, const uint8_t *s, size_t len, tok_ids_t *out)
{
    if (level == tok->n_split) return tok_bpe_word(tok, tls, s, len, out);
    const pcre2_code *re = tok->split[level];
    bool jit = tok->split_jit[level];
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    size_t pos = 0, prev = 0;
    while (pos < len) {
        int rc = jit ? pcre2_jit_match(re, s, len, pos, 0, md, mc) : PCRE2_ERROR_JIT_STACKLIMIT;
        /* Past the JIT stack (megabytes of one repeat) the interpreter, which
         * keeps its backtracking on the heap, still gives the same match. */
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(re, s, len, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, mc);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return MS_ERR(MS_ERR_INTERNAL, "tokenizer: pre-tokenizer regex failed: %s", (const char *)msg);
        }
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { /* an empty match splits nothing */
            pos = ms + utf8_len(s[ms]);
            continue;
        }
        if (ms > prev) MS_TRY(split_level(tok, tls, md, mc, level + 1, s + prev, ms - prev, out));
        MS_TRY(split_level(tok, tls, md, mc, level + 1, s + ms, me - ms, out));
        prev = pos = me;
    }
    if (prev < len) MS_TRY(split_level(tok, tls, md, mc, level + 1, s + prev, len - prev, out));
    return MS_OK;
}

ms_status_t tok_pretok_encode(const tok_t *tok, tok_tls_t *tls, const uint8_t *s, size_t len, tok_ids_t *out)
{
    if (len == 0) return MS_OK;
    return split_level(tok, tls, tok_tls_match_data(tls), tok_tls_match_context(tls), 0, s, len, out);
}
