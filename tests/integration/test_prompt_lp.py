"""test_prompt_lp.py — prompt logprobs (issue 14 item 1) on one server per layout (np1, np2-tp, np2-dp, and
np1 / np2-dp with MTP speculative decoding on: the same answers, the drafts change nothing).

The reference for every prompt position p: log_softmax of `moeserve generate --prompt-ids P[:p]
--dump-logits` (the single-process engine) at P[p], in double (tools/lmeval_check.py Reference).

Tolerance TOL = 1e-4 per token on CPU ranks: server and reference run the same CPU kernels on the same bf16
weights, and every layout here (np1, TP 2, attention DP 2 with EP 2) and every chunking reproduces the
reference's lm_head rows; what is left is the float32 log_softmax's summation order, measured at <= 5e-7
(the log lines "max |logprob - reference|"). A wrong position or token moves a logprob by >= 1e-2 (the tiny
model's logprobs spread over ~[-13, -9]), so 1e-4 still catches every indexing bug with 200x margin. With
MS_SERVE_DEVICE (the CUDA backend against the CPU reference) it is 0.1: the golden tests' ~0.05 logit
differences from bf16 GEMM rounding.

Checks on the server (small config: max_num_tokens 64, a 256-token KV pool):
  1. echo + logprobs on a list of token-id prompts: one choice per prompt (index), the prompt's positions
     first (position 0 null), every logprob and top-N against the reference, the prompt token's top entry
     equal to its own logprob, then the generated tokens exactly as a plain request generates them;
  2. a text prompt (BOS added by the tokenizer) and vLLM's prompt_logprobs (ids, ranks, decoded tokens);
  3. max_tokens 0 with echo: only the prompt (finish "length", completion_tokens 0); without echo 400;
  4. a 150-token prompt (> max_num_tokens 64: three chunks) at the chunk boundaries;
  5. preemption: concurrent echo requests on the small KV pool force recomputes; every request still
     has each prompt position once, with the reference's values;
  6. a plain request in the same batch as echo requests returns what it returns alone;
  7. streaming with echo + logprobs carries the same entries; chat prompt_logprobs; 400s;
  8. lm-eval's request shapes and scoring (tools/lmeval_check.py check_all).
"""
import os
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
from harness import Checks, Env, Server, log  # noqa: E402
from test_pressure import SMALL  # noqa: E402 - the small-pool config: max_num_tokens 64, 16 blocks of 16 tokens
import lmeval_check  # noqa: E402
from test_layout import LAYOUTS, layout_arg  # noqa: E402

TOL = 0.1 if os.environ.get("MS_SERVE_DEVICE") else 1e-4
MTP = "speculative_config:\n  decoding_type: MTP\n  num_nextn_predict_layers: 2\n"
LAYOUTS = {k: LAYOUTS[k] for k in ("np1", "np2-tp", "np2-dp")}
# MTP on: prompt logprobs come from the main model's rows, untouched by the draft passes of the step
LAYOUTS["np1-mtp"] = dict(LAYOUTS["np1"], yaml=MTP, mtp=True)
LAYOUTS["np2-dp-mtp"] = dict(LAYOUTS["np2-dp"], yaml=LAYOUTS["np2-dp"]["yaml"] + "\n" + MTP, mtp=True)
PROMPTS = [[0, 1000, 2000, 3000, 4000, 5000, 6000], [0, 17, 4242, 99, 31337], [0, 5, 6]]


def check_positions(c, ref, prompt, lp, what, top_n):
    """logprobs (completions shape) of an echoed prompt against the reference."""
    n = len(prompt)
    c.check(len(lp["tokens"]) >= n and len(lp["token_logprobs"]) >= n and len(lp["text_offset"]) >= n,
            "%s: %d entries for a %d-token prompt" % (what, len(lp["tokens"]), n))
    c.check(lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None, "%s: position 0 not null" % what)
    worst = 0.0
    for p in range(1, n):
        want = ref.logprob(prompt[:p], prompt[p])
        got = lp["token_logprobs"][p]
        worst = max(worst, abs(got - want))
        top = lp["top_logprobs"][p]
        row = ref.row(prompt[:p])
        best = max(row)
        # the top-N with the prompt token itself: N + 1 entries unless it is among them
        c.check(top_n <= len(top) <= top_n + 1, "%s: position %d has %d top entries" % (what, p, len(top)))
        c.check(abs(max(top.values()) - (best if top_n > 0 else want)) <= TOL,
                "%s: position %d top max %g, reference best %g" % (what, p, max(top.values()), best))
        c.check(got in top.values(), "%s: position %d: the prompt token's own logprob is not in its top" % (what, p))
    c.check(worst <= TOL, "%s: max |logprob - reference| %.3g > %g" % (what, worst, TOL))
    return worst


def t_echo_ids(c, srv, env, model, ref):
    plain = srv.completion(prompt=PROMPTS, max_tokens=3, temperature=0, ignore_eos=True)
    r = srv.completion(prompt=PROMPTS, max_tokens=3, temperature=0, ignore_eos=True, echo=True, logprobs=2)
    c.check(len(r["choices"]) == len(PROMPTS), "%d choices" % len(r["choices"]))
    texts = env.detokenize(model, PROMPTS)
    for ch in r["choices"]:
        i = ch["index"]
        lp, pr = ch["logprobs"], PROMPTS[i]
        worst = check_positions(c, ref, pr, lp, "prompt %d" % i, 2)
        log("prompt %d: max |logprob - reference| %.3g" % (i, worst))
        gen = [x for x in plain["choices"] if x["index"] == i][0]["text"]
        c.check(ch["text"] == texts[i] + gen, "prompt %d: text %r, want echo + %r" % (i, ch["text"], gen))
        c.check(len(lp["tokens"]) == len(pr) + 3, "prompt %d: %d entries, want %d" % (i, len(lp["tokens"]), len(pr) + 3))
        offs = lp["text_offset"]
        c.check(offs == sorted(offs) and offs[len(pr)] == len(texts[i]),
                "prompt %d: text_offset %r (echo is %d code points)" % (i, offs, len(texts[i])))
    c.check(r["usage"]["completion_tokens"] == 3 * len(PROMPTS), "usage %r" % r["usage"])


def t_text_and_vllm(c, srv, env, model, ref):
    text = "The capital of France is"
    ids = env.tokenize(model, [text])[0]
    ids = ids["ids"] if isinstance(ids, dict) else ids
    r = srv.completion(prompt=text, max_tokens=1, temperature=0, echo=True, logprobs=1, prompt_logprobs=3)
    ch = r["choices"][0]
    c.check(ch["text"].startswith(text), "echo text %r" % ch["text"])
    c.check(r["usage"]["prompt_tokens"] == len(ids), "prompt_tokens %d, tokenizer %d" % (r["usage"]["prompt_tokens"], len(ids)))
    check_positions(c, ref, ids, ch["logprobs"], "text prompt", 1)
    pl = ch.get("prompt_logprobs")
    c.check(isinstance(pl, list) and len(pl) == len(ids) and pl[0] is None, "prompt_logprobs %r" % (pl,))
    for p in range(1, len(ids) if isinstance(pl, list) else 0):
        row = ref.row(ids[:p])
        d = pl[p]
        c.check(str(ids[p]) in d and len(d) in (3, 4), "position %d: %r" % (p, d))
        for k, v in d.items():
            c.check(abs(v["logprob"] - row[int(k)]) <= TOL, "position %d token %s: %g vs %g" % (p, k, v["logprob"], row[int(k)]))
            if v["rank"] is not None:
                better = sum(1 for x in row if x > row[int(k)] + TOL)
                c.check(better < v["rank"] <= better + 1 + sum(1 for x in row if abs(x - row[int(k)]) <= TOL),
                        "position %d token %s: rank %d, reference %d better" % (p, k, v["rank"], better))
            c.check(isinstance(v["decoded_token"], str), "decoded_token %r" % v)
    st, js = srv.post_json("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
                                                    "temperature": 0, "prompt_logprobs": 1})
    c.check(st == 200 and isinstance(js.get("prompt_logprobs"), list) and
            len(js["prompt_logprobs"]) == js["usage"]["prompt_tokens"] and js["prompt_logprobs"][0] is None,
            "chat prompt_logprobs: %d %s" % (st, str(js)[:300]))


def t_max_tokens_0(c, srv, env, model, ref):
    pr = PROMPTS[0]
    r = srv.completion(prompt=[pr, PROMPTS[1]], max_tokens=0, echo=True, logprobs=1)
    texts = env.detokenize(model, [pr, PROMPTS[1]])
    for ch in r["choices"]:
        i = ch["index"]
        p = [pr, PROMPTS[1]][i]
        c.check(ch["text"] == texts[i], "max_tokens 0: text %r, want the prompt %r" % (ch["text"], texts[i]))
        c.check(ch["finish_reason"] == "length", "finish_reason %r" % ch["finish_reason"])
        c.check(len(ch["logprobs"]["tokens"]) == len(p), "%d entries, want %d" % (len(ch["logprobs"]["tokens"]), len(p)))
        check_positions(c, ref, p, ch["logprobs"], "max_tokens 0 prompt %d" % i, 1)
    c.check(r["usage"]["completion_tokens"] == 0, "usage %r" % r["usage"])
    r = srv.completion(prompt="abc", max_tokens=0, echo=True)
    c.check(r["choices"][0]["text"] == "abc" and r["usage"]["completion_tokens"] == 0, "echo only: %r" % r)
    st, js = srv.post_json("/v1/completions", {"prompt": "abc", "max_tokens": 0})
    c.check(st == 400 and "echo" in js["error"]["message"], "max_tokens 0 without echo: %d %s" % (st, js))


def t_chunked(c, srv, env, model, ref):
    prompt = [0] + [(7919 * i) % 120000 + 100 for i in range(1, 150)]  # 150 tokens > max_num_tokens 64
    r = srv.completion(prompt=prompt, max_tokens=1, temperature=0, echo=True, logprobs=1)
    lp = r["choices"][0]["logprobs"]
    c.check(len(lp["token_logprobs"]) == 151, "%d entries" % len(lp["token_logprobs"]))
    worst = 0.0
    for p in (1, 2, 62, 63, 64, 65, 66, 126, 127, 128, 129, 130, 149):  # around the chunk boundaries 64, 128
        worst = max(worst, abs(lp["token_logprobs"][p] - ref.logprob(prompt[:p], prompt[p])))
    log("chunked: max |logprob - reference| %.3g at the chunk boundaries" % worst)
    c.check(worst <= TOL, "chunked prompt: max |logprob - reference| %.3g" % worst)
    c.check(all(isinstance(x, float) for x in lp["token_logprobs"][1:]), "a missing position")


def concurrent(srv, bodies):
    res = [None] * len(bodies)

    def run(i):
        try:
            res[i] = srv.completion(timeout=280, **bodies[i])
        except Exception as e:  # noqa: BLE001 - reported by the caller
            res[i] = e

    ths = [threading.Thread(target=run, args=(i,)) for i in range(len(bodies))]
    for t in ths:
        t.start()
    for t in ths:
        t.join(timeout=290)
    return res


def t_preempt(c, srv, env, model, ref):
    n, plen, gen = 8, 40, 40  # 80 tokens = 5 blocks each; 16 blocks per pool
    prompts = [[0] + [2000 + 37 * i + 11 * k for k in range(plen - 1)] for i in range(n)]
    before = srv.log_text().count("preempting request")
    res = concurrent(srv, [dict(prompt=p, max_tokens=gen, temperature=0, ignore_eos=True, echo=True, logprobs=1)
                           for p in prompts])
    pre = srv.log_text().count("preempting request") - before
    log("preemptions: %d" % pre)
    c.check(pre > 0, "no preemption happened: the pool was not small enough to test recomputes")
    for i, r in enumerate(res):
        if not c.check(isinstance(r, dict), "request %d: %r" % (i, r)):
            continue
        lp = r["choices"][0]["logprobs"]
        c.check(len(lp["tokens"]) == plen + gen, "request %d: %d entries, want %d (no duplicate after a recompute)" %
                (i, len(lp["tokens"]), plen + gen))
        worst = max(abs(lp["token_logprobs"][p] - ref.logprob(prompts[i][:p], prompts[i][p])) for p in (1, 2, 20, 39))
        c.check(worst <= TOL, "request %d: max |logprob - reference| %.3g" % (i, worst))


def t_batch_unaffected(c, srv, env, model, ref):
    body = dict(prompt=[0, 4444, 5555, 6666], max_tokens=12, temperature=0, ignore_eos=True, logprobs=2)
    alone = srv.completion(**body)
    res = concurrent(srv, [body] + [dict(prompt=p, max_tokens=4, temperature=0, echo=True, logprobs=3) for p in PROMPTS])
    r = res[0]
    c.check(isinstance(r, dict) and r["choices"][0]["text"] == alone["choices"][0]["text"],
            "plain request beside echo requests: %r vs %r" % (r if not isinstance(r, dict) else r["choices"][0]["text"],
                                                             alone["choices"][0]["text"]))
    if isinstance(r, dict):
        a, b = alone["choices"][0]["logprobs"], r["choices"][0]["logprobs"]
        c.check(len(b["tokens"]) == 12 and b["tokens"] == a["tokens"], "plain request logprobs tokens %r" % b["tokens"])
        c.check(max(abs(x - y) for x, y in zip(a["token_logprobs"], b["token_logprobs"])) <= TOL,
                "plain request logprobs differ in a batch")
        c.check(all(len(t) <= 3 for t in b["top_logprobs"]), "plain request got more than its top-2")
    for i, x in enumerate(res[1:]):
        c.check(isinstance(x, dict) and len(x["choices"][0]["logprobs"]["tokens"]) == len(PROMPTS[i]) + 4,
                "echo request %d beside a plain one: %r" % (i, str(x)[:200]))


def t_stream_and_errors(c, srv, env, model, ref):
    body = dict(prompt=PROMPTS[0], max_tokens=3, temperature=0, ignore_eos=True, echo=True, logprobs=1)
    whole = srv.completion(**body)["choices"][0]
    ev = srv.stream("/v1/completions", body)
    toks, lps, text = [], [], ""
    for e in ev:
        if e == "[DONE]" or not e.get("choices"):
            continue
        ch = e["choices"][0]
        text += ch["text"]
        if ch.get("logprobs"):
            toks += ch["logprobs"]["tokens"]
            lps += ch["logprobs"]["token_logprobs"]
    c.check(text == whole["text"], "stream text %r vs %r" % (text, whole["text"]))
    c.check(toks == whole["logprobs"]["tokens"] and lps == whole["logprobs"]["token_logprobs"],
            "stream logprobs differ: %r vs %r" % (lps, whole["logprobs"]["token_logprobs"]))
    for b, param, msg in [
        ({"prompt": "a", "echo": True, "logprobs": 21}, "logprobs", "between 0 and 20"),
        ({"prompt": "a", "prompt_logprobs": 21}, "prompt_logprobs", "between 0 and 20"),
        ({"prompt": "a", "prompt_logprobs": 1, "stream": True}, "prompt_logprobs", "stream"),
        ({"prompt": "a", "max_tokens": 0}, "max_tokens", "echo"),
    ]:
        st, js = srv.post_json("/v1/completions", b)
        c.check(st == 400 and js["error"]["param"] == param and msg in js["error"]["message"],
                "%r: %d %s" % (b, st, js))


def t_lmeval(c, srv, env, model, ref):
    failed = lmeval_check.check_all("http://127.0.0.1:%d" % srv.port, model, ref, tol=TOL, report=log)
    c.check(failed == 0, "%d lm-eval checks failed (see above)" % failed)


def main():
    env = Env.from_args()
    layout, L = layout_arg("np1", LAYOUTS)
    model = env.tiny_model("tiny-mtp", ["--mtp"]) if L.get("mtp") else env.tiny_model()
    ref = lmeval_check.Reference(env.moeserve, model, env.workdir)
    cfg = os.path.join(env.workdir, "prompt-lp-%s.yaml" % layout)
    with open(cfg, "w") as f:
        f.write(SMALL + L.get("yaml", "") + "\n")
    c = Checks()
    srv = Server(env, model, np=L["np"], args=L["args"], config=cfg)
    groups = [("echo_ids", t_echo_ids), ("text_and_vllm", t_text_and_vllm), ("max_tokens_0", t_max_tokens_0),
              ("chunked", t_chunked), ("preempt", t_preempt), ("batch_unaffected", t_batch_unaffected),
              ("stream_and_errors", t_stream_and_errors), ("lmeval", t_lmeval)]
    c.run_on_server(srv, [(n, (lambda fn: lambda cc, s: fn(cc, s, env, model, ref))(fn)) for n, fn in groups])
    c.done()


if __name__ == "__main__":
    main()
