"""harness.py — launch real moeserve servers for integration tests.

Standard library only. A test script does:

    from harness import Env, Server
    env = Env.from_args()            # paths from meson (argv) or the environment
    model = env.tiny_model()         # builds the tiny checkpoint once (file lock)
    with Server(env, model, np=2, args=["--tp_size", "2", "--ep_size", "2"]) as srv:
        out = srv.completion(prompt=[0, 1, 2], max_tokens=8, temperature=0)

Every wait has a timeout; a server is always killed (its whole process
group) when the `with` block ends, whatever happened. A test that cannot run
here (no tokenizer files, no mpirun) fails saying to run scripts/setup.sh.
"""
import errno
import fcntl
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

SKIP = 77
ROOT_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
            # keep Open MPI quiet and local: no network discovery on CI boxes
            "OMPI_MCA_btl": "self,vader", "OMPI_MCA_rmaps_base_oversubscribe": "1"}


def log(*a):
    print("[%s]" % time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def skip(why):
    log("SKIP:", why)
    sys.exit(SKIP)


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def free_port():
    """A port nobody listens on right now, chosen below the kernel's ephemeral
    range. A port read back from bind(0) is an ephemeral one: between our close
    and the server's bind, mpirun's out-of-band TCP listener (which binds 0 too)
    can take it, the server then fails to bind, and our /health probe lands on
    Open MPI ("tcp_peer_recv_connect_ack: invalid header type") -- seen in CI."""
    lo, _ = _ephemeral_range()
    top = min(lo, 65536) - 1
    base = max(1024, top - 12000)
    rng = random.Random(os.getpid() ^ int(time.time() * 1e6))
    for _ in range(200):
        port = rng.randint(base, top)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The peer closing first is a valid outcome of every raw exchange: a server
# may answer a bad request and close before the client has finished sending
# (EPIPE / ECONNRESET on send) or before it half-closes (ENOTCONN on
# shutdown). What it answered is still in the receive buffer.
_CLOSED_FIRST = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


def raw_exchange(port, data, timeout=10, half_close=False, limit=1 << 24):
    """Send raw bytes to 127.0.0.1:port and read until EOF, timeout or limit
    bytes. Returns (bytes, timed_out); the server closing at any point is not
    an error."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    got = b""
    try:
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except _CLOSED_FIRST:
            pass
        except OSError as e:
            if e.errno != errno.ENOTCONN:
                raise
        while len(got) < limit:
            try:
                d = s.recv(65536)
            except socket.timeout:
                return got, True
            except _CLOSED_FIRST:
                return got, False
            if not d:
                return got, False
            got += d
        return got, False
    finally:
        s.close()



def status_of(resp):
    """The status code of a raw HTTP reply, or None."""
    try:
        return int(resp.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


def is_error_body(data, status):
    """An OpenAI-style error body {"error": {"message": str, ..., "code": status}}."""
    try:
        js = json.loads(data)
    except ValueError:
        return False
    e = js.get("error") if isinstance(js, dict) else None
    return isinstance(e, dict) and isinstance(e.get("message"), str) and e.get("code") == status

class Env:
    """Paths: --moeserve, --mkmodel, --tokdir, --workdir, --configs (or MS_* environment)."""

    def __init__(self, moeserve, mkmodel, tokdir, workdir, configs):
        self.moeserve, self.mkmodel, self.tokdir = moeserve, mkmodel, tokdir
        self.workdir, self.configs = workdir, configs
        os.makedirs(workdir, exist_ok=True)

    @classmethod
    def from_args(cls, argv=None):
        argv = list(sys.argv[1:] if argv is None else argv)
        vals = {"moeserve": os.environ.get("MS_MOESERVE"), "mkmodel": os.environ.get("MS_MKMODEL"),
                "tokdir": os.environ.get("MS_TOKDIR"), "workdir": os.environ.get("MS_WORKDIR"),
                "configs": os.environ.get("MS_CONFIGS")}
        rest = []
        i = 0
        while i < len(argv):
            k = argv[i][2:] if argv[i].startswith("--") else None
            if k in vals and i + 1 < len(argv):
                vals[k] = argv[i + 1]
                i += 2
            else:
                rest.append(argv[i])
                i += 1
        cls.rest = rest
        missing = [k for k, v in vals.items() if not v]
        if missing:
            print("harness: missing " + ", ".join("--" + m for m in missing), file=sys.stderr)
            sys.exit(2)
        # Missing prerequisites fail (with what to do), they do not skip: the
        # test command runs scripts/setup.sh first, so they are always there.
        if not os.path.isfile(os.path.join(vals["tokdir"], "tokenizer.json")):
            print("harness: no tokenizer files in %s: run scripts/setup.sh" % vals["tokdir"], file=sys.stderr)
            sys.exit(1)
        if shutil.which("mpirun") is None:
            print("harness: mpirun not found: run scripts/setup.sh (openmpi-bin)", file=sys.stderr)
            sys.exit(1)
        return cls(**vals)

    def tiny_model(self, name="tiny", extra=()):
        """The tiny synthetic DeepSeek-V3 with the real tokenizer, built once
        (extra: more mkmodel flags, e.g. --mtp, under another name)."""
        out = os.path.join(self.workdir, name)
        with open(os.path.join(self.workdir, ".%s.lock" % name), "w") as lk:
            fcntl.flock(lk, fcntl.LOCK_EX)
            if not os.path.isfile(os.path.join(out, "model.safetensors.index.json")):
                tmp = tempfile.mkdtemp(dir=self.workdir, prefix=".%s-" % name)
                subprocess.run([self.mkmodel, "--preset", "tiny", "--dtype", "bf16", "--tokenizer", self.tokdir,
                                "--out", tmp, *extra], check=True, timeout=120, stdout=subprocess.DEVNULL)
                if os.path.exists(out):
                    shutil.rmtree(out)
                os.rename(tmp, out)
        return out

    def generate(self, model, prompt_ids, max_tokens, chunk=0):
        """Reference greedy continuation from the single-process engine
        (same MLA mode as the server: naive prefill, absorbed decode;
        chunk > 0: the prompt is prefilled chunk tokens per step)."""
        key = "%s|%s|%d|%d" % (model, ",".join(map(str, prompt_ids)), max_tokens, chunk)
        cache = os.path.join(self.workdir, "generate-cache.json")
        with open(cache + ".lock", "w") as lk:
            fcntl.flock(lk, fcntl.LOCK_EX)
            data = {}
            if os.path.exists(cache):
                with open(cache) as f:
                    data = json.load(f)
            if key not in data:
                r = subprocess.run([self.moeserve, "generate", model, "--prompt-ids", ",".join(map(str, prompt_ids)),
                                    "--max-tokens", str(max_tokens), "--ignore-eos", "--mla", "auto", "--device", "cpu"] +
                                   (["--chunk", str(chunk)] if chunk else []),
                                   capture_output=True, text=True, timeout=120)
                if r.returncode != 0:
                    raise RuntimeError("generate failed: " + r.stderr[-2000:])
                data[key] = [int(x) for x in r.stdout.strip().split(",") if x]
                with open(cache, "w") as f:
                    json.dump(data, f)
            return data[key]

    def run_tool(self, cmd, model, lines, args=()):
        r = subprocess.run([self.moeserve, cmd, model, *args], input="\n".join(lines) + "\n", capture_output=True,
                           text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("%s failed: %s" % (cmd, r.stderr[-2000:]))
        return [json.loads(x) for x in r.stdout.splitlines() if x.strip()]

    def detokenize(self, model, ids_list):
        """Text as the server returns it: skip_special_tokens defaults to true."""
        return self.run_tool("detokenize", model, [json.dumps(ids) for ids in ids_list], ["--skip-special"])

    def tokenize(self, model, texts):
        return self.run_tool("tokenize", model, [json.dumps(t) for t in texts])


class ServerDied(Exception):
    pass


class Server:
    """One `moeserve serve` job: np = 1 runs without mpirun, else mpirun -np N."""

    def __init__(self, env, model, np=1, args=(), config=None, yaml_extra="", use_mpirun=None, ready_timeout=90,
                 extra_env=None):
        self.env, self.model, self.np = env, model, np
        self.extra_env = dict(extra_env or {})
        self.port = free_port()
        self.proc = None
        self.ready_timeout = ready_timeout
        self.logf = tempfile.NamedTemporaryFile(mode="w+", dir=env.workdir, prefix="server-", suffix=".log",
                                                delete=False)
        cfg = config or os.path.join(env.configs, "tiny-cpu.yaml")
        # MS_SERVE_DEVICE=cuda|auto runs the server on that kernels backend (the GPU host's layout
        # runs); the reference `generate` stays on the CPU, so parity compares CUDA with the CPU.
        # MS_SERVE_DATA_PLANE=mpi|nccl picks moeserve.data_plane (the several-GPU host's NCCL runs).
        device, plane = os.environ.get("MS_SERVE_DEVICE"), os.environ.get("MS_SERVE_DATA_PLANE")
        if yaml_extra or device or plane:
            with open(cfg) as f:
                base = f.read()
            if device:
                base = base.replace("device: cpu", "device: " + device)
            if plane:
                base = base.replace("moeserve:\n", "moeserve:\n  data_plane: " + plane + "\n", 1)
            tmp = tempfile.NamedTemporaryFile(mode="w", dir=env.workdir, suffix=".yaml", delete=False)
            tmp.write(base + "\n" + yaml_extra + "\n")
            tmp.close()
            cfg = tmp.name
        serve = [env.moeserve, "serve", model, "--host", "127.0.0.1", "--port", str(self.port),
                 "--extra_llm_api_options", cfg] + list(args)
        mpi = use_mpirun if use_mpirun is not None else np > 1
        self.cmd = (["mpirun", "-np", str(np), "--oversubscribe"] + serve) if mpi else serve

    # -- lifetime -------------------------------------------------------------
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.kill()
        return False

    def start(self):
        env = dict(os.environ, **ROOT_ENV)
        env.update(self.extra_env)
        log("starting:", " ".join(self.cmd))
        self.t_start = time.time()
        self.proc = subprocess.Popen(self.cmd, stdout=self.logf, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        self.wait_ready()

    def log_text(self):
        self.logf.flush()
        with open(self.logf.name, errors="replace") as f:
            return f.read()

    def log_tail(self, n=40):
        return "\n".join(self.log_text().splitlines()[-n:])

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self):
        deadline = time.time() + self.ready_timeout
        while time.time() < deadline:
            if not self.alive():
                raise ServerDied("server exited with %s before it was ready:\n%s" % (self.proc.returncode,
                                                                                     self.log_tail()))
            try:
                st, _, _ = self.request("GET", "/health", timeout=2)
                if st == 200:
                    log("ready after %.1f s on port %d" % (time.time() - self.t_start, self.port))
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise ServerDied("server not ready within %d s:\n%s" % (self.ready_timeout, self.log_tail()))

    def rank_pids(self):
        """{rank: pid} from the ranks' startup lines."""
        pids = {}
        for m in re.finditer(r"rank (\d+) \(pid (\d+)\): loading", self.log_text()):
            pids[int(m.group(1))] = int(m.group(2))
        return pids

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        """Whatever state it is in: the whole process group goes."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        # ranks that outlived mpirun (should never happen) must not linger;
        # only processes that are still this server's ranks (pids get reused)
        for pid in self.rank_pids().values():
            if self.is_our_rank(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass

    def is_our_rank(self, pid):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            return False
        return b"serve" in argv and str(self.port).encode() in argv

    def ranks_alive(self):
        return [r for r, pid in self.rank_pids().items() if self.is_our_rank(pid)]

    # -- HTTP -----------------------------------------------------------------
    def request(self, method, path, body=None, timeout=60, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = None if body is None else (body if isinstance(body, (bytes, str)) else json.dumps(body))
            h = {"Content-Type": "application/json"} if data is not None else {}
            h.update(headers or {})
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def post_json(self, path, body, timeout=120):
        st, _, data = self.request("POST", path, body, timeout=timeout)
        try:
            js = json.loads(data)
        except ValueError:
            js = None
        return st, js

    def completion(self, timeout=120, **body):
        st, js = self.post_json("/v1/completions", body, timeout)
        if st != 200:
            raise AssertionError("completion -> %d %s" % (st, js))
        return js

    def open_stream(self, body, events, timeout=30):
        """POST body (a completion, streamed) on a raw socket and read until `events` SSE data lines came (or
        the timeout); returns (the socket, still open: closing it is the client hanging up; the bytes read)."""
        data = json.dumps(dict(body, stream=True))
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        s.sendall(("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   "Content-Length: %d\r\n\r\n%s" % (len(data), data)).encode())
        got = b""
        deadline = time.time() + timeout
        while got.count(b"data: ") < events and time.time() < deadline:
            got += s.recv(65536)
        return s, got

    def stream(self, path, body, timeout=120):
        """POST with stream: true; returns the list of parsed SSE data events
        (the final "[DONE]" kept as the string)."""
        body = dict(body, stream=True)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            if r.status != 200:
                raise AssertionError("stream -> %d %s" % (r.status, r.read()[:500]))
            events = []
            for raw in r:
                line = raw.decode().rstrip("\r\n")
                if not line.startswith("data: "):
                    continue
                payload = line[6:]
                events.append(payload if payload == "[DONE]" else json.loads(payload))
            return events
        finally:
            conn.close()

    def kv_blocks_used_settled(self, tries=50):
        """moeserve_kv_cache_blocks_used once it reaches 0, or its last value
        after tries x 0.1 s (the gauges are published after the step that
        produced the last replies)."""
        used = None
        for _ in range(tries):
            used = self.metrics().get("moeserve_kv_cache_blocks_used")
            if used == 0:
                break
            time.sleep(0.1)
        return used

    def metrics(self):
        st, _, data = self.request("GET", "/metrics", timeout=10)
        if st != 200:
            raise AssertionError("/metrics -> %d" % st)
        out = {}
        for line in data.decode().splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name, _, val = line.rpartition(" ")
            try:
                out[name] = float(val)
            except ValueError:
                pass
        return out


# Shared by the test_*.py scripts: named check groups that count failures.
class Checks:
    """Named checks; failures are counted, logged with their name, not raised."""

    def __init__(self):
        self.n = self.failed = 0
        self.failed_names = []
        self.name = "?"

    def check(self, cond, msg):
        self.n += 1
        if not cond:
            self.failed += 1
            if self.name not in self.failed_names:
                self.failed_names.append(self.name)
            log("FAIL [%s]: %s" % (self.name, msg))
        return bool(cond)

    def run(self, name, fn, *a):
        """Run one named check group; an exception is a failure of that group only."""
        self.name = name
        t0 = time.time()
        before = self.failed
        try:
            fn(self, *a)
        except Exception as e:  # noqa: BLE001 - reported, then the next check runs
            self.check(False, "raised %s: %s\n%s" % (type(e).__name__, e, traceback.format_exc(limit=4)))
        log("%s %s (%.2f s)" % ("ok  " if self.failed == before else "FAIL", name, time.time() - t0))

    def run_on_server(self, srv, groups):
        """Start srv, run each (name, fn) group on it (fn(checks, srv)) while it
        lives, then kill it; its log tail is shown when anything failed."""
        try:
            srv.start()
            for name, fn in groups:
                if not srv.alive():
                    self.name = name
                    self.check(False, "server died before this check:\n%s" % srv.log_tail())
                    continue
                self.run(name, fn, srv)
        except Exception as e:  # noqa: BLE001 - a startup failure is one failed check
            self.name = "startup"
            self.check(False, "%s: %s\n%s" % (type(e).__name__, e, srv.log_tail() if srv.proc else ""))
        finally:
            srv.kill()
            if self.failed:
                log("server log tail:\n" + srv.log_tail(30))

    def done(self):
        log("%d checks, %d failed%s" % (self.n, self.failed,
                                         (": " + ", ".join(self.failed_names)) if self.failed_names else ""))
        sys.exit(1 if self.failed or self.n == 0 else 0)
