/* shutdown.h — signals, the graceful drain and dead-rank exits of
 * `moeserve serve` (shutdown.c says how each works). */
#ifndef MS_SHUTDOWN_H
#define MS_SHUTDOWN_H

#include <stdbool.h>

#include "coordinator/coord.h"
#include "coordinator/http.h"

/* Before MPI starts its threads (so they inherit the mask): block SIGINT and
 * SIGTERM, ignore SIGPIPE. */
void shutdown_signals_block(void);
/* Start the sigwait thread. drain_timeout_s: rank 0's grace period for the
 * requests in flight (moeserve.drain_timeout). */
void shutdown_signals_start(int rank, double drain_timeout_s);
/* Rank 0: what a signal acts on; NULL again before they are destroyed. A
 * signal before the coordinator exists stops it as soon as it is set. */
void shutdown_set_coord(coord_t *c);
void shutdown_set_http(http_server_t *http);
/* Every rank: the main thread is past its loop (workers stop waiting). */
void shutdown_mark_exiting(void);
/* Rank 0, any thread: a peer rank died. Answers every in-flight request
 * with a 503 naming it, then exits the process with status 1. */
void shutdown_peer_died(int rank, const char *why) __attribute__((noreturn));

#endif
