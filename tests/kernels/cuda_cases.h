/* cuda_cases.h — the cross-backend harness (ggml's test-backend-ops): a table
 * of cases, op × shape × dtype, each run on the same seeded inputs by the CPU
 * reference and by the CUDA backend and compared with the case's stated
 * tolerance. test_cuda_vs_cpu.c holds the framework and the table; the
 * runners live in cuda_cases_*.c, one function per op.
 *
 * A runner fills a cc_result_t: `metric` names what was measured; a case
 * passes when every comparison it made held (cc_cmp_* record the worst one).
 * Contract cases (padding rows -1 and data faults) check GPU-only behaviour
 * and are marked so; the CPU self-check mode skips them. */
#ifndef MS_TEST_CUDA_CASES_H
#define MS_TEST_CUDA_CASES_H

#include "kref.h"

typedef struct {
    const kern_ops_t *gpu; /* the backend under test (cuda; cpu in self-check mode) */
    kern_ctx_t *cx;
    void *allocs[64];      /* device buffers of the running case, freed after it */
    int n_allocs;
} cc_env_t;

typedef struct {
    int pass;
    char detail[256]; /* worst comparison, human-readable */
    double worst;     /* worst error / tolerance over the comparisons (<= 1 passes) */
} cc_result_t;

typedef struct cc_case {
    const char *op, *shape, *dtype;
    void (*run)(cc_env_t *env, const struct cc_case *c, cc_result_t *r);
    int64_t p[8];  /* shape parameters, meaning per runner */
    double tol;    /* the case's tolerance, meaning per runner (0 = bit-identical) */
    int contract;  /* 1: checks GPU-only contract behaviour (padding, faults); 2: a contract the CPU shares */
} cc_case_t;

/* device copy of host bytes (NULL host: zero-filled), freed after the case */
void *cc_dev(cc_env_t *env, const void *host, size_t bytes);
/* download + synchronize */
void cc_get(cc_env_t *env, void *host, const void *dev, size_t bytes);
/* read and clear the context's fault word */
uint32_t cc_fault_take(cc_env_t *env);
/* a backend call's status must be MS_OK */
void cc_ok(cc_result_t *r, ms_status_t st, const char *what);

/* Comparisons; each records into r (pass stays 1 only if all hold).
 * exact: bit-identical bytes. bf16/f32: nmse <= tol_nmse and
 * max|got-want| <= tol_max * max|want| (tol 0 and 0: bit-identical values). */
void cc_cmp_bytes(cc_result_t *r, const char *what, const void *got, const void *want, size_t bytes);
void cc_cmp_bf16(cc_result_t *r, const char *what, const bf16_t *got, const bf16_t *want, int64_t n, double tol_nmse,
                 double tol_max);
void cc_cmp_f32(cc_result_t *r, const char *what, const float *got, const float *want, int64_t n, double tol_nmse,
                double tol_max);
void cc_check(cc_result_t *r, int cond, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* random bf16 bits that are finite, for large tables (cheaper than normals) */
bf16_t *cc_bf16_fast(int64_t n, double scale);

/* runners (cuda_cases_elem.c) */
void cc_run_embed(cc_env_t *, const cc_case_t *, cc_result_t *);
void cc_run_add(cc_env_t *, const cc_case_t *, cc_result_t *);
void cc_run_cast(cc_env_t *, const cc_case_t *, cc_result_t *);
void cc_run_gather_rows(cc_env_t *, const cc_case_t *, cc_result_t *);
void cc_run_silu_mul(cc_env_t *, const cc_case_t *, cc_result_t *);
void cc_run_mtp_prep(cc_env_t *, const cc_case_t *, cc_result_t *);
void cc_run_rmsnorm(cc_env_t *, const cc_case_t *, cc_result_t *);
void cc_run_gemm(cc_env_t *, const cc_case_t *, cc_result_t *);
void cc_run_gemm_ex(cc_env_t *, const cc_case_t *, cc_result_t *);
void cc_run_act_quant(cc_env_t *, const cc_case_t *, cc_result_t *);
void cc_run_add_rmsnorm(cc_env_t *, const cc_case_t *, cc_result_t *);
void cc_run_rmsnorm_quant(cc_env_t *, const cc_case_t *, cc_result_t *);
/* runners (cuda_cases_attn.c) */
void cc_run_rope(cc_env_t *, const cc_case_t *, cc_result_t *);
void cc_run_kv_store(cc_env_t *, const cc_case_t *, cc_result_t *);
void cc_run_kv_store_rope(cc_env_t *, const cc_case_t *, cc_result_t *);
void cc_run_kv_gather(cc_env_t *, const cc_case_t *, cc_result_t *);
void cc_run_mla_naive(cc_env_t *, const cc_case_t *, cc_result_t *);
void cc_run_mla_latent(cc_env_t *, const cc_case_t *, cc_result_t *);
void cc_run_mla_latent_mma(cc_env_t *, const cc_case_t *, cc_result_t *);
void cc_run_mla_latent_wgmma(cc_env_t *, const cc_case_t *, cc_result_t *);
void cc_run_mla_latent_wgmma1(cc_env_t *, const cc_case_t *, cc_result_t *);
void cc_run_mla_wgmma_batch(cc_env_t *, const cc_case_t *, cc_result_t *);
void cc_run_mla_latent_wgmma_dequant(cc_env_t *, const cc_case_t *, cc_result_t *);
void cc_run_moe_route(cc_env_t *, const cc_case_t *, cc_result_t *);
void cc_run_log_softmax(cc_env_t *, const cc_case_t *, cc_result_t *);
void cc_run_logits_adjust(cc_env_t *, const cc_case_t *, cc_result_t *);
/* runner (cuda_cases_sample.c) */
void cc_run_sample(cc_env_t *, const cc_case_t *, cc_result_t *);
/* runners (cuda_cases_moe.c) */
void cc_run_moe_plan(cc_env_t *, const cc_case_t *, cc_result_t *);
void cc_run_moe_scatter(cc_env_t *, const cc_case_t *, cc_result_t *);
void cc_run_moe_combine(cc_env_t *, const cc_case_t *, cc_result_t *);
void cc_run_moe_combine_add(cc_env_t *, const cc_case_t *, cc_result_t *);
void cc_run_moe_experts(cc_env_t *, const cc_case_t *, cc_result_t *);
/* runners (cuda_cases_dense.c) */
void cc_run_gemm_dense(cc_env_t *, const cc_case_t *, cc_result_t *);

#endif
