"""test_mtp.py LAYOUT — MTP speculative decoding (speculative_config) end to end over real HTTP.

On the tiny model written with `moeserve-mkmodel --mtp` (its module drafts mostly right), for the layout:
  1. greedy losslessness: concurrent completions with num_nextn_predict_layers 1 and 3 give exactly the
     single-process `moeserve generate` continuation (no MTP), prompts of several lengths, chunked prefill
     included;
  2. sampling: seeded temperature > 0 completions equal those of the same layout without MTP (verification
     samples each fed row with the stream (seed, position) a plain decode uses, so even the random
     tokens agree), and two runs with one seed agree;
  3. max_tokens exact for 1..7 (a step may emit several tokens: none may pass the limit);
  4. stop strings: the text ends right before the stop string the greedy text contains;
  5. streaming: the SSE chunks concatenate to the non-streamed text, in order;
  6. /metrics: drafts verified and accepted per position, acceptance well above chance (the drafts are
     right most of the time on this model), mean accepted length > 1;
  7. preemption: a KV pool too small for the concurrent requests preempts some, and every output is still
     the reference (np1 only: one pool).
"""
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Checks, Env, Server, log  # noqa: E402
from test_layout import LAYOUTS, parallel  # noqa: E402

PROMPTS = [
    [0, 15382, 344, 2010, 4404, 33],
    [0, 1000, 2000, 3000],
    [0] + list(range(5000, 5060)),
    [0, 42],
]
N_TOK = 24


def mtp_model(env):
    """The tiny model with its MTP module, built once."""
    return env.tiny_model("tiny-mtp", ["--mtp"])


def spec_yaml(n):
    return "speculative_config:\n  decoding_type: MTP\n  num_nextn_predict_layers: %d" % n


def ids_of(js):
    return js["choices"][0]["text"]


def greedy(c, srv, env, model, chunked=False):
    refs = [env.generate(model, p, N_TOK) for p in PROMPTS]
    ref_text = env.detokenize(model, refs)
    outs = parallel([lambda p=p: srv.completion(prompt=p, max_tokens=N_TOK, temperature=0, ignore_eos=True)
                     for p in PROMPTS])
    for i, o in enumerate(outs):
        if isinstance(o, Exception):
            c.check(False, "prompt %d: %s" % (i, o))
            continue
        c.check(ids_of(o) == ref_text[i], "prompt %d: %r != reference %r" % (i, ids_of(o), ref_text[i]))
        c.check(o["usage"]["completion_tokens"] == N_TOK, "prompt %d: %d tokens" % (i, o["usage"]["completion_tokens"]))
    return ref_text


def sampled(srv, seeds):
    outs = parallel([lambda s=s, p=p: srv.completion(prompt=p, max_tokens=16, temperature=0.8, top_p=0.95, seed=s,
                                                      ignore_eos=True)
                     for s in seeds for p in PROMPTS[:2]])
    return [o if isinstance(o, Exception) else ids_of(o) for o in outs]


def same_samples(c, got, want):
    """seeded draws with MTP equal those without; on a difference, say which request and how (an exception,
    e.g. a timeout under load, reads differently from a different token)"""
    want = want or []
    bad = [(i, g, w) for i, (g, w) in enumerate(zip(got, want)) if g != w]
    c.check(len(got) == len(want) and not bad, "seeded samples differ from no-MTP: %d of %d requests%s" % (
        len(bad), len(want), "; first: #%d got %r want %r" % (bad[0][0], bad[0][1], bad[0][2]) if bad else ""))


def max_tokens(c, srv):
    for n in range(1, 8):
        o = srv.completion(prompt=PROMPTS[1], max_tokens=n, temperature=0, ignore_eos=True)
        c.check(o["usage"]["completion_tokens"] == n, "max_tokens %d gave %d" % (n, o["usage"]["completion_tokens"]))
        c.check(o["choices"][0]["finish_reason"] == "length", "max_tokens %d: finish %s" % (n, o["choices"][0]))


def stops(c, srv, ref_text):
    text = ref_text[1]
    for cut in (3, 7, len(text) // 2):
        stop = text[cut:cut + 2]
        if not stop.strip() or text.index(stop) != cut:
            continue
        o = srv.completion(prompt=PROMPTS[1], max_tokens=N_TOK, temperature=0, ignore_eos=True, stop=[stop])
        c.check(ids_of(o) == text[:cut], "stop %r: %r, expected %r" % (stop, ids_of(o), text[:cut]))
        c.check(o["choices"][0]["finish_reason"] == "stop", "stop %r: finish %s" % (stop, o["choices"][0]))


def streaming(c, srv, ref_text):
    ev = srv.stream("/v1/completions", dict(prompt=PROMPTS[0], max_tokens=N_TOK, temperature=0, ignore_eos=True))
    c.check(ev and ev[-1] == "[DONE]", "stream ends with [DONE]")
    text = "".join(e["choices"][0]["text"] for e in ev if isinstance(e, dict) and e.get("choices"))
    c.check(text == ref_text[0], "stream %r != %r" % (text, ref_text[0]))


def metrics(c, srv, n):
    m = srv.metrics()
    prop, acc = m.get("moeserve_spec_draft_tokens_total", 0), m.get("moeserve_spec_accepted_tokens_total", 0)
    c.check(prop > 0, "no drafts verified: %s" % {k: v for k, v in m.items() if "spec" in k})
    c.check(0 < acc <= prop, "acceptance %d / %d" % (acc, prop))
    for j in range(1, n + 1):
        key = 'moeserve_spec_acceptance_rate{position="%d"}' % j
        c.check(key in m, "%s missing" % key)
    # a random draft is right 1 time in 512; this module's first draft is right most of the time
    r1 = m.get('moeserve_spec_acceptance_rate{position="1"}', 0)
    c.check(r1 > 0.5, "first-position acceptance %.3f" % r1)
    c.check(m.get("moeserve_spec_mean_accepted_length", 0) > 1.5, "mean accepted length %s" %
            m.get("moeserve_spec_mean_accepted_length"))
    log("MTP n=%d per position: %s" % (n, " ".join("%.3f" % m.get('moeserve_spec_acceptance_rate{position="%d"}' % j, 0)
                                                   for j in range(1, n + 1))))
    log("MTP n=%d: drafts %d, accepted %d (%.1f%%), mean accepted length %.2f" %
        (n, prop, acc, 100 * acc / max(prop, 1), m.get("moeserve_spec_mean_accepted_length", 0)))


def main():
    layout = sys.argv[-1] if len(sys.argv) > 1 and not sys.argv[-1].startswith("-") else "np1"
    argv = sys.argv[1:-1] if layout == sys.argv[-1] else sys.argv[1:]
    env = Env.from_args(argv)
    lay = LAYOUTS[layout]
    model = mtp_model(env)
    base = lay.get("yaml", "")
    c = Checks()
    seeds = [7, 1234]

    plain = {}
    srv = Server(env, model, np=lay["np"], args=lay["args"], yaml_extra=base)
    c.run_on_server(srv, [("sampled reference (no MTP)", lambda c, s: plain.update(out=sampled(s, seeds)))])

    for n in (1, 3):
        ref = {}
        srv = Server(env, model, np=lay["np"], args=lay["args"], yaml_extra=base + "\n" + spec_yaml(n))
        c.run_on_server(srv, [
            ("greedy lossless n=%d" % n, lambda c, s: ref.update(text=greedy(c, s, env, model))),
            ("metrics n=%d (greedy)" % n, lambda c, s, n=n: metrics(c, s, n)),
            ("sampling n=%d equals no-MTP" % n, lambda c, s: same_samples(c, sampled(s, seeds), plain.get("out"))),
            ("max_tokens n=%d" % n, max_tokens),
            ("stop strings n=%d" % n, lambda c, s: stops(c, s, ref["text"])),
            ("streaming n=%d" % n, lambda c, s: streaming(c, s, ref["text"])),
        ])

    if layout == "np1":
        # 8 requests of ~64 positions on a 192-token pool: preemptions happen, outputs stay exact
        small = ("max_batch_size: 16\nmax_num_tokens: 1024\nmax_seq_len: 256\nenable_chunked_prefill: true\n"
                 "cuda_graph_config: null\nkv_cache_config:\n  max_tokens: 192\n  tokens_per_block: 32\n"
                 "moeserve:\n  device: cpu\n" + spec_yaml(2) + "\n")
        f = tempfile.NamedTemporaryFile(mode="w", dir=env.workdir, suffix=".yaml", delete=False)
        f.write(small)
        f.close()
        srv = Server(env, model, np=1, config=f.name)

        def preempt(c, s):
            prompts = [[0] + list(range(7000 + 50 * i, 7000 + 50 * i + 30)) for i in range(8)]
            refs = env.detokenize(model, [env.generate(model, p, 30) for p in prompts])
            outs = parallel([lambda p=p: s.completion(prompt=p, max_tokens=30, temperature=0, ignore_eos=True)
                             for p in prompts])
            for i, o in enumerate(outs):
                c.check(not isinstance(o, Exception) and ids_of(o) == refs[i], "prompt %d: %s" % (i, o))
            c.check("preempting" in s.log_text(), "no preemption happened (the test needs one)")

        c.run_on_server(srv, [("preemption", preempt)])
    c.done()


if __name__ == "__main__":
    main()
