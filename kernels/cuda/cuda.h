/* cuda.h — entry points of the CUDA backend (extern "C", defined in the .cu
 * files) and CUDA_CHECK, which turns a cudaError_t into MS_ERR_CUDA with
 * file:line logged once. ops.c assembles them into kern_cuda_ops; ops not yet
 * written on the GPU return MS_ERR_UNSUPPORTED there. */
#ifndef MS_KERN_CUDA_H
#define MS_KERN_CUDA_H

#include "kernels/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

ms_status_t kern_cuda_alloc(size_t bytes, void **out);
void kern_cuda_free(void *p);
ms_status_t kern_cuda_upload(kern_ctx_t *cx, void *dst, const void *src, size_t bytes);
ms_status_t kern_cuda_download(kern_ctx_t *cx, void *dst, const void *src, size_t bytes);
ms_status_t kern_cuda_copy(kern_ctx_t *cx, void *dst, const void *src, size_t bytes);
ms_status_t kern_cuda_memset(kern_ctx_t *cx, void *dst, int value, size_t bytes);
ms_status_t kern_cuda_synchronize(kern_ctx_t *cx);
ms_status_t kern_cuda_ctx_create(int device, size_t ws_bytes, kern_ctx_t **out);
ms_status_t kern_cuda_ctx_create_side(kern_ctx_t *main, size_t ws_bytes, kern_ctx_t **out);
void kern_cuda_ctx_destroy(kern_ctx_t *cx);
ms_status_t kern_cuda_event_create(kern_ctx_t *cx, kern_event_t *out);
void kern_cuda_event_destroy(kern_event_t ev);
ms_status_t kern_cuda_event_record(kern_ctx_t *cx, kern_event_t ev);
ms_status_t kern_cuda_event_wait(kern_ctx_t *cx, kern_event_t ev);
ms_status_t kern_cuda_host_alloc(size_t bytes, void **out);
void kern_cuda_host_free(void *p);
/* the cuBLASLt handle of a main context (blas.cu) */
ms_status_t kern_cuda_blas_create(void **out);
void kern_cuda_blas_destroy(void *h);

extern const kern_ops_t kern_cuda_ops;

ms_status_t kern_cuda_embed(kern_ctx_t *cx, const int32_t *ids, int32_t n, const bf16_t *table, int64_t vocab,
                            int32_t dim, bf16_t *out);
ms_status_t kern_cuda_rmsnorm(kern_ctx_t *cx, const bf16_t *x, int64_t ldx, const bf16_t *w, bf16_t *y,
                              int64_t ldy, int32_t rows, int32_t dim, float eps);

#ifdef __cplusplus
}
#endif

#ifdef __CUDACC__
#define CUDA_CHECK(call)                                                                              \
    do {                                                                                              \
        cudaError_t ms_cu_rc_ = (call);                                                               \
        if (ms_cu_rc_ != cudaSuccess)                                                                 \
            return MS_ERR(MS_ERR_CUDA, "%s failed: %s", #call, cudaGetErrorString(ms_cu_rc_));        \
    } while (0)
#endif

#endif
