/* tok_bench.c — tokenizer encode throughput, single-threaded.
 *
 *   moeserve-tok-bench MODEL_DIR CORPUS.jsonl [--passes N] [--threads T] [--js REF_ENCODE_JS]
 *
 * CORPUS holds one JSON string per line (tests/tokenizer/gen_corpus.py
 * --bench 20 writes ~20 MB of fresh mixed lines). Each pass encodes every
 * line once without special tokens, as the JS and Rust references are timed
 * (tests/tokenizer/ref_encode.js --bench, tests/tokenizer/rust_ref.py). The
 * first pass starts with a cold word cache. Prints one JSON line per pass:
 * bytes, tokens, seconds, MB/s (1 MB = 1e6 bytes). --threads T runs T threads
 * over the same tok_t (each encodes all lines) to show it scales. --js runs
 * the JavaScript reference (tests/tokenizer/ref_encode.js --bench) with node on
 * the same corpus right after, so both numbers come from one run. */
#include "coordinator/tok.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    char **text;
    size_t *len;
    size_t n, bytes;
} corpus_t;

typedef struct {
    const tok_t *tok;
    const corpus_t *c;
    size_t tokens;
    int failed;
} job_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int corpus_load(const char *path, corpus_t *c)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "tok_bench: cannot open %s\n", path);
        return -1;
    }
    memset(c, 0, sizeof *c);
    size_t cap = 0, lcap = 0, lineno = 0;
    char *line = NULL;
    ssize_t got;
    while ((got = getline(&line, &lcap, f)) > 0) {
        lineno++;
        json_error_t err;
        json_t *j = json_loadb(line, (size_t)got, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        if (!json_is_string(j)) {
            fprintf(stderr, "tok_bench: %s:%zu: not a JSON string\n", path, lineno);
            json_decref(j);
            free(line);
            fclose(f);
            return -1;
        }
        if (c->n == cap) {
            cap = cap ? cap * 2 : 1024;
            c->text = realloc(c->text, cap * sizeof *c->text);
            c->len = realloc(c->len, cap * sizeof *c->len);
            if (!c->text || !c->len) abort();
        }
        c->len[c->n] = json_string_length(j);
        c->text[c->n] = malloc(c->len[c->n] + 1);
        memcpy(c->text[c->n], json_string_value(j), c->len[c->n] + 1);
        c->bytes += c->len[c->n];
        c->n++;
        json_decref(j);
    }
    free(line);
    fclose(f);
    return 0;
}

static void *encode_all(void *arg)
{
    job_t *jb = arg;
    jb->tokens = 0;
    for (size_t i = 0; i < jb->c->n; i++) {
        int32_t *ids;
        size_t n;
        if (tok_encode(jb->tok, jb->c->text[i], jb->c->len[i], false, &ids, &n) != MS_OK) {
            jb->failed = 1;
            return NULL;
        }
        jb->tokens += n;
        free(ids);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: moeserve-tok-bench MODEL_DIR CORPUS.jsonl [--passes N] [--threads T]\n");
        return 2;
    }
    int passes = 3, threads = 1;
    const char *js = NULL;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--passes")) passes = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--js")) js = argv[i + 1];
    }
    if (passes < 1 || threads < 1 || threads > 256) {
        fprintf(stderr, "tok_bench: bad --passes/--threads\n");
        return 2;
    }
    double t0 = now_s();
    tok_t *tok;
    if (tok_load(argv[1], &tok) != MS_OK) return 1;
    double t_load = now_s() - t0;
    corpus_t c;
    if (corpus_load(argv[2], &c)) return 1;

    for (int p = 0; p < passes; p++) {
        job_t jobs[256];
        pthread_t th[256];
        double t = now_s();
        for (int k = 0; k < threads; k++) {
            jobs[k] = (job_t){.tok = tok, .c = &c};
            if (threads == 1) encode_all(&jobs[k]);
            else pthread_create(&th[k], NULL, encode_all, &jobs[k]);
        }
        if (threads > 1)
            for (int k = 0; k < threads; k++) pthread_join(th[k], NULL);
        double s = now_s() - t;
        for (int k = 0; k < threads; k++)
            if (jobs[k].failed) {
                fprintf(stderr, "tok_bench: encode failed\n");
                return 1;
            }
        double bytes = (double)c.bytes * threads;
        printf("{\"impl\": \"c\", \"pass\": %d, \"threads\": %d, \"lines\": %zu, \"bytes\": %.0f, \"tokens\": %zu, "
               "\"seconds\": %.4f, \"mb_per_s\": %.2f, \"load_s\": %.3f}\n",
               p + 1, threads, c.n, bytes, jobs[0].tokens * (size_t)threads, s, bytes / 1e6 / s, t_load);
        fflush(stdout);
    }
    int rc = 0;
    if (js) {
        /* argv paths are the user's own; quote them for the shell */
        char cmd[8192];
        snprintf(cmd, sizeof cmd, "node '%s' '%s' --bench '%s'", js, argv[1], argv[2]);
        fflush(stdout);
        rc = system(cmd) ? 1 : 0;
        if (rc) fprintf(stderr, "tok_bench: the JS reference failed: %s\n", cmd);
    }
    for (size_t i = 0; i < c.n; i++) free(c.text[i]);
    free(c.text);
    free(c.len);
    tok_free(tok);
    return rc;
}
