/* status.h — the one status type, the CHECK family and logging.
 *
 * A function that can fail returns ms_status_t. The first place that sees a
 * failure logs it once with file:line (MS_ERR / *_CHECK) and every caller
 * above only propagates (MS_TRY). exit() is for startup only.
 */
#ifndef MS_STATUS_H
#define MS_STATUS_H

#include <stdarg.h>

typedef enum {
    MS_OK = 0,
    MS_ERR_INVALID,     /* bad argument, bad config, bad request */
    MS_ERR_IO,          /* file or socket I/O */
    MS_ERR_NOMEM,
    MS_ERR_FORMAT,      /* malformed file (checkpoint, tokenizer, config) */
    MS_ERR_UNSUPPORTED, /* an op or feature a backend/model lacks */
    MS_ERR_NOT_FOUND,
    MS_ERR_CUDA,
    MS_ERR_NCCL,
    MS_ERR_MPI,
    MS_ERR_INTERNAL,
    MS_ERR_DATA,        /* a data fault inside a step (device fault word): that step's requests end */
} ms_status_t;

const char *ms_status_str(ms_status_t s);

typedef enum { MS_LOG_DEBUG = 0, MS_LOG_INFO, MS_LOG_WARN, MS_LOG_ERROR } ms_log_level_t;

/* Messages go to stderr, one line each, prefixed with the rank when set. */
void ms_log_set_level(ms_log_level_t lvl);
void ms_log_set_rank(int rank);
void ms_log(ms_log_level_t lvl, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The last error message of this thread (what MS_ERR logged), for callers that
 * must forward it (the gateway turns it into an HTTP error body). */
const char *ms_error_last(void);
void ms_error_clear(void);

#define MS_DEBUG(...) ms_log(MS_LOG_DEBUG, __FILE__, __LINE__, __VA_ARGS__)
#define MS_INFO(...) ms_log(MS_LOG_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define MS_WARN(...) ms_log(MS_LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)

/* Log an error once and evaluate to `status`: `return MS_ERR(MS_ERR_IO, "...");` */
#define MS_ERR(status, ...) (ms_log(MS_LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__), (status))

/* Propagate a status that was already logged. */
#define MS_TRY(expr)                         \
    do {                                     \
        ms_status_t ms_try_s_ = (expr);      \
        if (ms_try_s_ != MS_OK) return ms_try_s_; \
    } while (0)

/* Propagate via goto (UCX style unwinding): `MS_TRY_GOTO(st, f(), out_free);` */
#define MS_TRY_GOTO(st, expr, label)         \
    do {                                     \
        (st) = (expr);                       \
        if ((st) != MS_OK) goto label;       \
    } while (0)

#define MPI_CHECK(call)                                                        \
    do {                                                                       \
        int ms_mpi_rc_ = (call);                                               \
        if (ms_mpi_rc_ != 0) /* MPI_SUCCESS */                                 \
            return MS_ERR(MS_ERR_MPI, "%s failed: MPI error %d", #call, ms_mpi_rc_); \
    } while (0)

#endif
