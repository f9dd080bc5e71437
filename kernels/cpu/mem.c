/* mem.c — CPU backend memory and streams: the "device" is host memory, every
 * transfer is a memcpy and every op completes before it returns, so
 * synchronize has nothing to wait for. */
#include "cpu.h"

#include <stdio.h>
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

ms_status_t kern_cpu_upload(kern_ctx_t *cx, void *dst, const void *src, size_t bytes)
{
    if (bytes) memcpy(dst, src, bytes);
    return MS_OK;
}

ms_status_t kern_cpu_download(kern_ctx_t *cx, void *dst, const void *src, size_t bytes)
{
    if (bytes) memcpy(dst, src, bytes);
    return MS_OK;
}

ms_status_t kern_cpu_copy(kern_ctx_t *cx, void *dst, const void *src, size_t bytes)
{
    if (bytes && dst != src) memmove(dst, src, bytes);
    return MS_OK;
}

ms_status_t kern_cpu_memset(kern_ctx_t *cx, void *dst, int value, size_t bytes)
{
    if (bytes) memset(dst, value, bytes);
    return MS_OK;
}

ms_status_t kern_cpu_synchronize(kern_ctx_t *cx) { return MS_OK; }

/* A context is host memory: no stream, no library handle; the workspace and
 * the fault word are plain allocations. */
static ms_status_t cpu_ctx_make(int device, size_t ws_bytes, kern_ctx_t *main, kern_ctx_t **out)
{
    kern_ctx_t *cx = calloc(1, sizeof *cx);
    if (!cx) return MS_ERR(MS_ERR_NOMEM, "cpu backend: out of memory for a context");
    cx->ops = &kern_cpu_ops;
    cx->device = device;
    if (ws_bytes && kern_cpu_alloc(ws_bytes, &cx->ws) != MS_OK) goto fail;
    cx->ws_bytes = ws_bytes;
    if (main) {
        cx->fault = main->fault, cx->is_side = 1;
    } else {
        if (kern_cpu_alloc(sizeof(uint32_t), (void **)&cx->own_fault) != MS_OK) goto fail;
        cx->fault = cx->own_fault;
    }
    *out = cx;
    return MS_OK;
fail:
    free(cx->ws);
    free(cx);
    return MS_ERR(MS_ERR_NOMEM, "cpu backend: cannot allocate a %zu-byte workspace", ws_bytes);
}

ms_status_t kern_cpu_ctx_create(int device, size_t ws_bytes, kern_ctx_t **out)
{
    return cpu_ctx_make(device, ws_bytes, NULL, out);
}

ms_status_t kern_cpu_ctx_create_side(kern_ctx_t *main, size_t ws_bytes, kern_ctx_t **out)
{
    return cpu_ctx_make(main->device, ws_bytes, main, out);
}

void kern_cpu_ctx_destroy(kern_ctx_t *cx)
{
    if (!cx) return;
    free(cx->ws);
    free(cx->own_fault);
    free(cx);
}

/* Ops complete before they return, so an event is always already reached. */
ms_status_t kern_cpu_event_create(kern_ctx_t *cx, kern_event_t *out)
{
    static int token;
    *out = &token;
    return MS_OK;
}
void kern_cpu_event_destroy(kern_event_t ev) {}
ms_status_t kern_cpu_event_record(kern_ctx_t *cx, kern_event_t ev) { return MS_OK; }
ms_status_t kern_cpu_event_wait(kern_ctx_t *cx, kern_event_t ev) { return MS_OK; }
int kern_cpu_event_query(kern_event_t ev) { return 1; }

/* No IPC for host memory: callers (the load balancer) fall back to the data plane; no error is logged. */
ms_status_t kern_cpu_ipc_export(void *base, void *handle) { return MS_ERR_UNSUPPORTED; }
ms_status_t kern_cpu_ipc_import(const void *handle, void **base) { return MS_ERR_UNSUPPORTED; }
void kern_cpu_ipc_close(void *base) {}

ms_status_t kern_cpu_host_alloc(size_t bytes, void **out) { return kern_cpu_alloc(bytes, out); }
void kern_cpu_host_free(void *p) { free(p); }

/* Ops run as they are called here: there is nothing to capture. */
ms_status_t kern_cpu_graph_begin(kern_ctx_t *cx)
{
    (void)cx;
    return MS_ERR(MS_ERR_UNSUPPORTED, "cpu backend: no CUDA graphs (ops run as they are called)");
}
ms_status_t kern_cpu_graph_end(kern_ctx_t *cx, kern_graph_t *out)
{
    (void)cx, (void)out;
    return MS_ERR_UNSUPPORTED;
}
ms_status_t kern_cpu_graph_launch(kern_ctx_t *cx, kern_graph_t g)
{
    (void)cx, (void)g;
    return MS_ERR(MS_ERR_UNSUPPORTED, "cpu backend: no CUDA graphs");
}
void kern_cpu_graph_destroy(kern_graph_t g) { (void)g; }

int kern_cpu_device_count(void) { return 1; }

/* The host's memory: MemAvailable / MemTotal of /proc/meminfo (0 where it cannot be read). */
ms_status_t kern_cpu_mem_info(int device, size_t *free_bytes, size_t *total_bytes)
{
    (void)device;
    long long avail = -1, total = -1, v;
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f)) {
            if (sscanf(line, "MemAvailable: %lld kB", &v) == 1) avail = v;
            else if (sscanf(line, "MemTotal: %lld kB", &v) == 1) total = v;
        }
        fclose(f);
    }
    *free_bytes = avail > 0 ? (size_t)avail * 1024 : 0;
    *total_bytes = total > 0 ? (size_t)total * 1024 : 0;
    return MS_OK;
}
