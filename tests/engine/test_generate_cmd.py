#!/usr/bin/env python3
"""test_generate_cmd.py — `moeserve generate` as the golden tests call it.

usage: test_generate_cmd.py MKMODEL MOESERVE

- prints the generated ids comma-separated on one line, max-tokens of them
  with --ignore-eos; --dump-logits writes vocab_size little-endian float32
  whose argmax is the first generated id;
- chunked prefill, another KV block size and the default give the same ids
  (the naive path is bit-reproducible);
- bad input exits 2 with a one-line message: unknown option, missing model,
  malformed or out-of-vocabulary prompt ids; a missing model directory exits 1.
"""
import os
import struct
import subprocess
import sys
import tempfile

mk, ms = sys.argv[1], sys.argv[2]
fails = 0


def check(cond, msg):
    global fails
    if not cond:
        fails += 1
        print("FAIL:", msg, file=sys.stderr)


def run(*args):
    return subprocess.run([ms, "generate", *args], capture_output=True, text=True, timeout=120)


with tempfile.TemporaryDirectory() as tmp:
    model = os.path.join(tmp, "m")
    subprocess.run([mk, "--preset", "tiny", "--dtype", "bf16", "--seed", "11", "--out", model], check=True,
                   capture_output=True)
    dump = os.path.join(tmp, "l.bin")
    prompt = "0,15,34,200,7,99,3"
    p = run(model, "--prompt-ids", prompt, "--max-tokens", "12", "--ignore-eos", "--dump-logits", dump)
    check(p.returncode == 0, f"generate exited {p.returncode}: {p.stderr}")
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    check(len(lines) == 1, f"expected one line of ids, got {p.stdout!r}")
    ids = [int(x) for x in lines[0].split(",")]
    check(len(ids) == 12 and all(0 <= i < 512 for i in ids), f"ids {ids}")
    raw = open(dump, "rb").read()
    check(len(raw) == 4 * 512, f"dump has {len(raw)} bytes")
    lg = struct.unpack("<512f", raw)
    check(lg.index(max(lg)) == ids[0], "argmax of the dumped logits is not the first generated id")
    for extra in (["--chunk", "3"], ["--block-size", "5"], ["--chunk", "1", "--block-size", "2"]):
        q = run(model, "--prompt-ids", prompt, "--max-tokens", "12", "--ignore-eos", *extra)
        check(q.returncode == 0 and q.stdout == p.stdout, f"{extra}: {q.stdout!r} vs {p.stdout!r} {q.stderr}")
    a = run(model, "--prompt-ids", prompt, "--max-tokens", "6", "--temperature", "0.8", "--seed", "5", "--ignore-eos")
    b = run(model, "--prompt-ids", prompt, "--max-tokens", "6", "--temperature", "0.8", "--seed", "5", "--ignore-eos",
            "--mla", "auto")
    check(a.returncode == 0 and len(a.stdout.strip().split(",")) == 6, f"sampled run: {a.stdout!r} {a.stderr}")
    check(b.returncode == 0, f"--mla auto: {b.stderr}")
    for bad in (["--prompt-ids", "1,x"], ["--prompt-ids", "1,512"], ["--prompt-ids", "1", "--bogus"],
                ["--prompt-ids", "1", "--max-tokens", "-1"], ["--prompt-ids", ""], ["--mla", "fast", "--prompt-ids", "1"]):
        q = run(model, *bad)
        check(q.returncode == 2 and q.stderr.strip() and q.stdout == "", f"{bad}: exit {q.returncode}, {q.stderr!r}")
    q = run("--prompt-ids", "1")
    check(q.returncode == 2, f"missing model: exit {q.returncode}")
    q = run(os.path.join(tmp, "nope"), "--prompt-ids", "1")
    check(q.returncode == 1 and "nope" in q.stderr, f"missing dir: exit {q.returncode}, {q.stderr!r}")
    h = run("--help")
    check(h.returncode == 0 and "--ignore-eos" in h.stdout + h.stderr, "--help")

print("generate command:", "ok" if not fails else f"{fails} failures")
sys.exit(1 if fails else 0)
