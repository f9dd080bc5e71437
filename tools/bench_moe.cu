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
#include <cublasLt.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <algorithm>
#include <vector>

#include "kernels/cuda/moe_gemm.h"

#define E 32
#define H 7168
#define I 2048

#define CK(call)                                                                                     \
    do {                                                                                             \
        cudaError_t e_ = (call);                                                                     \
        if (e_ != cudaSuccess) {                                                                     \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));    \
            exit(1);                                                                                 \
        }                                                                                            \
    } while (0)
#define CKL(call)                                                                                    \
    do {                                                                                             \
        cublasStatus_t s_ = (call);                                                                  \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                           \
            fprintf(stderr, "%s:%d %s: cublas status %d\n", __FILE__, __LINE__, #call, (int)s_);     \
            exit(1);                                                                                 \
        }                                                                                            \
    } while (0)
#define CKS(call)                                                                                    \
    do {                                                                                             \
        if ((call) != MS_OK) exit(1);                                                                \
    } while (0)

__device__ static uint32_t hash32(uint64_t i, uint32_t seed)
{
    uint64_t x = i * 0x9e3779b97f4a7c15ull + seed;
    x ^= x >> 31, x *= 0xbf58476d1ce4e5b9ull, x ^= x >> 27, x *= 0x94d049bb133111ebull, x ^= x >> 33;
    return (uint32_t)x;
}
__device__ static float tri(uint64_t i, uint32_t seed) /* triangular on (-1, 1) */
{
    uint32_t h = hash32(i, seed);
    return ((h & 0xffff) + (h >> 16)) / 65536.f - 1.f;
}
__global__ static void fill_fp8(uint8_t *p, size_t n, uint32_t seed, float amp)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = __nv_cvt_float_to_fp8(amp * tri(i, seed), __NV_SATFINITE, __NV_E4M3);
}
__global__ static void fill_f32(float *p, size_t n, uint32_t seed, float lo, float hi)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = lo + (hi - lo) * (0.5f + 0.5f * tri(i, seed));
}
__global__ static void fill_bf16(uint16_t *p, size_t n, uint32_t seed, float amp)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float f = amp * tri(i, seed);
        p[i] = (uint16_t)(__float_as_uint(f) >> 16);
    }
}

/* median time in ms of `reps` timed runs of fn after 3 warm-ups */
template <typename F> static double time_ms(cudaStream_t st, int reps, F fn)
{
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    for (int i = 0; i < 3; i++) fn();
    std::vector<float> v;
    for (int i = 0; i < reps; i++) {
        CK(cudaEventRecord(a, st));
        fn();
        CK(cudaEventRecord(b, st));
        CK(cudaEventSynchronize(b));
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        v.push_back(ms);
    }
    CK(cudaGetLastError());
    std::sort(v.begin(), v.end());
    cudaEventDestroy(a), cudaEventDestroy(b);
    return v[v.size() / 2];
}

static double fp8_gemm_peak(cudaStream_t st, int reps)
{
    const int n = 8192;
    uint8_t *A, *B;
    uint16_t *D;
    void *wsp;
    const size_t wsb = 64 << 20;
    CK(cudaMalloc(&A, (size_t)n * n));
    CK(cudaMalloc(&B, (size_t)n * n));
    CK(cudaMalloc(&D, (size_t)n * n * 2));
    CK(cudaMalloc(&wsp, wsb));
    fill_fp8<<<1024, 256, 0, st>>>(A, (size_t)n * n, 11, 200.f);
    fill_fp8<<<1024, 256, 0, st>>>(B, (size_t)n * n, 12, 200.f);
    cublasLtHandle_t lt;
    CKL(cublasLtCreate(&lt));
    cublasLtMatmulDesc_t op;
    CKL(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CKL(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CKL(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    cublasLtMatrixLayout_t la, lb, ld;
    CKL(cublasLtMatrixLayoutCreate(&la, CUDA_R_8F_E4M3, n, n, n));
    CKL(cublasLtMatrixLayoutCreate(&lb, CUDA_R_8F_E4M3, n, n, n));
    CKL(cublasLtMatrixLayoutCreate(&ld, CUDA_R_16BF, n, n, n));
    cublasLtMatmulPreference_t pref;
    CKL(cublasLtMatmulPreferenceCreate(&pref));
    CKL(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb));
    cublasLtMatmulHeuristicResult_t hr;
    int nres = 0;
    CKL(cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, ld, ld, pref, 1, &hr, &nres));
    if (!nres) {
        fprintf(stderr, "no cuBLASLt FP8 algorithm\n");
        exit(1);
    }
    const float alpha = 1.f, beta = 0.f;
    double ms = time_ms(st, reps, [&] {
        CKL(cublasLtMatmul(lt, op, &alpha, A, la, B, lb, &beta, D, ld, D, ld, &hr.algo, wsp, wsb, st));
    });
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la), cublasLtMatrixLayoutDestroy(lb), cublasLtMatrixLayoutDestroy(ld);
    cublasLtMatmulDescDestroy(op);
    cublasLtDestroy(lt);
    cudaFree(A), cudaFree(B), cudaFree(D), cudaFree(wsp);
    return 2.0 * n * n * (double)n / (ms * 1e-3) / 1e12;
}

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
            for (char *t = strtok(argv[++i], ","); t; t = strtok(NULL, ",")) {
                int bn = 0, nwg = 0;
                char r = 0;
                if (sscanf(t, "%dx%d%c", &bn, &nwg, &r) < 2 || kern_cuda_moe_fp8_tile(bn, nwg, r == 'r')) {
                    fprintf(stderr, "bench_moe: bad --tiles entry '%s'\n", t);
                    return 2;
                }
                tiles.push_back({bn, nwg, r == 'r'});
            }
            kern_cuda_moe_fp8_tile(0, 0, 0);
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
    const size_t cb = (size_t)2 << 30;
    void *c0, *c1;
    CK(cudaMalloc(&c0, cb));
    CK(cudaMalloc(&c1, cb));
    CK(cudaMemsetAsync(c0, 1, cb, st));
    double cms = time_ms(st, reps, [&] { CK(cudaMemcpyAsync(c1, c0, cb, cudaMemcpyDeviceToDevice, st)); });
    const double bw = 2.0 * cb / (cms * 1e-3); /* bytes/s */
    cudaFree(c0), cudaFree(c1);
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
    moe_fp8_weights_t w = {w13, s13, w2, s2, E, H, I};
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
            if (tl[0]) snprintf(tname, sizeof tname, "%dx%d%s", tl[0], tl[1], tl[2] ? "r" : "");
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
