/* ops_count.h — a counting wrapper around a kernels ops table, for tests:
 * a copy of the table whose upload, download and synchronize count their
 * calls (and bytes) and then call the wrapped backend. Hand it to an engine
 * through engine_opts_t.ops. One wrapper per process (the counters are
 * file-static: ops are plain function pointers without a closure). */
#ifndef MS_TEST_OPS_COUNT_H
#define MS_TEST_OPS_COUNT_H

#include "kernels/kernels.h"

typedef struct {
    long upload, download, synchronize;
    size_t upload_bytes, download_bytes;
} ops_count_t;

static const kern_ops_t *oc_base;
static kern_ops_t oc_ops;
static ops_count_t oc_n;

static ms_status_t oc_upload(kern_ctx_t *cx, void *dst, const void *src, size_t bytes)
{
    oc_n.upload++;
    oc_n.upload_bytes += bytes;
    return oc_base->upload(cx, dst, src, bytes);
}

static ms_status_t oc_download(kern_ctx_t *cx, void *dst, const void *src, size_t bytes)
{
    oc_n.download++;
    oc_n.download_bytes += bytes;
    return oc_base->download(cx, dst, src, bytes);
}

static ms_status_t oc_synchronize(kern_ctx_t *cx)
{
    oc_n.synchronize++;
    return oc_base->synchronize(cx);
}

/* The counting table over `base` (borrowed; must outlive its use). */
static inline const kern_ops_t *ops_count_wrap(const kern_ops_t *base)
{
    oc_base = base;
    oc_ops = *base;
    oc_ops.upload = oc_upload;
    oc_ops.download = oc_download;
    oc_ops.synchronize = oc_synchronize;
    return &oc_ops;
}

static inline void ops_count_reset(void) { oc_n = (ops_count_t){0}; }
static inline ops_count_t ops_count_get(void) { return oc_n; }

#endif
