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

/* One POST /v1/(chat/)completions in flight: its engine requests (one per
 * prompt) and the reply being built. */
typedef struct http_call {
    struct http_call *prev, *next;  /* srv->calls */
    struct http_server *srv;
    struct evhttp_request *evreq;   /* freed by libevent once we send the final reply */
    struct evhttp_connection *evcon; /* NULL once the connection is gone */
    struct event *watch;            /* EOF watcher on the socket (disconnect detection) */
    oai_request_t rq;
    char id[48];
    int64_t created;
    req_t **reqs;                   /* n = rq.n_prompts; our reference each */
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
    struct event *drain_ev;         /* periodic while draining */
    pthread_t thread;
    bool started, stopped;
    int port;
    int64_t created;                /* server start time, for /v1/models */

    http_call_t *calls;
    int n_calls;
    int writing;                    /* replies handed to libevent but not yet written out */
    bool draining;
    double drain_deadline, drain_idle_since;
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

/* http_gen.c */
void http_gen_handle(struct http_server *srv, struct evhttp_request *req, oai_kind_t kind);
/* The request body as one contiguous buffer ("" when empty); NULL when out of memory. */
const char *http_body(struct evhttp_request *req, size_t *len);
/* http_tok.c: POST /tokenize, POST /detokenize, GET /tokenizer_info */
void http_tok_tokenize(struct http_server *srv, struct evhttp_request *req);
void http_tok_detokenize(struct http_server *srv, struct evhttp_request *req);
void http_tok_info(struct http_server *srv, struct evhttp_request *req);
void http_gen_wake(struct http_server *srv);      /* drain every call's outbox */
void http_gen_abort_all(struct http_server *srv); /* drain deadline: end every call now */
void http_gen_free_all(struct http_server *srv);  /* destroy: release what is left */

#endif
