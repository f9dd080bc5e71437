/* ops.c — the CUDA backend's ops table. Memory, streams and the ops listed in
 * cu_supports_op run on the GPU (one .cu file each); the rest (absorbed MLA,
 * MoE plan/experts/combine, whose signatures are still changing) are not
 * written yet and return MS_ERR_UNSUPPORTED with the op's name, so an engine
 * that needs one is rejected at creation instead of calling NULL. */
#include "cuda.h"

#define UNSUPPORTED(op) MS_ERR(MS_ERR_UNSUPPORTED, "cuda backend: op '%s' is not implemented yet", op)

/* Adapters from the descriptor signatures of kernels.h to the GPU kernels
 * written against the earlier positional ones: each takes the case its kernel
 * implements exactly and answers UNSUPPORTED (naming what is missing) for the
 * rest, never a silently different result. */
static ms_status_t cu_gemm(kern_ctx_t *cx, const kern_gemm_t *g)
{
    const int32_t batch = g->batch > 1 ? g->batch : 1;
    if (g->epi != KERN_EPI_NONE || g->w_trans || g->xdt == MS_DT_F8E4M3 || (g->ldw && g->ldw != g->w->cols))
        return UNSUPPORTED("gemm (epilogue, transposed, strided or FP8-activation mode)");
    for (int32_t b = 0; b < batch; b++) {
        const size_t xe = ms_dtype_size(g->xdt), ye = ms_dtype_size(g->ydt), we = ms_dtype_size(g->w->dtype);
        kern_mat_t w = *g->w;
        w.data = (const char *)g->w->data + (size_t)b * (size_t)g->bsw * we;
        if (b && g->bsw && w.dtype == MS_DT_F8E4M3)
            w.scale_inv = g->w->scale_inv + (size_t)b * kern_fp8_blocks(w.rows) * kern_fp8_blocks(w.cols);
        MS_TRY(kern_cuda_gemm(cx, (const char *)g->x + (size_t)b * (size_t)g->bsx * xe, g->xdt, g->ldx, &w,
                              (char *)g->y + (size_t)b * (size_t)g->bsy * ye, g->ydt, g->ldy, g->m));
    }
    return MS_OK;
}
static ms_status_t cu_add_rmsnorm(kern_ctx_t *cx, bf16_t *x, const bf16_t *res, const bf16_t *w, bf16_t *y,
                                  int32_t rows, int32_t dim, float eps)
{
    /* add then rmsnorm: both exact ops, so the pair is bit-identical to the fused CPU op */
    MS_TRY(kern_cuda_add(cx, x, res, x, (int64_t)rows * dim));
    return kern_cuda_rmsnorm(cx, x, dim, w, y, dim, rows, dim, eps);
}
static ms_status_t cu_act_quant(kern_ctx_t *cx, const bf16_t *x, int64_t ldx, int32_t rows, int32_t cols, uint8_t *q,
                                int64_t ldq, float *scale, int64_t lds)
{
    return UNSUPPORTED("act_quant");
}
static ms_status_t cu_mla_latent(kern_ctx_t *cx, const void *q_lat, ms_dtype_t qdt, const bf16_t *q_pe, int64_t ld_pe,
                                 int64_t ld_pe_head, const kern_kv_t *kv, const int32_t *block_tables,
                                 const kern_attn_seq_t *seqs, int32_t n_seqs, int32_t heads, float scale, void *o_lat,
                                 ms_dtype_t odt)
{
    return UNSUPPORTED("mla_latent");
}
static ms_status_t cu_moe_plan(kern_ctx_t *cx, const int32_t *idx, int32_t T, int32_t K, const kern_moe_place_t *pl,
                               int32_t *slot_of_pair, int32_t *rank_in_slot, int32_t *slot_counts, int64_t *load)
{
    return UNSUPPORTED("moe_plan");
}
static ms_status_t cu_moe_scatter(kern_ctx_t *cx, const bf16_t *x, int32_t T, int32_t K, int32_t D,
                                  const int32_t *slot_of_pair, const int32_t *rank_in_slot, const int32_t *slot_counts,
                                  int32_t slot0, int32_t n_local, int32_t cap, bf16_t *recv, int32_t *recv_count,
                                  int32_t *row_of_pair)
{
    return UNSUPPORTED("moe_scatter");
}
static ms_status_t cu_moe_experts(kern_ctx_t *cx, const bf16_t *x, const int32_t *counts, int32_t n_local, int32_t cap,
                                  const kern_moe_slots_t *w, bf16_t *out, void *ws, size_t ws_bytes)
{
    return UNSUPPORTED("moe_experts");
}
static ms_status_t cu_moe_combine(kern_ctx_t *cx, const bf16_t *rows, const int32_t *row_of_pair, const int32_t *idx,
                                  const float *w, int32_t T, int32_t K, int32_t hidden, bf16_t *out)
{
    return UNSUPPORTED("moe_combine");
}

/* Keep in step with the table below: an op listed here has a GPU kernel. */
static int cu_supports_op(kern_op_t op)
{
    switch (op) {
    case KERN_OP_EMBED:
    case KERN_OP_ADD:
    case KERN_OP_CAST:
    case KERN_OP_GATHER_ROWS:
    case KERN_OP_SILU_MUL:
    case KERN_OP_RMSNORM:
    case KERN_OP_ADD_RMSNORM:
    case KERN_OP_GEMM:
    case KERN_OP_ROPE:
    case KERN_OP_KV_STORE:
    case KERN_OP_KV_GATHER:
    case KERN_OP_MLA_NAIVE:
    case KERN_OP_MOE_ROUTE:
    case KERN_OP_LOG_SOFTMAX:
    case KERN_OP_SAMPLE: return 1;
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
    .add = kern_cuda_add,
    .cast = kern_cuda_cast,
    .gather_rows = kern_cuda_gather_rows,
    .silu_mul = kern_cuda_silu_mul,
    .rmsnorm = kern_cuda_rmsnorm,
    .add_rmsnorm = cu_add_rmsnorm,
    .gemm = cu_gemm,
    .act_quant = cu_act_quant,
    .rope = kern_cuda_rope,
    .kv_store = kern_cuda_kv_store,
    .kv_gather = kern_cuda_kv_gather,
    .mla_naive = kern_cuda_mla_naive,
    .mla_latent = cu_mla_latent,
    .moe_route = kern_cuda_moe_route,
    .moe_plan = cu_moe_plan,
    .moe_scatter = cu_moe_scatter,
    .moe_experts = cu_moe_experts,
    .moe_combine = cu_moe_combine,
    .log_softmax = kern_cuda_log_softmax,
    .sample = kern_cuda_sample,
};
