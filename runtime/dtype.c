/* dtype.c — names and fp8 e4m3 conversions (see dtype.h). */
#include "dtype.h"

#include <math.h>
#include <string.h>

static const struct { const char *name; size_t size; } g_dt[MS_DT_COUNT] = {
    [MS_DT_F32] = {"F32", 4},   [MS_DT_BF16] = {"BF16", 2}, [MS_DT_F16] = {"F16", 2},
    [MS_DT_F8E4M3] = {"F8_E4M3", 1}, [MS_DT_I32] = {"I32", 4}, [MS_DT_I64] = {"I64", 8},
    [MS_DT_U8] = {"U8", 1},
};

size_t ms_dtype_size(ms_dtype_t dt) { return dt < MS_DT_COUNT ? g_dt[dt].size : 0; }
const char *ms_dtype_name(ms_dtype_t dt) { return dt < MS_DT_COUNT ? g_dt[dt].name : "?"; }

int ms_dtype_from_name(const char *name, ms_dtype_t *out)
{
    for (int i = 0; i < MS_DT_COUNT; i++)
        if (strcmp(name, g_dt[i].name) == 0) {
            *out = (ms_dtype_t)i;
            return 0;
        }
    return -1;
}

float fp8e4m3_to_f32(fp8e4m3_t v)
{
    int sign = v >> 7, exp = (v >> 3) & 0xf, man = v & 0x7;
    float r;
    if (exp == 0xf && man == 0x7) return NAN;
    if (exp == 0) r = ldexpf((float)man, -9); /* subnormal: man/8 * 2^-6 */
    else r = ldexpf(1.0f + man / 8.0f, exp - 7);
    return sign ? -r : r;
}

/* Round to nearest even, saturating at 448 (PyTorch's float8_e4m3fn cast with saturation, as DeepSeek's
 * act_quant clamps first). Called per value by the CPU backend's act_quant and FP8 KV store, so it works on
 * the bits; tests/unit/test_dtype.c checks it against a search over the 127 finite codes at every rounding
 * boundary. */
fp8e4m3_t f32_to_fp8e4m3(float f)
{
    if (isnan(f)) return 0x7f;
    const uint8_t sign = signbit(f) ? 0x80 : 0;
    const float a = fabsf(f);
    if (a >= 448.0f) return sign | 0x7e; /* saturate to max finite */
    if (a < 0.015625f) /* below 2^-6: subnormal codes m * 2^-9 (m = 8 is 2^-6, the smallest normal) */
        return sign | (uint8_t)rintf(a * 512.0f); /* exact scaling; rintf rounds half to even */
    uint32_t u;
    memcpy(&u, &a, 4);
    uint32_t e = (u >> 23) - 127 + 7, r = (u >> 20) & 7; /* e4m3 exponent field, top 3 mantissa bits */
    const uint32_t rest = u & 0xfffff;
    if (rest > 0x80000 || (rest == 0x80000 && (r & 1))) r++;
    if (r == 8) r = 0, e++; /* a < 448 keeps the result at or below 0x7e */
    return sign | (uint8_t)(e << 3 | r);
}
