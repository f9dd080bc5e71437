/* blas.h — the CUDA backend's one cuBLASLt matmul layer (CUDA sources only).
 * Every GEMM of the backend goes through kern_cuda_blas_matmul: row-major
 * Y[m, n] = X[m, k] · W[n, k]ᵀ, each operand with its leading dimension and a
 * batch stride, a batch count, and an epilogue slot. What the ops table asks
 * for later (strided/batched GEMM, the fused SiLU·mul epilogue over gate|up,
 * FP8×FP8 with block scales) becomes fields here, not a new code path. */
#ifndef MS_KERN_CUDA_BLAS_H
#define MS_KERN_CUDA_BLAS_H

#include "cuda.h"

typedef enum {
    KERN_CUDA_EPI_NONE = 0, /* D = A·B */
} kern_cuda_epi_t;

typedef struct {
    int32_t m, n, k;       /* Y[m, n] = X[m, k] · W[n, k]ᵀ (row-major views) */
    int32_t batch;         /* >= 1; matrix b of each operand at base + b*stride */
    const void *x;         /* [m, k], leading dimension ldx */
    ms_dtype_t xdt;
    int64_t ldx, stride_x;
    const void *w;         /* [n, k], leading dimension ldw */
    ms_dtype_t wdt;
    int64_t ldw, stride_w;
    void *y;               /* [m, n], leading dimension ldy */
    ms_dtype_t ydt;
    int64_t ldy, stride_y;
    kern_cuda_epi_t epilogue;
} kern_cuda_mm_t;

/* Queue the matmul on cx's stream with ws/ws_bytes as cuBLASLt workspace.
 * MS_ERR_UNSUPPORTED (not logged) when cuBLASLt has no algorithm for the
 * types, alignments or layout: the caller then takes its own kernel. */
ms_status_t kern_cuda_blas_matmul(kern_ctx_t *cx, const kern_cuda_mm_t *mm, void *ws, size_t ws_bytes);

#endif
