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

/* rmsnorm_quant: y (and x) bit-identical to the norm op, codes and scales bit-identical to act_quant of
 * that y. add: add_rmsnorm's form; else rmsnorm over strided rows (ldx), in place when inplace. */
static void quant_case(int rows, int dim, int add, int ldx, int inplace, int ldq)
{
    const int ldy = add ? dim : ldx, lds = kern_fp8_blocks(dim) + 1;
    const size_t nx = (size_t)rows * ldx, nq = (size_t)rows * ldq, ns = (size_t)rows * lds;
    bf16_t *x = kr_bf16(nx, 1.0), *res = kr_bf16((size_t)rows * dim, 0.5), *w = kr_bf16(dim, 1.0);
    if (rows > 1) memset(x + ldx, 0, sizeof(bf16_t) * (size_t)dim); /* a zero row: amax floor */
    bf16_t *x1 = malloc(2 * nx), *x2 = malloc(2 * nx), *y1 = calloc(nx, 2), *y2 = calloc(nx, 2);
    uint8_t *q1 = calloc(nq, 1), *q2 = calloc(nq, 1);
    float *s1 = calloc(ns, 4), *s2 = calloc(ns, 4);
    memcpy(x1, x, 2 * nx), memcpy(x2, x, 2 * nx);
    if (add) {
        T_CHECK(kern_cpu_ops.add_rmsnorm(NULL, x1, res, w, y1, rows, dim, 1e-6f) == MS_OK);
        T_CHECK(kern_cpu_ops.rmsnorm_quant(NULL, x2, dim, res, w, y2, dim, rows, dim, 1e-6f, q2, ldq, s2, lds) ==
                MS_OK);
    } else {
        bf16_t *yo1 = inplace ? x1 : y1, *yo2 = inplace ? x2 : y2;
        T_CHECK(kern_cpu_ops.rmsnorm(NULL, x1, ldx, w, yo1, ldy, rows, dim, 1e-6f) == MS_OK);
        T_CHECK(kern_cpu_ops.rmsnorm_quant(NULL, x2, ldx, NULL, w, yo2, ldy, rows, dim, 1e-6f, q2, ldq, s2, lds) ==
                MS_OK);
        if (inplace) memcpy(y1, x1, 2 * nx), memcpy(y2, x2, 2 * nx);
    }
    T_CHECK(kern_cpu_ops.act_quant(NULL, y1, ldy, rows, dim, q1, ldq, s1, lds) == MS_OK);
    T_CHECK_MSG(!memcmp(x1, x2, 2 * nx), "rmsnorm_quant %dx%d add=%d: x differs", rows, dim, add);
    T_CHECK_MSG(!memcmp(y1, y2, 2 * nx), "rmsnorm_quant %dx%d add=%d: y differs", rows, dim, add);
    T_CHECK_MSG(!memcmp(q1, q2, nq), "rmsnorm_quant %dx%d add=%d: codes differ", rows, dim, add);
    T_CHECK_MSG(!memcmp(s1, s2, 4 * ns), "rmsnorm_quant %dx%d add=%d: scales differ", rows, dim, add);
    free(x), free(res), free(w), free(x1), free(x2), free(y1), free(y2), free(q1), free(q2), free(s1), free(s2);
}

static void quant_cases(void)
{
    quant_case(3, 7168, 1, 7168, 0, 7168); /* the residual add + norm before q_a|kv_a and the experts */
    quant_case(2, 1536, 0, 2112, 1, 1536); /* q_a_layernorm in place in the ld_qkva rows, before q_b */
    quant_case(4, 300, 1, 300, 0, 303);    /* a short last group, odd code stride */
    quant_case(3, 100, 0, 104, 0, 100);
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
    quant_cases();
    return t_done();
}
