#!/usr/bin/env python3
"""run_golden.py — moeserve against a transformers fixture (standard library only).

usage: run_golden.py FIXTURE.json MKMODEL MOESERVE [--greedy-rule strict|teacher-forced] [--device cpu|cuda|auto]

1. Regenerates the fixture's checkpoint(s) with moeserve-mkmodel (the
   fixture's own arguments) into a temp dir and checks every file's sha256
   against the fixture — so the numbers below compare like with like.
2. For each prompt runs
       MOESERVE generate DIR --prompt-ids IDS --max-tokens 32 --dump-logits FILE
   (ids printed comma-separated on one line; FILE = last prompt position's
   logits, little-endian float32 x vocab_size) and asserts
     - max |logit - fixture logit| <= TOLERANCE (2e-2, from the fixture), and
     - greedy tokens identical to the fixture's 32 ("strict"). If the engine
       stops at EOS, its tokens must be the fixture's up to and including
       that EOS (`--ignore-eos` is passed when `generate --help` lists it).
   On a token mismatch it re-runs the engine teacher-forced on the fixture's
   prefix and prints both margins at the divergent step, so a failure shows
   whether the reference itself was a near-tie there (the fixture records
   the top-1/top-2 margin of every greedy step).

--greedy-rule teacher-forced (not the default; say so when you use it):
   instead of one 32-token run, check each step k on its own: the engine,
   prefilled with prompt + fixture tokens[:k], must pick fixture token k
   wherever the fixture's margin at k exceeds 2 x TOLERANCE (below that the
   tolerance allows either token). This is what the logit tolerance implies;
   it does not cascade one near-tie into 30 mismatches.

For the FP8 fixture the engine runs on the FP8 checkpoint (the fixture's
numbers come from transformers on the dequantized BF16 twin); the engine is
also run on the twin and both results are reported.

--device NAME passes `--device NAME` to every `generate` (the kernels
backend: cpu, cuda, or auto = CUDA when built with it and a GPU is visible);
without it generate picks (auto). The tolerance is the fixture's on every
backend.

Exit 0 pass, 1 fail, 77 skip (never: a missing engine is a failure).
"""
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile
import time


def sha_files(d):
    out = {}
    for f in sorted(os.listdir(d)):
        p = os.path.join(d, f)
        if os.path.isfile(p):
            out[f] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


_IGNORE_EOS = None


def ignore_eos_flag(moeserve):
    """['--ignore-eos'] when `generate --help` offers it: the fixtures' greedy runs do not stop at EOS."""
    global _IGNORE_EOS
    if _IGNORE_EOS is None:
        try:
            p = subprocess.run([moeserve, "generate", "--help"], capture_output=True, text=True, timeout=30)
            _IGNORE_EOS = ["--ignore-eos"] if "--ignore-eos" in p.stdout + p.stderr else []
        except Exception:
            _IGNORE_EOS = []
    return _IGNORE_EOS


DEVICE = []  # ["--device", NAME] when --device was given


def engine(moeserve, model, ids, max_tokens, vocab, tmp):
    dump = os.path.join(tmp, "logits.bin")
    if os.path.exists(dump):
        os.unlink(dump)
    cmd = [moeserve, "generate", model, "--prompt-ids", ",".join(map(str, ids)), "--max-tokens", str(max_tokens),
           "--dump-logits", dump] + ignore_eos_flag(moeserve) + DEVICE
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()[-2000:]}")
    lines = [ln for ln in p.stdout.strip().splitlines() if ln.strip()]
    if not lines:
        raise RuntimeError(f"{' '.join(cmd)} printed no token ids")
    toks = [int(x) for x in lines[-1].replace(" ", "").split(",") if x]
    raw = open(dump, "rb").read()
    if len(raw) != 4 * vocab:
        raise RuntimeError(f"{dump}: {len(raw)} bytes, expected {4 * vocab} (vocab_size float32)")
    return toks, list(struct.unpack("<%df" % vocab, raw))


def margin_of(logits, a, b):
    return logits[a] - logits[b]


def top2(v):
    best = max(range(len(v)), key=lambda i: (v[i], -i))
    second = max((i for i in range(len(v)) if i != best), key=lambda i: (v[i], -i))
    return best, second


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--greedy-rule")]
    rule = "strict"
    for a in sys.argv[1:]:
        if a.startswith("--greedy-rule="):
            rule = a.split("=", 1)[1]
    if "--greedy-rule" in sys.argv:
        rule = sys.argv[sys.argv.index("--greedy-rule") + 1]
        args = [a for a in args if a != rule]
    if "--device" in args:
        i = args.index("--device")
        if i + 1 >= len(args) or args[i + 1] not in ("cpu", "cuda", "auto"):
            print("run_golden.py: --device needs cpu, cuda or auto", file=sys.stderr)
            return 2
        DEVICE[:] = ["--device", args[i + 1]]
        del args[i:i + 2]
    if len(args) != 3 or rule not in ("strict", "teacher-forced"):
        print(__doc__, file=sys.stderr)
        return 2
    fixture_path, mkmodel, moeserve = args
    fx = json.load(open(fixture_path))
    tol = fx["tolerance"]["max_abs_logit_diff"]
    vocab, eos, n_gen = fx["vocab_size"], fx["eos_token_id"], len(fx["greedy"][0])
    name = fx["name"]
    fails = []

    with tempfile.TemporaryDirectory(prefix="ms-golden-") as tmp:
        eng_dir, ref_dir = os.path.join(tmp, "engine"), os.path.join(tmp, "reference")
        cmd = [mkmodel] + fx["mkmodel_args"] + ["--out", eng_dir]
        if fx["dequant_twin"]:
            cmd += ["--dequant-twin", ref_dir]
        subprocess.run(cmd, check=True)
        for d, key in [(eng_dir, "engine_checkpoint")] + ([(ref_dir, "reference_checkpoint")] if fx["dequant_twin"] else []):
            got = sha_files(d)
            if got != fx[key]:
                bad = sorted(set(got) ^ set(fx[key]) | {f for f in got if got[f] != fx[key].get(f)})
                print(f"{name}: {key} differs from the fixture's (files {bad}); mkmodel changed? "
                      f"Regenerate the fixtures with tests/reference/make_fixtures.py.", file=sys.stderr)
                return 1
        print(f"{name}: checkpoint sha256 match ({len(fx['engine_checkpoint'])} files)")

        models = [("engine", eng_dir)] + ([("engine on bf16 twin", ref_dir)] if fx["dequant_twin"] else [])
        for label, model in models:
            worst = 0.0
            t0 = time.time()
            for pi, (ids, want_toks, want_logits, margins) in enumerate(
                    zip(fx["prompts"], fx["greedy"], fx["logits"], fx["greedy_margins"])):
                try:
                    toks, logits = engine(moeserve, model, ids, n_gen, vocab, tmp)
                except Exception as e:
                    fails.append(f"{label}: prompt {pi}: {e}")
                    print(f"FAIL {label}: prompt {pi}: {e}", file=sys.stderr)
                    continue
                d = max(abs(a - b) for a, b in zip(logits, want_logits))
                worst = max(worst, d)
                argd = max(range(vocab), key=lambda i: abs(logits[i] - want_logits[i]))
                print(f"{name} [{label}] prompt {pi} (len {len(ids)}): max |logit diff| {d:.4g} at id {argd} "
                      f"(engine {logits[argd]:.6g}, transformers {want_logits[argd]:.6g})")
                if d > tol:
                    fails.append(f"{label}: prompt {pi}: max |logit diff| {d:.4g} > {tol}")

                if rule == "strict":
                    want = want_toks
                    if len(toks) < len(want) and toks and toks[-1] == eos:
                        want = want[:len(toks)]  # the engine stopped at EOS; the fixture ignores EOS
                    if toks != want:
                        k = next((i for i in range(min(len(toks), len(want))) if toks[i] != want[i]),
                                 min(len(toks), len(want)))
                        msg = (f"{label}: prompt {pi}: greedy tokens differ at step {k} of {len(want)}: "
                               f"engine {toks[k] if k < len(toks) else 'ended'}, transformers "
                               f"{want[k] if k < len(want) else 'ended'}")
                        if k < len(want) and k < len(toks):
                            msg += f"; transformers' top-1/top-2 margin there {margins[k]:.4g}"
                            try:
                                _, lf = engine(moeserve, model, ids + want_toks[:k], 1, vocab, tmp)
                                msg += (f", engine's logit(engine token) - logit(transformers token) "
                                        f"teacher-forced {margin_of(lf, toks[k], want[k]):.4g}")
                            except Exception as e:
                                msg += f" (teacher-forced rerun failed: {e})"
                        fails.append(msg)
                        print("FAIL " + msg, file=sys.stderr)
                    else:
                        print(f"{name} [{label}] prompt {pi}: {len(toks)} greedy tokens identical")
                else:
                    checked = 0
                    for k in range(n_gen):
                        if margins[k] <= 2 * tol:
                            continue
                        checked += 1
                        _, lf = engine(moeserve, model, ids + want_toks[:k], 1, vocab, tmp)
                        b, _ = top2(lf)
                        if b != want_toks[k]:
                            fails.append(f"{label}: prompt {pi}: teacher-forced step {k}: engine {b}, transformers "
                                         f"{want_toks[k]} (transformers margin {margins[k]:.4g} > 2 x tolerance)")
                    print(f"{name} [{label}] prompt {pi}: teacher-forced greedy, {checked}/{n_gen} steps above "
                          f"the near-tie margin {2 * tol:g} checked")
            print(f"{name} [{label}]: max |logit diff| over prompts {worst:.4g} (tolerance {tol}); "
                  f"{time.time() - t0:.1f}s")

    for f in fails:
        print(f"FAIL {name}: {f}", file=sys.stderr)
    print(f"{name}: {'FAILED' if fails else 'passed'} (greedy rule {rule}; device {DEVICE[1] if DEVICE else 'generate default (auto)'})")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
