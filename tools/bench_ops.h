/* bench_ops.h — what moeserve-bench-ops' files share (bench_ops.c: options, ceilings, helpers;
 * bench_ops_shapes.c: the op tables at R1 decode shapes, the experts, the sampler, mla_latent alone;
 * bench_ops_step.c: one decode step of a model by op, eager and as a graph). CUDA builds only. */
#ifndef MS_TOOLS_BENCH_OPS_H
#define MS_TOOLS_BENCH_OPS_H

#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/kernels.h"

extern const kern_ops_t kern_cuda_ops;
extern const kern_ops_t *K; /* &kern_cuda_ops */
extern kern_ctx_t *CX;
extern int REPS;
extern double BW, PEAK_BF16, PEAK_FP8; /* ceilings of this run: bytes/s, flop/s */
extern cudaEvent_t ev0, ev1;
extern int g_dense, g_mtp, g_trace; /* --dense-compute (-1 auto), --mtp N, --trace-faults (bench_ops_step.c) */

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

/* R1 shapes */
enum { D = 7168, V = 129280, H = 128, DN = 128, DR = 64, DV = 128, DC = 512, QL = 1536, IM = 2048, INTER = 18432,
       E = 256, TOPK = 8 };

void *dalloc(size_t n);
void *dfill(ms_dtype_t dt, int64_t n, float f32val);
int32_t *dints(const int32_t *h, int n);
void row(const char *op, const char *shape, double ms, double bytes, double flops, int fp8);
void ceilings(void);
void bench_batch(int B, int ctx);
void bench_experts(const int *rows, int n);
void bench_sample(int B);
void bench_mla(int B, int ctx);
int bench_step(const char *model, int B, int ctx, int kv_fp8, int dummy, int moe_cap, int max_tok, int moe_fp8,
               int graphs);

#endif
