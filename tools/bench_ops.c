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
 * (--mla-batch: mla_latent alone at each batch x context, BF16 and FP8 KV; with --batch '' --rows '' nothing
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
 * Markdown tables on stdout (BENCHMARKS.md). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
#include <cuda_profiler_api.h>
#include <cuda_runtime_api.h>

#include "proto/proto.h"
#include "worker/comm.h"
#include "worker/engine.h"

extern const kern_ops_t kern_cuda_ops;
static const kern_ops_t *K = &kern_cuda_ops;
static kern_ctx_t *CX;
static int REPS = 20;
static double BW, PEAK_BF16, PEAK_FP8; /* bytes/s, flop/s */

#define CK(x)                                                                                                          \
    do {                                                                                                               \
        if ((x) != MS_OK) {                                                                                            \
            fprintf(stderr, "bench-ops: %s failed at line %d\n", #x, __LINE__);                                        \
            exit(1);                                                                                                   \
        }                                                                                                              \
    } while (0)
#define CKC(x)                                                                                                         \
    do {                                                                                                               \
        cudaError_t e_ = (x);                                                                                          \
        if (e_ != cudaSuccess) {                                                                                       \
            fprintf(stderr, "bench-ops: %s: %s\n", #x, cudaGetErrorString(e_));                                        \
            exit(1);                                                                                                   \
        }                                                                                                              \
    } while (0)

static void *dalloc(size_t n)
{
    void *p;
    CK(K->alloc(n, &p));
    return p;
}

/* Device memory with dummy values (bf16 ~U(-1,1), fp8 kern_dummy_fp8 bytes, f32 `f32val`). */
static void *dfill(ms_dtype_t dt, int64_t n, float f32val)
{
    void *p = dalloc((size_t)n * ms_dtype_size(dt) + 256);
    CK(K->fill_dummy(CX, p, dt, 1, n, n, 0, (uint64_t)n * 7919u, dt == MS_DT_F32 ? 0 : 1, dt == MS_DT_F32 ? f32val : 0));
    return p;
}

static int32_t *dints(const int32_t *h, int n)
{
    int32_t *d = dalloc(sizeof(int32_t) * (size_t)n);
    CK(K->upload(CX, d, h, sizeof(int32_t) * (size_t)n));
    CK(K->synchronize(CX));
    return d;
}

static cudaEvent_t ev0, ev1;

/* Mean ms of REPS runs of CALL after 3 warm-ups. */
#define TIME_MS(out, CALL)                                                                                             \
    do {                                                                                                               \
        for (int w_ = 0; w_ < 3; w_++) CK(CALL);                                                                       \
        CKC(cudaEventRecord(ev0, (cudaStream_t)CX->stream));                                                           \
        for (int r_ = 0; r_ < REPS; r_++) CK(CALL);                                                                    \
        CKC(cudaEventRecord(ev1, (cudaStream_t)CX->stream));                                                           \
        CKC(cudaEventSynchronize(ev1));                                                                                \
        float ms_;                                                                                                     \
        CKC(cudaEventElapsedTime(&ms_, ev0, ev1));                                                                     \
        (out) = ms_ / REPS;                                                                                            \
    } while (0)

/* One table row: op, shape, time, bytes, flops, roofline %. fp8: the GEMM's rate is the FP8 one. */
static void row(const char *op, const char *shape, double ms, double bytes, double flops, int fp8)
{
    double t_bw = bytes / BW, t_fl = flops / (fp8 ? PEAK_FP8 : PEAK_BF16), t = t_bw > t_fl ? t_bw : t_fl;
    printf("| %s | %s | %.4f | %.1f | %.1f | %.0f%% (%s) |\n", op, shape, ms, bytes / (ms * 1e-3) / 1e9,
           flops / (ms * 1e-3) / 1e12, 100.0 * t / (ms * 1e-3), t_bw >= t_fl ? "HBM" : (fp8 ? "FP8" : "BF16"));
}

/* ---- ceilings ---- */
static void ceilings(void)
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

/* ---- R1 shapes ---- */
enum { D = 7168, V = 129280, H = 128, DN = 128, DR = 64, DV = 128, DC = 512, QL = 1536, IM = 2048, INTER = 18432,
       E = 256, TOPK = 8 };

/* One linear at decode: x [B, in] bf16 (or fp8 with scales) times W [out, in]. */
static void bench_linear(const char *name, int B, int out, int in, ms_dtype_t wdt, int fp8x, kern_epi_t epi,
                         ms_dtype_t ydt)
{
    void *x = dfill(MS_DT_BF16, (int64_t)B * in, 0), *y = dalloc((size_t)B * out * 4 + 256);
    void *wd = dfill(wdt, (int64_t)out * in, 0);
    float *ws = wdt == MS_DT_F8E4M3 ? dfill(MS_DT_F32, (int64_t)kern_fp8_blocks(out) * kern_fp8_blocks(in), 1e-3f) : NULL;
    kern_mat_t w = {.data = wd, .scale_inv = ws, .dtype = wdt, .rows = out, .cols = in};
    uint8_t *xq = NULL;
    float *xs = NULL;
    if (fp8x) {
        xq = dalloc((size_t)B * in + 256), xs = dalloc(sizeof(float) * (size_t)kern_act_scales(B, in) + 256);
        CK(K->act_quant(CX, x, in, B, in, xq, in, xs, kern_fp8_blocks(in)));
    }
    kern_gemm_t g = {.x = fp8x ? (void *)xq : x, .x_scale = xs, .w = &w, .y = y, .xdt = fp8x ? MS_DT_F8E4M3 : MS_DT_BF16,
                     .ydt = ydt, .m = B, .ldx = in, .ld_xs = kern_fp8_blocks(in), .ldy = epi ? out / 2 : out, .epi = epi};
    float ms;
    TIME_MS(ms, K->gemm(CX, &g));
    char shape[128];
    snprintf(shape, sizeof shape, "%d x [%d, %d] %s%s%s", B, out, in, wdt == MS_DT_F8E4M3 ? "fp8" : "bf16",
             fp8x ? ", fp8 x" : "", epi ? ", SiLU·mul" : "");
    double bytes = (double)out * in * ms_dtype_size(wdt) + (double)B * in * (fp8x ? 1 : 2) +
                   (double)B * (epi ? out / 2 : out) * ms_dtype_size(ydt);
    row(name, shape, ms, bytes, 2.0 * B * out * (double)in, wdt == MS_DT_F8E4M3 && fp8x);
    K->free(x), K->free(y), K->free(wd);
    if (ws) K->free(ws);
    if (xq) K->free(xq), K->free(xs);
}

static void bench_batch(int B, int ctx)
{
    printf("\n#### Batch %d per rank (context %d for attention)\n\n", B, ctx);
    printf("| op | shape | ms | GB/s | TFLOP/s | %% of ceiling (bound) |\n|---|---|---|---|---|---|\n");
    float ms;
    char shape[160];
    /* elementwise / norms */
    bf16_t *x = dfill(MS_DT_BF16, (int64_t)B * D, 0), *r = dfill(MS_DT_BF16, (int64_t)B * D, 0);
    bf16_t *y = dalloc((size_t)B * D * 2), *nw = dfill(MS_DT_BF16, D, 0);
    TIME_MS(ms, K->rmsnorm(CX, x, D, nw, y, D, B, D, 1e-6f));
    snprintf(shape, sizeof shape, "[%d, %d]", B, D);
    row("rmsnorm", shape, ms, 2.0 * B * D * 2, 0, 0);
    TIME_MS(ms, K->add_rmsnorm(CX, x, r, nw, y, B, D, 1e-6f));
    row("add_rmsnorm", shape, ms, 4.0 * B * D * 2, 0, 0);
    TIME_MS(ms, K->add(CX, x, r, y, (int64_t)B * D));
    row("add", shape, ms, 3.0 * B * D * 2, 0, 0);
    uint8_t *q8 = dalloc((size_t)B * D);
    float *qs = dalloc(sizeof(float) * (size_t)kern_act_scales(B, D));
    TIME_MS(ms, K->act_quant(CX, x, D, B, D, q8, D, qs, kern_fp8_blocks(D)));
    row("act_quant", shape, ms, 3.0 * B * D, 0, 0);
    int32_t *hid = malloc(sizeof(int32_t) * (size_t)B);
    for (int i = 0; i < B; i++) hid[i] = (i * 7919) % V;
    int32_t *ids = dints(hid, B);
    bf16_t *emb = dfill(MS_DT_BF16, (int64_t)V * D, 0);
    TIME_MS(ms, K->embed(CX, ids, B, emb, V, D, y));
    row("embed", shape, ms, 2.0 * B * D * 2, 0, 0);
    K->free(emb);
    bf16_t *g2 = dfill(MS_DT_BF16, (int64_t)B * INTER, 0), *u2 = dfill(MS_DT_BF16, (int64_t)B * INTER, 0);
    bf16_t *o2 = dalloc((size_t)B * INTER * 2);
    TIME_MS(ms, K->silu_mul(CX, g2, u2, o2, (int64_t)B * INTER));
    snprintf(shape, sizeof shape, "[%d, %d]", B, INTER);
    row("silu_mul", shape, ms, 3.0 * B * INTER * 2, 0, 0);
    K->free(g2), K->free(u2), K->free(o2);
    float *f32 = dfill(MS_DT_F32, (int64_t)B * D, 0.5f);
    TIME_MS(ms, K->cast(CX, f32, MS_DT_F32, y, MS_DT_BF16, (int64_t)B * D));
    snprintf(shape, sizeof shape, "[%d, %d] f32->bf16", B, D);
    row("cast", shape, ms, 6.0 * B * D, 0, 0);
    K->free(f32);
    for (int i = 0; i < B; i++) hid[i] = B - 1 - i;
    int32_t *perm = dints(hid, B);
    TIME_MS(ms, K->gather_rows(CX, x, perm, B, (size_t)D * 2, y));
    snprintf(shape, sizeof shape, "%d rows of %d bf16", B, D);
    row("gather_rows", shape, ms, 4.0 * B * D, 0, 0);

    /* projections (FP8 weights as R1 ships them: the dequant mode, then the fp8 mode) */
    bench_linear("gemm q_a", B, QL, D, MS_DT_F8E4M3, 0, KERN_EPI_NONE, MS_DT_BF16);
    bench_linear("gemm q_a", B, QL, D, MS_DT_F8E4M3, 1, KERN_EPI_NONE, MS_DT_BF16);
    bench_linear("gemm q_b", B, H * (DN + DR), QL, MS_DT_F8E4M3, 0, KERN_EPI_NONE, MS_DT_BF16);
    bench_linear("gemm q_b", B, H * (DN + DR), QL, MS_DT_F8E4M3, 1, KERN_EPI_NONE, MS_DT_BF16);
    bench_linear("gemm kv_a", B, DC + DR, D, MS_DT_F8E4M3, 0, KERN_EPI_NONE, MS_DT_BF16);
    bench_linear("gemm o_proj", B, D, H * DV, MS_DT_F8E4M3, 0, KERN_EPI_NONE, MS_DT_BF16);
    bench_linear("gemm o_proj", B, D, H * DV, MS_DT_F8E4M3, 1, KERN_EPI_NONE, MS_DT_BF16);
    bench_linear("gemm router", B, E, D, MS_DT_BF16, 0, KERN_EPI_NONE, MS_DT_F32);
    bench_linear("gemm shared gate|up", B, 2 * IM, D, MS_DT_F8E4M3, 0, KERN_EPI_SILU_MUL, MS_DT_BF16);
    bench_linear("gemm shared down", B, D, IM, MS_DT_F8E4M3, 0, KERN_EPI_NONE, MS_DT_BF16);
    bench_linear("gemm dense gate|up", B, 2 * INTER, D, MS_DT_F8E4M3, 0, KERN_EPI_SILU_MUL, MS_DT_BF16);
    bench_linear("gemm dense down", B, D, INTER, MS_DT_F8E4M3, 0, KERN_EPI_NONE, MS_DT_BF16);
    bench_linear("gemm lm_head", B, V, D, MS_DT_BF16, 0, KERN_EPI_NONE, MS_DT_F32);

    /* absorbed MLA: q_nope·W_UK and o_lat·W_UV, batched per head over kv_b [H*(DN+DV), DC] */
    {
        bf16_t *q = dfill(MS_DT_BF16, (int64_t)B * H * (DN + DR), 0), *kvb = dfill(MS_DT_BF16, (int64_t)H * (DN + DV) * DC, 0);
        float *ql = dalloc(sizeof(float) * (size_t)B * H * DC);
        kern_mat_t wuk = {.data = kvb, .dtype = MS_DT_BF16, .rows = DC, .cols = DN};
        kern_gemm_t g = {.x = q, .w = &wuk, .y = ql, .xdt = MS_DT_BF16, .ydt = MS_DT_F32, .m = B, .batch = H,
                         .ldx = H * (DN + DR), .bsx = DN + DR, .ldw = DC, .bsw = (int64_t)(DN + DV) * DC, .w_trans = 1,
                         .ldy = H * DC, .bsy = DC};
        TIME_MS(ms, K->gemm(CX, &g));
        snprintf(shape, sizeof shape, "%d heads x %d x [%d <- %d] bf16 (W_UK^T)", H, B, DC, DN);
        row("gemm q_nope·W_UK", shape, ms, (double)H * DN * DC * 2 + (double)B * H * (DN * 2 + DC * 4), 2.0 * B * H * DN * DC, 0);
        bf16_t *ol = dfill(MS_DT_BF16, (int64_t)B * H * DC, 0), *ov = dalloc((size_t)B * H * DV * 2);
        kern_mat_t wuv = {.data = (const bf16_t *)kvb + (size_t)DN * DC, .dtype = MS_DT_BF16, .rows = DV, .cols = DC};
        kern_gemm_t g2 = {.x = ol, .w = &wuv, .y = ov, .xdt = MS_DT_BF16, .ydt = MS_DT_BF16, .m = B, .batch = H,
                          .ldx = H * DC, .bsx = DC, .ldw = DC, .bsw = (int64_t)(DN + DV) * DC, .ldy = H * DV, .bsy = DV};
        TIME_MS(ms, K->gemm(CX, &g2));
        snprintf(shape, sizeof shape, "%d heads x %d x [%d <- %d] bf16 (W_UV)", H, B, DV, DC);
        row("gemm o_lat·W_UV", shape, ms, (double)H * DV * DC * 2 + (double)B * H * (DC + DV) * 2, 2.0 * B * H * DV * DC, 0);
        /* rope on q_pe (H heads) */
        int32_t *hp = malloc(sizeof(int32_t) * (size_t)B);
        for (int i = 0; i < B; i++) hp[i] = ctx - 1;
        int32_t *pos = dints(hp, B);
        float *invf = dfill(MS_DT_F32, DR / 2, 1e-3f);
        TIME_MS(ms, K->rope(CX, q + DN, B, H, H * (DN + DR), DN + DR, pos, invf, 1.0f, DR, 1));
        snprintf(shape, sizeof shape, "%d x %d heads x %d", B, H, DR);
        row("rope q_pe", shape, ms, 4.0 * B * H * DR, 0, 0);
        /* paged latent attention, BF16 and FP8 KV, block 64 */
        for (int fp8 = 0; fp8 < 2; fp8++) {
            const int bs = 64, nbpp = (ctx + bs - 1) / bs, nblk = nbpp * B;
            kern_kv_t kv = {.dtype = fp8 ? MS_DT_F8E4M3 : MS_DT_BF16, .d_c = DC, .d_r = DR, .block_size = bs,
                            .n_blocks = nblk, .row_bytes = kern_kv_row_bytes(fp8 ? MS_DT_F8E4M3 : MS_DT_BF16, DC, DR)};
            kv.data = dalloc((size_t)nblk * bs * kv.row_bytes);
            bf16_t *ckv = dfill(MS_DT_BF16, (int64_t)B * (DC + DR), 0);
            int32_t *hs = malloc(sizeof(int32_t) * (size_t)nblk);
            for (int i = 0; i < nblk; i++) hs[i] = i;
            int32_t *bt = dints(hs, nblk);
            for (int i = 0; i < B; i++) hs[i] = i * nbpp * bs + (ctx - 1);
            int32_t *slots = dints(hs, B);
            { /* fill the whole cache through kv_store in one call */
                const int nrow = nblk * bs;
                bf16_t *all = dfill(MS_DT_BF16, (int64_t)nrow * (DC + DR), 0);
                int32_t *ha = malloc(sizeof(int32_t) * (size_t)nrow);
                for (int i = 0; i < nrow; i++) ha[i] = i;
                int32_t *sl = dints(ha, nrow);
                CK(K->kv_store(CX, &kv, all, DC + DR, all + DC, DC + DR, sl, nrow));
                CK(K->synchronize(CX));
                K->free(sl), K->free(all);
                free(ha);
            }
            TIME_MS(ms, K->kv_store(CX, &kv, ckv, DC + DR, ckv + DC, DC + DR, slots, B));
            snprintf(shape, sizeof shape, "%d rows, %s", B, fp8 ? "fp8" : "bf16");
            row("kv_store", shape, ms, (double)B * (2 * (DC + DR) + kv.row_bytes), 0, 0);
            kern_attn_seq_t *hq = calloc((size_t)B, sizeof *hq);
            for (int i = 0; i < B; i++) hq[i] = (kern_attn_seq_t){.q_off = i, .n_q = 1, .pos0 = ctx - 1, .blk_off = i * nbpp};
            kern_attn_seq_t *sq = dalloc(sizeof *hq * (size_t)B);
            CK(K->upload(CX, sq, hq, sizeof *hq * (size_t)B));
            float *qlat = dfill(MS_DT_F32, (int64_t)B * H * DC, 0.01f);
            bf16_t *olat = dalloc((size_t)B * H * DC * 2);
            snprintf(shape, sizeof shape, "%d seqs x %d ctx, %d heads, %s KV", B, ctx, H, fp8 ? "fp8" : "bf16");
            /* the three kernels (kernels/cuda/mla_latent*.cu), chosen per call by MS_MLA_KERNEL (default: wgmma) */
            char prevbuf[32] = "";
            const char *prev = getenv("MS_MLA_KERNEL") ? strncpy(prevbuf, getenv("MS_MLA_KERNEL"), 31) : NULL;
            static const char *const mk[] = {"simt", "mma", "wgmma"},
                                     *const mrow[] = {"mla_latent (simt)", "mla_latent (mma)", "mla_latent (wgmma)"};
            for (int k = 0; k < 3; k++) {
                setenv("MS_MLA_KERNEL", mk[k], 1);
                TIME_MS(ms, K->mla_latent(CX, qlat, MS_DT_F32, q + DN, H * (DN + DR), DN + DR, &kv, bt, sq, B, H,
                                          0.1f, olat, MS_DT_BF16));
                row(mrow[k], shape, ms, (double)B * ctx * kv.row_bytes + (double)B * H * (DC * 4 + DC * 2),
                    2.0 * B * H * ctx * (2.0 * DC + DR), 0);
            }
            if (prev) setenv("MS_MLA_KERNEL", prev, 1);
            else unsetenv("MS_MLA_KERNEL");
            K->free(kv.data), K->free(ckv), K->free(bt), K->free(slots), K->free(sq), K->free(qlat), K->free(olat);
            free(hs), free(hq);
        }
        K->free(q), K->free(kvb), K->free(ql), K->free(ol), K->free(ov), K->free(pos), K->free(invf);
        free(hp);
    }

    /* router, dispatch plan, scatter, combine over 256 experts on one rank (ep 1) */
    {
        float *lg = dfill(MS_DT_F32, (int64_t)B * E, 0), *bias = dfill(MS_DT_F32, E, 0);
        CK(K->fill_dummy(CX, lg, MS_DT_F32, 1, (int64_t)B * E, 0, 0, 99, 4.0f, 0.0f));
        int32_t *idx = dalloc(sizeof(int32_t) * (size_t)B * TOPK);
        float *wt = dalloc(sizeof(float) * (size_t)B * TOPK);
        TIME_MS(ms, K->moe_route(CX, lg, bias, B, E, 8, 4, TOPK, 1, 2.5f, idx, wt));
        snprintf(shape, sizeof shape, "%d x %d experts, 8 groups top 4, top 8", B, E);
        row("moe_route", shape, ms, (double)B * E * 4 + (double)B * TOPK * 8, 0, 0);
        int32_t hl[E], hn[E];
        for (int e = 0; e < E; e++) hl[e] = e, hn[e] = 1;
        kern_moe_place_t pl = {.log2phy = dints(hl, E), .n_rep = dints(hn, E), .E = E, .max_rep = 1, .n_slots = E,
                               .slots_per_rank = E};
        int32_t *sop = dalloc(sizeof(int32_t) * (size_t)B * TOPK), *ris = dalloc(sizeof(int32_t) * (size_t)B * TOPK);
        int32_t *cnt = dalloc(sizeof(int32_t) * E), *rcnt = dalloc(sizeof(int32_t) * E);
        int32_t *rop = dalloc(sizeof(int32_t) * (size_t)B * TOPK);
        TIME_MS(ms, K->moe_plan(CX, idx, B, TOPK, &pl, sop, ris, cnt, NULL));
        snprintf(shape, sizeof shape, "%d x top %d over %d slots", B, TOPK, E);
        row("moe_plan", shape, ms, (double)B * TOPK * 12 + E * 4, 0, 0);
        const int cap = B;
        bf16_t *recv = dalloc((size_t)E * cap * D * 2);
        TIME_MS(ms, K->moe_scatter(CX, x, B, TOPK, D, sop, ris, cnt, 0, E, cap, recv, rcnt, rop));
        snprintf(shape, sizeof shape, "%d x %d rows of %d", B, TOPK, D);
        row("moe_scatter", shape, ms, 2.0 * B * TOPK * D * 2, 0, 0);
        TIME_MS(ms, K->moe_combine(CX, recv, rop, idx, wt, B, TOPK, D, y));
        row("moe_combine", shape, ms, (double)B * TOPK * D * 2 + (double)B * D * 2, 0, 0);
        K->free(lg), K->free(bias), K->free(idx), K->free(wt), K->free((void *)pl.log2phy), K->free((void *)pl.n_rep);
        K->free(sop), K->free(ris), K->free(cnt), K->free(rcnt), K->free(rop), K->free(recv);
    }
    /* logits */
    {
        float *lg = dfill(MS_DT_F32, (int64_t)B * V, 0), *ly = dalloc(sizeof(float) * (size_t)B * V);
        TIME_MS(ms, K->log_softmax(CX, lg, V, B, V, ly));
        snprintf(shape, sizeof shape, "[%d, %d] f32", B, V);
        row("log_softmax", shape, ms, 8.0 * B * V, 0, 0);
        kern_sample_t *hp = calloc((size_t)B, sizeof *hp);
        for (int i = 0; i < B; i++) hp[i] = (kern_sample_t){.top_p = 1, .mask_token = -1, .position = i};
        kern_sample_t *sp = dalloc(sizeof *hp * (size_t)B);
        CK(K->upload(CX, sp, hp, sizeof *hp * (size_t)B));
        int32_t *tok = dalloc(sizeof(int32_t) * (size_t)B), *tid = dalloc(sizeof(int32_t) * (size_t)B * KERN_MAX_LOGPROBS);
        float *lp = dalloc(sizeof(float) * (size_t)B), *tlp = dalloc(sizeof(float) * (size_t)B * KERN_MAX_LOGPROBS);
        TIME_MS(ms, K->sample(CX, lg, MS_DT_F32, V, B, V, sp, tok, lp, tid, tlp));
        row("sample greedy", shape, ms, 4.0 * B * V, 0, 0);
        for (int i = 0; i < B; i++) hp[i] = (kern_sample_t){.temperature = 0.7f, .top_p = 0.95f, .top_k = 50,
                                                            .mask_token = -1, .position = i, .seed = 1};
        CK(K->upload(CX, sp, hp, sizeof *hp * (size_t)B));
        TIME_MS(ms, K->sample(CX, lg, MS_DT_F32, V, B, V, sp, tok, lp, tid, tlp));
        row("sample T0.7 top-k 50 top-p 0.95", shape, ms, 4.0 * B * V, 0, 0);
        K->free(lg), K->free(ly), K->free(sp), K->free(tok), K->free(tid), K->free(lp), K->free(tlp);
        free(hp);
    }
    K->free(x), K->free(r), K->free(y), K->free(nw), K->free(q8), K->free(qs), K->free(ids), K->free(perm);
    free(hid);
}

/* Routed experts of one EP8 rank: 32 local slots, R1 FP8 records, rows per slot. */
static void bench_experts(const int *rows, int n)
{
    printf("\n#### Routed experts: 32 local slots (an EP8 rank), FP8 records [2x%d | %d] x %d\n\n", IM, IM, D);
    printf("| op | shape | ms | GB/s | TFLOP/s | %% of ceiling (bound) |\n|---|---|---|---|---|---|\n");
    const int NL = 32;
    kern_moe_slots_t w = kern_moe_slots_layout(MS_DT_F8E4M3, D, IM);
    void *base = dalloc(w.stride * NL);
    w.base = base;
    for (int j = 0; j < NL; j++)
        for (int k = 0; k < 3; k++) {
            kern_mat_t m = kern_moe_slot_mat(&w, j, k);
            CK(K->fill_dummy(CX, (void *)m.data, MS_DT_F8E4M3, m.rows, m.cols, m.cols, 0, 1000u + j * 3 + k, 0, 0));
            CK(K->fill_dummy(CX, (void *)m.scale_inv, MS_DT_F32, 1, (int64_t)kern_fp8_blocks(m.rows) * kern_fp8_blocks(m.cols),
                             0, 0, 7, 0, 1e-3f));
        }
    for (int i = 0; i < n; i++) {
        const int cap = rows[i];
        bf16_t *x = dfill(MS_DT_BF16, (int64_t)NL * cap * D, 0), *o = dalloc((size_t)NL * cap * D * 2);
        int32_t hc[32];
        for (int j = 0; j < NL; j++) hc[j] = cap;
        int32_t *cnt = dints(hc, NL);
        size_t wsb = kern_moe_ws_bytes_all(NL, cap, D, IM); /* the engine's: every slot in one pass */
        void *ws = dalloc(wsb);
        float ms;
        for (int md = 0; md < 2; md++) {
            w.mode = md ? KERN_MOE_FP8 : KERN_MOE_DEQUANT;
            TIME_MS(ms, K->moe_experts(CX, x, cnt, NL, cap, &w, o, ws, wsb));
            char shape[96];
            snprintf(shape, sizeof shape, "32 slots x %d rows, %s mode", cap, md ? "fp8" : "dequant");
            row("moe_experts", shape, ms, (double)w.stride * NL + (double)NL * cap * D * 4,
                2.0 * NL * cap * 3.0 * IM * D, 1);
        }
        K->free(x), K->free(o), K->free(cnt), K->free(ws);
    }
    K->free(base);
}

/* ---- one decode step, by op ---- */
#define MAXEV 65536
static cudaEvent_t g_ev[MAXEV];
static int g_op[MAXEV], g_tag[MAXEV], g_nev, g_on; /* g_tag: see gemm_tag */
static const char *const g_extra[] = {"upload", "download", "copy", "memset", "graph replay"};
#define OP_UPLOAD (KERN_N_OPS + 0)
#define OP_DOWNLOAD (KERN_N_OPS + 1)
#define OP_COPY (KERN_N_OPS + 2)
#define OP_MEMSET (KERN_N_OPS + 3)
#define OP_GRAPH (KERN_N_OPS + 4)
#define N_TRACK (KERN_N_OPS + 5)

static int g_dense = -1; /* --dense-compute: dense linears' mode (-1 = auto: as --moe-compute) */
static int g_mtp; /* --mtp N: the step's engine drafts N tokens a step (MTP), every decode step verifies them */
static int g_trace, g_traced; /* --trace-faults: synchronize after every op and name the first that raises a fault */
static const char *op_label(int op)
{
    return op < KERN_N_OPS ? kern_op_name((kern_op_t)op) : g_extra[op - KERN_N_OPS];
}

static void mark(kern_ctx_t *cx, int op)
{
    if (g_trace && !g_traced && cx->fault) {
        uint32_t f = 0;
        cudaError_t e = cudaStreamSynchronize((cudaStream_t)cx->stream);
        if (e == cudaSuccess) e = cudaMemcpy(&f, cx->fault, sizeof f, cudaMemcpyDeviceToHost);
        if (e != cudaSuccess || f) {
            fprintf(stderr, "bench-ops trace: after %s: fault word %#x (%s)\n", op_label(op), f,
                    e == cudaSuccess ? "ok" : cudaGetErrorString(e));
            g_traced = 1;
        }
    }
    if (!g_on || g_nev >= MAXEV) return;
    cudaEventRecord(g_ev[g_nev], (cudaStream_t)cx->stream);
    g_tag[g_nev] = -1;
    g_op[g_nev++] = op;
}

#define WRAP(name, OPID, PARAMS, ARGS)                                                                                 \
    static ms_status_t w_##name PARAMS                                                                                 \
    {                                                                                                                  \
        ms_status_t st = kern_cuda_ops.name ARGS;                                                                      \
        mark(cx, OPID);                                                                                                \
        return st;                                                                                                     \
    }
WRAP(upload, OP_UPLOAD, (kern_ctx_t * cx, void *d, const void *s, size_t n), (cx, d, s, n))
WRAP(download, OP_DOWNLOAD, (kern_ctx_t * cx, void *d, const void *s, size_t n), (cx, d, s, n))
WRAP(copy, OP_COPY, (kern_ctx_t * cx, void *d, const void *s, size_t n), (cx, d, s, n))
WRAP(memset, OP_MEMSET, (kern_ctx_t * cx, void *d, int v, size_t n), (cx, d, v, n))
WRAP(embed, KERN_OP_EMBED, (kern_ctx_t * cx, const int32_t *i, int32_t n, const bf16_t *t, int64_t v, int32_t d, bf16_t *o),
     (cx, i, n, t, v, d, o))
WRAP(add, KERN_OP_ADD, (kern_ctx_t * cx, const bf16_t *a, const bf16_t *b, bf16_t *y, int64_t n), (cx, a, b, y, n))
WRAP(cast, KERN_OP_CAST, (kern_ctx_t * cx, const void *x, ms_dtype_t a, void *y, ms_dtype_t b, int64_t n),
     (cx, x, a, y, b, n))
WRAP(gather_rows, KERN_OP_GATHER_ROWS, (kern_ctx_t * cx, const void *s, const int32_t *i, int32_t n, size_t rb, void *d),
     (cx, s, i, n, rb, d))
WRAP(silu_mul, KERN_OP_SILU_MUL, (kern_ctx_t * cx, const bf16_t *g, const bf16_t *u, bf16_t *o, int64_t n),
     (cx, g, u, o, n))
WRAP(rmsnorm, KERN_OP_RMSNORM,
     (kern_ctx_t * cx, const bf16_t *x, int64_t lx, const bf16_t *w, bf16_t *y, int64_t ly, int32_t r, int32_t d, float e),
     (cx, x, lx, w, y, ly, r, d, e))
WRAP(add_rmsnorm, KERN_OP_ADD_RMSNORM,
     (kern_ctx_t * cx, bf16_t *x, const bf16_t *rs, const bf16_t *w, bf16_t *y, int32_t r, int32_t d, float e),
     (cx, x, rs, w, y, r, d, e))
/* gemm calls by shape (the step table's gemm row split by weight): a shape = W rows x cols x dtype, x dtype,
 * m, batch, epilogue; g_tag[i] names the shape of event i's gemm (-1: not a gemm) */
typedef struct {
    int32_t n, k, m, batch;
    ms_dtype_t wdt, xdt;
    kern_epi_t epi;
} gemm_shape_t;
#define MAXSHAPE 64
static gemm_shape_t g_shape[MAXSHAPE];
static int g_nshape;
static int gemm_tag(const kern_gemm_t *g)
{
    const gemm_shape_t s = {g->w->rows, g->w->cols, g->m, g->batch > 1 ? g->batch : 1, g->w->dtype, g->xdt, g->epi};
    for (int i = 0; i < g_nshape; i++)
        if (!memcmp(&g_shape[i], &s, sizeof s)) return i;
    if (g_nshape == MAXSHAPE) return -1;
    g_shape[g_nshape] = s;
    return g_nshape++;
}
static ms_status_t w_gemm(kern_ctx_t *cx, const kern_gemm_t *g)
{
    ms_status_t st = kern_cuda_ops.gemm(cx, g);
    const int tag = gemm_tag(g), i = g_nev;
    mark(cx, KERN_OP_GEMM);
    if (g_nev > i) g_tag[i] = tag;
    return st;
}
/* The step's gemm row by weight shape: time per call and the weight-read rate (W bytes incl. fp8 scales) */
static void print_gemm_shapes(void)
{
    double ms[MAXSHAPE] = {0};
    int calls[MAXSHAPE] = {0};
    for (int i = 1; i < g_nev; i++) {
        if (g_op[i] != KERN_OP_GEMM || g_tag[i] < 0) continue;
        float t;
        CKC(cudaEventElapsedTime(&t, g_ev[i - 1], g_ev[i]));
        ms[g_tag[i]] += t, calls[g_tag[i]]++;
    }
    printf("\n| gemm W rows x cols (dtype), x dtype, m, batch | calls | ms | us a call | W MB | W GB/s |\n"
           "|---|---|---|---|---|---|\n");
    for (int j = 0; j < g_nshape; j++) {
        if (!calls[j]) continue;
        const gemm_shape_t *s = &g_shape[j];
        const double wb = (double)s->batch * s->n * s->k * ms_dtype_size(s->wdt) +
                          (s->wdt == MS_DT_F8E4M3 ? 4.0 * s->batch * kern_fp8_blocks(s->n) * kern_fp8_blocks(s->k) : 0);
        const double per = 1e3 * ms[j] / calls[j];
        printf("| %d x %d (%s)%s, %s, m %d, batch %d | %d | %.4f | %.1f | %.1f | %.0f |\n", s->n, s->k,
               ms_dtype_name(s->wdt), s->epi == KERN_EPI_SILU_MUL ? " silu_mul" : "", ms_dtype_name(s->xdt), s->m,
               s->batch, calls[j], ms[j], per, wb * 1e-6, per > 0 ? wb / (per * 1e3) : 0);
    }
}

WRAP(act_quant, KERN_OP_ACT_QUANT,
     (kern_ctx_t * cx, const bf16_t *x, int64_t lx, int32_t r, int32_t c, uint8_t *q, int64_t lq, float *s, int64_t ls),
     (cx, x, lx, r, c, q, lq, s, ls))
WRAP(rope, KERN_OP_ROPE,
     (kern_ctx_t * cx, bf16_t *x, int32_t r, int32_t h, int64_t lr, int64_t lh, const int32_t *p, const float *f, float a,
      int32_t d, int32_t il),
     (cx, x, r, h, lr, lh, p, f, a, d, il))
WRAP(kv_store, KERN_OP_KV_STORE,
     (kern_ctx_t * cx, const kern_kv_t *kv, const bf16_t *c, int64_t lc, const bf16_t *k, int64_t lk, const int32_t *s,
      int32_t n),
     (cx, kv, c, lc, k, lk, s, n))
WRAP(kv_gather, KERN_OP_KV_GATHER,
     (kern_ctx_t * cx, const kern_kv_t *kv, const kern_attn_seq_t *s, int32_t n, const int32_t *b, bf16_t *o),
     (cx, kv, s, n, b, o))
WRAP(mla_naive, KERN_OP_MLA_NAIVE,
     (kern_ctx_t * cx, const bf16_t *q, const bf16_t *kv, const bf16_t *kp, int64_t lk, const kern_attn_seq_t *s,
      int32_t n, int32_t h, int32_t dn, int32_t dr, int32_t dv, float sc, bf16_t *o),
     (cx, q, kv, kp, lk, s, n, h, dn, dr, dv, sc, o))
WRAP(mla_latent, KERN_OP_MLA_LATENT,
     (kern_ctx_t * cx, const void *q, ms_dtype_t qd, const bf16_t *qp, int64_t lp, int64_t lph, const kern_kv_t *kv,
      const int32_t *bt, const kern_attn_seq_t *s, int32_t n, int32_t h, float sc, void *o, ms_dtype_t od),
     (cx, q, qd, qp, lp, lph, kv, bt, s, n, h, sc, o, od))
WRAP(moe_route, KERN_OP_MOE_ROUTE,
     (kern_ctx_t * cx, const float *l, const float *b, int32_t T, int32_t E_, int32_t ng, int32_t tg, int32_t tk,
      int32_t nt, float sc, int32_t *i, float *w),
     (cx, l, b, T, E_, ng, tg, tk, nt, sc, i, w))
WRAP(moe_plan, KERN_OP_MOE_PLAN,
     (kern_ctx_t * cx, const int32_t *i, int32_t T, int32_t K_, const kern_moe_place_t *pl, int32_t *s, int32_t *r,
      int32_t *c, int64_t *ld),
     (cx, i, T, K_, pl, s, r, c, ld))
WRAP(moe_scatter, KERN_OP_MOE_SCATTER,
     (kern_ctx_t * cx, const bf16_t *x, int32_t T, int32_t K_, int32_t D_, const int32_t *s, const int32_t *r,
      const int32_t *c, int32_t s0, int32_t nl, int32_t cap, bf16_t *rv, int32_t *rc, int32_t *rp),
     (cx, x, T, K_, D_, s, r, c, s0, nl, cap, rv, rc, rp))
WRAP(moe_experts, KERN_OP_MOE_EXPERTS,
     (kern_ctx_t * cx, const bf16_t *x, const int32_t *c, int32_t nl, int32_t cap, const kern_moe_slots_t *w, bf16_t *o,
      void *ws, size_t wb),
     (cx, x, c, nl, cap, w, o, ws, wb))
WRAP(moe_combine, KERN_OP_MOE_COMBINE,
     (kern_ctx_t * cx, const bf16_t *r, const int32_t *rp, const int32_t *i, const float *w, int32_t T, int32_t K_,
      int32_t h, bf16_t *o),
     (cx, r, rp, i, w, T, K_, h, o))
WRAP(log_softmax, KERN_OP_LOG_SOFTMAX, (kern_ctx_t * cx, const float *x, int64_t ld, int32_t r, int32_t n, float *y),
     (cx, x, ld, r, n, y))
WRAP(mtp_prep, KERN_OP_MTP_PREP, (kern_ctx_t * cx, const kern_mtp_prep_t *p), (cx, p))
WRAP(sample, KERN_OP_SAMPLE,
     (kern_ctx_t * cx, const void *l, ms_dtype_t dt, int64_t ld, int32_t r, int32_t v, const kern_sample_t *p,
      int32_t *t, float *lp, int32_t *ti, float *tl),
     (cx, l, dt, ld, r, v, p, t, lp, ti, tl))

/* Host clock stamps of a step (--graphs): upload entry and return, graph launch entry and return (eager: the
 * same stamps as the upload's return), synchronize entry and return. */
enum { TS_UP0, TS_UP1, TS_L0, TS_L1, TS_S0, TS_S1, TS_N };
static struct timespec g_ts[TS_N];
static double ts_us(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e6 + (double)(b->tv_nsec - a->tv_nsec) * 1e-3;
}
static ms_status_t w_graph_launch(kern_ctx_t *cx, kern_graph_t g)
{
    clock_gettime(CLOCK_MONOTONIC, &g_ts[TS_L0]);
    ms_status_t st = kern_cuda_ops.graph_launch(cx, g);
    clock_gettime(CLOCK_MONOTONIC, &g_ts[TS_L1]);
    mark(cx, OP_GRAPH);
    return st;
}
static ms_status_t w_stamped_upload(kern_ctx_t *cx, void *d, const void *h, size_t n)
{
    clock_gettime(CLOCK_MONOTONIC, &g_ts[TS_UP0]);
    ms_status_t st = w_upload(cx, d, h, n);
    clock_gettime(CLOCK_MONOTONIC, &g_ts[TS_UP1]);
    g_ts[TS_L0] = g_ts[TS_L1] = g_ts[TS_UP1];
    return st;
}
static ms_status_t w_synchronize(kern_ctx_t *cx)
{
    clock_gettime(CLOCK_MONOTONIC, &g_ts[TS_S0]);
    ms_status_t st = kern_cuda_ops.synchronize(cx);
    clock_gettime(CLOCK_MONOTONIC, &g_ts[TS_S1]);
    return st;
}

static kern_ops_t g_tops;
/* Contexts of the timed table point back at it, so ops reached through cx->ops (MoE dispatch) are timed too. */
static ms_status_t w_ctx_create(int device, size_t ws, kern_ctx_t **out)
{
    MS_TRY(kern_cuda_ops.ctx_create(device, ws, out));
    (*out)->ops = &g_tops;
    return MS_OK;
}

static kern_ops_t timed_ops(void)
{
    kern_ops_t t = kern_cuda_ops;
    t.ctx_create = w_ctx_create;
    t.upload = w_upload, t.download = w_download, t.copy = w_copy, t.memset = w_memset;
    t.embed = w_embed, t.add = w_add, t.cast = w_cast, t.gather_rows = w_gather_rows, t.silu_mul = w_silu_mul;
    t.rmsnorm = w_rmsnorm, t.add_rmsnorm = w_add_rmsnorm, t.gemm = w_gemm, t.act_quant = w_act_quant;
    t.rope = w_rope, t.kv_store = w_kv_store, t.kv_gather = w_kv_gather, t.mla_naive = w_mla_naive;
    t.mla_latent = w_mla_latent, t.moe_route = w_moe_route, t.moe_plan = w_moe_plan, t.moe_scatter = w_moe_scatter;
    t.moe_experts = w_moe_experts, t.moe_combine = w_moe_combine, t.log_softmax = w_log_softmax, t.sample = w_sample;
    t.mtp_prep = w_mtp_prep;
    t.graph_launch = w_graph_launch, t.upload = w_stamped_upload, t.synchronize = w_synchronize;
    return t;
}

static int cmp_dbl(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One engine (graphs: the decode step's batch captured as a CUDA graph) over B sequences of ctx tokens:
 * prefill, warm-up decode steps, then `reps` timed decode steps. Prints the per-op breakdown of the last
 * eager step, and for both modes the host wall time of engine_step (median) beside the GPU span of the step
 * (its first transfer to its last, CUDA events): their difference is what the host adds. */
static int bench_step_mode(const char *model, int B, int ctx, int kv_fp8, int dummy, int moe_cap, int max_tok,
                           int moe_fp8, int graph, int reps, double *wall_med, double *span_med, double *host)
{
    kern_ops_t *tops_p = &g_tops;
    const int W = g_mtp + 1, bs = 64, nbpp = (ctx + (2 * reps + 8) * W + g_mtp + bs - 1) / bs, nblk = nbpp * B;
    const int gsize[1] = {B};
    engine_opts_t o = {.kv_blocks = nblk, .block_size = bs, .kv_fp8 = kv_fp8, .max_batch = B,
                       .max_tokens_per_step = max_tok, .backend = "cuda", .load_dummy = dummy, .mla = ENGINE_MLA_AUTO,
                       .moe_max_num_tokens = moe_cap, .moe_fp8 = moe_fp8, .dense_fp8 = g_dense < 0 ? moe_fp8 : g_dense, .ops = tops_p,
                       .n_graph_sizes = graph ? 1 : 0, .graph_sizes = gsize, .graph_padding = 1,
                       .mtp_drafts = g_mtp};
    par_t par = par_single();
    comm_t *comm = NULL;
    engine_t *eng = NULL;
    if (comm_local_create(tops_p, &comm) != MS_OK || engine_create(model, &par, &o, comm, &eng) != MS_OK) return 1;
    int32_t *blocks = malloc(sizeof(int32_t) * (size_t)nblk), *toks = malloc(sizeof(int32_t) * (size_t)max_tok);
    for (int i = 0; i < nblk; i++) blocks[i] = i;
    const int vocab = engine_config(eng)->vocab_size;
    for (int i = 0; i < max_tok; i++) toks[i] = (int32_t)((1000 + (int64_t)i * 37) % vocab);
    proto_planbuf_t pb;
    proto_planbuf_init(&pb);
    proto_result_t *res = calloc((size_t)B, sizeof *res);
    double *wall = calloc((size_t)reps, sizeof *wall), *span = calloc((size_t)reps, sizeof *span);
    /* MTP: each sequence's position, and what it feeds next (its last token and the drafts to verify) */
    int *pos = calloc((size_t)B, sizeof *pos), *nfeed = calloc((size_t)B, sizeof *nfeed);
    int32_t (*feed)[1 + PROTO_MAX_DRAFT] = calloc((size_t)B, sizeof *feed);
    long accepted = 0;

    uint32_t step = 0;
    /* prefill every sequence's ctx tokens, as many sequences a step as max_num_tokens allows */
    for (int s0 = 0; s0 < B;) {
        proto_planbuf_reset(&pb);
        int used = 0, s = s0;
        for (; s < B; s++) {
            const int n = ctx;
            if (used + n > max_tok) break;
            proto_seq_t q = {.slot = s, .dp_rank = -1, .top_p = 1, .n_logprobs = -1, .pos = 0,
                             .flags = g_mtp ? PROTO_SEQ_SAMPLE | PROTO_SEQ_DRAFT : 0u};
            CK(proto_planbuf_add(&pb, &q, toks, n, blocks + s * nbpp, nbpp));
            used += n;
        }
        const proto_plan_t *plan;
        CK(proto_planbuf_finish(&pb, step++, &plan));
        CK(engine_step(eng, plan, res));
        for (int j = s0; j < s; j++) { /* the prompt's token and first drafts */
            pos[j] = ctx, nfeed[j] = 1 + res[j - s0].n_draft, feed[j][0] = res[j - s0].token;
            memcpy(feed[j] + 1, res[j - s0].drafts, sizeof(int32_t) * (size_t)res[j - s0].n_draft);
        }
        s0 = s;
    }
    /* decode steps: three untimed, then the timed ones (events on each; the last eager one is broken down) */
    const int warm = 3, prof = getenv("MS_BENCH_PROFILE_STEP") != NULL && graph;
    /* after the timed steps (events on), `reps` plain ones: no event on the host's path, clock stamps only */
    double *plain = calloc((size_t)reps, sizeof *plain), *part[4];
    for (int i = 0; i < 4; i++) part[i] = calloc((size_t)reps, sizeof *part[i]);
    for (int it = 0; it < warm + 2 * reps + prof; it++) {
        proto_planbuf_reset(&pb);
        for (int s = 0; s < B; s++) {
            proto_seq_t q = {.slot = s, .dp_rank = -1, .top_p = 1, .n_logprobs = -1, .pos = ctx + it,
                             .flags = PROTO_SEQ_SAMPLE};
            if (g_mtp) {
                q.pos = pos[s];
                q.flags |= PROTO_SEQ_DRAFT | (nfeed[s] > 1 ? PROTO_SEQ_VERIFY : 0u);
                CK(proto_planbuf_add(&pb, &q, feed[s], nfeed[s], blocks + s * nbpp, nbpp));
            } else {
                CK(proto_planbuf_add(&pb, &q, toks + s, 1, blocks + s * nbpp, nbpp));
            }
        }
        const proto_plan_t *plan;
        CK(proto_planbuf_finish(&pb, step++, &plan));
        const int timed = it >= warm && it < warm + reps;
        /* the step's first op is its metadata upload: the timeline starts there; the untimed steps after the
         * timed ones leave the last timed step's events for the per-op table */
        g_on = timed;
        if (timed) g_nev = 0;
        /* MS_BENCH_PROFILE_STEP: one more replayed step inside a profiler range (ncu --profile-from-start off) */
        if (prof && it == warm + 2 * reps) CKC(cudaProfilerStart());
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        CK(engine_step(eng, plan, res));
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (prof && it == warm + 2 * reps) CKC(cudaProfilerStop());
        g_on = 0;
        for (int s = 0; g_mtp && s < B; s++) { /* accepted drafts, the step's token, the next drafts */
            pos[s] += nfeed[s] > 1 ? 1 + res[s].n_accepted : 1;
            accepted += res[s].n_accepted;
            nfeed[s] = 1 + res[s].n_draft, feed[s][0] = res[s].token;
            memcpy(feed[s] + 1, res[s].drafts, sizeof(int32_t) * (size_t)res[s].n_draft);
        }
        if (it >= warm + reps && it < warm + 2 * reps) {
            const int j = it - warm - reps;
            plain[j] = ts_us(&t0, &t1);
            part[0][j] = ts_us(&t0, &g_ts[TS_UP0]), part[1][j] = ts_us(&g_ts[TS_UP0], &g_ts[TS_L1]);
            part[2][j] = ts_us(&g_ts[TS_S0], &g_ts[TS_S1]), part[3][j] = ts_us(&g_ts[TS_S1], &t1);
        }
        if (!timed) continue;
        wall[it - warm] = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-6;
        float ms = 0;
        if (g_nev > 1) CKC(cudaEventElapsedTime(&ms, g_ev[0], g_ev[g_nev - 1]));
        span[it - warm] = ms;
    }
    if (!graph) {
        /* with MTP, ops from the step's mtp_prep on are the draft passes' (phase 1), the rest the main pass's */
        double per[2][N_TRACK] = {{0}}, tot = 0, ph[2] = {0};
        int calls[N_TRACK] = {0}, phase = 0;
        for (int i = 1; i < g_nev; i++) {
            float ms;
            CKC(cudaEventElapsedTime(&ms, g_ev[i - 1], g_ev[i]));
            if (g_op[i] == KERN_OP_MTP_PREP) phase = 1;
            if (g_op[i] == OP_DOWNLOAD) phase = 0; /* the results' download closes the step */
            per[phase][g_op[i]] += ms, calls[g_op[i]]++, tot += ms, ph[phase] += ms;
        }
        if (g_nev > 0) calls[g_op[0]]++;
        printf("\n#### One decode step: %s, batch %d, context %d, %s KV, moe_experts %s mode%s, dense %s (GPU time between "
               "consecutive ops, charged to the later op)\n\n", model, B, ctx, kv_fp8 ? "fp8" : "bf16",
               moe_fp8 ? "fp8" : "dequant", g_mtp ? ", MTP verify+draft" : "",
               (g_dense < 0 ? moe_fp8 : g_dense) ? "fp8" : "dequant");
        if (g_mtp) printf("MTP: %d drafts a step, %.2f accepted a sequence-step (dummy weights: meaningless).\n\n", g_mtp,
                          (double)accepted / ((double)(warm + 2 * reps + prof) * B));
        printf(g_mtp ? "| op | calls | ms | share | main pass ms | draft passes ms |\n|---|---|---|---|---|---|\n"
                     : "| op | calls | ms | share |\n|---|---|---|---|\n");
        for (int op = 0; op < N_TRACK; op++) {
            if (!calls[op]) continue;
            const double t = per[0][op] + per[1][op];
            printf("| %s | %d | %.4f | %.1f%% |", op_label(op), calls[op], t, tot > 0 ? 100.0 * t / tot : 0);
            if (g_mtp) printf(" %.4f | %.4f |", per[0][op], per[1][op]);
            printf("\n");
        }
        printf("| **total (first to last op)** | %d | %.4f | 100%% |", g_nev, tot);
        if (g_mtp) printf(" %.4f | %.4f |", ph[0], ph[1]);
        printf("\n\nHost wall time of engine_step: %.3f ms.\n", wall[reps - 1]);
        print_gemm_shapes();
    }
    int ng;
    long gsteps, gpad;
    engine_graph_stats(eng, &ng, &gsteps, &gpad);
    if (graph && gsteps < warm + 2 * reps) {
        fprintf(stderr, "bench-ops: the graph engine replayed %ld of %d decode steps\n", gsteps, warm + 2 * reps);
        return 1;
    }
    qsort(wall, (size_t)reps, sizeof *wall, cmp_dbl);
    qsort(span, (size_t)reps, sizeof *span, cmp_dbl);
    qsort(plain, (size_t)reps, sizeof *plain, cmp_dbl);
    for (int i = 0; i < 4; i++) qsort(part[i], (size_t)reps, sizeof *part[i], cmp_dbl);
    *wall_med = wall[reps / 2], *span_med = span[reps / 2];
    host[0] = plain[reps / 2] * 1e-3;
    for (int i = 0; i < 4; i++) host[1 + i] = part[i][reps / 2];
    free(blocks), free(toks), free(res), free(wall), free(span), free(plain), free(pos), free(nfeed), free(feed);
    for (int i = 0; i < 4; i++) free(part[i]);
    proto_planbuf_free(&pb);
    engine_destroy(eng);
    comm_destroy(comm);
    return 0;
}

static int bench_step(const char *model, int B, int ctx, int kv_fp8, int dummy, int moe_cap, int max_tok, int moe_fp8,
                      int graphs)
{
    g_tops = timed_ops();
    if (ctx < 1 || ctx > max_tok) {
        fprintf(stderr, "moeserve-bench-ops: --step-ctx must be in [1, %d]\n", max_tok);
        return 2;
    }
    if (g_mtp < 0 || g_mtp > PROTO_MAX_DRAFT || B * (g_mtp + 1) > max_tok) {
        fprintf(stderr, "moeserve-bench-ops: --mtp must be in [0, %d] with step-batch x (mtp + 1) <= --step-tokens\n",
                PROTO_MAX_DRAFT);
        return 2;
    }
    for (int i = 0; i < MAXEV; i++) CKC(cudaEventCreate(&g_ev[i]));
    const int reps = 20;
    double wall[2] = {0}, span[2] = {0}, host[2][5] = {{0}};
    for (int g = 0; g <= (graphs ? 1 : 0); g++) {
        int rc = bench_step_mode(model, B, ctx, kv_fp8, dummy, moe_cap, max_tok, moe_fp8, g, reps, &wall[g], &span[g],
                                 host[g]);
        if (rc) return rc;
    }
    printf("\n#### Decode step, eager%s: batch %d, context %d (medians of %d steps; GPU span = the step's upload to "
           "its download, CUDA events; host = wall - span)\n\n", graphs ? " vs CUDA graph" : "", B, ctx, reps);
    printf("| mode | batch | engine_step wall ms (events) | GPU span ms | wall ms (no events) | host us = wall (no "
           "events) - span | before upload us | upload + launch us | in synchronize us | after it us |\n"
           "|---|---|---|---|---|---|---|---|---|---|\n");
    for (int g = 0; g <= (graphs ? 1 : 0); g++)
        printf("| %s | %d | %.4f | %.4f | %.4f | %.1f | %.1f | %.1f | %.1f | %.1f |\n", g ? "graph" : "eager", B,
               wall[g], span[g], host[g][0], (host[g][0] - span[g]) * 1e3, host[g][1], host[g][2], host[g][3],
               host[g][4]);
    if (graphs) printf("\nGraph vs eager step wall time: %.2fx.\n", wall[0] / wall[1]);
    return 0;
}

/* The sampler at batch B (--sample): peaked logits (a few dozen tokens carry most of the mass) or flat ones. */
static void bench_sample(int B)
{
    const int V = 129280;
    const int64_t n = (int64_t)B * V;
    float *hf = malloc(sizeof(float) * (size_t)n);
    bf16_t *hb = malloc(sizeof(bf16_t) * (size_t)n);
    uint64_t st = 12345;
    for (int64_t i = 0; i < n; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        const double u = (double)(st >> 11) / 9007199254740992.0;
        hf[i] = (float)(u * 4.0 - 6.0 + ((st >> 7) % 4096 == 0 ? 14.0 * u : 0.0));
        hb[i] = f32_to_bf16(hf[i]), hf[i] = bf16_to_f32(hb[i]);
    }
    float *lf = dalloc(sizeof(float) * (size_t)n);
    bf16_t *lb = dalloc(sizeof(bf16_t) * (size_t)n), *flat = dfill(MS_DT_BF16, n, 0);
    CK(K->upload(CX, lf, hf, sizeof(float) * (size_t)n));
    CK(K->upload(CX, lb, hb, sizeof(bf16_t) * (size_t)n));
    kern_sample_t *hp = calloc((size_t)B, sizeof *hp), *sp = dalloc(sizeof *hp * (size_t)B);
    int32_t *tok = dalloc(sizeof(int32_t) * (size_t)B), *tid = dalloc(sizeof(int32_t) * (size_t)B * KERN_MAX_LOGPROBS);
    float *lp = dalloc(sizeof(float) * (size_t)B), *tlp = dalloc(sizeof(float) * (size_t)B * KERN_MAX_LOGPROBS);
    float *cast = dalloc(sizeof(float) * (size_t)n);
    char shape[64];
    double ms;
    snprintf(shape, sizeof shape, "[%d, %d]", B, V);
    TIME_MS(ms, K->cast(CX, lb, MS_DT_BF16, cast, MS_DT_F32, n));
    row("cast bf16->f32 (no longer before sample)", shape, ms, 6.0 * n, 0, 0);
    static const struct {
        const char *name;
        float temp, top_p;
        int top_k, nlp;
    } kinds[] = {{"greedy", 0, 1, 0, 0},       {"greedy + 5 logprobs", 0, 1, 0, 5}, {"T1.0", 1.0f, 1, 0, 0},
                 {"T0.7 top-p 0.95", 0.7f, 0.95f, 0, 0}, {"T0.7 top-k 50 top-p 0.95", 0.7f, 0.95f, 50, 0}};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        for (int i = 0; i < B; i++)
            hp[i] = (kern_sample_t){.temperature = kinds[k].temp, .top_p = kinds[k].top_p, .top_k = kinds[k].top_k,
                                    .n_logprobs = kinds[k].nlp, .seed = 1, .position = i, .mask_token = -1};
        CK(K->upload(CX, sp, hp, sizeof *hp * (size_t)B));
        char name[96];
        for (int f = 0; f < 3; f++) {
            const void *src = f == 0 ? (const void *)lb : f == 1 ? (const void *)lf : (const void *)flat;
            const ms_dtype_t dt = f == 1 ? MS_DT_F32 : MS_DT_BF16;
            if (f == 2 && kinds[k].temp <= 0) continue; /* flat logits only matter to a draw */
            snprintf(name, sizeof name, "sample %s, %s%s", kinds[k].name, f == 1 ? "f32" : "bf16",
                     f == 2 ? " flat (fallback)" : " peaked");
            TIME_MS(ms, K->sample(CX, src, dt, V, B, V, sp, tok, lp, tid, tlp));
            row(name, shape, ms, (f == 1 ? 4.0 : 2.0) * n, 0, 0);
        }
    }
    K->free(lf), K->free(lb), K->free(flat), K->free(sp), K->free(tok), K->free(tid), K->free(lp), K->free(tlp);
    K->free(cast);
    free(hf), free(hb), free(hp);
}

/* --mla-batch/--mla-ctx: mla_latent alone (the default kernel, mla_latent_wgmma.cu at R1's shapes) at decode
 * shapes — B sequences of one query row each over ctx positions, 64-token blocks, BF16 then FP8 KV — so long
 * contexts are timed without the whole op table. Each KV dtype's cache is filled through kv_store. */
static void bench_mla(int B, int ctx)
{
    char shape[160];
    float ms;
    bf16_t *q = dfill(MS_DT_BF16, (int64_t)B * H * (DN + DR), 0);
    float *qlat = dfill(MS_DT_F32, (int64_t)B * H * DC, 0.01f);
    bf16_t *olat = dalloc((size_t)B * H * DC * 2);
    for (int fp8 = 0; fp8 < 2; fp8++) {
        const int bs = 64, nbpp = (ctx + bs - 1) / bs, nblk = nbpp * B;
        const ms_dtype_t kdt = fp8 ? MS_DT_F8E4M3 : MS_DT_BF16;
        kern_kv_t kv = {.dtype = kdt, .d_c = DC, .d_r = DR, .block_size = bs, .n_blocks = nblk,
                        .row_bytes = kern_kv_row_bytes(kdt, DC, DR)};
        kv.data = dalloc((size_t)nblk * bs * kv.row_bytes);
        int32_t *hs = malloc(sizeof(int32_t) * (size_t)nblk * bs);
        for (int i = 0; i < nblk; i++) hs[i] = (int32_t)(((int64_t)i * 7 + 3) % nblk); /* scattered blocks */
        int32_t *bt = dints(hs, nblk);
        for (int c = 0; c < B; c++) { /* a sequence's rows, a chunk at a time through kv_store */
            const int nrow = nbpp * bs;
            for (int i = 0; i < nrow; i++) hs[i] = c * nrow + i;
            int32_t *sl = dints(hs, nrow);
            bf16_t *all = dfill(MS_DT_BF16, (int64_t)nrow * (DC + DR), 0);
            CK(K->kv_store(CX, &kv, all, DC + DR, all + DC, DC + DR, sl, nrow));
            CK(K->synchronize(CX));
            K->free(sl), K->free(all);
        }
        kern_attn_seq_t *hq = calloc((size_t)B, sizeof *hq);
        for (int i = 0; i < B; i++) hq[i] = (kern_attn_seq_t){.q_off = i, .n_q = 1, .pos0 = ctx - 1, .blk_off = i * nbpp};
        kern_attn_seq_t *sq = dalloc(sizeof *hq * (size_t)B);
        CK(K->upload(CX, sq, hq, sizeof *hq * (size_t)B));
        TIME_MS(ms, K->mla_latent(CX, qlat, MS_DT_F32, q + DN, H * (DN + DR), DN + DR, &kv, bt, sq, B, H, 0.1f, olat,
                                  MS_DT_BF16));
        snprintf(shape, sizeof shape, "%d seqs x %d ctx, %d heads, %s KV", B, ctx, H, fp8 ? "fp8" : "bf16");
        row("mla_latent", shape, ms, (double)B * ctx * kv.row_bytes + (double)B * H * (DC * 4 + DC * 2),
            2.0 * B * H * ctx * (2.0 * DC + DR), 0);
        K->free(kv.data), K->free(bt), K->free(sq);
        free(hs), free(hq);
    }
    K->free(q), K->free(qlat), K->free(olat);
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
