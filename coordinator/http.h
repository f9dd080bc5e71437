/* http.h — the HTTP gateway on rank 0: a libevent evhttp server on its own
 * thread serving the OpenAI-compatible API.
 *
 *   GET  /health               200 ready | 503 loading or draining
 *   GET  /v1/models            {"object":"list","data":[{id, object:"model", created, owned_by}]}
 *   GET  /version              {"version": "..."}
 *   GET  /metrics              Prometheus text (metrics.h)
 *   POST /v1/completions       openai.h
 *   POST /v1/chat/completions  openai.h
 * Unknown route 404, wrong method 405, body over max_body_bytes 413, queue
 * full 429 (with Retry-After: 1), loading/draining 503; a malformed request
 * line, an unknown method or version, a header line without ':', a bad
 * Content-Length 400; a request head over 64 KiB 431; a request not received
 * whole within request_timeout 408; more than max_connections open, all busy,
 * 503 (http_conn.c). Every error body is OpenAI-style JSON, except where
 * libevent 2.1 answers by itself with an HTML page and offers no hook:
 * errors in a chunked request body (bad chunk size, or chunks past 2x the
 * body limit + 1 MiB), errors in the second and later requests of a pipelined
 * batch (the head guard only reads a connection's bytes while no reply is
 * queued before them), and request heads that pass the guard but not
 * libevent's own parser (e.g. an unparsable URI).
 *
 * Threads: every evhttp_* call happens on the gateway thread (DESIGN
 * invariant 4). The engine thread talks to it only through coord_t: it pushes
 * chunks with coord_push_chunk, whose notify hook (set here) is an
 * event_active() on the gateway's base.
 *
 * Shutdown order for the caller (runtime/serve.c):
 *   coord_stop(coord)          new submissions refused; /health says 503
 *   http_server_stop(srv)      stop accepting; wait for in-flight replies (the
 *                              engine finishes or aborts them) up to
 *                              drain_timeout_s, then end the rest with 503
 *   join the engine thread
 *   http_server_destroy(srv)   only after the engine no longer pushes chunks */
#ifndef MS_HTTP_H
#define MS_HTTP_H

#include <stddef.h>

#include "openai.h"
#include "request.h"

typedef struct tok tok_t;
typedef struct eplb_window eplb_window_t;

typedef struct http_server http_server_t;

typedef struct {
    const char *host;              /* e.g. "0.0.0.0" (copied) */
    int port;                      /* 0 = any free port (tests): see http_server_port */
    const char *served_model_name; /* in /v1/models and every response's "model" (copied) */
    int max_seq_len;
    int vocab_size;
    size_t max_body_bytes;         /* 0 = 32 MiB */
    int stream_interval;           /* tokens per streamed chunk, passed to the engine */
    const tok_t *tok;              /* borrowed; must outlive the server */
    const oai_tok_ops_t *tok_ops;  /* tests: a fake tokenizer instead of tok (borrowed) */
    coord_t *coord;                /* borrowed */
    double drain_timeout_s;        /* http_server_stop waits this long for in-flight requests; 0 = 30 */
    int max_connections;           /* open connections at most (http_conn.c); 0 = 8192; lowered to the fd limit */
    double request_timeout_s;      /* one whole request (head and body) must arrive within this; 0 = 60 */
    eplb_window_t *eplb;           /* expert load (borrowed): /dashboard, /dashboard/data and the
                                    * moeserve_eplb_* metrics; NULL (a dense model) = 404 / none */
} http_opts_t;

/* Validates options and sets up the event base and listener state; does not
 * bind yet. */
ms_status_t http_server_create(const http_opts_t *opts, http_server_t **out);
/* Bind host:port and start the gateway thread. Returns after the bind
 * succeeded, or MS_ERR_IO with a message naming host:port. */
ms_status_t http_server_start(http_server_t *srv);
/* The bound port (after start). */
int http_server_port(const http_server_t *srv);
/* Stop accepting, finish in-flight replies (bounded by drain_timeout_s) and
 * join the gateway thread. Safe to call twice, or without start. */
void http_server_stop(http_server_t *srv);
/* Any thread. Start a graceful drain: /health and new requests answer 503
 * (the listener stays open so health checks get that answer), the requests
 * in flight go on; logs how many there are. Idempotent. */
void http_server_drain(http_server_t *srv);
/* Any thread. Generation requests in flight, and replies not yet written. */
int http_server_in_flight(const http_server_t *srv);
int http_server_writing(const http_server_t *srv);
/* Any thread, e.g. when a rank died and the engine can never finish: answer
 * every in-flight request now with `msg` (503, or an SSE error event then
 * [DONE]) and refuse new ones. Does not wait for the writes. */
void http_server_fail_all(http_server_t *srv, const char *msg);
void http_server_destroy(http_server_t *srv);

#endif
