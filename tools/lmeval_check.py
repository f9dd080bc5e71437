#!/usr/bin/env python3
"""lmeval_check.py — lm-evaluation-harness's `local-completions` request shapes against a running moeserve,
scored with lm-eval's own parsing rule and checked against the CPU reference.

Standard library only: lm-eval itself needs datasets/torch (and aiohttp/requests), which this project does
not install. What follows reimplements, from reading lm-eval's source (EleutherAI/lm-evaluation-harness,
lm_eval/models/openai_completions.py, lm_eval/models/api_models.py, lm_eval/api/model.py, lm_eval/utils.py),
exactly the parts that decide what goes over the wire and how the answer is scored; each function names
the one it mirrors. The model runs with lm-eval's defaults for a server that has /tokenizer_info and
/tokenize (`tokenizer_backend=auto` picks "remote"): tokenized_requests=True (prompts go as token-id
lists), add_bos_token=False (lm-eval adds no BOS; an empty context becomes the prefix token, BOS),
seed 1234, temperature 0.

The reference: the logprob of token t after prefix P is log_softmax of `moeserve generate --prompt-ids P
--dump-logits` (the single-process engine, naive MLA: what a server's prefill computes) at t, in double.

  python3 tools/lmeval_check.py --url http://127.0.0.1:8000 --moeserve build/moeserve --model-dir DIR \\
      [--max-length 40] [--batch-size 4] [--tol 2e-3]

prints one line per check and exits 1 if any failed. tests/integration/test_prompt_lp.py runs it
(check_all) on its servers.
"""
import argparse
import http.client
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import urllib.parse

SEED = 1234  # lm-eval's default seed in every payload


class Reference:
    """log_softmax rows of the single-process engine, one `generate --dump-logits` run per prefix (cached)."""

    def __init__(self, moeserve, model_dir, workdir=None):
        self.moeserve, self.model_dir = moeserve, model_dir
        self.workdir = workdir or tempfile.mkdtemp(prefix="lmeval-ref-")
        self.cache = {}

    def row(self, prefix):
        key = tuple(prefix)
        if key not in self.cache:
            dump = os.path.join(self.workdir, "logits-%d.bin" % os.getpid())
            r = subprocess.run([self.moeserve, "generate", self.model_dir, "--prompt-ids", ",".join(map(str, prefix)),
                                "--max-tokens", "1", "--mla", "naive", "--device", "cpu", "--dump-logits", dump],
                               capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                raise RuntimeError("generate --dump-logits failed: " + r.stderr[-2000:])
            with open(dump, "rb") as f:
                raw = f.read()
            lg = struct.unpack("<%df" % (len(raw) // 4), raw)
            m = max(lg)
            lse = m + math.log(sum(math.exp(x - m) for x in lg))
            self.cache[key] = [x - lse for x in lg]
        return self.cache[key]

    def logprob(self, prefix, token):
        return self.row(prefix)[token]

    def greedy(self, prefix):
        row = self.row(prefix)
        return max(range(len(row)), key=row.__getitem__)

    def score(self, inp, ctxlen):
        """(sum of logprobs of inp[ctxlen:], all of them greedy): what lm-eval computes, from the reference."""
        total, greedy = 0.0, True
        for p in range(ctxlen, len(inp)):
            total += self.logprob(inp[:p], inp[p])
            greedy = greedy and self.greedy(inp[:p]) == inp[p]
        return total, greedy


class Client:
    """The three endpoints lm-eval uses: POST /v1/completions, GET /tokenizer_info, POST /tokenize."""

    def __init__(self, url, timeout=300):
        u = urllib.parse.urlparse(url)
        self.host, self.port, self.timeout = u.hostname, u.port or 80, timeout

    def call(self, method, path, body=None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body),
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            if r.status != 200:
                raise RuntimeError("%s %s -> %d %s" % (method, path, r.status, data[:500]))
            return json.loads(data)
        finally:
            conn.close()

    # lm_eval/utils.py RemoteTokenizer.encode: {"prompt": text, "add_special_tokens": false} -> "tokens"
    def encode(self, text):
        return self.call("POST", "/tokenize", {"prompt": text, "add_special_tokens": False})["tokens"]


class LocalCompletions:
    """lm-eval's LocalCompletionsAPI (tokenized_requests=True, remote tokenizer), the parts that matter."""

    def __init__(self, client, model, max_length=2048, batch_size=1):
        self.c, self.model, self.batch_size = client, model, batch_size
        # api_models.py TemplateAPI.__init__: "max_length - 1 as we always have 1 token for generation"
        self.max_length = max_length - 1
        info = client.call("GET", "/tokenizer_info")
        # utils.py RemoteTokenizer.bos_token_id / eos_token: encode(bos_token)[0]; eos_token as text
        self.bos_id = client.encode(info["bos_token"])[0] if info.get("bos_token") else None
        self.eos_string = info.get("eos_token")
        self.eos_id = client.encode(self.eos_string)[0] if self.eos_string else None
        # api_models.py prefix_token_id (remote): bos_token_id or eos_token_id
        self.prefix_token_id = self.bos_id if self.bos_id is not None else self.eos_id

    # openai_completions.py LocalCompletionsAPI._create_payload
    def payload(self, messages, generate=False, gen_kwargs=None):
        if generate:
            gk = dict(gen_kwargs or {})
            gk.pop("do_sample", False)
            max_tokens = gk.pop("max_tokens") if "max_tokens" in gk else gk.pop("max_gen_toks", 256)
            temperature = gk.pop("temperature", 0)
            stop = handle_stop_sequences(gk.pop("until", None), self.eos_string)
            return dict({"prompt": messages, "model": self.model, "max_tokens": max_tokens,
                         "temperature": temperature, "stop": stop, "seed": SEED}, **gk)
        return {"model": self.model, "prompt": messages, "temperature": 0, "max_tokens": 1, "logprobs": 1,
                "seed": SEED, "echo": True}

    # api_models.py TemplateAPI.tok_encode (remote backend, no BOS) and api/model.py TemplateLM._encode_pair
    def encode_pair(self, context, continuation):
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces > 0:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self.c.encode(context + continuation)
        ctx = self.c.encode(context)
        return ctx, whole[len(ctx):]

    # api/model.py TemplateLM.loglikelihood: an empty context is the prefix token
    def encode_request(self, context, continuation):
        if context == "":
            cont = self.c.encode(continuation)
            if self.prefix_token_id != cont[0]:
                return [self.prefix_token_id], cont
            return cont[:1], cont[1:]
        return self.encode_pair(context, continuation)

    # api_models.py TemplateAPI.batch_loglikelihood_requests: left-truncate to max_length, ctxlen follows
    def batch_inputs(self, pairs):
        inputs, ctxlens = [], []
        for ctx, cont in pairs:
            inputs.append((ctx + cont)[-self.max_length:])
            ctxlens.append(len(ctx) - max(0, len(ctx) + len(cont) - self.max_length))
        return inputs, ctxlens

    # api_models.py TemplateAPI._loglikelihood_tokens (batches of batch_size, one POST each) with
    # openai_completions.py LocalCompletionsAPI.parse_logprobs
    def loglikelihood_tokens(self, pairs):
        """[((sum, is_greedy), input ids, ctxlen)] per pair, in order."""
        out = []
        for b in range(0, len(pairs), self.batch_size):
            inputs, ctxlens = self.batch_inputs(pairs[b:b + self.batch_size])
            resp = self.c.call("POST", "/v1/completions", self.payload(inputs, generate=False))
            out.extend(zip(parse_logprobs(resp, ctxlens), inputs, ctxlens))
        return out

    # api_models.py TemplateAPI.loglikelihood_rolling with utils.get_rolling_token_windows / make_disjoint_window
    def rolling_windows(self, text):
        return [make_disjoint_window(w) for w in
                get_rolling_token_windows(self.c.encode(text), self.prefix_token_id, self.max_length - 1, 1)]

    # api_models.py TemplateAPI.generate_until (tokenized_requests: the prompts go as token-id lists) and
    # openai_completions.py parse_generations (choices ordered by index)
    def generate_until(self, contexts, gen_kwargs):
        enc = [self.c.encode(x) for x in contexts]
        resp = self.c.call("POST", "/v1/completions", self.payload(enc, generate=True, gen_kwargs=gen_kwargs))
        texts = [None] * len(resp["choices"])
        for ch in resp["choices"]:
            texts[ch["index"]] = ch["text"]
        return enc, texts


def handle_stop_sequences(until, eos):
    """models/utils.py handle_stop_sequences: a list of stops that includes the EOS string."""
    until = [until] if isinstance(until, str) else list(until or [])
    if eos is not None and eos not in until:
        until.append(eos)
    return until


def parse_logprobs(resp, ctxlens):
    """openai_completions.py LocalCompletionsAPI.parse_logprobs: per choice (by index), the sum of
    token_logprobs[ctxlen:-1] (the continuation; the last entry is the one generated token) and whether each
    of those equals the max of its top_logprobs."""
    res = []
    for choice, ctxlen in zip(sorted(resp["choices"], key=lambda c: c["index"]), ctxlens):
        assert ctxlen > 0, "Context length must be greater than 0"
        lps = choice["logprobs"]["token_logprobs"][ctxlen:-1]
        tops = choice["logprobs"]["top_logprobs"][ctxlen:-1]
        greedy = all(tok == max(top.values()) for tok, top in zip(lps, tops))
        res.append((sum(lps), greedy))
    return res


def get_rolling_token_windows(token_list, prefix_token, max_seq_len, context_len):
    """utils.py get_rolling_token_windows: (input, predicted) windows covering every token once."""
    assert 1 <= context_len <= max_seq_len
    if not token_list:
        return
    pred_len = max_seq_len - context_len + 1
    first = min(max_seq_len, len(token_list))
    yield [prefix_token] + token_list[:first - 1], token_list[:first]
    predicted = first
    while predicted < len(token_list):
        n = min(len(token_list) - predicted, pred_len)
        end = predicted + n
        yield token_list[end - max_seq_len - 1:end - 1], token_list[end - n:end]
        predicted += n


def make_disjoint_window(pair):
    """utils.py make_disjoint_window: the context without the tokens it shares with the prediction."""
    a, b = pair
    return a[:len(a) - (len(b) - 1)], b


# ---- the checks --------------------------------------------------------------------------------------------

LL_PAIRS = [  # (context, continuation) as a multiple-choice task sends them: answers share a context
    ("Question: What is the capital of France?\nAnswer:", " Paris"),
    ("Question: What is the capital of France?\nAnswer:", " London"),
    ("The quick brown fox jumps over the ", "lazy dog"),  # trailing space moves to the continuation
    ("", "Hello world"),                                 # empty context: the prefix token (BOS)
    ("1, 2, 3, 4,", " 5, 6"),
]
ROLLING_TEXT = ("It was the best of times, it was the worst of times, it was the age of wisdom, it was the age "
                "of foolishness, it was the epoch of belief, it was the epoch of incredulity.")
GEN_CONTEXTS = ["Question: 2 + 2 =", "Once upon a time"]


def check_all(url, model, ref, max_length=40, batch_size=4, tol=2e-3, report=print):
    """Run generate_until, loglikelihood and loglikelihood_rolling as lm-eval sends them; returns the
    number of failed checks. tol: per-token logprob tolerance against the reference."""
    c = Client(url)
    lm = LocalCompletions(c, model, max_length=max_length, batch_size=batch_size)
    failed = 0

    def check(ok, msg):
        nonlocal failed
        failed += 0 if ok else 1
        report(("ok   " if ok else "FAIL ") + msg)

    check(lm.prefix_token_id == ref_bos(ref), "prefix token (BOS from /tokenizer_info) is %r" % lm.prefix_token_id)

    # loglikelihood: batches of batch_size token-id prompts, echo + logprobs 1 + max_tokens 1
    pairs = [lm.encode_request(x, y) for x, y in LL_PAIRS]
    for i, ((got_sum, got_greedy), inp, ctxlen) in enumerate(lm.loglikelihood_tokens(pairs)):
        want_sum, want_greedy = ref.score(inp, ctxlen)
        n = len(inp) - ctxlen
        check(abs(got_sum - want_sum) <= tol * n and got_greedy == want_greedy,
              "loglikelihood %r: (%.6f, %s), reference (%.6f, %s) over %d tokens" %
              (LL_PAIRS[i], got_sum, got_greedy, want_sum, want_greedy, n))

    # a continuation that is the model's own greedy one: is_greedy must come back true, which needs each
    # token's top_logprobs maximum to be exactly its token_logprobs value
    ctx = lm.c.encode("Once upon a time")
    cont = []
    for _ in range(3):
        cont.append(ref.greedy(ctx + cont))
    (got_sum, got_greedy), inp, ctxlen = lm.loglikelihood_tokens([(ctx, cont)])[0]
    want_sum, want_greedy = ref.score(inp, ctxlen)
    check(want_greedy and got_greedy and abs(got_sum - want_sum) <= tol * len(cont),
          "loglikelihood of the greedy continuation %r: (%.6f, %s), reference (%.6f, %s)" %
          (cont, got_sum, got_greedy, want_sum, want_greedy))

    # loglikelihood_rolling: windows of max_length - 2 predicted tokens; the string's score is their sum
    windows = lm.rolling_windows(ROLLING_TEXT)
    got = lm.loglikelihood_tokens(windows)
    got_total = sum(g[0][0] for g in got)
    want_total = sum(ref.score(inp, cl)[0] for _, inp, cl in got)
    n_tok = sum(len(inp) - cl for _, inp, cl in got)
    check(len(windows) >= 2, "loglikelihood_rolling: %d windows of max_length %d" % (len(windows), max_length))
    check(abs(got_total - want_total) <= tol * n_tok,
          "loglikelihood_rolling: %.6f, reference %.6f over %d tokens" % (got_total, want_total, n_tok))

    # generate_until: greedy continuation, stop strings include EOS; the reference continues greedily too
    gk = {"until": ["\n\n"], "max_gen_toks": 8, "do_sample": False}
    enc, texts = lm.generate_until(GEN_CONTEXTS, gk)
    for ids, text in zip(enc, texts):
        cont = []
        for _ in range(8):
            t = ref.greedy(ids + cont)
            if t == lm.eos_id:
                break
            cont.append(t)
        want = c.call("POST", "/detokenize", {"tokens": cont})["prompt"].split("\n\n")[0]
        check(text == want, "generate_until %r: %r, reference %r" % (ids[:4], text, want))
    return failed


def ref_bos(ref):
    """The checkpoint's BOS id (tokenizer_config / config.json), for the prefix-token check."""
    with open(os.path.join(ref.model_dir, "config.json")) as f:
        return json.load(f).get("bos_token_id")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--moeserve", required=True)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--model", help="the served model name (default: the model dir)")
    ap.add_argument("--max-length", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--tol", type=float, default=2e-3)
    a = ap.parse_args()
    ref = Reference(a.moeserve, a.model_dir)
    failed = check_all(a.url, a.model or a.model_dir, ref, a.max_length, a.batch_size, a.tol)
    print("%d failed" % failed)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
