/* fill_dummy.cu — load_format dummy on the GPU (kernels.h
 * kern_ops_t.fill_dummy): one grid-stride kernel writes each element from
 * its position alone (kern_dummy_f32 / kern_dummy_fp8, the CPU backend's
 * values), so dummy weights are made in place at HBM speed and never cross
 * the host. */
#include "common.cuh"
#include "cuda.h"

template <typename T>
__global__ void cu_fill_dummy_k(T *dst, int64_t rows, int64_t cols, int64_t ld_pos, int64_t pos0, uint64_t seed,
                                float scale, float offset)
{
    const int64_t n = rows * cols;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / cols, c = i - r * cols, p = pos0 + r * ld_pos + c;
        if constexpr (sizeof(T) == 1) dst[i] = kern_dummy_fp8(seed, p);
        else if constexpr (sizeof(T) == 2) dst[i] = cu_f_bf16(kern_dummy_f32(seed, p, scale, offset));
        else dst[i] = kern_dummy_f32(seed, p, scale, offset);
    }
}

extern "C" ms_status_t kern_cuda_fill_dummy(kern_ctx_t *cx, void *dst, ms_dtype_t dt, int64_t rows, int64_t cols,
                                            int64_t ld_pos, int64_t pos0, uint64_t seed, float scale, float offset)
{
    if (rows < 0 || cols < 0) return MS_ERR(MS_ERR_INVALID, "fill_dummy: %lld x %lld", (long long)rows, (long long)cols);
    const int64_t n = rows * cols;
    if (n == 0) return MS_OK;
    const int threads = 256;
    int64_t blocks = (n + threads - 1) / threads;
    if (blocks > 132 * 32) blocks = 132 * 32;
    cudaStream_t s = (cudaStream_t)cx->stream;
    switch (dt) {
    case MS_DT_BF16:
        cu_fill_dummy_k<uint16_t><<<(unsigned)blocks, threads, 0, s>>>((uint16_t *)dst, rows, cols, ld_pos, pos0,
                                                                         seed, scale, offset);
        break;
    case MS_DT_F32:
        cu_fill_dummy_k<float><<<(unsigned)blocks, threads, 0, s>>>((float *)dst, rows, cols, ld_pos, pos0, seed,
                                                                      scale, offset);
        break;
    case MS_DT_F8E4M3:
        cu_fill_dummy_k<uint8_t><<<(unsigned)blocks, threads, 0, s>>>((uint8_t *)dst, rows, cols, ld_pos, pos0, seed,
                                                                        scale, offset);
        break;
    default:
        return MS_ERR(MS_ERR_UNSUPPORTED, "fill_dummy: dtype %s", ms_dtype_name(dt));
    }
    CUDA_CHECK(cudaGetLastError());
    return MS_OK;
}
