"""test_sampling.py — vLLM's sampling controls over HTTP (issue 14 item 3) on
one np2 attention-DP server (each rank keeps its own sequences' penalty
lists), the tiny model with the real tokenizer:
  - logit_bias +100 on one token makes greedy decoding emit only it; -100 on
    the unbiased greedy first token makes the first token another one;
  - frequency + presence penalties with a logit_bias that makes one token
    win until penalized, greedy: at every step the token is the argmax of
    the logprobs of an unpenalized 1-token request on the same context (the
    same bias, top 20) minus frequency * count - presence * seen, counted
    over the tokens generated so far (vLLM's definition; the prompt is not
    counted), and the output differs from the bias alone;
  - repetition_penalty turns away from a biased prompt token;
  - min_p 1 at temperature 1.5 keeps only the most likely token: greedy;
  - n > 1 (issue 14 item 2): choice j of a seeded request is the single
    request with seed + j, indices run prompt-major over list prompts,
    usage counts each prompt once and every completion token; a stream
    interleaves the choices by index, each equal to its non-streamed text;
    best_of 3 returns the choice of highest cumulative logprob of the three
    and counts all their tokens;
  - a bad value is a 400 naming the field; several penalized requests at
    once give each the same text as alone (per-sequence state), and the KV
    pool is empty afterwards.
"""
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Checks, Env, Server, log  # noqa: E402

PROMPT = [0, 15382, 344, 2010, 4404, 33]  # "Where is New York?" with BOS


def main():
    env = Env.from_args()
    model = env.tiny_model()
    c = Checks()

    def gen(srv, **kw):
        body = dict(prompt=PROMPT, max_tokens=8, temperature=0, ignore_eos=True)
        body.update(kw)
        return srv.completion(**body)

    def toks(srv, text):
        st, js = srv.post_json("/tokenize", {"prompt": text, "add_special_tokens": False})
        return js["tokens"]

    def bias(c, srv):
        x = 1234
        js = gen(srv, logit_bias={str(x): 100})
        st, dj = srv.post_json("/detokenize", {"tokens": [x] * 8})
        c.check(js["choices"][0]["text"] == dj["prompt"], "bias +100: %r vs %r" % (js["choices"][0]["text"], dj["prompt"]))
        base = gen(srv, max_tokens=1, logprobs=1)
        first = toks(srv, base["choices"][0]["text"])
        c.check(len(first) == 1, "greedy first token: %r" % first)
        js = gen(srv, max_tokens=1, logprobs=1, logit_bias={str(first[0]): -100})
        c.check(js["choices"][0]["text"] != base["choices"][0]["text"], "bias -100 kept the token: %r" % js)

    def freq_presence(c, srv):
        F, P, N = 1.5, 0.5, 8
        lb = {"1234": 6.0}
        js = gen(srv, max_tokens=N, frequency_penalty=F, presence_penalty=P, logprobs=1, logit_bias=lb)
        got = js["choices"][0]["logprobs"]["tokens"]
        ids = []
        for k in range(N):
            ref = gen(srv, prompt=PROMPT + ids, max_tokens=1, logprobs=20, logit_bias=lb)
            top = ref["choices"][0]["logprobs"]["top_logprobs"][0]  # {token text: raw logprob}
            cnt = {}
            for t in ids:
                cnt[t] = cnt.get(t, 0) + 1
            best, best_v = None, None
            for text, lp in top.items():
                tid = toks(srv, text)
                tid = tid[0] if len(tid) == 1 else None
                n = cnt.get(tid, 0)
                v = lp - F * n - (P if n else 0)
                if best_v is None or v > best_v:
                    best, best_v = text, v
            if not c.check(got[k] == best, "step %d: got %r, reference argmax %r" % (k, got[k], best)):
                return
            t = toks(srv, got[k])
            if not c.check(len(t) == 1, "token text %r does not round-trip" % got[k]):
                return
            ids.append(t[0])
        plain = gen(srv, max_tokens=N, logit_bias=lb)["choices"][0]["text"]
        c.check(js["choices"][0]["text"] != plain, "penalties changed nothing: %r" % plain)
        c.check(len(set(ids)) > 1 and 1234 in ids, "the bias did not win then lose: %r" % ids)
        log("frequency %.1f + presence %.1f: %d greedy tokens match the reference" % (F, P, N))

    def repetition(c, srv):
        lb = {"2010": 6.0}  # a prompt token, made the greedy choice by the bias
        a = gen(srv, max_tokens=4, logit_bias=lb, logprobs=1)["choices"][0]
        b = gen(srv, max_tokens=4, logit_bias=lb, repetition_penalty=3.0)["choices"][0]
        st, dj = srv.post_json("/detokenize", {"tokens": [2010]})
        c.check(a["logprobs"]["tokens"][0] == dj["prompt"], "the bias does not make 2010 greedy: %r" % a)
        c.check(not b["text"].startswith(dj["prompt"]), "repetition_penalty 3 kept the prompt token: %r" % b["text"])

    def min_p(c, srv):
        g = gen(srv, max_tokens=10)["choices"][0]["text"]
        for seed in (1, 2, 3):
            s = gen(srv, max_tokens=10, temperature=1.5, min_p=1.0, seed=seed)["choices"][0]["text"]
            c.check(s == g, "min_p 1, seed %d: %r, greedy %r" % (seed, s, g))
        s = [gen(srv, max_tokens=10, temperature=1.5, seed=seed)["choices"][0]["text"] for seed in (1, 2, 3)]
        c.check(any(x != g for x in s), "temperature 1.5 without min_p is greedy too: the check proves nothing")

    def errors_and_concurrency(c, srv):
        for body, param in (({"presence_penalty": 3}, "presence_penalty"), ({"min_p": -1}, "min_p"),
                            ({"logit_bias": {"-1": 1}}, "logit_bias"), ({"repetition_penalty": 0}, "repetition_penalty")):
            st, js = srv.post_json("/v1/completions", dict(prompt=PROMPT, **body))
            c.check(st == 400 and js["error"]["param"] == param, "%r -> %d %r" % (body, st, js))
        kws = [dict(frequency_penalty=1.0), dict(presence_penalty=-1.0), dict(repetition_penalty=1.5),
               dict(logit_bias={"77": 5}), dict(), dict(min_p=0.5, temperature=1.0, seed=4)]
        alone = [gen(srv, max_tokens=12, **k)["choices"][0]["text"] for k in kws]
        out = [None] * (2 * len(kws))

        def run(i):
            out[i] = gen(srv, max_tokens=12, **kws[i % len(kws)])["choices"][0]["text"]

        th = [threading.Thread(target=run, args=(i,)) for i in range(len(out))]
        for t in th:
            t.start()
        for t in th:
            t.join()
        bad = [i for i in range(len(out)) if out[i] != alone[i % len(kws)]]
        c.check(not bad, "concurrent != alone for %r" % [(kws[i % len(kws)], out[i]) for i in bad])
        used = srv.kv_blocks_used_settled()
        c.check(used == 0, "KV blocks used at the end: %r" % used)

    def n_best_of(c, srv):
        one = lambda seed, **kw: gen(srv, max_tokens=6, temperature=1.0, seed=seed, **kw)["choices"][0]["text"]
        js = gen(srv, max_tokens=6, temperature=1.0, seed=7, n=3)
        ch = js["choices"]
        c.check([x["index"] for x in ch] == [0, 1, 2], "indices %r" % [x["index"] for x in ch])
        c.check([x["text"] for x in ch] == [one(7 + j) for j in range(3)], "choices vs seed + j: %r" % ch)
        c.check(js["usage"]["prompt_tokens"] == len(PROMPT) and js["usage"]["completion_tokens"] == 18,
                "usage %r" % js["usage"])
        B = [0, 15382, 344]
        js = gen(srv, prompt=[PROMPT, B], max_tokens=6, temperature=1.0, seed=3, n=2)
        ch = js["choices"]
        c.check([x["index"] for x in ch] == [0, 1, 2, 3], "list indices %r" % [x["index"] for x in ch])
        c.check(ch[2]["text"] == gen(srv, prompt=B, max_tokens=6, temperature=1.0, seed=3)["choices"][0]["text"],
                "choice 2 is not prompt B's first: %r" % ch)
        c.check(js["usage"]["prompt_tokens"] == len(PROMPT) + len(B), "list usage %r" % js["usage"])
        ev = srv.stream("/v1/completions", dict(prompt=PROMPT, max_tokens=6, temperature=1.0, seed=7, n=3,
                                                ignore_eos=True))
        texts, seen = {}, []
        for e in ev:
            if e == "[DONE]" or not e["choices"]:
                continue
            for x in e["choices"]:
                texts[x["index"]] = texts.get(x["index"], "") + x["text"]
                seen.append(x["index"])
        c.check([texts.get(j) for j in range(3)] == [one(7 + j) for j in range(3)], "streamed n=3: %r" % texts)
        c.check(len(set(seen)) == 3, "stream indices %r" % seen)
        for seed in range(5, 25, 3):  # until the best is not the first choice (else the check proves little)
            js = gen(srv, max_tokens=6, temperature=1.0, seed=seed, n=1, best_of=3)
            cands = [gen(srv, max_tokens=6, temperature=1.0, seed=seed + j, logprobs=0)["choices"][0] for j in range(3)]
            cum = [sum(x["logprobs"]["token_logprobs"]) for x in cands]
            best = max(range(3), key=lambda j: (cum[j], -j))
            c.check(len(js["choices"]) == 1 and js["choices"][0]["text"] == cands[best]["text"],
                    "best_of 3 -> %r; candidates %r with %r" % (js["choices"], [x["text"] for x in cands], cum))
            c.check(js["usage"]["completion_tokens"] == 18, "best_of usage %r" % js["usage"])
            if best != 0:
                break
        c.check(best != 0, "no seed made a later choice the best")
        log("n=3, list prompts x n=2, streamed n=3, best_of 3: cumulative logprobs %r" % cum)

    srv = Server(env, model, np=2, args=["--tp_size", "2", "--ep_size", "2"], yaml_extra="enable_attention_dp: true")
    c.run_on_server(srv, [("logit_bias", bias), ("frequency_presence", freq_presence), ("repetition", repetition),
                          ("min_p", min_p), ("n_best_of", n_best_of), ("errors_concurrency", errors_and_concurrency)])
    c.done()


if __name__ == "__main__":
    main()
