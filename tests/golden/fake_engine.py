#!/usr/bin/env python3
"""fake_engine.py — stands in for `moeserve generate` to test run_golden.py
itself (suite unit): answers from a fixture, optionally perturbed.

  fake_engine.py generate DIR --prompt-ids IDS --max-tokens N --dump-logits FILE
env: MS_FAKE_FIXTURE=fixture.json
     MS_FAKE_MODE=exact | logit_off (one logit off by 0.05) | token_off (last token changed)
                  | stop_eos (stops after the first token as if it were EOS)
"""
import json
import os
import struct
import sys


def main():
    a = sys.argv[1:]
    if "--help" in a:
        print("fake_engine: generate DIR --prompt-ids IDS --max-tokens N --dump-logits FILE")
        return 0
    ids = [int(x) for x in a[a.index("--prompt-ids") + 1].split(",")]
    n = int(a[a.index("--max-tokens") + 1])
    dump = a[a.index("--dump-logits") + 1]
    fx = json.load(open(os.environ["MS_FAKE_FIXTURE"]))
    mode = os.environ.get("MS_FAKE_MODE", "exact")
    V = fx["vocab_size"]
    for p, toks, logits in zip(fx["prompts"], fx["greedy"], fx["logits"]):
        if ids == p:
            out_logits, out_toks = list(logits), list(toks[:n])
            break
        if ids[:len(p)] == p and ids[len(p):] == toks[:len(ids) - len(p)]:
            k = len(ids) - len(p)  # teacher-forced on the fixture's prefix: put token k on top
            out_logits = [0.0] * V
            out_logits[toks[k]] = 5.0
            out_toks = [toks[k]]
            break
    else:
        print("fake_engine: unknown prompt", file=sys.stderr)
        return 1
    if mode == "logit_off":
        out_logits[7] += 0.05
    elif mode == "token_off":
        out_toks[-1] = (out_toks[-1] + 1) % V
    elif mode == "stop_eos":
        out_toks = out_toks[:1]
        fx_eos = fx["eos_token_id"]
        if out_toks[0] != fx_eos:
            out_toks = out_toks + [fx_eos]  # wrong: EOS where transformers had another token
    with open(dump, "wb") as f:
        f.write(struct.pack("<%df" % V, *out_logits))
    print(",".join(map(str, out_toks)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
