/* test_rope.c — rope against a double reference that rotates the checkpoint's
 * interleaved pairs in place (DeepSeek's own formulation):
 *   (x_2i, x_2i+1) -> (x_2i cos - x_2i+1 sin, x_2i+1 cos + x_2i sin)
 * The op must return the same values in transformers' halves layout
 * (out[i], out[half+i]). Tolerance per element: 2^-6·(|x_2i|+|x_2i+1|)·af
 * (bf16 cos/sin and three bf16 roundings, unit roundoff 2^-8 each). Shapes: DeepSeek-V3 q_pe (128
 * heads × 64 inside 192-wide heads) and k_pe (1 head, 576-wide rows) at
 * positions up to 163839, YaRN inv_freq; the non-interleaved layout; and the
 * exact rounding of one element against transformers' formula. */
#include "kref.h"

static void inv_freq_yarn(float *f, int dim) /* 671B values: base 1e4, factor 40, L0 4096, beta 32/1 */
{
    const double base = 10000, fac = 40;
    int low = 10, high = 23;
    for (int i = 0; i < dim / 2; i++) {
        double th = pow(base, -2.0 * i / dim);
        double ramp = (i - low) / (double)(high - low);
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        f[i] = (float)(th / fac * ramp + th * (1 - ramp));
    }
}

static void run(int rows, int heads, int ld_row, int ld_head, int off, int dim, int interleaved, float af, int maxpos)
{
    bf16_t *x = kr_bf16((int64_t)rows * ld_row, 1.0), *x0 = malloc(sizeof(bf16_t) * (size_t)rows * ld_row);
    memcpy(x0, x, sizeof(bf16_t) * (size_t)rows * ld_row);
    int32_t *pos = malloc(sizeof(int32_t) * rows);
    for (int r = 0; r < rows; r++) pos[r] = r == 0 ? 0 : r == 1 ? maxpos : (int)(kr_uniform() * maxpos);
    float f[256];
    inv_freq_yarn(f, dim);
    T_CHECK(kern_cpu_ops.rope(NULL, x + off, rows, heads, ld_row, ld_head, pos, f, af, dim, interleaved) == MS_OK);
    kr_err_t e = {.what = interleaved ? "rope interleaved" : "rope halves"};
    const int half = dim / 2;
    long untouched_bad = 0;
    for (int r = 0; r < rows; r++)
        for (int h = 0; h < heads; h++) {
            const bf16_t *a = x0 + (long)r * ld_row + (long)h * ld_head + off, *b = x + (long)r * ld_row + (long)h * ld_head + off;
            for (int i = 0; i < half; i++) {
                double u = kr_b(interleaved ? a[2 * i] : a[i]), v = kr_b(interleaved ? a[2 * i + 1] : a[half + i]);
                double ang = (double)(f[i] * (float)pos[r]);
                double c = cos(ang) * af, s = sin(ang) * af;
                double tol = (fabs(u) + fabs(v)) * af / 64 + 1e-6;
                kr_err_add(&e, kr_b(b[i]), u * c - v * s, tol);
                kr_err_add(&e, kr_b(b[half + i]), v * c + u * s, tol);
            }
        }
    /* channels outside [off, off+dim) of each head are untouched */
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < ld_row; j++) {
            int in = 0;
            for (int h = 0; h < heads; h++)
                if (j >= h * ld_head + off && j < h * ld_head + off + dim) in = 1;
            if (!in && x[(long)r * ld_row + j] != x0[(long)r * ld_row + j]) untouched_bad++;
        }
    KR_ERR_CHECK(e);
    T_CHECK(untouched_bad == 0);
    fprintf(stderr, "%s rows=%d heads=%d dim=%d worst %.3f x tol\n", e.what, rows, heads, dim, e.worst);
    free(x), free(x0), free(pos);
}

/* kv_store_rope equals rope on the k_pe rows then kv_store, bit for bit: cache rows and the roped kva rows,
 * in both row layouts; a padding slot is roped but not stored */
static void store_rope(ms_dtype_t dt)
{
    enum { N = 5, DC = 512, DR = 64, LD = 2112, BS = 4, NB = 4 };
    const int32_t rb = kern_kv_row_bytes(dt, DC, DR);
    kern_kv_t kv = {.dtype = dt, .d_c = DC, .d_r = DR, .block_size = BS, .n_blocks = NB, .row_bytes = rb};
    unsigned char *c1 = calloc(NB * BS, (size_t)rb), *c2 = calloc(NB * BS, (size_t)rb);
    bf16_t *x1 = kr_bf16(N * LD, 1.0), *x2 = malloc(sizeof(bf16_t) * N * LD);
    memcpy(x2, x1, sizeof(bf16_t) * N * LD);
    int32_t slots[N] = {3, 0, -1, 15, 7}, pos[N] = {0, 5, 9, 163839, 70};
    float inv[DR / 2];
    for (int i = 0; i < DR / 2; i++) inv[i] = (float)pow(10000.0, -2.0 * i / DR);
    kv.data = c1;
    T_CHECK(kern_cpu_ops.rope(NULL, x1 + DC, N, 1, LD, 0, pos, inv, 1.1f, DR, 1) == MS_OK);
    T_CHECK(kern_cpu_ops.kv_store(NULL, &kv, x1, LD, x1 + DC, LD, slots, N) == MS_OK);
    kv.data = c2;
    T_CHECK(kern_cpu_ops.kv_store_rope(NULL, &kv, x2, LD, x2 + DC, LD, slots, N, pos, inv, 1.1f, 1) == MS_OK);
    T_CHECK_MSG(!memcmp(c1, c2, (size_t)NB * BS * rb), "kv_store_rope %s: cache rows differ", ms_dtype_name(dt));
    T_CHECK_MSG(!memcmp(x1, x2, sizeof(bf16_t) * N * LD), "kv_store_rope %s: roped rows differ", ms_dtype_name(dt));
    free(c1), free(c2), free(x1), free(x2);
}

int main(void)
{
    kr_seed(3);
    store_rope(MS_DT_BF16);
    store_rope(MS_DT_F8E4M3);
    run(4, 128, 128 * 192, 192, 128, 64, 1, 1.0f, 163839); /* q_pe of DeepSeek-V3 */
    run(6, 1, 576, 576, 512, 64, 1, 1.0f, 163839);         /* k_pe inside the kv_a row */
    run(5, 3, 3 * 40, 40, 8, 32, 0, 1.0f, 4096);            /* non-interleaved */
    run(3, 2, 2 * 16, 16, 0, 16, 1, 1.2f, 1000);            /* attention factor != 1 */

    /* exact rounding of one pair against transformers' formula at pos 7, i = 1 */
    bf16_t v[4] = {f32_to_bf16(0.7f), f32_to_bf16(-1.3f), f32_to_bf16(2.1f), f32_to_bf16(0.45f)};
    float f[2] = {1.0f, 0.01f};
    int32_t p = 7;
    T_CHECK(kern_cpu_ops.rope(NULL, v, 1, 1, 4, 4, &p, f, 1.0f, 4, 1) == MS_OK);
    float c = bf16_round(cosf(0.07f)), s = bf16_round(sinf(0.07f));
    float x1 = 2.1f, x3 = 0.45f; /* pair 1 = (x2, x3); halves layout: out[1], out[3] */
    float want1 = bf16_round(bf16_round(bf16_round(x1) * c) + bf16_round(-bf16_round(x3) * s));
    float want3 = bf16_round(bf16_round(bf16_round(x3) * c) + bf16_round(bf16_round(x1) * s));
    T_CHECK(bf16_to_f32(v[1]) == want1);
    T_CHECK(bf16_to_f32(v[3]) == want3);
    T_CHECK(kern_cpu_ops.rope(NULL, v, 1, 1, 4, 4, &p, f, 1.0f, 3, 1) == MS_ERR_INVALID);
    return t_done();
}
