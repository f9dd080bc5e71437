/* mem.cu — CUDA backend memory and streams over the CUDA runtime. Transfers
 * are asynchronous on the given stream; download results are valid after
 * kern_cuda_synchronize(stream). alloc zero-fills like the CPU backend. */
#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>
#include "cuda.h"

extern "C" ms_status_t kern_cuda_alloc(size_t bytes, void **out)
{
    void *p = NULL;
    size_t n = bytes ? bytes : 256;
    cudaError_t rc = cudaMalloc(&p, n);
    if (rc != cudaSuccess)
        return MS_ERR(MS_ERR_NOMEM, "cuda backend: cannot allocate %zu bytes: %s", bytes, cudaGetErrorString(rc));
    /* cudaMemset runs on the legacy default stream, which our non-blocking streams do not wait for: without
     * this synchronize a zero-fill could land after an upload or kernel on a context's stream has written
     * the memory (it did: placement tables read as zeros, a spurious KERN_FAULT_SLOT). alloc is setup-only. */
    rc = cudaMemset(p, 0, n);
    if (rc == cudaSuccess) rc = cudaDeviceSynchronize();
    if (rc != cudaSuccess) {
        cudaFree(p);
        return MS_ERR(MS_ERR_CUDA, "cudaMemset failed: %s", cudaGetErrorString(rc));
    }
    *out = p;
    return MS_OK;
}

extern "C" void kern_cuda_free(void *p)
{
    if (p) cudaFree(p);
}

extern "C" ms_status_t kern_cuda_upload(kern_ctx_t *cx, void *dst, const void *src, size_t bytes)
{
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, (cudaStream_t)cx->stream));
    return MS_OK;
}

extern "C" ms_status_t kern_cuda_download(kern_ctx_t *cx, void *dst, const void *src, size_t bytes)
{
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, (cudaStream_t)cx->stream));
    return MS_OK;
}

extern "C" ms_status_t kern_cuda_copy(kern_ctx_t *cx, void *dst, const void *src, size_t bytes)
{
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, (cudaStream_t)cx->stream));
    return MS_OK;
}

extern "C" ms_status_t kern_cuda_memset(kern_ctx_t *cx, void *dst, int value, size_t bytes)
{
    CUDA_CHECK(cudaMemsetAsync(dst, value, bytes, (cudaStream_t)cx->stream));
    return MS_OK;
}

extern "C" ms_status_t kern_cuda_synchronize(kern_ctx_t *cx)
{
    CUDA_CHECK(cudaStreamSynchronize((cudaStream_t)cx->stream));
    return MS_OK;
}

/* A context owns a non-blocking stream, a workspace and (main only) the
 * cuBLASLt handle and the fault word; a side context borrows those two. The
 * workspace is at least KERN_CUDA_WS_MIN whatever the caller asks: the GEMMs
 * need cuBLASLt scratch and fp8 dequant tiles (gemm.cu), allocated here once
 * so no op allocates inside a step. */
static ms_status_t cu_ctx_make(int device, size_t ws_bytes, kern_ctx_t *main, kern_ctx_t **out)
{
    ms_status_t st;
    kern_ctx_t *cx = (kern_ctx_t *)calloc(1, sizeof *cx);
    if (!cx) return MS_ERR(MS_ERR_NOMEM, "cuda backend: out of memory for a context");
    cx->ops = main ? main->ops : &kern_cuda_ops;
    cx->device = device;
    cudaError_t rc = cudaSetDevice(device);
    if (rc != cudaSuccess) {
        st = MS_ERR(MS_ERR_CUDA, "cudaSetDevice(%d) failed: %s", device, cudaGetErrorString(rc));
        goto out_cx;
    }
    cudaStream_t s;
    rc = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    if (rc != cudaSuccess) {
        st = MS_ERR(MS_ERR_CUDA, "cudaStreamCreate failed: %s", cudaGetErrorString(rc));
        goto out_cx;
    }
    cx->stream = (void *)s;
    if (ws_bytes < KERN_CUDA_WS_MIN) ws_bytes = KERN_CUDA_WS_MIN;
    MS_TRY_GOTO(st, kern_cuda_alloc(ws_bytes, &cx->ws), out_stream);
    cx->ws_bytes = ws_bytes;
    /* per context, so GEMMs on two streams never share them; each call leaves them zero */
    MS_TRY_GOTO(st, kern_cuda_alloc(KERN_CUDA_SK_COUNTERS * sizeof(uint32_t), (void **)&cx->sk_count), out_ws);
    rc = cudaMemset(cx->sk_count, 0, KERN_CUDA_SK_COUNTERS * sizeof(uint32_t));
    if (rc != cudaSuccess) {
        st = MS_ERR(MS_ERR_CUDA, "cudaMemset (stream-K counters) failed: %s", cudaGetErrorString(rc));
        goto out_count;
    }
    if (main) {
        cx->blas = main->blas, cx->fault = main->fault, cx->is_side = 1;
    } else {
        MS_TRY_GOTO(st, kern_cuda_alloc(sizeof(uint32_t), (void **)&cx->own_fault), out_count);
        cx->fault = cx->own_fault;
        MS_TRY_GOTO(st, kern_cuda_blas_create(&cx->blas), out_fault);
    }
    *out = cx;
    return MS_OK;
out_fault:
    kern_cuda_free(cx->own_fault);
out_count:
    kern_cuda_free(cx->sk_count);
out_ws:
    kern_cuda_free(cx->ws);
out_stream:
    cudaStreamDestroy(s);
out_cx:
    free(cx);
    return st;
}

extern "C" ms_status_t kern_cuda_ctx_create(int device, size_t ws_bytes, kern_ctx_t **out)
{
    return cu_ctx_make(device, ws_bytes, NULL, out);
}

extern "C" ms_status_t kern_cuda_ctx_create_side(kern_ctx_t *main, size_t ws_bytes, kern_ctx_t **out)
{
    return cu_ctx_make(main->device, ws_bytes, main, out);
}

extern "C" void kern_cuda_ctx_destroy(kern_ctx_t *cx)
{
    if (!cx) return;
    cudaStreamSynchronize((cudaStream_t)cx->stream);
    if (!cx->is_side) kern_cuda_blas_destroy(cx->blas);
    kern_cuda_free(cx->own_fault);
    kern_cuda_free(cx->sk_count);
    kern_cuda_free(cx->ws);
    cudaStreamDestroy((cudaStream_t)cx->stream);
    free(cx);
}

extern "C" ms_status_t kern_cuda_event_create(kern_ctx_t *cx, kern_event_t *out)
{
    cudaEvent_t ev;
    CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    *out = (kern_event_t)ev;
    return MS_OK;
}

extern "C" void kern_cuda_event_destroy(kern_event_t ev)
{
    if (ev) cudaEventDestroy((cudaEvent_t)ev);
}

extern "C" ms_status_t kern_cuda_event_record(kern_ctx_t *cx, kern_event_t ev)
{
    CUDA_CHECK(cudaEventRecord((cudaEvent_t)ev, (cudaStream_t)cx->stream));
    return MS_OK;
}

extern "C" ms_status_t kern_cuda_event_wait(kern_ctx_t *cx, kern_event_t ev)
{
    CUDA_CHECK(cudaStreamWaitEvent((cudaStream_t)cx->stream, (cudaEvent_t)ev, 0));
    return MS_OK;
}

static_assert(sizeof(cudaIpcMemHandle_t) <= KERN_IPC_HANDLE_BYTES, "IPC handle size");

extern "C" ms_status_t kern_cuda_ipc_export(void *base, void *handle)
{
    cudaIpcMemHandle_t h;
    CUDA_CHECK(cudaIpcGetMemHandle(&h, base));
    memset(handle, 0, KERN_IPC_HANDLE_BYTES);
    memcpy(handle, &h, sizeof h);
    return MS_OK;
}

extern "C" ms_status_t kern_cuda_ipc_import(const void *handle, void **base)
{
    cudaIpcMemHandle_t h;
    memcpy(&h, handle, sizeof h);
    CUDA_CHECK(cudaIpcOpenMemHandle(base, h, cudaIpcMemLazyEnablePeerAccess));
    return MS_OK;
}

extern "C" void kern_cuda_ipc_close(void *base)
{
    if (base) cudaIpcCloseMemHandle(base);
}

extern "C" int kern_cuda_event_query(kern_event_t ev)
{
    cudaError_t e = cudaEventQuery((cudaEvent_t)ev);
    if (e == cudaErrorNotReady) {
        if (cudaPeekAtLastError() == cudaErrorNotReady) (void)cudaGetLastError(); /* not a fault: keep it off the error state */
        return 0;
    }
    return e == cudaSuccess ? 1 : -1;
}

extern "C" ms_status_t kern_cuda_host_alloc(size_t bytes, void **out)
{
    void *p = NULL;
    size_t n = bytes ? bytes : 256;
    cudaError_t rc = cudaHostAlloc(&p, n, cudaHostAllocPortable);
    if (rc != cudaSuccess)
        return MS_ERR(MS_ERR_NOMEM, "cuda backend: cannot pin %zu host bytes: %s", bytes, cudaGetErrorString(rc));
    memset(p, 0, n);
    *out = p;
    return MS_OK;
}

extern "C" void kern_cuda_host_free(void *p)
{
    if (p) cudaFreeHost(p);
}

/* 0 without a driver or a GPU: "no GPU visible" is an answer, not an error (serve's auto device). */
extern "C" int kern_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError(); /* clear the sticky "no device" error */
        return 0;
    }
    return n;
}

/* cudaMemGetInfo of `device`, leaving the caller's current device as it was. */
extern "C" ms_status_t kern_cuda_mem_info(int device, size_t *free_bytes, size_t *total_bytes)
{
    int cur = 0;
    CUDA_CHECK(cudaGetDevice(&cur));
    if (cur != device) CUDA_CHECK(cudaSetDevice(device));
    cudaError_t rc = cudaMemGetInfo(free_bytes, total_bytes);
    if (cur != device) cudaSetDevice(cur);
    if (rc != cudaSuccess) return MS_ERR(MS_ERR_CUDA, "cudaMemGetInfo(device %d) failed: %s", device, cudaGetErrorString(rc));
    return MS_OK;
}
