/* blas.cu — cuBLASLt: the handle a main context owns (side contexts share
 * it: a handle serves several streams, each call names its stream) and the
 * matmul layer of blas.h. Row-major Y = X·Wᵀ is column-major Yᵀ = W·Xᵀ with
 * A = W (op T, stored k×n), B = X (op N, stored k×m), D = Yᵀ (n×m): no copy
 * or transpose of any operand. Accumulation is fp32 (CUBLAS_COMPUTE_32F,
 * never TF32), one rounding on store.
 * Descriptors and the heuristic's algorithm are made once per shape and kept
 * in a small table (g_plans, a mutex around lookup and enqueue: contexts may
 * run on several threads), so steady-state steps do no host allocation; a
 * shape without an algorithm is cached too (answered UNSUPPORTED at once). */
#include <cublasLt.h>
#include <pthread.h>
#include <string.h>
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

/* the alignment every batch's matrix keeps: of the base and of the batch stride in bytes */
static uint32_t blas_align_batched(const void *p, int64_t stride, ms_dtype_t dt)
{
    uint32_t a = blas_align(p);
    const uint64_t sb = (uint64_t)stride * (dt == MS_DT_F32 ? 4 : dt == MS_DT_BF16 ? 2 : 1);
    while (a > 1 && sb % a) a >>= 1;
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

/* What a cached plan depends on (memset before filling: compared with memcmp). */
typedef struct {
    void *handle;
    int32_t m, n, k, batch, w_trans;
    int32_t xdt, wdt, ydt;
    int64_t ldx, ldw, ldy, sx, sw, sy;
    uint32_t al_a, al_b, al_d;
    size_t ws_bytes;
} blas_key_t;

typedef struct {
    blas_key_t key;
    int used, found;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatmulAlgo_t algo;
} blas_plan_t;

#define BLAS_PLANS 512
static blas_plan_t g_plans[BLAS_PLANS];
static int g_plan_next; /* round-robin victim once the table is full */
static pthread_mutex_t g_plan_mu = PTHREAD_MUTEX_INITIALIZER;

static void blas_plan_clear(blas_plan_t *p)
{
    if (p->ld) cublasLtMatrixLayoutDestroy(p->ld);
    if (p->lb) cublasLtMatrixLayoutDestroy(p->lb);
    if (p->la) cublasLtMatrixLayoutDestroy(p->la);
    if (p->op) cublasLtMatmulDescDestroy(p->op);
    memset(p, 0, sizeof *p);
}

/* Build the descriptors and pick the algorithm for key (into p, which is clear). */
static ms_status_t blas_plan_make(const blas_key_t *key, cudaDataType_t ta, cudaDataType_t tb, cudaDataType_t td,
                                  blas_plan_t *p)
{
    ms_status_t st = MS_OK;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    const cublasOperation_t opA = key->w_trans ? CUBLAS_OP_N : CUBLAS_OP_T, opN = CUBLAS_OP_N;
    size_t ws_bytes = key->ws_bytes;
    p->key = *key;
    BLAS_TRY(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    BLAS_TRY(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &opA, sizeof opA));
    BLAS_TRY(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof opN));
    /* A = W: column-major k×n (row-major [n, k]), or n×k with op N when W is stored transposed */
    if (key->w_trans)
        MS_TRY_GOTO(st, blas_layout(&p->la, ta, (uint64_t)key->n, (uint64_t)key->k, key->ldw, key->batch, key->sw), out);
    else
        MS_TRY_GOTO(st, blas_layout(&p->la, ta, (uint64_t)key->k, (uint64_t)key->n, key->ldw, key->batch, key->sw), out);
    MS_TRY_GOTO(st, blas_layout(&p->lb, tb, (uint64_t)key->k, (uint64_t)key->m, key->ldx, key->batch, key->sx), out);
    MS_TRY_GOTO(st, blas_layout(&p->ld, td, (uint64_t)key->n, (uint64_t)key->m, key->ldy, key->batch, key->sy), out);
    BLAS_TRY(cublasLtMatmulPreferenceCreate(&pref));
    BLAS_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                                  sizeof ws_bytes));
    BLAS_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &key->al_a,
                                                  sizeof key->al_a));
    BLAS_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &key->al_b,
                                                  sizeof key->al_b));
    BLAS_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &key->al_d,
                                                  sizeof key->al_d));
    BLAS_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &key->al_d,
                                                  sizeof key->al_d));
    if (cublasLtMatmulAlgoGetHeuristic((cublasLtHandle_t)key->handle, p->op, p->la, p->lb, p->ld, p->ld, pref, 1,
                                       &heur, &found) == CUBLAS_STATUS_SUCCESS &&
        found >= 1) {
        p->algo = heur.algo;
        p->found = 1;
    }
    p->used = 1;
out:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (st != MS_OK) blas_plan_clear(p);
    return st;
}

ms_status_t kern_cuda_blas_matmul(kern_ctx_t *cx, const kern_cuda_mm_t *mm, void *ws, size_t ws_bytes)
{
    cudaDataType_t ta, tb, td;
    if (!blas_type(mm->wdt, &ta) || !blas_type(mm->xdt, &tb) || !blas_type(mm->ydt, &td)) return MS_ERR_UNSUPPORTED;
    blas_key_t key;
    memset(&key, 0, sizeof key);
    key.handle = cx->blas;
    key.m = mm->m, key.n = mm->n, key.k = mm->k, key.batch = mm->batch > 1 ? mm->batch : 1;
    key.w_trans = mm->w_trans ? 1 : 0;
    key.xdt = mm->xdt, key.wdt = mm->wdt, key.ydt = mm->ydt;
    key.ldx = mm->ldx, key.ldw = mm->ldw, key.ldy = mm->ldy;
    if (key.batch > 1) key.sx = mm->stride_x, key.sw = mm->stride_w, key.sy = mm->stride_y;
    key.al_a = blas_align_batched(mm->w, key.sw, mm->wdt), key.al_b = blas_align_batched(mm->x, key.sx, mm->xdt);
    key.al_d = blas_align_batched(mm->y, key.sy, mm->ydt);
    key.ws_bytes = ws_bytes;
    const float alpha = 1.0f, beta = 0.0f;
    ms_status_t st = MS_OK;
    pthread_mutex_lock(&g_plan_mu);
    blas_plan_t *p = NULL;
    for (int i = 0; i < BLAS_PLANS && g_plans[i].used; i++)
        if (!memcmp(&g_plans[i].key, &key, sizeof key)) {
            p = &g_plans[i];
            break;
        }
    if (!p) {
        p = &g_plans[g_plan_next];
        g_plan_next = (g_plan_next + 1) % BLAS_PLANS;
        blas_plan_clear(p);
        st = blas_plan_make(&key, ta, tb, td, p);
    }
    if (st == MS_OK && !p->found) st = MS_ERR_UNSUPPORTED;
    if (st == MS_OK) {
        cublasStatus_t rc = cublasLtMatmul((cublasLtHandle_t)cx->blas, p->op, &alpha, mm->w, p->la, mm->x, p->lb,
                                           &beta, mm->y, p->ld, mm->y, p->ld, &p->algo, ws, ws_bytes,
                                           (cudaStream_t)cx->stream);
        if (rc != CUBLAS_STATUS_SUCCESS) st = MS_ERR(MS_ERR_CUDA, "cublasLtMatmul failed: cuBLAS status %d", (int)rc);
    }
    pthread_mutex_unlock(&g_plan_mu);
    return st;
}
