"""test_eplb_cmd.py — `moeserve eplb-plan` end to end: the EPLB README example
as a statistics file gives its published placement as initial_global_assignments;
a skewed 64-expert layer plans to lower imbalance; bad files and flags exit 2
with one line naming the file and key."""
import json, os, re, subprocess, sys, tempfile

moeserve = sys.argv[1]
fails = []
def check(cond, what):
    if not cond:
        fails.append(what)
        print("FAIL:", what, file=sys.stderr)

def plan(stats, *args):
    d = tempfile.mkdtemp()
    p = os.path.join(d, "stats.json")
    with open(p, "w") as f:
        f.write(stats if isinstance(stats, str) else json.dumps(stats))
    r = subprocess.run([moeserve, "eplb-plan", p, *args], capture_output=True, text=True, timeout=30)
    return r, p

readme = {"num_experts": 12, "n_group": 4, "layers": [3, 4],
          "load": [[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
                   [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]]}
r, _ = plan(readme, "--num-slots", "16", "--ep-size", "8", "--nodes", "2")
check(r.returncode == 0, f"readme example rc {r.returncode}: {r.stderr}")
a = dict((int(m.group(1)), [int(x) for x in m.group(2).split(",")])
         for m in re.finditer(r"^  (\d+): \[([^\]]*)\]$", r.stdout, re.M))
check(a.get(3) == [5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1], f"layer 3: {a.get(3)}")
check(a.get(4) == [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1], f"layer 4: {a.get(4)}")
check(re.search(r"^num_slots: 16$", r.stdout, re.M) and re.search(r"^layer_updates_per_iter: 0$", r.stdout, re.M),
      "num_slots / layer_updates_per_iter lines")

# skew: experts 0 and 5 take most tokens; 64 experts, 96 slots, 8 ranks
load = [[4000 if e in (0, 5) else 50 + e for e in range(64)]]
r, _ = plan({"num_experts": 64, "layers": [1], "load": load}, "--num-slots", "96", "--ep-size", "8", "--out",
            os.path.join(tempfile.mkdtemp(), "lb.yaml"))
check(r.returncode == 0 and r.stdout == "", f"--out rc {r.returncode} stdout {r.stdout!r}")
r, _ = plan({"num_experts": 64, "layers": [1], "load": load}, "--num-slots", "96", "--ep-size", "8")
m = re.search(r"^#   1: ([0-9.]+) -> ([0-9.]+)$", r.stdout, re.M)
check(m and float(m.group(2)) < 0.2 < float(m.group(1)), f"imbalance line {m and m.group(0)}")
slots = [int(x) for x in re.search(r"^  1: \[([^\]]*)\]$", r.stdout, re.M).group(1).split(",")]
check(len(slots) == 96 and sorted(set(slots)) == list(range(64)), "every expert placed")
check(slots.count(0) > 1 and slots.count(5) > 1, "hot experts replicated")

# bad input: one line, exit 2
for stats, args, want in [
    ("{not json", [], "stats.json:1"),
    ({"num_experts": 0, "layers": [0], "load": [[]]}, [], "num_experts"),
    ({"num_experts": 2, "layers": [0], "load": [[1]]}, [], "load[0]"),
    ({"num_experts": 2, "layers": [0], "load": [[1, -3]]}, [], "load[0][1]"),
    (readme, ["--num-slots", "10"], "slots"),
    (readme, ["--num-slots", "abc"], "--num-slots"),
]:
    base = ["--num-slots", "16", "--ep-size", "8"]
    if args and args[0] == "--num-slots":
        base = args + ["--ep-size", "8"]
    r, _ = plan(stats, *base)
    check(r.returncode == 2 and want in r.stderr and r.stderr.count("\n") == 1,
          f"bad input {want}: rc {r.returncode} stderr {r.stderr!r}")

print(f"{len(fails)} failed", file=sys.stderr)
sys.exit(1 if fails else 0)
