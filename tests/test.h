/* test.h — minimal assertions for C tests. A failed check prints file:line
 * and the test exits 1 at the end; meson counts it as failed. */
#ifndef MS_TEST_H
#define MS_TEST_H
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

static int t_failures = 0;
static int t_checks = 0;

#define T_CHECK(cond)                                                        \
    do {                                                                     \
        t_checks++;                                                          \
        if (!(cond)) {                                                       \
            t_failures++;                                                    \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                    \
    } while (0)

#define T_CHECK_MSG(cond, ...)                                               \
    do {                                                                     \
        t_checks++;                                                          \
        if (!(cond)) {                                                       \
            t_failures++;                                                    \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                    \
            fputc('\n', stderr);                                             \
        }                                                                    \
    } while (0)

#define T_NEAR(a, b, tol) T_CHECK_MSG(fabs((double)(a) - (double)(b)) <= (tol), "%g vs %g (tol %g)", (double)(a), (double)(b), (double)(tol))

/* Call last in main(): `return t_done();` */
static inline int t_done(void)
{
    if (t_checks == 0) {
        fprintf(stderr, "no checks ran: a test must assert something\n");
        return 1;
    }
    fprintf(stderr, "%d checks, %d failed\n", t_checks, t_failures);
    return t_failures ? 1 : 0;
}
#endif
