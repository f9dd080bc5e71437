/* tok_tool.c — test driver for the tokenizer scripts (check_corpus.py):
 *   tok_tool tokenize DIR [--no-special]     same as `moeserve tokenize`
 *   tok_tool detokenize DIR [--skip-special] same as `moeserve detokenize`
 *   tok_tool stream DIR [--skip-special]     like detokenize, through tok_stream_t;
 *                                            fails if a piece is not valid UTF-8
 *   tok_tool chat DIR                        stdin: {"messages": [...], "add_generation_prompt": b}
 *                                            per line; stdout: the rendered prompt (JSON string)
 *   tok_tool pcre2-props                     one digit per code point: PCRE2's
 *                                            L M N P S \s bits (unicode delta generator) */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "commands.h"
#include "coordinator/tok.h"

#include <jansson.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int utf8_ok(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n); /* jansson validates UTF-8 */
    int ok = j != NULL;
    json_decref(j);
    return ok;
}

static void print_json_string(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    char *out = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    puts(out ? out : "null");
    free(out);
    json_decref(j);
}

static int do_stream(const char *dir, bool skip)
{
    tok_t *tok;
    if (tok_load(dir, &tok) != MS_OK) return 2;
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    int rc = 0;
    while (getline(&line, &cap, stdin) > 0) {
        lineno++;
        json_error_t err;
        json_t *j = json_loads(line, 0, &err), *v;
        tok_stream_t *st;
        if (!json_is_array(j) || tok_stream_create(tok, skip, &st) != MS_OK) {
            fprintf(stderr, "line %zu: bad input\n", lineno);
            return 2;
        }
        char *acc = NULL;
        size_t alen = 0, i;
        const char *piece;
        size_t plen;
        json_array_foreach(j, i, v) {
            if (tok_stream_push(st, (int32_t)json_integer_value(v), &piece, &plen) != MS_OK) return 1;
            if (!utf8_ok(piece, plen)) {
                fprintf(stderr, "line %zu: stream piece %zu is not valid UTF-8\n", lineno, i);
                rc = 1;
            }
            acc = realloc(acc, alen + plen + 1);
            memcpy(acc + alen, piece, plen);
            alen += plen;
        }
        if (tok_stream_flush(st, &piece, &plen) != MS_OK) return 1;
        acc = realloc(acc, alen + plen + 1);
        memcpy(acc + alen, piece, plen);
        alen += plen;
        print_json_string(acc, alen);
        free(acc);
        tok_stream_destroy(st);
        json_decref(j);
    }
    free(line);
    tok_free(tok);
    return rc;
}

static int do_chat(const char *dir)
{
    tok_t *tok;
    if (tok_load(dir, &tok) != MS_OK) return 2;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, stdin) > 0) {
        json_error_t err;
        json_t *j = json_loads(line, 0, &err);
        json_t *msgs = json_object_get(j, "messages"), *m;
        size_t n = json_array_size(msgs), i;
        chat_msg_t *cm = calloc(n ? n : 1, sizeof *cm);
        json_array_foreach(msgs, i, m) {
            cm[i].role = json_string_value(json_object_get(m, "role"));
            cm[i].content = json_string_value(json_object_get(m, "content"));
        }
        char *prompt;
        if (chat_render(tok, cm, n, json_is_true(json_object_get(j, "add_generation_prompt")), &prompt) != MS_OK) {
            puts("null");
        } else {
            print_json_string(prompt, strlen(prompt));
            free(prompt);
        }
        free(cm);
        json_decref(j);
    }
    free(line);
    tok_free(tok);
    return 0;
}

static int do_props(void)
{
    const char *pats[] = {"\\p{L}", "\\p{M}", "\\p{N}", "\\p{P}", "\\p{S}", "\\s"};
    pcre2_code *re[6];
    int e;
    PCRE2_SIZE eo;
    for (int i = 0; i < 6; i++)
        re[i] = pcre2_compile((PCRE2_SPTR)pats[i], PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &e, &eo, NULL);
    pcre2_match_data *md = pcre2_match_data_create(2, NULL);
    for (unsigned cp = 0; cp < 0x110000; cp++) {
        if (cp >= 0xD800 && cp < 0xE000) {
            putchar('0');
            continue;
        }
        unsigned char b[4];
        int n;
        if (cp < 0x80) b[0] = (unsigned char)cp, n = 1;
        else if (cp < 0x800) b[0] = 0xC0 | cp >> 6, b[1] = 0x80 | (cp & 63), n = 2;
        else if (cp < 0x10000) b[0] = 0xE0 | cp >> 12, b[1] = 0x80 | ((cp >> 6) & 63), b[2] = 0x80 | (cp & 63), n = 3;
        else
            b[0] = 0xF0 | cp >> 18, b[1] = 0x80 | ((cp >> 12) & 63), b[2] = 0x80 | ((cp >> 6) & 63),
            b[3] = 0x80 | (cp & 63), n = 4;
        int m = 0;
        for (int i = 0; i < 6; i++)
            if (pcre2_match(re[i], b, (size_t)n, 0, PCRE2_ANCHORED, md, NULL) >= 0) m |= 1 << i;
        putchar('0' + m);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "pcre2-props")) return do_props();
    if (argc < 3) {
        fprintf(stderr, "usage: tok_tool tokenize|detokenize|stream|chat DIR [flags] | pcre2-props\n");
        return 2;
    }
    if (!strcmp(argv[1], "tokenize")) return cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(argv[1], "detokenize")) return cmd_detokenize(argc - 1, argv + 1);
    if (!strcmp(argv[1], "stream")) return do_stream(argv[2], argc > 3 && !strcmp(argv[3], "--skip-special"));
    if (!strcmp(argv[1], "chat")) return do_chat(argv[2]);
    fprintf(stderr, "tok_tool: unknown command %s\n", argv[1]);
    return 2;
}
