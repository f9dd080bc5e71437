/* ops.c — the CUDA backend's ops table. Memory, streams, embed and rmsnorm
 * run on the GPU (the .cu files); every other op is not written yet and
 * returns MS_ERR_UNSUPPORTED with the op's name, so a model that needs it
 * fails at its first step with a clear message instead of a NULL call. */
#include "cuda.h"

#define UNSUPPORTED(op) MS_ERR(MS_ERR_UNSUPPORTED, "cuda backend: op '%s' is not implemented yet", op)

static ms_status_t cu_add(kern_ctx_t *cx, const bf16_t *a, const bf16_t *b, bf16_t *y, int64_t n)
{
    return UNSUPPORTED("add");
}
static ms_status_t cu_cast(kern_ctx_t *cx, const void *x, ms_dtype_t xdt, void *y, ms_dtype_t ydt, int64_t n)
{
    return UNSUPPORTED("cast");
}
static ms_status_t cu_gather_rows(kern_ctx_t *cx, const void *src, const int32_t *idx, int32_t n, size_t row_bytes,
                                  void *dst)
{
    return UNSUPPORTED("gather_rows");
}
static ms_status_t cu_silu_mul(kern_ctx_t *cx, const bf16_t *gate, const bf16_t *up, bf16_t *out, int64_t n)
{
    return UNSUPPORTED("silu_mul");
}
static ms_status_t cu_gemm(kern_ctx_t *cx, const void *x, ms_dtype_t xdt, int64_t ldx, const kern_mat_t *w, void *y,
                           ms_dtype_t ydt, int64_t ldy, int32_t m)
{
    return UNSUPPORTED("gemm");
}
static ms_status_t cu_rope(kern_ctx_t *cx, bf16_t *x, int32_t rows, int32_t heads, int64_t ld_row, int64_t ld_head,
                           const int32_t *pos, const float *inv_freq, float attn_factor, int32_t dim,
                           int32_t interleaved)
{
    return UNSUPPORTED("rope");
}
static ms_status_t cu_kv_store(kern_ctx_t *cx, bf16_t *cache, const bf16_t *ckv, int64_t ld_ckv, const bf16_t *kpe,
                               int64_t ld_kpe, const int32_t *slots, int32_t n, int32_t d_c, int32_t d_r)
{
    return UNSUPPORTED("kv_store");
}
static ms_status_t cu_kv_gather(kern_ctx_t *cx, const bf16_t *cache, int32_t block_size, int32_t row_width,
                                const kern_attn_seq_t *seqs, int32_t n_seqs, const int32_t *block_tables, bf16_t *out)
{
    return UNSUPPORTED("kv_gather");
}
static ms_status_t cu_mla_naive(kern_ctx_t *cx, const bf16_t *q, const bf16_t *kv, const bf16_t *kpe, int64_t ld_kpe,
                                const kern_attn_seq_t *seqs, int32_t n_seqs, int32_t heads, int32_t dn, int32_t dr,
                                int32_t dv, float scale, bf16_t *out)
{
    return UNSUPPORTED("mla_naive");
}
static ms_status_t cu_mla_absorbed(kern_ctx_t *cx, const bf16_t *q, const bf16_t *cache, int32_t block_size,
                                   const int32_t *block_tables, const kern_attn_seq_t *seqs, int32_t n_seqs,
                                   const kern_mat_t *kv_b, int32_t heads, int32_t dn, int32_t dr, int32_t dv,
                                   int32_t d_c, float scale, bf16_t *out)
{
    return UNSUPPORTED("mla_absorbed");
}
static ms_status_t cu_moe_route(kern_ctx_t *cx, const float *logits, const float *bias, int32_t T, int32_t E,
                                int32_t n_group, int32_t topk_group, int32_t top_k, int32_t norm_topk_prob,
                                float scaling, int32_t *idx, float *w)
{
    return UNSUPPORTED("moe_route");
}
static ms_status_t cu_moe_plan(kern_ctx_t *cx, const int32_t *idx, int32_t T, int32_t K, const int32_t *e2slot,
                               int32_t E, int32_t n_slots, int32_t *tok_of_sent, int32_t *pos_of_pair,
                               int32_t *slot_of_sent, int32_t *slot_counts)
{
    return UNSUPPORTED("moe_plan");
}
static ms_status_t cu_moe_experts(kern_ctx_t *cx, const bf16_t *x, const int32_t *slot_of_row, int32_t R,
                                  int32_t slot_base, int32_t n_local, const kern_mat_t *gate, const kern_mat_t *up,
                                  const kern_mat_t *down, bf16_t *out, void *ws, size_t ws_bytes)
{
    return UNSUPPORTED("moe_experts");
}
static ms_status_t cu_moe_combine(kern_ctx_t *cx, const bf16_t *rows, const int32_t *pos_of_pair, const int32_t *idx,
                                  const float *w, int32_t T, int32_t K, int32_t hidden, bf16_t *out)
{
    return UNSUPPORTED("moe_combine");
}
static ms_status_t cu_log_softmax(kern_ctx_t *cx, const float *x, int64_t ld, int32_t rows, int32_t n, float *y)
{
    return UNSUPPORTED("log_softmax");
}
static ms_status_t cu_sample(kern_ctx_t *cx, const float *logits, int64_t ld, int32_t rows, int32_t vocab,
                             const kern_sample_t *params, int32_t *tokens, float *logprob, int32_t *top_ids,
                             float *top_lp)
{
    return UNSUPPORTED("sample");
}

/* Keep in step with the table below: an op listed here has a GPU kernel. */
static int cu_supports_op(kern_op_t op)
{
    switch (op) {
    case KERN_OP_EMBED:
    case KERN_OP_RMSNORM: return 1;
    default: return 0;
    }
}

const kern_ops_t kern_cuda_ops = {
    .name = "cuda",
    .alloc = kern_cuda_alloc,
    .free = kern_cuda_free,
    .upload = kern_cuda_upload,
    .download = kern_cuda_download,
    .copy = kern_cuda_copy,
    .memset = kern_cuda_memset,
    .synchronize = kern_cuda_synchronize,
    .ctx_create = kern_cuda_ctx_create,
    .ctx_create_side = kern_cuda_ctx_create_side,
    .ctx_destroy = kern_cuda_ctx_destroy,
    .event_create = kern_cuda_event_create,
    .event_destroy = kern_cuda_event_destroy,
    .event_record = kern_cuda_event_record,
    .event_wait = kern_cuda_event_wait,
    .host_alloc = kern_cuda_host_alloc,
    .host_free = kern_cuda_host_free,
    .supports_op = cu_supports_op,
    .embed = kern_cuda_embed,
    .add = cu_add,
    .cast = cu_cast,
    .gather_rows = cu_gather_rows,
    .silu_mul = cu_silu_mul,
    .rmsnorm = kern_cuda_rmsnorm,
    .gemm = cu_gemm,
    .rope = cu_rope,
    .kv_store = cu_kv_store,
    .kv_gather = cu_kv_gather,
    .mla_naive = cu_mla_naive,
    .mla_absorbed = cu_mla_absorbed,
    .moe_route = cu_moe_route,
    .moe_plan = cu_moe_plan,
    .moe_experts = cu_moe_experts,
    .moe_combine = cu_moe_combine,
    .log_softmax = cu_log_softmax,
    .sample = cu_sample,
};
