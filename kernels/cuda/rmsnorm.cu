/* rmsnorm.cu — RMSNorm with the CPU reference's rounding (kernels/cpu/rmsnorm.c):
 * fp32 statistics, y = bf16(w * bf16(x * rsqrt(mean(x^2) + eps))). One block
 * per row; the sum of squares is reduced in fp32 through shared memory (the
 * CPU sums in double: results agree to fp32 rounding of the mean). */
#include <cuda_runtime.h>
#include <stdint.h>
#include "cuda.h"

__device__ static inline float bf16_f(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

__device__ static inline uint16_t f_bf16(float f)
{
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

__global__ static void rmsnorm_kernel(const uint16_t *x, int64_t ldx, const uint16_t *w, uint16_t *y, int64_t ldy,
                                      int32_t dim, float eps)
{
    __shared__ float part[256];
    const uint16_t *xr = x + blockIdx.x * ldx;
    uint16_t *yr = y + blockIdx.x * ldy;
    float ss = 0.f;
    for (int32_t i = threadIdx.x; i < dim; i += blockDim.x) {
        float v = bf16_f(xr[i]);
        ss += v * v;
    }
    part[threadIdx.x] = ss;
    __syncthreads();
    for (int32_t st = blockDim.x / 2; st > 0; st >>= 1) {
        if ((int32_t)threadIdx.x < st) part[threadIdx.x] += part[threadIdx.x + st];
        __syncthreads();
    }
    float inv = 1.0f / sqrtf(part[0] / dim + eps); /* as the CPU: correctly rounded sqrt and division */
    for (int32_t i = threadIdx.x; i < dim; i += blockDim.x) {
        float nrm = bf16_f(f_bf16(bf16_f(xr[i]) * inv));
        yr[i] = f_bf16(bf16_f(w[i]) * nrm);
    }
}

extern "C" ms_status_t kern_cuda_rmsnorm(kern_ctx_t *cx, const bf16_t *x, int64_t ldx, const bf16_t *w, bf16_t *y,
                                         int64_t ldy, int32_t rows, int32_t dim, float eps)
{
    if (rows <= 0) return MS_OK;
    rmsnorm_kernel<<<rows, 256, 0, (cudaStream_t)cx->stream>>>(x, ldx, w, y, ldy, dim, eps);
    CUDA_CHECK(cudaGetLastError());
    return MS_OK;
}
