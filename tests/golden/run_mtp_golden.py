#!/usr/bin/env python3
"""run_mtp_golden.py — moeserve's MTP draft logits against a PyTorch fixture (standard library only).

usage: run_mtp_golden.py FIXTURE.json MKMODEL MOESERVE [--device cpu|cuda|auto] [--moe-compute dequant|fp8|auto]

--moe-compute is passed to generate: on CUDA its auto is the fp8 mode (off transformers' numerics by
design), so a GPU run checks the fixture in the dequant mode.

The fixture comes from tests/reference/mtp_fixtures.py (transformers' modules, the MTP module computed
from its definition). This script regenerates the fixture's checkpoint with moeserve-mkmodel, checks every
file's sha256, then per prompt runs
    MOESERVE generate DIR --prompt-ids IDS --max-tokens 1 --dump-mtp-logits FILE
and asserts the first generated token equals the fixture's (the MTP module's input depends on it) and
max |MTP logit - fixture logit| <= the fixture's tolerance. Exit 0 pass, 1 fail.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_golden import sha_files  # noqa: E402


def main():
    args = sys.argv[1:]
    device = []
    if "--device" in args:
        i = args.index("--device")
        device = ["--device", args[i + 1]]
        del args[i:i + 2]
    if "--moe-compute" in args:
        i = args.index("--moe-compute")
        device += ["--moe-compute", args[i + 1]]
        del args[i:i + 2]
    if len(args) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    fixture, mkmodel, moeserve = args
    fx = json.load(open(fixture))
    name, tol = fx["name"], fx["tolerance"]
    fails = []
    with tempfile.TemporaryDirectory(prefix="ms-mtp-golden-") as tmp:
        d = os.path.join(tmp, "m")
        subprocess.run([mkmodel] + fx["mkmodel_args"] + ["--out", d], check=True, stdout=subprocess.DEVNULL)
        if sha_files(d) != fx["sha256"]:
            print(f"{name}: checkpoint differs from the fixture's; mkmodel changed? Regenerate with "
                  f"tests/reference/mtp_fixtures.py.", file=sys.stderr)
            return 1
        dump = os.path.join(tmp, "mtp.bin")
        for pi, p in enumerate(fx["prompts"]):
            want = p["mtp_logits"]
            cmd = [moeserve, "generate", d, "--prompt-ids", ",".join(map(str, p["ids"])), "--max-tokens", "1",
                   "--dump-mtp-logits", dump] + device
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                fails.append(f"prompt {pi}: {' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()[-1000:]}")
                continue
            tok = int(r.stdout.strip().splitlines()[-1].split(",")[0])
            if tok != p["first_token"]:
                fails.append(f"prompt {pi}: first token {tok}, transformers {p['first_token']} "
                             f"(margin {p['first_margin']:.4g})")
                continue
            raw = open(dump, "rb").read()
            got = struct.unpack("<%df" % (len(raw) // 4), raw)
            if len(got) != len(want):
                fails.append(f"prompt {pi}: {len(got)} logits, fixture {len(want)}")
                continue
            diff = max(abs(a - b) for a, b in zip(got, want))
            arg = max(range(len(got)), key=lambda i: got[i])
            print(f"{name} prompt {pi} (len {len(p['ids'])}): first token {tok} as transformers; MTP max |logit diff| "
                  f"{diff:.4g} (tolerance {tol}); draft {arg}, transformers' {p['mtp_argmax']}")
            if diff > tol:
                fails.append(f"prompt {pi}: MTP max |logit diff| {diff:.4g} > {tol}")
            if arg != p["mtp_argmax"] and p["mtp_margin"] > 2 * tol:
                fails.append(f"prompt {pi}: draft {arg}, transformers {p['mtp_argmax']} (margin {p['mtp_margin']:.4g})")
    for f in fails:
        print(f"FAIL {name}: {f}", file=sys.stderr)
    print(f"{name}: {'FAIL' if fails else 'pass'} ({len(fx['prompts'])} prompts)")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
