/* log_softmax.cu — y = x - (max + log Σ exp(x - max)) per row, fp32 in and out
 * with the sum in double as kernels/cpu/log_softmax.c (the summation order
 * differs; in double that moves lse by far less than an fp32 ulp). One block
 * per row. */
#include "common.cuh"

__global__ static void log_softmax_kernel(const float *x, int64_t ld, int32_t n, float *y)
{
    __shared__ float shf[32];
    __shared__ double shd[32];
    const float *xr = x + blockIdx.x * ld;
    float *yr = y + blockIdx.x * ld;
    float mx = -INFINITY;
    for (int32_t i = threadIdx.x; i < n; i += blockDim.x) mx = fmaxf(mx, xr[i]);
    mx = cu_block_reduce(mx, cu_op_max(), shf, -INFINITY);
    double s = 0;
    for (int32_t i = threadIdx.x; i < n; i += blockDim.x) s += exp((double)xr[i] - mx);
    s = cu_block_reduce(s, cu_op_sumd(), shd, 0.0);
    const float lse = (float)(mx + log(s));
    for (int32_t i = threadIdx.x; i < n; i += blockDim.x) yr[i] = __fsub_rn(xr[i], lse);
}

extern "C" ms_status_t kern_cuda_log_softmax(kern_ctx_t *cx, const float *x, int64_t ld, int32_t rows, int32_t n,
                                             float *y)
{
    if (rows <= 0 || n <= 0) return MS_OK;
    log_softmax_kernel<<<rows, 1024, 0, CU_STREAM(cx)>>>(x, ld, n, y);
    CU_LAUNCHED();
    return MS_OK;
}
