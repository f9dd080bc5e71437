/* dtype.h — element types shared by checkpoints, kernels and tools, and the
 * scalar conversions that define their rounding (round-to-nearest-even for
 * bf16, as PyTorch does). Header-only so kernels inline them. */
#ifndef MS_DTYPE_H
#define MS_DTYPE_H

#include <stdint.h>
#include <string.h>
#include <stddef.h>

typedef enum {
    MS_DT_F32 = 0,
    MS_DT_BF16,
    MS_DT_F16,
    MS_DT_F8E4M3, /* safetensors "F8_E4M3", OCP e4m3fn: no inf, NaN = 0x7f/0xff */
    MS_DT_I32,
    MS_DT_I64,
    MS_DT_U8,
    MS_DT_COUNT
} ms_dtype_t;

typedef uint16_t bf16_t;
typedef uint8_t fp8e4m3_t;

size_t ms_dtype_size(ms_dtype_t dt);
const char *ms_dtype_name(ms_dtype_t dt);             /* safetensors spelling: "BF16", "F8_E4M3" */
int ms_dtype_from_name(const char *name, ms_dtype_t *out); /* 0 on success */

static inline float bf16_to_f32(bf16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline bf16_t f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16_t)(u >> 16);
}

/* Round a float through bf16 (what a bf16 tensor store does). */
static inline float bf16_round(float f) { return bf16_to_f32(f32_to_bf16(f)); }

float fp8e4m3_to_f32(fp8e4m3_t v);
fp8e4m3_t f32_to_fp8e4m3(float f); /* saturating to ±448, round-to-nearest-even */

#endif
