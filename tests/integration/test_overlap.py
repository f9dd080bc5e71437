#!/usr/bin/env python3
"""test_overlap.py — the overlap scheduler changes when rank 0 plans, never what a client gets.

With overlap on (the default) rank 0 plans step N+1 while step N runs; decodes of N+1 feed the token
sampled in N on each rank (PROTO_SEQ_FEED_LAST), and a stop found in N's token takes effect one step
late (runtime/serve_loop.c). On one layout (argument: np1, np2-tp, np2-dp, np4-dp-ep2), the same
workload runs on a server with overlap on and on one with `disable_overlap_scheduler: true`, all of it
at once so that steps mix prefills, decodes and finishing sequences:
  - greedy requests of several max_tokens (1, 2, 5, 17): exactly max_tokens tokens, finish "length",
    text equal to the single-process engine's;
  - stop_token_ids and stop strings at several positions: the text ends before the stop, finish
    "stop", usage counts exactly the tokens up to the stop;
  - seeded sampling (temperature, top_p) and top logprobs;
  - streamed requests: the chunks add up to the non-streamed text, one finishing chunk, then [DONE];
  - a stream cancelled mid-way (the client hangs up): what it got is a prefix of the reference, and
    every KV block comes back;
and every response is identical between the two servers. print_iter_log's counter of steps planned
while another ran (and /metrics' moeserve_engine_steps_overlapped_total) is > 0 with overlap on and 0
with it off.
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Checks, Env, Server, log  # noqa: E402
from test_layout import layout_arg, parallel  # noqa: E402

PROMPTS = [
    [0, 15382, 344, 2010, 4404, 33],
    [0, 1000, 2000, 3000],
    [0] + list(range(5000, 5040)),
    [0, 42],
]
N_REF = 24


def summary(js):
    ch = js["choices"][0]
    lp = ch.get("logprobs")
    return dict(text=ch["text"], finish=ch["finish_reason"], usage=js["usage"]["completion_tokens"],
                logprobs=lp and (lp.get("tokens"), lp.get("top_logprobs")))


def streamed(srv, body):
    ev = srv.stream("/v1/completions", body)
    data = [e for e in ev if e != "[DONE]" and e.get("choices")]
    fins = [i for i, e in enumerate(data) if e["choices"][0].get("finish_reason")]
    return dict(text="".join(e["choices"][0].get("text") or "" for e in data), fins=fins, n=len(data),
                done=ev[-1] == "[DONE]", finish=data[-1]["choices"][0].get("finish_reason") if data else None)


def cancel_mid_stream(srv, prompt):
    """Stream a long greedy request, read three chunks, hang up; returns the text read."""
    s, got = srv.open_stream(dict(prompt=prompt, max_tokens=400, temperature=0, ignore_eos=True), 4)
    s.close()
    text = ""
    for m in re.finditer(rb"data: (\{.*?\})\r?\n", got):
        ch = json.loads(m.group(1))["choices"]
        if ch:
            text += ch[0].get("text") or ""
    return text


def workload(env, model, ref_ids, ref_text):
    """The bodies, each run plain (and a few streamed), all at once."""
    bodies = []
    for i, p in enumerate(PROMPTS):
        for n in (1, 2, 5, 17):
            bodies.append(("len", i, n, dict(prompt=p, max_tokens=n, temperature=0, ignore_eos=True)))
    for i in (0, 1):
        ids = ref_ids[i]
        ks = [k for k in range(1, len(ids)) if ids[k] not in ids[:k]][:3]
        for k in ks:
            bodies.append(("stop_id", i, k, dict(prompt=PROMPTS[i], max_tokens=N_REF, temperature=0,
                                                 stop_token_ids=[ids[k]])))
        txt = ref_text[i]
        for frac in (0.3, 0.7):
            a = max(1, int(len(txt) * frac))
            stop = txt[a:a + 2]
            if stop.strip():
                bodies.append(("stop_str", i, stop, dict(prompt=PROMPTS[i], max_tokens=N_REF, temperature=0,
                                                         ignore_eos=True, stop=[stop])))
    for seed in (3, 11):
        bodies.append(("sample", seed, 0, dict(prompt=PROMPTS[0], max_tokens=12, temperature=0.9, top_p=0.9,
                                               seed=seed, ignore_eos=True)))
    bodies.append(("logprobs", 1, 0, dict(prompt=PROMPTS[1], max_tokens=8, temperature=0, logprobs=2,
                                          ignore_eos=True)))
    return bodies


def run_server(c, env, model, L, overlap, bodies, ref_text):
    yaml = L.get("yaml", "") + "\nprint_iter_log: true\n" + ("" if overlap else "disable_overlap_scheduler: true\n")
    tag = "overlap on" if overlap else "overlap off"
    out = {}
    with Server(env, model, np=L["np"], args=L["args"], yaml_extra=yaml) as srv:
        fns = [lambda b=b: summary(srv.completion(**b[3])) for b in bodies]
        fns += [lambda b=b: streamed(srv, b[3]) for b in bodies if b[0] in ("len", "stop_id", "stop_str")]
        fns.append(lambda: cancel_mid_stream(srv, PROMPTS[2]))
        res = parallel(fns)
        nb = len(bodies)
        plain, rest = res[:nb], res[nb:]
        streams, cancelled = rest[:-1], rest[-1]
        for b, r in zip(bodies, plain):
            if c.check(isinstance(r, dict), "%s %s: %r" % (tag, b[:3], r)):
                out[b[:3]] = r
        sb = [b for b in bodies if b[0] in ("len", "stop_id", "stop_str")]
        for b, r in zip(sb, streams):
            if not c.check(isinstance(r, dict), "%s stream %s: %r" % (tag, b[:3], r)):
                continue
            p = out.get(b[:3])
            c.check(r["done"] and r["fins"] == [r["n"] - 1], "%s stream %s: finish chunks %r of %d, done %r" %
                    (tag, b[:3], r["fins"], r["n"], r["done"]))
            c.check(p is not None and r["text"] == p["text"] and r["finish"] == p["finish"],
                    "%s stream %s: %r/%r, plain %r" % (tag, b[:3], r["text"], r["finish"], p))
        if c.check(isinstance(cancelled, str), "%s cancelled stream: %r" % (tag, cancelled)):
            c.check(ref_text[2].startswith(cancelled) or cancelled.startswith(ref_text[2]),
                    "%s cancelled stream got %r, not a prefix of %r" % (tag, cancelled, ref_text[2]))
        used = srv.kv_blocks_used_settled()
        c.check(used == 0, "%s: KV blocks used at the end: %r" % (tag, used))
        # after the cancel and the burst, the server still answers right
        js = srv.completion(prompt=PROMPTS[0], max_tokens=N_REF, temperature=0, ignore_eos=True)
        c.check(js["choices"][0]["text"] == ref_text[0], "%s: afterwards %r != %r" % (tag, js["choices"][0]["text"],
                                                                                      ref_text[0]))
        counts = [int(m) for m in re.findall(r"(\d+) steps planned while another ran", srv.log_text())]
        top = max(counts) if counts else -1
        # /metrics counts them too (it lags the log by at most the step in flight)
        ov = srv.metrics().get("moeserve_engine_steps_overlapped_total")
        if overlap:
            c.check(top > 0, "%s: steps planned while another ran: %r" % (tag, top))
            c.check(ov is not None and 0 < ov <= top, "%s: /metrics overlapped steps %r, log %r" % (tag, ov, top))
        else:
            c.check(top == 0, "%s: steps planned while another ran: %r (want 0)" % (tag, top))
            c.check(ov == 0, "%s: /metrics overlapped steps %r (want 0)" % (tag, ov))
        log("%s: %d requests, %d steps planned while another ran" % (tag, len(fns), top))
    return out


def main():
    env = Env.from_args()
    layout, L = layout_arg()
    model = env.tiny_model()
    c = Checks()
    c.name = layout
    ref_ids = [env.generate(model, p, N_REF) for p in PROMPTS]
    ref_text = env.detokenize(model, ref_ids)
    bodies = workload(env, model, ref_ids, ref_text)
    on = run_server(c, env, model, L, True, bodies, ref_text)
    off = run_server(c, env, model, L, False, bodies, ref_text)
    for b in bodies:
        k = b[:3]
        a, z = on.get(k), off.get(k)
        if a is None or z is None:
            continue
        c.check(a == z, "%s: overlap on %r != off %r" % (k, a, z))
        kind, i, x = k
        if kind == "len":
            want = env.detokenize(model, [ref_ids[i][:x]])[0]
            c.check(a["usage"] == x and a["finish"] == "length" and a["text"] == want,
                    "%s: %r (want %d tokens, %r)" % (k, a, x, want))
        elif kind == "stop_id":
            want = env.detokenize(model, [ref_ids[i][:x]])[0]
            c.check(a["usage"] == x + 1 and a["finish"] == "stop" and a["text"] == want,
                    "%s: %r (want %d tokens, %r)" % (k, a, x + 1, want))
        elif kind == "stop_str":
            want = ref_text[i][:ref_text[i].find(x)]
            c.check(a["finish"] == "stop" and a["text"] == want, "%s: %r (want %r)" % (k, a, want))
    log("%s: %d request kinds compared, overlap on == off" % (layout, len(bodies)))
    c.done()


if __name__ == "__main__":
    main()
