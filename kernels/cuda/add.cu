/* add.cu — y = bf16(a + b), n bf16 elements (the residual add). One fp32 add
 * rounded once, bit-identical to kernels/cpu/add.c. A thread adds a chunk of 8
 * elements, with 16-byte loads and stores when all three pointers are 16-byte
 * aligned (2-byte accesses took 6.2 µs for the 128 × 7168 MoE residual at
 * decode batch 128, whose 5.5 MB take ~1.2 µs at HBM speed; not yet re-timed
 * there, 2.5 µs at batch 1 before and after). */
#include "common.cuh"

__global__ static void add_kernel(const uint16_t *a, const uint16_t *b, uint16_t *y, int64_t n, bool vec)
{
    cu_pdl_enter();
    for (int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; 8 * c < n; c += (int64_t)gridDim.x * blockDim.x) {
        const int64_t i = 8 * c;
        const int m = n - i < 8 ? (int)(n - i) : 8;
        uint16_t va[8], vb[8], vy[8];
        cu_ld8(a + i, m, vec && m == 8, va);
        cu_ld8(b + i, m, vec && m == 8, vb);
#pragma unroll
        for (int e = 0; e < 8; e++) vy[e] = cu_f_bf16(__fadd_rn(cu_bf16_f(va[e]), cu_bf16_f(vb[e])));
        cu_st8(y + i, m, vec && m == 8, vy);
    }
}

extern "C" ms_status_t kern_cuda_add(kern_ctx_t *cx, const bf16_t *a, const bf16_t *b, bf16_t *y, int64_t n)
{
    if (n <= 0) return MS_OK;
    const bool vec = ((uintptr_t)a | (uintptr_t)b | (uintptr_t)y) % 16 == 0;
    const int64_t blocks = (n + 8 * 256 - 1) / (8 * 256);
    cu_launch(add_kernel,
              (unsigned)(blocks < 65536 ? blocks : 65536), 256, 0, CU_STREAM(cx), (const uint16_t *)a,
              (const uint16_t *)b, (uint16_t *)y, n, vec);
    CU_LAUNCHED();
    return MS_OK;
}
