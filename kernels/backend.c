/* backend.c — pick a kernels backend by name. The CUDA table exists only in
 * builds with nvcc (MS_HAVE_CUDA); asking for it elsewhere is a clear error. */
#include "kernels/kernels.h"
#include "ms_build_config.h"

#include <string.h>

#if MS_HAVE_CUDA
extern const kern_ops_t kern_cuda_ops;
#endif

ms_status_t kern_backend_get(const char *name, const kern_ops_t **out)
{
    if (!name || !strcmp(name, "cpu")) {
        *out = &kern_cpu_ops;
        return MS_OK;
    }
    if (!strcmp(name, "cuda")) {
#if MS_HAVE_CUDA
        *out = &kern_cuda_ops;
        return MS_OK;
#else
        return MS_ERR(MS_ERR_UNSUPPORTED, "kernels backend 'cuda' is not compiled in (build with -Dcuda=enabled)");
#endif
    }
    return MS_ERR(MS_ERR_INVALID, "unknown kernels backend '%s' (expected cpu or cuda)", name);
}

int kern_backend_devices(const char *name)
{
    if (!name || !strcmp(name, "cpu")) return kern_cpu_ops.device_count ? kern_cpu_ops.device_count() : 1;
#if MS_HAVE_CUDA
    if (!strcmp(name, "cuda")) return kern_cuda_ops.device_count();
#endif
    return 0;
}

const char *kern_op_name(kern_op_t op)
{
    static const char *const names[KERN_N_OPS] = {
        [KERN_OP_EMBED] = "embed", [KERN_OP_ADD] = "add", [KERN_OP_CAST] = "cast",
        [KERN_OP_GATHER_ROWS] = "gather_rows", [KERN_OP_SILU_MUL] = "silu_mul", [KERN_OP_RMSNORM] = "rmsnorm",
        [KERN_OP_ADD_RMSNORM] = "add_rmsnorm", [KERN_OP_GEMM] = "gemm", [KERN_OP_ACT_QUANT] = "act_quant",
        [KERN_OP_ROPE] = "rope", [KERN_OP_KV_STORE] = "kv_store", [KERN_OP_KV_GATHER] = "kv_gather",
        [KERN_OP_MLA_NAIVE] = "mla_naive", [KERN_OP_MLA_LATENT] = "mla_latent",
        [KERN_OP_MOE_ROUTE] = "moe_route", [KERN_OP_MOE_PLAN] = "moe_plan", [KERN_OP_MOE_SCATTER] = "moe_scatter",
        [KERN_OP_MOE_EXPERTS] = "moe_experts", [KERN_OP_MOE_COMBINE] = "moe_combine",
        [KERN_OP_LOG_SOFTMAX] = "log_softmax", [KERN_OP_SAMPLE] = "sample",
        [KERN_OP_LOGITS_ADJUST] = "logits_adjust", [KERN_OP_MTP_PREP] = "mtp_prep",
        [KERN_OP_RMSNORM_QUANT] = "rmsnorm_quant", [KERN_OP_MOE_COMBINE_ADD] = "moe_combine_add",
        [KERN_OP_KV_STORE_ROPE] = "kv_store_rope",
    };
    return (op >= 0 && op < KERN_N_OPS && names[op]) ? names[op] : "?";
}

ms_status_t kern_require_ops(const kern_ops_t *k, const kern_op_t *ops, int n)
{
    for (int i = 0; i < n; i++)
        if (!k->supports_op(ops[i]))
            return MS_ERR(MS_ERR_UNSUPPORTED, "kernels backend '%s' lacks op '%s' that this model needs", k->name,
                          kern_op_name(ops[i]));
    return MS_OK;
}

/* Shape and mode checks every backend's gemm makes first, so all reject the same calls (see kern_gemm_t). */
ms_status_t kern_gemm_check(const kern_gemm_t *g)
{
    const kern_mat_t *w = g->w;
    if (g->xdt != MS_DT_BF16 && g->xdt != MS_DT_F32 && g->xdt != MS_DT_F8E4M3)
        return MS_ERR(MS_ERR_UNSUPPORTED, "gemm: x dtype %s not supported", ms_dtype_name(g->xdt));
    if (g->ydt != MS_DT_BF16 && g->ydt != MS_DT_F32)
        return MS_ERR(MS_ERR_UNSUPPORTED, "gemm: y dtype %s not supported", ms_dtype_name(g->ydt));
    if (w->dtype != MS_DT_BF16 && w->dtype != MS_DT_F32 && w->dtype != MS_DT_F8E4M3)
        return MS_ERR(MS_ERR_UNSUPPORTED, "gemm: weight dtype %s not supported", ms_dtype_name(w->dtype));
    if (w->dtype == MS_DT_F8E4M3 && !w->scale_inv) return MS_ERR(MS_ERR_INVALID, "gemm: fp8 weight without scale_inv");
    if (w->dtype == MS_DT_F8E4M3 && g->w_trans)
        return MS_ERR(MS_ERR_UNSUPPORTED, "gemm: a transposed weight must be BF16 or F32, not fp8");
    if (g->xdt == MS_DT_F8E4M3 && (w->dtype != MS_DT_F8E4M3 || !g->x_scale))
        return MS_ERR(MS_ERR_INVALID, "gemm: fp8 activations need x_scale and a block-scaled fp8 weight");
    if (g->epi == KERN_EPI_SILU_MUL && (w->rows % 2 || g->ydt != MS_DT_BF16))
        return MS_ERR(MS_ERR_INVALID, "gemm: silu_mul epilogue needs an even fused gate|up row count (%d) and bf16 "
                                      "output", w->rows);
    if (g->epi != KERN_EPI_NONE && g->epi != KERN_EPI_SILU_MUL)
        return MS_ERR(MS_ERR_UNSUPPORTED, "gemm: epilogue %d not supported", (int)g->epi);
    int64_t ldw = g->ldw ? g->ldw : (g->w_trans ? w->rows : w->cols);
    if (ldw < (g->w_trans ? w->rows : w->cols))
        return MS_ERR(MS_ERR_INVALID, "gemm: weight stride %lld below its row length", (long long)ldw);
    if (w->dtype == MS_DT_F8E4M3 && g->batch > 1 && g->bsw != (int64_t)w->rows * ldw)
        return MS_ERR(MS_ERR_UNSUPPORTED, "gemm: batched fp8 weights must be stacked matrices");
    return MS_OK;
}
