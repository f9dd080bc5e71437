/* ckpt_testutil.h — small file helpers for the checkpoint and model-config
 * tests: a private temp directory and whole-file writes. */
#ifndef MS_CKPT_TESTUTIL_H
#define MS_CKPT_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <unistd.h>

static char tu_dir[512];

/* mkdtemp under $TMPDIR; removed by tu_cleanup (rm -rf of our own dir only). */
static const char *tu_mkdir(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(tu_dir, sizeof tu_dir, "%s/ms-ckpt-test-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tu_dir)) {
        perror("mkdtemp");
        exit(1);
    }
    return tu_dir;
}

static void tu_cleanup(void)
{
    char cmd[600];
    if (!tu_dir[0]) return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tu_dir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", tu_dir);
}

/* Make (or empty) subdirectory NAME of the temp dir; returns its path. */
static inline const char *tu_subdir(const char *name)
{
    static char path[4][600];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, 600, "%s/%s", tu_dir, name);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", p, p);
    if (system(cmd) != 0) exit(1);
    return p;
}

static inline void tu_write(const char *dir, const char *file, const void *data, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static inline void tu_write_str(const char *dir, const char *file, const char *s) { tu_write(dir, file, s, strlen(s)); }

/* A safetensors file: declared header length `hlen_field` (use (uint64_t)-1
 * for the real length), header text, then `data_len` bytes of pattern. */
static inline void tu_write_st(const char *dir, const char *file, const char *header, uint64_t hlen_field, size_t data_len)
{
    size_t hl = strlen(header);
    size_t n = 8 + hl + data_len;
    uint8_t *b = malloc(n);
    uint64_t L = hlen_field == (uint64_t)-1 ? hl : hlen_field;
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(L >> (8 * i));
    memcpy(b + 8, header, hl);
    for (size_t i = 0; i < data_len; i++) b[8 + hl + i] = (uint8_t)(i * 7 + 1);
    tu_write(dir, file, b, n);
    free(b);
}

static inline int tu_has(const char *msg, const char *needle) { return strstr(msg, needle) != NULL; }

#endif
