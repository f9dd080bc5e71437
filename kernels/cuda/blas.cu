/* blas.cu — the cuBLASLt handle a main context owns (side contexts share
 * it: a handle may serve several streams, each call names its stream). */
#include <cublasLt.h>
#include "cuda.h"

extern "C" ms_status_t kern_cuda_blas_create(void **out)
{
    cublasLtHandle_t h;
    cublasStatus_t rc = cublasLtCreate(&h);
    if (rc != CUBLAS_STATUS_SUCCESS) return MS_ERR(MS_ERR_CUDA, "cublasLtCreate failed: status %d", (int)rc);
    *out = (void *)h;
    return MS_OK;
}

extern "C" void kern_cuda_blas_destroy(void *h)
{
    if (h) cublasLtDestroy((cublasLtHandle_t)h);
}
