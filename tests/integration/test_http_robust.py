"""test_http_robust.py — the gateway under hostile or unusual clients, against
one real single-process server (the tiny model, the real tokenizer), with a
small queue (max_queue_size 4) and batch (max_batch_size 2) so that the queue
really fills. test_api.py covers the API surface; this covers:

  queue_full_429      40 concurrent requests: every reply is 200 with the
                      right token count or 429 with an OpenAI error body, and
                      at least one of each
  nonstream_disconnect a client that hangs up before a non-streamed reply:
                      the request is aborted and its KV blocks freed
  malformed_http      garbage request lines, oversized headers, a truncated
                      body, a half-sent request: no crash, no hang
  json_edge_cases     invalid UTF-8, NUL escapes, deep nesting, huge numbers,
                      duplicate keys -> 400 (or 200 where JSON allows it)
  fuzz                300 mutated request bodies: every reply is 200 or 4xx
                      with an error body, never 5xx, never a hang
  keepalive_pipelining two requests on one connection (sequential and
                      pipelined), HTTP/1.0, chunked request bodies
  shutdown_inflight   SIGTERM with a non-streamed and a streamed request in
                      flight: both get complete replies, exit status 0

Usage (meson passes the paths): test_http_robust.py --moeserve B --mkmodel M
--tokdir T --workdir W --configs C
"""
import http.client
import json
import os
import random
import signal
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Checks, Env, Server, is_error_body, log, raw_exchange, status_of  # noqa: E402

SEED_TEXT = "Where is New York?"
QUEUE = 4


def raw(srv, data, timeout=10, half_close=False):
    """Send raw bytes, read until EOF or timeout; returns (bytes, timed_out)."""
    return raw_exchange(srv.port, data, timeout=timeout, half_close=half_close)


def alive(c, srv, what):
    st, _, body = srv.request("GET", "/health", timeout=10)
    c.check(st == 200, "%s: /health -> %d afterwards" % (what, st))
    st, js = srv.post_json("/v1/completions", {"prompt": SEED_TEXT, "max_tokens": 4, "temperature": 0}, timeout=60)
    c.check(st == 200 and js["usage"]["completion_tokens"] == 4, "%s: a completion afterwards -> %d %s" % (what, st, js))


def post_raw_body(srv, body, timeout=30):
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    st, _, data = srv.request("POST", "/v1/completions", body, timeout=timeout)
    return st, data


# -- checks ----------------------------------------------------------------------

def t_queue_full(c, srv):
    n = 40
    res = [None] * n

    def one(i):
        try:
            st, js = srv.post_json("/v1/completions", {"prompt": "request %d" % i, "max_tokens": 24, "ignore_eos": True,
                                                       "temperature": 0}, timeout=120)
            res[i] = (st, js)
        except Exception as e:  # noqa: BLE001
            res[i] = (None, repr(e))
    th = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in th:
        t.start()
    for t in th:
        t.join(180)
    ok = full = 0
    for i, (st, js) in enumerate(res):
        if st == 200:
            good = js["usage"]["completion_tokens"] == 24 and js["choices"][0]["finish_reason"] == "length"
            c.check(good, "request %d: 200 with usage %r" % (i, js.get("usage")))
            ok += good
        elif st == 429:
            good = isinstance(js, dict) and "queue" in js.get("error", {}).get("message", "") and \
                js["error"].get("code") == 429
            c.check(good, "request %d: 429 without an OpenAI error body naming the queue: %r" % (i, js))
            full += good
        else:
            c.check(False, "request %d: %r %r (want 200 or 429)" % (i, st, js))
    c.check(ok >= 1 and full >= 1, "%d ok, %d refused with 429 (want some of each with max_queue_size %d)"
            % (ok, full, QUEUE))
    log("queue_full: %d ok, %d x 429" % (ok, full))
    alive(c, srv, "after the queue filled")


def wait_idle(srv, secs=20):
    t0 = time.time()
    m = {}
    while time.time() - t0 < secs:
        m = srv.metrics()
        if m.get("moeserve_kv_cache_blocks_used") == 0 and m.get("moeserve_num_requests_running") == 0 and \
                m.get("moeserve_num_requests_waiting") == 0:
            return True, m
        time.sleep(0.1)
    return False, m


def t_nonstream_disconnect(c, srv):
    idle, _ = wait_idle(srv)
    c.check(idle, "server not idle before the check")
    before = srv.metrics().get('moeserve_requests_total{finish_reason="abort"}', 0)
    body = json.dumps({"prompt": SEED_TEXT, "max_tokens": 900, "ignore_eos": True, "temperature": 0})
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(("POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
               "Content-Length: %d\r\n\r\n%s" % (len(body), body)).encode())
    used, t1 = 0, time.time()
    while time.time() - t1 < 10:
        used = srv.metrics().get("moeserve_kv_cache_blocks_used", 0)
        if used:
            break
        time.sleep(0.05)
    c.check(used > 0, "the 900-token request never held KV blocks")
    s.close()
    t0 = time.time()
    idle, m = wait_idle(srv)
    c.check(idle, "20 s after the hang-up: KV used %r, running %r"
            % (m.get("moeserve_kv_cache_blocks_used"), m.get("moeserve_num_requests_running")))
    after = srv.metrics().get('moeserve_requests_total{finish_reason="abort"}', 0)
    c.check(after == before + 1, "requests_total{abort} %r -> %r (want +1)" % (before, after))
    log("nonstream_disconnect: idle %.2f s after the hang-up" % (time.time() - t0))
    alive(c, srv, "after a non-streamed disconnect")


def t_malformed_http(c, srv):
    cases = [
        ("garbage line", b"HELLO WORLD\r\n\r\n"),
        ("binary", bytes(range(256)) * 4),
        ("bad version", b"GET /health HTTP/9.9\r\n\r\n"),
        ("no host, bad header", b"GET /health HTTP/1.1\r\nthis is not a header\r\n\r\n"),
        ("huge header", b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200000 + b"\r\n\r\n"),
        ("negative length", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}"),
        ("bad chunk size", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
    ]
    for what, data in cases:
        resp, timed_out = raw(srv, data, timeout=10, half_close=True)
        st = status_of(resp)
        c.check(not timed_out, "%s: no reply and no close within 10 s" % what)
        c.check(st is None or 400 <= st < 500, "%s: status %r (want a 4xx or a closed connection)" % (what, st))
    # a request whose body never fully arrives, and one cut off mid-header
    for what, data in [("truncated body", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pro"),
                       ("half header", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Le")]:
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        try:
            s.sendall(data)
            time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closing first is fine here too
        finally:
            s.close()
    alive(c, srv, "after malformed HTTP")


def t_json_edge_cases(c, srv):
    cases = [
        ("invalid UTF-8", b'{"prompt": "\xff\xfe abc"}', 400),
        ("lone surrogate escape", b'{"prompt": "\\ud800"}', 400),
        ("NUL escape", b'{"prompt": "a\\u0000b"}', 400),
        ("deep nesting", b'{"prompt": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400),
        ("huge integer", b'{"prompt": "a", "max_tokens": 1e400}', 400),
        ("huge token id", b'{"prompt": [99999999999999999999]}', 400),
        ("float token id", b'{"prompt": [1.5]}', 400),
        ("trailing garbage", b'{"prompt": "a"} x', 400),
        ("two objects", b'{"prompt": "a"}{"prompt": "b"}', 400),
        ("not an object", b'"prompt"', 400),
        ("null body", b"null", 400),
        ("only whitespace", b"   \n ", 400),
        ("bool prompt", b'{"prompt": true}', 400),
        ("nested null prompt list", b'{"prompt": [null]}', 400),
        ("max_tokens null", b'{"prompt": "a", "max_tokens": null}', 200),
        ("duplicate key", b'{"prompt": "a", "max_tokens": 2, "max_tokens": 3}', 200),
        ("unicode prompt", '{"prompt": "北京 🚀 ü"}'.encode(), 200),
    ]
    for what, body, want in cases:
        st, data = post_raw_body(srv, body)
        c.check(st == want, "%s: %d (want %d): %s" % (what, st, want, data[:200]))
        if want != 200:
            c.check(is_error_body(data, st), "%s: not an OpenAI error body: %s" % (what, data[:200]))
    alive(c, srv, "after JSON edge cases")


def mutate(rng, s):
    ops = rng.randint(1, 4)
    b = bytearray(s)
    for _ in range(ops):
        k = rng.randrange(5)
        i = rng.randrange(len(b) + 1)
        if k == 0 and b:
            del b[min(i, len(b) - 1)]
        elif k == 1:
            b[i:i] = bytes([rng.choice(b'{}[]",:0123456789-.eE\\ntruefalsenull \xff\x00')])
        elif k == 2 and b:
            b[min(i, len(b) - 1)] = rng.randrange(256)
        elif k == 3:
            j = rng.randrange(len(b) + 1)
            b[i:i] = b[min(i, j):max(i, j)][:64]
        else:
            b = b[:i]
    return bytes(b)


def t_fuzz(c, srv):
    rng = random.Random(1234)
    seeds = [
        {"prompt": "abc", "max_tokens": 2, "temperature": 0},
        {"prompt": [[0, 1, 2], [5, 6]], "max_tokens": 2, "stop": ["x", "y"], "logprobs": 2},
        {"prompt": ["a", "b"], "max_tokens": 2, "stream": True, "stream_options": {"include_usage": True}},
        {"model": srv.model, "prompt": "q", "max_tokens": 1, "top_p": 0.5, "top_k": 3, "seed": 7, "echo": True},
    ]
    chat_seeds = [
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": [{"type": "text", "text": "x"}]}],
         "max_completion_tokens": 2, "logprobs": True, "top_logprobs": 1},
    ]
    counts = {}
    for i in range(300):
        chat = i % 3 == 2
        base = json.dumps(rng.choice(chat_seeds if chat else seeds)).encode()
        body = mutate(rng, base)
        path = "/v1/chat/completions" if chat else "/v1/completions"
        try:
            st, _, data = srv.request("POST", path, body, timeout=60)
        except Exception as e:  # noqa: BLE001
            c.check(False, "fuzz %d: %s on %r" % (i, e, body[:200]))
            continue
        counts[st] = counts.get(st, 0) + 1
        c.check(st == 200 or 400 <= st < 500, "fuzz %d: status %d on %r: %s" % (i, st, body[:200], data[:200]))
        if st != 200:
            c.check(is_error_body(data, st), "fuzz %d: %d without an error body: %s" % (i, st, data[:200]))
    log("fuzz: statuses %s" % sorted(counts.items()))
    alive(c, srv, "after fuzzing")


def t_keepalive(c, srv):
    body = json.dumps({"prompt": SEED_TEXT, "max_tokens": 3, "temperature": 0})
    # sequential requests on one connection
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        for k in range(3):
            conn.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            js = json.loads(r.read())
            c.check(r.status == 200 and js["usage"]["completion_tokens"] == 3, "keep-alive request %d: %d" % (k, r.status))
        conn.request("GET", "/health")
        r = conn.getresponse()
        r.read()
        c.check(r.status == 200, "keep-alive GET after POSTs: %d" % r.status)
    finally:
        conn.close()
    # two requests pipelined in one write; the second closes the connection
    req = ("POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
           % (len(body), body))
    last = "GET /v1/models HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    resp, timed_out = raw(srv, (req + last).encode(), timeout=30)
    c.check(not timed_out, "pipelined: no close within 30 s")
    c.check(resp.count(b"HTTP/1.1 200") == 2, "pipelined: want two 200 replies, got %r" % resp[:400])
    c.check(resp.find(b"text_completion") < resp.find(b'"object":"list"'), "pipelined: replies out of order")
    # HTTP/1.0: one reply, then the server closes
    resp, timed_out = raw(srv, b"GET /health HTTP/1.0\r\n\r\n", timeout=10)
    c.check(not timed_out and status_of(resp) == 200, "HTTP/1.0 /health: %r timed_out=%s" % (resp[:100], timed_out))
    # a chunked request body
    b = body.encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(b[i:i + 7]), b[i:i + 7]) for i in range(0, len(b), 7)) + b"0\r\n\r\n"
    resp, timed_out = raw(srv, b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                          b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked, timeout=30)
    c.check(not timed_out and status_of(resp) == 200 and b"text_completion" in resp,
            "chunked request body: %r" % resp[:300])


def t_shutdown(c, srv):
    results = {}

    def nonstream():
        try:
            results["plain"] = srv.post_json("/v1/completions", {"prompt": SEED_TEXT, "max_tokens": 40, "ignore_eos": True,
                                                                 "temperature": 0}, timeout=60)
        except Exception as e:  # noqa: BLE001
            results["plain"] = (None, repr(e))

    def stream():
        try:
            results["stream"] = srv.stream("/v1/completions", {"prompt": SEED_TEXT, "max_tokens": 40, "ignore_eos": True,
                                                               "temperature": 0}, timeout=60)
        except Exception as e:  # noqa: BLE001
            results["stream"] = repr(e)
    th = [threading.Thread(target=nonstream), threading.Thread(target=stream)]
    for t in th:
        t.start()
    t1 = time.time()
    while time.time() - t1 < 10 and srv.metrics().get("moeserve_num_requests_running", 0) < 2:
        time.sleep(0.02)
    srv.proc.send_signal(signal.SIGTERM)
    t0 = time.time()
    for t in th:
        t.join(60)
    rc = srv.wait_exit(30)
    st, js = results.get("plain", (None, None))
    # finished (200, all 40 tokens) or aborted by the shutdown (503 with an error body): never cut off
    c.check((st == 200 and js["usage"]["completion_tokens"] == 40) or (st == 503 and "error" in js),
            "non-streamed request over SIGTERM: %r %r" % (st, js))
    ev = results.get("stream")
    c.check(isinstance(ev, list) and ev and ev[-1] == "[DONE]", "streamed request over SIGTERM: %r" % (ev,))
    c.check(rc == 0, "exit status %r after SIGTERM (want 0)" % rc)
    log("shutdown: exit %r %.2f s after SIGTERM; plain %r, stream %d events" %
        (rc, time.time() - t0, st, len(ev) if isinstance(ev, list) else -1))


def make_config(env):
    with open(os.path.join(env.configs, "tiny-cpu.yaml")) as f:
        base = f.read()
    if "\nmoeserve:\n" not in base or "\nmax_batch_size:" not in base:
        raise RuntimeError("configs/tiny-cpu.yaml lacks max_batch_size or a 'moeserve:' block")
    lines = []
    for line in base.splitlines():
        if line.startswith("max_batch_size:"):
            line = "max_batch_size: 2"
        elif line.strip().startswith("max_queue_size:"):
            line = "  max_queue_size: %d" % QUEUE
        lines.append(line)
    text = "\n".join(lines) + "\n"
    if "max_queue_size: %d" % QUEUE not in text:
        text = text.replace("\nmoeserve:\n", "\nmoeserve:\n  max_queue_size: %d\n" % QUEUE, 1)
    tmp = tempfile.NamedTemporaryFile(mode="w", dir=env.workdir, prefix="robust-", suffix=".yaml", delete=False)
    tmp.write(text)
    tmp.close()
    return tmp.name


def main():
    env = Env.from_args()
    model = env.tiny_model()
    c = Checks()
    cfg = make_config(env)
    srv = Server(env, model, np=1, config=cfg)
    t_all = time.time()
    try:
        c.run_on_server(srv, [("queue_full_429", t_queue_full), ("nonstream_disconnect", t_nonstream_disconnect),
                              ("malformed_http", t_malformed_http), ("json_edge_cases", t_json_edge_cases),
                              ("fuzz", t_fuzz), ("keepalive_pipelining", t_keepalive),
                              ("shutdown_inflight", t_shutdown)])
    finally:
        os.unlink(cfg)
    log("test_http_robust: %.1f s" % (time.time() - t_all))
    c.done()


if __name__ == "__main__":
    main()
