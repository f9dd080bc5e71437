/* gemm_f32x.h — gemm_f32x.cu's entry: fp32 x · bf16 Wᵀ on the tensor cores (x split into three bf16 terms),
 * strided and batched like the gemm op; gemm.cu routes absorbed MLA's W_UV here. */
#ifndef MS_KERN_CUDA_GEMM_F32X_H
#define MS_KERN_CUDA_GEMM_F32X_H

#include <cuda_runtime.h>
#include "kernels/kernels.h"

/* 16-byte loads hold: K a multiple of 32, x and W strides and bases 16-byte aligned */
bool cu_gemm_f32x_fits(int64_t ldx, int64_t bsx, const void *x, int64_t ldw, int64_t bsw, const void *w, int32_t k);
/* y (bf16, or fp32 when y_f32) [batch][m][n] strided; W [n][k] rows of ldw */
ms_status_t cu_gemm_f32x(cudaStream_t s, const float *x, int64_t ldx, int64_t bsx, const uint16_t *w, int64_t ldw,
                         int64_t bsw, void *y, int y_f32, int64_t ldy, int64_t bsy, int32_t m, int32_t n, int32_t k,
                         int32_t batch);

#endif
