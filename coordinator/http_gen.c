/* http_gen.c — POST /v1/completions and /v1/chat/completions on the gateway
 * thread: parse (openai_parse.c), one engine request per prompt, submit,
 * then drain outboxes when the engine wakes us and either stream SSE events
 * or send the whole response when every choice has finished.
 *
 * Disconnects: libevent stops reading a connection while a request is being
 * answered, so a client that hangs up would go unnoticed until the next
 * write. Each call therefore watches its socket for EOF itself (`watch`), and
 * evhttp's close callback covers failed writes; either one cancels the
 * call's engine requests (coord_cancel), and the engine frees their KV blocks
 * at its next step. The call itself lives until the engine has pushed every
 * request's final chunk, then sends (or, with the client gone, discards) its
 * reply, which hands the evhttp_request back to libevent. */
#include "http_internal.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static void call_link(struct http_server *srv, http_call_t *call)
{
    call->next = srv->calls;
    if (srv->calls) srv->calls->prev = call;
    srv->calls = call;
    __atomic_fetch_add(&srv->n_calls, 1, __ATOMIC_RELAXED);
}

static void call_unlink(struct http_server *srv, http_call_t *call)
{
    if (call->prev) call->prev->next = call->next;
    else srv->calls = call->next;
    if (call->next) call->next->prev = call->prev;
    call->prev = call->next = NULL;
    __atomic_fetch_sub(&srv->n_calls, 1, __ATOMIC_RELAXED);
}

static void call_free(http_call_t *call)
{
    int n = oai_n_choices(&call->rq);
    for (int i = 0; i < n; i++) {
        if (call->reqs) req_release(call->reqs[i]);
        if (call->choices) oai_choice_free(&call->choices[i]);
    }
    free(call->reqs);
    free(call->choices);
    free(call->t_first);
    free(call->t_last);
    oai_request_free(&call->rq);
    free(call);
}

/* Stop watching the connection: our watcher and the close notification. */
static void call_detach_conn(http_call_t *call)
{
    if (call->watch) {
        event_free(call->watch);
        call->watch = NULL;
    }
    if (call->conn) http_conn_detach(call->conn);
    else if (call->evcon) evhttp_connection_set_closecb(call->evcon, NULL, NULL);
    call->conn = NULL;
}

static void call_client_gone(http_call_t *call, const char *how)
{
    if (call->gone) return;
    call->gone = true;
    call_detach_conn(call);
    int cancelled = 0;
    for (int i = 0; i < oai_n_choices(&call->rq); i++) {
        if (call->choices[i].finish != REQ_FINISH_NONE) continue;
        coord_cancel(call->srv->opts.coord, call->reqs[i]);
        cancelled++;
    }
    MS_INFO("http: client of %s %s; cancelled %d engine requests", call->id, how, cancelled);
}

void http_gen_conn_closed(http_call_t *call)
{
    call->evcon = NULL; /* libevent frees it right after this callback */
    call->conn = NULL;
    call_client_gone(call, "closed the connection");
}

static void on_conn_close(struct evhttp_connection *evcon, void *arg)
{
    http_gen_conn_closed(arg);
}

static void on_watch(evutil_socket_t fd, short what, void *arg)
{
    http_call_t *call = arg;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        call_client_gone(call, "disconnected");
    } else if (n > 0) {
        /* a pipelined next request: the socket stays readable, so watching
         * would spin; failed writes still reach on_conn_close */
        event_del(call->watch);
    }
}

static void call_watch(struct http_server *srv, http_call_t *call)
{
    call->evcon = evhttp_request_get_connection(call->evreq);
    if (!call->evcon) return;
    call->conn = http_conn_attach(srv, call->evcon, call);
    if (!call->conn) evhttp_connection_set_closecb(call->evcon, on_conn_close, call);
    struct bufferevent *bev = evhttp_connection_get_bufferevent(call->evcon);
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    if (fd < 0) return;
    call->watch = event_new(srv->base, fd, EV_READ | EV_PERSIST, on_watch, call);
    if (call->watch) event_add(call->watch, NULL);
}

/* Metrics for one finished choice: engine timestamps when the engine set
 * them, else what the gateway observed. */
static void choice_metrics(struct http_server *srv, http_call_t *call, int i)
{
    req_t *r = call->reqs[i];
    const oai_choice_t *c = &call->choices[i];
    pthread_mutex_lock(&r->lock);
    double t0 = r->t_arrival, tf = r->t_first_token, tl = r->t_last_token, tend = r->t_finish;
    pthread_mutex_unlock(&r->lock);
    if (tf <= 0) tf = call->t_first[i];
    if (tl <= 0) tl = call->t_last[i];
    if (tend <= 0) tend = http_now();
    double ttft = tf > 0 ? tf - t0 : -1;
    double tpot = c->n_completion > 1 && tf > 0 && tl > tf ? (tl - tf) / (c->n_completion - 1) : -1;
    metrics_request_done(srv->metrics, c->finish, c->n_prompt, c->n_completion, ttft, tpot, tend - t0);
}

/* Append the SSE events of choice i that are ready. */
static void choice_events(http_call_t *call, int i, struct evbuffer *out)
{
    json_t *j;
    while ((j = oai_choice_chunk(&call->rq, call->id, call->created, call->srv->opts.served_model_name,
                                 &call->choices[i]))) {
        size_t len;
        char *s = oai_dump(j, true, &len);
        json_decref(j);
        if (s) evbuffer_add(out, s, len);
        free(s);
    }
}

static void sse_add_json(struct evbuffer *out, json_t *j)
{
    size_t len;
    char *s = j ? oai_dump(j, true, &len) : NULL;
    json_decref(j);
    if (s) evbuffer_add(out, s, len);
    free(s);
}

static const oai_choice_t *first_with(const http_call_t *call, req_finish_t f)
{
    for (int i = 0; i < oai_n_choices(&call->rq); i++)
        if (call->choices[i].finish == f) return &call->choices[i];
    return NULL;
}

static const char abort_default[] = "the request was aborted: the server is shutting down";

/* Every choice has finished (or the drain deadline hit): send the reply and
 * free the call. abort_msg: why an aborted choice was aborted (NULL: the
 * server is shutting down). */
static void call_finish(struct http_server *srv, http_call_t *call, const char *abort_msg)
{
    if (!abort_msg) abort_msg = abort_default;
    call_detach_conn(call);
    call_unlink(srv, call);
    const oai_choice_t *err = first_with(call, REQ_FINISH_ERROR);
    const oai_choice_t *abrt = first_with(call, REQ_FINISH_ABORT);
    if (call->rq.stream) {
        if (!call->gone) {
            struct evbuffer *out = evbuffer_new();
            if (out) {
                for (int i = 0; i < oai_n_choices(&call->rq); i++) choice_events(call, i, out);
                if (err) {
                    oai_error_t e = {.status = 500, .type = "internal_error"};
                    snprintf(e.message, sizeof e.message, "generation failed: %s", err->error ? err->error : "engine error");
                    sse_add_json(out, oai_error_body(&e));
                } else if (abrt) {
                    /* a stream cut short must say so before [DONE] */
                    oai_error_t e = {.status = 503, .type = "service_unavailable"};
                    snprintf(e.message, sizeof e.message, "%s", abort_msg);
                    sse_add_json(out, oai_error_body(&e));
                }
                if (call->rq.include_usage)
                    sse_add_json(out, oai_usage_chunk(&call->rq, call->id, call->created, srv->opts.served_model_name,
                                                      call->choices, oai_n_choices(&call->rq)));
                evbuffer_add(out, "data: [DONE]\n\n", 14);
                evhttp_send_reply_chunk(call->evreq, out);
                evbuffer_free(out);
            }
            http_track_complete(srv, call->evreq);
        }
        evhttp_send_reply_end(call->evreq);
    } else if (call->gone) {
        /* libevent frees the request (and writes nothing if the socket is gone) */
        evhttp_send_reply(call->evreq, 499, "Client Closed Request", NULL);
    } else if (err) {
        http_reply_errorf(srv, call->evreq, 500, "internal_error", "generation failed: %s",
                          err->error ? err->error : "engine error");
    } else if (abrt) {
        http_reply_errorf(srv, call->evreq, 503, "service_unavailable", "%s", abort_msg);
    } else {
        http_reply_json(srv, call->evreq, 200,
                        oai_response(&call->rq, call->id, call->created, srv->opts.served_model_name, call->choices,
                                     oai_n_choices(&call->rq)));
    }
    call_free(call);
}

/* Take every pending engine chunk of one call; stream what is ready. */
static void call_pump(struct http_server *srv, http_call_t *call)
{
    bool streaming = call->rq.stream && !call->gone;
    struct evbuffer *out = streaming ? evbuffer_new() : NULL;
    double now = http_now();
    for (int i = 0; i < oai_n_choices(&call->rq); i++) {
        oai_choice_t *c = &call->choices[i];
        if (c->finish != REQ_FINISH_NONE) continue;
        req_chunk_t *ch = req_take_chunks(call->reqs[i]);
        if (!ch) continue;
        while (ch) {
            req_chunk_t *next = ch->next;
            if (ch->n_ids > 0) {
                if (call->t_first[i] == 0) call->t_first[i] = now;
                call->t_last[i] = now;
            }
            if (c->finish == REQ_FINISH_NONE && oai_choice_add(c, &call->rq, &srv->tok_ops, ch) != MS_OK) {
                /* out of memory for this choice's text: end it as an error */
                c->finish = REQ_FINISH_ERROR;
                coord_cancel(srv->opts.coord, call->reqs[i]);
            }
            req_chunk_free(ch);
            ch = next;
            /* one event per engine chunk: a client that times tokens by events (benchmark_serving's ITL)
             * must not see two chunks that queued up while this thread was busy as one */
            if (out) choice_events(call, i, out);
        }
        if (c->finish != REQ_FINISH_NONE) {
            pthread_mutex_lock(&call->reqs[i]->lock);
            c->n_cached = call->reqs[i]->n_cached_prompt;
            pthread_mutex_unlock(&call->reqs[i]->lock);
            call->n_done++;
            choice_metrics(srv, call, i);
        }
    }
    if (out) {
        if (evbuffer_get_length(out)) evhttp_send_reply_chunk(call->evreq, out);
        evbuffer_free(out);
    }
    if (call->n_done == oai_n_choices(&call->rq)) call_finish(srv, call, NULL);
}

void http_gen_wake(struct http_server *srv)
{
    for (http_call_t *call = srv->calls, *next; call; call = next) {
        next = call->next;
        call_pump(srv, call);
    }
}

void http_gen_abort_all(struct http_server *srv, const char *msg)
{
    while (srv->calls) {
        http_call_t *call = srv->calls;
        for (int i = 0; i < oai_n_choices(&call->rq); i++) {
            if (call->choices[i].finish != REQ_FINISH_NONE) continue;
            coord_cancel(srv->opts.coord, call->reqs[i]);
            call->choices[i].finish = REQ_FINISH_ABORT;
            call->n_done++;
            choice_metrics(srv, call, i);
        }
        call_finish(srv, call, msg);
    }
}

void http_gen_free_all(struct http_server *srv)
{
    while (srv->calls) {
        http_call_t *call = srv->calls;
        call_detach_conn(call);
        call_unlink(srv, call);
        /* a request detached from its dead connection is ours to free;
         * the others go with evhttp_free's connections */
        if (!call->evcon || call->gone) {
            if (!evhttp_request_get_connection(call->evreq)) evhttp_request_free(call->evreq);
        }
        call_free(call);
    }
}

void http_gen_handle(struct http_server *srv, struct evhttp_request *req, oai_kind_t kind)
{
    coord_stats_t st;
    coord_stats_get(srv->opts.coord, &st);
    if (srv->draining || st.draining) {
        http_reply_errorf(srv, req, 503, "service_unavailable", "the server is shutting down");
        return;
    }
    if (!st.ready) {
        http_reply_errorf(srv, req, 503, "service_unavailable", "the model is still loading; retry when /health is 200");
        return;
    }

    size_t len;
    const char *body = http_body(req, &len);
    if (!body) {
        http_reply_errorf(srv, req, 500, "internal_error", "out of memory reading the request body");
        return;
    }
    oai_error_t err;
    http_call_t *call = calloc(1, sizeof *call);
    if (!call) {
        http_reply_errorf(srv, req, 500, "internal_error", "out of memory");
        return;
    }
    if (!oai_parse(&srv->oai, kind, body, len, &call->rq, &err)) {
        free(call);
        http_reply_error(srv, req, &err);
        return;
    }
    call->srv = srv;
    call->evreq = req;
    call->created = (int64_t)time(NULL);
    oai_make_id(kind, call->id, sizeof call->id);
    int n = oai_n_choices(&call->rq);
    call->reqs = calloc((size_t)n, sizeof *call->reqs);
    call->choices = calloc((size_t)n, sizeof *call->choices);
    call->t_first = calloc((size_t)n, sizeof(double));
    call->t_last = calloc((size_t)n, sizeof(double));
    bool ok = call->reqs && call->choices && call->t_first && call->t_last;
    double now = http_now();
    for (int i = 0; ok && i < n; i++) {
        /* choice i: prompt i / best_of; with a seed, choice j of a prompt samples with seed + j (vLLM) */
        const oai_prompt_t *pr = &call->rq.prompts[i / call->rq.best_of];
        uint64_t seed = call->rq.params.seed;
        call->rq.params.seed = seed + (uint64_t)(i % call->rq.best_of);
        ok = oai_choice_init(&call->choices[i], &call->rq, i) == MS_OK &&
             req_create(&call->rq.params, pr->ids, pr->n_ids, &call->reqs[i]) == MS_OK;
        call->rq.params.seed = seed;
        if (ok) {
            call->reqs[i]->index = i;
            call->reqs[i]->t_arrival = now;
            call->reqs[i]->gateway_ctx = call;
        }
    }
    if (!ok) {
        if (call->reqs)
            for (int i = 0; i < n; i++) req_release(call->reqs[i]);
        free(call->reqs);
        call->reqs = NULL;
        call_free(call);
        http_reply_errorf(srv, req, 500, "internal_error", "out of memory creating %d requests", n);
        return;
    }
    for (int i = 0; i < n; i++) {
        ms_status_t s = coord_submit(srv->opts.coord, call->reqs[i]);
        if (s == MS_OK) continue;
        /* all or nothing: take back the prompts already queued */
        for (int k = 0; k < i; k++) coord_cancel(srv->opts.coord, call->reqs[k]);
        call_free(call);
        if (s == MS_ERR_NOMEM) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
            http_reply_errorf(srv, req, 429, "rate_limit_error",
                              "the server's request queue is full (%d waiting); retry later", st.waiting);
        } else {
            http_reply_errorf(srv, req, 503, "service_unavailable", "the server is shutting down");
        }
        return;
    }
    call_link(srv, call);
    call_watch(srv, call);
    if (call->rq.stream) {
        struct evkeyvalq *h = evhttp_request_get_output_headers(req);
        evhttp_add_header(h, "Content-Type", "text/event-stream; charset=utf-8");
        evhttp_add_header(h, "Cache-Control", "no-cache");
        if (srv->draining) evhttp_add_header(h, "Connection", "close");
        metrics_http_response(srv->metrics, 200);
        evhttp_send_reply_start(req, 200, "OK");
    }
    /* the engine may already have pushed output (it runs concurrently) */
    call_pump(srv, call);
}
