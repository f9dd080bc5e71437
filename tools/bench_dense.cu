/* bench_dense.cu — moeserve-bench-dense: the dense FP8 GEMMs of a DeepSeek-R1
 * layer (FP8 e4m3 weights with 128x128 scales) through the gemm op, in both of
 * its FP8 modes, at decode and prefill row counts:
 *  - dequant: bf16 x, W = bf16(fp8 * scale) (transformers' numerics, what the
 *    engine runs; gemm_fp8w.cu at m <= 128, the cuBLASLt tile path above);
 *  - fp8: x act_quant'ed 1x128 (timed apart), FP8xFP8 on the grouped kernel.
 * Ceilings measured in the same run (tools/bench_cuda.cuh): HBM copy bandwidth
 * and the cuBLASLt FP8 GEMM rate. Every timed call starts with a cold L2 (a
 * 256 MiB write in between), as at decode, where the other layers' weights
 * have evicted this one's. --out writes name<TAB>m<TAB>mode<TAB>ms lines for
 * the PyTorch peer (tools/bench_dense_torch.py). --tiles times forced tiles
 * of the grouped kernel (kern_cuda_moe_fp8_tile) in the fp8 mode.
 *   moeserve-bench-dense [--m 1,32,128,4096] [--reps 20] [--out FILE] [--tiles 64x2,128x2r] [--only NAME]
 *                        [--fp8-only]
 * The fp8 mode runs the grouped kernel; MS_GEMM_FP8X=1 times gemm_fp8x.cu's stream-K kernel at every m <= 128,
 * =auto where it measured faster (m <= 64 with K >= 4096); MS_GEMM_FP8X_MC=1 (4) on top, its 2- (4-)CTA cluster
 * variant that multicasts the x block; a forced tile always runs the grouped kernel. */
#include <string.h>

#include "kernels/cuda/cuda.h"
#include "kernels/cuda/moe_gemm.h"
#include "tools/bench_cuda.cuh"

struct bd_shape {
    const char *name;
    int n, k, silu; /* n = outputs (the fused gate|up W has 2n rows) */
};
static const bd_shape g_shapes[] = {
    {"q_a|kv_a", 2112, 7168, 0},      {"q_b", 24576, 1536, 0},          {"o_proj", 7168, 16384, 0},
    {"shared_gate|up", 2048, 7168, 1}, {"shared_down", 7168, 2048, 0}, {"dense_gate|up", 18432, 7168, 1},
    {"dense_down", 7168, 18432, 0},
};

int main(int argc, char **argv)
{
    std::vector<int> ms_list = {1, 32, 128, 4096};
    int reps = 20;
    const char *out_path = NULL, *only = NULL;
    int fp8_only = 0; /* --fp8-only: skip the dequant mode (the fp8 mode's own before/after runs) */
    std::vector<std::vector<int>> tiles = {{0, 0, 0}};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--m") && i + 1 < argc) {
            ms_list.clear();
            for (char *t = strtok(argv[++i], ","); t; t = strtok(NULL, ",")) ms_list.push_back(atoi(t));
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            only = argv[++i];
        } else if (!strcmp(argv[i], "--tiles") && i + 1 < argc) {
            if (parse_tiles(argv[++i], tiles)) return 2;
        } else if (!strcmp(argv[i], "--fp8-only")) {
            fp8_only = 1;
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            out_path = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [--m 1,32,128,4096] [--reps N] [--out FILE] [--tiles BNxNWG[r],...] "
                            "[--only NAME] [--fp8-only]\n", argv[0]);
            return 2;
        }
    }
    int mmax = 0;
    for (int m : ms_list) {
        if (m <= 0) {
            fprintf(stderr, "bench_dense: --m values must be positive (got %d)\n", m);
            return 2;
        }
        mmax = m > mmax ? m : mmax;
    }
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    kern_ctx_t *cx = NULL;
    if (kern_cuda_ops.ctx_create(0, (size_t)256 << 20, &cx) != MS_OK) return 1;
    cudaStream_t st = (cudaStream_t)cx->stream;
    const double bw = hbm_copy_bw(st, reps);
    const double peak = fp8_gemm_peak(st, reps);
    printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
    printf("ceiling: HBM copy %.0f GB/s (2 GiB D2D, read+write); FP8 GEMM %.0f TFLOP/s (cuBLASLt e4m3 8192^3)\n",
           bw / 1e9, peak);
    const size_t fb = (size_t)256 << 20;
    void *flushbuf;
    CK(cudaMalloc(&flushbuf, fb));
    auto flush = [&] { CK(cudaMemsetAsync(flushbuf, 0, fb, st)); };

    FILE *fo = out_path ? fopen(out_path, "w") : NULL;
    printf("\n%-15s %5s %6s %7s %9s %8s %8s %8s %8s %9s\n", "gemm", "m", "mode", "tile", "ms", "wGB/s", "%copyBW",
           "TFLOP/s", "%fp8pk", "quant_ms");
    for (const bd_shape &s : g_shapes) {
        if (only && strcmp(only, s.name)) continue;
        const int rows = s.silu ? 2 * s.n : s.n, K = s.k, kb = K / 128;
        const size_t nw = (size_t)rows * K, nsc = (size_t)((rows + 127) / 128) * kb;
        uint8_t *w, *xq;
        float *sc, *xs;
        uint16_t *x, *y;
        CK(cudaMalloc(&w, nw));
        CK(cudaMalloc(&sc, nsc * 4));
        CK(cudaMalloc(&x, (size_t)mmax * K * 2));
        CK(cudaMalloc(&xq, (size_t)mmax * K));
        CK(cudaMalloc(&xs, (size_t)mmax * kb * 4));
        CK(cudaMalloc(&y, (size_t)mmax * rows * 2));
        fill_fp8<<<2048, 256, 0, st>>>(w, nw, 1, 300.f);
        fill_f32<<<256, 256, 0, st>>>(sc, nsc, 3, 1e-4f, 3e-4f);
        fill_bf16<<<1024, 256, 0, st>>>(x, (size_t)mmax * K, 5, 2.f);
        const kern_mat_t wm = {w, sc, MS_DT_F8E4M3, rows, K};
        const double wbytes = (double)nw + nsc * 4.0;
        for (int m : ms_list) {
            const double flops = 2.0 * m * (double)rows * K;
            auto row = [&](const char *mode, const char *tile, double t, double tq) {
                printf("%-15s %5d %6s %7s %9.4f %8.0f %7.1f%% %8.1f %7.1f%% %9.4f\n", s.name, m, mode, tile, t,
                       wbytes / (t * 1e-3) / 1e9, 100.0 * wbytes / (t * 1e-3) / bw, flops / (t * 1e-3) / 1e12,
                       100.0 * flops / (t * 1e-3) / (peak * 1e12), tq);
            };
            kern_gemm_t g = {};
            g.x = x, g.w = &wm, g.y = y, g.xdt = MS_DT_BF16, g.ydt = MS_DT_BF16, g.m = m, g.batch = 1, g.ldx = K;
            g.ldy = s.n, g.epi = s.silu ? KERN_EPI_SILU_MUL : KERN_EPI_NONE;
            if (!fp8_only) {
                const double t_dq = time_ms_after(st, reps, flush, [&] { CKS(kern_cuda_ops.gemm(cx, &g)); });
                row("dequant", "auto", t_dq, 0);
                if (fo) fprintf(fo, "%s\t%d\tdequant\t%.5f\n", s.name, m, t_dq);
            }
            const double t_q = time_ms_after(st, reps, flush, [&] {
                CKS(kern_cuda_ops.act_quant(cx, (const bf16_t *)x, K, m, K, xq, K, xs, kb));
            });
            kern_gemm_t gf = g;
            gf.x = xq, gf.x_scale = xs, gf.xdt = MS_DT_F8E4M3, gf.ld_xs = kb;
            for (const std::vector<int> &tl : tiles) {
                kern_cuda_moe_fp8_tile(tl[0], tl[1], tl[2]);
                char tname[16] = "auto";
                if (tl[0])
                    snprintf(tname, sizeof tname, "%dx%d%s", tl[0], tl[1], kern_cuda_moe_fp8_tile_suffix(tl[2]));
                const double t_f8 = time_ms_after(st, reps, flush, [&] { CKS(kern_cuda_ops.gemm(cx, &gf)); });
                row("fp8", tname, t_f8, t_q);
                if (fo && !tl[0]) fprintf(fo, "%s\t%d\tfp8\t%.5f\n", s.name, m, t_f8);
            }
            kern_cuda_moe_fp8_tile(0, 0, 0);
        }
        cudaFree(w), cudaFree(sc), cudaFree(x), cudaFree(xq), cudaFree(xs), cudaFree(y);
    }
    printf("wGB/s, %%copyBW: weight bytes (fp8 + fp32 scales) / time against the copy bandwidth (the weight-read "
           "roofline); TFLOP/s, %%fp8pk: 2*m*rows*k / time against the FP8 GEMM rate; fp8 mode ms exclude "
           "act_quant (quant_ms); every call from a cold L2\n");
    if (fo) fclose(fo);
    kern_cuda_ops.ctx_destroy(cx);
    return 0;
}
