/* test_moe_fp8.c — kern_cuda_moe_fp8 (kernels/cuda/moe_gemm_fp8.cu) against a
 * CPU double-precision reference of the same dequantized math, at DeepSeek-R1's
 * expert shapes (hidden 7168, moe_inter 2048) on a few slots of the masked
 * layout: uneven counts, an empty slot, a count above cap (clamped), every
 * token-block variant (cap 8, 32, 136 = two blocks of 128). The reference
 * quantizes activations with the same fp32 operations as act_quant (so the
 * e4m3 bytes agree), sums products of dequantized fp8 values in double, and
 * rounds where the kernel rounds (bf16 gate and up, bf16 silu, bf16 h, bf16
 * out). Tolerance: relative L2 error <= 8e-3 over the checked outputs and max
 * |err| <= 3e-2 * max|ref| (fp32 accumulation order and the tensor cores'
 * reduced-precision FP8 sums within a 128-K chunk move a bf16 rounding of h
 * now and then). Padding rows must keep their poison; real rows must all be
 * written. Without a GPU the test prints SKIP and exits 77. */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/moe_gemm.h"

#define H 7168
#define I 2048
#define E 4
#define POISON 0x7fc1u /* a NaN no kernel writes */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double urand(void) /* [0, 1) */
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static double trand(void) { return urand() + urand() - 1.0; } /* triangular on (-1, 1) */
static uint8_t fp8_code(void) /* a uniformly random finite e4m3 code */
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    uint8_t b = (uint8_t)(rng >> 32);
    return (b & 0x7f) == 0x7f ? b ^ 1 : b;
}

static int fail(const char *what, cudaError_t e)
{
    fprintf(stderr, "FAIL %s: %s\n", what, cudaGetErrorString(e));
    return 1;
}

/* The reference act_quant (same fp32 operations as act_quant.cu). */
static void ref_quant(const float *x, int K, double *deq)
{
    for (int g = 0; g < K / 128; g++) {
        float amax = 0.f;
        for (int j = 0; j < 128; j++) amax = fmaxf(amax, fabsf(x[g * 128 + j]));
        float s = amax > 0.f ? amax / 448.f : 1.f;
        for (int j = 0; j < 128; j++) deq[g * 128 + j] = (double)fp8e4m3_to_f32(f32_to_fp8e4m3(x[g * 128 + j] / s)) * s;
    }
}

/* out[r] = sum_j W[r,j] x[j] over a [rows, K] fp8 matrix with 128x128 scales. */
static double ref_dot(const uint8_t *w, const float *ws, int K, int r, const double *x, const float *lut)
{
    double acc = 0;
    for (int kb = 0; kb < K / 128; kb++) {
        double part = 0;
        const uint8_t *wr = w + (size_t)r * K + kb * 128;
        for (int j = 0; j < 128; j++) part += (double)lut[wr[j]] * x[kb * 128 + j];
        acc += part * ws[(r / 128) * (K / 128) + kb];
    }
    return acc;
}

static int run_case(int cap, const int *counts, const uint8_t *w13, const float *w13s, const uint8_t *w2,
                    const float *w2s, const moe_fp8_weights_t *dw, const float *lut)
{
    const size_t rows = (size_t)E * cap;
    bf16_t *x = malloc(rows * H * 2), *out = malloc(rows * H * 2);
    double *ref = malloc(rows * H * sizeof(double)); /* NaN where not checked */
    /* every 128-channel group of every token at its own magnitude (2^-3..2^3), so
     * a kernel that applied another token's or group's scale would be far off */
    for (size_t gi = 0; gi < rows * (H / 128); gi++) {
        const float mag = (float)(2.0 * exp2(6.0 * urand() - 3.0));
        for (int j = 0; j < 128; j++) x[gi * 128 + j] = f32_to_bf16(mag * (float)trand());
    }
    for (int j = 0; j < 128; j++) x[j] = 0; /* an all-zero group: scale 1 */
    void *dx = NULL, *dout = NULL, *dws = NULL, *dcnt = NULL;
    const size_t wsb = kern_cuda_moe_fp8_ws_bytes(E, cap, H, I);
    cudaError_t e;
    if ((e = cudaMalloc(&dx, rows * H * 2)) || (e = cudaMalloc(&dout, rows * H * 2)) || (e = cudaMalloc(&dws, wsb)) ||
        (e = cudaMalloc(&dcnt, E * 4)))
        return fail("cudaMalloc", e);
    cudaMemcpy(dx, x, rows * H * 2, cudaMemcpyHostToDevice);
    cudaMemcpy(dcnt, counts, E * 4, cudaMemcpyHostToDevice);

    /* the reference, rows in parallel (OpenMP where the build has it): ~30M MACs a row */
#pragma omp parallel for schedule(dynamic)
    for (int rr = 0; rr < E * cap; rr++) {
        const int s = rr / cap, t = rr % cap, n = counts[s] < cap ? counts[s] : cap;
        double *rf = ref + (size_t)rr * H;
        for (int c = 0; c < H; c++) rf[c] = NAN;
        if (t >= n) continue;
        float *xf = malloc(H * 4), *hf = malloc(I * 4);
        double *xd = malloc(H * 8), *hd = malloc(I * 8);
        const bf16_t *xr = x + (size_t)rr * H;
        for (int c = 0; c < H; c++) xf[c] = bf16_to_f32(xr[c]);
        ref_quant(xf, H, xd);
        const uint8_t *a = w13 + (size_t)s * 2 * I * H;
        const float *as = w13s + (size_t)s * (2 * I / 128) * (H / 128);
        for (int j = 0; j < I; j++) {
            float g = bf16_round((float)ref_dot(a, as, H, j, xd, lut));
            float u = bf16_round((float)ref_dot(a, as, H, I + j, xd, lut));
            float si = bf16_round(g / (1.f + expf(-g)));
            hf[j] = bf16_round(si * u);
        }
        ref_quant(hf, I, hd);
        const uint8_t *b = w2 + (size_t)s * H * I;
        const float *bs = w2s + (size_t)s * (H / 128) * (I / 128);
        for (int c = t % 5; c < H; c += 5) rf[c] = ref_dot(b, bs, I, c, hd, lut); /* every 5th: the cost */
        free(xf), free(hf), free(xd), free(hd);
    }

    /* the automatic tile, then every forced one: all must match the one reference */
    static const int tiles[][3] = {{0, 0, 0}, {8, 1, 0}, {16, 1, 0}, {32, 1, 0}, {64, 1, 0}, {16, 2, 0},
                                   {32, 2, 0}, {64, 2, 0}, {64, 2, 1}, {128, 2, 1}, {64, 2, 2}, {128, 2, 2},
                                   {128, 2, 3}};
    int all_ok = 1;
    kern_ctx_t cx = {0};
    for (unsigned v = 0; v < sizeof tiles / sizeof tiles[0]; v++) {
        if ((tiles[v][2] ? tiles[v][0] : tiles[v][0] * tiles[v][1]) > (int)rows) continue; /* TMA box > matrix */
        for (size_t i = 0; i < rows * H; i++) out[i] = POISON;
        cudaMemcpy(dout, out, rows * H * 2, cudaMemcpyHostToDevice);
        if (kern_cuda_moe_fp8_tile(tiles[v][0], tiles[v][1], tiles[v][2]) != 0) return 1;
        if (kern_cuda_moe_fp8(&cx, dx, dcnt, E, cap, dw, dout, dws, wsb) != MS_OK) return 1;
        if ((e = cudaDeviceSynchronize()) || (e = cudaMemcpy(out, dout, rows * H * 2, cudaMemcpyDeviceToHost)))
            return fail("kern_cuda_moe_fp8", e);
        double se = 0, sr = 0, maxerr = 0, maxref = 0;
        long bad_pad = 0, unwritten = 0, nan_out = 0, checked = 0;
        for (size_t rr = 0; rr < rows; rr++) {
            const int s = (int)(rr / cap), t = (int)(rr % cap), n = counts[s] < cap ? counts[s] : cap;
            for (int c = 0; c < H; c++) {
                const bf16_t o = out[rr * H + c];
                if (t >= n) {
                    bad_pad += o != POISON;
                    continue;
                }
                if (o == POISON) {
                    unwritten++;
                    continue;
                }
                if ((o & 0x7fff) > 0x7f80) {
                    nan_out++;
                    continue;
                }
                const double r = ref[rr * H + c], gv = bf16_to_f32(o);
                if (r != r) continue;
                se += (gv - r) * (gv - r), sr += r * r;
                maxerr = fmax(maxerr, fabs(gv - r)), maxref = fmax(maxref, fabs(r));
                checked++;
            }
        }
        const double rel = sqrt(se / (sr > 0 ? sr : 1));
        const int ok = checked > 0 && rel <= 8e-3 && maxerr <= 3e-2 * maxref && !bad_pad && !unwritten && !nan_out;
        char tname[16] = "auto";
        if (tiles[v][0])
            snprintf(tname, sizeof tname, "%dx%d%s", tiles[v][0], tiles[v][1],
                     kern_cuda_moe_fp8_tile_suffix(tiles[v][2]));
        printf("%s cap=%d counts={%d,%d,%d,%d} tile %-5s: rel_l2=%.3e max_err=%.3e (max|ref| %.3f) checked=%ld "
               "pad_touched=%ld unwritten=%ld nan=%ld\n", ok ? "ok  " : "FAIL", cap, counts[0], counts[1], counts[2],
               counts[3], tname, rel, maxerr, maxref, checked, bad_pad, unwritten, nan_out);
        all_ok &= ok;
    }
    kern_cuda_moe_fp8_tile(0, 0, 0);
    cudaFree(dx), cudaFree(dout), cudaFree(dws), cudaFree(dcnt);
    free(x), free(out), free(ref);
    return all_ok ? 0 : 1;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* lines reach a pipe before any timeout */
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        printf("SKIP: no CUDA device\n");
        return 77;
    }
    struct cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    if (prop.major != 9) {
        printf("SKIP: %s is not Hopper (sm_90a kernel)\n", prop.name);
        return 77;
    }
    float lut[256];
    for (int i = 0; i < 256; i++) lut[i] = fp8e4m3_to_f32((fp8e4m3_t)i);
    const size_t n13 = (size_t)E * 2 * I * H, n2 = (size_t)E * H * I;
    const size_t ns13 = (size_t)E * (2 * I / 128) * (H / 128), ns2 = (size_t)E * (H / 128) * (I / 128);
    uint8_t *w13 = malloc(n13), *w2 = malloc(n2);
    float *w13s = malloc(ns13 * 4), *w2s = malloc(ns2 * 4);
    /* random e4m3 codes (every finite value; f32_to_fp8e4m3 is too slow for 264M draws) */
    for (size_t i = 0; i < n13; i++) w13[i] = fp8_code();
    for (size_t i = 0; i < n2; i++) w2[i] = fp8_code();
    for (size_t i = 0; i < ns13; i++) w13s[i] = (float)((0.5 + urand()) * 1e-4);
    for (size_t i = 0; i < ns2; i++) w2s[i] = (float)((0.5 + urand()) * 2e-4);
    void *d13, *d2, *d13s, *d2s;
    cudaError_t e;
    if ((e = cudaMalloc(&d13, n13)) || (e = cudaMalloc(&d2, n2)) || (e = cudaMalloc(&d13s, ns13 * 4)) ||
        (e = cudaMalloc(&d2s, ns2 * 4)))
        return fail("cudaMalloc", e);
    cudaMemcpy(d13, w13, n13, cudaMemcpyHostToDevice);
    cudaMemcpy(d2, w2, n2, cudaMemcpyHostToDevice);
    cudaMemcpy(d13s, w13s, ns13 * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(d2s, w2s, ns2 * 4, cudaMemcpyHostToDevice);
    moe_fp8_weights_t dw = {d13, d13s, d2, d2s, E, H, I};

    int rc = 0;
    const int c8[E] = {5, 0, 13, 1}, c32[E] = {17, 32, 3, 0}, c136[E] = {130, 9, 0, 12};
    rc |= run_case(8, c8, w13, w13s, w2, w2s, &dw, lut);
    rc |= run_case(32, c32, w13, w13s, w2, w2s, &dw, lut);
    rc |= run_case(136, c136, w13, w13s, w2, w2s, &dw, lut);
    /* a bad shape is an error, not a launch */
    kern_ctx_t cx = {0};
    if (kern_cuda_moe_fp8_tile(48, 1, 0) != -1) {
        printf("FAIL: tile 48x1 accepted\n");
        rc = 1;
    }
    if (kern_cuda_moe_fp8(&cx, NULL, NULL, E, 30, &dw, NULL, NULL, 0) != MS_ERR_INVALID) {
        printf("FAIL: cap 30 (not a multiple of 4) accepted\n");
        rc = 1;
    }
    cudaFree(d13), cudaFree(d2), cudaFree(d13s), cudaFree(d2s);
    free(w13), free(w2), free(w13s), free(w2s);
    printf(rc ? "FAIL\n" : "PASS\n");
    return rc;
}
