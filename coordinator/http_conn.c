/* http_conn.c — the gateway's connections (http_internal.h): how many are
 * open, how long a request may take to arrive, and the request-head guard.
 *
 * libevent 2.1's evhttp keeps its connections to itself, so we learn of
 * each one through the bufferevent callback (evhttp_set_bevcb): we create
 * the bufferevent, hold a reference until a deferred fix-up (same loop
 * iteration, before any byte is read) finds the evhttp_connection behind it
 * (the bufferevent's callback argument), and then track it with a close
 * callback and a callback on its input buffer. Every byte a client sends
 * passes that input callback before evhttp parses it, which gives us:
 *   - the request deadline: a request must arrive whole (head and body)
 *     within request_timeout of its first byte, else 408 and close. evhttp's
 *     own timeout restarts on every byte, so a trickling client held a
 *     connection forever;
 *   - the head guard: the request line, header lines, head size and
 *     Content-Length are checked as they arrive and answered with our JSON
 *     errors (libevent 2.1 answers these itself with an HTML page and offers
 *     no hook). A Content-Length over max_body_bytes is a 413 at once, not
 *     after reading (or lingering over) the body. The guard answers by
 *     writing straight to the socket and half-closing it, then lets evhttp
 *     finish (its own late reply hits the closed write side), and frees the
 *     connection after a 2 s linger for the client to read the answer.
 *     Bytes of a pipelined request that arrived with an earlier one are not
 *     guarded (a reply may still be queued before them): libevent's own
 *     checks apply there;
 *   - the connection cap: above max_connections the oldest idle connection
 *     (no request arriving, none being answered) is closed for the new one,
 *     else the one whose request has been trickling in longest (over 1 s),
 *     so health checks get through a flood of idle or slow sockets; when
 *     every connection is being answered the new one gets a 503 and is
 *     closed.
 * Accept errors (EMFILE) pause the listener with a growing back-off instead
 * of libevent's spin, close an idle connection to free a descriptor, and are
 * logged once per 5 s with a count. */
#include "http_internal.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define CONN_HEAD_MAX (64 * 1024) /* request line + headers */
#define CONN_LINGER_S 2.0
#define CONN_SWEEP_S 0.25
#define CONN_FD_RESERVE 256       /* descriptors kept for everything but clients */

enum { GUARD_HEAD, GUARD_SKIP };

struct http_conn {
    struct http_conn *prev, *next; /* srv->conns, oldest first */
    struct http_server *srv;
    struct evhttp_connection *evcon;
    struct bufferevent *bev;
    struct evbuffer_cb_entry *in_cb;
    http_call_t *call;             /* the generation request being answered, if any */
    double t_req;                  /* first byte of the request being received; 0 = none */
    double t_linger;               /* rejected: free at this time; 0 = not rejected */
    /* head guard */
    int guard;
    bool first_line_done;
    size_t head_bytes;
    char line[256];
    size_t line_len, line_total;
};

/* ---- list ---------------------------------------------------------------- */

static void conn_unlink(struct http_server *srv, http_conn_t *c)
{
    if (c->prev) c->prev->next = c->next;
    else srv->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    else srv->conns_tail = c->prev;
    srv->n_conns--;
}

static void conn_append(struct http_server *srv, http_conn_t *c)
{
    c->prev = srv->conns_tail;
    c->next = NULL;
    if (srv->conns_tail) srv->conns_tail->next = c;
    else srv->conns = c;
    srv->conns_tail = c;
    srv->n_conns++;
}

http_conn_t *http_conn_find(struct http_server *srv, struct evhttp_connection *evcon)
{
    for (http_conn_t *c = srv->conns_tail; c; c = c->prev) /* the newest are the likeliest */
        if (c->evcon == evcon) return c;
    return NULL;
}

static bool conn_idle(const http_conn_t *c)
{
    return !c->call && c->t_req == 0 && c->t_linger == 0 &&
           evbuffer_get_length(bufferevent_get_output(c->bev)) == 0;
}

/* ---- answering ourselves ------------------------------------------------- */

/* Write a whole JSON error reply straight to the socket (it is small and the
 * socket's buffer is empty: the guard only runs when no reply is queued). */
static void conn_send_error(http_conn_t *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void conn_send_error(http_conn_t *c, int code, const char *fmt, ...)
{
    oai_error_t err = {.status = code, .type = code == 503 ? "service_unavailable" : "invalid_request_error"};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err.message, sizeof err.message, fmt, ap);
    va_end(ap);
    size_t blen = 0;
    json_t *j = oai_error_body(&err);
    char *body = j ? oai_dump(j, false, &blen) : NULL;
    json_decref(j);
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n%s"
                      "Connection: close\r\n\r\n",
                      code, http_reason(code), body ? blen : 0, code == 503 ? "Retry-After: 1\r\n" : "");
    int fd = bufferevent_getfd(c->bev);
    if (fd >= 0) {
        struct iovec iov[2] = {{head, (size_t)hl}, {body, body ? blen : 0}};
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
        (void)sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    }
    free(body);
    metrics_http_response(c->srv->metrics, code);
}

/* Answer, half-close, and let the client read it for a moment. */
static void conn_reject(http_conn_t *c, int code, const char *msg)
{
    conn_send_error(c, code, "%s", msg);
    int fd = bufferevent_getfd(c->bev);
    if (fd >= 0) shutdown(fd, SHUT_WR);
    c->t_linger = http_now() + CONN_LINGER_S;
    c->guard = GUARD_SKIP;
}

/* ---- head guard ---------------------------------------------------------- */

static const char *const methods[] = {"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE", "CONNECT", "PATCH"};

/* One complete line of the head (without CR LF); false: rejected. */
static bool guard_line(http_conn_t *c)
{
    char *l = c->line;
    size_t n = c->line_len;
    char msg[200];
    if (!c->first_line_done) {
        if (n == 0) return true; /* blank lines before a request line are allowed */
        c->first_line_done = true;
        char *sp1 = memchr(l, ' ', n), *sp2 = sp1 ? memchr(sp1 + 1, ' ', n - (size_t)(sp1 + 1 - l)) : NULL;
        if (c->line_total > n || !sp1 || !sp2 || sp1 == l || sp2 == sp1 + 1) {
            conn_reject(c, 400, "malformed HTTP request line");
            return false;
        }
        size_t mlen = (size_t)(sp1 - l);
        bool known = false;
        for (size_t i = 0; i < sizeof methods / sizeof methods[0] && !known; i++)
            known = strlen(methods[i]) == mlen && !memcmp(methods[i], l, mlen);
        if (!known) {
            snprintf(msg, sizeof msg, "unknown HTTP method '%.*s'", (int)(mlen > 32 ? 32 : mlen), l);
            conn_reject(c, 400, msg);
            return false;
        }
        const char *ver = sp2 + 1;
        size_t vlen = n - (size_t)(ver - l);
        if (!(vlen == 8 && (!memcmp(ver, "HTTP/1.1", 8) || !memcmp(ver, "HTTP/1.0", 8)))) {
            snprintf(msg, sizeof msg, "unsupported HTTP version '%.*s' (HTTP/1.0 or HTTP/1.1)",
                     (int)(vlen > 16 ? 16 : vlen), ver);
            conn_reject(c, 400, msg);
            return false;
        }
        return true;
    }
    if (n == 0) { /* end of the head: the body is evhttp's (bounded by the deadline) */
        c->guard = GUARD_SKIP;
        return true;
    }
    if (l[0] == ' ' || l[0] == '\t') return true; /* continuation of the previous header */
    char *colon = memchr(l, ':', n);
    if (!colon) {
        if (c->line_total > n) return true; /* the colon may be past what we keep: evhttp judges */
        conn_reject(c, 400, "malformed HTTP header line (no ':')");
        return false;
    }
    size_t nlen = (size_t)(colon - l);
    if (nlen == 14 && !strncasecmp(l, "Content-Length", 14)) {
        const char *v = colon + 1, *end = l + n;
        while (v < end && (*v == ' ' || *v == '\t')) v++;
        while (end > v && (end[-1] == ' ' || end[-1] == '\t')) end--;
        unsigned long long len = 0;
        bool ok = c->line_total == n && v < end && end - v <= 19;
        for (const char *p = v; ok && p < end; p++) {
            ok = *p >= '0' && *p <= '9';
            len = len * 10 + (unsigned long long)(*p - '0');
        }
        if (!ok) {
            conn_reject(c, 400, "invalid Content-Length");
            return false;
        }
        if (len > c->srv->opts.max_body_bytes) {
            snprintf(msg, sizeof msg, "request body of %llu bytes exceeds the limit of %zu bytes", len,
                     c->srv->opts.max_body_bytes);
            conn_reject(c, 413, msg);
            return false;
        }
    }
    return true;
}

static void guard_feed(http_conn_t *c, const char *p, size_t n)
{
    for (size_t i = 0; i < n && c->guard == GUARD_HEAD; i++) {
        if (++c->head_bytes > CONN_HEAD_MAX) {
            char msg[96];
            snprintf(msg, sizeof msg, "request line and headers exceed %d bytes", CONN_HEAD_MAX);
            conn_reject(c, 431, msg);
            return;
        }
        char ch = p[i];
        if (ch == '\n') {
            if (c->line_len > 0 && c->line[c->line_len - 1] == '\r') c->line_len--;
            if (c->line_total > 0 && c->line_len == c->line_total - 1) c->line_total--;
            if (!guard_line(c)) return;
            c->line_len = c->line_total = 0;
        } else {
            if (c->line_len < sizeof c->line) c->line[c->line_len++] = ch;
            c->line_total++;
        }
    }
}

static void guard_reset(http_conn_t *c, bool skip)
{
    c->guard = skip ? GUARD_SKIP : GUARD_HEAD;
    c->first_line_done = false;
    c->head_bytes = c->line_len = c->line_total = 0;
}

static void on_input(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    http_conn_t *c = arg;
    if (info->n_added == 0) return;
    if (c->t_req == 0 && !c->call) c->t_req = http_now();
    if (c->guard != GUARD_HEAD) return;
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) != 0) { /* a reply is queued: not ours to interleave */
        c->guard = GUARD_SKIP;
        return;
    }
    /* the bytes just added are the tail of the buffer */
    struct evbuffer_ptr pos;
    size_t len = evbuffer_get_length(buf);
    if (evbuffer_ptr_set(buf, &pos, len - info->n_added, EVBUFFER_PTR_SET) != 0) return;
    struct evbuffer_iovec v[8];
    int nv = evbuffer_peek(buf, (ev_ssize_t)info->n_added, &pos, v, 8);
    size_t left = info->n_added;
    for (int i = 0; i < nv && i < 8 && left && c->guard == GUARD_HEAD; i++) {
        size_t k = v[i].iov_len < left ? v[i].iov_len : left;
        guard_feed(c, v[i].iov_base, k);
        left -= k;
    }
}

/* ---- lifetime ------------------------------------------------------------ */

static void on_close(struct evhttp_connection *evcon, void *arg)
{
    http_conn_t *c = arg;
    struct http_server *srv = c->srv;
    if (c->call) http_gen_conn_closed(c->call);
    if (c->in_cb) evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->in_cb);
    conn_unlink(srv, c);
    free(c);
}

static void conn_close(http_conn_t *c)
{
    evhttp_connection_free(c->evcon); /* calls on_close, which frees c */
}

static http_conn_t *oldest_idle(struct http_server *srv, const http_conn_t *except)
{
    for (http_conn_t *c = srv->conns; c; c = c->next)
        if (c != except && conn_idle(c)) return c;
    return NULL;
}

/* At the cap with nothing idle: the request that has been arriving longest
 * (at least a second: a trickling client, not a normal upload) makes room,
 * so a flood of slow clients cannot lock health checks out for a whole
 * request_timeout either. */
static http_conn_t *slowest_arriving(struct http_server *srv, const http_conn_t *except)
{
    http_conn_t *best = NULL;
    double now = http_now();
    for (http_conn_t *c = srv->conns; c; c = c->next)
        if (c != except && !c->call && !c->t_linger && c->t_req && now - c->t_req >= 1.0 &&
            (!best || c->t_req < best->t_req))
            best = c;
    return best;
}

static void conn_open(struct http_server *srv, struct evhttp_connection *evcon, struct bufferevent *bev)
{
    http_conn_t *c = calloc(1, sizeof *c);
    if (!c) return; /* untracked: evhttp still serves it */
    c->srv = srv;
    c->evcon = evcon;
    c->bev = bev;
    c->in_cb = evbuffer_add_cb(bufferevent_get_input(bev), on_input, c);
    conn_append(srv, c);
    evhttp_connection_set_closecb(evcon, on_close, c);
    if (srv->n_conns <= srv->max_conns) return;
    http_conn_t *old = oldest_idle(srv, c);
    if (!old) old = slowest_arriving(srv, c);
    if (old) {
        srv->conns_evicted++;
        conn_close(old);
        return;
    }
    srv->conns_refused++;
    conn_send_error(c, 503, "too many connections (%d open, all busy); retry later", srv->max_conns);
    conn_close(c);
}

static void on_fixup(evutil_socket_t fd, short what, void *arg)
{
    struct http_server *srv = arg;
    for (int i = 0; i < srv->n_pending; i++) {
        struct bufferevent *bev = srv->pending[i];
        bufferevent_data_cb rcb = NULL;
        void *cbarg = NULL;
        bufferevent_getcb(bev, &rcb, NULL, NULL, &cbarg);
        /* evhttp clears the callbacks when it frees a connection */
        if (rcb && cbarg && !srv->stopping) conn_open(srv, cbarg, bev);
        bufferevent_decref(bev);
    }
    srv->n_pending = 0;
}

static struct bufferevent *on_new_bev(struct event_base *base, void *arg)
{
    struct http_server *srv = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, 0); /* the options evhttp uses itself */
    if (!bev) return NULL;
    if (srv->n_pending == srv->cap_pending) {
        int cap = srv->cap_pending ? 2 * srv->cap_pending : 64;
        struct bufferevent **p = realloc(srv->pending, sizeof *p * (size_t)cap);
        if (!p) return bev; /* untracked */
        srv->pending = p;
        srv->cap_pending = cap;
    }
    bufferevent_incref(bev); /* alive until on_fixup, whatever evhttp does */
    srv->pending[srv->n_pending++] = bev;
    event_active(srv->fixup_ev, EV_READ, 0);
    return bev;
}

/* ---- the request deadline and lingering rejections ----------------------- */

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct http_server *srv = arg;
    double now = http_now();
    for (http_conn_t *c = srv->conns, *nx; c; c = nx) {
        nx = c->next;
        if (c->t_linger) {
            if (now >= c->t_linger) conn_close(c);
        } else if (!c->call && c->t_req && now - c->t_req > srv->opts.request_timeout_s) {
            srv->conns_timed_out++;
            if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
                conn_send_error(c, 408, "the request did not arrive whole within %g s", srv->opts.request_timeout_s);
            conn_close(c);
        }
    }
}

void http_conn_request_started(struct http_server *srv, struct evhttp_request *req)
{
    http_conn_t *c = http_conn_find(srv, evhttp_request_get_connection(req));
    if (!c) return;
    /* the request has arrived whole; what is already buffered is the next one (pipelined) */
    bool more = evbuffer_get_length(bufferevent_get_input(c->bev)) > 0;
    c->t_req = more ? http_now() : 0;
    guard_reset(c, more);
}

bool http_conn_rejected(struct http_server *srv, struct evhttp_request *req)
{
    http_conn_t *c = http_conn_find(srv, evhttp_request_get_connection(req));
    return c && c->t_linger != 0;
}

http_conn_t *http_conn_attach(struct http_server *srv, struct evhttp_connection *evcon, http_call_t *call)
{
    http_conn_t *c = evcon ? http_conn_find(srv, evcon) : NULL;
    if (c) c->call = call;
    return c;
}

void http_conn_detach(http_conn_t *c)
{
    if (!c) return;
    c->call = NULL;
    c->t_req = evbuffer_get_length(bufferevent_get_input(c->bev)) > 0 ? http_now() : 0;
}

/* ---- accept errors ------------------------------------------------------- */

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    struct http_server *srv = arg;
    if (srv->sock && !srv->stopping) evconnlistener_enable(evhttp_bound_socket_get_listener(srv->sock));
}

/* The listener's error callback gets evhttp's argument (the struct evhttp),
 * not ours: servers are found by it here (tests run several). */
static struct {
    struct evhttp *http;
    struct http_server *srv;
} g_servers[64];
static pthread_mutex_t g_servers_mu = PTHREAD_MUTEX_INITIALIZER;

static void servers_set(struct evhttp *http, struct http_server *srv)
{
    pthread_mutex_lock(&g_servers_mu);
    for (size_t i = 0; i < sizeof g_servers / sizeof g_servers[0]; i++) {
        if (srv && !g_servers[i].http) {
            g_servers[i].http = http, g_servers[i].srv = srv;
            break;
        }
        if (!srv && g_servers[i].http == http) {
            g_servers[i].http = NULL, g_servers[i].srv = NULL;
            break;
        }
    }
    pthread_mutex_unlock(&g_servers_mu);
}

static struct http_server *servers_get(struct evhttp *http)
{
    struct http_server *srv = NULL;
    pthread_mutex_lock(&g_servers_mu);
    for (size_t i = 0; i < sizeof g_servers / sizeof g_servers[0] && !srv; i++)
        if (g_servers[i].http == http) srv = g_servers[i].srv;
    pthread_mutex_unlock(&g_servers_mu);
    return srv;
}

static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();
    struct http_server *srv = servers_get(arg);
    if (!srv) { /* not registered (the table is full): at least do not spin */
        evconnlistener_disable(lev);
        return;
    }
    double now = http_now();
    srv->accept_errors++;
    srv->accept_backoff_ms = now - srv->accept_last_err < 2.0 ? srv->accept_backoff_ms * 2 : 25;
    if (srv->accept_backoff_ms > 1000) srv->accept_backoff_ms = 1000;
    srv->accept_last_err = now;
    if (now - srv->accept_last_log >= 5.0) {
        MS_WARN("http: accept() failed %d times in the last %.0f s (%s; %d connections open); pausing accepts, "
                "now for %d ms", srv->accept_errors, srv->accept_last_log ? now - srv->accept_last_log : 0.0,
                evutil_socket_error_to_string(err), srv->n_conns, srv->accept_backoff_ms);
        srv->accept_last_log = now;
        srv->accept_errors = 0;
    }
    /* Out of descriptors: an idle connection gives one back and accepting
     * goes on at once (each round accepts one and closes one: no spin), so
     * a backlog of flood connections drains and a health check behind it
     * gets in. With nothing idle to close, pause. */
    if (err == EMFILE || err == ENFILE) {
        http_conn_t *old = oldest_idle(srv, NULL);
        if (old) {
            srv->conns_evicted++;
            conn_close(old);
            srv->accept_backoff_ms = 25; /* the next pause, if it comes to that, starts small again */
            return;
        }
    }
    evconnlistener_disable(lev);
    struct timeval tv = {srv->accept_backoff_ms / 1000, (srv->accept_backoff_ms % 1000) * 1000};
    event_add(srv->accept_ev, &tv);
}

/* ---- setup --------------------------------------------------------------- */

ms_status_t http_conn_init(struct http_server *srv)
{
    srv->fixup_ev = event_new(srv->base, -1, 0, on_fixup, srv);
    srv->sweep_ev = event_new(srv->base, -1, EV_PERSIST, on_sweep, srv);
    srv->accept_ev = event_new(srv->base, -1, 0, on_accept_resume, srv);
    if (!srv->fixup_ev || !srv->sweep_ev || !srv->accept_ev) return MS_ERR(MS_ERR_NOMEM, "http: out of memory");
    evhttp_set_bevcb(srv->http, on_new_bev, srv);
    /* libevent's own head limit stays above the guard's, as a backstop */
    evhttp_set_max_headers_size(srv->http, CONN_HEAD_MAX + 16 * 1024);
    return MS_OK;
}

/* After the bind: the cap from the fd limit, the listener's error callback,
 * the sweep timer. */
void http_conn_start(struct http_server *srv)
{
    int want = srv->opts.max_connections > 0 ? srv->opts.max_connections : 8192;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rlim_t need = (rlim_t)want + CONN_FD_RESERVE;
        if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
            rlim_t old = rl.rlim_cur;
            rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
            if (setrlimit(RLIMIT_NOFILE, &rl) != 0) rl.rlim_cur = old;
        }
        if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)want + CONN_FD_RESERVE > rl.rlim_cur) {
            int fit = rl.rlim_cur > 2 * CONN_FD_RESERVE ? (int)(rl.rlim_cur - CONN_FD_RESERVE) : (int)rl.rlim_cur / 2;
            MS_WARN("http: max_connections %d lowered to %d: the open-file limit is %llu (ulimit -n)", want, fit,
                    (unsigned long long)rl.rlim_cur);
            want = fit;
        }
    }
    srv->max_conns = want;
    servers_set(srv->http, srv);
    evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(srv->sock), on_accept_error);
    struct timeval tv = {0, (int)(CONN_SWEEP_S * 1e6)};
    event_add(srv->sweep_ev, &tv);
}

void http_conn_stop(struct http_server *srv)
{
    event_del(srv->accept_ev);
}

void http_conn_free(struct http_server *srv)
{
    /* evhttp_free closed the connections; on_close freed ours, except for
     * those evhttp frees without a close callback (one already reset to
     * DISCONNECTED, e.g. after a read error while idle) */
    servers_set(srv->http, NULL);
    while (srv->conns) {
        http_conn_t *c = srv->conns;
        conn_unlink(srv, c);
        free(c);
    }
    for (int i = 0; i < srv->n_pending; i++) bufferevent_decref(srv->pending[i]);
    free(srv->pending);
    if (srv->fixup_ev) event_free(srv->fixup_ev);
    if (srv->sweep_ev) event_free(srv->sweep_ev);
    if (srv->accept_ev) event_free(srv->accept_ev);
}
