#!/usr/bin/env python3
"""test_stop_late.py — stops found off the MPI thread never leak a token.

Detokenization and stop checks run on rank 0's output thread while the next
step runs (runtime/serve_output.c), so a stop reaches the scheduler one step
late and the sequence may run one extra step. That extra token must never
reach a client. On one np 2 attention-DP server, many greedy requests run at
once (background requests with ignore_eos keep the engine stepping), each
stopping at a different position by stop_token_ids, streamed and not:
  - usage counts exactly the tokens up to and including the stop token;
  - the text is exactly the reference text before the stop token;
  - a stream has exactly one finishing chunk, then [DONE], and its texts add
    up to the same prefix;
  - max_tokens (applied by the scheduler at once) gives exactly max_tokens;
  - afterwards every KV block is free.
"""
import threading

from harness import Checks, Env, Server, log

PROMPT = [0, 15382, 344, 2010, 4404, 33]


def main():
    env = Env.from_args()
    model = env.tiny_model()
    c = Checks()
    ids = env.generate(model, PROMPT, 24)
    ks = [k for k in range(1, len(ids)) if ids[k] not in ids[:k]]
    c.check(len(ks) >= 3, "first-occurrence positions in %r" % ids)
    prefix = dict(zip(ks, env.detokenize(model, [ids[:k] for k in ks])))
    # a slow output thread (test hook) makes every stop arrive late: the extra step always runs
    with Server(env, model, np=2, yaml_extra="enable_attention_dp: true",
                extra_env={"MOESERVE_OUTPUT_DELAY_US": "20000"}) as srv:
        errs = []

        def plain(k):
            js = srv.completion(prompt=PROMPT, max_tokens=24, temperature=0, stop_token_ids=[ids[k]])
            ch = js["choices"][0]
            if js["usage"]["completion_tokens"] != k + 1 or ch["text"] != prefix[k] or ch["finish_reason"] != "stop":
                errs.append("stop at %d: usage %r, text %r (want %r), finish %r" % (
                    k, js["usage"], ch["text"], prefix[k], ch["finish_reason"]))

        def streamed(k):
            ev = srv.stream("/v1/completions", dict(prompt=PROMPT, max_tokens=24, temperature=0,
                                                    stop_token_ids=[ids[k]]))
            data = [e for e in ev if e != "[DONE]"]
            fins = [i for i, e in enumerate(data) if e["choices"] and e["choices"][0].get("finish_reason")]
            text = "".join(e["choices"][0].get("text", "") for e in data if e["choices"])
            if ev[-1] != "[DONE]" or fins != [len([e for e in data if e["choices"]]) - 1] or text != prefix[k]:
                errs.append("stream stop at %d: finish chunks at %r of %d, text %r (want %r)" % (
                    k, fins, len(data), text, prefix[k]))

        def length(n):
            js = srv.completion(prompt=PROMPT, max_tokens=n, temperature=0, ignore_eos=True)
            if js["usage"]["completion_tokens"] != n or js["choices"][0]["finish_reason"] != "length":
                errs.append("max_tokens %d: %r" % (n, js["usage"]))

        def background():
            srv.completion(prompt=[0, 1, 2, 3], max_tokens=60, temperature=0, ignore_eos=True)

        for rnd in range(2):
            th = [threading.Thread(target=background) for _ in range(3)]
            th += [threading.Thread(target=f, args=(k,)) for k in ks for f in (plain, streamed)]
            th += [threading.Thread(target=length, args=(n,)) for n in (1, 2, 5)]
            for t in th:
                t.start()
            for t in th:
                t.join()
        c.check(not errs, "%d wrong: %s" % (len(errs), "; ".join(errs[:5])))
        used = srv.kv_blocks_used_settled()
        c.check(used == 0, "KV blocks used at the end: %r" % used)
        log("%d stop positions x (plain, streamed) x 2 rounds, with background load: %d wrong" % (len(ks), len(errs)))
    c.done()


if __name__ == "__main__":
    main()
