/* ops.c — the CPU backend's ops table (each op lives in its own file). */
#include "cpu.h"

/* The reference implements every op. */
static int cpu_supports_op(kern_op_t op) { return op >= 0 && op < KERN_N_OPS; }

const kern_ops_t kern_cpu_ops = {
    .name = "cpu",
    .alloc = kern_cpu_alloc,
    .free = kern_cpu_free,
    .upload = kern_cpu_upload,
    .download = kern_cpu_download,
    .copy = kern_cpu_copy,
    .memset = kern_cpu_memset,
    .synchronize = kern_cpu_synchronize,
    .ctx_create = kern_cpu_ctx_create,
    .ctx_create_side = kern_cpu_ctx_create_side,
    .ctx_destroy = kern_cpu_ctx_destroy,
    .event_create = kern_cpu_event_create,
    .event_destroy = kern_cpu_event_destroy,
    .event_record = kern_cpu_event_record,
    .event_wait = kern_cpu_event_wait,
    .host_alloc = kern_cpu_host_alloc,
    .host_free = kern_cpu_host_free,
    .supports_op = cpu_supports_op,
    .embed = kern_cpu_embed,
    .add = kern_cpu_add,
    .cast = kern_cpu_cast,
    .gather_rows = kern_cpu_gather_rows,
    .silu_mul = kern_cpu_silu_mul,
    .rmsnorm = kern_cpu_rmsnorm,
    .gemm = kern_cpu_gemm,
    .rope = kern_cpu_rope,
    .kv_store = kern_cpu_kv_store,
    .kv_gather = kern_cpu_kv_gather,
    .mla_naive = kern_cpu_mla_naive,
    .mla_absorbed = kern_cpu_mla_absorbed,
    .moe_route = kern_cpu_moe_route,
    .moe_plan = kern_cpu_moe_plan,
    .moe_experts = kern_cpu_moe_experts,
    .moe_combine = kern_cpu_moe_combine,
    .log_softmax = kern_cpu_log_softmax,
    .sample = kern_cpu_sample,
};
