/* add.cu — y = bf16(a + b), n bf16 elements (the residual add). One fp32 add
 * rounded once, bit-identical to kernels/cpu/add.c. */
#include "common.cuh"

__global__ static void add_kernel(const uint16_t *a, const uint16_t *b, uint16_t *y, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = cu_f_bf16(__fadd_rn(cu_bf16_f(a[i]), cu_bf16_f(b[i])));
}

extern "C" ms_status_t kern_cuda_add(kern_ctx_t *cx, const bf16_t *a, const bf16_t *b, bf16_t *y, int64_t n)
{
    if (n <= 0) return MS_OK;
    int64_t blocks = (n + 255) / 256;
    add_kernel<<<(unsigned)(blocks < 65536 ? blocks : 65536), 256, 0, CU_STREAM(cx)>>>(a, b, y, n);
    CU_LAUNCHED();
    return MS_OK;
}
