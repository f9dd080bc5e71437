"""test_lmeval.py — lm-evaluation-harness's own `local-completions` model (LocalCompletionsAPI, its real
code) against a CPU-rank server, scored against the CPU reference (issue 14 item 1).

lm-eval is not vendored and is no Debian or npm package: scripts/fetch-lmeval.sh puts its source at a
pinned commit into .cache/lm-eval (only the lm_eval package and a dist-info stub, nothing installed; from
GitHub or a local clone), and scripts/setup.sh installs Debian's python3 packages for its API client
(aiohttp, requests, tenacity, tqdm, sqlitedict, ...). This runs under Debian's /usr/bin/python3 (it
re-executes itself there when the current python lacks those packages) with .cache/lm-eval on sys.path, so
what goes over the wire and how the answers are scored are lm-eval's, not a reimplementation.

With tokenizer_backend "auto", lm-eval probes GET /tokenizer_info and picks the "remote" backend (POST
/tokenize for every string); it sends token-id prompts with echo + logprobs and scores them itself.
  - loglikelihood: (sum, is_greedy) per (context, continuation) = the reference's, from log_softmax of
    `moeserve generate --dump-logits` at every continuation position (tools/lmeval_check.py Reference),
    on the pair as lm-eval itself encodes it (its _encode_pair); a continuation made of the model's own
    greedy tokens comes back greedy;
  - loglikelihood_rolling: a text long enough for several windows at max_length 40; the reference sums
    the windows lm-eval's own get_rolling_token_windows makes (its prefix token: lm-eval takes
    `bos_token_id or eos_token_id`, and DeepSeek's BOS is id 0, so it uses EOS: what it sends is scored);
  - generate_until: greedy text up to the stop string = the reference's greedy continuation.
Exit 77 (skip) when the lm-eval source or Debian's packages are absent, saying which.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NEED = ["aiohttp", "requests", "tenacity", "tqdm", "sqlitedict", "jinja2", "yaml", "numpy"]


def have_client_packages():
    try:
        for m in NEED:
            __import__(m)
        return True
    except ImportError:
        return False


if not have_client_packages():
    deb = "/usr/bin/python3"
    if os.path.exists(deb) and os.path.realpath(sys.executable) != os.path.realpath(deb) and \
            not os.environ.get("MS_LMEVAL_REEXEC"):
        os.environ["MS_LMEVAL_REEXEC"] = "1"
        os.execv(deb, [deb] + sys.argv)
    print("SKIP: lm-eval's API client packages are missing (%s); scripts/setup.sh installs them" % ", ".join(NEED))
    sys.exit(77)

LMEVAL = os.environ.get("MS_LMEVAL_SRC") or os.path.join(ROOT, ".cache", "lm-eval")
if not os.path.isfile(os.path.join(LMEVAL, "lm_eval", "__init__.py")):
    print("SKIP: no lm-eval source at %s (scripts/fetch-lmeval.sh [GIT_DIR] puts it there)" % LMEVAL)
    sys.exit(77)
sys.path.insert(0, LMEVAL)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))
import logging  # noqa: E402

from harness import Checks, Env, Server, log  # noqa: E402
import lmeval_check  # noqa: E402  (Reference: log_softmax rows of `generate --dump-logits`)

logging.getLogger("lm-eval").setLevel(logging.WARNING)
from lm_eval import utils as lm_utils  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.models.openai_completions import LocalCompletionsAPI  # noqa: E402

TOL = 1e-4  # per token, CPU ranks (test_prompt_lp.py measured <= 5e-7)
MAX_LENGTH = 40
LL_PAIRS = [("The capital of France is", " Paris"), ("Question: 2 + 2 =", " 4"),
            ("She opened the door and", " walked into the garden."), ("def add(a, b):", "\n    return a + b")]
ROLLING = ("It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
           "foolishness, it was the epoch of belief, it was the epoch of incredulity.")
GEN = ["Once upon a time", "The quick brown fox"]


def check(c, ok, msg):
    log(("ok   " if ok else "FAIL ") + msg)
    c.check(ok, msg)


def detok(srv, ids):
    st, js = srv.post_json("/detokenize", {"tokens": ids})
    if st != 200:
        raise AssertionError("/detokenize -> %d %s" % (st, js))
    return js["prompt"]


def main():
    env = Env.from_args()
    model = env.tiny_model()
    ref = lmeval_check.Reference(env.moeserve, model, env.workdir)
    c = Checks()
    with Server(env, model) as srv:
        served = json.loads(srv.request("GET", "/v1/models")[2])["data"][0]["id"]
        lm = LocalCompletionsAPI(base_url="http://127.0.0.1:%d/v1/completions" % srv.port, model=served,
                                 tokenizer_backend="auto", max_length=MAX_LENGTH, max_retries=1, num_concurrent=1)
        check(c, lm.tokenizer_backend == "remote", "lm-eval picked tokenizer backend %r (want remote: /tokenizer_info)"
                % lm.tokenizer_backend)
        log("lm-eval: backend %s, prefix token %s, eos %r" % (lm.tokenizer_backend, lm.prefix_token_id, lm.eos_string))

        # loglikelihood
        reqs = [Instance("loglikelihood", {}, p, i) for i, p in enumerate(LL_PAIRS)]
        got = lm.loglikelihood(reqs, disable_tqdm=True)
        for (ctx, cont), (g_sum, g_greedy) in zip(LL_PAIRS, got):
            ce, ne = lm._encode_pair(ctx, cont)
            w_sum, w_greedy = ref.score(ce + ne, len(ce))
            check(c, abs(g_sum - w_sum) <= TOL * len(ne) and g_greedy == w_greedy,
                    "loglikelihood %r: lm-eval (%.6f, %s), reference (%.6f, %s) over %d tokens" %
                    ((ctx, cont), g_sum, g_greedy, w_sum, w_greedy, len(ne)))
        # a continuation of the model's own greedy tokens (re-encoded as lm-eval does it)
        ctx = "Once upon a time"
        ids = lm.tok_encode(ctx)
        for _ in range(3):
            ids.append(ref.greedy(ids))
        cont = detok(srv, ids[len(lm.tok_encode(ctx)):])
        ce, ne = lm._encode_pair(ctx, cont)
        w_sum, w_greedy = ref.score(ce + ne, len(ce))
        (g_sum, g_greedy), = lm.loglikelihood([Instance("loglikelihood", {}, (ctx, cont), 0)], disable_tqdm=True)
        check(c, abs(g_sum - w_sum) <= TOL * len(ne) and g_greedy == w_greedy,
                "greedy continuation %r: lm-eval (%.6f, %s), reference (%.6f, %s)" %
                (cont, g_sum, g_greedy, w_sum, w_greedy))
        check(c, w_greedy == (ce + ne == ids), "the re-encoded greedy continuation is greedy in the reference "
                "exactly when its tokens are the greedy ones")

        # loglikelihood_rolling
        (g_roll,) = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (ROLLING,), 0)],
                                             disable_tqdm=True)
        toks = lm.tok_encode(ROLLING)
        windows = [lm_utils.make_disjoint_window(w) for w in lm_utils.get_rolling_token_windows(
            token_list=toks, prefix_token=lm.prefix_token_id, max_seq_len=lm.max_length - 1, context_len=1)]
        w_roll = sum(ref.score(a + b, len(a))[0] for a, b in windows)
        check(c, len(windows) >= 2 and abs(g_roll - w_roll) <= TOL * len(toks),
                "loglikelihood_rolling over %d tokens in %d windows: lm-eval %.6f, reference %.6f" %
                (len(toks), len(windows), g_roll, w_roll))

        # generate_until
        gk = {"until": ["\n\n"], "max_gen_toks": 8, "do_sample": False}
        outs = lm.generate_until([Instance("generate_until", {}, (g, dict(gk)), i) for i, g in enumerate(GEN)],
                                 disable_tqdm=True)
        eos = json.loads(srv.request("GET", "/tokenizer_info")[2]).get("eos_token_id")
        for g, text in zip(GEN, outs):
            ids = lm.tok_encode(g)
            cont = []
            for _ in range(8):
                t = ref.greedy(ids + cont)
                if t == eos:
                    break
                cont.append(t)
            want = detok(srv, cont).split("\n\n")[0]
            check(c, text == want, "generate_until %r: lm-eval %r, reference %r" % (g, text, want))
    c.done()


if __name__ == "__main__":
    main()
