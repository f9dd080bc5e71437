/* ops.c — the CUDA backend's ops table: every op of kernels.h runs on the GPU,
 * one .cu file each (memory and streams in mem.cu). Each entry is the
 * kernel's own extern "C" function with the table's signature; there are no
 * adapters left. */
#include "cuda.h"

/* Every op of the table has a GPU kernel; keep in step with the table below. */
static int cu_supports_op(kern_op_t op) { return op >= 0 && op < KERN_N_OPS; }

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
    .device_count = kern_cuda_device_count,
    .mem_info = kern_cuda_mem_info,
    .fill_dummy = kern_cuda_fill_dummy,
    .embed = kern_cuda_embed,
    .add = kern_cuda_add,
    .cast = kern_cuda_cast,
    .gather_rows = kern_cuda_gather_rows,
    .silu_mul = kern_cuda_silu_mul,
    .rmsnorm = kern_cuda_rmsnorm,
    .add_rmsnorm = kern_cuda_add_rmsnorm,
    .gemm = kern_cuda_gemm,
    .act_quant = kern_cuda_act_quant_op,
    .rope = kern_cuda_rope,
    .kv_store = kern_cuda_kv_store,
    .kv_gather = kern_cuda_kv_gather,
    .mla_naive = kern_cuda_mla_naive,
    .mla_latent = kern_cuda_mla_latent,
    .moe_route = kern_cuda_moe_route,
    .moe_plan = kern_cuda_moe_plan,
    .moe_scatter = kern_cuda_moe_scatter,
    .moe_experts = kern_cuda_moe_experts,
    .moe_combine = kern_cuda_moe_combine,
    .log_softmax = kern_cuda_log_softmax,
    .sample = kern_cuda_sample,
    .logits_adjust = kern_cuda_logits_adjust,
};
