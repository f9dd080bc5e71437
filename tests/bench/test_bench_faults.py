"""test_bench_faults.py — moeserve-bench against a fake OpenAI server
(standard library, in this process) that answers request k with a scripted
behaviour: a good stream, 429, 500, a connection dropped mid-stream, a stall
past --request-timeout, an error event mid-stream. The run must count each
failure with its reason, finish (no hang), and still measure the good ones;
an all-failed run and a failed initial test request exit non-zero; bad flags
exit 2 with one line.

argv: --bench build/moeserve-bench --tokdir DIR (a tokenizer.json folder).
"""
import http.server
import json
import os
import socketserver
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_block  # noqa: E402

ARGS = dict(zip(sys.argv[1::2], sys.argv[2::2]))
BENCH, TOKDIR = ARGS["--bench"], ARGS["--tokdir"]
failed = 0


def check(cond, msg):
    global failed
    if not cond:
        failed += 1
        print("FAIL:", msg, file=sys.stderr, flush=True)


class Fake(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, script):
        super().__init__(("127.0.0.1", 0), Handler)
        self.script, self.n, self.lock = list(script), 0, threading.Lock()

    def next_kind(self):
        with self.lock:
            k = self.script[self.n % len(self.script)]
            self.n += 1
            return k


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def chunk(self, data):
        b = data.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(b), b))
        self.wfile.flush()

    def event(self, obj):
        self.chunk("data: " + (obj if isinstance(obj, str) else json.dumps(obj)) + "\n\n")

    def error(self, code, msg):
        body = json.dumps({"object": "error", "message": msg, "type": "x", "code": code,
                           "error": {"message": msg, "type": "x", "code": code}}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        kind = self.server.next_kind()
        if kind == "429":
            return self.error(429, "queue full")
        if kind == "500":
            return self.error(500, "boom")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        tok = {"index": 0, "text": "a", "logprobs": None, "finish_reason": None}
        self.event({"choices": [tok]})
        if kind == "drop":
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        if kind == "stall":
            time.sleep(3)
            return
        if kind == "errevent":
            self.event({"object": "error", "message": "generation failed: step", "code": 500})
            self.event("[DONE]")
            self.chunk("")
            return
        time.sleep(0.01)
        # one event carrying two tokens, as its logprobs say
        two = dict(tok, text="bc", logprobs={"tokens": ["b", "c"], "token_logprobs": [0, 0]})
        self.event({"choices": [two]})
        self.event({"choices": [], "usage": {"prompt_tokens": len(body["prompt"]), "completion_tokens": 3}})
        self.event("[DONE]")
        self.chunk("")


def run(script, *extra, timeout=30):
    srv = Fake(script)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        t0 = time.time()
        r = subprocess.run([BENCH, "--model", "fake", "--tokenizer", TOKDIR, "--port", str(srv.server_address[1]),
                            "--random-input-len", "5", "--random-output-len", "3", "--tokenize-on-client",
                            "--request-timeout", "1", "--disable-tqdm", *extra],
                           capture_output=True, text=True, timeout=timeout)
        return r, time.time() - t0
    finally:
        srv.shutdown()
        srv.server_close()


def main():
    # in order, one at a time: ok, 429, 500, drop, stall, error event, ok
    script = ["ok", "429", "500", "drop", "stall", "errevent", "ok"]
    r, took = run(script, "--num-prompts", "7", "--max-concurrency", "1", "--no-test-input", "--logprobs", "1",
                  "--percentile-metrics", "ttft,tpot,itl,e2el")
    check(r.returncode == 0, "mixed run exit %d: %s" % (r.returncode, r.stderr[-500:]))
    check(took < 15, "mixed run took %.1f s" % took)
    fields, errors = bench_block.parse(r.stdout)
    check(list(fields) == bench_block.expected_labels(), "fields %s" % list(fields))
    check(fields["Successful requests"] == 2 and fields["Failed requests"] == 5, "counts %s" % fields)
    check(fields["Total input tokens"] == 10 and fields["Total generated tokens"] == 6, "tokens %s" % fields)
    reasons = " | ".join(errors)
    for want in ("HTTP 429", "queue full", "HTTP 500", "boom", "connection closed", "timed out",
                 "error event in stream: generation failed"):
        check(want in reasons, "no failure reason %r in %r" % (want, reasons))
    check(sum(errors.values()) == 5 and "Total failed requests: 5" in r.stdout, "error counts %s" % errors)
    check(fields["Mean TTFT (ms)"] > 0 and fields["Mean E2EL (ms)"] >= 10, "latencies %s" % fields)
    # ITL: the two-token event's gap is split in two equal entries
    check(abs(fields["Mean ITL (ms)"] * 2 - (fields["Mean E2EL (ms)"] - fields["Mean TTFT (ms)"])) < 0.05,
          "split ITL: mean ITL %s, E2EL-TTFT %s" % (fields["Mean ITL (ms)"],
                                                    fields["Mean E2EL (ms)"] - fields["Mean TTFT (ms)"]))

    # every request fails: all counted, exit 3, no hang
    r, took = run(["429", "drop"], "--num-prompts", "6", "--max-concurrency", "3", "--no-test-input")
    check(r.returncode == 3, "all-failed exit %d" % r.returncode)
    fields, errors = bench_block.parse(r.stdout)
    check(fields["Successful requests"] == 0 and fields["Failed requests"] == 6, "all-failed counts %s" % fields)
    check(fields["Mean TTFT (ms)"] == 0 and fields["Total generated tokens"] == 0, "all-failed zeros %s" % fields)

    # the initial test request fails: say why, exit 1, no benchmark
    r, _ = run(["500"], "--num-prompts", "2")
    check(r.returncode == 1 and "initial test run failed" in r.stderr and "boom" in r.stderr,
          "test-run failure: %d %s" % (r.returncode, r.stderr[-300:]))
    check("Serving Benchmark Result" not in r.stdout, "benchmark ran after a failed test request")

    # nothing listens: connection refused is a counted failure
    r = subprocess.run([BENCH, "--model", "fake", "--tokenizer", TOKDIR, "--port", "1", "--num-prompts", "2",
                        "--random-input-len", "4", "--random-output-len", "2", "--no-test-input", "--disable-tqdm"],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 3 and "Failed requests:                         2" in r.stdout,
          "refused: %d %s" % (r.returncode, r.stdout[-500:]))

    # bad flags: exit 2 with one line naming the flag
    for bad, word in ((["--random-range-ratio", "1.5"], "--random-range-ratio"), (["--backend", "tgi"], "--backend"),
                      (["--num-prompts", "0"], "--num-prompts"), (["--percentile-metrics", "ttft,foo"], "foo"),
                      (["--dataset-name", "sharegpt"], "--dataset-name"), (["--bogus"], "--bogus"),
                      (["--backend", "openai-chat", "--endpoint", "/v1/completions"], "chat/completions"),
                      (["--base-url", "https://x:1"], "http://")):
        # the bad flag comes last: getopt keeps the last value of a repeated one
        r = subprocess.run([BENCH, "--model", "fake", "--tokenizer", TOKDIR, "--no-test-input", "--num-prompts", "1",
                            *bad], capture_output=True, text=True, timeout=30)
        check(r.returncode in (1, 2) and word in r.stderr and r.stderr.count("\n") <= 2,
              "bad flag %s: %d %r" % (bad, r.returncode, r.stderr))
    r = subprocess.run([BENCH, "--model", "/nonexistent"], capture_output=True, text=True, timeout=30)
    check(r.returncode == 2 and "--tokenizer" in r.stderr, "missing tokenizer: %d %r" % (r.returncode, r.stderr))

    print("%d failed" % failed, file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
