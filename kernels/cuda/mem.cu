/* mem.cu — CUDA backend memory and streams over the CUDA runtime. Transfers
 * are asynchronous on the given stream; download results are valid after
 * kern_cuda_synchronize(stream). alloc zero-fills like the CPU backend. */
#include <cuda_runtime.h>
#include "cuda.h"

extern "C" ms_status_t kern_cuda_alloc(size_t bytes, void **out)
{
    void *p = NULL;
    size_t n = bytes ? bytes : 256;
    cudaError_t rc = cudaMalloc(&p, n);
    if (rc != cudaSuccess)
        return MS_ERR(MS_ERR_NOMEM, "cuda backend: cannot allocate %zu bytes: %s", bytes, cudaGetErrorString(rc));
    rc = cudaMemset(p, 0, n);
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

extern "C" ms_status_t kern_cuda_upload(kern_stream_t s, void *dst, const void *src, size_t bytes)
{
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, (cudaStream_t)s));
    return MS_OK;
}

extern "C" ms_status_t kern_cuda_download(kern_stream_t s, void *dst, const void *src, size_t bytes)
{
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, (cudaStream_t)s));
    return MS_OK;
}

extern "C" ms_status_t kern_cuda_copy(kern_stream_t s, void *dst, const void *src, size_t bytes)
{
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, (cudaStream_t)s));
    return MS_OK;
}

extern "C" ms_status_t kern_cuda_memset(kern_stream_t s, void *dst, int value, size_t bytes)
{
    CUDA_CHECK(cudaMemsetAsync(dst, value, bytes, (cudaStream_t)s));
    return MS_OK;
}

extern "C" ms_status_t kern_cuda_stream_create(kern_stream_t *out)
{
    cudaStream_t st;
    CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    *out = (kern_stream_t)st;
    return MS_OK;
}

extern "C" void kern_cuda_stream_destroy(kern_stream_t s)
{
    if (s) cudaStreamDestroy((cudaStream_t)s);
}

extern "C" ms_status_t kern_cuda_synchronize(kern_stream_t s)
{
    CUDA_CHECK(cudaStreamSynchronize((cudaStream_t)s));
    return MS_OK;
}
