/* bf16 and fp8 conversions match PyTorch's rounding. */
#include "test.h"
#include "dtype.h"

int main(void)
{
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
