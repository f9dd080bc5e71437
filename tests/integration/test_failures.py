"""test_failures.py — the job never hangs when a rank dies or mpirun is told
to stop.

  1. kill -9 one worker of an np2 job while requests run: mpirun ends the
     whole job within a few seconds, with a non-zero status and a message
     naming the dead rank; no rank lingers.
  2. SIGTERM to mpirun itself: it forwards the signal to every rank; rank 0
     leads an orderly shutdown (its log says so) and the job is gone within a
     few seconds. (mpirun itself reports a non-zero status whenever it was
     signalled — Open MPI's behaviour — so only the ranks' logs and the time
     are checked.)
  3. Ctrl-C (SIGINT to the whole process group): the same, cleanly.
  4. a bad layout (--tp_size not matching -np) fails at startup with a clear
     message on every rank, not a hang.
"""
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ROOT_ENV, Checks, Env, Server, free_port, log  # noqa: E402

TP2 = ["--tp_size", "2", "--ep_size", "2"]


def busy(srv, stop):
    """Keep requests in flight until told to stop (errors are expected)."""
    while not stop.is_set():
        try:
            srv.post_json("/v1/completions", dict(prompt=[0, 1, 2, 3], max_tokens=50, ignore_eos=True), timeout=10)
        except Exception:  # noqa: BLE001 - the server is being killed
            time.sleep(0.05)


def kill_worker(c, env, model):
    with Server(env, model, np=2, args=TP2) as srv:
        pids = srv.rank_pids()
        if not c.check(1 in pids, "no pid for rank 1 in the log"):
            return
        stop = threading.Event()
        th = threading.Thread(target=busy, args=(srv, stop))
        th.start()
        time.sleep(1.0)
        t0 = time.time()
        os.kill(pids[1], signal.SIGKILL)
        rc = srv.wait_exit(20)
        dt = time.time() - t0
        stop.set()
        th.join(timeout=30)
        text = srv.log_text()
        c.check(rc is not None and rc != 0, "mpirun status after a worker died: %r" % rc)
        c.check(dt < 10, "the job took %.1f s to go down after a worker died" % dt)
        c.check("rank 1" in text and ("signal 9" in text or "Killed" in text),
                "no message naming the dead rank:\n%s" % srv.log_tail())
        c.check(not srv.ranks_alive(), "ranks left behind: %r" % srv.ranks_alive())
        log("kill -9 rank 1 -> mpirun exit %r after %.2f s" % (rc, dt))


def term_mpirun(c, env, model):
    with Server(env, model, np=2, args=TP2) as srv:
        srv.completion(prompt=[0, 1, 2], max_tokens=2)
        t0 = time.time()
        srv.proc.send_signal(signal.SIGTERM)
        rc = srv.wait_exit(20)
        dt = time.time() - t0
        text = srv.log_text()
        c.check(rc is not None, "mpirun still running 20 s after SIGTERM")
        c.check(dt < 10, "SIGTERM to mpirun took %.1f s" % dt)
        c.check("[rank 0] info: Terminated: shutting down" in text, "rank 0 did not lead the shutdown:\n%s"
                % srv.log_tail())
        c.check(not srv.ranks_alive(), "ranks left behind: %r" % srv.ranks_alive())
        log("SIGTERM to mpirun -> exit %r after %.2f s" % (rc, dt))


def ctrl_c(c, env, model):
    """What a terminal's Ctrl-C does: SIGINT to mpirun and every rank at once
    (rank 0 also gets mpirun's forwarded SIGTERM right after)."""
    with Server(env, model, np=2, args=TP2) as srv:
        srv.completion(prompt=[0, 1, 2], max_tokens=2)
        t0 = time.time()
        os.killpg(srv.proc.pid, signal.SIGINT)
        rc = srv.wait_exit(20)
        dt = time.time() - t0
        text = srv.log_text()
        c.check(rc is not None and dt < 10, "Ctrl-C: still running after %.1f s" % dt)
        c.check("[rank 0] info: shut down cleanly" in text, "Ctrl-C: no clean shutdown on rank 0:\n%s"
                % srv.log_tail())
        c.check(not srv.ranks_alive(), "ranks left behind: %r" % srv.ranks_alive())
        log("Ctrl-C -> exit %r after %.2f s" % (rc, dt))


def bad_layout(c, env, model):
    cmd = ["mpirun", "-np", "2", "--oversubscribe", env.moeserve, "serve", model, "--port", str(free_port()), "--tp_size", "4",
           "--ep_size", "2", "--extra_llm_api_options", os.path.join(env.configs, "tiny-cpu.yaml")]
    t0 = time.time()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=dict(os.environ, **ROOT_ENV),
                           start_new_session=True)
    except subprocess.TimeoutExpired:
        c.check(False, "a bad layout hung for 60 s")
        return
    c.check(r.returncode == 2, "bad layout exited %d (want 2: bad usage)" % r.returncode)
    c.check("--tp_size 4 but mpirun started 2 ranks" in r.stderr, "unclear error: %s" % r.stderr[-1500:])
    log("bad layout -> exit %d after %.1f s" % (r.returncode, time.time() - t0))


def main():
    env = Env.from_args()
    model = env.tiny_model()
    c = Checks()
    kill_worker(c, env, model)
    term_mpirun(c, env, model)
    ctrl_c(c, env, model)
    bad_layout(c, env, model)
    c.done()


if __name__ == "__main__":
    main()
