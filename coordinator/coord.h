/* coord.h — engine-side additions to the coord_t hub declared in request.h:
 * sleeping until there is work, shutdown (drain) and the stop flag. The
 * gateway only needs request.h; the engine loop (runtime/serve.c) uses this.
 *
 * coord_submit refusals (no log line: they are client-facing conditions, the
 * gateway writes the message):
 *   MS_ERR_NOMEM    — more than max_waiting requests wait: answer 429
 *   MS_ERR_INTERNAL — the server is draining (shutdown): answer 503 */
#ifndef MS_COORD_H
#define MS_COORD_H

#include "request.h"

/* Block until a request was submitted or cancelled, a stop was requested, or
 * timeout_ms passed (timeout_ms < 0: no timeout). Returns at once when work
 * is already pending. */
void coord_wait(coord_t *c, int timeout_ms);
/* Wake the engine thread (e.g. from the signal-watch thread). */
void coord_wake(coord_t *c);
/* Start draining: new submissions are refused; the engine sees
 * coord_stopping() and winds down. Thread-safe, idempotent. */
void coord_stop(coord_t *c);
bool coord_stopping(coord_t *c);
/* Requests submitted but not yet taken by the engine. */
int coord_n_new(coord_t *c);
/* Read the cancelled flag (engine side), under the request's lock. */
bool req_is_cancelled(req_t *r);

#endif
