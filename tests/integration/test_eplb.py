"""test_eplb.py — the expert load balancer's configuration end to end (issue 12).

  1. bad load balancers: `moeserve serve` exits 2 with one line naming the
     file and key — num_slots below the model's experts, not a multiple of
     the EP ranks, an unknown expert, a rank holding one expert twice, a list
     of the wrong length, a dense layer, an expert left without a slot;
  2. the offline flow: a statistics file -> `moeserve eplb-plan` -> a
     load_balancer YAML given as a path (moe_config.load_balancer: FILE) ->
     `serve` on np2 (EP 2, 24 slots for 16 experts): the log shows the
     planned placement of each layer, and greedy outputs equal the
     single-process engine's.
"""
import json
import os
import random
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ROOT_ENV, Checks, Env, Server, log  # noqa: E402
import test_layout  # noqa: E402

E, S = 16, 24  # the tiny model's routed experts; 1.5x slots


def base_yaml(env):
    with open(os.path.join(env.configs, "tiny-cpu.yaml")) as f:
        return f.read()


def write(env, text, suffix=".yaml"):
    f = tempfile.NamedTemporaryFile(mode="w", dir=env.workdir, suffix=suffix, delete=False)
    f.write(text)
    f.close()
    return f.name


def bad_configs(c, env, model):
    row = list(range(E)) + list(range(8))  # 24 slots, default-like, valid on 2 ranks of 12
    dup = list(row)
    dup[1] = 0  # rank 0 (slots 0..11) holds expert 0 twice, expert 1 nowhere... first error: the duplicate
    cases = [
        ("num_slots < experts", "num_slots: 8", [], "is fewer than the model's 16 routed experts"),
        ("not a multiple of ep", "num_slots: 25", [], "is not a multiple of moe_expert_parallel_size (--ep_size) = 2"),
        ("unknown expert", "num_slots: 24\n    initial_global_assignments:\n      1: %s" % (row[:-1] + [16]),
         [], "slot 23 names expert 16"),
        ("rank holds an expert twice", "num_slots: 24\n    initial_global_assignments:\n      1: %s" % dup,
         [], "holds expert 0 twice"),
        ("wrong list length", "num_slots: 24\n    initial_global_assignments:\n      1: %s" % row[:20],
         [], "lists of 20 expert ids, but num_slots is 24"),
        ("dense layer", "num_slots: 24\n    initial_global_assignments:\n      0: %s" % row, [],
         "layer 0 is not a MoE layer"),
        ("expert without a slot", "num_slots: 24\n    initial_global_assignments:\n      1: %s"
         % (list(range(12)) + list(range(12))), [], "expert 12 has no slot"),
    ]
    for name, lb, extra, needle in cases:
        path = write(env, base_yaml(env) + "\nmoe_config:\n  load_balancer:\n    " + lb + "\n")
        # two ranks of EP 2: each holds 12 of the 24 slots
        cmd = ["mpirun", "-np", "2", "--oversubscribe", env.moeserve, "serve", model, "--port", "1",
               "--tp_size", "2", "--ep_size", "2", "--extra_llm_api_options", path]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=dict(os.environ, **ROOT_ENV))
        err = [ln for ln in r.stderr.splitlines() if "error" in ln.lower()]
        c.check(r.returncode == 2, "%s: exit %d, want 2: %s" % (name, r.returncode, r.stderr[-600:]))
        c.check(any(needle in ln and "moe_config.load_balancer" in ln for ln in err),
                "%s: no one-line error with '%s' naming the key: %s" % (name, needle, r.stderr[-600:]))


def round_trip(c, env, model):
    random.seed(12)
    hot = {3: 12, 9: 6}  # a skewed load: experts 3 and 9 hot
    load = [[random.randint(50, 100) * hot.get(e, 1) for e in range(E)] for _ in (1, 2)]
    stats = write(env, json.dumps({"num_experts": E, "n_group": 4, "layers": [1, 2], "load": load, "steps": 100}),
                  ".json")
    lb = stats[:-5] + "-lb.yaml"
    r = subprocess.run([env.moeserve, "eplb-plan", stats, "--num-slots", str(S), "--ep-size", "2", "--out", lb],
                       capture_output=True, text=True, timeout=60)
    if not c.check(r.returncode == 0, "eplb-plan: %s" % r.stderr):
        return
    plan = {}
    for line in open(lb):
        m = re.match(r"\s+(\d+): \[([\d, ]+)\]", line)
        if m:
            plan[int(m.group(1))] = [int(x) for x in m.group(2).split(",")]
    c.check(sorted(plan) == [1, 2], "planned layers %s" % sorted(plan))
    for layer, row in plan.items():
        for rk in range(2):
            part = row[rk * 12:(rk + 1) * 12]
            c.check(len(set(part)) == 12, "plan layer %d: rank %d holds an expert twice: %s" % (layer, rk, part))
        c.check(row.count(3) >= 2 and row.count(9) >= 2, "plan layer %d does not replicate the hot experts: %s"
                % (layer, row))
    # the load balancer as a path, relative to the config file (TensorRT-LLM allows a file)
    yaml = "moe_config:\n  load_balancer: %s" % os.path.basename(lb)
    with Server(env, model, np=2, args=["--tp_size", "2", "--ep_size", "2"],
                yaml_extra="enable_attention_dp: true\n" + yaml) as srv:
        text = srv.log_text()
        for layer, row in plan.items():
            want = "layer %d placement (initial_global_assignments): rank 0 [%s] rank 1 [%s]" % (
                layer, " ".join(map(str, row[:12])), " ".join(map(str, row[12:])))
            c.check(want in text, "the log lacks '%s'" % want)
        c.check("12 expert slots on this rank" in text, "no '12 expert slots on this rank' in the log")
        test_layout.parity(c, env, srv, model)


def main():
    env = Env.from_args()
    model = env.tiny_model()
    c = Checks()
    c.run("bad load balancer configs exit 2 naming the key", bad_configs, env, model)
    c.run("eplb-plan -> serve with its placement: log and greedy parity", round_trip, env, model)
    c.done()


if __name__ == "__main__":
    main()
