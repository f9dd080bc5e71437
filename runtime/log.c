/* log.c — stderr logging and the per-thread last error (see status.h). */
#include "status.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static ms_log_level_t g_level = MS_LOG_INFO;
static int g_rank = -1;
static _Thread_local char t_last_error[512];

const char *ms_status_str(ms_status_t s)
{
    switch (s) {
    case MS_OK: return "ok";
    case MS_ERR_INVALID: return "invalid argument";
    case MS_ERR_IO: return "I/O error";
    case MS_ERR_NOMEM: return "out of memory";
    case MS_ERR_FORMAT: return "bad format";
    case MS_ERR_UNSUPPORTED: return "unsupported";
    case MS_ERR_NOT_FOUND: return "not found";
    case MS_ERR_CUDA: return "CUDA error";
    case MS_ERR_NCCL: return "NCCL error";
    case MS_ERR_MPI: return "MPI error";
    case MS_ERR_INTERNAL: return "internal error";
    case MS_ERR_DATA: return "data fault";
    }
    return "unknown status";
}

void ms_log_set_level(ms_log_level_t lvl) { g_level = lvl; }
void ms_log_set_rank(int rank) { g_rank = rank; }

const char *ms_error_last(void) { return t_last_error; }
void ms_error_clear(void) { t_last_error[0] = '\0'; }

void ms_log(ms_log_level_t lvl, const char *file, int line, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (lvl == MS_LOG_ERROR) snprintf(t_last_error, sizeof t_last_error, "%s", msg);
    if (lvl < g_level) return;

    static const char *names[] = {"debug", "info", "warn", "error"};
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    char rank[16] = "";
    if (g_rank >= 0) snprintf(rank, sizeof rank, "[rank %d] ", g_rank);
    if (lvl == MS_LOG_ERROR || g_level == MS_LOG_DEBUG)
        fprintf(stderr, "moeserve %s%s: %s (%s:%d)\n", rank, names[lvl], msg, base, line);
    else
        fprintf(stderr, "moeserve %s%s: %s\n", rank, names[lvl], msg);
}
