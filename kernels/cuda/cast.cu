/* cast.cu — F32 <-> BF16 conversion (round-to-nearest-even, quiet NaN), and a
 * plain copy when the dtypes match; bit-identical to kernels/cpu/cast.c. */
#include "common.cuh"

__global__ static void cast_f32_bf16(const float *x, uint16_t *y, int64_t n)
{
    cu_pdl_enter();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = cu_f_bf16(x[i]);
}

__global__ static void cast_bf16_f32(const uint16_t *x, float *y, int64_t n)
{
    cu_pdl_enter();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = cu_bf16_f(x[i]);
}

extern "C" ms_status_t kern_cuda_cast(kern_ctx_t *cx, const void *x, ms_dtype_t xdt, void *y, ms_dtype_t ydt,
                                      int64_t n)
{
    if (n <= 0) return MS_OK;
    if (xdt == ydt) {
        if (x != y) CUDA_CHECK(cudaMemcpyAsync(y, x, (size_t)n * ms_dtype_size(xdt), cudaMemcpyDeviceToDevice,
                                               CU_STREAM(cx)));
        return MS_OK;
    }
    int64_t b = (n + 255) / 256;
    unsigned blocks = (unsigned)(b < 65536 ? b : 65536);
    if (xdt == MS_DT_F32 && ydt == MS_DT_BF16)
        cu_launch(cast_f32_bf16, blocks, 256, 0, CU_STREAM(cx), (const float *)x, (uint16_t *)y, n);
    else if (xdt == MS_DT_BF16 && ydt == MS_DT_F32)
        cu_launch(cast_bf16_f32, blocks, 256, 0, CU_STREAM(cx), (const uint16_t *)x, (float *)y, n);
    else
        return MS_ERR(MS_ERR_UNSUPPORTED, "cuda cast: %s -> %s not supported", ms_dtype_name(xdt),
                      ms_dtype_name(ydt));
    CU_LAUNCHED();
    return MS_OK;
}
