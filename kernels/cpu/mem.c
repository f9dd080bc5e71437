/* mem.c — CPU backend memory and streams: the "device" is host memory, every
 * transfer is a memcpy and every op completes before it returns, so
 * synchronize has nothing to wait for. */
#include "cpu.h"

#include <stdlib.h>
#include <string.h>

ms_status_t kern_cpu_alloc(size_t bytes, void **out)
{
    size_t n = (bytes + 255) & ~(size_t)255;
    if (n == 0) n = 256;
    void *p = aligned_alloc(256, n);
    if (!p) return MS_ERR(MS_ERR_NOMEM, "cpu backend: cannot allocate %zu bytes", bytes);
    memset(p, 0, n);
    *out = p;
    return MS_OK;
}

void kern_cpu_free(void *p) { free(p); }

ms_status_t kern_cpu_upload(kern_stream_t s, void *dst, const void *src, size_t bytes)
{
    if (bytes) memcpy(dst, src, bytes);
    return MS_OK;
}

ms_status_t kern_cpu_download(kern_stream_t s, void *dst, const void *src, size_t bytes)
{
    if (bytes) memcpy(dst, src, bytes);
    return MS_OK;
}

ms_status_t kern_cpu_copy(kern_stream_t s, void *dst, const void *src, size_t bytes)
{
    if (bytes && dst != src) memmove(dst, src, bytes);
    return MS_OK;
}

ms_status_t kern_cpu_memset(kern_stream_t s, void *dst, int value, size_t bytes)
{
    if (bytes) memset(dst, value, bytes);
    return MS_OK;
}

ms_status_t kern_cpu_stream_create(kern_stream_t *out)
{
    *out = NULL;
    return MS_OK;
}

void kern_cpu_stream_destroy(kern_stream_t s) {}

ms_status_t kern_cpu_synchronize(kern_stream_t s) { return MS_OK; }
