/* test_cuda_vs_cpu.c — cross-backend check (ggml's test-backend-ops): every
 * op the CUDA backend implements is run on the same inputs as the CPU
 * reference and compared. Without a CUDA build or without a GPU this test
 * reports SKIP (77); it never passes vacuously. Shapes: DeepSeek-V3 hidden
 * 7168 rows. Tolerance: embed exact; rmsnorm two bf16 ulps (the GPU reduces
 * in fp32, the CPU in double: the normalized value may round the other way,
 * then the weight product rounds again). */
#include "kref.h"

int main(void)
{
    const kern_ops_t *cu = NULL;
    if (kern_backend_get("cuda", &cu) != MS_OK) {
        fprintf(stderr, "SKIP: no CUDA backend in this build\n");
        return 77;
    }
    void *probe = NULL;
    if (cu->alloc(256, &probe) != MS_OK) {
        fprintf(stderr, "SKIP: CUDA backend present but no usable GPU\n");
        return 77;
    }
    cu->free(probe);
    kr_seed(8);
    kern_ctx_t *st;
    T_CHECK(cu->ctx_create(0, 0, &st) == MS_OK);
    const int rows = 4, dim = 7168, V = 1000;
    bf16_t *x = kr_bf16((int64_t)rows * dim, 1.0), *w = kr_bf16(dim, 1.0), *yc = calloc((size_t)rows * dim, 2),
           *yg = calloc((size_t)rows * dim, 2);
    void *dx, *dw, *dy;
    cu->alloc((size_t)rows * dim * 2, &dx), cu->alloc(dim * 2, &dw), cu->alloc((size_t)rows * dim * 2, &dy);
    cu->upload(st, dx, x, (size_t)rows * dim * 2), cu->upload(st, dw, w, dim * 2);
    T_CHECK(cu->rmsnorm(st, dx, dim, dw, dy, dim, rows, dim, 1e-6f) == MS_OK);
    cu->download(st, yg, dy, (size_t)rows * dim * 2);
    T_CHECK(cu->synchronize(st) == MS_OK);
    kern_cpu_ops.rmsnorm(NULL, x, dim, w, yc, dim, rows, dim, 1e-6f);
    kr_err_t e = {.what = "rmsnorm cuda vs cpu"};
    for (long i = 0; i < (long)rows * dim; i++) kr_err_add(&e, kr_b(yg[i]), kr_b(yc[i]), fabs(kr_b(yc[i])) / 64 + 1e-30);
    KR_ERR_CHECK(e);

    bf16_t *tab = kr_bf16((int64_t)V * 576, 1.0), *ec = calloc(8 * 576, 2), *eg = calloc(8 * 576, 2);
    int32_t ids[8] = {0, 999, 5, 5, 17, 400, 3, 2};
    void *dt, *di, *de;
    cu->alloc((size_t)V * 576 * 2, &dt), cu->alloc(sizeof ids, &di), cu->alloc(8 * 576 * 2, &de);
    cu->upload(st, dt, tab, (size_t)V * 576 * 2), cu->upload(st, di, ids, sizeof ids);
    T_CHECK(cu->embed(st, di, 8, dt, V, 576, de) == MS_OK);
    cu->download(st, eg, de, 8 * 576 * 2);
    T_CHECK(cu->synchronize(st) == MS_OK);
    kern_cpu_ops.embed(NULL, ids, 8, tab, V, 576, ec);
    T_CHECK(memcmp(ec, eg, 8 * 576 * 2) == 0);
    cu->free(dx), cu->free(dw), cu->free(dy), cu->free(dt), cu->free(di), cu->free(de);
    cu->ctx_destroy(st);
    free(x), free(w), free(yc), free(yg), free(tab), free(ec), free(eg);
    return t_done();
}
