/* test_rmsnorm.c — rmsnorm against a double reference of transformers'
 * DeepseekV3RMSNorm: n = bf16(x / sqrt(mean(x^2) + eps)), y = bf16(w * n).
 * The op computes the statistic in fp32, so n may land one bf16 ulp away
 * from the reference near a rounding boundary, and the product is rounded
 * again: tolerance 2^-6·|ref| (two ulps) per element, and at most 1% of
 * elements may differ at all. add_rmsnorm (fused residual add) must equal add
 * then rmsnorm bit for bit. Shapes: hidden 7168, kv_a_layernorm 512 inside a 576-wide
 * row (strided), q_a_layernorm 1536, tiny 64. */
#include "kref.h"

static void run(int rows, int dim, int ldx, int ldy, float eps, double xs)
{
    bf16_t *x = kr_bf16((int64_t)rows * ldx, xs), *w = kr_bf16(dim, 1.0), *y = kr_bf16((int64_t)rows * ldy, 0);
    T_CHECK(kern_cpu_ops.rmsnorm(NULL, x, ldx, w, y, ldy, rows, dim, eps) == MS_OK);
    kr_err_t e = {.what = "rmsnorm"};
    long diff = 0;
    for (int r = 0; r < rows; r++) {
        double ss = 0;
        for (int i = 0; i < dim; i++) ss += kr_b(x[(long)r * ldx + i]) * kr_b(x[(long)r * ldx + i]);
        double inv = 1.0 / sqrt(ss / dim + eps);
        for (int i = 0; i < dim; i++) {
            double n = bf16_round((float)(kr_b(x[(long)r * ldx + i]) * inv));
            double ref = bf16_round((float)(kr_b(w[i]) * n));
            double got = kr_b(y[(long)r * ldy + i]);
            diff += got != ref;
            kr_err_add(&e, got, ref, fabs(ref) / 64 + 1e-30);
        }
    }
    KR_ERR_CHECK(e);
    T_CHECK_MSG(diff <= (long)rows * dim / 100, "%ld of %d elements differ from the reference", diff, rows * dim);
    fprintf(stderr, "rows=%d dim=%d ldx=%d: %ld/%d elements one ulp off\n", rows, dim, ldx, diff, rows * dim);
    free(x), free(w), free(y);
}

int main(void)
{
    kr_seed(2);
    run(3, 7168, 7168, 7168, 1e-6f, 1.0);
    run(5, 512, 576, 512, 1e-6f, 0.3);
    run(2, 1536, 1536, 1536, 1e-6f, 4.0);
    run(9, 64, 64, 64, 1e-6f, 1e-3);
    /* in place */
    bf16_t *x = kr_bf16(64, 1.0), w[64], y[64];
    for (int i = 0; i < 64; i++) w[i] = f32_to_bf16(1.0f);
    T_CHECK(kern_cpu_ops.rmsnorm(NULL, x, 64, w, y, 64, 1, 64, 1e-6f) == MS_OK);
    T_CHECK(kern_cpu_ops.rmsnorm(NULL, x, 64, w, x, 64, 1, 64, 1e-6f) == MS_OK);
    T_CHECK(memcmp(x, y, sizeof y) == 0);
    free(x);
    /* add_rmsnorm is bit-identical to add then rmsnorm, for the new residual and the normed output */
    enum { R = 6, DIM = 7168 };
    bf16_t *a = kr_bf16(R * DIM, 1.0), *r = kr_bf16(R * DIM, 0.5), *wn = kr_bf16(DIM, 1.0);
    bf16_t *s1 = calloc(R * DIM, 2), *y1 = calloc(R * DIM, 2), *y2 = calloc(R * DIM, 2), *a2 = malloc(R * DIM * 2);
    memcpy(a2, a, R * DIM * 2);
    T_CHECK(kern_cpu_ops.add(NULL, a, r, s1, R * DIM) == MS_OK);
    T_CHECK(kern_cpu_ops.rmsnorm(NULL, s1, DIM, wn, y1, DIM, R, DIM, 1e-6f) == MS_OK);
    T_CHECK(kern_cpu_ops.add_rmsnorm(NULL, a2, r, wn, y2, R, DIM, 1e-6f) == MS_OK);
    T_CHECK(memcmp(a2, s1, R * DIM * 2) == 0);
    T_CHECK(memcmp(y1, y2, R * DIM * 2) == 0);
    T_CHECK(memcmp(a2, a, R * DIM * 2) != 0); /* the residual did change */
    free(a), free(r), free(wn), free(s1), free(y1), free(y2), free(a2);
    return t_done();
}
