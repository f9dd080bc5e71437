"""test_reliability.py — issue 8: one bad request never hurts another, the
gateway survives floods and slow clients, SIGTERM drains, a dead rank is
reported to its clients. Real servers on the tiny model, loopback only; every
wait is bounded.

  sampling_rule      temperature 1e308 / top_p 1e-46 are a 400 naming the
                     field, and 10 concurrent innocent streams all finish
  protocol_json      bad request line, unknown method, bad version, a header
                     without ':', a 100 KB head, Content-Length 2^63-1 and
                     over the body limit: JSON errors, the 413s at once;
                     429 carries Retry-After
  slow_client        a client trickling a byte every 0.4 s gets 408 at
                     request_timeout (2 s here), not a held connection
  fd_exhaustion      the fd limit lowered under the running server: accept
                     errors back off (no spin), one log line per 5 s,
                     /health gets through
  flood              FLOOD idle and slow connections against max_connections
                     CAP: /health still answers 200 (the oldest idle, then
                     the slowest, make room), every flood socket is closed or answered, the
                     server does not spin, its log does not grow
  drain              SIGTERM to rank 0 of an np2 job with N requests in
                     flight: /health and new requests 503 at once, all N
                     finish with 200, the log names N, mpirun exits 0
  drain_abort        SIGTERM then a second SIGTERM 2 s later: the in-flight
                     requests end at once (503 / an SSE error event then
                     [DONE]), exit 0
  mpirun_term        SIGTERM to mpirun (which SIGKILLs the ranks ~1 s later):
                     rank 0 drains only as long as that allows, and every
                     client still gets an answer (200 or a JSON 503)
  dead_rank          kill -9 of rank 1 of an np2 job with streamed and plain
                     requests in flight: every stream gets an error event
                     naming the rank then [DONE], every plain request a 503,
                     rank 0's log names rank 1, the job exits non-zero

Usage (meson passes the paths): test_reliability.py --moeserve B --mkmodel M
--tokdir T --workdir W --configs C
"""
import json
import os
import re
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Checks, Env, Server, is_error_body, log, raw_exchange, status_of  # noqa: E402

PROMPT = "Where is New York?"
CAP = 64
FLOOD = 200
TP2 = ["--tp_size", "2", "--ep_size", "2"]


def json_error(resp, status):
    """A whole raw reply: a JSON content type and an OpenAI error body with this code."""
    head, _, body = resp.partition(b"\r\n\r\n")
    return b"application/json" in head and is_error_body(body, status)


def sse_events(resp):
    out = []
    for line in resp.decode(errors="replace").splitlines():
        if line.startswith("data: "):
            p = line[6:]
            out.append(p if p == "[DONE]" else json.loads(p))
    return out


def post_raw(port, body, timeout=60):
    data = json.dumps(body)
    req = ("POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nConnection: close\r\n"
           "Content-Length: %d\r\n\r\n%s" % (len(data), data)).encode()
    return raw_exchange(port, req, timeout=timeout)[0]


def in_threads(fns, timeout=120):
    res = [None] * len(fns)

    def run(i):
        try:
            res[i] = fns[i]()
        except Exception as e:  # noqa: BLE001
            res[i] = e
    th = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in th:
        t.start()
    return th, res


def join(th, timeout):
    end = time.time() + timeout
    for t in th:
        t.join(max(0.1, end - time.time()))


def wait_running(srv, n, secs=20):
    t0 = time.time()
    while time.time() - t0 < secs:
        m = srv.metrics()
        if m.get("moeserve_num_requests_running", 0) + m.get("moeserve_num_requests_waiting", 0) >= n:
            return True
        time.sleep(0.02)
    return False


# -- checks on one np1 server --------------------------------------------------

def t_sampling_rule(c, srv):
    for field, val in [("temperature", 1e308), ("top_p", 1e-46), ("temperature", 10000.5)]:
        st, js = srv.post_json("/v1/completions", {"prompt": PROMPT, "max_tokens": 2, field: val})
        c.check(st == 400 and js["error"]["param"] == field, "%s=%r: %r %r (want 400 naming it)" % (field, val, st, js))
    # the bad request among innocent streams: the others all finish normally
    fns = [lambda: srv.stream("/v1/completions", {"prompt": PROMPT, "max_tokens": 12, "ignore_eos": True,
                                                   "temperature": 0.7}, timeout=120) for _ in range(10)]
    th, res = in_threads(fns)
    wait_running(srv, 5)
    st, js = srv.post_json("/v1/completions", {"prompt": PROMPT, "max_tokens": 2, "temperature": 1e308})
    c.check(st == 400, "1e308 among streams: %r" % st)
    join(th, 120)
    good = sum(1 for ev in res if isinstance(ev, list) and ev[-1] == "[DONE]" and
               ev[-2]["choices"][0].get("finish_reason") == "length")
    c.check(good == 10, "innocent streams finished: %d of 10: %r" % (good, [r for r in res if not isinstance(r, list)]))


def t_protocol_json(c, srv):
    cases = [
        ("garbage line", b"HELLO WORLD\r\n\r\n", 400),
        ("unknown method", b"FROB /health HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("bad version", b"GET /health HTTP/9.9\r\n\r\n", 400),
        ("header without colon", b"GET /health HTTP/1.1\r\nthis is not a header\r\n\r\n", 400),
        ("100 KB head", b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n", 431),
        ("bad Content-Length", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}", 400),
    ]
    for what, data, want in cases:
        resp, timed_out = raw_exchange(srv.port, data, timeout=10)
        c.check(not timed_out and status_of(resp) == want and json_error(resp, want),
                "%s: want a JSON %d, got %r (timed out %s)" % (what, want, resp[:300], timed_out))
    # Content-Length 2^63-1 or over the limit: 413 at once, headers only (no body sent)
    for cl in ["9223372036854775807", str(16 * 1024 * 1024 + 1)]:
        t0 = time.time()
        resp, timed_out = raw_exchange(srv.port, ("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                                  "application/json\r\nContent-Length: %s\r\n\r\n{" % cl).encode(),
                                       timeout=10)
        dt = time.time() - t0
        c.check(status_of(resp) == 413 and json_error(resp, 413) and dt < 5,
                "Content-Length %s: %r after %.2f s (want a JSON 413 at once)" % (cl, resp[:200], dt))
        log("Content-Length %s -> %r in %.3f s" % (cl, status_of(resp), dt))
    st, _, _ = srv.request("GET", "/health", timeout=10)
    c.check(st == 200, "/health after the protocol errors: %r" % st)


def t_slow_client(c, srv):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    data = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    t0 = time.time()
    got, closed = b"", False
    try:
        for i in range(len(data)):
            s.sendall(data[i:i + 1])
            time.sleep(0.4)
            s.setblocking(False)
            try:
                d = s.recv(4096)
                got += d
                if not d:
                    closed = True
            except BlockingIOError:
                pass
            finally:
                s.setblocking(True)
            if closed or got or time.time() - t0 > 15:
                break
        if not closed:
            s.settimeout(5)
            while True:
                d = s.recv(4096)
                if not d:
                    break
                got += d
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    finally:
        s.close()
    dt = time.time() - t0
    c.check(status_of(got) == 408 and json_error(got, 408), "trickling client: %r after %.1f s (want a JSON 408)"
            % (got[:200], dt))
    c.check(1.5 < dt < 6, "408 after %.1f s (request_timeout 2 s)" % dt)
    log("slow client: 408 after %.2f s" % dt)


def t_flood(c, srv):
    log_before = len(srv.log_text())
    socks = []
    t0 = time.time()
    for i in range(FLOOD):
        try:
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            if i % 2:  # half of them are slow clients part-way through a request head
                s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
            socks.append(s)
        except OSError as e:
            c.check(False, "flood connection %d: %s" % (i, e))
            break
    time.sleep(1.1)  # the slow ones are now over a second into their requests
    # /health answers under the flood (several times, each on a new connection)
    for k in range(5):
        t1 = time.time()
        st, _, _ = srv.request("GET", "/health", timeout=5)
        c.check(st == 200, "/health under a flood of %d idle and slow connections: %r" % (FLOOD, st))
        log("flood: /health %d in %.3f s" % (st, time.time() - t1))
    # the flood sockets beyond the cap were closed to make room, refused with a JSON 503, or (slow
    # ones) timed out with a JSON 408
    closed = refused = 0
    for s in socks:
        s.setblocking(False)
        try:
            d = s.recv(65536)
            if d == b"":
                closed += 1
            elif status_of(d) in (503, 408) and json_error(d, status_of(d)):
                refused += 1  # refused at the cap, or a slow one past request_timeout
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    c.check(closed + refused >= FLOOD - CAP, "%d of %d flood sockets closed, %d answered 503/408 (cap %d: want >= %d in all)"
            % (closed, FLOOD, refused, CAP, FLOOD - CAP))
    for s in socks:
        s.close()
    grown = len(srv.log_text()) - log_before
    c.check(grown < 20000, "the log grew %d bytes during the flood" % grown)
    st, js = srv.post_json("/v1/completions", {"prompt": PROMPT, "max_tokens": 3, "temperature": 0})
    c.check(st == 200, "a completion after the flood: %r %r" % (st, js))
    log("flood: %d connections against a cap of %d, %d closed for room, %d answered 503/408, %.2f s" %
        (FLOOD, CAP, closed, refused, time.time() - t0))


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def t_fd_exhaustion(c, srv):
    """The fd limit lowered under the running server (below its connection
    cap): accept() fails with EMFILE. The listener must back off instead of
    spinning, log once per 5 s, and /health must still get through."""
    import resource
    pid = srv.proc.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (48, hard))
    log_before = srv.log_text().count("accept() failed")
    socks = []
    try:
        for _ in range(FLOOD):
            try:
                socks.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5))
            except OSError:
                break
        cpu0, t0 = cpu_seconds(pid), time.time()
        time.sleep(3)
        cpu = cpu_seconds(pid) - cpu0
        ok = 0
        for _ in range(3):
            try:
                st, _, _ = srv.request("GET", "/health", timeout=5)
                ok += st == 200
            except OSError:
                pass
        c.check(ok >= 1, "/health never answered with the fds exhausted (%d of 3)" % ok)
        lines = srv.log_text().count("accept() failed") - log_before
        c.check(1 <= lines <= 3, "%d 'accept() failed' log lines in ~4 s (want one per 5 s, at least one)" % lines)
        log("fd exhaustion: %d flood sockets, server CPU %.2f s in %.1f s, %d accept-error log lines, /health %d/3" %
            (len(socks), cpu, time.time() - t0, lines, ok))
    finally:
        for s in socks:
            s.close()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))


# -- shutdown and death ---------------------------------------------------------

def t_drain(c, env, model):
    n = 12
    with Server(env, model, np=2, args=TP2) as srv:
        body = {"prompt": PROMPT, "max_tokens": 40, "ignore_eos": True, "temperature": 0}
        fns = [lambda: srv.post_json("/v1/completions", body, timeout=120) for _ in range(n - 2)] + \
              [lambda: srv.stream("/v1/completions", body, timeout=120) for _ in range(2)]
        th, res = in_threads(fns)
        c.check(wait_running(srv, n), "the %d requests never ran" % n)
        t0 = time.time()
        os.kill(srv.rank_pids()[0], signal.SIGTERM)  # rank 0 itself: mpirun would kill the ranks after ~1 s
        time.sleep(0.3)
        st, _, _ = srv.request("GET", "/health", timeout=5)
        c.check(st == 503, "/health while draining: %r (want 503)" % st)
        st, js = srv.post_json("/v1/completions", body, timeout=10)
        c.check(st == 503, "a new request while draining: %r (want 503)" % st)
        join(th, 120)
        rc = srv.wait_exit(30)
        dt = time.time() - t0
        ok = sum(1 for r in res[:n - 2] if isinstance(r, tuple) and r[0] == 200 and
                 r[1]["usage"]["completion_tokens"] == 40)
        ok += sum(1 for r in res[n - 2:] if isinstance(r, list) and r[-1] == "[DONE]" and
                  r[-2]["choices"][0].get("finish_reason") == "length")
        c.check(ok == n, "%d of %d in-flight requests finished over SIGTERM" % (ok, n))
        c.check(rc == 0, "exit status %r after a drain (want 0)" % rc)
        text = srv.log_text()
        m = re.search(r"draining (\d+) requests in flight", text)
        c.check(m and int(m.group(1)) == n, "the log's in-flight count: %r (want %d)" % (m and m.group(0), n))
        c.check("drained: " in text, "no 'drained' line:\n%s" % srv.log_tail())
        log("drain: %d requests finished, exit %r %.2f s after SIGTERM" % (ok, rc, dt))


def t_drain_abort(c, env, model):
    with Server(env, model, np=1) as srv:
        body = {"prompt": PROMPT, "max_tokens": 900, "ignore_eos": True, "temperature": 0}
        fns = [lambda: srv.post_json("/v1/completions", body, timeout=120),
               lambda: post_raw(srv.port, dict(body, stream=True), timeout=120)]
        th, res = in_threads(fns)
        c.check(wait_running(srv, 2), "the requests never ran")
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(2.3)
        t0 = time.time()
        srv.proc.send_signal(signal.SIGTERM)
        join(th, 30)
        rc = srv.wait_exit(30)
        dt = time.time() - t0
        st = res[0][0] if isinstance(res[0], tuple) else res[0]
        c.check(st == 503, "plain request after the second SIGTERM: %r (want 503)" % (st,))
        ev = sse_events(res[1]) if isinstance(res[1], bytes) else res[1]
        c.check(isinstance(ev, list) and len(ev) >= 2 and ev[-1] == "[DONE]" and isinstance(ev[-2], dict) and
                ev[-2].get("error", {}).get("code") == 503, "stream after the second SIGTERM: %r" % (ev[-3:],))
        c.check(rc == 0 and dt < 10, "exit %r %.1f s after the second SIGTERM" % (rc, dt))
        log("drain abort: exit %r %.2f s after the second signal" % (rc, dt))


def t_mpirun_term(c, env, model):
    """SIGTERM to mpirun: Open MPI kills the ranks ~1 s later whatever they do,
    so rank 0 shortens its drain and every client still gets an answer."""
    with Server(env, model, np=2, args=TP2) as srv:
        body = {"prompt": PROMPT, "max_tokens": 900, "ignore_eos": True, "temperature": 0}
        fns = [lambda: post_raw(srv.port, body, timeout=60) for _ in range(3)]
        th, res = in_threads(fns)
        c.check(wait_running(srv, 3), "the requests never ran")
        srv.proc.send_signal(signal.SIGTERM)
        join(th, 30)
        srv.wait_exit(20)
        for i, r in enumerate(res):
            c.check(isinstance(r, bytes) and status_of(r) in (200, 503) and (status_of(r) == 200 or json_error(r, 503)),
                    "request %d over SIGTERM to mpirun: %r (want an answer, not a closed connection)" %
                    (i, r[:200] if isinstance(r, bytes) else r))
        c.check("the signal came from mpirun" in srv.log_text(), "no word about mpirun's kill timeout:\n%s"
                % srv.log_tail())


def t_dead_rank(c, env, model):
    with Server(env, model, np=2, args=TP2) as srv:
        pids = srv.rank_pids()
        if not c.check(1 in pids, "no pid for rank 1"):
            return
        body = {"prompt": PROMPT, "max_tokens": 900, "ignore_eos": True, "temperature": 0}
        fns = [lambda: post_raw(srv.port, dict(body, stream=True), timeout=60) for _ in range(3)] + \
              [lambda: post_raw(srv.port, body, timeout=60) for _ in range(3)]
        th, res = in_threads(fns)
        c.check(wait_running(srv, 6), "the requests never ran")
        time.sleep(0.5)
        t0 = time.time()
        os.kill(pids[1], signal.SIGKILL)
        join(th, 30)
        t_answered = time.time() - t0
        rc = srv.wait_exit(20)
        for i, r in enumerate(res):
            if i < 3:
                ev = sse_events(r) if isinstance(r, bytes) else r
                c.check(isinstance(ev, list) and len(ev) >= 2 and ev[-1] == "[DONE]" and
                        isinstance(ev[-2], dict) and "rank 1" in ev[-2].get("error", {}).get("message", ""),
                        "stream %d after rank 1 died: %r" % (i, ev[-2:] if isinstance(ev, list) else ev))
            else:
                c.check(isinstance(r, bytes) and status_of(r) == 503 and b"rank 1" in r,
                        "plain request %d after rank 1 died: %r" % (i, r[:300] if isinstance(r, bytes) else r))
        text = srv.log_text()
        m = re.search(r"rank 1 of the job died \(([^)]*)\)", text)
        c.check(m is not None, "rank 0 did not log the death of rank 1:\n%s" % srv.log_tail())
        c.check(rc is not None and rc != 0, "exit status %r after a rank died (want non-zero)" % rc)
        c.check(not srv.ranks_alive(), "ranks left behind: %r" % srv.ranks_alive())
        log("dead rank: every client answered %.3f s after kill -9 (%s); exit %r" %
            (t_answered, m.group(1) if m else "?", rc))


def config_with(env, name, top=None, ms=None):
    """configs/tiny-cpu.yaml with top-level keys replaced and moeserve: keys added or replaced."""
    with open(os.path.join(env.configs, "tiny-cpu.yaml")) as f:
        lines = f.read().splitlines()
    top, ms = dict(top or {}), dict(ms or {})
    if "moeserve:" not in lines:
        raise RuntimeError("configs/tiny-cpu.yaml has no 'moeserve:' block")
    out = []
    for line in lines:
        k = line.split(":", 1)[0]
        if k in top:
            line = "%s: %s" % (k, top.pop(k))
        elif line.startswith("  ") and k.strip() in ms and out and any(x == "moeserve:" for x in out):
            line = "  %s: %s" % (k.strip(), ms.pop(k.strip()))
        out.append(line)
        if line == "moeserve:":
            out += ["  %s: %s" % kv for kv in ms.items() if ("  %s:" % kv[0]) not in "\n".join(lines)]
    out += ["%s: %s" % kv for kv in top.items()]
    path = os.path.join(env.workdir, name)
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    return path


def t_retry_after(c, env, model):
    """A queue of 1 and a batch of 1: some of 6 concurrent requests get 429 + Retry-After."""
    cfg = config_with(env, "reliability-429.yaml", top={"max_batch_size": 1}, ms={"max_queue_size": 1})
    with Server(env, model, np=1, config=cfg) as srv:
        fns = [lambda: srv.request("POST", "/v1/completions", {"prompt": PROMPT, "max_tokens": 30, "ignore_eos": True},
                                   timeout=120) for _ in range(6)]
        th, res = in_threads(fns)
        join(th, 120)
        got = [r for r in res if isinstance(r, tuple) and r[0] == 429]
        c.check(got, "no 429 from 6 concurrent requests with max_queue_size 1: %r" % [r[0] if isinstance(r, tuple)
                                                                                       else r for r in res])
        c.check(all(r[1].get("Retry-After") == "1" for r in got), "429 without Retry-After: %r" % [r[1] for r in got])


def main():
    env = Env.from_args()
    model = env.tiny_model()
    c = Checks()
    only = set(Env.rest)
    t_all = time.time()
    first = [("sampling_rule", t_sampling_rule), ("protocol_json", t_protocol_json), ("slow_client", t_slow_client),
             ("flood", t_flood), ("fd_exhaustion", t_fd_exhaustion)]
    if not only or only & {n for n, _ in first}:
        cfg = config_with(env, "reliability.yaml", ms={"max_connections": CAP, "request_timeout": 2})
        srv = Server(env, model, np=1, config=cfg)
        c.run_on_server(srv, [(n, f) for n, f in first if not only or n in only])
    for name, fn in [("retry_after", t_retry_after), ("drain", t_drain), ("drain_abort", t_drain_abort),
                     ("mpirun_term", t_mpirun_term), ("dead_rank", t_dead_rank)]:
        if not only or name in only:
            c.run(name, fn, env, model)
    log("test_reliability: %.1f s" % (time.time() - t_all))
    c.done()


if __name__ == "__main__":
    main()
