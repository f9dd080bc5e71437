#!/usr/bin/env python3
"""test_seq_faults.py — a fault attributable to one sequence ends that
sequence only (issue 8, item 1): the step's other sequences get their tokens.

The MOESERVE_FAULT_SEQ=KIND:STEP:RANK hook (runtime/serve_loop.c) makes the
first sequence of step STEP that rank RANK owns fail alone:
  fault  its rows raise a data fault on the ranks that run it (the fault word
         an op sets for a row);
  token  its first row is fed a token id outside the vocabulary after the plan
         check, so the embedding op itself raises KERN_FAULT_TOKEN and the
         engine traces it to the row;
  plan   rank 0 writes that id into the plan entry before sending it (a
         scheduler bug): the worker's plan check rejects that entry only.
For each, 10 concurrent greedy requests (streams; non-streamed on some
servers): exactly one ends with an error naming the cause (a stream: an SSE
error event then [DONE]; otherwise a 500 with an OpenAI error body), the 9
others finish "length" with the same text as the same 10 requests give right
after on the same server without a fault (which also shows the failed slot's
next user gets nothing stale), and the KV pool is empty at the end.
Layouts: np1, np2 attention DP with the faulty sequence on rank 1, np2 TP
(every rank runs the entry; rank 0 owns its result), and np2 DP with MTP
drafts (a second pass after the traced fault).

  mtpnan (MTP on) the sequence's draft-pass input rows are NaN: the module's
         sampler draws nothing for it, and that is not an error: every request
         finishes with the clean run's text (verification keeps it exact
         without drafts), the rank logs the dropped drafts, no step fails.
"""
import json
import os
import re
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Checks, Env, Server, log  # noqa: E402

N = 10
GEN = 16
STEP = 6  # early enough that every request still runs, late enough that most were admitted
TP2 = ["--tp_size", "2", "--ep_size", "2"]
CAUSE = {"fault": "MOESERVE_FAULT_SEQ test hook", "token": "token id outside the vocabulary",
         "plan": "plan check rejected"}


def prompts():
    return [[0] + [(31 * i + 7 * j) % 900 + 5 for j in range(3 + i % 4)] for i in range(N)]


def one(srv, prompt, stream):
    """(ok, text, error message) of one greedy request."""
    body = dict(prompt=prompt, max_tokens=GEN, temperature=0, ignore_eos=True)
    if stream:
        ev = srv.stream("/v1/completions", body, timeout=120)
        if not ev or ev[-1] != "[DONE]":
            return False, None, "stream did not end with [DONE]: %r" % ev[-2:]
        if len(ev) >= 2 and isinstance(ev[-2], dict) and "error" in ev[-2]:
            return False, None, json.dumps(ev[-2])
        text = "".join(e["choices"][0].get("text", "") for e in ev[:-1] if isinstance(e, dict) and e.get("choices"))
        fin = [e["choices"][0].get("finish_reason") for e in ev[:-1] if isinstance(e, dict) and e.get("choices")]
        return fin[-1:] == ["length"], text, None if fin[-1:] == ["length"] else "finish %r" % fin[-1:]
    st, js = srv.post_json("/v1/completions", body)
    if st != 200:
        err = js.get("error", {}) if isinstance(js, dict) else {}
        ok_body = st == 500 and isinstance(err.get("message"), str) and err.get("code") == 500
        return False, None, ("" if ok_body else "BAD BODY ") + "%d %s" % (st, json.dumps(js))
    ch = js["choices"][0]
    return ch["finish_reason"] == "length", ch["text"], None


def batch(srv, stream):
    res = [None] * N
    ps = prompts()
    go = threading.Barrier(N)  # send together: staggered starts on a loaded machine left the fault step alone

    def run(i):
        try:
            go.wait(30)
            res[i] = one(srv, ps[i], stream)
        except Exception as e:  # noqa: BLE001
            res[i] = (False, None, "exception %r" % e)
    th = [threading.Thread(target=run, args=(i,)) for i in range(N)]
    for t in th:
        t.start()
    for t in th:
        t.join(180)
    return res


def case(c, env, model, name, kind, rank, np=1, args=(), yaml="", stream=True):
    hook = "%s:%d:%d" % (kind, STEP, rank)
    with Server(env, model, np=np, args=args, yaml_extra=yaml, extra_env={"MOESERVE_FAULT_SEQ": hook}) as srv:
        faulty = batch(srv, stream)
        clean = batch(srv, stream)  # the step number is past: no fault now
        bad = [i for i, r in enumerate(faulty) if not r[0]]
        c.check(len(bad) == 1, "%s: exactly one request fails: %d did (%r)" %
                (name, len(bad), [faulty[i][2] for i in bad][:3]))
        others = -1
        for i in bad:
            msg = faulty[i][2] or ""
            c.check(CAUSE[kind] in msg and "BAD BODY" not in msg,
                    "%s: the error names the cause (%r): %s" % (name, CAUSE[kind], msg[:300]))
            c.check(("on rank %d " % rank) in msg, "%s: the error names rank %d: %s" % (name, rank, msg[:200]))
            m = re.search(r"the step's (\d+) other requests went on", msg)
            others = int(m.group(1)) if m else -1
        # the point: the faulty step had company, and that company went on (every other request's tokens are
        # checked below). How much company depends on how many requests the scheduler had admitted by step STEP,
        # which a loaded machine slows: a CI run beside a build saw 3 of 9 (np2-dp mtp token) where 5 was asked
        # for, so one is asked for
        c.check(others >= 1, "%s: %d other requests shared the faulty step (want >= 1)" % (name, others))
        c.check(all(r[0] for r in clean), "%s: every request runs after the fault: %r" %
                (name, [r[2] for r in clean if not r[0]][:3]))
        same = sum(1 for i in range(N) if i not in bad and faulty[i][1] == clean[i][1])
        c.check(same == N - len(bad), "%s: %d of %d others give the tokens of a run without the fault" %
                (name, same, N - len(bad)))
        c.check(srv.kv_blocks_used_settled() == 0, "%s: KV blocks freed" % name)
        c.check(len(srv.ranks_alive()) == np, "%s: every rank still runs" % name)
        text = srv.log_text()
        c.check(("left out" if kind == "plan" else "failed alone") in text, "%s: the rank logs the fault" % name)
        c.check("step failed" not in text, "%s: no step failed as a whole" % name)
        log("%s: 1 of %d failed (%s) in a step with %d others; %d others unchanged" % (name, N, CAUSE[kind], others,
                                                                                      same))


def case_mtp_nan(c, env, model, name, rank, np, args, yaml):
    with Server(env, model, np=np, args=args, yaml_extra=yaml,
                extra_env={"MOESERVE_FAULT_SEQ": "mtpnan:%d:%d" % (STEP, rank)}) as srv:
        hit = batch(srv, True)
        clean = batch(srv, True)
        c.check(all(r[0] for r in hit) and all(r[0] for r in clean), "%s: every request finishes: %r" %
                (name, [r[2] for r in hit + clean if not r[0]][:3]))
        same = sum(1 for i in range(N) if hit[i][1] == clean[i][1])
        c.check(same == N, "%s: %d of %d requests give the clean run's text" % (name, same, N))
        text = srv.log_text()
        c.check("drew no draft" in text, "%s: the rank logs the dropped drafts" % name)
        c.check("step failed" not in text and "failed alone" not in text, "%s: nothing failed" % name)
        c.check(srv.kv_blocks_used_settled() == 0, "%s: KV blocks freed" % name)
        log("%s: %d of %d unchanged with one sequence's drafts NaN" % (name, same, N))


def main():
    env = Env.from_args()
    model = env.tiny_model()
    c = Checks()
    dp = "enable_attention_dp: true"
    c.run("np1 fault", case, env, model, "np1 fault", "fault", 0)
    c.run("np1 plan", case, env, model, "np1 plan", "plan", 0, 1, (), "", False)
    c.run("np2-dp fault", case, env, model, "np2-dp fault", "fault", 1, 2, TP2, dp)
    c.run("np2-dp token", case, env, model, "np2-dp token", "token", 1, 2, TP2, dp, False)
    c.run("np2-dp plan", case, env, model, "np2-dp plan", "plan", 1, 2, TP2, dp)
    c.run("np2-tp token", case, env, model, "np2-tp token", "token", 0, 2, TP2)
    # MTP drafts run a second pass after the traced fault: it must not see the main pass's bits again
    mtp = env.tiny_model("tiny-mtp", ["--mtp"])
    spec = "speculative_config:\n  decoding_type: MTP\n  num_nextn_predict_layers: 2"
    c.run("np2-dp mtp token", case, env, mtp, "np2-dp mtp token", "token", 1, 2, TP2, dp + "\n" + spec)
    c.run("np1 mtp nan", case_mtp_nan, env, mtp, "np1 mtp nan", 0, 1, (), spec)
    c.run("np2-tp mtp nan", case_mtp_nan, env, mtp, "np2-tp mtp nan", 0, 2, TP2, spec)
    c.done()


if __name__ == "__main__":
    main()
