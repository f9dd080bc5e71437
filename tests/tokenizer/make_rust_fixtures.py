#!/usr/bin/env python3
"""make_rust_fixtures.py — turn the GPU host's Rust output (rust_ids.jsonl and
rust_info.json from rust_ref.py) into the committed fixtures:
rust_digests.txt (one digest per corpus line) and rust_js_diffs.jsonl (full
ids where the JavaScript port disagrees with Rust).

    python3 tests/tokenizer/make_rust_fixtures.py RUST_IDS.jsonl RUST_INFO.json JS_IDS.jsonl
(JS_IDS: `node tests/tokenizer/ref_encode.js MODEL_DIR --no-special < corpus.jsonl`)
"""
import hashlib
import json
import os
import sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
fix = os.path.join(root, "tests", "fixtures", "tokenizer")
corpus_text = open(os.path.join(fix, "corpus.jsonl"), encoding="utf-8").read()
texts = [json.loads(l) for l in corpus_text.split("\n") if l]
rust = [json.loads(l) for l in open(sys.argv[1])]
info = json.load(open(sys.argv[2]))
js = [json.loads(l) for l in open(sys.argv[3])]
assert len(rust) == len(texts) == len(js)
with open(os.path.join(fix, "rust_digests.txt"), "w") as f:
    f.write("# corpus sha256 %s; Rust tokenizers %s; sha1(compact JSON ids)[:16], add_special_tokens=False\n" % (
        hashlib.sha256(corpus_text.encode("utf-8")).hexdigest(), info["tokenizers"]))
    for ids in rust:
        f.write(hashlib.sha1(json.dumps(ids, separators=(",", ":")).encode()).hexdigest()[:16] + "\n")
with open(os.path.join(fix, "rust_js_diffs.jsonl"), "w", encoding="utf-8") as f:
    for i, (t, r, j) in enumerate(zip(texts, rust, js)):
        if r != j:
            f.write(json.dumps({"line": i, "text": t, "rust": r, "js": j}, ensure_ascii=False) + "\n")
print("%d lines, %d JS-vs-Rust disagreements" % (len(texts), sum(r != j for r, j in zip(rust, js))))
