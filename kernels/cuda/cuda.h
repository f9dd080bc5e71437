/* cuda.h — entry points of the CUDA backend (extern "C", defined in the .cu
 * files) and CUDA_CHECK, which turns a cudaError_t into MS_ERR_CUDA with
 * file:line logged once. ops.c assembles them into kern_cuda_ops; ops not yet
 * written on the GPU return MS_ERR_UNSUPPORTED there. One op per .cu file;
 * device helpers shared by the kernels are in common.cuh, the cuBLASLt layer
 * in blas.h. */
#ifndef MS_KERN_CUDA_H
#define MS_KERN_CUDA_H

#include "kernels/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

ms_status_t kern_cuda_alloc(size_t bytes, void **out);
void kern_cuda_free(void *p);
ms_status_t kern_cuda_upload(kern_ctx_t *cx, void *dst, const void *src, size_t bytes);
ms_status_t kern_cuda_download(kern_ctx_t *cx, void *dst, const void *src, size_t bytes);
ms_status_t kern_cuda_copy(kern_ctx_t *cx, void *dst, const void *src, size_t bytes);
ms_status_t kern_cuda_memset(kern_ctx_t *cx, void *dst, int value, size_t bytes);
ms_status_t kern_cuda_synchronize(kern_ctx_t *cx);
ms_status_t kern_cuda_ctx_create(int device, size_t ws_bytes, kern_ctx_t **out);
ms_status_t kern_cuda_ctx_create_side(kern_ctx_t *main, size_t ws_bytes, kern_ctx_t **out);
void kern_cuda_ctx_destroy(kern_ctx_t *cx);
ms_status_t kern_cuda_event_create(kern_ctx_t *cx, kern_event_t *out);
void kern_cuda_event_destroy(kern_event_t ev);
ms_status_t kern_cuda_event_record(kern_ctx_t *cx, kern_event_t ev);
ms_status_t kern_cuda_event_wait(kern_ctx_t *cx, kern_event_t ev);
int kern_cuda_event_query(kern_event_t ev);
ms_status_t kern_cuda_ipc_export(void *base, void *handle);
ms_status_t kern_cuda_ipc_import(const void *handle, void **base);
void kern_cuda_ipc_close(void *base);
ms_status_t kern_cuda_host_alloc(size_t bytes, void **out);
void kern_cuda_host_free(void *p);
ms_status_t kern_cuda_graph_begin(kern_ctx_t *cx);
ms_status_t kern_cuda_graph_end(kern_ctx_t *cx, kern_graph_t *out);
ms_status_t kern_cuda_graph_launch(kern_ctx_t *cx, kern_graph_t g);
void kern_cuda_graph_destroy(kern_graph_t g);
int kern_cuda_device_count(void);
ms_status_t kern_cuda_mem_info(int device, size_t *free_bytes, size_t *total_bytes);
ms_status_t kern_cuda_fill_dummy(kern_ctx_t *cx, void *dst, ms_dtype_t dt, int64_t rows, int64_t cols, int64_t ld_pos,
                                 int64_t pos0, uint64_t seed, float scale, float offset);
/* Minimum workspace of every context (mem.cu): cuBLASLt scratch plus the
 * fp8 dequantization tiles of gemm.cu. */
#define KERN_CUDA_WS_MIN ((size_t)96 << 20)
/* The first bytes of a context's workspace are cuBLASLt's; ops that need
 * scratch of their own take it after these (gemm.cu, moe_experts.cu). */
#define KERN_CUDA_BLAS_WS ((size_t)32 << 20)
/* Tile counters each context holds for the stream-K decode GEMMs (kernels/cuda/stream_k.cuh): their most tiles. */
#define KERN_CUDA_SK_COUNTERS 4096

/* the cuBLASLt handle of a main context (blas.cu) */
ms_status_t kern_cuda_blas_create(void **out);
void kern_cuda_blas_destroy(void *h);

extern const kern_ops_t kern_cuda_ops;

ms_status_t kern_cuda_embed(kern_ctx_t *cx, const int32_t *ids, int32_t n, const bf16_t *table, int64_t vocab,
                            int32_t dim, bf16_t *out);
ms_status_t kern_cuda_rmsnorm(kern_ctx_t *cx, const bf16_t *x, int64_t ldx, const bf16_t *w, bf16_t *y,
                              int64_t ldy, int32_t rows, int32_t dim, float eps);
ms_status_t kern_cuda_add(kern_ctx_t *cx, const bf16_t *a, const bf16_t *b, bf16_t *y, int64_t n);
ms_status_t kern_cuda_cast(kern_ctx_t *cx, const void *x, ms_dtype_t xdt, void *y, ms_dtype_t ydt, int64_t n);
ms_status_t kern_cuda_gather_rows(kern_ctx_t *cx, const void *src, const int32_t *idx, int32_t n, size_t row_bytes,
                                  void *dst);
ms_status_t kern_cuda_silu_mul(kern_ctx_t *cx, const bf16_t *gate, const bf16_t *up, bf16_t *out, int64_t n);
ms_status_t kern_cuda_add_rmsnorm(kern_ctx_t *cx, bf16_t *x, const bf16_t *res, const bf16_t *w, bf16_t *y,
                                  int32_t rows, int32_t dim, float eps);
ms_status_t kern_cuda_rmsnorm_quant(kern_ctx_t *cx, bf16_t *x, int64_t ldx, const bf16_t *res, const bf16_t *w,
                                    bf16_t *y, int64_t ldy, int32_t rows, int32_t dim, float eps, uint8_t *q,
                                    int64_t ldq, float *scale, int64_t lds);
/* the gemm op (kern_gemm_t) */
ms_status_t kern_cuda_gemm(kern_ctx_t *cx, const kern_gemm_t *g);
/* The gemm op's engine with what the op derives made explicit, for ops that run GEMMs inside
 * (moe_experts): bs_wscale = floats between batch b's FP8 scale grids (slot records are not stacked
 * matrices); scratch = device memory for the silu_mul sums and dequantized FP8 tiles (cuBLASLt uses
 * the first KERN_CUDA_BLAS_WS of cx->ws, which scratch must not overlap). g is not checked again. */
ms_status_t kern_cuda_gemm_run(kern_ctx_t *cx, const kern_gemm_t *g, int64_t bs_wscale, void *scratch,
                               size_t scratch_bytes);
/* The dequant mode's decode kernel (gemm_fp8w.cu): y [m, ldy] = x [m, ldx] bf16 · Wᵀ, W [n, k] e4m3 rows ldw
 * bytes apart with scale_inv ws [ceil(n/128), ceil(ldw/128)]; y BF16 or F32; scratch holds the stream-K
 * partial tiles. _fits says whether a call qualifies (m <= 128, k % 128 == 0, 16-byte rows, enough scratch). */
int kern_cuda_gemm_fp8w_fits(int32_t m, int32_t n, int32_t k, int64_t ldx, int64_t ldw, const void *x, const void *w,
                             ms_dtype_t ydt, size_t scratch_bytes);
ms_status_t kern_cuda_gemm_fp8w(kern_ctx_t *cx, const bf16_t *x, int64_t ldx, int32_t m, const uint8_t *w,
                                const float *ws, int64_t ldw, int32_t n, int32_t k, void *y, ms_dtype_t ydt,
                                int64_t ldy, void *scratch, size_t scratch_bytes);
/* The fp8 mode's decode kernel (gemm_fp8x.cu): y [m, ldy] bf16 = (xq, xs)·Wᵀ, xq [m, k] e4m3 with act_quant's
 * scales xs [m, ld_xs], W [n, k] e4m3 with scale_inv ws [ceil(n/128), k/128]; silu: W is a fused gate|up of
 * n = 2*inter rows and y gets the inter columns of SiLU·mul. scratch holds the stream-K partial tiles. _fits
 * says whether a call qualifies (m <= 128, k % 128 == 0, 16-byte aligned x and W, enough scratch). */
int kern_cuda_gemm_fp8x_fits(int32_t m, int32_t n, int32_t k, int silu, const void *x, const float *xs, int64_t ld_xs,
                             const void *w, size_t scratch_bytes);
/* Whether the stream-K kernel measured faster than the grouped kernel at m rows and depth k (gemm_fp8x.cu). */
int kern_cuda_gemm_fp8x_wins(int32_t m, int32_t k);
ms_status_t kern_cuda_gemm_fp8x(kern_ctx_t *cx, const uint8_t *xq, const float *xs, int64_t ld_xs, int32_t m,
                                const uint8_t *w, const float *ws, int32_t n, int32_t k, int silu, bf16_t *y,
                                int64_t ldy, void *scratch, size_t scratch_bytes);
/* y[b, i, j] = bf16(bf16(silu(t[b, i, j])) * t[b, i, n + j]) for t [batch, m, 2n] bf16 (the epilogue pass) */
ms_status_t kern_cuda_gemm_silu_pass(kern_ctx_t *cx, const bf16_t *t, int32_t m, int32_t n, int32_t batch, bf16_t *y,
                                     int64_t ldy, int64_t bsy);
/* act_quant as the ops table's op (act_quant_op.cu; act_quant.cu is the MoE path's masked variant) */
ms_status_t kern_cuda_act_quant_op(kern_ctx_t *cx, const bf16_t *x, int64_t ldx, int32_t rows, int32_t cols,
                                   uint8_t *q, int64_t ldq, float *scale, int64_t lds);
ms_status_t kern_cuda_rope(kern_ctx_t *cx, bf16_t *x, int32_t rows, int32_t heads, int64_t ld_row, int64_t ld_head,
                           const int32_t *pos, const float *inv_freq, float attn_factor, int32_t dim,
                           int32_t interleaved);
ms_status_t kern_cuda_kv_store_rope(kern_ctx_t *cx, const kern_kv_t *kv, const bf16_t *ckv, int64_t ld_ckv,
                                    bf16_t *kpe, int64_t ld_kpe, const int32_t *slots, int32_t n, const int32_t *pos,
                                    const float *inv_freq, float attn_factor, int32_t interleaved);
ms_status_t kern_cuda_kv_store(kern_ctx_t *cx, const kern_kv_t *kv, const bf16_t *ckv, int64_t ld_ckv,
                               const bf16_t *kpe, int64_t ld_kpe, const int32_t *slots, int32_t n);
/* the KV layout checks kv_store and kv_gather share (kv_store.cu) */
ms_status_t kern_cuda_kv_check(const kern_kv_t *kv, const char *op);
ms_status_t kern_cuda_kv_gather(kern_ctx_t *cx, const kern_kv_t *kv, const kern_attn_seq_t *seqs, int32_t n_seqs,
                                const int32_t *block_tables, bf16_t *out);
ms_status_t kern_cuda_mla_naive(kern_ctx_t *cx, const bf16_t *q, const bf16_t *kv, const bf16_t *kpe, int64_t ld_kpe,
                                const kern_attn_seq_t *seqs, int32_t n_seqs, int32_t heads, int32_t dn, int32_t dr,
                                int32_t dv, float scale, bf16_t *out);
ms_status_t kern_cuda_mla_latent(kern_ctx_t *cx, const void *q_lat, ms_dtype_t qdt, const bf16_t *q_pe, int64_t ld_pe,
                                 int64_t ld_pe_head, const kern_kv_t *kv, const int32_t *block_tables,
                                 const kern_attn_seq_t *seqs, int32_t n_seqs, int32_t heads, float scale,
                                 void *o_lat, ms_dtype_t odt);
ms_status_t kern_cuda_moe_plan(kern_ctx_t *cx, const int32_t *idx, int32_t T, int32_t K, const kern_moe_place_t *pl,
                               int32_t *slot_of_pair, int32_t *rank_in_slot, int32_t *slot_counts, int64_t *load);
ms_status_t kern_cuda_moe_scatter(kern_ctx_t *cx, const bf16_t *x, int32_t T, int32_t K, int32_t D,
                                  const int32_t *slot_of_pair, const int32_t *rank_in_slot,
                                  const int32_t *slot_counts, int32_t slot0, int32_t n_local, int32_t cap,
                                  bf16_t *recv, int32_t *recv_count, int32_t *row_of_pair);
ms_status_t kern_cuda_moe_experts(kern_ctx_t *cx, const bf16_t *x, const int32_t *counts, int32_t n_local,
                                  int32_t cap, const kern_moe_slots_t *w, bf16_t *out, void *ws, size_t ws_bytes);
ms_status_t kern_cuda_moe_combine(kern_ctx_t *cx, const bf16_t *rows, const int32_t *row_of_pair, const int32_t *idx,
                                  const float *w, int32_t T, int32_t K, int32_t hidden, bf16_t *out);
ms_status_t kern_cuda_moe_combine_add(kern_ctx_t *cx, const bf16_t *rows, const int32_t *row_of_pair,
                                      const int32_t *idx, const float *w, int32_t T, int32_t K, int32_t hidden,
                                      const bf16_t *add, bf16_t *out);
ms_status_t kern_cuda_moe_route(kern_ctx_t *cx, const float *logits, const float *bias, int32_t T, int32_t E,
                                int32_t n_group, int32_t topk_group, int32_t top_k, int32_t norm_topk_prob,
                                float scaling, int32_t *idx, float *w);
ms_status_t kern_cuda_log_softmax(kern_ctx_t *cx, const float *x, int64_t ld, int32_t rows, int32_t n, float *y);
ms_status_t kern_cuda_mtp_prep(kern_ctx_t *cx, const kern_mtp_prep_t *p);
ms_status_t kern_cuda_logits_adjust(kern_ctx_t *cx, float *logits, int64_t ld, int32_t rows, int32_t vocab,
                                    const kern_adjust_t *adj, kern_pen_t *lists, int64_t lists_cap,
                                    const kern_pen_set_t *sets, int32_t n_sets);
ms_status_t kern_cuda_sample(kern_ctx_t *cx, const void *logits, ms_dtype_t dt, int64_t ld, int32_t rows, int32_t vocab,
                             const kern_sample_t *params, int32_t *tokens, float *logprob, int32_t *top_ids,
                             float *top_lp);

#ifdef __cplusplus
}
#endif

#ifdef __CUDACC__
#define CUDA_CHECK(call)                                                                              \
    do {                                                                                              \
        cudaError_t ms_cu_rc_ = (call);                                                               \
        if (ms_cu_rc_ != cudaSuccess)                                                                 \
            return MS_ERR(MS_ERR_CUDA, "%s failed: %s", #call, cudaGetErrorString(ms_cu_rc_));        \
    } while (0)
#endif

#endif
