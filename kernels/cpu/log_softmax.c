/* log_softmax.c — y = x - max - log(Σ exp(x - max)) per row, fp32 in and out
 * with a double sum (the reference for logprobs). */
#include "cpu.h"

#include <math.h>

ms_status_t kern_cpu_log_softmax(kern_ctx_t *cx, const float *x, int64_t ld, int32_t rows, int32_t n, float *y)
{
    for (int32_t r = 0; r < rows; r++) {
        const float *xr = x + r * ld;
        float *yr = y + r * ld;
        float mx = -INFINITY;
        for (int32_t i = 0; i < n; i++)
            if (xr[i] > mx) mx = xr[i];
        double sum = 0;
        for (int32_t i = 0; i < n; i++) sum += exp((double)xr[i] - mx);
        float lse = (float)(mx + log(sum));
        for (int32_t i = 0; i < n; i++) yr[i] = xr[i] - lse;
    }
    return MS_OK;
}
