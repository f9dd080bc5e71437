/* fill_dummy.c — load_format dummy on the CPU backend (kernels.h
 * kern_ops_t.fill_dummy): the same values as the CUDA kernel, element by
 * element (kern_dummy_f32 / kern_dummy_fp8), so a dummy model computes alike
 * on both backends. */
#include "cpu.h"

ms_status_t kern_cpu_fill_dummy(kern_ctx_t *cx, void *dst, ms_dtype_t dt, int64_t rows, int64_t cols, int64_t ld_pos,
                                int64_t pos0, uint64_t seed, float scale, float offset)
{
    (void)cx;
    if (rows < 0 || cols < 0) return MS_ERR(MS_ERR_INVALID, "fill_dummy: %lld x %lld", (long long)rows, (long long)cols);
    for (int64_t r = 0; r < rows; r++) {
        const int64_t p = pos0 + r * ld_pos;
        switch (dt) {
        case MS_DT_BF16:
            for (int64_t c = 0; c < cols; c++)
                ((bf16_t *)dst)[r * cols + c] = f32_to_bf16(kern_dummy_f32(seed, p + c, scale, offset));
            break;
        case MS_DT_F32:
            for (int64_t c = 0; c < cols; c++) ((float *)dst)[r * cols + c] = kern_dummy_f32(seed, p + c, scale, offset);
            break;
        case MS_DT_F8E4M3:
            for (int64_t c = 0; c < cols; c++) ((uint8_t *)dst)[r * cols + c] = kern_dummy_fp8(seed, p + c);
            break;
        default:
            return MS_ERR(MS_ERR_UNSUPPORTED, "fill_dummy: dtype %s", ms_dtype_name(dt));
        }
    }
    return MS_OK;
}
