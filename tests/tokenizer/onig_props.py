# onig_props.py — on the GPU host: which code points the Rust tokenizers
# library's regex engine (Oniguruma) puts in \p{L} \p{M} \p{N} \p{P} \p{S} \s.
import json, os, sys, time
import tokenizers
from tokenizers import Regex, pre_tokenizers
t0 = time.time()
cps = [c for c in range(0x110000) if not (0xD800 <= c < 0xE000)]
s = "".join(map(chr, cps))
out = {"tokenizers": tokenizers.__version__}
for name, pat in [("L", r"\p{L}"), ("M", r"\p{M}"), ("N", r"\p{N}"), ("P", r"\p{P}"), ("S", r"\p{S}"), ("s", r"\s"),
                  ("Lu", r"\p{Lu}"), ("letters", r"[\p{L}\p{M}]")]:
    sp = pre_tokenizers.Split(Regex(pat), behavior="isolated", invert=False)
    pieces = sp.pre_tokenize_str(s)
    # isolated: matches are single code points for single-char patterns; a gap is a run.
    # Use removed behavior to find non-matching chars instead.
    rm = pre_tokenizers.Split(Regex(pat), behavior="removed", invert=False).pre_tokenize_str(s)
    keep = set()
    for piece, _ in rm:
        keep.update(ord(ch) for ch in piece)
    match = [c for c in cps if c not in keep]
    ranges, st, pv = [], None, None
    for c in match:
        if st is not None and c == pv + 1:
            pv = c; continue
        if st is not None: ranges.append([st, pv])
        st = pv = c
    if st is not None: ranges.append([st, pv])
    out[name] = ranges
    print(name, len(match), len(ranges), file=sys.stderr)
out["seconds"] = time.time() - t0
json.dump(out, open(os.path.join(os.environ.get("OUT", "."), "onig_props.json"), "w"))
