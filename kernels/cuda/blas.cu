/* blas.cu — cuBLASLt: the handle a main context owns (side contexts share
 * it: a handle serves several streams, each call names its stream) and the
 * matmul layer of blas.h. Row-major Y = X·Wᵀ is column-major Yᵀ = W·Xᵀ with
 * A = W (op T, stored k×n), B = X (op N, stored k×m), D = Yᵀ (n×m): no copy
 * or transpose of any operand. Accumulation is fp32 (CUBLAS_COMPUTE_32F,
 * never TF32), one rounding on store.
 * Descriptors and the heuristic query are made per call (host work only, no
 * device allocation); caching them per shape is for the speed issue. */
#include <cublasLt.h>
#include "blas.h"

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

static int blas_type(ms_dtype_t dt, cudaDataType_t *out)
{
    switch (dt) {
    case MS_DT_BF16: *out = CUDA_R_16BF; return 1;
    case MS_DT_F32: *out = CUDA_R_32F; return 1;
    case MS_DT_F8E4M3: *out = CUDA_R_8F_E4M3; return 1;
    default: return 0;
    }
}

/* the largest power of two (<= 256) dividing the address */
static uint32_t blas_align(const void *p)
{
    uint32_t a = 256;
    while (a > 1 && ((uintptr_t)p % a)) a >>= 1;
    return a;
}

#define BLAS_TRY(call)                                                                                 \
    do {                                                                                               \
        cublasStatus_t blas_rc_ = (call);                                                              \
        if (blas_rc_ != CUBLAS_STATUS_SUCCESS) {                                                       \
            st = MS_ERR(MS_ERR_CUDA, "%s failed: cuBLAS status %d", #call, (int)blas_rc_);             \
            goto out;                                                                                  \
        }                                                                                              \
    } while (0)

static ms_status_t blas_layout(cublasLtMatrixLayout_t *l, cudaDataType_t t, uint64_t rows, uint64_t cols,
                               int64_t ld, int32_t batch, int64_t stride)
{
    if (cublasLtMatrixLayoutCreate(l, t, rows, cols, ld) != CUBLAS_STATUS_SUCCESS)
        return MS_ERR(MS_ERR_CUDA, "cublasLtMatrixLayoutCreate failed");
    if (batch > 1) {
        cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof batch);
        cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride);
    }
    return MS_OK;
}

ms_status_t kern_cuda_blas_matmul(kern_ctx_t *cx, const kern_cuda_mm_t *mm, void *ws, size_t ws_bytes)
{
    cudaDataType_t ta, tb, td;
    if (!blas_type(mm->wdt, &ta) || !blas_type(mm->xdt, &tb) || !blas_type(mm->ydt, &td)) return MS_ERR_UNSUPPORTED;
    if (mm->epilogue != KERN_CUDA_EPI_NONE) return MS_ERR_UNSUPPORTED;
    ms_status_t st = MS_OK;
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, ld = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    const cublasOperation_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
    const int32_t batch = mm->batch > 1 ? mm->batch : 1;
    const float alpha = 1.0f, beta = 0.0f;
    uint32_t al_a = blas_align(mm->w), al_b = blas_align(mm->x), al_d = blas_align(mm->y);

    BLAS_TRY(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    BLAS_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof opT));
    BLAS_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof opN));
    MS_TRY_GOTO(st, blas_layout(&la, ta, (uint64_t)mm->k, (uint64_t)mm->n, mm->ldw, batch, mm->stride_w), out);
    MS_TRY_GOTO(st, blas_layout(&lb, tb, (uint64_t)mm->k, (uint64_t)mm->m, mm->ldx, batch, mm->stride_x), out);
    MS_TRY_GOTO(st, blas_layout(&ld, td, (uint64_t)mm->n, (uint64_t)mm->m, mm->ldy, batch, mm->stride_y), out);
    BLAS_TRY(cublasLtMatmulPreferenceCreate(&pref));
    BLAS_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                                  sizeof ws_bytes));
    BLAS_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a));
    BLAS_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b));
    BLAS_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_d, sizeof al_d));
    BLAS_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d, sizeof al_d));
    if (cublasLtMatmulAlgoGetHeuristic((cublasLtHandle_t)cx->blas, op, la, lb, ld, ld, pref, 1, &heur, &found) !=
            CUBLAS_STATUS_SUCCESS ||
        found < 1) {
        st = MS_ERR_UNSUPPORTED;
        goto out;
    }
    BLAS_TRY(cublasLtMatmul((cublasLtHandle_t)cx->blas, op, &alpha, mm->w, la, mm->x, lb, &beta, mm->y, ld, mm->y, ld,
                            &heur.algo, ws, ws_bytes, (cudaStream_t)cx->stream));
out:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (ld) cublasLtMatrixLayoutDestroy(ld);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (op) cublasLtMatmulDescDestroy(op);
    return st;
}
