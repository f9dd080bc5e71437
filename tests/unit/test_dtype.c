/* bf16 and fp8 conversions match PyTorch's rounding. */
#include "test.h"
#include "dtype.h"

#include <math.h>
#include <string.h>

/* The specification f32_to_fp8e4m3 is held to: the nearest of the 127 finite codes, ties to the even code,
 * saturating at 448 (the search it replaced). */
static fp8e4m3_t ref_fp8(float f)
{
    if (isnan(f)) return 0x7f;
    uint8_t sign = signbit(f) ? 0x80 : 0, best = 0;
    float a = fabsf(f), bestd = INFINITY;
    if (a >= 448.0f) return sign | 0x7e;
    for (int c = 0; c < 0x7f; c++) {
        float d = fabsf(fp8e4m3_to_f32((fp8e4m3_t)c) - a);
        if (d < bestd || (d == bestd && (c & 1) == 0 && (best & 1))) bestd = d, best = (uint8_t)c;
    }
    return sign | best;
}

/* At every code, every midpoint between adjacent codes and their float neighbours (where rounding turns), both
 * signs, plus a sweep of float bit patterns from 0 to past 448 */
static void test_fp8_rounding(void)
{
    int bad = 0, n = 0;
    for (int c = 0; c < 0x7e; c++) {
        const float lo = fp8e4m3_to_f32((fp8e4m3_t)c), hi = fp8e4m3_to_f32((fp8e4m3_t)(c + 1)), mid = (lo + hi) / 2;
        const float xs[] = {lo, nextafterf(lo, 0), nextafterf(lo, 1e9f), mid, nextafterf(mid, 0), nextafterf(mid, 1e9f),
                            hi, (lo + mid) / 2, (mid + hi) / 2};
        for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++)
            for (int sg = 0; sg < 2; sg++) {
                const float x = sg ? -xs[i] : xs[i];
                n++;
                if (f32_to_fp8e4m3(x) != ref_fp8(x) && bad++ < 5)
                    fprintf(stderr, "fp8 of %a: 0x%02x, want 0x%02x\n", x, f32_to_fp8e4m3(x), ref_fp8(x));
            }
    }
    for (uint32_t u = 0; u < 0x43f00000u; u += 997) { /* to ~480 */
        float x;
        memcpy(&x, &u, 4);
        n++;
        if (f32_to_fp8e4m3(x) != ref_fp8(x) && bad++ < 5)
            fprintf(stderr, "fp8 of %a: 0x%02x, want 0x%02x\n", x, f32_to_fp8e4m3(x), ref_fp8(x));
    }
    const float sp[] = {INFINITY, -INFINITY, NAN, 448.0f, 464.0f, nextafterf(448.0f, 0), -0.0f, 0x1p-10f, 0x1p-12f};
    for (size_t i = 0; i < sizeof sp / sizeof sp[0]; i++) n++, bad += f32_to_fp8e4m3(sp[i]) != ref_fp8(sp[i]);
    T_CHECK_MSG(bad == 0, "f32_to_fp8e4m3: %d of %d values differ from the nearest-code search", bad, n);
}

int main(void)
{
    test_fp8_rounding();
    T_CHECK(f32_to_bf16(1.0f) == 0x3f80);
    T_CHECK(f32_to_bf16(1.00390625f) == 0x3f80);          /* tie -> even */
    T_CHECK(f32_to_bf16(1.01171875f) == 0x3f82);          /* tie -> even (up) */
    T_NEAR(bf16_to_f32(f32_to_bf16(3.14159f)), 3.140625, 0);
    T_NEAR(fp8e4m3_to_f32(0x7e), 448.0, 0);
    T_NEAR(fp8e4m3_to_f32(0x01), 0.001953125, 0);         /* smallest subnormal 2^-9 */
    T_NEAR(fp8e4m3_to_f32(0xb8), -1.0, 0);
    for (int c = 0; c < 0x7f; c++) T_CHECK(f32_to_fp8e4m3(fp8e4m3_to_f32((fp8e4m3_t)c)) == c);
    T_CHECK(f32_to_fp8e4m3(1000.0f) == 0x7e);
    T_CHECK(f32_to_fp8e4m3(-1000.0f) == 0xfe);
    ms_dtype_t dt;
    T_CHECK(ms_dtype_from_name("F8_E4M3", &dt) == 0 && dt == MS_DT_F8E4M3);
    T_CHECK(ms_dtype_from_name("F9", &dt) != 0);
    return t_done();
}
