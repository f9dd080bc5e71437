/* embed.cu — embedding lookup: one block per token copies its bf16 row.
 * Out-of-range ids (the engine validates ids on the host first) write zeros
 * rather than reading outside the table. */
#include <cuda_runtime.h>
#include <stdint.h>
#include "cuda.h"

__global__ static void embed_kernel(const int32_t *ids, const uint16_t *table, int64_t vocab, int32_t dim,
                                    uint16_t *out)
{
    int64_t t = blockIdx.x;
    int32_t id = ids[t];
    uint16_t *o = out + t * dim;
    if (id < 0 || id >= vocab) {
        for (int32_t i = threadIdx.x; i < dim; i += blockDim.x) o[i] = 0;
        return;
    }
    const uint16_t *r = table + (int64_t)id * dim;
    for (int32_t i = threadIdx.x; i < dim; i += blockDim.x) o[i] = r[i];
}

extern "C" ms_status_t kern_cuda_embed(kern_ctx_t *cx, const int32_t *ids, int32_t n, const bf16_t *table,
                                       int64_t vocab, int32_t dim, bf16_t *out)
{
    if (n <= 0) return MS_OK;
    embed_kernel<<<n, 256, 0, (cudaStream_t)cx->stream>>>(ids, table, vocab, dim, out);
    CUDA_CHECK(cudaGetLastError());
    return MS_OK;
}
