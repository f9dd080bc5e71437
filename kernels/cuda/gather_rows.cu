/* gather_rows.cu — dst row i = src row idx[i], rows of row_bytes bytes (MoE
 * permutation, last-token rows). One block per output row; 16-byte copies
 * when pointers and row width allow, bytes otherwise. idx -1 is padding (the
 * dst row is left as it was); any other negative index is a data fault
 * (KERN_FAULT_SLOT) and the row is treated as padding. The source row count
 * is not passed, so indices past the end cannot be checked here. */
#include "common.cuh"

template <typename T>
__global__ static void gather_kernel(const T *src, const int32_t *idx, size_t row_elems, T *dst, uint32_t *fault)
{
    cu_pdl_enter();
    int32_t s = idx[blockIdx.x];
    if (s < 0) {
        if (s != -1 && threadIdx.x == 0) cu_fault(fault, KERN_FAULT_SLOT);
        return;
    }
    const T *a = src + (size_t)s * row_elems;
    T *b = dst + (size_t)blockIdx.x * row_elems;
#pragma unroll 4 /* several loads in flight: dst rows never alias src */
    for (size_t i = threadIdx.x; i < row_elems; i += blockDim.x) b[i] = __ldg(a + i);
}

extern "C" ms_status_t kern_cuda_gather_rows(kern_ctx_t *cx, const void *src, const int32_t *idx, int32_t n,
                                             size_t row_bytes, void *dst)
{
    if (n <= 0 || row_bytes == 0) return MS_OK;
    if (n > 2147483647) return MS_ERR(MS_ERR_INVALID, "cuda gather_rows: %d rows", n);
    const uintptr_t al = (uintptr_t)src | (uintptr_t)dst | (uintptr_t)row_bytes;
    if (al % 16 == 0)
        cu_launch(gather_kernel<uint4>, n, 128, 0, CU_STREAM(cx), (const uint4 *)src, idx, row_bytes / 16,
                  (uint4 *)dst, cx->fault);
    else if (al % 4 == 0)
        cu_launch(gather_kernel<uint32_t>, n, 256, 0, CU_STREAM(cx), (const uint32_t *)src, idx, row_bytes / 4,
                  (uint32_t *)dst, cx->fault);
    else
        cu_launch(gather_kernel<uint8_t>, n, 256, 0, CU_STREAM(cx), (const uint8_t *)src, idx, row_bytes,
                  (uint8_t *)dst, cx->fault);
    CU_LAUNCHED();
    return MS_OK;
}
