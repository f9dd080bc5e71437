/* bench_ops.c — moeserve-bench-ops: every op of the ops table at DeepSeek-R1
 * decode shapes, timed on the CUDA backend's stream with CUDA events, beside
 * the ceilings measured in the same run (HBM copy bandwidth: a device copy,
 * bytes read + written; BF16 GEMM rate: the gemm op at 8192^3; FP8 GEMM
 * rate: cuBLASLt e4m3 8192^3 with fp32 scales). Each op's "% of ceiling" is
 * its roofline time, max(bytes / copy BW, flops / GEMM rate of its dtype),
 * over its measured time. Then (--model DIR) one decode step of a model
 * (load_format dummy: a config-only directory is enough) broken down by op:
 * the engine runs on a copy of the CUDA ops table whose entries record an
 * event after each call, so each op is charged the GPU time since the
 * previous one.
 *
 *   moeserve-bench-ops [--batch 1,32,128] [--rows 4,32,128] [--ctx 1024] [--reps 20]
 *                      [--model DIR --step-batch 32 --step-ctx 1024 [--kv-dtype fp8] [--load dummy|auto]
 *                       [--moe-cap 512] [--step-tokens 1024] [--trace-faults 1] [--moe-compute dequant|fp8]
 *                       [--graphs 1] [--mtp N] [--moe-tile BNxNWG[r]]
 *                       [--dense-compute auto|dequant|fp8]] [--sample 1,128]
 *                      [--mla-batch 32,128 [--mla-ctx 1024,4096,16384]]
 * (--mla-batch: mla_latent alone at each batch x context, BF16 and FP8 KV — MS_BENCH_MLA_KV=bf16|fp8 one of them; with --batch '' --rows '' nothing
 * else but the ceilings.)
 * (the routed-experts table times both moe_experts modes; --moe-compute picks the step's, default dequant)
 * (--sample B,..: the sampler alone at those batches, DeepSeek's vocabulary, fp32 and bf16 logits, greedy and
 * temperature draws on peaked logits (a language model's: the merge resolves the draw) and on flat ones
 * (the whole-row fallback), beside the bf16 -> fp32 cast the engine no longer runs.)
 * (--batch "" --rows "" skip the op tables; --trace-faults 1 synchronizes after every op of the step run and
 * names the first op after which the device fault word is set: a debugging aid, not a timing.)
 * (--mtp N: the step's engine drafts N tokens (MTP; the model needs num_nextn_predict_layers, e.g. mkmodel
 * --mtp): every decode step verifies N drafts and drafts N more, and the breakdown splits each op's time
 * between the main pass and the draft passes, from the step's mtp_prep on.)
 * (--graphs 1: the same decode step also on an engine that replays it as a CUDA graph of its batch
 * (worker/step_graph.h); both modes' engine_step wall time beside the step's GPU span. With the
 * environment variable MS_BENCH_PROFILE_STEP set, one more replayed step runs inside
 * cudaProfilerStart/Stop, so `ncu --profile-from-start off --graph-profiling node` times its kernels.)
 * Markdown tables on stdout (BENCHMARKS.md). This file: options, ceilings, helpers; the op tables in
 * bench_ops_shapes.c, the step in bench_ops_step.c (bench_ops.h between them). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/moe_gemm.h"
#include "kernels/kernels.h"
#include "ms_build_config.h"

#if !MS_HAVE_CUDA
int main(void)
{
    fprintf(stderr, "moeserve-bench-ops: this build has no CUDA backend (-Dcuda=enabled)\n");
    return 77;
}
#else
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "tools/bench_ops.h"

const kern_ops_t *K = &kern_cuda_ops;
kern_ctx_t *CX;
int REPS = 20;
double BW, PEAK_BF16, PEAK_FP8; /* bytes/s, flop/s */

void *dalloc(size_t n)
{
    void *p;
    CK(K->alloc(n, &p));
    return p;
}

/* Device memory with dummy values (bf16 ~U(-1,1), fp8 kern_dummy_fp8 bytes, f32 `f32val`). */
void *dfill(ms_dtype_t dt, int64_t n, float f32val)
{
    void *p = dalloc((size_t)n * ms_dtype_size(dt) + 256);
    CK(K->fill_dummy(CX, p, dt, 1, n, n, 0, (uint64_t)n * 7919u, dt == MS_DT_F32 ? 0 : 1, dt == MS_DT_F32 ? f32val : 0));
    return p;
}

int32_t *dints(const int32_t *h, int n)
{
    int32_t *d = dalloc(sizeof(int32_t) * (size_t)n);
    CK(K->upload(CX, d, h, sizeof(int32_t) * (size_t)n));
    CK(K->synchronize(CX));
    return d;
}

cudaEvent_t ev0, ev1;


/* One table row: op, shape, time, bytes, flops, roofline %. fp8: the GEMM's rate is the FP8 one. */
void row(const char *op, const char *shape, double ms, double bytes, double flops, int fp8)
{
    double t_bw = bytes / BW, t_fl = flops / (fp8 ? PEAK_FP8 : PEAK_BF16), t = t_bw > t_fl ? t_bw : t_fl;
    printf("| %s | %s | %.4f | %.1f | %.1f | %.0f%% (%s) |\n", op, shape, ms, bytes / (ms * 1e-3) / 1e9,
           flops / (ms * 1e-3) / 1e12, 100.0 * t / (ms * 1e-3), t_bw >= t_fl ? "HBM" : (fp8 ? "FP8" : "BF16"));
}

/* ---- ceilings ---- */
void ceilings(void)
{
    const size_t n = (size_t)2 << 30;
    void *a = dalloc(n), *b = dalloc(n);
    float ms;
    TIME_MS(ms, K->copy(CX, b, a, n));
    BW = 2.0 * (double)n / (ms * 1e-3);
    K->free(a), K->free(b);
    const int N = 8192;
    void *x = dfill(MS_DT_BF16, (int64_t)N * N, 0), *wd = dfill(MS_DT_BF16, (int64_t)N * N, 0);
    void *y = dalloc((size_t)N * N * 2);
    kern_mat_t w = {.data = wd, .dtype = MS_DT_BF16, .rows = N, .cols = N};
    kern_gemm_t g = {.x = x, .w = &w, .y = y, .xdt = MS_DT_BF16, .ydt = MS_DT_BF16, .m = N, .ldx = N, .ldy = N};
    TIME_MS(ms, K->gemm(CX, &g));
    PEAK_BF16 = 2.0 * N * (double)N * N / (ms * 1e-3);
    /* FP8: cuBLASLt e4m3 x e4m3 -> bf16, fp32 accumulate, per-tensor scales (its fastest mode) */
    void *a8 = dfill(MS_DT_F8E4M3, (int64_t)N * N, 0), *b8 = dfill(MS_DT_F8E4M3, (int64_t)N * N, 0);
    float *sc = dfill(MS_DT_F32, 4, 1.0f);
    cublasLtHandle_t lt = (cublasLtHandle_t)CX->blas;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasOperation_t tA = CUBLAS_OP_T, tB = CUBLAS_OP_N;
    cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &tA, sizeof tA);
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tB, sizeof tB);
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &sc, sizeof sc);
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sc, sizeof sc);
    cublasLtMatrixLayoutCreate(&la, CUDA_R_8F_E4M3, N, N, N);
    cublasLtMatrixLayoutCreate(&lb, CUDA_R_8F_E4M3, N, N, N);
    cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, N, N, N);
    cublasLtMatmulPreference_t pref;
    cublasLtMatmulPreferenceCreate(&pref);
    size_t wsb = CX->ws_bytes;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb);
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 1, &heur, &found);
    PEAK_FP8 = 2 * PEAK_BF16; /* if no FP8 algorithm: the nominal 2x */
    if (found) {
        const float one = 1, zero = 0;
        cudaStream_t s = (cudaStream_t)CX->stream;
        for (int i = 0; i < 3; i++)
            cublasLtMatmul(lt, op, &one, a8, la, b8, lb, &zero, y, lc, y, lc, &heur.algo, CX->ws, wsb, s);
        cudaEventRecord(ev0, s);
        for (int i = 0; i < REPS; i++)
            cublasLtMatmul(lt, op, &one, a8, la, b8, lb, &zero, y, lc, y, lc, &heur.algo, CX->ws, wsb, s);
        cudaEventRecord(ev1, s);
        cudaEventSynchronize(ev1);
        cudaEventElapsedTime(&ms, ev0, ev1);
        PEAK_FP8 = 2.0 * N * (double)N * N / (ms / REPS * 1e-3);
    }
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la), cublasLtMatrixLayoutDestroy(lb), cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(op);
    K->free(x), K->free(wd), K->free(y), K->free(a8), K->free(b8), K->free(sc);
    printf("Ceilings measured in this run: HBM copy %.2f TB/s (read + write), BF16 GEMM 8192^3 %.0f TFLOP/s (gemm op, "
           "cuBLASLt), FP8 GEMM 8192^3 %.0f TFLOP/s (cuBLASLt e4m3%s).\n\n",
           BW / 1e12, PEAK_BF16 / 1e12, PEAK_FP8 / 1e12, found ? "" : ": no algorithm, nominal 2x BF16");
}

static int parse_list(const char *s, int *out, int max)
{
    int n = 0;
    while (*s && n < max) {
        out[n++] = atoi(s);
        while (*s && *s != ',') s++;
        if (*s == ',') s++;
    }
    return n;
}

int main(int argc, char **argv)
{
    int batch[8] = {1, 32, 128}, nb = 3, rows[8] = {4, 32, 128}, nr = 3, ctx = 1024, sb = 32, sctx = 1024, kvf = 0;
    int dummy = 1, moe_cap = 512, step_tok = 1024, moe_fp8 = 0, graphs = 0;
    int mla_b[8], nmb = 0, mla_c[8] = {1024}, nmc = 1;
    const char *model = NULL;
    int sbatch[8], ns = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--batch")) nb = parse_list(v, batch, 8);
        else if (!strcmp(a, "--rows")) nr = parse_list(v, rows, 8);
        else if (!strcmp(a, "--sample")) ns = parse_list(v, sbatch, 8);
        else if (!strcmp(a, "--ctx")) ctx = atoi(v);
        else if (!strcmp(a, "--reps")) REPS = atoi(v);
        else if (!strcmp(a, "--mla-batch")) nmb = parse_list(v, mla_b, 8);
        else if (!strcmp(a, "--mla-ctx")) nmc = parse_list(v, mla_c, 8);
        else if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--step-batch")) sb = atoi(v);
        else if (!strcmp(a, "--step-ctx")) sctx = atoi(v);
        else if (!strcmp(a, "--kv-dtype")) kvf = !strcmp(v, "fp8");
        else if (!strcmp(a, "--load")) dummy = strcmp(v, "auto") != 0;
        else if (!strcmp(a, "--moe-cap")) moe_cap = atoi(v);
        else if (!strcmp(a, "--step-tokens")) step_tok = atoi(v);
        else if (!strcmp(a, "--trace-faults")) g_trace = atoi(v);
        else if (!strcmp(a, "--moe-compute")) moe_fp8 = !strcmp(v, "fp8");
        else if (!strcmp(a, "--dense-compute")) g_dense = !strcmp(v, "auto") ? -1 : !strcmp(v, "fp8");
        else if (!strcmp(a, "--graphs")) graphs = atoi(v);
        else if (!strcmp(a, "--mtp")) g_mtp = atoi(v);
        else if (!strcmp(a, "--moe-tile")) { /* BNxNWG[r]: force the grouped FP8 kernel's tile (kern_cuda_moe_fp8_tile) */
            int bn = 0, nwg = 0;
            char r = 0;
            if (sscanf(v, "%dx%d%c", &bn, &nwg, &r) < 2 || kern_cuda_moe_fp8_tile(bn, nwg, r == 'r')) {
                fprintf(stderr, "moeserve-bench-ops: --moe-tile %s is not a tile of the grouped FP8 kernel\n", v);
                return 2;
            }
        }
        else {
            fprintf(stderr, "moeserve-bench-ops: unknown option %s\n", a);
            return 2;
        }
    }
    if (K->device_count() < 1) {
        fprintf(stderr, "moeserve-bench-ops: no GPU visible\n");
        return 77;
    }
    CK(K->ctx_create(0, 0, &CX));
    CKC(cudaEventCreate(&ev0));
    CKC(cudaEventCreate(&ev1));
    struct cudaDeviceProp pr;
    cudaGetDeviceProperties(&pr, 0);
    printf("Device: %s, %d SMs. Times are means of %d launches after 3 warm-ups.\n\n", pr.name, pr.multiProcessorCount,
           REPS);
    if (nb > 0 || nr > 0 || nmb > 0) ceilings();
    for (int i = 0; i < nb; i++) bench_batch(batch[i], ctx);
    if (nmb > 0)
        printf("\n#### mla_latent alone\n\n| op | shape | ms | GB/s | TFLOP/s | %% of ceiling (bound) |\n|---|---|---|---|---|---|\n");
    for (int i = 0; i < nmb; i++)
        for (int j = 0; j < nmc; j++) bench_mla(mla_b[i], mla_c[j]);
    if (nr > 0) bench_experts(rows, nr);
    for (int i = 0; i < ns; i++) bench_sample(sbatch[i]);
    int rc = 0;
    if (model) {
        K->ctx_destroy(CX);
        CK(K->ctx_create(0, 0, &CX));
        rc = bench_step(model, sb, sctx, kvf, dummy, moe_cap, step_tok, moe_fp8, graphs);
    }
    K->ctx_destroy(CX);
    return rc;
}
#endif
