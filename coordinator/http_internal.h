/* http_internal.h — state shared by http.c (server, routing, simple
 * endpoints) and http_gen.c (generation requests). Gateway thread only,
 * except where a field says otherwise. */
#ifndef MS_HTTP_INTERNAL_H
#define MS_HTTP_INTERNAL_H

#include <event2/event.h>
#include <event2/http.h>
#include <pthread.h>
#include <stdint.h>

#include "http.h"
#include "metrics.h"
#include "openai.h"

typedef struct http_conn http_conn_t; /* http_conn.c */

/* One POST /v1/(chat/)completions in flight: its engine requests (one per
 * prompt) and the reply being built. */
typedef struct http_call {
    struct http_call *prev, *next;  /* srv->calls */
    struct http_server *srv;
    struct evhttp_request *evreq;   /* freed by libevent once we send the final reply */
    struct evhttp_connection *evcon; /* NULL once the connection is gone */
    struct event *watch;            /* EOF watcher on the socket (disconnect detection) */
    http_conn_t *conn;              /* its tracked connection (NULL: untracked, closecb is ours) */
    oai_request_t rq;
    char id[48];
    int64_t created;
    req_t **reqs;                   /* n = oai_n_choices(&rq); our reference each */
    oai_choice_t *choices;
    double *t_first, *t_last;       /* gateway-observed token times (fallback for metrics) */
    int n_done;
    bool gone;                      /* the client disconnected: requests cancelled */
} http_call_t;

struct http_server {
    http_opts_t opts;               /* host and served_model_name are our copies */
    oai_tok_ops_t tok_ops;
    oai_ctx_t oai;
    metrics_t *metrics;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    struct event *wake_ev;          /* activated by the engine thread (coord notify) */
    struct event *stop_ev;          /* activated by http_server_stop */
    struct event *drain_ev;         /* periodic while stopping */
    struct event *drain_start_ev;   /* activated by http_server_drain */
    struct event *fail_ev;          /* activated by http_server_fail_all */
    pthread_t thread;
    bool started, stopped;
    int port;
    int64_t created;                /* server start time, for /v1/models */

    http_call_t *calls;
    int n_calls;                    /* written on the gateway thread with __atomic ops: other threads read it */
    int writing;                    /* replies handed to libevent but not yet written out (atomic, as n_calls) */
    bool draining;                  /* /health and new requests answer 503 */
    bool stopping;                  /* http_server_stop: listener closed, waiting for the last replies */
    double drain_deadline, drain_idle_since;
    /* http_server_fail_all: every in-flight call ends with this 503 message
     * (written before fail_ev is activated, read on the gateway thread) */
    char fail_msg[256];
    bool failed;                    /* on_fail ran (gateway thread): fail_msg is final */

    /* connections (http_conn.c) */
    http_conn_t *conns, *conns_tail; /* oldest first */
    int n_conns, max_conns;
    struct bufferevent **pending;   /* new bufferevents waiting for on_fixup (referenced) */
    int n_pending, cap_pending;
    struct event *fixup_ev, *sweep_ev, *accept_ev;
    int accept_errors, accept_backoff_ms;
    double accept_last_err, accept_last_log;
    long conns_evicted, conns_refused, conns_timed_out;
};

double http_now(void); /* CLOCK_MONOTONIC seconds */

/* Send a whole reply (body copied) and count it in the metrics. */
void http_reply(struct http_server *srv, struct evhttp_request *req, int code, const char *ctype, const char *body,
                size_t len);
void http_reply_json(struct http_server *srv, struct evhttp_request *req, int code, json_t *j); /* steals j */
void http_reply_error(struct http_server *srv, struct evhttp_request *req, const oai_error_t *err);
void http_reply_errorf(struct http_server *srv, struct evhttp_request *req, int code, const char *type,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));
const char *http_reason(int code);
void http_track_complete(struct http_server *srv, struct evhttp_request *req);

/* http_conn.c */
ms_status_t http_conn_init(struct http_server *srv); /* after evhttp_new */
void http_conn_start(struct http_server *srv);       /* after the bind */
void http_conn_stop(struct http_server *srv);        /* the listener goes */
void http_conn_free(struct http_server *srv);        /* after evhttp_free */
http_conn_t *http_conn_find(struct http_server *srv, struct evhttp_connection *evcon);
/* on_request: the request arrived whole (its deadline is met) */
void http_conn_request_started(struct http_server *srv, struct evhttp_request *req);
/* the guard already answered this connection: do not reply again */
bool http_conn_rejected(struct http_server *srv, struct evhttp_request *req);
/* a call is being answered on evcon (no deadline, not idle); NULL if untracked */
http_conn_t *http_conn_attach(struct http_server *srv, struct evhttp_connection *evcon, http_call_t *call);
void http_conn_detach(http_conn_t *c);

/* http_gen.c */
void http_gen_conn_closed(http_call_t *call); /* its connection is going away */
void http_gen_handle(struct http_server *srv, struct evhttp_request *req, oai_kind_t kind);
/* The request body as one contiguous buffer ("" when empty); NULL when out of memory. */
const char *http_body(struct evhttp_request *req, size_t *len);
/* http_tok.c: POST /tokenize, POST /detokenize, GET /tokenizer_info */
void http_tok_tokenize(struct http_server *srv, struct evhttp_request *req);
void http_tok_detokenize(struct http_server *srv, struct evhttp_request *req);
void http_tok_info(struct http_server *srv, struct evhttp_request *req);
void http_gen_wake(struct http_server *srv);      /* drain every call's outbox */
/* End every call now: non-streamed replies are a 503 with `msg`, streams get
 * an SSE error event with it, then [DONE]. */
void http_gen_abort_all(struct http_server *srv, const char *msg);
void http_gen_free_all(struct http_server *srv);  /* destroy: release what is left */

#endif
