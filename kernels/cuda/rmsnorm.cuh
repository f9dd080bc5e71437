/* rmsnorm.cuh — the RMSNorm row of rmsnorm.cu, shared with add_rmsnorm.cu so
 * the fused op is bit-identical to add followed by rmsnorm: the same block
 * size, the same per-thread sum of squares order, the same reduction tree. */
#ifndef MS_KERN_CUDA_RMSNORM_CUH
#define MS_KERN_CUDA_RMSNORM_CUH

#include "common.cuh"

#define RMS_THREADS 256

/* one thread's share of Σx² over its strided elements (i = threadIdx.x + k*RMS_THREADS) */
__device__ static inline float cu_rms_acc(float ss, float v) { return __fmaf_rn(v, v, ss); }

/* reduce the threads' ss, then yr[i] = bf16(w * bf16(xr[i] * rsqrt(mean + eps))) */
__device__ static inline void cu_rms_finish(const uint16_t *xr, const uint16_t *w, uint16_t *yr, int32_t dim,
                                            float eps, float ss)
{
    __shared__ float part[RMS_THREADS];
    part[threadIdx.x] = ss;
    __syncthreads();
    for (int32_t st = RMS_THREADS / 2; st > 0; st >>= 1) {
        if ((int32_t)threadIdx.x < st) part[threadIdx.x] += part[threadIdx.x + st];
        __syncthreads();
    }
    const float inv = 1.0f / sqrtf(part[0] / dim + eps); /* as the CPU: correctly rounded sqrt and division */
    for (int32_t i = threadIdx.x; i < dim; i += RMS_THREADS) {
        const float nrm = cu_bf16_round(__fmul_rn(cu_bf16_f(xr[i]), inv));
        yr[i] = cu_f_bf16(__fmul_rn(cu_bf16_f(w[i]), nrm));
    }
}

#endif
