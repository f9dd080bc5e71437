"""test_eplb_online.py LAYOUT — online expert rebalancing on CPU ranks (issue 12 item 5).

A tiny model whose router bias makes experts 10 and 12 hot (mkmodel
--hot-experts; both sit on EP rank 0 in the default placement), 24 slots
for 16 experts (1.5x), layer_updates_per_iter 1, statistics every 4 steps:
  (a) greedy outputs equal the single-process engine's before, during and
      after the rebalance (requests run back to back across it);
  (b) the step imbalance measured from the counters drops from its static
      value (> 0.15) to <= 0.15, and the rebalance completes by engine step
      64 (planned at the first interval with load, then one layer per batch,
      each flipping two steps after its transfers are posted); the slots it
      moved are reported;
  (c) 200 concurrent requests complete with no error while rebalances keep
      running (eplb_min_gain 0: every plan that moves something is applied);
  (d) a failed record transfer (test hook MOESERVE_EPLB_FAIL_MOVE=0) leaves
      the old placement in force: no flip, a warning, outputs still right;
      killing rank 1 while a rebalance is in flight (a "planned" line without
      its "done") ends the job: rank 0 logs rank 1's death, the exit status
      is non-zero and no rank is left.
With MOESERVE_EPLB_HOST_STAGING=1 the records take the device backends' path (pinned host buffers and
a side stream, worker/eplb_move.c) and the log must say so.
"""
import json
import os
import re
import signal
import time
import shutil
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Checks, Env, Server, log  # noqa: E402
import test_layout  # noqa: E402

LAYOUTS = {k: test_layout.LAYOUTS[k] for k in ("np2-dp", "np4-tp", "np4-dp")}
PROMPTS = [[0, 1, 2, 3], [0, 500, 7, 9, 11], [0] + list(range(3000, 3020)), [0, 42, 43]]
N_TOK = 16


def hot_model(env):
    out = os.path.join(env.workdir, "tiny-hot")
    if not os.path.isfile(os.path.join(out, "model.safetensors.index.json")):
        tmp = tempfile.mkdtemp(dir=env.workdir, prefix=".hot-")
        subprocess.run([env.mkmodel, "--preset", "tiny", "--dtype", "bf16", "--tokenizer", env.tokdir,
                        "--hot-experts", "10,12", "--out", tmp], check=True, timeout=120, stdout=subprocess.DEVNULL)
        if os.path.exists(out):
            shutil.rmtree(out)
        os.rename(tmp, out)
    return out


def config(env, L, extra_ms=""):
    base = open(os.path.join(env.configs, "tiny-cpu.yaml")).read().replace(
        "moeserve:\n", "moeserve:\n  eplb_stats_interval: 4\n  eplb_window_steps: 200\n" + extra_ms)
    f = tempfile.NamedTemporaryFile(mode="w", dir=env.workdir, suffix=".yaml", delete=False)
    f.write(base + "\n" + L.get("yaml", "") + "\nmoe_config:\n  load_balancer:\n    num_slots: 24\n"
            "    layer_updates_per_iter: 1\n")
    f.close()
    return f.name


def run_parity(c, srv, refs, label):
    for i, p in enumerate(PROMPTS):
        r = srv.completion(prompt=p, max_tokens=N_TOK, temperature=0, ignore_eos=True)
        c.check(r["choices"][0]["text"] == refs[i], "%s prompt %d: %r != %r" % (label, i, r["choices"][0]["text"],
                                                                              refs[i]))


def data(srv):
    return json.loads(srv.request("GET", "/dashboard/data")[2])


def main():
    env = Env.from_args()
    layout, L = test_layout.layout_arg("np2-dp", LAYOUTS)
    model = hot_model(env)
    c = Checks()
    refs = env.detokenize(model, [env.generate(model, p, N_TOK) for p in PROMPTS])

    def rebalance(c):
        with Server(env, model, np=L["np"], args=L["args"], config=config(env, L)) as srv:
            rounds = 0
            while "rebalance 1 done" not in srv.log_text() and rounds < 12:
                run_parity(c, srv, refs, "round %d" % rounds)
                rounds += 1
            run_parity(c, srv, refs, "after")
            text = srv.log_text()
            m = re.search(r"rebalance 1 planned at step (\d+) from \d+ steps of load: imbalance ([\d.]+) -> ([\d.]+), "
                          r"(\d+) slots in (\d+) layers", text)
            done = re.search(r"rebalance 1 done at step (\d+): (\d+) slots moved", text)
            if not c.check(m and done, "no planned/done rebalance in the log:\n" + srv.log_tail(20)):
                return
            if os.environ.get("MOESERVE_EPLB_HOST_STAGING") == "1":  # the GPU's move path, run on CPU ranks
                c.check("moved through pinned host memory on a side stream" in text,
                        "MOESERVE_EPLB_HOST_STAGING=1 but the log does not say records go through host staging")
            static = float(m.group(2))
            log("rebalance: planned at step %s, imbalance %.3f -> %.3f, %s slots in %s layers; done at step %s "
                "(%s slots moved)" % (m.group(1), static, float(m.group(3)), m.group(4), m.group(5), done.group(1),
                                      done.group(2)))
            c.check(static > 0.15, "static imbalance %.3f is not skewed (> 0.15)" % static)
            c.check(int(done.group(1)) <= 64, "the rebalance took until step %s (bound 64)" % done.group(1))
            run_parity(c, srv, refs, "settle")  # a window's worth of load under the new placement
            run_parity(c, srv, refs, "settle")
            d = data(srv)
            log("measured imbalance after: %.4f (rank load %s), slots_moved %d, bytes_moved %d" % (
                d["imbalance"], d["rank_load"], d["slots_moved"], d["bytes_moved"]))
            c.check(d["rebalances"] >= 1 and d["slots_moved"] > 0 and d["bytes_moved"] > 0,
                    "counters %r" % {k: d[k] for k in ("rebalances", "slots_moved", "bytes_moved")})
            c.check(d["imbalance"] <= 0.15, "imbalance %.3f after the rebalance" % d["imbalance"])
            m2 = srv.metrics()
            c.check(m2.get("moeserve_eplb_slots_moved_total", 0) == d["slots_moved"], "metrics slots moved")

    def concurrent(c):
        with Server(env, model, np=L["np"], args=L["args"], config=config(env, L, "  eplb_min_gain: 0\n")) as srv:
            bodies = [dict(prompt=PROMPTS[i % 4], max_tokens=N_TOK, temperature=0, ignore_eos=True)
                      for i in range(200)]
            res = test_layout.parallel([lambda b=b: srv.completion(timeout=600, **b) for b in bodies])
            bad = [r for r in res if not isinstance(r, dict)]
            c.check(not bad, "%d of 200 failed: %r" % (len(bad), bad[:3]))
            wrong = [i for i, r in enumerate(res) if isinstance(r, dict) and r["choices"][0]["text"] != refs[i % 4]]
            c.check(not wrong, "%d of 200 differ from the single-process engine (first %s)" % (len(wrong), wrong[:5]))
            d = data(srv)
            log("200 concurrent: rebalances %d, slots moved %d" % (d["rebalances"], d["slots_moved"]))
            c.check(d["rebalances"] >= 1, "no rebalance ran during the 200 requests")

    def failed_move(c):
        with Server(env, model, np=L["np"], args=L["args"], config=config(env, L),
                    extra_env={"MOESERVE_EPLB_FAIL_MOVE": "0"}) as srv:
            for _ in range(4):
                run_parity(c, srv, refs, "failed move")
            text = srv.log_text()
            c.check("a record transfer failed; the old placement stays in force" in text, "no failure warning")
            d = data(srv)
            c.check(d["slots_moved"] == 0 or "rebalance 2" in text, "a failed first batch flipped: %r" % d["slots_moved"])

    def dead_rank(c):
        with Server(env, model, np=L["np"], args=L["args"], config=config(env, L, "  eplb_min_gain: 0\n")) as srv:
            pids = srv.rank_pids()
            if not c.check(1 in pids, "no pid for rank 1"):
                return
            stop = [False]

            def client():
                while not stop[0]:
                    try:
                        srv.completion(prompt=PROMPTS[0], max_tokens=N_TOK, temperature=0, ignore_eos=True, timeout=30)
                    except Exception:  # noqa: BLE001 - the job is meant to die under it
                        return
            ts = [threading.Thread(target=client) for _ in range(4)]
            for t in ts:
                t.start()
            killed = False
            t_end = time.time() + 60
            while time.time() < t_end and not killed:
                text = srv.log_text()
                planned = len(re.findall(r"rebalance \d+ planned", text))
                done = len(re.findall(r"rebalance \d+ done", text))
                if planned > done:
                    os.kill(pids[1], signal.SIGKILL)
                    killed = True
                    log("killed rank 1 during rebalance %d" % planned)
                time.sleep(0.02)
            c.check(killed, "no rebalance was in flight within 60 s")
            rc = srv.wait_exit(30)
            stop[0] = True
            for t in ts:
                t.join(40)
            text = srv.log_text()
            c.check(re.search(r"rank 1 of the job died", text), "rank 0 did not log the death of rank 1:\n%s"
                    % srv.log_tail())
            c.check(rc is not None and rc != 0, "exit status %r after a rank died mid-move" % rc)
            c.check(not srv.ranks_alive(), "ranks left behind: %r" % srv.ranks_alive())

    c.run("rebalance: parity, imbalance, bound", rebalance)
    c.run("200 concurrent requests while rebalancing", concurrent)
    if layout == "np2-dp":
        c.run("a failed transfer keeps the old placement", failed_move)
        c.run("a rank killed mid-move ends the job naming it", dead_rank)
    c.done()


if __name__ == "__main__":
    main()
