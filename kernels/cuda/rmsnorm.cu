/* rmsnorm.cu — RMSNorm with the CPU reference's rounding (kernels/cpu/rmsnorm.c):
 * fp32 statistics, y = bf16(w * bf16(x * rsqrt(mean(x^2) + eps))). One block
 * per row; the sum of squares is reduced in fp32 through shared memory (the
 * CPU sums in double: results agree to fp32 rounding of the mean). */
#include "common.cuh"

__global__ static void rmsnorm_kernel(const uint16_t *x, int64_t ldx, const uint16_t *w, uint16_t *y, int64_t ldy,
                                      int32_t dim, float eps)
{
    __shared__ float part[256];
    const uint16_t *xr = x + blockIdx.x * ldx;
    uint16_t *yr = y + blockIdx.x * ldy;
    float ss = 0.f;
    for (int32_t i = threadIdx.x; i < dim; i += blockDim.x) {
        float v = cu_bf16_f(xr[i]);
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
        float nrm = cu_bf16_f(cu_f_bf16(cu_bf16_f(xr[i]) * inv));
        yr[i] = cu_f_bf16(cu_bf16_f(w[i]) * nrm);
    }
}

extern "C" ms_status_t kern_cuda_rmsnorm(kern_ctx_t *cx, const bf16_t *x, int64_t ldx, const bf16_t *w, bf16_t *y,
                                         int64_t ldy, int32_t rows, int32_t dim, float eps)
{
    if (rows <= 0) return MS_OK;
    rmsnorm_kernel<<<rows, 256, 0, CU_STREAM(cx)>>>(x, ldx, w, y, ldy, dim, eps);
    CU_LAUNCHED();
    return MS_OK;
}
