/* cast.c — dtype conversion between F32 and BF16 (round-to-nearest-even). */
#include "cpu.h"

#include <string.h>

ms_status_t kern_cpu_cast(kern_ctx_t *cx, const void *x, ms_dtype_t xdt, void *y, ms_dtype_t ydt, int64_t n)
{
    if (xdt == ydt) {
        memmove(y, x, (size_t)n * ms_dtype_size(xdt));
        return MS_OK;
    }
    if (xdt == MS_DT_F32 && ydt == MS_DT_BF16) {
        const float *a = x;
        bf16_t *b = y;
        for (int64_t i = 0; i < n; i++) b[i] = f32_to_bf16(a[i]);
        return MS_OK;
    }
    if (xdt == MS_DT_BF16 && ydt == MS_DT_F32) {
        const bf16_t *a = x;
        float *b = y;
        for (int64_t i = 0; i < n; i++) b[i] = bf16_to_f32(a[i]);
        return MS_OK;
    }
    return MS_ERR(MS_ERR_UNSUPPORTED, "cast: %s -> %s not supported", ms_dtype_name(xdt), ms_dtype_name(ydt));
}
