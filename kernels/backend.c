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
        [KERN_OP_LOGITS_ADJUST] = "logits_adjust",
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
