/* cpu.h — the CPU reference backend's entry points (one op per file) and the
 * few helpers they share. The CPU backend is the numerical spec: clarity and
 * exact rounding points first, then speed that keeps tests fast on 2 cores
 * (row-major data, contiguous inner loops, fp32 converted once per row). */
#ifndef MS_KERN_CPU_H
#define MS_KERN_CPU_H

#include "kernels/kernels.h"

#include <math.h>

/* memory (mem.c) */
ms_status_t kern_cpu_alloc(size_t bytes, void **out);
void kern_cpu_free(void *p);
ms_status_t kern_cpu_upload(kern_ctx_t *cx, void *dst, const void *src, size_t bytes);
ms_status_t kern_cpu_download(kern_ctx_t *cx, void *dst, const void *src, size_t bytes);
ms_status_t kern_cpu_copy(kern_ctx_t *cx, void *dst, const void *src, size_t bytes);
ms_status_t kern_cpu_memset(kern_ctx_t *cx, void *dst, int value, size_t bytes);
ms_status_t kern_cpu_synchronize(kern_ctx_t *cx);
ms_status_t kern_cpu_ctx_create(int device, size_t ws_bytes, kern_ctx_t **out);
ms_status_t kern_cpu_ctx_create_side(kern_ctx_t *main, size_t ws_bytes, kern_ctx_t **out);
void kern_cpu_ctx_destroy(kern_ctx_t *cx);
ms_status_t kern_cpu_event_create(kern_ctx_t *cx, kern_event_t *out);
void kern_cpu_event_destroy(kern_event_t ev);
ms_status_t kern_cpu_event_record(kern_ctx_t *cx, kern_event_t ev);
ms_status_t kern_cpu_event_wait(kern_ctx_t *cx, kern_event_t ev);
int kern_cpu_event_query(kern_event_t ev);
ms_status_t kern_cpu_ipc_export(void *base, void *handle);
ms_status_t kern_cpu_ipc_import(const void *handle, void **base);
void kern_cpu_ipc_close(void *base);
ms_status_t kern_cpu_host_alloc(size_t bytes, void **out);
void kern_cpu_host_free(void *p);
/* no graphs on the CPU backend: MS_ERR_UNSUPPORTED */
ms_status_t kern_cpu_graph_begin(kern_ctx_t *cx);
ms_status_t kern_cpu_graph_end(kern_ctx_t *cx, kern_graph_t *out);
ms_status_t kern_cpu_graph_launch(kern_ctx_t *cx, kern_graph_t g);
void kern_cpu_graph_destroy(kern_graph_t g);
int kern_cpu_device_count(void);
ms_status_t kern_cpu_mem_info(int device, size_t *free_bytes, size_t *total_bytes);
ms_status_t kern_cpu_fill_dummy(kern_ctx_t *cx, void *dst, ms_dtype_t dt, int64_t rows, int64_t cols, int64_t ld_pos,
                                int64_t pos0, uint64_t seed, float scale, float offset);

/* A data fault (kernels.h): OR `bit` into the context's fault word. Ops may
 * be called with a NULL context in unit tests; then the fault is dropped and
 * the op still treats the row as padding. */
static inline void kern_cpu_fault(kern_ctx_t *cx, uint32_t bit)
{
    if (cx && cx->fault) *cx->fault |= bit;
}

ms_status_t kern_cpu_embed(kern_ctx_t *cx, const int32_t *ids, int32_t n, const bf16_t *table, int64_t vocab,
                           int32_t dim, bf16_t *out);
ms_status_t kern_cpu_add(kern_ctx_t *cx, const bf16_t *a, const bf16_t *b, bf16_t *y, int64_t n);
ms_status_t kern_cpu_cast(kern_ctx_t *cx, const void *x, ms_dtype_t xdt, void *y, ms_dtype_t ydt, int64_t n);
ms_status_t kern_cpu_gather_rows(kern_ctx_t *cx, const void *src, const int32_t *idx, int32_t n, size_t row_bytes,
                                 void *dst);
ms_status_t kern_cpu_silu_mul(kern_ctx_t *cx, const bf16_t *gate, const bf16_t *up, bf16_t *out, int64_t n);
ms_status_t kern_cpu_rmsnorm(kern_ctx_t *cx, const bf16_t *x, int64_t ldx, const bf16_t *w, bf16_t *y, int64_t ldy,
                             int32_t rows, int32_t dim, float eps);
ms_status_t kern_cpu_add_rmsnorm(kern_ctx_t *cx, bf16_t *x, const bf16_t *res, const bf16_t *w, bf16_t *y, int32_t rows,
                                 int32_t dim, float eps);
ms_status_t kern_cpu_rmsnorm_quant(kern_ctx_t *cx, bf16_t *x, int64_t ldx, const bf16_t *res, const bf16_t *w,
                                   bf16_t *y, int64_t ldy, int32_t rows, int32_t dim, float eps, uint8_t *q,
                                   int64_t ldq, float *scale, int64_t lds);
ms_status_t kern_cpu_gemm_ex(kern_ctx_t *cx, const kern_gemm_t *g);
/* One plain GEMM (batch 1, no epilogue, natural strides): the table's gemm with a descriptor built here;
 * for ops that call a GEMM inside (moe_experts). */
ms_status_t kern_cpu_gemm(kern_ctx_t *cx, const void *x, ms_dtype_t xdt, int64_t ldx, const kern_mat_t *w, void *y,
                          ms_dtype_t ydt, int64_t ldy, int32_t m);
ms_status_t kern_cpu_act_quant(kern_ctx_t *cx, const bf16_t *x, int64_t ldx, int32_t rows, int32_t cols, uint8_t *q,
                               int64_t ldq, float *scale, int64_t lds);
ms_status_t kern_cpu_rope(kern_ctx_t *cx, bf16_t *x, int32_t rows, int32_t heads, int64_t ld_row, int64_t ld_head,
                          const int32_t *pos, const float *inv_freq, float attn_factor, int32_t dim,
                          int32_t interleaved);
ms_status_t kern_cpu_kv_store(kern_ctx_t *cx, const kern_kv_t *kv, const bf16_t *ckv, int64_t ld_ckv, const bf16_t *kpe,
                              int64_t ld_kpe, const int32_t *slots, int32_t n);
ms_status_t kern_cpu_kv_store_rope(kern_ctx_t *cx, const kern_kv_t *kv, const bf16_t *ckv, int64_t ld_ckv, bf16_t *kpe,
                                   int64_t ld_kpe, const int32_t *slots, int32_t n, const int32_t *pos,
                                   const float *inv_freq, float attn_factor, int32_t interleaved);
ms_status_t kern_cpu_kv_gather(kern_ctx_t *cx, const kern_kv_t *kv, const kern_attn_seq_t *seqs, int32_t n_seqs,
                               const int32_t *block_tables, bf16_t *out);
ms_status_t kern_cpu_mla_naive(kern_ctx_t *cx, const bf16_t *q, const bf16_t *kv, const bf16_t *kpe, int64_t ld_kpe,
                               const kern_attn_seq_t *seqs, int32_t n_seqs, int32_t heads, int32_t dn, int32_t dr,
                               int32_t dv, float scale, bf16_t *out);
ms_status_t kern_cpu_mla_latent(kern_ctx_t *cx, const void *q_lat, ms_dtype_t qdt, const bf16_t *q_pe, int64_t ld_pe,
                                int64_t ld_pe_head, const kern_kv_t *kv, const int32_t *block_tables,
                                const kern_attn_seq_t *seqs, int32_t n_seqs, int32_t heads, float scale, void *o_lat,
                                ms_dtype_t odt);
ms_status_t kern_cpu_moe_route(kern_ctx_t *cx, const float *logits, const float *bias, int32_t T, int32_t E,
                               int32_t n_group, int32_t topk_group, int32_t top_k, int32_t norm_topk_prob,
                               float scaling, int32_t *idx, float *w);
ms_status_t kern_cpu_moe_plan(kern_ctx_t *cx, const int32_t *idx, int32_t T, int32_t K, const kern_moe_place_t *pl,
                              int32_t *slot_of_pair, int32_t *rank_in_slot, int32_t *slot_counts, int64_t *load);
ms_status_t kern_cpu_moe_scatter(kern_ctx_t *cx, const bf16_t *x, int32_t T, int32_t K, int32_t D,
                                 const int32_t *slot_of_pair, const int32_t *rank_in_slot, const int32_t *slot_counts,
                                 int32_t slot0, int32_t n_local, int32_t cap, bf16_t *recv, int32_t *recv_count,
                                 int32_t *row_of_pair);
ms_status_t kern_cpu_moe_experts(kern_ctx_t *cx, const bf16_t *x, const int32_t *counts, int32_t n_local, int32_t cap,
                                 const kern_moe_slots_t *w, bf16_t *out, void *ws, size_t ws_bytes);
ms_status_t kern_cpu_moe_combine(kern_ctx_t *cx, const bf16_t *rows, const int32_t *row_of_pair, const int32_t *idx,
                                 const float *w, int32_t T, int32_t K, int32_t hidden, bf16_t *out);
ms_status_t kern_cpu_moe_combine_add(kern_ctx_t *cx, const bf16_t *rows, const int32_t *row_of_pair,
                                     const int32_t *idx, const float *w, int32_t T, int32_t K, int32_t hidden,
                                     const bf16_t *add, bf16_t *out);
ms_status_t kern_cpu_log_softmax(kern_ctx_t *cx, const float *x, int64_t ld, int32_t rows, int32_t n, float *y);
ms_status_t kern_cpu_sample(kern_ctx_t *cx, const void *logits, ms_dtype_t dt, int64_t ld, int32_t rows, int32_t vocab,
                            const kern_sample_t *params, int32_t *tokens, float *logprob, int32_t *top_ids,
                            float *top_lp);
ms_status_t kern_cpu_mtp_prep(kern_ctx_t *cx, const kern_mtp_prep_t *p);
ms_status_t kern_cpu_logits_adjust(kern_ctx_t *cx, float *logits, int64_t ld, int32_t rows, int32_t vocab,
                                   const kern_adjust_t *adj, kern_pen_t *lists, int64_t lists_cap,
                                   const kern_pen_set_t *sets, int32_t n_sets);

/* ---- shared helpers (gemm.c) ---- */

/* fp32 value of each e4m3 code (gemm.c) */
const float *kern_cpu_fp8_lut(void);
/* One element of the gated activation with transformers' two roundings (silu_mul and the GEMM epilogue):
 * g and u are the bf16 gate and up values. */
static inline bf16_t kern_cpu_silu_mul1(float g, float u)
{
    float a = bf16_round(g / (1.0f + expf(-g)));
    return f32_to_bf16(a * u);
}
/* One RMSNorm row as the rmsnorm op (rmsnorm.c; add_rmsnorm shares it). */
void kern_cpu_rmsnorm_row(const bf16_t *x, const bf16_t *w, bf16_t *y, int32_t dim, float eps);
/* DeepSeek's act_quant rule for one group of n <= 128 values: codes into q, returns the scale (act_quant.c;
 * the FP8 KV row shares it). */
float kern_cpu_quant_group(const float *x, int32_t n, uint8_t *q);
/* Read cache row `row` of kv as d_c + d_r fp32 values (FP8 dequantized to bf16 values); write one
 * (kv_store.c, which owns the row layout). */
void kern_cpu_kv_row_read(const kern_kv_t *kv, int64_t row, float *out);
void kern_cpu_kv_row_write(const kern_kv_t *kv, int64_t row, const bf16_t *ckv, const bf16_t *kpe);
/* Cache row of position p of a sequence with block table bt, or -1 with KERN_FAULT_BLOCK raised when its
 * block id is outside the cache (kv_store.c). */
int64_t kern_cpu_kv_slot(kern_ctx_t *cx, const kern_kv_t *kv, const int32_t *bt, int32_t p);
/* Shape errors of a kern_kv_t (dtype, row bytes, block size), named after `op`. */
ms_status_t kern_cpu_kv_check(const kern_kv_t *kv, const char *op);
/* Dot product with 8 partial sums (vectorizable at -O2). */
static inline float kern_cpu_dot(const float *a, const float *b, int32_t n)
{
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int32_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}
static inline void kern_cpu_bf16_to_f32(const bf16_t *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = bf16_to_f32(x[i]);
}

#endif
