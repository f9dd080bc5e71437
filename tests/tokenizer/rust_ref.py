# rust_ref.py — run on the GPU host (no internet): the Rust `tokenizers`
# library over the corpus, plus its single-threaded encode throughput.
import hashlib, json, os, sys, time
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import tokenizers
from tokenizers import Tokenizer
d = os.path.dirname(os.path.abspath(__file__))
out = os.environ.get("OUT", d)
tk = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
info = {"tokenizers": tokenizers.__version__, "python": sys.version.split()[0]}
try:
    import platform; info["cpu"] = platform.processor() or open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0]
except Exception as e:
    info["cpu"] = str(e)
lines = [json.loads(l) for l in open(os.path.join(d, "corpus.jsonl"), encoding="utf-8")]
ids = [tk.encode(s, add_special_tokens=False).ids for s in lines]
with open(os.path.join(out, "rust_ids.jsonl"), "w") as f:
    for x in ids: f.write(json.dumps(x) + "\n")
info["ex"] = tk.encode("Where is New York?", add_special_tokens=True).ids
rt = [i for i, (s, x) in enumerate(zip(lines, ids)) if tk.decode(x, skip_special_tokens=False) != s]
info["roundtrip_fail"] = rt[:50]
# lossy decode probes: byte tokens forming broken UTF-8, unknown ids, skip_special
v = tk.get_vocab()
probes = {"e4": [v["ä"]], "e4_a": [v["ä"], v["a"]], "e4b8_a": [v["ä"], v["¸"], v["a"]],
          "ff_a": [v["ÿ"], v["a"]], "f0_9f": [v["ð"], v["Ł"]], "c0_80": [v["À"], v["Ģ"]],
          "ed_a0_80": [v["í"], v["ł"], v["Ģ"]], "unknown_id": [v["a"], 129000, v["b"]],
          "special": [0, v["a"], 1, 128803]}
info["probes"] = {k: tk.decode(p, skip_special_tokens=False) for k, p in probes.items()}
info["probes_skip"] = {k: tk.decode(p, skip_special_tokens=True) for k, p in probes.items()}
info["probe_ids"] = probes
# throughput: encode_batch with one rayon thread, and a per-line loop
bl = [json.loads(l) for l in open(os.path.join(d, "bench.jsonl"), encoding="utf-8")]
nbytes = sum(len(s.encode("utf-8")) for s in bl)
res = []
for p in range(2):
    t = time.perf_counter(); enc = tk.encode_batch(bl, add_special_tokens=False); s = time.perf_counter() - t
    res.append({"impl": "rust-encode_batch-1thread", "pass": p + 1, "bytes": nbytes, "tokens": sum(len(e.ids) for e in enc), "seconds": s, "mb_per_s": nbytes / 1e6 / s})
    t = time.perf_counter(); n = 0
    for x in bl: n += len(tk.encode(x, add_special_tokens=False).ids)
    s = time.perf_counter() - t
    res.append({"impl": "rust-encode-loop", "pass": p + 1, "bytes": nbytes, "tokens": n, "seconds": s, "mb_per_s": nbytes / 1e6 / s})
info["bench"] = res
# the bench corpus ids' digest, to check ours on the same text
h = hashlib.sha256()
for e in enc: h.update(json.dumps(e.ids).encode() + b"\n")
info["bench_ids_sha256"] = h.hexdigest()
json.dump(info, open(os.path.join(out, "rust_info.json"), "w"), indent=1, ensure_ascii=False)
print(json.dumps(info, ensure_ascii=False)[:3000])
