"""test_dashboard.py — GET /dashboard in a real headless browser (issue 12
item 6): a np2 server (attention DP, EP 2, 24 slots) with statistics every 2
steps; after some traffic, dashboard_browser.js (playwright-core driving
Debian's chromium) loads the page, checks its plots are drawn, sends more
traffic and checks the page updated; the screenshot stays in
<workdir>/dashboard/dashboard.png. Also /dashboard/data's fields against
the counters' invariants (each layer's counts sum to routed pairs = tokens
x top-k)."""
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SKIP, Checks, Env, Server, log, skip  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
YAML = "enable_attention_dp: true\nmoe_config:\n  load_balancer:\n    num_slots: 24\n"
EPLB_KEYS = "moeserve:\n  eplb_stats_interval: 2\n  eplb_window_steps: 400\n"


def main():
    env = Env.from_args()
    pwdir = os.path.join(os.path.dirname(os.path.dirname(HERE)), ".cache", "npm", "node_modules")
    if shutil.which("node") is None:
        skip("node is not installed (scripts/setup.sh installs nodejs)")
    model = env.tiny_model()
    outdir = os.path.join(env.workdir, "dashboard")
    os.makedirs(outdir, exist_ok=True)
    c = Checks()
    base = open(os.path.join(env.configs, "tiny-cpu.yaml")).read().replace("moeserve:\n", EPLB_KEYS)
    cfg = os.path.join(env.workdir, "dashboard.yaml")
    with open(cfg, "w") as f:
        f.write(base + "\n" + YAML)
    rc = 0
    with Server(env, model, np=2, args=["--tp_size", "2", "--ep_size", "2"], config=cfg) as srv:
        c.name = "data"
        for i in range(4):
            srv.completion(prompt=[0, 5 + i, 9, 11], max_tokens=16, temperature=0, ignore_eos=True)
        time.sleep(0.5)  # the last interval's reduce completes while rank 0 idles
        m = srv.metrics()
        st, _, body = srv.request("GET", "/dashboard/data")
        d = json.loads(body)
        c.check(st == 200, "/dashboard/data -> %d" % st)
        for k in ("layers", "num_experts", "ep_size", "num_slots", "load", "rank_load", "imbalance", "output_tokens",
                  "window_steps", "rebalances", "slots_moved", "placement_age", "steps"):
            c.check(k in d, "/dashboard/data lacks %r" % k)
        c.check(d["layers"] == [1, 2] and d["num_experts"] == 16 and d["ep_size"] == 2 and d["num_slots"] == 24,
                "shape %r" % {k: d.get(k) for k in ("layers", "num_experts", "ep_size", "num_slots")})
        sums = [sum(r) for r in d["load"]]
        c.check(sums[0] > 0 and sums[0] == sums[1] and sums[0] % 4 == 0,
                "per-layer routed pairs %r: equal across layers, a multiple of top-k 4" % sums)
        c.check(abs(sum(d["rank_load"]) - sums[0] * 2) < 1e-6, "rank load %r sums to %d" % (d["rank_load"], sums[0] * 2))
        c.check(abs(m.get("moeserve_eplb_imbalance", -1) - d["imbalance"]) < 1e-4,
                "metric imbalance %r vs %r" % (m.get("moeserve_eplb_imbalance"), d["imbalance"]))
        c.check('moeserve_eplb_rank_load{rank="1"}' in m and "moeserve_eplb_placement_age_steps" in m,
                "metrics lack the eplb gauges")
        st, hdr, page = srv.request("GET", "/dashboard")
        c.check(st == 200 and b"<canvas" in page and b"http://" not in page and b"https://" not in page,
                "GET /dashboard -> %d (%d bytes), self-contained" % (st, len(page)))
        c.name = "browser"
        url = "http://127.0.0.1:%d/dashboard" % srv.port
        r = subprocess.run(["node", os.path.join(HERE, "dashboard_browser.js"), url, outdir, pwdir],
                           capture_output=True, text=True, timeout=150)
        log("browser: rc %d\n%s%s" % (r.returncode, r.stdout[-1500:], r.stderr[-3000:]))
        if r.returncode == SKIP:
            rc = SKIP
        else:
            c.check(r.returncode == 0, "dashboard_browser.js failed (rc %d)" % r.returncode)
            c.check(os.path.getsize(os.path.join(outdir, "dashboard.png")) > 10000, "no screenshot")
            log("screenshot: %s" % os.path.join(outdir, "dashboard.png"))
    if rc == SKIP and not c.failed:
        sys.exit(SKIP)
    c.done()


if __name__ == "__main__":
    main()
