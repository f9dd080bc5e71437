/* cuda.h — entry points of the CUDA backend (extern "C", defined in the .cu
 * files) and CUDA_CHECK, which turns a cudaError_t into MS_ERR_CUDA with
 * file:line logged once. ops.c assembles them into kern_cuda_ops; ops not yet
 * written on the GPU return MS_ERR_UNSUPPORTED there. One op per .cu file;
 * device helpers shared by the kernels are in common.cuh, the cuBLASLt layer
 * in blas.h. */
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
/* Minimum workspace of every context (mem.cu): cuBLASLt scratch plus the
 * fp8 dequantization tiles of gemm.cu. */
#define KERN_CUDA_WS_MIN ((size_t)96 << 20)

/* the cuBLASLt handle of a main context (blas.cu) */
ms_status_t kern_cuda_blas_create(void **out);
void kern_cuda_blas_destroy(void *h);

extern const kern_ops_t kern_cuda_ops;

ms_status_t kern_cuda_embed(kern_ctx_t *cx, const int32_t *ids, int32_t n, const bf16_t *table, int64_t vocab,
                            int32_t dim, bf16_t *out);
ms_status_t kern_cuda_rmsnorm(kern_ctx_t *cx, const bf16_t *x, int64_t ldx, const bf16_t *w, bf16_t *y,
                              int64_t ldy, int32_t rows, int32_t dim, float eps);
ms_status_t kern_cuda_add(kern_ctx_t *cx, const bf16_t *a, const bf16_t *b, bf16_t *y, int64_t n);
ms_status_t kern_cuda_cast(kern_ctx_t *cx, const void *x, ms_dtype_t xdt, void *y, ms_dtype_t ydt, int64_t n);
ms_status_t kern_cuda_gather_rows(kern_ctx_t *cx, const void *src, const int32_t *idx, int32_t n, size_t row_bytes,
                                  void *dst);
ms_status_t kern_cuda_silu_mul(kern_ctx_t *cx, const bf16_t *gate, const bf16_t *up, bf16_t *out, int64_t n);
ms_status_t kern_cuda_gemm(kern_ctx_t *cx, const void *x, ms_dtype_t xdt, int64_t ldx, const kern_mat_t *w, void *y,
                           ms_dtype_t ydt, int64_t ldy, int32_t m);
ms_status_t kern_cuda_rope(kern_ctx_t *cx, bf16_t *x, int32_t rows, int32_t heads, int64_t ld_row, int64_t ld_head,
                           const int32_t *pos, const float *inv_freq, float attn_factor, int32_t dim,
                           int32_t interleaved);
ms_status_t kern_cuda_kv_store(kern_ctx_t *cx, const kern_kv_t *kv, const bf16_t *ckv, int64_t ld_ckv,
                               const bf16_t *kpe, int64_t ld_kpe, const int32_t *slots, int32_t n);
/* the KV layout checks kv_store and kv_gather share (kv_store.cu) */
ms_status_t kern_cuda_kv_check(const kern_kv_t *kv, const char *op);
ms_status_t kern_cuda_kv_gather(kern_ctx_t *cx, const kern_kv_t *kv, const kern_attn_seq_t *seqs, int32_t n_seqs,
                                const int32_t *block_tables, bf16_t *out);
ms_status_t kern_cuda_mla_naive(kern_ctx_t *cx, const bf16_t *q, const bf16_t *kv, const bf16_t *kpe, int64_t ld_kpe,
                                const kern_attn_seq_t *seqs, int32_t n_seqs, int32_t heads, int32_t dn, int32_t dr,
                                int32_t dv, float scale, bf16_t *out);
ms_status_t kern_cuda_moe_route(kern_ctx_t *cx, const float *logits, const float *bias, int32_t T, int32_t E,
                                int32_t n_group, int32_t topk_group, int32_t top_k, int32_t norm_topk_prob,
                                float scaling, int32_t *idx, float *w);
ms_status_t kern_cuda_log_softmax(kern_ctx_t *cx, const float *x, int64_t ld, int32_t rows, int32_t n, float *y);
ms_status_t kern_cuda_sample(kern_ctx_t *cx, const float *logits, int64_t ld, int32_t rows, int32_t vocab,
                             const kern_sample_t *params, int32_t *tokens, float *logprob, int32_t *top_ids,
                             float *top_lp);

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
