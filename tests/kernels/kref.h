/* kref.h — helpers for kernel tests: deterministic random data, and the
 * error measure the tests state their tolerances in. References are written
 * in double precision, as straightforwardly as possible. */
#ifndef MS_TEST_KREF_H
#define MS_TEST_KREF_H

#include "tests/test.h"
#include "kernels/kernels.h"

#include <stdint.h>
#include <stdlib.h>

static uint64_t kr_state = 0x12345678abcdefull;
static inline void kr_seed(uint64_t s) { kr_state = s * 0x9e3779b97f4a7c15ull + 1; }
static inline double kr_uniform(void) /* [0,1) */
{
    kr_state = kr_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(kr_state >> 11) * (1.0 / 9007199254740992.0);
}
static inline double kr_normal(void)
{
    double u = kr_uniform() + 1e-12, v = kr_uniform();
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}
static inline bf16_t *kr_bf16(int64_t n, double scale)
{
    bf16_t *p = malloc(sizeof(bf16_t) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) p[i] = f32_to_bf16((float)(kr_normal() * scale));
    return p;
}
static inline float *kr_f32(int64_t n, double scale)
{
    float *p = malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) p[i] = (float)(kr_normal() * scale);
    return p;
}
/* A random finite fp8 e4m3 code with |value| <= 240 (exponent field 0..14, not NaN). */
static inline uint8_t kr_fp8(void)
{
    uint8_t sign = kr_uniform() < 0.5 ? 0x80 : 0;
    uint8_t ex = (uint8_t)(kr_uniform() * 15), man = (uint8_t)(kr_uniform() * 8);
    return sign | (uint8_t)(ex << 3) | man;
}
static inline double kr_b(bf16_t v) { return (double)bf16_to_f32(v); }

/* Track the worst |got - want| / tol over many elements; report once. */
typedef struct {
    const char *what;
    double worst; /* max of |got-want|/tol */
    double at_got, at_want;
    long n;
} kr_err_t;
static inline void kr_err_add(kr_err_t *e, double got, double want, double tol)
{
    double r = fabs(got - want) / tol;
    if (!(r <= e->worst)) { /* NaN-safe: a NaN ratio becomes the worst */
        e->worst = isnan(r) ? INFINITY : r;
        e->at_got = got;
        e->at_want = want;
    }
    e->n++;
}
#define KR_ERR_CHECK(e)                                                                                    \
    T_CHECK_MSG((e).worst <= 1.0, "%s: worst error %.3g x tolerance (got %.8g want %.8g, %ld values)", (e).what, \
                (e).worst, (e).at_got, (e).at_want, (e).n)

#endif
