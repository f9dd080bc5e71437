/* silu_mul.cu — out = bf16(bf16(silu(gate)) * up), n elements, with the CPU
 * reference's two roundings (kernels/cpu/silu_mul.c). exp goes through double
 * so it rounds like glibc's expf; the division is IEEE (no fast math). */
#include "common.cuh"

__global__ static void silu_mul_kernel(const uint16_t *gate, const uint16_t *up, uint16_t *out, int64_t n)
{
    cu_pdl_enter();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        out[i] = cu_silu_mul1(cu_bf16_f(gate[i]), cu_bf16_f(up[i]));
    }
}

extern "C" ms_status_t kern_cuda_silu_mul(kern_ctx_t *cx, const bf16_t *gate, const bf16_t *up, bf16_t *out,
                                          int64_t n)
{
    if (n <= 0) return MS_OK;
    int64_t b = (n + 255) / 256;
    cu_launch(silu_mul_kernel, (unsigned)(b < 65536 ? b : 65536), 256, 0, CU_STREAM(cx), gate, up, out, n);
    CU_LAUNCHED();
    return MS_OK;
}
