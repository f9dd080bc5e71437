/* test_http_server.c — the gateway end to end over real sockets, with the
 * real coord_t hub, the fake byte tokenizer (test_http_fake.h) and a fake
 * engine thread that "generates" one letter per step for every request it
 * holds. Covers every endpoint, routing errors (404/405/413/400/429/503),
 * non-streaming and streaming replies, list prompts, 32 concurrent clients,
 * client disconnect → engine sees the cancel, and stop with a request in
 * flight. The integration tests repeat this against the real server. */
#include "test.h"
#include "test_http_fake.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "coordinator/coord.h"
#include "coordinator/http.h"

#define MAX_WAITING 64
static int port;
static coord_t *coord;

/* ---- fake engine -------------------------------------------------------- */

static atomic_bool eng_stop, eng_paused;
static atomic_int eng_cancelled, eng_finished;
static int eng_step_us = 1000;

typedef struct {
    req_t *r;
    int k;
} slot_t;

static void push(req_t *r, const char *text, const int32_t *ids, int n, req_finish_t f)
{
    req_chunk_t *c = calloc(1, sizeof *c);
    c->text = strdup(text);
    c->text_len = strlen(text);
    if (n) {
        c->ids = malloc(sizeof(int32_t) * (size_t)n);
        memcpy(c->ids, ids, sizeof(int32_t) * (size_t)n);
        if (r->params.logprobs >= 0) {
            c->logprobs = calloc((size_t)n, sizeof(float));
            c->top = calloc((size_t)n, sizeof(proto_result_t));
            for (int i = 0; i < n; i++) {
                c->logprobs[i] = -0.5f;
                c->top[i].n_top = r->params.logprobs;
                for (int k = 0; k < r->params.logprobs; k++) c->top[i].top_ids[k] = 'a' + 3 + k, c->top[i].top_logprobs[k] = -1.0f - k;
            }
        }
    }
    c->n_ids = n;
    c->finish = f;
    coord_push_chunk(coord, r, c);
}

static void *engine_main(void *arg)
{
    slot_t slots[512];
    int n = 0;
    while (!atomic_load(&eng_stop) || n > 0) {
        coord_wait(coord, 5);
        if (!atomic_load(&eng_paused)) {
            req_t *news[64];
            int k = coord_take_new(coord, news, 64);
            for (int i = 0; i < k && n < 512; i++) slots[n++] = (slot_t){news[i], 0};
        }
        for (int i = 0; i < n;) {
            req_t *r = slots[i].r;
            bool done = false;
            if (req_is_cancelled(r)) {
                push(r, "", NULL, 0, REQ_FINISH_ABORT);
                atomic_fetch_add(&eng_cancelled, 1);
                done = true;
            } else {
                int k = slots[i].k++;
                char t[2] = {(char)('a' + k % 26), 0};
                int32_t id = t[0] + 3;
                done = k + 1 >= r->params.max_tokens;
                push(r, t, &id, 1, done ? REQ_FINISH_LENGTH : REQ_FINISH_NONE);
                if (done) atomic_fetch_add(&eng_finished, 1);
            }
            if (done) {
                req_release(r);
                slots[i] = slots[--n];
            } else {
                i++;
            }
        }
        coord_stats_t st;
        coord_stats_get(coord, &st);
        st.running = n;
        st.waiting = 0;
        st.last_batch_size = n;
        st.steps++;
        coord_stats_set(coord, &st);
        if (n) usleep((useconds_t)eng_step_us);
    }
    return NULL;
}

/* ---- a tiny HTTP client ------------------------------------------------- */

typedef struct {
    int status;
    char *head; /* status line + headers */
    char *body; /* de-chunked */
    size_t len;
} resp_t;

static void resp_free(resp_t *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_req(int fd, const char *method, const char *path, const char *body)
{
    size_t blen = body ? strlen(body) : 0;
    char head[512];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     method, path, blen);
    if (write(fd, head, (size_t)n) != n) return -1;
    for (size_t off = 0; off < blen;) {
        ssize_t w = write(fd, body + off, blen - off);
        if (w <= 0) return -1;
        off += (size_t)w;
    }
    return 0;
}

static void dechunk(resp_t *r, const char *b, size_t n)
{
    r->body = malloc(n + 1);
    r->len = 0;
    size_t i = 0;
    while (i < n) {
        unsigned long sz = strtoul(b + i, NULL, 16);
        const char *nl = memchr(b + i, '\n', n - i);
        if (!nl || sz == 0) break;
        i = (size_t)(nl - b) + 1;
        if (i + sz > n) sz = n - i;
        memcpy(r->body + r->len, b + i, sz);
        r->len += sz;
        i += sz + 2;
    }
    r->body[r->len] = 0;
}

static int do_http(const char *method, const char *path, const char *body, resp_t *r)
{
    memset(r, 0, sizeof *r);
    if (getenv("T_VERBOSE")) fprintf(stderr, "> %s %s %.60s\n", method, path, body ? body : "");
    int fd = dial();
    if (fd < 0 || send_req(fd, method, path, body) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (n + 1024 > cap) buf = realloc(buf, cap *= 2);
        ssize_t got = read(fd, buf + n, cap - n - 1);
        if (got <= 0) break;
        n += (size_t)got;
    }
    close(fd);
    buf[n] = 0;
    char *sep = strstr(buf, "\r\n\r\n");
    if (!sep || sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1) {
        free(buf);
        return -1;
    }
    r->head = strndup(buf, (size_t)(sep - buf) + 2);
    const char *b = sep + 4;
    size_t bl = n - (size_t)(b - buf);
    if (strcasestr(r->head, "Transfer-Encoding: chunked")) {
        dechunk(r, b, bl);
    } else {
        r->body = strndup(b, bl);
        r->len = bl;
    }
    free(buf);
    return 0;
}

static json_t *body_json(const resp_t *r)
{
    return r->body ? json_loads(r->body, 0, NULL) : NULL;
}

static const char *jpath_str(json_t *j, const char *a, const char *b)
{
    json_t *x = json_object_get(j, a);
    return json_string_value(b ? json_object_get(x, b) : x);
}

/* ---- tests -------------------------------------------------------------- */

static void expect_error(const char *method, const char *path, const char *body, int status, const char *msg)
{
    resp_t r;
    T_CHECK(do_http(method, path, body, &r) == 0);
    T_CHECK_MSG(r.status == status, "%s %s: %d, want %d: %s", method, path, r.status, status, r.body);
    json_t *j = body_json(&r);
    const char *m = jpath_str(j, "error", "message");
    T_CHECK_MSG(m && strstr(m, msg), "%s %s: error message '%s' lacks '%s'", method, path, m ? m : "(none)", msg);
    T_CHECK(json_integer_value(json_object_get(json_object_get(j, "error"), "code")) == status);
    T_CHECK(r.head && strcasestr(r.head, "Content-Type: application/json"));
    json_decref(j);
    resp_free(&r);
}

static void test_simple_endpoints(void)
{
    resp_t r;
    T_CHECK(do_http("GET", "/health", NULL, &r) == 0 && r.status == 200);
    resp_free(&r);
    T_CHECK(do_http("HEAD", "/health", NULL, &r) == 0 && r.status == 200);
    resp_free(&r);
    T_CHECK(do_http("GET", "/v1/models", NULL, &r) == 0 && r.status == 200);
    json_t *j = body_json(&r);
    json_t *d0 = json_array_get(json_object_get(j, "data"), 0);
    T_CHECK(!strcmp(jpath_str(j, "object", NULL), "list") && json_array_size(json_object_get(j, "data")) == 1);
    T_CHECK(!strcmp(json_string_value(json_object_get(d0, "id")), "tiny"));
    T_CHECK(!strcmp(json_string_value(json_object_get(d0, "object")), "model"));
    T_CHECK(json_integer_value(json_object_get(d0, "created")) > 1600000000);
    T_CHECK(json_is_string(json_object_get(d0, "owned_by")));
    json_decref(j);
    resp_free(&r);
    T_CHECK(do_http("GET", "/version", NULL, &r) == 0 && r.status == 200);
    j = body_json(&r);
    T_CHECK(json_is_string(json_object_get(j, "version")));
    json_decref(j);
    resp_free(&r);
    T_CHECK(do_http("GET", "/metrics?x=1", NULL, &r) == 0 && r.status == 200);
    T_CHECK(r.body && strstr(r.body, "\nmoeserve_ready 1\n") && strstr(r.head, "text/plain"));
    resp_free(&r);

    expect_error("GET", "/nope", NULL, 404, "no route");
    expect_error("GET", "/v1/completions", NULL, 405, "method not allowed");
    expect_error("DELETE", "/health", NULL, 405, "method not allowed");
    expect_error("PATCH", "/v1/chat/completions", "{}", 405, "method not allowed");
    T_CHECK(do_http("GET", "/v1/completions", NULL, &r) == 0 && r.head && strcasestr(r.head, "Allow: POST"));
    resp_free(&r);
    expect_error("POST", "/v1/completions", "{\"prompt\": ", 400, "malformed JSON");
    expect_error("POST", "/v1/completions", "", 400, "malformed JSON");
    expect_error("POST", "/v1/completions", "{\"prompt\": \"a\", \"model\": \"big\"}", 404, "does not exist");
    expect_error("POST", "/v1/completions", "{\"prompt\": \"a\", \"wat\": 1}", 400, "unknown field 'wat'");
    expect_error("POST", "/v1/completions", "{\"prompt\": [999]}", 400, "out of range");
    expect_error("POST", "/v1/completions", "{\"prompt\": \"a\", \"max_tokens\": 500}", 400, "maximum context length");
    expect_error("POST", "/v1/chat/completions", "{\"messages\": []}", 400, "must not be empty");

    /* over max_body_bytes (4096): a JSON 413 */
    char *big = malloc(6000);
    memset(big, 'x', 5999);
    big[5999] = 0;
    memcpy(big, "{\"prompt\": \"", 12);
    big[5997] = '"';
    big[5998] = '}';
    expect_error("POST", "/v1/completions", big, 413, "exceeds the limit of 4096 bytes");
    free(big);
}

static void test_completion(void)
{
    resp_t r;
    T_CHECK(do_http("POST", "/v1/completions", "{\"model\": \"tiny\", \"prompt\": \"hello\", \"max_tokens\": 5, \"temperature\": 0}", &r) == 0);
    T_CHECK_MSG(r.status == 200, "%d %s", r.status, r.body);
    json_t *j = body_json(&r);
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    T_CHECK(!strncmp(jpath_str(j, "id", NULL), "cmpl-", 5) && !strcmp(jpath_str(j, "object", NULL), "text_completion"));
    T_CHECK(!strcmp(jpath_str(j, "model", NULL), "tiny"));
    T_CHECK_MSG(!strcmp(json_string_value(json_object_get(c0, "text")), "abcde"), "%s", r.body);
    T_CHECK(!strcmp(json_string_value(json_object_get(c0, "finish_reason")), "length"));
    json_t *u = json_object_get(j, "usage");
    T_CHECK(json_integer_value(json_object_get(u, "prompt_tokens")) == 6);
    T_CHECK(json_integer_value(json_object_get(u, "completion_tokens")) == 5);
    T_CHECK(json_integer_value(json_object_get(u, "total_tokens")) == 11);
    json_decref(j);
    resp_free(&r);

    /* list prompts: one choice per prompt, gathered by index; logprobs through the server */
    T_CHECK(do_http("POST", "/v1/completions", "{\"prompt\": [\"ab\", \"de\", \"c\"], \"max_tokens\": 3, \"logprobs\": 1}", &r) == 0);
    T_CHECK_MSG(r.status == 200, "%d %s", r.status, r.body);
    j = body_json(&r);
    json_t *ch = json_object_get(j, "choices");
    T_CHECK(json_array_size(ch) == 3);
    for (size_t i = 0; i < json_array_size(ch); i++) {
        json_t *c = json_array_get(ch, i);
        T_CHECK(json_integer_value(json_object_get(c, "index")) == (json_int_t)i);
        T_CHECK(!strcmp(json_string_value(json_object_get(c, "text")), "abc"));
        T_CHECK(json_array_size(json_object_get(json_object_get(c, "logprobs"), "tokens")) == 3);
    }
    T_CHECK(json_integer_value(json_object_get(json_object_get(j, "usage"), "prompt_tokens")) == 3 + 3 + 2);
    T_CHECK(json_integer_value(json_object_get(json_object_get(j, "usage"), "completion_tokens")) == 9);
    json_decref(j);
    resp_free(&r);

    /* chat, non-streaming */
    T_CHECK(do_http("POST", "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": 2}", &r) == 0);
    T_CHECK_MSG(r.status == 200, "%d %s", r.status, r.body);
    j = body_json(&r);
    c0 = json_array_get(json_object_get(j, "choices"), 0);
    T_CHECK(!strcmp(jpath_str(j, "object", NULL), "chat.completion") && !strncmp(jpath_str(j, "id", NULL), "chatcmpl-", 9));
    T_CHECK(!strcmp(jpath_str(c0, "message", "role"), "assistant") && !strcmp(jpath_str(c0, "message", "content"), "ab"));
    json_decref(j);
    resp_free(&r);
}

/* Split an SSE body into its data payloads; returns the count. */
static int sse_events(char *body, char **ev, int max)
{
    int n = 0;
    for (char *p = body; p && *p && n < max;) {
        T_CHECK_MSG(!strncmp(p, "data: ", 6), "not an SSE data line: %.40s", p);
        char *end = strstr(p, "\n\n");
        if (!end) break;
        *end = 0;
        ev[n++] = p + 6;
        p = end + 2;
    }
    return n;
}

static void test_stream(void)
{
    resp_t r;
    T_CHECK(do_http("POST", "/v1/completions",
                    "{\"prompt\": [\"x\", \"y\"], \"max_tokens\": 4, \"stream\": true, \"stream_options\": {\"include_usage\": true}}",
                    &r) == 0);
    T_CHECK(r.status == 200 && r.head && strcasestr(r.head, "text/event-stream"));
    char *ev[64];
    int n = sse_events(r.body, ev, 64);
    T_CHECK(n >= 4 && !strcmp(ev[n - 1], "[DONE]"));
    char text[2][16] = {"", ""};
    int finishes = 0;
    for (int i = 0; i < n - 2; i++) {
        json_t *j = json_loads(ev[i], 0, NULL);
        json_t *c = json_array_get(json_object_get(j, "choices"), 0);
        int idx = (int)json_integer_value(json_object_get(c, "index"));
        T_CHECK(j && (idx == 0 || idx == 1) && !strcmp(jpath_str(j, "object", NULL), "text_completion"));
        if (idx == 0 || idx == 1) strncat(text[idx], json_string_value(json_object_get(c, "text")), 8);
        if (json_is_string(json_object_get(c, "finish_reason"))) finishes++;
        json_decref(j);
    }
    T_CHECK(!strcmp(text[0], "abcd") && !strcmp(text[1], "abcd") && finishes == 2);
    json_t *u = json_loads(ev[n - 2], 0, NULL);
    T_CHECK(json_array_size(json_object_get(u, "choices")) == 0);
    T_CHECK(json_integer_value(json_object_get(json_object_get(u, "usage"), "completion_tokens")) == 8);
    json_decref(u);
    resp_free(&r);

    T_CHECK(do_http("POST", "/v1/chat/completions",
                    "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": 3, \"stream\": true}", &r) == 0);
    T_CHECK(r.status == 200);
    n = sse_events(r.body, ev, 64);
    T_CHECK(n >= 3 && !strcmp(ev[n - 1], "[DONE]"));
    json_t *j0 = json_loads(ev[0], 0, NULL);
    json_t *d = json_object_get(json_array_get(json_object_get(j0, "choices"), 0), "delta");
    T_CHECK(!strcmp(jpath_str(j0, "object", NULL), "chat.completion.chunk") && !strcmp(jpath_str(d, "role", NULL), "assistant"));
    json_decref(j0);
    char content[16] = "";
    for (int i = 1; i < n - 1; i++) {
        json_t *j = json_loads(ev[i], 0, NULL);
        const char *s = jpath_str(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "delta"), "content", NULL);
        if (s) strncat(content, s, 8);
        json_decref(j);
    }
    T_CHECK_MSG(!strcmp(content, "abc"), "%s", content);
    resp_free(&r);
}

static atomic_int conc_ok;

static void *conc_client(void *arg)
{
    intptr_t i = (intptr_t)arg;
    char body[128];
    int mt = 1 + (int)(i % 7);
    snprintf(body, sizeof body, "{\"prompt\": \"req %d\", \"max_tokens\": %d%s}", (int)i, mt, i % 2 ? ", \"stream\": true" : "");
    resp_t r;
    if (do_http("POST", "/v1/completions", body, &r) == 0 && r.status == 200) {
        if (i % 2) {
            if (strstr(r.body, "data: [DONE]\n\n") && strstr(r.body, "\"finish_reason\":\"length\"")) atomic_fetch_add(&conc_ok, 1);
        } else {
            json_t *j = body_json(&r);
            if (json_integer_value(json_object_get(json_object_get(j, "usage"), "completion_tokens")) == mt)
                atomic_fetch_add(&conc_ok, 1);
            json_decref(j);
        }
    }
    resp_free(&r);
    return NULL;
}

static void test_concurrency(void)
{
    enum { N = 48 };
    pthread_t th[N];
    for (intptr_t i = 0; i < N; i++) pthread_create(&th[i], NULL, conc_client, (void *)i);
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    T_CHECK_MSG(atomic_load(&conc_ok) == N, "%d of %d concurrent requests completed correctly", atomic_load(&conc_ok), N);
}

static void *slow_client(void *arg)
{
    resp_t *r = arg;
    do_http("POST", "/v1/completions", "{\"prompt\": \"q\", \"max_tokens\": 2}", r);
    return NULL;
}

static void test_queue_full(void)
{
    /* coord max_waiting = MAX_WAITING: that many queued requests fill it, the next gets 429 */
    atomic_store(&eng_paused, true);
    pthread_t th[MAX_WAITING];
    resp_t rs[MAX_WAITING];
    for (int i = 0; i < MAX_WAITING; i++) pthread_create(&th[i], NULL, slow_client, &rs[i]);
    for (int t = 0; t < 400 && coord_n_new(coord) < MAX_WAITING; t++) usleep(5000);
    T_CHECK(coord_n_new(coord) == MAX_WAITING);
    expect_error("POST", "/v1/completions", "{\"prompt\": \"q\"}", 429, "queue is full");
    atomic_store(&eng_paused, false);
    coord_wake(coord);
    for (int i = 0; i < MAX_WAITING; i++) {
        pthread_join(th[i], NULL);
        T_CHECK(rs[i].status == 200);
        resp_free(&rs[i]);
    }
}

static void wait_cancelled(int want)
{
    for (int t = 0; t < 400 && atomic_load(&eng_cancelled) < want; t++) usleep(5000);
    T_CHECK_MSG(atomic_load(&eng_cancelled) == want, "engine saw %d cancels, want %d", atomic_load(&eng_cancelled), want);
}

static void test_disconnect(void)
{
    /* 100 tokens at 5 ms per step: the client hangs up long before the end */
    eng_step_us = 5000;
    int base = atomic_load(&eng_cancelled);
    int fd = dial();
    T_CHECK(fd >= 0 && send_req(fd, "POST", "/v1/completions", "{\"prompt\": \"z\", \"max_tokens\": 100}") == 0);
    usleep(50000);
    close(fd);
    wait_cancelled(base + 1);
    fd = dial();
    T_CHECK(fd >= 0 && send_req(fd, "POST", "/v1/completions", "{\"prompt\": [\"z\", \"w\"], \"max_tokens\": 100, \"stream\": true}") == 0);
    char buf[256];
    T_CHECK(read(fd, buf, sizeof buf) > 0); /* the stream has started */
    close(fd);
    wait_cancelled(base + 3);
    eng_step_us = 1000;
    /* the server is still fine */
    resp_t r;
    T_CHECK(do_http("GET", "/health", NULL, &r) == 0 && r.status == 200);
    resp_free(&r);
}

static void *stream_client(void *arg)
{
    resp_t *r = arg;
    do_http("POST", "/v1/completions", "{\"prompt\": \"s\", \"max_tokens\": 60, \"stream\": true}", r);
    return NULL;
}

static void test_stop(http_server_t *srv)
{
    eng_step_us = 3000;
    pthread_t th;
    resp_t r, h;
    pthread_create(&th, NULL, stream_client, &r);
    for (int t = 0; t < 400; t++) {
        coord_stats_t st;
        coord_stats_get(coord, &st);
        if (st.running > 0) break;
        usleep(2000);
    }
    coord_stop(coord);
    T_CHECK(do_http("GET", "/health", NULL, &h) == 0 && h.status == 503);
    resp_free(&h);
    expect_error("POST", "/v1/completions", "{\"prompt\": \"q\"}", 503, "shutting down");
    http_server_stop(srv); /* waits for the stream in flight */
    pthread_join(th, NULL);
    T_CHECK(r.status == 200 && r.body && strstr(r.body, "data: [DONE]\n\n"));
    /* one letter a token; a slow reader may get several tokens in one chunk */
    int letters = 0;
    for (char *p = r.body; (p = strstr(p, "\"text\":\"")); p += 8)
        for (const char *q = p + 8; *q && *q != '"'; q++) letters++;
    T_CHECK_MSG(letters == 60, "the in-flight stream got %d of 60 tokens", letters);
    resp_free(&r);
    T_CHECK(dial() < 0); /* not accepting any more */
}

int main(void)
{
    T_CHECK(coord_create(MAX_WAITING, &coord) == MS_OK);
    http_opts_t o = {.host = "127.0.0.1", .port = 0, .served_model_name = "tiny", .max_seq_len = 128,
                     .vocab_size = FAKE_VOCAB, .max_body_bytes = 4096, .stream_interval = 1, .tok_ops = &fake_tok_ops,
                     .coord = coord, .drain_timeout_s = 10};
    http_server_t *srv;
    T_CHECK(http_server_create(&o, &srv) == MS_OK);
    if (http_server_start(srv) != MS_OK) return t_done();
    port = http_server_port(srv);
    T_CHECK(port > 0);

    /* a second server on the same port fails with a clear error */
    http_opts_t o2 = o;
    o2.port = port;
    http_server_t *srv2;
    T_CHECK(http_server_create(&o2, &srv2) == MS_OK);
    T_CHECK(http_server_start(srv2) == MS_ERR_IO);
    T_CHECK(strstr(ms_error_last(), "cannot listen on 127.0.0.1:") != NULL);
    http_server_destroy(srv2);

    /* loading: 503 until the engine says ready */
    expect_error("GET", "/health", NULL, 503, "loading");
    expect_error("POST", "/v1/completions", "{\"prompt\": \"a\"}", 503, "loading");
    coord_stats_t st = {.ready = true};
    coord_stats_set(coord, &st);
    pthread_t eng;
    pthread_create(&eng, NULL, engine_main, NULL);

    test_simple_endpoints();
    test_completion();
    test_stream();
    test_concurrency();
    test_queue_full();
    test_disconnect();
    test_stop(srv);

    atomic_store(&eng_stop, true);
    coord_wake(coord);
    pthread_join(eng, NULL);
    http_server_destroy(srv);
    coord_destroy(coord);
    return t_done();
}
