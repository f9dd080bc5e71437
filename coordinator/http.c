/* http.c — the gateway's server side (http.h): event base and thread,
 * listener, routing, the simple GET endpoints, reply helpers, and the
 * stop/drain sequence. Generation requests live in http_gen.c.
 *
 * libevent is made thread-aware (evthread_use_pthreads) before the base is
 * created, so the engine thread may event_active() our wake event; nothing
 * else crosses threads. */
#include "http_internal.h"
#include "coordinator/eplb_window.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "ms_build_config.h"
#include "tok.h"

double http_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

const char *http_reason(int code)
{
    switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

static void on_reply_complete(struct evhttp_request *req, void *arg)
{
    struct http_server *srv = arg;
    __atomic_fetch_sub(&srv->writing, 1, __ATOMIC_RELAXED);
}

/* Count a reply as "being written" until libevent has flushed it, so a
 * draining server does not close sockets under unsent bytes. */
void http_track_complete(struct http_server *srv, struct evhttp_request *req)
{
    __atomic_fetch_add(&srv->writing, 1, __ATOMIC_RELAXED);
    evhttp_request_set_on_complete_cb(req, on_reply_complete, srv);
}

void http_reply(struct http_server *srv, struct evhttp_request *req, int code, const char *ctype, const char *body,
                size_t len)
{
    struct evbuffer *buf = evbuffer_new();
    if (buf && body && len) evbuffer_add(buf, body, len);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    if (ctype) evhttp_add_header(h, "Content-Type", ctype);
    if (srv->draining) evhttp_add_header(h, "Connection", "close");
    metrics_http_response(srv->metrics, code);
    http_track_complete(srv, req);
    evhttp_send_reply(req, code, http_reason(code), buf);
    if (buf) evbuffer_free(buf);
}

void http_reply_json(struct http_server *srv, struct evhttp_request *req, int code, json_t *j)
{
    size_t len = 0;
    char *s = j ? oai_dump(j, false, &len) : NULL;
    json_decref(j);
    if (!s) {
        static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"internal_error\",\"param\":null,\"code\":500}}";
        http_reply(srv, req, 500, "application/json", oom, sizeof oom - 1);
        return;
    }
    http_reply(srv, req, code, "application/json", s, len);
    free(s);
}

void http_reply_error(struct http_server *srv, struct evhttp_request *req, const oai_error_t *err)
{
    http_reply_json(srv, req, err->status, oai_error_body(err));
}

void http_reply_errorf(struct http_server *srv, struct evhttp_request *req, int code, const char *type,
                       const char *fmt, ...)
{
    oai_error_t err = {.status = code, .type = type};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err.message, sizeof err.message, fmt, ap);
    va_end(ap);
    http_reply_error(srv, req, &err);
}

const char *http_body(struct evhttp_request *req, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    *len = evbuffer_get_length(in);
    return *len ? (const char *)evbuffer_pullup(in, (ev_ssize_t)*len) : "";
}

/* ---- simple endpoints --------------------------------------------------- */

static void handle_health(struct http_server *srv, struct evhttp_request *req)
{
    coord_stats_t st;
    coord_stats_get(srv->opts.coord, &st);
    if (srv->failed)
        http_reply_errorf(srv, req, 503, "service_unavailable", "%s", srv->fail_msg);
    else if (srv->draining || st.draining)
        http_reply_errorf(srv, req, 503, "service_unavailable", "the server is shutting down");
    else if (!st.ready)
        http_reply_errorf(srv, req, 503, "service_unavailable", "the model is still loading");
    else
        http_reply(srv, req, 200, "application/json", "{\"status\":\"ok\"}", 15);
}

static void handle_models(struct http_server *srv, struct evhttp_request *req)
{
    http_reply_json(srv, req, 200,
                    json_pack("{s:s, s:[{s:s, s:s, s:I, s:s}]}", "object", "list", "data", "id",
                              srv->opts.served_model_name, "object", "model", "created", (json_int_t)srv->created,
                              "owned_by", "moeserve"));
}

static void handle_version(struct http_server *srv, struct evhttp_request *req)
{
    http_reply_json(srv, req, 200, json_pack("{s:s}", "version", MS_VERSION));
}

static void handle_metrics(struct http_server *srv, struct evhttp_request *req)
{
    coord_stats_t st;
    coord_stats_get(srv->opts.coord, &st);
    char *text;
    size_t len;
    if (metrics_render(srv->metrics, &st, &text, &len) != MS_OK) {
        http_reply_errorf(srv, req, 500, "internal_error", "cannot render metrics");
        return;
    }
    if (srv->opts.eplb && eplb_window_metrics(srv->opts.eplb, &text, &len) != MS_OK) {
        free(text);
        http_reply_errorf(srv, req, 500, "internal_error", "cannot render metrics");
        return;
    }
    http_reply(srv, req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}

/* The live expert-load page (coordinator/dashboard.html, embedded by
 * embed_text.py) and the JSON it polls (eplb_window.h). */
extern const char ms_dashboard_html[];
extern const unsigned long ms_dashboard_html_len;

static void handle_dashboard(struct http_server *srv, struct evhttp_request *req)
{
    if (!srv->opts.eplb) {
        http_reply_errorf(srv, req, 404, "not_found_error", "no expert load to show: the model has no MoE layers");
        return;
    }
    http_reply(srv, req, 200, "text/html; charset=utf-8", ms_dashboard_html, (size_t)ms_dashboard_html_len);
}

static void handle_dashboard_data(struct http_server *srv, struct evhttp_request *req)
{
    if (!srv->opts.eplb) {
        http_reply_errorf(srv, req, 404, "not_found_error", "no expert load to show: the model has no MoE layers");
        return;
    }
    json_t *j = eplb_window_json(srv->opts.eplb);
    if (!j) {
        http_reply_errorf(srv, req, 500, "internal_error", "out of memory");
        return;
    }
    http_reply_json(srv, req, 200, j);
}

static void handle_completions(struct http_server *srv, struct evhttp_request *req)
{
    http_gen_handle(srv, req, OAI_COMPLETION);
}

static void handle_chat(struct http_server *srv, struct evhttp_request *req)
{
    http_gen_handle(srv, req, OAI_CHAT);
}

static const struct {
    const char *path;
    int methods; /* evhttp_cmd_type bits */
    const char *allow;
    void (*fn)(struct http_server *, struct evhttp_request *);
} routes[] = {
    {"/health", EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, "GET, HEAD", handle_health},
    {"/v1/models", EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, "GET, HEAD", handle_models},
    {"/version", EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, "GET, HEAD", handle_version},
    {"/metrics", EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, "GET, HEAD", handle_metrics},
    {"/dashboard", EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, "GET, HEAD", handle_dashboard},
    {"/dashboard/data", EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, "GET, HEAD", handle_dashboard_data},
    {"/v1/completions", EVHTTP_REQ_POST, "POST", handle_completions},
    {"/v1/chat/completions", EVHTTP_REQ_POST, "POST", handle_chat},
    {"/tokenize", EVHTTP_REQ_POST, "POST", http_tok_tokenize},
    {"/detokenize", EVHTTP_REQ_POST, "POST", http_tok_detokenize},
    {"/tokenizer_info", EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, "GET, HEAD", http_tok_info},
};

static void on_request(struct evhttp_request *req, void *arg)
{
    struct http_server *srv = arg;
    http_conn_request_started(srv, req);
    if (http_conn_rejected(srv, req)) { /* the guard answered already; the socket's write side is closed */
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        evhttp_send_reply(req, 400, "Bad Request", NULL);
        return;
    }
    const char *uri = evhttp_request_get_uri(req);
    if (!uri) { /* libevent already failed the request (e.g. 413) */
        http_reply_errorf(srv, req, 400, "invalid_request_error", "malformed HTTP request");
        return;
    }
    size_t body_len = evbuffer_get_length(evhttp_request_get_input_buffer(req));
    if (body_len > srv->opts.max_body_bytes) {
        http_reply_errorf(srv, req, 413, "invalid_request_error", "request body of %zu bytes exceeds the limit of %zu bytes",
                          body_len, srv->opts.max_body_bytes);
        return;
    }
    size_t plen = strcspn(uri, "?#");
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strlen(routes[i].path) != plen || strncmp(routes[i].path, uri, plen)) continue;
        if (!(evhttp_request_get_command(req) & routes[i].methods)) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", routes[i].allow);
            http_reply_errorf(srv, req, 405, "invalid_request_error", "method not allowed on %s (use %s)",
                              routes[i].path, routes[i].allow);
            return;
        }
        routes[i].fn(srv, req);
        return;
    }
    http_reply_errorf(srv, req, 404, "not_found_error", "no route for %.*s", (int)(plen > 200 ? 200 : plen), uri);
}

/* ---- engine wake-up, stop and drain ------------------------------------- */

/* Called on the engine thread by coord_push_chunk. */
static void on_notify(void *arg)
{
    struct http_server *srv = arg;
    event_active(srv->wake_ev, EV_READ, 0);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    http_gen_wake(arg);
}

static void drain_check(struct http_server *srv)
{
    double now = http_now();
    if (srv->n_calls > 0 && now >= srv->drain_deadline) {
        MS_WARN("http: %d requests still in flight after the drain timeout; ending them", srv->n_calls);
        http_gen_abort_all(srv, NULL);
    }
    if (srv->n_calls > 0) {
        srv->drain_idle_since = 0;
        return;
    }
    if (srv->drain_idle_since == 0) srv->drain_idle_since = now;
    /* replies whose socket died never report completion: give them 2 s */
    if (http_server_writing(srv) <= 0 || now - srv->drain_idle_since > 2.0) event_base_loopexit(srv->base, NULL);
}

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    drain_check(arg);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    struct http_server *srv = arg;
    if (srv->stopping) return;
    srv->stopping = srv->draining = true;
    http_conn_stop(srv);
    if (srv->sock) {
        evhttp_del_accept_socket(srv->http, srv->sock);
        srv->sock = NULL;
    }
    if (srv->n_calls) MS_INFO("http: stopped accepting; %d requests still being answered", srv->n_calls);
    srv->drain_deadline = http_now() + srv->opts.drain_timeout_s;
    struct timeval tv = {0, 20000};
    event_add(srv->drain_ev, &tv);
    drain_check(srv);
}

static void on_drain_start(evutil_socket_t fd, short what, void *arg)
{
    struct http_server *srv = arg;
    if (srv->draining) return;
    srv->draining = true;
    MS_INFO("http: draining: %d requests in flight; /health and new requests answer 503", srv->n_calls);
}

static void on_fail(evutil_socket_t fd, short what, void *arg)
{
    struct http_server *srv = arg;
    srv->draining = srv->failed = true;
    if (srv->n_calls) MS_WARN("http: ending %d requests in flight: %s", srv->n_calls, srv->fail_msg);
    http_gen_abort_all(srv, srv->fail_msg);
}

void http_server_drain(http_server_t *srv)
{
    if (srv && srv->started) event_active(srv->drain_start_ev, EV_READ, 0);
}

int http_server_in_flight(const http_server_t *srv)
{
    return __atomic_load_n(&srv->n_calls, __ATOMIC_RELAXED);
}

int http_server_writing(const http_server_t *srv)
{
    return __atomic_load_n(&srv->writing, __ATOMIC_RELAXED);
}

void http_server_fail_all(http_server_t *srv, const char *msg)
{
    if (!srv || !srv->started || srv->fail_msg[0]) return;
    snprintf(srv->fail_msg, sizeof srv->fail_msg, "%s", msg && *msg ? msg : "the server failed");
    event_active(srv->fail_ev, EV_READ, 0); /* takes the base's lock: fail_msg is visible there */
}

static void *gateway_main(void *arg)
{
    struct http_server *srv = arg;
    /* A write to a socket whose peer left must be EPIPE, not a process-wide
     * SIGPIPE: blocked in this thread, whatever the program does with it. */
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);
    event_base_loop(srv->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

/* ---- oai_tok_ops_t over the real tokenizer ------------------------------ */

static ms_status_t tk_encode(void *a, const char *t, size_t len, bool sp, int32_t **ids, size_t *n)
{
    return tok_encode(a, t, len, sp, ids, n);
}
static ms_status_t tk_decode(void *a, const int32_t *ids, size_t n, bool skip, char **t, size_t *len)
{
    return tok_decode(a, ids, n, skip, t, len);
}
static ms_status_t tk_chat(void *a, const oai_msg_t *m, size_t n, bool gen, char **p)
{
    chat_msg_t *cm = malloc(sizeof *cm * (n ? n : 1));
    if (!cm) return MS_ERR(MS_ERR_NOMEM, "http: out of memory");
    for (size_t i = 0; i < n; i++) cm[i] = (chat_msg_t){.role = m[i].role, .content = m[i].content};
    ms_status_t st = chat_render(a, cm, n, gen, p);
    free(cm);
    return st;
}
static const char *tk_bytes(void *a, int32_t id, size_t *len)
{
    return tok_token_bytes(a, id, len);
}

/* ---- lifecycle ---------------------------------------------------------- */

static int ev_threads_rc;
static void ev_threads_init(void)
{
    ev_threads_rc = evthread_use_pthreads();
}

ms_status_t http_server_create(const http_opts_t *opts, http_server_t **out)
{
    if (!opts->coord) return MS_ERR(MS_ERR_INVALID, "http: no coordinator");
    if (!opts->tok && !opts->tok_ops) return MS_ERR(MS_ERR_INVALID, "http: no tokenizer");
    if (opts->port < 0 || opts->port > 65535) return MS_ERR(MS_ERR_INVALID, "http: port %d out of range", opts->port);
    if (opts->max_seq_len <= 1) return MS_ERR(MS_ERR_INVALID, "http: max_seq_len %d too small", opts->max_seq_len);
    if (opts->vocab_size <= 0) return MS_ERR(MS_ERR_INVALID, "http: vocab_size %d", opts->vocab_size);
    if (!opts->served_model_name || !*opts->served_model_name)
        return MS_ERR(MS_ERR_INVALID, "http: no served model name");

    /* Must precede event_base_new so the base gets a lock and a wake-up fd. */
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, ev_threads_init);
    if (ev_threads_rc != 0) return MS_ERR(MS_ERR_INTERNAL, "http: libevent has no pthreads support (evthread_use_pthreads failed)");

    struct http_server *srv = calloc(1, sizeof *srv);
    if (!srv) return MS_ERR(MS_ERR_NOMEM, "http: out of memory");
    srv->opts = *opts;
    srv->opts.host = strdup(opts->host ? opts->host : "0.0.0.0");
    srv->opts.served_model_name = strdup(opts->served_model_name);
    if (!srv->opts.host || !srv->opts.served_model_name) goto out_free;
    if (!srv->opts.max_body_bytes) srv->opts.max_body_bytes = 32u << 20;
    if (srv->opts.request_timeout_s <= 0) srv->opts.request_timeout_s = 60;
    if (srv->opts.drain_timeout_s <= 0) srv->opts.drain_timeout_s = 30;
    if (srv->opts.stream_interval <= 0) srv->opts.stream_interval = 1;
    if (opts->tok_ops) {
        srv->tok_ops = *opts->tok_ops;
    } else {
        srv->tok_ops = (oai_tok_ops_t){.arg = (void *)opts->tok, .encode = tk_encode, .decode = tk_decode,
                                       .chat = tk_chat, .token_bytes = tk_bytes};
    }
    srv->oai = (oai_ctx_t){.served_model = srv->opts.served_model_name, .max_seq_len = opts->max_seq_len,
                           .vocab_size = opts->vocab_size, .stream_interval = srv->opts.stream_interval,
                           .bos_id = opts->tok ? tok_bos_id(opts->tok) : -1,
                           .eos_id = opts->tok ? tok_eos_id(opts->tok) : -1,
                           .tok = &srv->tok_ops};
    if (metrics_create(&srv->metrics) != MS_OK) goto out_free;
    srv->base = event_base_new();
    if (!srv->base) goto out_metrics;
    srv->http = evhttp_new(srv->base);
    srv->wake_ev = event_new(srv->base, -1, 0, on_wake, srv);
    srv->stop_ev = event_new(srv->base, -1, 0, on_stop, srv);
    srv->drain_ev = event_new(srv->base, -1, EV_PERSIST, on_drain_tick, srv);
    srv->drain_start_ev = event_new(srv->base, -1, 0, on_drain_start, srv);
    srv->fail_ev = event_new(srv->base, -1, 0, on_fail, srv);
    if (!srv->http || !srv->wake_ev || !srv->stop_ev || !srv->drain_ev || !srv->drain_start_ev || !srv->fail_ev)
        goto out_events;
    if (http_conn_init(srv) != MS_OK) goto out_events;
    /* libevent 2.1 answers bodies over its own limit with an HTML page and
     * offers no hook to change that, so its limit is a hard cap above ours
     * (2x + 1 MiB) and on_request answers the JSON 413 for everything between.
     * Only bodies past the hard cap still get libevent's page. */
    evhttp_set_max_body_size(srv->http, (ev_ssize_t)(2 * srv->opts.max_body_bytes + (1u << 20)));
    /* Read the rest of an oversized body before closing, so the client sees our 413. */
    evhttp_set_flags(srv->http, EVHTTP_SERVER_LINGERING_CLOSE);
    /* Every method reaches on_request, which answers 405 as JSON. */
    evhttp_set_allowed_methods(srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                                              EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                              EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    /* Reading a request and writing to a stalled client time out; a request
     * being generated is not affected (libevent stops reading meanwhile). */
    evhttp_set_timeout(srv->http, 300);
    evhttp_set_gencb(srv->http, on_request, srv);
    *out = srv;
    return MS_OK;

out_events:
    if (srv->http) evhttp_free(srv->http);
    srv->http = NULL;
    http_conn_free(srv);
    if (srv->fail_ev) event_free(srv->fail_ev);
    if (srv->drain_start_ev) event_free(srv->drain_start_ev);
    if (srv->drain_ev) event_free(srv->drain_ev);
    if (srv->stop_ev) event_free(srv->stop_ev);
    if (srv->wake_ev) event_free(srv->wake_ev);
    if (srv->http) evhttp_free(srv->http);
    event_base_free(srv->base);
out_metrics:
    metrics_destroy(srv->metrics);
out_free:
    free((char *)srv->opts.host);
    free((char *)srv->opts.served_model_name);
    free(srv);
    return MS_ERR(MS_ERR_NOMEM, "http: out of memory setting up the server");
}

ms_status_t http_server_start(http_server_t *srv)
{
    if (srv->started) return MS_ERR(MS_ERR_INVALID, "http: server already started");
    errno = 0;
    srv->sock = evhttp_bind_socket_with_handle(srv->http, srv->opts.host, (ev_uint16_t)srv->opts.port);
    if (!srv->sock)
        return MS_ERR(MS_ERR_IO, "http: cannot listen on %s:%d: %s", srv->opts.host, srv->opts.port,
                      errno ? strerror(errno) : "bind failed (address in use or not resolvable?)");
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    srv->port = srv->opts.port;
    if (getsockname(evhttp_bound_socket_get_fd(srv->sock), (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) srv->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6) srv->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    srv->created = (int64_t)time(NULL);
    http_conn_start(srv);
    coord_set_notify(srv->opts.coord, on_notify, srv);
    int rc = pthread_create(&srv->thread, NULL, gateway_main, srv);
    if (rc) {
        coord_set_notify(srv->opts.coord, NULL, NULL);
        evhttp_del_accept_socket(srv->http, srv->sock);
        srv->sock = NULL;
        return MS_ERR(MS_ERR_INTERNAL, "http: cannot start the gateway thread: %s", strerror(rc));
    }
    srv->started = true;
    MS_INFO("http: serving %s on http://%s:%d", srv->opts.served_model_name, srv->opts.host, srv->port);
    return MS_OK;
}

int http_server_port(const http_server_t *srv)
{
    return srv->port;
}

void http_server_stop(http_server_t *srv)
{
    if (!srv || !srv->started || srv->stopped) return;
    event_active(srv->stop_ev, EV_READ, 0);
    pthread_join(srv->thread, NULL);
    srv->stopped = true;
}

void http_server_destroy(http_server_t *srv)
{
    if (!srv) return;
    http_server_stop(srv);
    /* From here the engine must not push chunks any more (http.h). */
    if (srv->started) coord_set_notify(srv->opts.coord, NULL, NULL);
    http_gen_free_all(srv);
    event_free(srv->fail_ev);
    event_free(srv->drain_start_ev);
    event_free(srv->drain_ev);
    event_free(srv->stop_ev);
    event_free(srv->wake_ev);
    evhttp_free(srv->http);
    http_conn_free(srv);
    event_base_free(srv->base);
    metrics_destroy(srv->metrics);
    free((char *)srv->opts.host);
    free((char *)srv->opts.served_model_name);
    free(srv);
}
