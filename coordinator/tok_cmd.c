/* tok_cmd.c — `moeserve tokenize MODEL_DIR [--no-special]` and
 * `moeserve detokenize MODEL_DIR [--skip-special]`: line-oriented filters for
 * people and tests. tokenize reads one JSON string per line (so a text may
 * hold newlines) and prints one JSON array of ids per line; detokenize reads
 * JSON arrays of ids and prints one JSON string per line. */
#include "commands.h"
#include "tok.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_args(int argc, char **argv, const char *flag, const char **dir, bool *flag_set)
{
    *dir = NULL;
    *flag_set = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], flag)) *flag_set = true;
        else if (argv[i][0] != '-' && !*dir) *dir = argv[i];
        else {
            fprintf(stderr, "moeserve %s: unknown argument '%s'\n", argv[0], argv[i]);
            return 2;
        }
    }
    if (!*dir) {
        fprintf(stderr, "usage: moeserve %s MODEL_DIR [%s] < lines\n", argv[0], flag);
        return 2;
    }
    return 0;
}

int cmd_tokenize(int argc, char **argv)
{
    const char *dir;
    bool no_special;
    int rc = parse_args(argc, argv, "--no-special", &dir, &no_special);
    if (rc) return rc;
    tok_t *tok;
    if (tok_load(dir, &tok) != MS_OK) return 2;
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t got;
    while ((got = getline(&line, &cap, stdin)) > 0) {
        lineno++;
        json_error_t err;
        json_t *j = json_loadb(line, (size_t)got, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        if (!json_is_string(j)) {
            fprintf(stderr, "moeserve tokenize: stdin line %zu: not a JSON string\n", lineno);
            json_decref(j);
            rc = 2;
            break;
        }
        int32_t *ids;
        size_t n;
        if (tok_encode(tok, json_string_value(j), json_string_length(j), !no_special, &ids, &n) != MS_OK) {
            fprintf(stderr, "moeserve tokenize: stdin line %zu: cannot tokenize\n", lineno);
            json_decref(j);
            rc = 2;
            break;
        }
        putchar('[');
        for (size_t i = 0; i < n; i++) printf(i ? ", %d" : "%d", ids[i]);
        fputs("]\n", stdout);
        free(ids);
        json_decref(j);
    }
    free(line);
    tok_free(tok);
    if (fflush(stdout)) rc = 1;
    return rc;
}

int cmd_detokenize(int argc, char **argv)
{
    const char *dir;
    bool skip_special;
    int rc = parse_args(argc, argv, "--skip-special", &dir, &skip_special);
    if (rc) return rc;
    tok_t *tok;
    if (tok_load(dir, &tok) != MS_OK) return 2;
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t got;
    int32_t *ids = NULL;
    while ((got = getline(&line, &cap, stdin)) > 0) {
        lineno++;
        json_error_t err;
        json_t *j = json_loadb(line, (size_t)got, JSON_DECODE_ANY, &err);
        size_t n = json_array_size(j), i;
        json_t *v;
        int32_t *nids = json_is_array(j) ? realloc(ids, (n ? n : 1) * sizeof *ids) : NULL;
        if (!nids) {
            fprintf(stderr, "moeserve detokenize: stdin line %zu: not a JSON array of ids\n", lineno);
            json_decref(j);
            rc = 2;
            break;
        }
        ids = nids;
        json_array_foreach(j, i, v) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX) break;
            ids[i] = (int32_t)json_integer_value(v);
        }
        json_decref(j);
        if (i < n) {
            fprintf(stderr, "moeserve detokenize: stdin line %zu: element %zu is not a token id\n", lineno, i);
            rc = 2;
            break;
        }
        char *text;
        size_t len;
        if (tok_decode(tok, ids, n, skip_special, &text, &len) != MS_OK) {
            rc = 1;
            break;
        }
        json_t *s = json_stringn(text, len);
        char *out = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
        if (!out) {
            fprintf(stderr, "moeserve detokenize: stdin line %zu: cannot encode the text as JSON\n", lineno);
            rc = 1;
        } else {
            fputs(out, stdout);
            putchar('\n');
        }
        free(out);
        json_decref(s);
        free(text);
        if (rc) break;
    }
    free(ids);
    free(line);
    tok_free(tok);
    if (fflush(stdout)) rc = 1;
    return rc;
}
