/* test_cuda_vs_cpu.c — every op the CUDA backend implements against the CPU
 * reference, as one table of cases (op × shape × dtype, ggml's
 * test-backend-ops), at tiny shapes and at DeepSeek-R1's real shapes (hidden
 * 7168, vocab 129280, 128 heads with qk 128+64 and v 128, kv_lora 512,
 * q_lora 1536, inter 18432, moe_inter 2048, 256 experts top-8 with n_group 8 /
 * topk_group 4). Each row states its tolerance (cuda_cases.h says what the
 * numbers mean; 0/0 is bit-identical). One line per case, PASS/FAIL/SKIP.
 *
 * Without a CUDA build or without a GPU every case prints SKIP and the test
 * exits 77 (meson: skipped); it never passes vacuously.
 * MS_CUDA_CASES_BACKEND=cpu runs the table with the CPU backend on both
 * sides (a self-check of the harness on a machine without a GPU; every
 * non-contract case must then be bit-identical). An argument selects the
 * cases whose op contains it, a second those whose dtype column contains it. */
#include "cuda_cases.h"

#include <stdarg.h>
#include <time.h>

enum { BF = MS_DT_BF16, F32 = MS_DT_F32, FP8 = MS_DT_F8E4M3 };

/* clang-format off */
static const cc_case_t g_cases[] = {
    /* op            shape                        dtype        runner              p[]                                  tol  contract */
    {"embed",       "n=8 vocab=1000 dim=576",     "bf16",      cc_run_embed,       {8, 1000, 576},                      0},
    {"embed",       "n=64 vocab=32768 dim=7168",  "bf16",      cc_run_embed,       {64, 32768, 7168},                   0},
    {"embed",       "n=64 vocab=129280 dim=64",   "bf16",      cc_run_embed,       {64, 129280, 64},                    0},
    {"embed",       "n=5 vocab=100 dim=100 (scalar)", "bf16",  cc_run_embed,       {5, 100, 100},                       0},
    {"embed",       "pad -1, id 129280 faults",   "bf16",      cc_run_embed,       {6, 129280, 64},                     0, 1},
    {"add",         "n=1001",                     "bf16",      cc_run_add,         {1001},                              0},
    {"add",         "128x7168",                   "bf16",      cc_run_add,         {128 * 7168},                        0},
    {"cast",        "n=129280 (+specials)",       "f32->bf16", cc_run_cast,        {129280, 0},                         0},
    {"cast",        "n=129280 (+specials)",       "bf16->f32", cc_run_cast,        {129280, 1},                         0},
    {"gather_rows", "33 of 50 rows x 14336 B",    "bytes",     cc_run_gather_rows, {33, 50, 14336},                     0},
    {"gather_rows", "256 of 64 rows x 6 B",       "bytes",     cc_run_gather_rows, {256, 64, 6},                        0},
    {"gather_rows", "pad -1, idx -7 faults",      "bytes",     cc_run_gather_rows, {16, 8, 7168 * 2},                   0, 1},
    {"mtp_prep",    "32 seqs x 4 rows, N 3",      "int32",     cc_run_mtp_prep,    {128, 32, 3, 64},                    0},
    {"mtp_prep",    "256 seqs x 2 rows, N 1",     "int32",     cc_run_mtp_prep,    {512, 256, 1, 64},                   0},
    {"silu_mul",    "n=999",                      "bf16",      cc_run_silu_mul,    {999},                               0},
    {"silu_mul",    "4x18432",                    "bf16",      cc_run_silu_mul,    {4 * 18432},                         0},
    {"silu_mul",    "256x2048",                   "bf16",      cc_run_silu_mul,    {256 * 2048},                        0},
    /* rmsnorm: the GPU sums squares in fp32, the CPU in double: 2 bf16 ulps */
    {"rmsnorm",     "4x7168",                     "bf16",      cc_run_rmsnorm,     {4, 7168},                           1.0 / 64},
    {"rmsnorm",     "32x1536 (q_a)",              "bf16",      cc_run_rmsnorm,     {32, 1536},                          1.0 / 64},
    {"rmsnorm",     "32x512 (kv_a)",              "bf16",      cc_run_rmsnorm,     {32, 512},                           1.0 / 64},
    {"rmsnorm",     "128x7168 (decode batch)",    "bf16",      cc_run_rmsnorm,     {128, 7168},                         1.0 / 64},
    {"rmsnorm",     "1x7168",                     "bf16",      cc_run_rmsnorm,     {1, 7168},                           1.0 / 64},
    {"rmsnorm",     "128x512 ld 2112 (kv_a view)", "bf16",     cc_run_rmsnorm,     {128, 512, 1600},                    1.0 / 64},
    {"rmsnorm",     "5x9000 (past registers)",    "bf16",      cc_run_rmsnorm,     {5, 9000},                           1.0 / 64},
    {"rmsnorm",     "3x8200 ld +3 (unaligned)",   "bf16",      cc_run_rmsnorm,     {3, 8200, 3},                        1.0 / 64},
    {"rmsnorm",     "7x100 ld +5",                "bf16",      cc_run_rmsnorm,     {7, 100, 5},                         1.0 / 64},
    /* gemm p[] = m, n, k, x dtype, w dtype, y dtype, extra ldx columns; tol = nmse bound, max-abs bound is
     * 2 bf16 ulps (bf16 out) or 1e-5·max(1, sqrt(k/4096)) (f32 out) of max|ref|: cuBLASLt sums in another
     * order than the CPU */
    {"gemm",        "m=3 n=40 k=72",              "bf16",      cc_run_gemm,        {3, 40, 72, BF, BF, BF, 0},          1e-5},
    {"gemm",        "m=5 n=33 k=37 ldx=41",       "bf16",      cc_run_gemm,        {5, 33, 37, BF, BF, BF, 4},          1e-5},
    {"gemm",        "m=4 n=1536 k=7168 (q_a)",    "bf16",      cc_run_gemm,        {4, 1536, 7168, BF, BF, BF, 0},      1e-5},
    {"gemm",        "m=32 n=7168 k=16384 (o)",    "bf16->f32", cc_run_gemm,        {32, 7168, 16384, BF, BF, F32, 0},   1e-9},
    {"gemm",        "m=32 n=256 k=7168 (router)", "bf16->f32", cc_run_gemm,        {32, 256, 7168, BF, BF, F32, 0},     1e-9},
    {"gemm",        "m=2 n=129280 k=7168 (lm_head)", "bf16",   cc_run_gemm,        {2, 129280, 7168, BF, BF, BF, 0},    1e-5},
    {"gemm",        "m=128 n=2048 k=7168",        "bf16",      cc_run_gemm,        {128, 2048, 7168, BF, BF, BF, 0},    1e-5},
    {"gemm",        "m=3 n=200 k=300",            "fp8 dequant", cc_run_gemm,      {3, 200, 300, BF, FP8, BF, 0},       1e-5},
    {"gemm",        "m=8 n=24576 k=1536 (q_b)",   "fp8 dequant", cc_run_gemm,      {8, 24576, 1536, BF, FP8, BF, 0},    1e-5},
    {"gemm",        "m=8 n=576 k=7168 (kv_a)",    "fp8 dequant", cc_run_gemm,      {8, 576, 7168, BF, FP8, BF, 0},      1e-5},
    {"gemm",        "m=4 n=7168 k=18432 (down)",  "fp8 dequant", cc_run_gemm,      {4, 7168, 18432, BF, FP8, BF, 0},    1e-5},
    {"gemm",        "m=4 n=18432 k=7168 (gate)",  "fp8 dequant", cc_run_gemm,      {4, 18432, 7168, BF, FP8, BF, 0},    1e-5},
    {"gemm",        "m=32 n=7168 k=16384 (o)",    "fp8->f32",  cc_run_gemm,        {32, 7168, 16384, BF, FP8, F32, 0},  1e-9},
    {"gemm",        "m=3 n=64 k=128",             "x f32->f32", cc_run_gemm,       {3, 64, 128, F32, BF, F32, 0},       1e-9},
    {"gemm",        "m=4 n=256 k=7168",           "w f32->f32", cc_run_gemm,       {4, 256, 7168, BF, F32, F32, 0},     1e-9},
    /* gemm descriptor modes, p[] = m, n, k, batch, mode, y dtype (cc_run_gemm_ex: 0 batched strided, 1 W stored
     * transposed, 2 ldw > k, 3 silu_mul bf16, 4 silu_mul fp8 dequant, 5 FP8xFP8, 6 fp8 dequant batched,
     * 7 f32 x batched, 8 the same 16-byte aligned);
     * tol = nmse, max-abs 2 bf16 ulps (4 after silu_mul) or 1e-5 (f32) of max|ref| */
    {"gemm",        "4x m=3 n=40 k=72 strided",   "bf16 batch", cc_run_gemm_ex,    {3, 40, 72, 4, 0, BF},               1e-5},
    {"gemm",        "128 heads m=4 n=128 k=512 (W_UV)", "bf16 batch", cc_run_gemm_ex, {4, 128, 512, 128, 0, BF},       1e-5},
    /* the engine's absorbed decode since bf16 latents (worker/forward_attn.c): W_UV and W_UK at batch 1 and 128 */
    {"gemm",        "128 heads m=1 n=128 k=512 (W_UV)", "bf16 batch", cc_run_gemm_ex, {1, 128, 512, 128, 0, BF},       1e-5},
    {"gemm",        "128 heads m=128 n=128 k=512 (W_UV)", "bf16 batch", cc_run_gemm_ex, {128, 128, 512, 128, 0, BF},   1e-5},
    {"gemm",        "128 heads m=128 n=512 k=128 (W_UK)", "bf16 trans", cc_run_gemm_ex, {128, 512, 128, 128, 1, BF},   1e-5},
    {"gemm",        "128 heads m=128 n=128 k=512 (W_UV)", "f32 x batch", cc_run_gemm_ex, {128, 128, 512, 128, 7, BF},  1e-5},
    {"gemm",        "128 heads m=128 n=128 k=512 (W_UV)", "f32 x aligned", cc_run_gemm_ex, {128, 128, 512, 128, 8, BF}, 1e-5},
    {"gemm",        "128 heads m=1 n=128 k=512 (W_UV)", "f32 x aligned", cc_run_gemm_ex, {1, 128, 512, 128, 8, BF},    1e-5},
    {"gemm",        "3 heads m=70 n=130 k=96",    "f32 x aligned", cc_run_gemm_ex, {70, 130, 96, 3, 8, F32},            1e-9},
    /* gemm_f32x's smaller tiles: 32 rows (2 warps along the rows), 16 or fewer (1) */
    {"gemm",        "128 heads m=32 n=128 k=512 (W_UV)", "f32 x aligned", cc_run_gemm_ex, {32, 128, 512, 128, 8, BF}, 1e-5},
    {"gemm",        "3 heads m=20 n=130 k=96",    "f32 x aligned", cc_run_gemm_ex, {20, 130, 96, 3, 8, F32},            1e-9},
    {"gemm",        "3 heads m=13 n=70 k=64",     "f32 x aligned", cc_run_gemm_ex, {13, 70, 64, 3, 8, BF},              1e-5},
    {"gemm",        "5 heads m=67 n=70 k=40",     "f32 x batch", cc_run_gemm_ex,   {67, 70, 40, 5, 7, BF},              1e-5},
    {"gemm",        "3 heads m=5 n=9 k=21",       "f32 x f32", cc_run_gemm_ex,     {5, 9, 21, 3, 7, F32},               1e-9},
    {"gemm",        "128 heads m=4 n=512 k=128 (W_UK)", "bf16 trans", cc_run_gemm_ex, {4, 512, 128, 128, 1, BF},       1e-5},
    {"gemm",        "128 heads m=4 n=512 k=128 (W_UK)", "trans->f32", cc_run_gemm_ex, {4, 512, 128, 128, 1, F32},      1e-9},
    {"gemm",        "m=5 n=33 k=37 ldw=46",       "bf16 ldw",  cc_run_gemm_ex,     {5, 33, 37, 1, 2, BF},               1e-5},
    {"gemm",        "m=3 n=40 k=64",              "silu_mul",  cc_run_gemm_ex,     {3, 40, 64, 1, 3, BF},               1e-5},
    {"gemm",        "m=32 n=2048 k=7168 (shared)", "silu_mul", cc_run_gemm_ex,     {32, 2048, 7168, 1, 3, BF},          1e-5},
    {"gemm",        "m=3 n=130 k=300",            "silu fp8",  cc_run_gemm_ex,     {3, 130, 300, 1, 4, BF},             1e-5},
    {"gemm",        "m=32 n=2048 k=7168 (shared)", "silu fp8", cc_run_gemm_ex,     {32, 2048, 7168, 1, 4, BF},          1e-5},
    {"gemm",        "m=3 n=200 k=300",            "fp8xfp8",   cc_run_gemm_ex,     {3, 200, 300, 1, 5, BF},             1e-5},
    {"gemm",        "3x m=3 n=64 k=256",          "fp8xfp8 f32", cc_run_gemm_ex,   {3, 64, 256, 3, 5, F32},             1e-9},
    {"gemm",        "m=8 n=24576 k=1536 (q_b)",   "fp8xfp8",   cc_run_gemm_ex,     {8, 24576, 1536, 1, 5, BF},          1e-5},
    {"gemm",        "m=4 n=7168 k=18432 (down)",  "fp8xfp8",   cc_run_gemm_ex,     {4, 7168, 18432, 1, 5, BF},          1e-5},
    {"gemm",        "3x m=3 n=200 k=300",         "fp8 dq batch", cc_run_gemm_ex,  {3, 200, 300, 3, 6, BF},             1e-5},
    /* gemm_dense p[] = m, n (outputs), k, mode (0 dequant, 1 dequant SiLU·mul, 2 fp8, 3 fp8 SiLU·mul), y dtype:
     * contiguous operands, so the TMA kernels run (gemm_fp8w.cu at m <= 128 in the dequant mode; in the fp8
     * mode gemm_fp8x.cu at m <= 64 with K >= 4096, the grouped FP8 kernel otherwise); the CPU recomputes a
     * sample of rows. tol = nmse; max-abs 2 bf16 ulps of
     * max|ref| (4 after SiLU·mul) for dequant, 16 for fp8 (cuda_cases_dense.c) */
    {"gemm_dense",  "m=1 n=2112 k=7168 (q_a|kv_a)", "dequant",   cc_run_gemm_dense,  {1, 2112, 7168, 0, BF},              1e-5},
    {"gemm_dense",  "m=32 n=2112 k=7168 (q_a|kv_a)", "dequant",   cc_run_gemm_dense,  {32, 2112, 7168, 0, BF},             1e-5},
    {"gemm_dense",  "m=128 n=2112 k=7168 (q_a|kv_a)", "dequant",   cc_run_gemm_dense,  {128, 2112, 7168, 0, BF},            1e-5},
    {"gemm_dense",  "m=1 n=24576 k=1536 (q_b)",    "dequant",   cc_run_gemm_dense,  {1, 24576, 1536, 0, BF},             1e-5},
    {"gemm_dense",  "m=32 n=24576 k=1536 (q_b)",   "dequant",   cc_run_gemm_dense,  {32, 24576, 1536, 0, BF},            1e-5},
    {"gemm_dense",  "m=128 n=24576 k=1536 (q_b)",  "dequant",   cc_run_gemm_dense,  {128, 24576, 1536, 0, BF},           1e-5},
    {"gemm_dense",  "m=1 n=7168 k=16384 (o_proj)", "dequant",   cc_run_gemm_dense,  {1, 7168, 16384, 0, BF},             1e-5},
    {"gemm_dense",  "m=32 n=7168 k=16384 (o_proj)", "dequant",   cc_run_gemm_dense,  {32, 7168, 16384, 0, BF},            1e-5},
    {"gemm_dense",  "m=128 n=7168 k=16384 (o_proj)", "dequant",   cc_run_gemm_dense,  {128, 7168, 16384, 0, BF},           1e-5},
    {"gemm_dense",  "m=1 n=2048 k=7168 (shared gate|up)", "dequant",   cc_run_gemm_dense,  {1, 2048, 7168, 1, BF},              1e-5},
    {"gemm_dense",  "m=32 n=2048 k=7168 (shared gate|up)", "dequant",   cc_run_gemm_dense,  {32, 2048, 7168, 1, BF},             1e-5},
    {"gemm_dense",  "m=128 n=2048 k=7168 (shared gate|up)", "dequant",   cc_run_gemm_dense,  {128, 2048, 7168, 1, BF},            1e-5},
    {"gemm_dense",  "m=1 n=7168 k=2048 (shared down)", "dequant",   cc_run_gemm_dense,  {1, 7168, 2048, 0, BF},              1e-5},
    {"gemm_dense",  "m=32 n=7168 k=2048 (shared down)", "dequant",   cc_run_gemm_dense,  {32, 7168, 2048, 0, BF},             1e-5},
    {"gemm_dense",  "m=128 n=7168 k=2048 (shared down)", "dequant",   cc_run_gemm_dense,  {128, 7168, 2048, 0, BF},            1e-5},
    {"gemm_dense",  "m=1 n=18432 k=7168 (dense gate|up)", "dequant",   cc_run_gemm_dense,  {1, 18432, 7168, 1, BF},             1e-5},
    {"gemm_dense",  "m=32 n=18432 k=7168 (dense gate|up)", "dequant",   cc_run_gemm_dense,  {32, 18432, 7168, 1, BF},            1e-5},
    {"gemm_dense",  "m=128 n=18432 k=7168 (dense gate|up)", "dequant",   cc_run_gemm_dense,  {128, 18432, 7168, 1, BF},           1e-5},
    {"gemm_dense",  "m=1 n=7168 k=18432 (dense down)", "dequant",   cc_run_gemm_dense,  {1, 7168, 18432, 0, BF},             1e-5},
    {"gemm_dense",  "m=32 n=7168 k=18432 (dense down)", "dequant",   cc_run_gemm_dense,  {32, 7168, 18432, 0, BF},            1e-5},
    {"gemm_dense",  "m=128 n=7168 k=18432 (dense down)", "dequant",   cc_run_gemm_dense,  {128, 7168, 18432, 0, BF},           1e-5},
    /* the tiny models' shapes (hidden 256, q_lora 96, kv_a 80 rows, 4 heads x 32, inter 512 / 192): fewer
     * rows than a 128-row tile, K of one or two chunks, stream-K splits inside a tile */
    {"gemm_dense",  "m=6 n=96 k=256 (tiny q_a)",   "dequant",   cc_run_gemm_dense,  {6, 96, 256, 0, BF},                 1e-5},
    {"gemm_dense",  "m=6 n=80 k=256 (tiny kv_a)",  "dequant",   cc_run_gemm_dense,  {6, 80, 256, 0, BF},                 1e-5},
    {"gemm_dense",  "m=1 n=80 k=256 (tiny kv_a)",  "dequant",   cc_run_gemm_dense,  {1, 80, 256, 0, BF},                 1e-5},
    {"gemm_dense",  "m=6 n=256 k=128 (tiny o_proj)", "dequant", cc_run_gemm_dense,  {6, 256, 128, 0, BF},                1e-5},
    {"gemm_dense",  "m=6 n=512 k=256 (tiny gate|up)", "dequant", cc_run_gemm_dense, {6, 512, 256, 1, BF},                1e-5},
    {"gemm_dense",  "m=6 n=256 k=512 (tiny down)", "dequant",   cc_run_gemm_dense,  {6, 256, 512, 0, BF},                1e-5},
    {"gemm_dense",  "m=6 n=192 k=256 (tiny shared gate|up)", "dequant", cc_run_gemm_dense, {6, 192, 256, 1, BF},         1e-5},
    {"gemm_dense",  "m=24 n=384 k=256",            "dequant",   cc_run_gemm_dense,  {24, 384, 256, 0, BF},               1e-5},
    {"gemm_dense",  "m=8 n=576 k=7168 (kv_a)",     "dequant",   cc_run_gemm_dense,  {8, 576, 7168, 0, BF},               1e-5},
    {"gemm_dense",  "m=5 n=7168 k=16384 (o_proj)", "dequant f32", cc_run_gemm_dense,  {5, 7168, 16384, 0, F32},            1e-9},
    {"gemm_dense",  "m=4096 n=2112 k=7168 (q_a|kv_a)", "fp8",       cc_run_gemm_dense,  {4096, 2112, 7168, 2, BF},           2e-4},
    {"gemm_dense",  "m=4096 n=24576 k=1536 (q_b)", "fp8",       cc_run_gemm_dense,  {4096, 24576, 1536, 2, BF},          2e-4},
    {"gemm_dense",  "m=4096 n=7168 k=16384 (o_proj)", "fp8",       cc_run_gemm_dense,  {4096, 7168, 16384, 2, BF},          2e-4},
    {"gemm_dense",  "m=4096 n=2048 k=7168 (shared gate|up)", "fp8",       cc_run_gemm_dense,  {4096, 2048, 7168, 3, BF},           2e-4},
    {"gemm_dense",  "m=4096 n=7168 k=2048 (shared down)", "fp8",       cc_run_gemm_dense,  {4096, 7168, 2048, 2, BF},           2e-4},
    {"gemm_dense",  "m=4096 n=18432 k=7168 (dense gate|up)", "fp8",       cc_run_gemm_dense,  {4096, 18432, 7168, 3, BF},          2e-4},
    {"gemm_dense",  "m=4096 n=7168 k=18432 (dense down)", "fp8",       cc_run_gemm_dense,  {4096, 7168, 18432, 2, BF},          2e-4},
    /* prefill rows between the 128-row decode rules and 4096: 64x2w (one wave either way), 128x2w, ragged m, the
     * 2112-row N tail on the 256-row tile */
    {"gemm_dense",  "m=200 n=7168 k=16384 (o_proj)", "fp8",       cc_run_gemm_dense,  {200, 7168, 16384, 2, BF},           2e-4},
    {"gemm_dense",  "m=300 n=7168 k=2048 (shared down)", "fp8",       cc_run_gemm_dense,  {300, 7168, 2048, 2, BF},            2e-4},
    {"gemm_dense",  "m=1000 n=2048 k=7168 (shared gate|up)", "fp8",       cc_run_gemm_dense,  {1000, 2048, 7168, 3, BF},           2e-4},
    {"gemm_dense",  "m=520 n=2112 k=7168 (q_a|kv_a)", "fp8",       cc_run_gemm_dense,  {520, 2112, 7168, 2, BF},            2e-4},
    {"gemm_dense",  "m=5 n=2112 k=7168 (q_a|kv_a)", "fp8",       cc_run_gemm_dense,  {5, 2112, 7168, 2, BF},              2e-4},
    {"gemm_dense",  "m=128 n=18432 k=7168 (dense gate|up)", "fp8",       cc_run_gemm_dense,  {128, 18432, 7168, 3, BF},           2e-4},
    {"gemm_dense",  "m=128 n=7168 k=16384 (o_proj)", "fp8",       cc_run_gemm_dense,  {128, 7168, 16384, 2, BF},           2e-4},
    {"gemm_dense",  "m=96 n=2112 k=7168 (q_a|kv_a)", "fp8",       cc_run_gemm_dense,  {96, 2112, 7168, 2, BF},             2e-4},
    /* fp8 sk: m <= 128, gemm_fp8x.cu's stream-K kernel under MS_GEMM_FP8X=1 (every case) or =auto (m <= 64,
     * K >= 4096); the grouped kernel by default: R1's shapes at m = 1, an odd m and 128; every
     * token block width; one CTA; the gate|up exchange */
    {"gemm_dense",  "m=1 n=2112 k=7168 (q_a|kv_a)",    "fp8 sk",    cc_run_gemm_dense,  {1, 2112, 7168, 2, BF},     2e-4},
    {"gemm_dense",  "m=37 n=2112 k=7168 (q_a|kv_a)",   "fp8 sk",    cc_run_gemm_dense,  {37, 2112, 7168, 2, BF},    2e-4},
    {"gemm_dense",  "m=128 n=2112 k=7168 (q_a|kv_a)",  "fp8 sk",    cc_run_gemm_dense,  {128, 2112, 7168, 2, BF},   2e-4},
    {"gemm_dense",  "m=1 n=24576 k=1536 (q_b)",        "fp8 sk",    cc_run_gemm_dense,  {1, 24576, 1536, 2, BF},    2e-4},
    {"gemm_dense",  "m=37 n=24576 k=1536 (q_b)",       "fp8 sk",    cc_run_gemm_dense,  {37, 24576, 1536, 2, BF},   2e-4},
    {"gemm_dense",  "m=128 n=24576 k=1536 (q_b)",      "fp8 sk",    cc_run_gemm_dense,  {128, 24576, 1536, 2, BF},  2e-4},
    {"gemm_dense",  "m=1 n=7168 k=16384 (o_proj)",     "fp8 sk",    cc_run_gemm_dense,  {1, 7168, 16384, 2, BF},    2e-4},
    {"gemm_dense",  "m=37 n=7168 k=16384 (o_proj)",    "fp8 sk",    cc_run_gemm_dense,  {37, 7168, 16384, 2, BF},   2e-4},
    {"gemm_dense",  "m=1 n=2048 k=7168 (shared gate|up)", "fp8 sk",    cc_run_gemm_dense,  {1, 2048, 7168, 3, BF},     2e-4},
    {"gemm_dense",  "m=37 n=2048 k=7168 (shared gate|up)", "fp8 sk",    cc_run_gemm_dense,  {37, 2048, 7168, 3, BF},    2e-4},
    {"gemm_dense",  "m=128 n=2048 k=7168 (shared gate|up)", "fp8 sk",    cc_run_gemm_dense,  {128, 2048, 7168, 3, BF},   2e-4},
    {"gemm_dense",  "m=1 n=7168 k=2048 (shared down)", "fp8 sk",    cc_run_gemm_dense,  {1, 7168, 2048, 2, BF},     2e-4},
    {"gemm_dense",  "m=37 n=7168 k=2048 (shared down)", "fp8 sk",    cc_run_gemm_dense,  {37, 7168, 2048, 2, BF},    2e-4},
    {"gemm_dense",  "m=128 n=7168 k=2048 (shared down)", "fp8 sk",    cc_run_gemm_dense,  {128, 7168, 2048, 2, BF},   2e-4},
    {"gemm_dense",  "m=1 n=18432 k=7168 (dense gate|up)", "fp8 sk",    cc_run_gemm_dense,  {1, 18432, 7168, 3, BF},    2e-4},
    {"gemm_dense",  "m=1 n=7168 k=18432 (dense down)", "fp8 sk",    cc_run_gemm_dense,  {1, 7168, 18432, 2, BF},    2e-4},
    {"gemm_dense",  "m=128 n=7168 k=18432 (dense down)", "fp8 sk",    cc_run_gemm_dense,  {128, 7168, 18432, 2, BF},  2e-4},
    {"gemm_dense",  "m=8 n=7168 k=2048 (shared down)", "fp8 sk",    cc_run_gemm_dense,  {8, 7168, 2048, 2, BF},     2e-4},
    {"gemm_dense",  "m=9 n=7168 k=2048 (shared down)", "fp8 sk",    cc_run_gemm_dense,  {9, 7168, 2048, 2, BF},     2e-4},
    {"gemm_dense",  "m=16 n=7168 k=2048 (shared down)", "fp8 sk",    cc_run_gemm_dense,  {16, 7168, 2048, 2, BF},    2e-4},
    {"gemm_dense",  "m=17 n=7168 k=2048 (shared down)", "fp8 sk",    cc_run_gemm_dense,  {17, 7168, 2048, 2, BF},    2e-4},
    {"gemm_dense",  "m=33 n=7168 k=2048 (shared down)", "fp8 sk",    cc_run_gemm_dense,  {33, 7168, 2048, 2, BF},    2e-4},
    {"gemm_dense",  "m=64 n=7168 k=2048 (shared down)", "fp8 sk",    cc_run_gemm_dense,  {64, 7168, 2048, 2, BF},    2e-4},
    {"gemm_dense",  "m=65 n=7168 k=2048 (shared down)", "fp8 sk",    cc_run_gemm_dense,  {65, 7168, 2048, 2, BF},    2e-4},
    {"gemm_dense",  "m=127 n=7168 k=2048 (shared down)", "fp8 sk",    cc_run_gemm_dense,  {127, 7168, 2048, 2, BF},   2e-4},
    {"gemm_dense",  "m=3 n=80 k=512 (tiny, one CTA)",  "fp8 sk",    cc_run_gemm_dense,  {3, 80, 512, 2, BF},        2e-4},
    {"gemm_dense",  "m=3 n=64 k=512 (tiny gate|up inter 64)", "fp8 sk",  cc_run_gemm_dense,  {3, 64, 512, 3, BF},        2e-4},
    {"gemm_dense",  "m=3 n=128 k=512 (tiny gate|up)",  "fp8 sk",    cc_run_gemm_dense,  {3, 128, 512, 3, BF},       2e-4},
    {"gemm_dense",  "m=6 n=96 k=256 (tiny q_a, 2 chunks)", "fp8 sk",  cc_run_gemm_dense,  {6, 96, 256, 2, BF},        2e-4},
    /* fp8 sk mc: the same under gemm_fp8x.cu's 2-CTA multicast variant (the case sets MS_GEMM_FP8X_MC=1; with
     * MS_GEMM_FP8X=1 they reach it): every token block width, half-x boxes with rows past m (m = 9, 37), an
     * odd tile count (q_a|kv_a: 17, the last pair's second CTA stores nothing), one tile (its pair's second
     * CTA only multicasts), the gate|up exchange */
    {"gemm_dense",  "m=1 n=7168 k=16384 (o_proj)", "fp8 sk mc", cc_run_gemm_dense,  {1, 7168, 16384, 2, BF}, 2e-4},
    {"gemm_dense",  "m=1 n=24576 k=1536 (q_b)", "fp8 sk mc", cc_run_gemm_dense,  {1, 24576, 1536, 2, BF}, 2e-4},
    {"gemm_dense",  "m=1 n=2112 k=7168 (q_a|kv_a)", "fp8 sk mc", cc_run_gemm_dense,  {1, 2112, 7168, 2, BF}, 2e-4},
    {"gemm_dense",  "m=1 n=2048 k=7168 (shared gate|up)", "fp8 sk mc", cc_run_gemm_dense,  {1, 2048, 7168, 3, BF}, 2e-4},
    {"gemm_dense",  "m=37 n=7168 k=16384 (o_proj)", "fp8 sk mc", cc_run_gemm_dense,  {37, 7168, 16384, 2, BF}, 2e-4},
    {"gemm_dense",  "m=37 n=24576 k=1536 (q_b)", "fp8 sk mc", cc_run_gemm_dense,  {37, 24576, 1536, 2, BF}, 2e-4},
    {"gemm_dense",  "m=37 n=2112 k=7168 (q_a|kv_a)", "fp8 sk mc", cc_run_gemm_dense,  {37, 2112, 7168, 2, BF}, 2e-4},
    {"gemm_dense",  "m=37 n=2048 k=7168 (shared gate|up)", "fp8 sk mc", cc_run_gemm_dense,  {37, 2048, 7168, 3, BF}, 2e-4},
    {"gemm_dense",  "m=128 n=7168 k=16384 (o_proj)", "fp8 sk mc", cc_run_gemm_dense,  {128, 7168, 16384, 2, BF}, 2e-4},
    {"gemm_dense",  "m=128 n=24576 k=1536 (q_b)", "fp8 sk mc", cc_run_gemm_dense,  {128, 24576, 1536, 2, BF}, 2e-4},
    {"gemm_dense",  "m=128 n=2112 k=7168 (q_a|kv_a)", "fp8 sk mc", cc_run_gemm_dense,  {128, 2112, 7168, 2, BF}, 2e-4},
    {"gemm_dense",  "m=128 n=2048 k=7168 (shared gate|up)", "fp8 sk mc", cc_run_gemm_dense,  {128, 2048, 7168, 3, BF}, 2e-4},
    {"gemm_dense",  "m=128 n=7168 k=2048 (shared down)", "fp8 sk mc", cc_run_gemm_dense,  {128, 7168, 2048, 2, BF}, 2e-4},
    {"gemm_dense",  "m=9 n=7168 k=2048 (shared down)", "fp8 sk mc", cc_run_gemm_dense,  {9, 7168, 2048, 2, BF},   2e-4},
    {"gemm_dense",  "m=3 n=80 k=512 (tiny, one tile)", "fp8 sk mc", cc_run_gemm_dense,  {3, 80, 512, 2, BF},      2e-4},
    {"gemm_dense",  "m=3 n=64 k=512 (tiny gate|up, one tile)", "fp8 sk mc", cc_run_gemm_dense, {3, 64, 512, 3, BF}, 2e-4},
    {"gemm_dense",  "m=6 n=384 k=256 (tiny, 3 tiles)", "fp8 sk mc", cc_run_gemm_dense,  {6, 384, 256, 2, BF},     2e-4},
    /* fp8 sk mc4: the 4-CTA cluster (MS_GEMM_FP8X_MC=4): quarter-x boxes (BN >= 32), rank 0 alone below;
     * q_a|kv_a's 17 tiles leave 3 copies in the last group */
    {"gemm_dense",  "m=1 n=7168 k=16384 (o_proj)", "fp8 sk mc4", cc_run_gemm_dense, {1, 7168, 16384, 2, BF},   2e-4},
    {"gemm_dense",  "m=128 n=7168 k=16384 (o_proj)", "fp8 sk mc4", cc_run_gemm_dense, {128, 7168, 16384, 2, BF}, 2e-4},
    {"gemm_dense",  "m=37 n=24576 k=1536 (q_b)", "fp8 sk mc4", cc_run_gemm_dense,  {37, 24576, 1536, 2, BF},    2e-4},
    {"gemm_dense",  "m=128 n=2112 k=7168 (q_a|kv_a)", "fp8 sk mc4", cc_run_gemm_dense, {128, 2112, 7168, 2, BF}, 2e-4},
    {"gemm_dense",  "m=128 n=2048 k=7168 (shared gate|up)", "fp8 sk mc4", cc_run_gemm_dense, {128, 2048, 7168, 3, BF}, 2e-4},
    {"gemm_dense",  "m=17 n=7168 k=2048 (shared down)", "fp8 sk mc4", cc_run_gemm_dense, {17, 7168, 2048, 2, BF}, 2e-4},
    {"gemm_dense",  "m=3 n=64 k=512 (tiny gate|up, one tile)", "fp8 sk mc4", cc_run_gemm_dense, {3, 64, 512, 3, BF}, 2e-4},
    /* act_quant p[] = rows, cols, extra ldx: codes and scales bit-identical */
    {"act_quant",   "5x300 (short group, zero row)", "bf16->fp8", cc_run_act_quant, {5, 300, 3},                        0},
    {"act_quant",   "128x7168",                   "bf16->fp8", cc_run_act_quant,   {128, 7168, 0},                      0},
    {"act_quant",   "64x1536 ldx=1544",           "bf16->fp8", cc_run_act_quant,   {64, 1536, 8},                       0},
    {"act_quant",   "4x18432",                    "bf16->fp8", cc_run_act_quant,   {4, 18432, 0},                       0},
    /* add_rmsnorm: x bit-identical, y bit-identical to add + rmsnorm here and within 2 bf16 ulps of the CPU */
    {"add_rmsnorm", "4x7168",                     "bf16",      cc_run_add_rmsnorm, {4, 7168},                           1.0 / 64},
    {"add_rmsnorm", "32x1536",                    "bf16",      cc_run_add_rmsnorm, {32, 1536},                          1.0 / 64},
    {"add_rmsnorm", "3x100",                      "bf16",      cc_run_add_rmsnorm, {3, 100},                            1.0 / 64},
    {"add_rmsnorm", "128x7168 (decode batch)",    "bf16",      cc_run_add_rmsnorm, {128, 7168},                         1.0 / 64},
    {"add_rmsnorm", "1x7168",                     "bf16",      cc_run_add_rmsnorm, {1, 7168},                           1.0 / 64},
    {"add_rmsnorm", "2x9001 (past registers)",    "bf16",      cc_run_add_rmsnorm, {2, 9001},                           1.0 / 64},
    /* rmsnorm_quant p[] = rows, dim, add, ldx pad (no add: in place), ldq pad: x, y, codes, scales bit-identical to
     * this backend's norm + act_quant (and codes to the CPU's act_quant of y); y within 2 ulps of the CPU */
    {"rmsnorm_quant", "1x7168 add (decode b1)",     "bf16->fp8", cc_run_rmsnorm_quant, {1, 7168, 1, 0, 0},             1.0 / 64},
    {"rmsnorm_quant", "128x7168 add (decode b128)", "bf16->fp8", cc_run_rmsnorm_quant, {128, 7168, 1, 0, 0},           1.0 / 64},
    {"rmsnorm_quant", "1x1536 ldx=2112 in place",   "bf16->fp8", cc_run_rmsnorm_quant, {1, 1536, 0, 576, 0},           1.0 / 64},
    {"rmsnorm_quant", "128x1536 ldx=2112 in place", "bf16->fp8", cc_run_rmsnorm_quant, {128, 1536, 0, 576, 0},         1.0 / 64},
    {"rmsnorm_quant", "3x100 add (short group)",    "bf16->fp8", cc_run_rmsnorm_quant, {3, 100, 1, 0, 0},              1.0 / 64},
    {"rmsnorm_quant", "2x9001 add (past registers)", "bf16->fp8", cc_run_rmsnorm_quant, {2, 9001, 1, 0, 3},            1.0 / 64},
    {"rmsnorm_quant", "5x300 ldx=301 ldq=303",      "bf16->fp8", cc_run_rmsnorm_quant, {5, 300, 0, 1, 3},              1.0 / 64},
    /* rope p[] = rows, heads, ld_row, ld_head, offset of the rope slice, dim, interleaved, attn_factor*1000 */
    {"rope",        "32 rows x 128 heads q_pe",   "bf16",      cc_run_rope,        {32, 128, 128 * 192, 192, 128, 64, 1, 1000}, 0},
    {"rope",        "64 rows k_pe (ld 576)",      "bf16",      cc_run_rope,        {64, 1, 576, 576, 512, 64, 1, 1000}, 0},
    {"rope",        "5 rows x 3 heads halves",    "bf16",      cc_run_rope,        {5, 3, 3 * 24, 24, 8, 16, 0, 707},   0},
    {"rope",        "3 rows x 37 heads (2 blocks)", "bf16",    cc_run_rope,        {3, 37, 37 * 24, 24, 8, 16, 1, 707}, 0},
    {"rope",        "128 rows x 128 heads q_pe",  "bf16",      cc_run_rope,        {128, 128, 128 * 192, 192, 128, 64, 1, 1000}, 0},
    {"rope",        "pad: pos -1 row untouched",  "bf16",      cc_run_rope,        {4, 2, 2 * 64, 64, 0, 64, 1, 1000},  0, 1},
    /* kv_store p[] = rows, cache rows, d_c, d_r, fp8: the cache rows bit-identical to the CPU's */
    {"kv_store",    "64 rows 512+64",             "bf16",      cc_run_kv_store,    {64, 256, 512, 64, 0},               0},
    {"kv_store",    "64 rows 512+64",             "fp8 rows",  cc_run_kv_store,    {64, 256, 512, 64, 1},               0},
    {"kv_store",    "pad -1, slots -3/end fault", "fp8 rows",  cc_run_kv_store,    {8, 64, 512, 64, 1},                 0, 2},
    /* kv_store_rope p[] = rows, cache rows, d_c, d_r, fp8, row pad (kva rows of d_c + d_r + pad, as the engine's
     * ld_qkva): cache and kva bit-identical to rope + kv_store on this backend and to the CPU */
    {"kv_store_rope", "1 row 512+64 (decode b1)",   "fp8 rows", cc_run_kv_store_rope, {1, 256, 512, 64, 1, 1536},      0},
    {"kv_store_rope", "128 rows 512+64 (b128)",     "fp8 rows", cc_run_kv_store_rope, {128, 256, 512, 64, 1, 1536},    0},
    {"kv_store_rope", "128 rows 512+64 (b128)",     "bf16",     cc_run_kv_store_rope, {128, 256, 512, 64, 0, 1536},    0},
    {"kv_store_rope", "7 rows 100+16 (odd)",        "fp8 rows", cc_run_kv_store_rope, {7, 64, 100, 16, 1, 3},          0},
    {"kv_store_rope", "pad pos -1, slot faults",    "fp8 rows", cc_run_kv_store_rope, {8, 64, 512, 64, 1, 0},          0, 1},
    /* kv_gather p[] = seqs, max length, block size, d_c, d_r, fp8, window: bit-identical to the CPU's */
    {"kv_gather",   "3 seqs <=300 bs=64 512+64",  "bf16",      cc_run_kv_gather,   {3, 300, 64, 512, 64, 0, 0},         0},
    {"kv_gather",   "3 seqs <=300 bs=64 512+64",  "fp8 rows",  cc_run_kv_gather,   {3, 300, 64, 512, 64, 1, 0},         0},
    {"kv_gather",   "window 40+60, bs=64",        "fp8 rows",  cc_run_kv_gather,   {3, 300, 64, 512, 64, 1, 1},         0},
    {"kv_gather",   "5 seqs <=40 bs=16 16+8",     "bf16",      cc_run_kv_gather,   {5, 40, 16, 16, 8, 0, 0},            0},
    {"kv_gather",   "blocks -2/end fault: zeros", "bf16",      cc_run_kv_gather,   {2, 100, 64, 512, 64, 0, 0},         0, 2},
    /* mla_naive p[] = heads, dn, dr, dv, variant (0: prefill + decode seqs, 1: 9001-token context);
     * tol = nmse bound; max-abs bound 1% of max|ref| (p may round the other way: Σexp is parallel) */
    {"mla_naive",   "4 heads 16+8/16, 3 seqs",    "bf16",      cc_run_mla_naive,   {4, 16, 8, 16, 0},                   1e-6},
    {"mla_naive",   "128 heads 128+64/128, 3 seqs", "bf16",    cc_run_mla_naive,   {128, 128, 64, 128, 0},              1e-6},
    {"mla_naive",   "2 heads 128+64/128, ctx 9001", "bf16",    cc_run_mla_naive,   {2, 128, 64, 128, 1},                1e-6},
    /* mla_latent p[] = heads, d_c, d_r, block, fp8 rows, variant (0: 24 decode seqs <=1500, 1: prefill chunks +
     * decode, 2: ctx 9001, 3: faulted blocks, 4: MTP verify rows over long contexts), q/o (0 f32/f32, 1 bf16/bf16, 2 bf16/f32), ld_pe_head;
     * tol = nmse; max-abs 1e-4 (f32 out) or 2 bf16 ulps of max|ref|: online softmax, split contexts */
    {"mla_latent",  "4 heads 16+8 bs=16 mixed",   "bf16 kv f32", cc_run_mla_latent, {4, 16, 8, 16, 0, 1, 0, 11},       1e-8},
    {"mla_latent",  "4 heads 16+8 bs=16 decode",  "fp8 kv bf16", cc_run_mla_latent, {4, 16, 8, 16, 1, 0, 1, 11},       1e-5},
    {"mla_latent",  "128 heads 512+64 24 decode", "bf16 kv f32", cc_run_mla_latent, {128, 512, 64, 64, 0, 0, 0, 192},  1e-8},
    {"mla_latent",  "128 heads 512+64 24 decode", "fp8 kv bf16", cc_run_mla_latent, {128, 512, 64, 64, 1, 0, 1, 192},  1e-5},
    {"mla_latent",  "128 heads 512+64 mixed",     "fp8 kv bf->f32", cc_run_mla_latent, {128, 512, 64, 64, 1, 1, 2, 192}, 1e-8},
    {"mla_latent",  "16 heads 512+64 ctx 9001",   "bf16 kv f32", cc_run_mla_latent, {16, 512, 64, 64, 0, 2, 0, 192},   1e-8},
    {"mla_latent",  "128 heads 512+64 MTP verify", "bf16 kv f32", cc_run_mla_latent, {128, 512, 64, 64, 0, 4, 0, 192},  1e-8},
    {"mla_latent",  "128 heads 512+64 MTP verify", "fp8 kv bf16", cc_run_mla_latent, {128, 512, 64, 64, 1, 4, 1, 192},  1e-5},
    {"mla_latent",  "blocks -2/end fault",        "bf16 kv f32", cc_run_mla_latent, {8, 512, 64, 64, 0, 3, 0, 192},    1e-8, 2},
    /* the tensor-core kernel (provisional bounds: nmse 1e-4, largest error 3e-2 of the largest value) */
    {"mla_mma",     "128 heads 512+64 24 decode", "bf16 kv f32", cc_run_mla_latent_mma, {128, 512, 64, 64, 0, 0, 0, 192}, 1e-4},
    {"mla_mma",     "128 heads 512+64 24 decode", "fp8 kv bf16", cc_run_mla_latent_mma, {128, 512, 64, 64, 1, 0, 1, 192}, 1e-4},
    {"mla_mma",     "128 heads 512+64 mixed",     "fp8 kv bf->f32", cc_run_mla_latent_mma, {128, 512, 64, 64, 1, 1, 2, 192}, 1e-4},
    {"mla_mma",     "16 heads 512+64 ctx 9001",   "bf16 kv f32", cc_run_mla_latent_mma, {16, 512, 64, 64, 0, 2, 0, 192}, 1e-4},
    {"mla_mma",     "128 heads 512+64 MTP verify", "bf16 kv f32", cc_run_mla_latent_mma, {128, 512, 64, 64, 0, 4, 0, 192}, 1e-4},
    {"mla_mma",     "40 heads 512+64 24 decode",  "bf16 kv f32", cc_run_mla_latent_mma, {40, 512, 64, 64, 0, 0, 0, 192}, 1e-4},
    {"mla_mma",     "blocks -2/end fault",        "bf16 kv f32", cc_run_mla_latent_mma, {8, 512, 64, 64, 0, 3, 0, 192}, 1e-4, 2},
    /* the Hopper kernel, the default at R1 shapes (the mma kernel's bounds; 40 heads falls back to mma) */
    {"mla_wgmma",   "128 heads 512+64 24 decode", "bf16 kv f32", cc_run_mla_latent_wgmma, {128, 512, 64, 64, 0, 0, 0, 192}, 1e-4},
    {"mla_wgmma",   "128 heads 512+64 24 decode", "fp8 kv bf16", cc_run_mla_latent_wgmma, {128, 512, 64, 64, 1, 0, 1, 192}, 1e-4},
    {"mla_wgmma",   "128 heads 512+64 24 decode", "bf16 kv bf16", cc_run_mla_latent_wgmma, {128, 512, 64, 64, 0, 0, 1, 192}, 1e-4},
    {"mla_wgmma",   "128 heads 512+64 mixed",     "fp8 kv bf->f32", cc_run_mla_latent_wgmma, {128, 512, 64, 64, 1, 1, 2, 192}, 1e-4},
    {"mla_wgmma",   "128 heads 512+64 mixed",     "bf16 kv f32", cc_run_mla_latent_wgmma, {128, 512, 64, 64, 0, 1, 0, 192}, 1e-4},
    {"mla_wgmma",   "64 heads 512+64 ctx 9001",   "bf16 kv f32", cc_run_mla_latent_wgmma, {64, 512, 64, 64, 0, 2, 0, 192}, 1e-4},
    {"mla_wgmma",   "64 heads 512+64 ctx 9001",   "fp8 kv f32", cc_run_mla_latent_wgmma, {64, 512, 64, 64, 1, 2, 0, 192}, 1e-4},
    {"mla_wgmma",   "128 heads 512+64 MTP verify", "bf16 kv f32", cc_run_mla_latent_wgmma, {128, 512, 64, 64, 0, 4, 0, 192}, 1e-4},
    {"mla_wgmma",   "128 heads 512+64 MTP verify", "fp8 kv bf16", cc_run_mla_latent_wgmma, {128, 512, 64, 64, 1, 4, 1, 192}, 1e-4},
    {"mla_wgmma",   "128 heads bs=16 decode",     "fp8 kv bf16", cc_run_mla_latent_wgmma, {128, 512, 64, 16, 1, 0, 1, 192}, 1e-4},
    {"mla_wgmma",   "40 heads (mma fallback)",    "bf16 kv f32", cc_run_mla_latent_wgmma, {40, 512, 64, 64, 0, 0, 0, 192}, 1e-4},
    {"mla_wgmma",   "128 heads blocks -2/end fault", "bf16 kv f32", cc_run_mla_latent_wgmma, {128, 512, 64, 64, 0, 3, 0, 192}, 1e-4, 2},
    {"mla_wgmma",   "128 heads blocks -2/end fault", "fp8 kv f32", cc_run_mla_latent_wgmma, {128, 512, 64, 64, 1, 3, 0, 192}, 1e-4, 2},
    /* the first Hopper kernel (mw_kernel, MS_MLA_WGMMA=1), kept selectable */
    {"mla_wgmma1",  "128 heads 512+64 24 decode", "bf16 kv f32", cc_run_mla_latent_wgmma1, {128, 512, 64, 64, 0, 0, 0, 192}, 1e-4},
    {"mla_wgmma1",  "128 heads 512+64 mixed",     "fp8 kv bf->f32", cc_run_mla_latent_wgmma1, {128, 512, 64, 64, 1, 1, 2, 192}, 1e-4},
    {"mla_wgmma1",  "128 heads blocks -2/end fault", "fp8 kv f32", cc_run_mla_latent_wgmma1, {128, 512, 64, 64, 1, 3, 0, 192}, 1e-4, 2},
    /* R1 decode batches (cc_run_mla_wgmma_batch p[] = heads, fp8 rows, q/o, sequences, context, checked sequences) */
    {"mla_wgmma",   "b32 ctx 1k",                 "bf16 kv f32", cc_run_mla_wgmma_batch, {128, 0, 0, 32, 1024, 2},    1e-4},
    {"mla_wgmma",   "b32 ctx 1k",                 "fp8 kv bf16", cc_run_mla_wgmma_batch, {128, 1, 1, 32, 1024, 2},    1e-4},
    {"mla_wgmma",   "b128 ctx 1k",                "fp8 kv bf->f32", cc_run_mla_wgmma_batch, {128, 1, 2, 128, 1024, 2}, 1e-4},
    {"mla_wgmma",   "b128 ctx 4k",                "bf16 kv bf16", cc_run_mla_wgmma_batch, {128, 0, 1, 128, 4096, 2},  1e-4},
    {"mla_wgmma",   "b32 ctx 4k",                 "fp8 kv f32", cc_run_mla_wgmma_batch, {128, 1, 0, 32, 4096, 2},     1e-4},
    {"mla_wgmma",   "b32 ctx 16k",                "bf16 kv f32", cc_run_mla_wgmma_batch, {128, 0, 0, 32, 16384, 1},   1e-4},
    {"mla_wgmma",   "b32 ctx 16k",                "fp8 kv bf16", cc_run_mla_wgmma_batch, {128, 1, 1, 32, 16384, 1},   1e-4},
    {"mla_wgmma",   "b128 ctx 16k",               "fp8 kv bf16", cc_run_mla_wgmma_batch, {128, 1, 1, 128, 16384, 1},  1e-4},
    /* the dequantizing FP8 path (MS_MLA_FP8_FOLD=0; the default folds the scales): FP8 cases of both tables again */
    {"mla_dequant", "128 heads 512+64 24 decode", "fp8 kv bf16", cc_run_mla_latent_wgmma_dequant, {128, 512, 64, 64, 1, 0, 1, 192}, 1e-4},
    {"mla_dequant", "128 heads 512+64 mixed",     "fp8 kv bf->f32", cc_run_mla_latent_wgmma_dequant, {128, 512, 64, 64, 1, 1, 2, 192}, 1e-4},
    {"mla_dequant", "64 heads 512+64 ctx 9001",   "fp8 kv f32", cc_run_mla_latent_wgmma_dequant, {64, 512, 64, 64, 1, 2, 0, 192}, 1e-4},
    {"mla_dequant", "128 heads 512+64 MTP verify", "fp8 kv bf16", cc_run_mla_latent_wgmma_dequant, {128, 512, 64, 64, 1, 4, 1, 192}, 1e-4},
    {"mla_dequant", "128 heads bs=16 decode",     "fp8 kv bf16", cc_run_mla_latent_wgmma_dequant, {128, 512, 64, 16, 1, 0, 1, 192}, 1e-4},
    {"mla_dequant", "128 heads blocks -2/end fault", "fp8 kv f32", cc_run_mla_latent_wgmma_dequant, {128, 512, 64, 64, 1, 3, 0, 192}, 1e-4, 2},
    {"mla_dequant", "b32 ctx 1k",                 "fp8 kv bf16", cc_run_mla_wgmma_batch, {128, 1, 1, 32, 1024, 2, 1},    1e-4},
    {"mla_dequant", "b128 ctx 1k",                "fp8 kv bf->f32", cc_run_mla_wgmma_batch, {128, 1, 2, 128, 1024, 2, 1}, 1e-4},
    {"mla_dequant", "b32 ctx 16k",                "fp8 kv bf16", cc_run_mla_wgmma_batch, {128, 1, 1, 32, 16384, 1, 1},   1e-4},
    {"mla_dequant", "b32 ctx 1k |q| 2^17",        "fp8 kv bf16", cc_run_mla_wgmma_batch, {128, 1, 1, 32, 1024, 2, 1, 17}, 1e-4},
    {"mla_wgmma",   "b32 ctx 1k |q| 2^17",        "fp8 kv bf16", cc_run_mla_wgmma_batch, {128, 1, 1, 32, 1024, 2, 0, 17}, 1e-4},
    /* moe_route p[] = T, E, n_group, topk_group, top_k, ties: selection and weights bit-identical */
    {"moe_route",   "T=5 E=16 g=4/2 k=4",         "f32",       cc_run_moe_route,   {5, 16, 4, 2, 4, 0},                 0},
    {"moe_route",   "T=128 E=256 g=8/4 k=8",      "f32",       cc_run_moe_route,   {128, 256, 8, 4, 8, 0},              0},
    {"moe_route",   "T=64 E=256 g=8/4 k=8 ties",  "f32",       cc_run_moe_route,   {64, 256, 8, 4, 8, 1},               0},
    {"moe_route",   "T=1 E=256 g=8/4 k=8",        "f32",       cc_run_moe_route,   {1, 256, 8, 4, 8, 0},                0},
    {"moe_route",   "T=128 E=32 g=8/4 k=8 (r1-ep8)", "f32",    cc_run_moe_route,   {128, 32, 8, 4, 8, 0},               0},
    {"moe_route",   "T=33 E=32 g=8/4 k=8 ties",   "f32",       cc_run_moe_route,   {33, 32, 8, 4, 8, 1},                0},
    {"moe_route",   "T=1 E=32 g=8/4 k=8 (r1-ep8)", "f32",      cc_run_moe_route,   {1, 32, 8, 4, 8, 0},                 0},
    {"moe_route",   "T=7 E=30 g=5/2 k=7 (lanes past E)", "f32", cc_run_moe_route,  {7, 30, 5, 2, 7, 0},                 0},
    {"moe_route",   "T=9 E=32 g=16/3 k=5 ties",   "f32",       cc_run_moe_route,   {9, 32, 16, 3, 5, 1},                0},
    /* NaN rows (a NaN activation upstream): k valid distinct ids, as the CPU gives (which ones may differ); added
     * with 6e17da6, not yet run on a GPU */
    {"moe_route",   "T=12 E=32 g=8/4 k=8 NaN rows", "f32",     cc_run_moe_route,   {12, 32, 8, 4, 8, 2},                0},
    {"moe_route",   "T=12 E=256 g=8/4 k=8 NaN rows", "f32",    cc_run_moe_route,   {12, 256, 8, 4, 8, 2},               0},
    {"moe_route",   "T=4 E=32 g=2/1 k=32 ties",   "f32",       cc_run_moe_route,   {4, 32, 2, 1, 32, 1},                0},
    {"moe_route",   "T=7 E=48 g=6/3 k=6",         "f32",       cc_run_moe_route,   {7, 48, 6, 3, 6, 0},                 0},
    {"moe_route",   "T=9 E=320 g=64/8 k=12 (block kernel)", "f32", cc_run_moe_route, {9, 320, 64, 8, 12, 1},            0},
    /* moe_plan p[] = T, K, E, n_slots (experts 0.. with a 2nd replica): bit-identical, load accumulated */
    {"moe_plan",    "T=5 K=4 E=16 slots=24",      "i32",       cc_run_moe_plan,    {5, 4, 16, 24},                      0},
    {"moe_plan",    "T=128 K=8 E=256 slots=384",  "i32",       cc_run_moe_plan,    {128, 8, 256, 384},                  0},
    {"moe_plan",    "T=4096 K=8 E=256 slots=384", "i32",       cc_run_moe_plan,    {4096, 8, 256, 384},                 0},
    {"moe_plan",    "ids E/-5, n_rep 0 fault",    "i32",       cc_run_moe_plan,    {16, 8, 256, 384},                   0, 2},
    /* moe_scatter p[] = T, K, E, n_slots, D, slot0, n_local, cap: bit-identical */
    {"moe_scatter", "T=5 K=4 D=64 all local",     "bf16",      cc_run_moe_scatter, {5, 4, 16, 24, 64, 0, 24, 8},        0},
    {"moe_scatter", "T=128 K=8 D=7168 rank 1/8",  "bf16",      cc_run_moe_scatter, {128, 8, 256, 384, 7168, 48, 48, 64}, 0},
    {"moe_scatter", "cap 2 overflows: fault",     "bf16",      cc_run_moe_scatter, {64, 8, 256, 384, 7168, 0, 48, 2},   0, 2},
    /* moe_combine p[] = T, K, E, hidden: bit-identical */
    {"moe_combine", "T=5 K=4 hidden=64",          "bf16",      cc_run_moe_combine, {5, 4, 16, 64},                      0},
    {"moe_combine", "T=128 K=8 hidden=7168",      "bf16",      cc_run_moe_combine, {128, 8, 256, 7168},                 0},
    {"moe_combine", "T=1 K=8 hidden=7168",        "bf16",      cc_run_moe_combine, {1, 8, 32, 7168},                    0},
    {"moe_combine", "T=3 K=8 hidden=100 (scalar)", "bf16",     cc_run_moe_combine, {3, 8, 16, 100},                     0},
    {"moe_combine", "T=64 K=8 E=8 (every expert)", "bf16",     cc_run_moe_combine, {64, 8, 8, 7168},                    0},
    /* moe_combine_add p[] = T, K, E, hidden, in place: bit-identical to the CPU and to moe_combine + add */
    {"moe_combine_add", "T=1 K=8 hidden=7168",     "bf16",     cc_run_moe_combine_add, {1, 8, 32, 7168, 0},             0},
    {"moe_combine_add", "T=128 K=8 hidden=7168",   "bf16",     cc_run_moe_combine_add, {128, 8, 256, 7168, 0},          0},
    {"moe_combine_add", "T=128 K=8 in place",      "bf16",     cc_run_moe_combine_add, {128, 8, 32, 7168, 1},           0},
    {"moe_combine_add", "T=3 K=8 hidden=100 (scalar)", "bf16", cc_run_moe_combine_add, {3, 8, 16, 100, 0},              0},
    {"moe_combine_add", "T=5 K=4 hidden=1001",     "bf16",     cc_run_moe_combine_add, {5, 4, 16, 1001, 1},             0},
    /* moe_experts p[] = n_local, cap, hidden, inter, fp8 records (dequant mode): tol = nmse, max-abs 4 bf16
     * ulps of max|ref|; rows past the counts untouched */
    {"moe_experts", "3 slots cap 8 64/32",        "bf16",      cc_run_moe_experts, {3, 8, 64, 32, 0},                   1e-5},
    {"moe_experts", "5 slots cap 8 256/128",      "fp8",       cc_run_moe_experts, {5, 8, 256, 128, 1},                 1e-5},
    {"moe_experts", "4 slots cap 6 128/96 unfused", "fp8",     cc_run_moe_experts, {4, 6, 128, 96, 1},                  1e-5},
    {"moe_experts", "4 slots cap 16 7168/2048",   "bf16",      cc_run_moe_experts, {4, 16, 7168, 2048, 0},              1e-5},
    {"moe_experts", "4 slots cap 16 7168/2048",   "fp8",       cc_run_moe_experts, {4, 16, 7168, 2048, 1},              1e-5},
    {"moe_experts", "counts cap+5/-2 fault",      "bf16",      cc_run_moe_experts, {5, 8, 64, 32, 0},                   1e-5, 2},
    /* fp8 mode (p[5] = 1) against the CPU's fp8 mode: hidden/inter multiples of 128 and cap of 4 run the
     * grouped kernel on the records (moe_gemm_fp8.cu), the rest the batched FP8-x path; tol = nmse 2e-4,
     * max-abs 16 bf16 ulps of max|ref| */
    {"moe_experts", "5 slots cap 8 256/128 fp8 mode", "fp8",  cc_run_moe_experts, {5, 8, 256, 128, 1, 1},              2e-4},
    {"moe_experts", "4 slots cap 6 128/96 fp8 mode", "fp8",   cc_run_moe_experts, {4, 6, 128, 96, 1, 1},               2e-4},
    {"moe_experts", "8 slots cap 8 7168/2048 fp8 mode", "fp8", cc_run_moe_experts, {8, 8, 7168, 2048, 1, 1},           2e-4},
    {"moe_experts", "3 slots cap 64 7168/2048 fp8 mode", "fp8", cc_run_moe_experts, {3, 64, 7168, 2048, 1, 1},         2e-4},
    /* the row hint (x2) picks the token block: 4 -> 8x1 (slot 0's 64 rows in 8 blocks), 12 -> 32x1, 24 of cap 136
     * -> 64x2r, 40 of cap 136 -> 128x2r */
    {"moe_experts", "3 slots cap 64 fp8 mode hint 4", "fp8",    cc_run_moe_experts, {3, 64, 7168, 2048, 1, 1, 4},      2e-4},
    {"moe_experts", "3 slots cap 64 fp8 mode hint 12", "fp8",   cc_run_moe_experts, {3, 64, 7168, 2048, 1, 1, 12},     2e-4},
    {"moe_experts", "3 slots cap 136 fp8 mode hint 24", "fp8",  cc_run_moe_experts, {3, 136, 7168, 2048, 1, 1, 24},    2e-4},
    {"moe_experts", "3 slots cap 136 fp8 mode hint 40", "fp8",  cc_run_moe_experts, {3, 136, 7168, 2048, 1, 1, 40},    2e-4},
    {"moe_experts", "fp8 mode counts cap+5/-2 fault", "fp8",  cc_run_moe_experts, {5, 8, 256, 128, 1, 1},              2e-4, 2},
    /* log_softmax: |got - want| <= tol */
    {"log_softmax", "4x129280",                   "f32",       cc_run_log_softmax, {4, 129280},                         2e-6},
    {"log_softmax", "3x1000",                     "f32",       cc_run_log_softmax, {3, 1000},                           2e-6},
    /* sample p[] = rows, vocab, variant (0 random logits, 1 heavy ties, 2 NaN/inf rows: fault, token -1,
     * 3 peaked with -inf), dtype, params (0 mixed, 1 greedy, 2 temperature, 3 top-k 50, 4 top-p 0.9,
     * 5 greedy + 20 logprobs, 6 top-k 5000+ and top-p): tokens and top ids identical, logprobs within tol; bf16 cases also
     * bit-identical to the GPU's sampling of their fp32 cast */
    {"sample",      "48 rows vocab=129280",       "f32",       cc_run_sample,      {48, 129280, 0, F32, 0},             2e-6},
    {"sample",      "48 rows vocab=129280 ties",  "f32",       cc_run_sample,      {48, 129280, 1, F32, 0},             2e-6},
    {"sample",      "16 rows vocab=50",           "f32",       cc_run_sample,      {16, 50, 0, F32, 0},                 2e-6},
    {"sample",      "48 rows vocab=129280 NaN/inf rows", "f32", cc_run_sample,     {48, 129280, 2, F32, 0},             2e-6},
    {"sample",      "48 rows vocab=129280 peaked", "f32",      cc_run_sample,      {48, 129280, 3, F32, 0},             2e-6},
    {"sample",      "48 rows vocab=129280",       "bf16",      cc_run_sample,      {48, 129280, 0, BF, 0},              2e-6},
    {"sample",      "48 rows vocab=129280 ties",  "bf16",      cc_run_sample,      {48, 129280, 1, BF, 0},              2e-6},
    {"sample",      "48 rows vocab=129280 NaN/inf rows", "bf16", cc_run_sample,    {48, 129280, 2, BF, 0},              2e-6},
    {"sample",      "48 rows vocab=129280 peaked", "bf16",     cc_run_sample,      {48, 129280, 3, BF, 0},              2e-6},
    {"sample",      "16 rows vocab=50",           "bf16",      cc_run_sample,      {16, 50, 0, BF, 0},                  2e-6},
    {"sample",      "1 row vocab=129280 greedy",  "bf16",      cc_run_sample,      {1, 129280, 0, BF, 5},               2e-6},
    {"sample",      "1 row vocab=129280 greedy",  "f32",       cc_run_sample,      {1, 129280, 3, F32, 5},              2e-6},
    {"sample",      "1 row vocab=129280 temperature", "bf16",  cc_run_sample,      {1, 129280, 3, BF, 2},               2e-6},
    {"sample",      "1 row vocab=129280 temperature", "f32",   cc_run_sample,      {1, 129280, 0, F32, 2},              2e-6},
    {"sample",      "1 row vocab=129280 top-p",   "bf16",      cc_run_sample,      {1, 129280, 3, BF, 4},               2e-6},
    {"sample",      "128 rows vocab=129280 greedy", "bf16",    cc_run_sample,      {128, 129280, 0, BF, 1},             2e-6},
    {"sample",      "128 rows vocab=129280 greedy+logprobs", "bf16", cc_run_sample, {128, 129280, 3, BF, 5},            2e-6},
    {"sample",      "128 rows vocab=129280 mixed", "bf16",     cc_run_sample,      {128, 129280, 3, BF, 0},             2e-6},
    {"sample",      "24 rows vocab=129280 temperature", "bf16", cc_run_sample,     {24, 129280, 3, BF, 2},              2e-6},
    {"sample",      "24 rows vocab=129280 temperature", "f32", cc_run_sample,      {24, 129280, 0, F32, 2},             2e-6},
    {"sample",      "24 rows vocab=129280 top-k 50", "bf16",   cc_run_sample,      {24, 129280, 0, BF, 3},              2e-6},
    {"sample",      "24 rows vocab=129280 top-p", "bf16",      cc_run_sample,      {24, 129280, 3, BF, 4},              2e-6},
    {"sample",      "24 rows vocab=129280 top-k 5000+", "bf16", cc_run_sample,     {24, 129280, 0, BF, 6},              2e-6},
    {"sample",      "24 rows vocab=129280 ties top-k 5000+", "f32", cc_run_sample, {24, 129280, 1, F32, 6},             2e-6},
    /* logits_adjust p[] = rows, vocab, list entries per row; adjusted logits and sampled tokens bit-identical */
    {"logits_adjust", "24 rows vocab=129280 list 64", "f32",   cc_run_logits_adjust, {24, 129280, 64},                  0},
    {"logits_adjust", "12 rows vocab=50 list 8",      "f32",   cc_run_logits_adjust, {12, 50, 8},                       0},
};
/* clang-format on */

void *cc_dev(cc_env_t *env, const void *host, size_t bytes)
{
    void *d = NULL;
    if (env->n_allocs >= (int)(sizeof env->allocs / sizeof env->allocs[0]) ||
        env->gpu->alloc(bytes ? bytes : 1, &d) != MS_OK) {
        fprintf(stderr, "cc_dev: cannot allocate %zu bytes\n", bytes);
        exit(1);
    }
    env->allocs[env->n_allocs++] = d;
    if (host && bytes) env->gpu->upload(env->cx, d, host, bytes);
    return d;
}

void cc_get(cc_env_t *env, void *host, const void *dev, size_t bytes)
{
    if (env->gpu->download(env->cx, host, dev, bytes) != MS_OK || env->gpu->synchronize(env->cx) != MS_OK) {
        fprintf(stderr, "cc_get: download of %zu bytes failed\n", bytes);
        exit(1);
    }
}

uint32_t cc_fault_take(cc_env_t *env)
{
    uint32_t f = 0;
    cc_get(env, &f, env->cx->fault, sizeof f);
    env->gpu->memset(env->cx, env->cx->fault, 0, sizeof f);
    return f;
}

static void cc_note(cc_result_t *r, double ratio, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void cc_note(cc_result_t *r, double ratio, const char *fmt, ...)
{
    if (!(ratio <= 1.0)) r->pass = 0;
    if (!(ratio <= r->worst) || !r->detail[0]) { /* keep the worst comparison's detail (NaN counts as worst) */
        r->worst = isnan(ratio) ? INFINITY : ratio;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->detail, sizeof r->detail, fmt, ap);
        va_end(ap);
    }
}

void cc_ok(cc_result_t *r, ms_status_t st, const char *what)
{
    if (st != MS_OK) cc_note(r, INFINITY, "%s returned %s", what, ms_status_str(st));
}

void cc_check(cc_result_t *r, int cond, const char *fmt, ...)
{
    char buf[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    cc_note(r, cond ? 0.0 : INFINITY, "%s%s", cond ? "ok: " : "failed: ", buf);
}

void cc_cmp_bytes(cc_result_t *r, const char *what, const void *got, const void *want, size_t bytes)
{
    const unsigned char *g = got, *w = want;
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < bytes; i++)
        if (g[i] != w[i] && !bad++) first = i;
    if (bad) cc_note(r, INFINITY, "%s: %zu of %zu bytes differ (first at %zu)", what, bad, bytes, first);
    else cc_note(r, 0.0, "%s: %zu bytes identical", what, bytes);
}

static void cc_cmp_vals(cc_result_t *r, const char *what, int64_t n, double (*get)(const void *, int64_t),
                        const void *g, const void *w, double tol_nmse, double tol_max)
{
    double se = 0, sr = 0, maxd = 0, maxr = 0;
    int64_t ndiff = 0, at = 0;
    for (int64_t i = 0; i < n; i++) {
        double a = get(g, i), b = get(w, i), d = fabs(a - b);
        if (isnan(a) != isnan(b) || (!isnan(a) && a != b)) ndiff++;
        if (isnan(a) && isnan(b)) d = 0;
        else if (isnan(d)) d = INFINITY;
        se += d * d, sr += b * b;
        if (!(d <= maxd)) maxd = d, at = i;
        if (fabs(b) > maxr) maxr = fabs(b);
    }
    double nmse = sr > 0 ? se / sr : se, rmax = maxr > 0 ? maxd / maxr : maxd;
    double ratio;
    if (tol_nmse == 0 && tol_max == 0) ratio = ndiff ? INFINITY : 0;
    else ratio = fmax(tol_nmse > 0 ? nmse / tol_nmse : (nmse > 0 ? INFINITY : 0),
                      tol_max > 0 ? rmax / tol_max : (rmax > 0 ? INFINITY : 0));
    cc_note(r, ratio, "%s: nmse %.2e max|d| %.3g (%.2e of max|ref| %.3g, at %lld) %lld/%lld differ", what, nmse, maxd,
            rmax, maxr, (long long)at, (long long)ndiff, (long long)n);
}

static double cc_get_bf16(const void *p, int64_t i) { return bf16_to_f32(((const bf16_t *)p)[i]); }
static double cc_get_f32(const void *p, int64_t i) { return ((const float *)p)[i]; }

void cc_cmp_bf16(cc_result_t *r, const char *what, const bf16_t *got, const bf16_t *want, int64_t n, double tol_nmse,
                 double tol_max)
{
    cc_cmp_vals(r, what, n, cc_get_bf16, got, want, tol_nmse, tol_max);
}

void cc_cmp_f32(cc_result_t *r, const char *what, const float *got, const float *want, int64_t n, double tol_nmse,
                double tol_max)
{
    cc_cmp_vals(r, what, n, cc_get_f32, got, want, tol_nmse, tol_max);
}

bf16_t *cc_bf16_fast(int64_t n, double scale)
{
    /* xorshift bits into sign, mantissa and an exponent in [scale/128, scale): finite, varied, ~1 ns each */
    bf16_t *p = malloc(sizeof(bf16_t) * (size_t)(n ? n : 1));
    uint64_t z = kr_state | 1;
    const int e0 = 127 + ilogb(scale) - 7;
    for (int64_t i = 0; i < n; i++) {
        z ^= z << 13, z ^= z >> 7, z ^= z << 17;
        p[i] = (bf16_t)(((z >> 8) & 0x8000) | (((e0 + (z >> 20) % 7) & 0xff) << 7) | (z & 0x7f));
    }
    kr_state = z;
    return p;
}

static double cc_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    const int n_cases = (int)(sizeof g_cases / sizeof g_cases[0]);
    /* [OP [DTYPE [SHAPE]]]: substrings of the cases' columns, e.g. mla_wgmma "fp8 kv f32" heads */
    const char *filter = argc > 1 ? argv[1] : NULL, *dfilter = argc > 2 ? argv[2] : NULL,
               *sfilter = argc > 3 ? argv[3] : NULL;
    const char *mode = getenv("MS_CUDA_CASES_BACKEND");
    const int self_check = mode && !strcmp(mode, "cpu");
    const char *skip = NULL;
    cc_env_t env = {0};
    if (self_check) {
        env.gpu = &kern_cpu_ops;
    } else if (kern_backend_get("cuda", &env.gpu) != MS_OK) {
        skip = "no CUDA backend in this build";
    } else {
        void *probe = NULL;
        if (env.gpu->alloc(256, &probe) != MS_OK) skip = "CUDA backend present but no usable GPU";
        else env.gpu->free(probe);
    }
    if (!skip && env.gpu->ctx_create(0, 0, &env.cx) != MS_OK) skip = "cannot create a context on GPU 0";
    if (skip) {
        for (int i = 0; i < n_cases; i++)
            printf("SKIP  %-12s %-32s %-12s (%s)\n", g_cases[i].op, g_cases[i].shape, g_cases[i].dtype, skip);
        return 77;
    }
    printf("backend under test: %s%s\n", env.gpu->name, self_check ? " (self-check: cpu vs cpu)" : "");
    int passed = 0, failed = 0, skipped = 0;
    for (int i = 0; i < n_cases; i++) {
        const cc_case_t *c = &g_cases[i];
        if (filter && !strstr(c->op, filter)) continue;
        if (dfilter && !strstr(c->dtype, dfilter)) continue;
        if (sfilter && !strstr(c->shape, sfilter)) continue;
        if (self_check && c->contract == 1) {
            printf("SKIP  %-12s %-32s %-12s (contract case: GPU only)\n", c->op, c->shape, c->dtype);
            skipped++;
            continue;
        }
        cc_result_t r = {.pass = 1};
        /* cc_bf16_fast draws from this file's kr_state (kref.h's state is per translation unit, and the runners
         * seed only their own): seed it from the case's name, so a case's inputs depend neither on the filter
         * nor on the cases before it */
        uint64_t h = 1469598103934665603ull;
        for (const char *q = c->op; *q; q++) h = (h ^ (unsigned char)*q) * 1099511628211ull;
        for (const char *q = c->shape; *q; q++) h = (h ^ (unsigned char)*q) * 1099511628211ull;
        for (const char *q = c->dtype; *q; q++) h = (h ^ (unsigned char)*q) * 1099511628211ull;
        kr_seed(h);
        double t0 = cc_now();
        c->run(&env, c, &r);
        double ms = (cc_now() - t0) * 1e3;
        for (int a = 0; a < env.n_allocs; a++) env.gpu->free(env.allocs[a]);
        env.n_allocs = 0;
        if (!r.detail[0]) cc_note(&r, INFINITY, "runner compared nothing");
        printf("%s  %-12s %-32s %-12s %s [%.0f ms]\n", r.pass ? "PASS" : "FAIL", c->op, c->shape, c->dtype, r.detail,
               ms);
        fflush(stdout);
        T_CHECK_MSG(r.pass, "%s %s %s", c->op, c->shape, c->dtype);
        r.pass ? passed++ : failed++;
    }
    uint32_t stray = cc_fault_take(&env);
    T_CHECK_MSG(stray == 0, "fault word 0x%x left set after the cases", stray);
    env.gpu->ctx_destroy(env.cx);
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return t_done();
}
