/* bench_client.c — moeserve-bench's HTTP side (bench.h): request arrivals
 * (Poisson/gamma or all at once), the concurrency limit, one streamed POST
 * per prompt over libevent's evhttp client, and the SSE reader that stamps
 * TTFT, ITL and E2EL the way benchmark_serving's request functions do.
 *
 * Single-threaded: everything runs on one event base. Each request has its
 * own connection (benchmark_serving's force_close connector), so a dropped
 * or refused connection fails that request only. A request that fails
 * (non-200, a dropped stream, an error event, no byte for
 * --request-timeout seconds) is recorded with its reason; the run goes on
 * and ends when every request has ended, so nothing here can hang past the
 * timeout. */
#include "bench.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct client client_t;

typedef struct {
    client_t *c;
    bench_req_t *r;
    struct evhttp_connection *evcon;
    double t_start, t_recent;
    bool first;       /* a choices event has arrived (TTFT taken) */
    bool done_marker; /* [DONE] seen */
    int status;       /* HTTP status once headers are in; 0 before */
    char *reason;     /* HTTP reason phrase (owned) */
    struct evbuffer *sse;  /* 200: bytes not yet split into events */
    struct evbuffer *body; /* non-200: the error body */
    enum evhttp_request_error net_err;
    bool net_failed;
} call_t;

struct client {
    const bench_args_t *a;
    struct event_base *base;
    char *host, *path;
    int port;
    bench_req_t *reqs;
    int n;
    double *arrive; /* seconds after t0 */
    double t0;
    int arrived, started, inflight, finished;
    struct event *arrival_ev;
    bench_progress_fn progress;
    void *progress_arg;
    ms_status_t fatal;
};

static void req_fail(bench_req_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void req_fail(bench_req_t *r, const char *fmt, ...)
{
    if (r->error) return; /* the first reason is the one that counts */
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    r->error = strdup(buf);
    r->success = false;
}

static bool itl_push(bench_req_t *r, double v)
{
    if (r->n_itl == r->cap_itl) {
        size_t cap = r->cap_itl ? 2 * r->cap_itl : 64;
        double *p = realloc(r->itl, cap * sizeof *p);
        if (!p) return false;
        r->itl = p;
        r->cap_itl = cap;
    }
    r->itl[r->n_itl++] = v;
    return true;
}

static bool gen_append(bench_req_t *r, const char *s, size_t len)
{
    if (r->gen_len + len + 1 > r->gen_cap) {
        size_t cap = r->gen_cap ? r->gen_cap : 256;
        while (cap < r->gen_len + len + 1) cap *= 2;
        char *p = realloc(r->generated, cap);
        if (!p) return false;
        r->generated = p;
        r->gen_cap = cap;
    }
    memcpy(r->generated + r->gen_len, s, len);
    r->gen_len += len;
    r->generated[r->gen_len] = 0;
    return true;
}

/* Tokens an event carries, when it says: the per-token logprobs lists. */
static size_t event_tokens(const bench_args_t *a, json_t *choice)
{
    json_t *lp = json_object_get(choice, "logprobs");
    if (!json_is_object(lp)) return 1;
    json_t *list = json_object_get(lp, a->backend == BENCH_OPENAI_CHAT ? "content" : "tokens");
    size_t k = json_is_array(list) ? json_array_size(list) : 0;
    return k ? k : 1;
}

/* One SSE event's data. benchmark_serving: an event with a non-empty
 * "choices" is a token event (even with empty text); one with "usage" gives
 * the counts; "[DONE]" ends. An error object mid-stream (the gateway's 500
 * after a failed step) fails the request: benchmark_serving would skip it
 * and count a truncated reply as a success. */
static void on_event(call_t *k, const char *data, size_t len, double now)
{
    bench_req_t *r = k->r;
    if (len == 6 && !memcmp(data, "[DONE]", 6)) {
        k->done_marker = true;
        return;
    }
    json_error_t jerr;
    json_t *j = json_loadb(data, len, 0, &jerr);
    if (!j) {
        req_fail(r, "bad SSE event (%s): %.200s", jerr.text, data);
        return;
    }
    json_t *choices = json_object_get(j, "choices"), *usage = json_object_get(j, "usage");
    json_t *err = json_object_get(j, "error");
    if (json_is_array(choices) && json_array_size(choices) > 0) {
        json_t *c0 = json_array_get(choices, 0);
        json_t *text = k->c->a->backend == BENCH_OPENAI_CHAT ? json_object_get(json_object_get(c0, "delta"), "content")
                                                              : json_object_get(c0, "text");
        if (!k->first) {
            k->first = true;
            r->ttft = now - k->t_start;
        } else {
            size_t ntok = event_tokens(k->c->a, c0);
            double gap = (now - k->t_recent) / (double)ntok;
            for (size_t i = 0; i < ntok; i++)
                if (!itl_push(r, gap)) req_fail(r, "out of memory");
        }
        k->t_recent = now;
        if (json_is_string(text) && !gen_append(r, json_string_value(text), json_string_length(text)))
            req_fail(r, "out of memory");
    } else if (json_is_object(usage)) {
        json_t *ct = json_object_get(usage, "completion_tokens"), *pt = json_object_get(usage, "prompt_tokens");
        if (json_is_integer(ct)) {
            r->output_tokens = (int)json_integer_value(ct);
            r->usage_seen = true;
        }
        if (json_is_integer(pt)) r->prompt_len = (int)json_integer_value(pt);
    } else if (err || json_is_string(json_object_get(j, "message"))) {
        json_t *m = json_object_get(json_is_object(err) ? err : j, "message");
        req_fail(r, "error event in stream: %s", json_is_string(m) ? json_string_value(m) : "(no message)");
    }
    json_decref(j);
}

/* Split k->sse into events ("\n\n"-terminated; "\r\n" tolerated) and feed
 * the data lines of each. */
static void sse_drain(call_t *k, double now)
{
    for (;;) {
        size_t n = evbuffer_get_length(k->sse);
        if (!n) return;
        char *p = (char *)evbuffer_pullup(k->sse, -1);
        size_t end = 0, skip = 0;
        for (size_t i = 0; i + 1 < n; i++) {
            if (p[i] == '\n' && p[i + 1] == '\n') {
                end = i, skip = 2;
                break;
            }
            if (i + 3 < n && !memcmp(p + i, "\r\n\r\n", 4)) {
                end = i, skip = 4;
                break;
            }
        }
        if (!skip) return; /* an incomplete event: wait for more bytes */
        size_t pos = 0;
        while (pos < end) {
            size_t e = pos;
            while (e < end && p[e] != '\n') e++;
            size_t l = e - pos;
            if (l && p[pos + l - 1] == '\r') l--;
            if (l >= 5 && !memcmp(p + pos, "data:", 5)) {
                size_t off = pos + 5 + (l > 5 && p[pos + 5] == ' ');
                on_event(k, p + off, pos + l - off, now);
            } /* comments (":...") and other fields carry no data */
            pos = e + 1;
        }
        evbuffer_drain(k->sse, end + skip);
    }
}

static void on_chunk(struct evhttp_request *req, void *arg)
{
    call_t *k = arg;
    double now = http_now();
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    if (k->status == 200) {
        evbuffer_add_buffer(k->sse, in);
        sse_drain(k, now);
    } else {
        evbuffer_add_buffer(k->body, in);
    }
}

static int on_headers(struct evhttp_request *req, void *arg)
{
    call_t *k = arg;
    k->status = evhttp_request_get_response_code(req);
    const char *rs = evhttp_request_get_response_code_line(req);
    k->reason = strdup(rs ? rs : "");
    return 0;
}

static const char *net_err_str(enum evhttp_request_error e)
{
    switch (e) {
    case EVREQ_HTTP_TIMEOUT: return "timed out (no byte from the server within --request-timeout)";
    case EVREQ_HTTP_EOF: return "connection closed by the server before the reply ended";
    case EVREQ_HTTP_INVALID_HEADER: return "invalid HTTP reply header";
    case EVREQ_HTTP_BUFFER_ERROR: return "connection error (refused or reset)";
    case EVREQ_HTTP_REQUEST_CANCEL: return "request cancelled";
    case EVREQ_HTTP_DATA_TOO_LONG: return "reply too long";
    }
    return "connection error";
}

static void on_error(enum evhttp_request_error e, void *arg)
{
    call_t *k = arg;
    k->net_failed = true;
    k->net_err = e;
}

static void free_conn_cb(evutil_socket_t fd, short what, void *arg) { evhttp_connection_free(arg); }

static void dispatch(client_t *c);

/* The error message of an OpenAI-style body, else the body's start. */
static void fail_http(call_t *k)
{
    size_t n = evbuffer_get_length(k->body);
    const char *b = n ? (const char *)evbuffer_pullup(k->body, -1) : "";
    json_t *j = n ? json_loadb(b, n, 0, NULL) : NULL;
    json_t *m = json_object_get(json_object_get(j, "error"), "message");
    if (!m) m = json_object_get(j, "message");
    if (json_is_string(m))
        req_fail(k->r, "HTTP %d %s: %s", k->status, k->reason ? k->reason : "", json_string_value(m));
    else
        req_fail(k->r, "HTTP %d %s: %.*s", k->status, k->reason ? k->reason : "", (int)(n < 200 ? n : 200), b);
    json_decref(j);
}

static void call_end(call_t *k)
{
    client_t *c = k->c;
    bench_req_t *r = k->r;
    if (k->net_failed) req_fail(r, "%s", net_err_str(k->net_err));
    else if (k->status != 200) fail_http(k);
    else if (!k->first) req_fail(r, "the stream ended without a token event");
    if (!r->error) {
        r->success = true;
        r->latency = k->t_recent - k->t_start;
    }
    /* libevent is still inside this connection's callback: free it later */
    const struct timeval zero = {0, 0};
    if (k->evcon) event_base_once(c->base, -1, EV_TIMEOUT, free_conn_cb, k->evcon, &zero);
    evbuffer_free(k->sse);
    evbuffer_free(k->body);
    free(k->reason);
    free(k);
    c->inflight--;
    c->finished++;
    if (c->progress) c->progress(c->finished, c->n, c->progress_arg);
    if (c->finished == c->n) event_base_loopbreak(c->base);
    else dispatch(c);
}

static void on_done(struct evhttp_request *req, void *arg)
{
    call_t *k = arg;
    if (!req && !k->net_failed) { /* failed before the error callback could say why */
        k->net_failed = true;
        k->net_err = EVREQ_HTTP_BUFFER_ERROR;
    }
    if (req && k->status == 0) on_headers(req, k);
    if (req) on_chunk(req, k); /* whatever the chunk callback has not seen */
    call_end(k);
}

static char *body_json(const bench_args_t *a, const bench_req_t *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "model", json_string(a->served_model_name ? a->served_model_name : a->model));
    if (a->backend == BENCH_OPENAI_CHAT) {
        json_object_set_new(o, "messages",
                            json_pack("[{s:s, s:[{s:s, s:s}]}]", "role", "user", "content", "type", "text", "text",
                                      r->text));
        json_object_set_new(o, "max_completion_tokens", json_integer(r->output_len));
        if (a->logprobs >= 0) {
            json_object_set_new(o, "logprobs", json_true());
            json_object_set_new(o, "top_logprobs", json_integer(a->logprobs));
        }
    } else {
        if (r->text) {
            json_object_set_new(o, "prompt", json_string(r->text));
        } else {
            json_t *ids = json_array();
            for (size_t i = 0; i < r->n_ids; i++) json_array_append_new(ids, json_integer(r->ids[i]));
            json_object_set_new(o, "prompt", ids);
        }
        json_object_set_new(o, "repetition_penalty", json_real(1.0));
        json_object_set_new(o, "max_tokens", json_integer(r->output_len));
        json_object_set_new(o, "logprobs", a->logprobs >= 0 ? json_integer(a->logprobs) : json_null());
    }
    json_object_set_new(o, "temperature", json_real(a->temperature));
    json_object_set_new(o, "stream", json_true());
    json_object_set_new(o, "stream_options", json_pack("{s:b}", "include_usage", 1));
    if (a->ignore_eos) json_object_set_new(o, "ignore_eos", json_true());
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static void call_start(client_t *c, bench_req_t *r)
{
    call_t *k = calloc(1, sizeof *k);
    char *body = NULL;
    if (k) {
        k->c = c;
        k->r = r;
        k->sse = evbuffer_new();
        k->body = evbuffer_new();
    }
    body = k ? body_json(c->a, r) : NULL;
    c->inflight++;
    if (!k || !k->sse || !k->body || !body) {
        if (k) {
            if (k->sse) evbuffer_free(k->sse);
            if (k->body) evbuffer_free(k->body);
            free(k);
        }
        free(body);
        c->fatal = MS_ERR(MS_ERR_NOMEM, "bench: out of memory");
        c->inflight--;
        event_base_loopbreak(c->base);
        return;
    }
    k->evcon = evhttp_connection_base_new(c->base, NULL, c->host, (unsigned short)c->port);
    struct evhttp_request *req = k->evcon ? evhttp_request_new(on_done, k) : NULL;
    if (!req) {
        k->net_failed = true;
        k->net_err = EVREQ_HTTP_BUFFER_ERROR;
        free(body);
        call_end(k);
        return;
    }
    evhttp_connection_set_timeout(k->evcon, (int)ceil(c->a->request_timeout_s));
    evhttp_connection_set_retries(k->evcon, 0);
    evhttp_request_set_chunked_cb(req, on_chunk);
    evhttp_request_set_header_cb(req, on_headers);
    evhttp_request_set_error_cb(req, on_error);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char hostport[300];
    snprintf(hostport, sizeof hostport, "%s:%d", c->host, c->port);
    evhttp_add_header(h, "Host", hostport);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Accept", "text/event-stream");
    const char *key = getenv("OPENAI_API_KEY");
    if (key && *key) {
        char auth[512];
        snprintf(auth, sizeof auth, "Bearer %s", key);
        evhttp_add_header(h, "Authorization", auth);
    }
    evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
    free(body);
    k->t_start = k->t_recent = http_now();
    if (evhttp_make_request(k->evcon, req, EVHTTP_REQ_POST, c->path) != 0) {
        /* libevent freed req; the callback will not run */
        k->net_failed = true;
        k->net_err = EVREQ_HTTP_BUFFER_ERROR;
        call_end(k);
    }
}

static void dispatch(client_t *c)
{
    while (!c->fatal && c->started < c->arrived && (c->a->max_concurrency <= 0 || c->inflight < c->a->max_concurrency))
        call_start(c, &c->reqs[c->started++]);
}

static void on_arrival(evutil_socket_t fd, short what, void *arg)
{
    client_t *c = arg;
    double t = http_now() - c->t0;
    while (c->arrived < c->n && c->arrive[c->arrived] <= t) c->arrived++;
    if (c->arrived < c->n) {
        double wait = c->arrive[c->arrived] - t;
        struct timeval tv = {(time_t)wait, (suseconds_t)((wait - floor(wait)) * 1e6)};
        evtimer_add(c->arrival_ev, &tv);
    }
    dispatch(c);
}

/* http://host[:port] + endpoint -> host, port, path. */
static ms_status_t url_parse(const bench_args_t *a, client_t *c)
{
    char url[2048];
    if (a->base_url) snprintf(url, sizeof url, "%s%s", a->base_url, a->endpoint);
    else snprintf(url, sizeof url, "http://%s:%d%s", a->host, a->port, a->endpoint);
    struct evhttp_uri *u = evhttp_uri_parse(url);
    if (!u) return MS_ERR(MS_ERR_INVALID, "bench: cannot parse URL '%s'", url);
    ms_status_t st = MS_OK;
    const char *scheme = evhttp_uri_get_scheme(u), *host = evhttp_uri_get_host(u), *path = evhttp_uri_get_path(u);
    if (!scheme || strcmp(scheme, "http") != 0) {
        st = MS_ERR(MS_ERR_UNSUPPORTED, "bench: URL '%s': only http:// is supported", url);
        goto out;
    }
    if (!host || !*host) {
        st = MS_ERR(MS_ERR_INVALID, "bench: URL '%s' has no host", url);
        goto out;
    }
    c->host = strdup(host);
    c->port = evhttp_uri_get_port(u) > 0 ? evhttp_uri_get_port(u) : 80;
    c->path = strdup(path && *path ? path : "/");
    if (!c->host || !c->path) st = MS_ERR(MS_ERR_NOMEM, "bench: out of memory");
out:
    evhttp_uri_free(u);
    return st;
}

ms_status_t bench_client_run(const bench_args_t *a, bench_req_t *reqs, int n, bench_progress_fn progress,
                             void *progress_arg, double *dur_s)
{
    client_t c = {.a = a, .reqs = reqs, .n = n, .progress = progress, .progress_arg = progress_arg};
    ms_status_t st = url_parse(a, &c);
    if (st != MS_OK) goto out_url;
    c.arrive = calloc((size_t)n + 1, sizeof *c.arrive);
    c.base = event_base_new();
    c.arrival_ev = c.base ? evtimer_new(c.base, on_arrival, &c) : NULL;
    if (!c.arrive || !c.arrival_ev) {
        st = MS_ERR(MS_ERR_NOMEM, "bench: cannot set up the event loop");
        goto out;
    }
    /* benchmark_serving's get_request: request i+1 follows request i after a
     * gamma(burstiness, 1/(rate*burstiness)) gap; an infinite rate sends all
     * at t=0. The generator is seeded apart from the prompts'. */
    bench_rng_t rng;
    bench_rng_seed(&rng, a->seed ^ 0x5eed0a11a7e5ull);
    for (int i = 1; i < n; i++)
        c.arrive[i] = isinf(a->request_rate)
                          ? 0
                          : c.arrive[i - 1] + bench_rng_gamma(&rng, a->burstiness,
                                                              1.0 / (a->request_rate * a->burstiness));
    c.t0 = http_now();
    if (n > 0) {
        on_arrival(-1, 0, &c);
        if (c.finished < n && !c.fatal) event_base_dispatch(c.base);
    }
    *dur_s = http_now() - c.t0;
    st = c.fatal;
out:
    if (c.arrival_ev) event_free(c.arrival_ev);
    if (c.base) {
        /* run the deferred connection frees before the base goes */
        event_base_loop(c.base, EVLOOP_NONBLOCK);
        event_base_free(c.base);
    }
    free(c.arrive);
out_url:
    free(c.host);
    free(c.path);
    return st;
}
