/* bench_moe.cu — moeserve-bench-moe: one EP8 rank's routed-expert compute
 * (kern_cuda_moe_fp8: 32 local experts, FP8 128x128 block scales, hidden 7168,
 * moe_inter 2048) at given rows per expert, against two ceilings measured in
 * the same run: the HBM copy bandwidth (device-to-device copy, bytes read +
 * written) and the FP8 GEMM rate (cuBLASLt e4m3 8192^3, bf16 out). Prints time,
 * % of each limit, and writes rows<TAB>ms lines to --out for the PyTorch peer
 * (tools/bench_moe_torch.py) to compute its ratios. Standalone: needs only the
 * CUDA runtime and cuBLASLt, so it runs on a bare GPU host.
 * --tiles also times forced GEMM tiles (kern_cuda_moe_fp8_tile: BNxNWG, "r" =
 * row split) after the automatic choice, which is what --out records.
 *   moeserve-bench-moe [--rows 4,32,128] [--reps 30] [--out FILE] [--tiles 16x2,64x2r] */
#include <string.h>

#include "kernels/cuda/moe_gemm.h"
#include "tools/bench_cuda.cuh"

#define E 32
#define H 7168
#define I 2048

int main(int argc, char **argv)
{
    std::vector<int> rows_list = {4, 32, 128};
    int reps = 30;
    const char *out_path = NULL;
    std::vector<std::vector<int>> tiles = {{0, 0, 0}};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rows") && i + 1 < argc) {
            rows_list.clear();
            for (char *t = strtok(argv[++i], ","); t; t = strtok(NULL, ",")) rows_list.push_back(atoi(t));
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--tiles") && i + 1 < argc) {
            if (parse_tiles(argv[++i], tiles)) return 2;
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            out_path = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [--rows 4,32,128] [--reps N] [--out FILE] [--tiles BNxNWG[r],...]\n", argv[0]);
            return 2;
        }
    }
    for (int r : rows_list)
        if (r <= 0 || r % 4) {
            fprintf(stderr, "bench_moe: --rows values must be positive multiples of 4 (got %d)\n", r);
            return 2;
        }
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    kern_ctx_t cx = {};
    cx.stream = st;

    /* ceiling 1: HBM copy bandwidth, 2 GiB device-to-device, read + written */
    const double bw = hbm_copy_bw(st, reps); /* bytes/s */
    /* ceiling 2: FP8 tensor rate */
    const double peak = fp8_gemm_peak(st, reps); /* TFLOP/s */
    printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
    printf("ceiling: HBM copy %.0f GB/s (2 GiB D2D, read+write); FP8 GEMM %.0f TFLOP/s (cuBLASLt e4m3 8192^3)\n",
           bw / 1e9, peak);

    /* one rank's experts: 32 x (fused gate|up [4096,7168] + down [7168,2048]) */
    const size_t n13 = (size_t)E * 2 * I * H, n2 = (size_t)E * H * I;
    const size_t ns13 = (size_t)E * (2 * I / 128) * (H / 128), ns2 = (size_t)E * (H / 128) * (I / 128);
    uint8_t *w13, *w2;
    float *s13, *s2;
    CK(cudaMalloc(&w13, n13));
    CK(cudaMalloc(&w2, n2));
    CK(cudaMalloc(&s13, ns13 * 4));
    CK(cudaMalloc(&s2, ns2 * 4));
    fill_fp8<<<2048, 256, 0, st>>>(w13, n13, 1, 300.f);
    fill_fp8<<<2048, 256, 0, st>>>(w2, n2, 2, 300.f);
    fill_f32<<<256, 256, 0, st>>>(s13, ns13, 3, 1e-4f, 3e-4f);
    fill_f32<<<256, 256, 0, st>>>(s2, ns2, 4, 2e-4f, 6e-4f);
    moe_fp8_weights_t w = {w13, s13, w2, s2, E, H, I, 0, 0};
    const double wbytes = (double)(n13 + n2) + (ns13 + ns2) * 4.0;

    FILE *fo = out_path ? fopen(out_path, "w") : NULL;
    printf("\n%5s %5s %9s %9s %8s %8s %8s %8s | %8s %8s %8s %8s | %8s %7s\n", "rows", "tile", "layer_ms", "graph_ms", "wGB/s",
           "%copyBW", "TFLOP/s", "%fp8pk", "quant1", "gateup", "quant2", "down", "roof_ms", "x_roof");
    for (int rows : rows_list) {
        const int cap = rows;
        const size_t nx = (size_t)E * cap * H;
        uint16_t *x, *out;
        int32_t *cnt;
        CK(cudaMalloc(&x, nx * 2));
        CK(cudaMalloc(&out, nx * 2));
        CK(cudaMalloc(&cnt, E * 4));
        fill_bf16<<<1024, 256, 0, st>>>(x, nx, 5 + rows, 2.f);
        std::vector<int32_t> hc(E, rows);
        w.rows_hint = rows; /* what the forward would expect of full slots (kern_moe_slots_t.rows_hint) */
        CK(cudaMemcpyAsync(cnt, hc.data(), E * 4, cudaMemcpyHostToDevice, st));
        const size_t wsb = kern_cuda_moe_fp8_ws_bytes(E, cap, H, I);
        uint8_t *ws;
        CK(cudaMalloc(&ws, wsb));
        /* the same carve-up as kern_cuda_moe_fp8, for timing each stage */
        const size_t nr = (size_t)E * cap;
        auto al = [](size_t n) { return (n + 255) & ~(size_t)255; };
        uint8_t *xq = ws;
        float *xs = (float *)(xq + al(nr * H));
        uint16_t *h = (uint16_t *)((uint8_t *)xs + al(nr * (H / 128) * 4));
        uint8_t *hq = (uint8_t *)h + al(nr * I * 2);
        float *hs = (float *)(hq + al(nr * I));

        for (const std::vector<int> &tl : tiles) {
            kern_cuda_moe_fp8_tile(tl[0], tl[1], tl[2]);
            char tname[16] = "auto";
            if (tl[0]) snprintf(tname, sizeof tname, "%dx%d%s", tl[0], tl[1], kern_cuda_moe_fp8_tile_suffix(tl[2]));
            double t_layer = time_ms(st, reps, [&] { CKS(kern_cuda_moe_fp8(&cx, x, cnt, E, cap, &w, out, ws, wsb)); });
            double t_q1 = time_ms(st, reps, [&] { CKS(kern_cuda_act_quant(&cx, x, cnt, E, cap, H, xq, xs)); });
            double t_g1 = time_ms(st, reps, [&] { CKS(kern_cuda_moe_fp8_gateup(&cx, xq, xs, cnt, E, cap, &w, h)); });
            double t_q2 = time_ms(st, reps, [&] { CKS(kern_cuda_act_quant(&cx, h, cnt, E, cap, I, hq, hs)); });
            double t_g2 = time_ms(st, reps, [&] { CKS(kern_cuda_moe_fp8_down(&cx, hq, hs, cnt, E, cap, &w, out)); });
            /* the same layer captured as a graph (how decode will run it) */
            cudaGraph_t gr;
            cudaGraphExec_t ge;
            CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
            CKS(kern_cuda_moe_fp8(&cx, x, cnt, E, cap, &w, out, ws, wsb));
            CK(cudaStreamEndCapture(st, &gr));
            CK(cudaGraphInstantiate(&ge, gr, 0));
            double t_graph = time_ms(st, reps, [&] { CK(cudaGraphLaunch(ge, st)); });
            cudaGraphExecDestroy(ge), cudaGraphDestroy(gr);

            const double t = t_graph < t_layer ? t_graph : t_layer;
            const double flops = 2.0 * E * rows * (2.0 * I * H + (double)H * I);
            const double roof = std::max(wbytes / bw, flops / (peak * 1e12)) * 1e3;
            printf("%5d %5s %9.4f %9.4f %8.0f %7.1f%% %8.1f %7.1f%% | %8.4f %8.4f %8.4f %8.4f | %8.4f %6.2fx\n", rows, tname, t_layer,
                   t_graph, wbytes / (t * 1e-3) / 1e9, 100.0 * wbytes / (t * 1e-3) / bw, flops / (t * 1e-3) / 1e12,
                   100.0 * flops / (t * 1e-3) / (peak * 1e12), t_q1, t_g1, t_q2, t_g2, roof, t / roof);
            if (fo && !tl[0]) fprintf(fo, "%d\t%.5f\n", rows, t);
        }
        kern_cuda_moe_fp8_tile(0, 0, 0);
        cudaFree(x), cudaFree(out), cudaFree(cnt), cudaFree(ws);
    }
    printf("weights %.3f GB (fp8 + fp32 scales); roof = max(weights/copyBW, FLOPs/FP8 peak); x_roof = best/roof\n",
           wbytes / 1e9);
    if (fo) fclose(fo);
    return 0;
}
