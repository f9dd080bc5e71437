/* bench_cuda.cuh — what the CUDA kernel benches share (moeserve-bench-moe,
 * moeserve-bench-dense): error checks, seeded fills of fp8/fp32/bf16 device
 * buffers, the median-of-reps event timer, and the two ceilings measured in
 * the same run (HBM copy bandwidth, cuBLASLt FP8 GEMM rate), the grouped
 * kernel's --tiles option. Header-only:
 * each bench is one translation unit. */
#ifndef MS_TOOLS_BENCH_CUDA_CUH
#define MS_TOOLS_BENCH_CUDA_CUH

#include <cublasLt.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <algorithm>
#include <vector>

#include "kernels/cuda/moe_gemm.h"

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

/* median time in ms of `reps` timed runs of fn after 3 warm-ups; `before` runs ahead of each timed run,
 * untimed (a cache flush) */
template <typename F, typename G> static double time_ms_after(cudaStream_t st, int reps, G before, F fn)
{
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    for (int i = 0; i < 3; i++) fn();
    std::vector<float> v;
    for (int i = 0; i < reps; i++) {
        before();
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
template <typename F> static double time_ms(cudaStream_t st, int reps, F fn)
{
    return time_ms_after(st, reps, [] {}, fn);
}

/* --tiles BNxNWG[r],... of the grouped FP8 kernel (kern_cuda_moe_fp8_tile) appended to tiles as {bn, nwg, rs};
 * -1 (after a message) for an entry the kernel does not instantiate. Leaves the automatic choice in force. */
static int parse_tiles(char *arg, std::vector<std::vector<int>> &tiles)
{
    for (char *t = strtok(arg, ","); t; t = strtok(NULL, ",")) {
        int bn = 0, nwg = 0;
        char r = 0;
        const int n = sscanf(t, "%dx%d%c", &bn, &nwg, &r);
        const int mode = r == 't' ? 3 : r == 'w' ? 2 : r == 'r'; /* kern_cuda_moe_fp8_tile_suffix's letters */
        if (n < 2 || kern_cuda_moe_fp8_tile(bn, nwg, mode)) {
            fprintf(stderr, "bad --tiles entry '%s'\n", t);
            return -1;
        }
        tiles.push_back({bn, nwg, mode});
    }
    kern_cuda_moe_fp8_tile(0, 0, 0);
    return 0;
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

/* HBM copy bandwidth in bytes/s: a 2 GiB device-to-device copy, bytes read + written */
static double hbm_copy_bw(cudaStream_t st, int reps)
{
    const size_t cb = (size_t)2 << 30;
    void *c0, *c1;
    CK(cudaMalloc(&c0, cb));
    CK(cudaMalloc(&c1, cb));
    CK(cudaMemsetAsync(c0, 1, cb, st));
    double cms = time_ms(st, reps, [&] { CK(cudaMemcpyAsync(c1, c0, cb, cudaMemcpyDeviceToDevice, st)); });
    cudaFree(c0), cudaFree(c1);
    return 2.0 * cb / (cms * 1e-3);
}

#endif
