/* blas.h — the CUDA backend's one cuBLASLt matmul layer (CUDA sources only).
 * Every tensor-core GEMM of the backend goes through kern_cuda_blas_matmul:
 * row-major Y[m, n] = X[m, k] · W[n, k]ᵀ, each operand with its leading
 * dimension and a batch stride, a batch count, and W optionally stored
 * transposed ([k, n] row-major). There is no epilogue slot: cuBLASLt has no
 * SiLU·mul epilogue over a fused gate|up whose roundings match the CPU's
 * (bf16(silu(bf16 g)) · bf16 u), so gemm.cu runs that as a pass after the
 * GEMM. FP8×FP8 with DeepSeek's block scales is gemm.cu's own kernel (see
 * there why). */
#ifndef MS_KERN_CUDA_BLAS_H
#define MS_KERN_CUDA_BLAS_H

#include "cuda.h"

typedef struct {
    int32_t m, n, k;       /* Y[m, n] = X[m, k] · W[n, k]ᵀ (row-major views) */
    int32_t batch;         /* >= 1; matrix b of each operand at base + b*stride (elements) */
    const void *x;         /* [m, k], leading dimension ldx */
    ms_dtype_t xdt;
    int64_t ldx, stride_x;
    const void *w;         /* [n, k] with leading dimension ldw; w_trans: [k, n] with leading dimension ldw */
    ms_dtype_t wdt;
    int64_t ldw, stride_w;
    int32_t w_trans;
    void *y;               /* [m, n], leading dimension ldy */
    ms_dtype_t ydt;
    int64_t ldy, stride_y;
} kern_cuda_mm_t;

/* Queue the matmul on cx's stream with ws/ws_bytes as cuBLASLt workspace.
 * MS_ERR_UNSUPPORTED (not logged) when cuBLASLt has no algorithm for the
 * types, alignments or layout: the caller then takes its own kernel.
 * Descriptors and the chosen algorithm are cached per shape (types, sizes,
 * strides, alignments, workspace, handle), so a step's GEMMs allocate nothing
 * after their first call. */
ms_status_t kern_cuda_blas_matmul(kern_ctx_t *cx, const kern_cuda_mm_t *mm, void *ws, size_t ws_bytes);

#endif
