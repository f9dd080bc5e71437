"""test_api.py — the OpenAI-compatible HTTP API end to end against one real
server (mpirun -np 2, tensor parallel, the tiny model with the real
tokenizer, configs/tiny-cpu.yaml with a small request-body limit).

Every check is named; a failing check logs its name, the request and what
came back, and the script goes on to the next check (exit 1 at the end if
any failed). What is covered:
  info endpoints: /health, /v1/models (served name = MODEL as given),
      /version, /metrics (promtool check metrics + the expected families);
  completions: the seed's request (greedy parity with `moeserve generate`),
      every prompt form, add_special_tokens, echo, stop strings,
      stop_token_ids, ignore_eos, min_tokens, seeded sampling (also under
      concurrency), logprobs;
  streaming: SSE framing, [DONE], text == non-streamed, include_usage;
  chat: non-streamed and streamed;
  errors: each bad request -> its status + an OpenAI-style error body (413
      included: the issue asks it of every error), and
      the server still answers correctly afterwards;
  load: 36 concurrent completions with exact token counts;
  disconnect: a client that hangs up mid-stream frees its KV blocks.
"""
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Checks, Env, Server, log, raw_exchange  # noqa: E402

SEED_IDS = [0, 15382, 344, 2010, 4404, 33]  # "Where is New York?" with BOS
SEED_TEXT = "Where is New York?"
MAX_BODY = 8192        # moeserve.max_body_bytes for this server (413 above)
MAX_SEQ_LEN = 1024     # configs/tiny-cpu.yaml
VOCAB = 129280         # the real DeepSeek-V3 tokenizer / tiny preset vocabulary
PROMTOOL = "/usr/bin/promtool"


# -- helpers -----------------------------------------------------------------

def parallel(fns, timeout=120):
    out = [None] * len(fns)

    def run(i, f):
        try:
            out[i] = f()
        except Exception as e:  # noqa: BLE001 - the caller reports it
            out[i] = e

    ts = [threading.Thread(target=run, args=(i, f), daemon=True) for i, f in enumerate(fns)]
    for t in ts:
        t.start()
    deadline = time.time() + timeout
    for t in ts:
        t.join(timeout=max(0.1, deadline - time.time()))
    return [o if not t.is_alive() else TimeoutError("no answer in %d s" % timeout) for o, t in zip(out, ts)]


def detok(env, model, ids_list):
    """`moeserve detokenize --skip-special` (the server's skip_special_tokens default)."""
    r = subprocess.run([env.moeserve, "detokenize", model, "--skip-special"],
                       input="".join(json.dumps(i) + "\n" for i in ids_list), capture_output=True, text=True,
                       timeout=60)
    if r.returncode != 0:
        raise RuntimeError("detokenize failed: " + r.stderr[-1000:])
    return [json.loads(x) for x in r.stdout.splitlines() if x.strip()]


def post(srv, path, body, timeout=60):
    """(status, parsed JSON or None, raw bytes)."""
    st, _, raw = srv.request("POST", path, body, timeout=timeout)
    try:
        js = json.loads(raw)
    except ValueError:
        js = None
    return st, js, raw


def comp(c, srv, body, what, timeout=60):
    """A completion expected to succeed; returns the JSON or None (after a failed check)."""
    st, js, raw = post(srv, "/v1/completions", body, timeout)
    if not c.check(st == 200 and isinstance(js, dict), "%s: POST /v1/completions %s -> %d %r"
                   % (what, json.dumps(body)[:300], st, raw[:400])):
        return None
    return js


def sse(srv, path, body, timeout=60):
    """(status, list of raw 'data:' payload strings, all lines seen)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=timeout)
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        ctype = r.getheader("Content-Type", "")
        if r.status != 200:
            return r.status, [r.read()[:400]], ctype
        datas = []
        for raw in r:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("data:"):
                datas.append(line[5:].strip())
        return r.status, datas, ctype
    finally:
        conn.close()


def metrics_text(srv):
    st, _, raw = srv.request("GET", "/metrics", timeout=10)
    if st != 200:
        raise AssertionError("/metrics -> %d" % st)
    return raw.decode()


def gauge(srv, name):
    return srv.metrics().get(name)


# -- info endpoints ------------------------------------------------------------

def t_health(c, srv, model):
    st, _, raw = srv.request("GET", "/health", timeout=10)
    c.check(st == 200, "GET /health -> %d %r (want 200 when ready)" % (st, raw[:200]))
    st, _, raw = srv.request("HEAD", "/health", timeout=10)
    c.check(st == 200 and raw == b"", "HEAD /health -> %d %r (want 200, no body)" % (st, raw[:200]))


def t_models(c, srv, model):
    st, _, raw = srv.request("GET", "/v1/models", timeout=10)
    if not c.check(st == 200, "GET /v1/models -> %d %r" % (st, raw[:200])):
        return
    js = json.loads(raw)
    ids = [m.get("id") for m in js.get("data", [])]
    c.check(js.get("object") == "list", "/v1/models object %r (want 'list')" % js.get("object"))
    c.check(ids == [model], "/v1/models ids %r (want exactly the MODEL argument %r)" % (ids, model))
    c.check(all(m.get("object") == "model" for m in js.get("data", [])), "/v1/models entries: %r" % js)


def t_version(c, srv, model):
    st, h, raw = srv.request("GET", "/version", timeout=10)
    if not c.check(st == 200, "GET /version -> %d %r" % (st, raw[:200])):
        return
    try:
        js = json.loads(raw)
    except ValueError:
        js = None
    c.check(isinstance(js, dict) and isinstance(js.get("version"), str) and js["version"],
            "GET /version body is not JSON with a non-empty 'version': %r" % raw[:200])


def t_metrics(c, srv, model):
    text = metrics_text(srv)
    if not c.check(os.path.exists(PROMTOOL), "%s not found: run scripts/setup.sh (installs Debian's prometheus "
                                             "package) so the /metrics format can be checked" % PROMTOOL):
        pass
    else:
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        c.check(r.returncode == 0, "promtool check metrics failed (rc %d): %s %s" % (r.returncode, r.stdout[-1500:],
                                                                                   r.stderr[-1500:]))
    types = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(None, 3)
            types[name] = typ
    want = {"moeserve_requests_total": "counter", "moeserve_prompt_tokens_total": "counter",
            "moeserve_generation_tokens_total": "counter",
            "moeserve_time_to_first_token_seconds": "histogram",
            "moeserve_time_per_output_token_seconds": "histogram",
            "moeserve_e2e_request_latency_seconds": "histogram",
            "moeserve_num_requests_running": "gauge", "moeserve_num_requests_waiting": "gauge",
            "moeserve_kv_cache_blocks_used": "gauge", "moeserve_kv_cache_blocks_free": "gauge"}
    for name, typ in want.items():
        c.check(types.get(name) == typ, "/metrics: %s has TYPE %r (want %s)" % (name, types.get(name), typ))
    for h in ("time_to_first_token_seconds", "time_per_output_token_seconds", "e2e_request_latency_seconds"):
        for suffix in ('_bucket{le="+Inf"}', "_sum", "_count"):
            c.check(("moeserve_%s%s " % (h, suffix)) in text, "/metrics lacks moeserve_%s%s" % (h, suffix))


def t_metrics_count(c, srv, model, before):
    """After the completions ran, the counters moved."""
    m = srv.metrics()
    for k in ("moeserve_prompt_tokens_total", "moeserve_generation_tokens_total",
              "moeserve_time_to_first_token_seconds_count", "moeserve_e2e_request_latency_seconds_count"):
        c.check(m.get(k, 0) > before.get(k, 0), "/metrics %s did not grow (%r -> %r)" % (k, before.get(k),
                                                                                       m.get(k)))
    c.check(m.get('moeserve_requests_total{finish_reason="length"}', 0) >
            before.get('moeserve_requests_total{finish_reason="length"}', 0), "requests_total{length} did not grow")


# -- completions -----------------------------------------------------------------

def t_seed_request(c, srv, model, ref):
    body = {"model": model, "prompt": SEED_TEXT, "max_tokens": 16, "temperature": 0}
    js = comp(c, srv, body, "seed request")
    if not js:
        return
    c.check(isinstance(js.get("id"), str) and js["id"].startswith("cmpl-"), "id %r (want 'cmpl-...')" % js.get("id"))
    c.check(js.get("object") == "text_completion", "object %r" % js.get("object"))
    c.check(js.get("model") == model, "model %r (want %r)" % (js.get("model"), model))
    c.check(isinstance(js.get("created"), int) and abs(js["created"] - time.time()) < 3600,
            "created %r" % js.get("created"))
    u = js.get("usage", {})
    c.check((u.get("prompt_tokens"), u.get("completion_tokens"), u.get("total_tokens")) == (6, 16, 22),
            "usage %r (want prompt 6, completion 16, total 22)" % u)
    ch = js.get("choices") or [{}]
    c.check(len(ch) == 1 and ch[0].get("index") == 0, "choices %r" % ch)
    c.check(ch[0].get("finish_reason") == "length", "finish_reason %r (want 'length')" % ch[0].get("finish_reason"))
    c.check(ch[0].get("text") == ref["text16"], "text %r != single-process `moeserve generate` greedy %r (ids %s)"
            % (ch[0].get("text"), ref["text16"], ref["ids16"]))


def t_prompt_forms(c, srv, model, ref):
    other = [0, 1000, 2000, 3000]
    # list of strings -> one choice per prompt, in order
    js = comp(c, srv, {"prompt": [SEED_TEXT, "Hello"], "max_tokens": 16, "temperature": 0, "ignore_eos": True},
              "list of strings")
    if js:
        chs = js.get("choices", [])
        c.check(sorted(ch.get("index") for ch in chs) == [0, 1], "list of strings: indices %r (want [0, 1])"
                % [ch.get("index") for ch in chs])
        by = {ch.get("index"): ch for ch in chs}
        c.check(by.get(0, {}).get("text") == ref["text16"], "list of strings: choice 0 %r != %r"
                % (by.get(0, {}).get("text"), ref["text16"]))
        c.check(by.get(1, {}).get("text"), "list of strings: choice 1 has no text")
        u = js.get("usage", {})
        c.check(u.get("completion_tokens") == 32, "list of strings: usage %r (want 32 completion tokens)" % u)
    # token ids
    js = comp(c, srv, {"prompt": SEED_IDS, "max_tokens": 16, "temperature": 0}, "token ids")
    if js:
        c.check(js["choices"][0].get("text") == ref["text16"], "token ids: %r != %r" % (js["choices"][0].get("text"),
                                                                                        ref["text16"]))
        c.check(js.get("usage", {}).get("prompt_tokens") == 6, "token ids: usage %r" % js.get("usage"))
    # list of token-id lists
    js = comp(c, srv, {"prompt": [SEED_IDS, other], "max_tokens": 16, "temperature": 0, "ignore_eos": True},
              "list of token-id lists")
    if js:
        by = {ch.get("index"): ch.get("text") for ch in js.get("choices", [])}
        c.check(sorted(by) == [0, 1], "list of id lists: indices %r" % sorted(by))
        c.check(by.get(0) == ref["text16"], "list of id lists: choice 0 %r != %r" % (by.get(0), ref["text16"]))
        c.check(by.get(1) == ref["other16"], "list of id lists: choice 1 %r != generate's %r" % (by.get(1),
                                                                                               ref["other16"]))
        u = js.get("usage", {})
        c.check(u.get("prompt_tokens") == 10 and u.get("completion_tokens") == 32,
                "list of id lists: usage %r (want prompt 10, completion 32)" % u)


def t_add_special(c, srv, model, ref):
    js = comp(c, srv, {"prompt": SEED_TEXT, "max_tokens": 4, "temperature": 0, "add_special_tokens": False},
              "add_special_tokens false")
    if js:
        c.check(js.get("usage", {}).get("prompt_tokens") == 5,
                "add_special_tokens false: usage %r (want prompt_tokens 5: no BOS)" % js.get("usage"))


def t_echo(c, srv, model, ref):
    js = comp(c, srv, {"prompt": SEED_TEXT, "max_tokens": 16, "temperature": 0, "echo": True}, "echo")
    if js:
        t = js["choices"][0].get("text")
        c.check(t == SEED_TEXT + ref["text16"], "echo: text %r (want prompt + completion %r)"
                % (t, SEED_TEXT + ref["text16"]))


def t_stop_string(c, srv, model, ref):
    full = ref["text16"]
    # a stop string from the middle of the greedy text, not whitespace only
    stop = None
    for p in range(2, len(full) - 3):
        cand = full[p:p + 3]
        if cand.strip() and full.find(cand) == p:
            stop = cand
            break
    if not c.check(stop is not None, "no usable stop string in the reference text %r" % full):
        return
    js = comp(c, srv, {"prompt": SEED_IDS, "max_tokens": 16, "temperature": 0, "stop": [stop, "zz-never-in-output-zz"]},
              "stop string")
    if js:
        ch = js["choices"][0]
        c.check(stop not in ch.get("text", stop), "stop %r: text %r contains it" % (stop, ch.get("text")))
        c.check(ch.get("text") == full[:full.find(stop)], "stop %r: text %r (want %r)"
                % (stop, ch.get("text"), full[:full.find(stop)]))
        c.check(ch.get("finish_reason") == "stop", "stop %r: finish_reason %r (want 'stop')"
                % (stop, ch.get("finish_reason")))
        c.check(js["usage"]["completion_tokens"] < 16, "stop: usage %r" % js["usage"])
    # a plain string stop too (not a list)
    js = comp(c, srv, {"prompt": SEED_IDS, "max_tokens": 16, "temperature": 0, "stop": stop}, "stop as a string")
    if js:
        c.check(js["choices"][0].get("finish_reason") == "stop" and stop not in js["choices"][0].get("text", stop),
                "stop as a string: %r" % js["choices"][0])


def t_stop_token_ids(c, srv, model, ref):
    ids = ref["ids16"]
    k = next((i for i in range(2, len(ids)) if ids[i] not in ids[:i]), None)
    if not c.check(k is not None, "no first-occurrence token in %r" % ids):
        return
    js = comp(c, srv, {"prompt": SEED_IDS, "max_tokens": 16, "temperature": 0, "stop_token_ids": [ids[k]]},
              "stop_token_ids")
    if js:
        ch = js["choices"][0]
        c.check(ch.get("finish_reason") == "stop", "stop_token_ids [%d]: finish_reason %r (want 'stop')"
                % (ids[k], ch.get("finish_reason")))
        c.check(js["usage"]["completion_tokens"] == k + 1, "stop_token_ids [%d] (greedy position %d): usage %r "
                "(want %d completion tokens, the stop token counted)" % (ids[k], k, js["usage"], k + 1))
        c.check(ch.get("text") == ref["prefix_k"][k], "stop_token_ids: text %r (want the text before it, %r)"
                % (ch.get("text"), ref["prefix_k"][k]))
    ref["stop_k"] = k


def t_ignore_eos_min_tokens(c, srv, model, ref):
    js = comp(c, srv, {"prompt": SEED_IDS, "max_tokens": 40, "temperature": 0, "ignore_eos": True}, "ignore_eos")
    if js:
        c.check(js["usage"]["completion_tokens"] == 40 and js["choices"][0]["finish_reason"] == "length",
                "ignore_eos max_tokens 40: usage %r finish %r" % (js["usage"], js["choices"][0]["finish_reason"]))
    # min_tokens: stopping (EOS, stop ids, stop strings) only counts after min_tokens
    k = ref.get("stop_k")
    if k is not None:
        n = k + 4
        js = comp(c, srv, {"prompt": SEED_IDS, "max_tokens": n, "min_tokens": n, "temperature": 0,
                           "stop_token_ids": [ref["ids16"][k]]}, "min_tokens")
        if js:
            c.check(js["usage"]["completion_tokens"] == n and js["choices"][0]["finish_reason"] == "length",
                    "min_tokens %d with stop token at %d: usage %r finish %r (want %d tokens, 'length')"
                    % (n, k, js["usage"], js["choices"][0]["finish_reason"], n))
            c.check(js["choices"][0]["text"] == ref["prefix_k"][n], "min_tokens: text %r (want greedy %r)"
                    % (js["choices"][0]["text"], ref["prefix_k"][n]))


def t_seed(c, srv, model, ref):
    body = {"prompt": "Once upon a time", "max_tokens": 10, "temperature": 1.0, "seed": 1234, "ignore_eos": True}
    t0 = time.time()
    a = comp(c, srv, body, "seed a")
    b = comp(c, srv, body, "seed b")
    other = comp(c, srv, dict(body, seed=99), "seed other")
    if not (a and b and other):
        return
    ta, tb = a["choices"][0]["text"], b["choices"][0]["text"]
    c.check(ta == tb, "same seed, same prompt, temperature 1: %r != %r" % (ta, tb))
    c.check(other["choices"][0]["text"] != ta, "seed 99 gave the same text as seed 1234 (%r): seed ignored?" % ta)
    greedy = comp(c, srv, dict(body, temperature=0), "seed greedy")
    if greedy:
        c.check(greedy["choices"][0]["text"] != ta, "temperature 1 sampled exactly the greedy text %r" % ta)
    # the same request while other requests share the batch
    noise = [{"prompt": [0] + [300 + 11 * i + j for j in range(3 + i)], "max_tokens": 6 + i, "temperature": 0.7,
              "ignore_eos": True} for i in range(6)]
    fns = [lambda b=b: post(srv, "/v1/completions", b) for b in noise]
    fns[3:3] = [lambda: post(srv, "/v1/completions", body)]
    fns.append(lambda: post(srv, "/v1/completions", body))
    log("seed: sequential part %.2f s" % (time.time() - t0))
    t0 = time.time()
    res = parallel(fns)
    log("seed: concurrent part %.2f s" % (time.time() - t0))
    seeded = [res[3], res[-1]]
    for i, r in enumerate(seeded):
        if not c.check(isinstance(r, tuple) and r[0] == 200, "seeded request under load -> %r" % (r,)):
            continue
        t = r[1]["choices"][0]["text"]
        c.check(t == ta, "seed 1234 under load (copy %d): %r != alone %r" % (i, t, ta))


def t_sampling_knobs(c, srv, model, ref):
    """top_k 1 and a tiny top_p leave only the most likely token: greedy text at any temperature."""
    for extra in ({"top_k": 1}, {"top_p": 1e-6}, {"top_k": -1, "top_p": 1e-6}):
        body = dict({"prompt": SEED_IDS, "max_tokens": 8, "temperature": 1.5, "seed": 7, "ignore_eos": True}, **extra)
        js = comp(c, srv, body, "sampling %r" % extra)
        if js:
            c.check(js["choices"][0]["text"] == ref["prefix_k"][8], "temperature 1.5 with %r: %r (want greedy %r)"
                    % (extra, js["choices"][0]["text"], ref["prefix_k"][8]))
    for bad in ({"top_p": 0}, {"top_p": 1.5}, {"top_k": -2}, {"seed": "x"}, {"stop": [1]}, {"stop": [""]},
                {"stop_token_ids": [VOCAB]}, {"logprobs": 21}, {"ignore_eos": "yes"}):
        st, _, raw = srv.request("POST", "/v1/completions", dict({"prompt": SEED_IDS, "max_tokens": 2}, **bad),
                                 timeout=20)
        check_error(c, "sampling field %r" % bad, st, raw, 400)


def t_logprobs(c, srv, model, ref):
    js = comp(c, srv, {"prompt": SEED_IDS, "max_tokens": 5, "temperature": 0, "logprobs": 2}, "logprobs")
    if not js:
        return
    lp = js["choices"][0].get("logprobs")
    if not c.check(isinstance(lp, dict), "logprobs: 'logprobs' is %r (want an object)" % lp):
        return
    for k in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
        c.check(isinstance(lp.get(k), list) and len(lp[k]) == 5, "logprobs.%s: %r (want a list of 5)"
                % (k, lp.get(k)))
    tops = lp.get("top_logprobs") or []
    for i, t in enumerate(tops):
        c.check(isinstance(t, dict) and len(t) == 2, "logprobs.top_logprobs[%d] = %r (want 2 entries)" % (i, t))
        if isinstance(t, dict) and t:
            vals = list(t.values())
            c.check(all(isinstance(v, (int, float)) and v <= 0 for v in vals), "top_logprobs[%d] values %r" % (i, t))
            # greedy: the sampled token is the most likely one
            tl = lp["token_logprobs"][i]
            c.check(abs(max(vals) - tl) < 1e-4, "greedy token %d logprob %r is not the top one %r" % (i, tl, t))
    c.check("".join(lp.get("tokens") or []) == js["choices"][0]["text"], "logprobs.tokens %r do not spell the "
            "text %r" % (lp.get("tokens"), js["choices"][0]["text"]))


# -- streaming -------------------------------------------------------------------

def t_stream(c, srv, model, ref):
    st, datas, ctype = sse(srv, "/v1/completions", {"model": model, "prompt": SEED_TEXT, "max_tokens": 16,
                                                    "temperature": 0, "stream": True})
    if not c.check(st == 200, "stream -> %d %r" % (st, datas)):
        return
    c.check(ctype.startswith("text/event-stream"), "stream Content-Type %r" % ctype)
    c.check(datas and datas[-1] == "[DONE]", "stream does not end with 'data: [DONE]': last %r" % datas[-1:])
    c.check(datas.count("[DONE]") == 1, "[DONE] appears %d times" % datas.count("[DONE]"))
    evs = [json.loads(d) for d in datas if d != "[DONE]"]
    c.check(len(evs) >= 2, "only %d chunks for 16 tokens with stream_interval 1" % len(evs))
    c.check(all(e.get("object") == "text_completion" and e.get("id", "").startswith("cmpl-") for e in evs),
            "chunk object/id: %r" % [(e.get("object"), e.get("id")) for e in evs[:3]])
    c.check(len({e.get("id") for e in evs}) == 1, "chunks carry different ids")
    c.check(all(e.get("model") == model for e in evs), "chunk model != %r" % model)
    text = "".join((e.get("choices") or [{}])[0].get("text") or "" for e in evs if e.get("choices"))
    c.check(text == ref["text16"], "streamed text %r != non-streamed greedy %r" % (text, ref["text16"]))
    fins = [e["choices"][0].get("finish_reason") for e in evs if e.get("choices")]
    c.check(fins and fins[-1] == "length" and all(f is None for f in fins[:-1]),
            "finish reasons %r (want None... then 'length')" % fins)
    c.check(not any(e.get("usage") for e in evs), "usage chunk without stream_options.include_usage")


def t_stream_usage(c, srv, model, ref):
    st, datas, _ = sse(srv, "/v1/completions", {"prompt": SEED_TEXT, "max_tokens": 16, "temperature": 0,
                                                "stream": True, "stream_options": {"include_usage": True}})
    if not c.check(st == 200 and datas and datas[-1] == "[DONE]", "stream include_usage -> %d %r" % (st, datas[-2:])):
        return
    evs = [json.loads(d) for d in datas if d != "[DONE]"]
    last = evs[-1] if evs else {}
    u = last.get("usage") or {}
    c.check((u.get("prompt_tokens"), u.get("completion_tokens"), u.get("total_tokens")) == (6, 16, 22),
            "final usage chunk %r (want 6/16/22)" % last)
    c.check(last.get("choices") == [], "usage chunk choices %r (want [])" % last.get("choices"))


# -- chat ------------------------------------------------------------------------

CHAT = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": SEED_TEXT}]


def t_chat(c, srv, model, ref):
    st, js, raw = post(srv, "/v1/chat/completions", {"model": model, "messages": CHAT, "max_tokens": 8,
                                                     "temperature": 0, "ignore_eos": True})
    if not c.check(st == 200 and isinstance(js, dict), "chat -> %d %r" % (st, raw[:400])):
        return
    c.check(js.get("object") == "chat.completion", "chat object %r" % js.get("object"))
    c.check(js.get("id", "").startswith("chatcmpl-"), "chat id %r (want 'chatcmpl-...')" % js.get("id"))
    c.check(js.get("model") == model, "chat model %r" % js.get("model"))
    ch = (js.get("choices") or [{}])[0]
    msg = ch.get("message") or {}
    c.check(msg.get("role") == "assistant" and isinstance(msg.get("content"), str) and msg["content"],
            "chat message %r (want role assistant with content)" % msg)
    c.check(ch.get("finish_reason") == "length", "chat finish_reason %r" % ch.get("finish_reason"))
    c.check(js.get("usage", {}).get("completion_tokens") == 8, "chat usage %r" % js.get("usage"))
    ref["chat"] = msg.get("content")
    # a multi-turn conversation (system, user, assistant, user) is accepted
    turns = CHAT + [{"role": "assistant", "content": "In New York State."}, {"role": "user", "content": "Sure?"}]
    st, js2, raw = post(srv, "/v1/chat/completions", {"messages": turns, "max_tokens": 4, "temperature": 0,
                                                      "ignore_eos": True})
    c.check(st == 200 and js2["usage"]["completion_tokens"] == 4 and
            js2["usage"]["prompt_tokens"] > js["usage"]["prompt_tokens"],
            "multi-turn chat -> %d %r (want 200, 4 tokens, a longer prompt than %r)" % (st, raw[:300], js["usage"]))


def t_tokenizer_endpoints(c, srv, model, ref):
    """POST /tokenize, POST /detokenize, GET /tokenizer_info (vLLM's shapes) and chat prompt_token_ids."""
    seed_ids = [0, 15382, 344, 2010, 4404, 33]  # README: "Where is New York?" with BOS
    st, js, raw = post(srv, "/tokenize", {"model": model, "prompt": "Where is New York?"})
    c.check(st == 200 and js.get("tokens") == seed_ids and js.get("count") == 6 and js.get("token_strs") is None,
            "/tokenize prompt -> %d %r (want the README's ids)" % (st, raw[:300]))
    max_model_len = js.get("max_model_len") if isinstance(js, dict) else None
    st, js, raw = post(srv, "/tokenize", {"prompt": "Where is New York?", "add_special_tokens": False,
                                          "return_token_strs": True})
    c.check(st == 200 and js.get("tokens") == seed_ids[1:] and "".join(js.get("token_strs") or []) ==
            "Where is New York?", "/tokenize without special tokens, with strings -> %d %r" % (st, raw[:300]))
    st, js, raw = post(srv, "/tokenize", {"prompt": ""})
    c.check(st == 200 and js.get("count") == 0 and js.get("tokens") == [], "/tokenize '' -> %d %r" % (st, raw[:200]))
    # a chat conversation counts exactly as the chat endpoint's usage.prompt_tokens
    st, tj, raw = post(srv, "/tokenize", {"messages": CHAT})
    st2, cj, raw2 = post(srv, "/v1/chat/completions", {"messages": CHAT, "max_tokens": 4, "temperature": 0,
                                                        "ignore_eos": True})
    ok = st == 200 and st2 == 200
    c.check(ok and tj["count"] == cj["usage"]["prompt_tokens"],
            "/tokenize messages %d %r vs chat usage %d %r" % (st, raw[:200], st2, raw2[:300]))
    # trtllm-serve's chat prompt_token_ids: the same ids give the same greedy reply as the messages
    if ok:
        st3, pj, raw3 = post(srv, "/v1/chat/completions", {"prompt_token_ids": tj["tokens"], "max_tokens": 4,
                                                            "temperature": 0, "ignore_eos": True})
        c.check(st3 == 200 and pj["choices"][0]["message"]["content"] == cj["choices"][0]["message"]["content"] and
                pj["usage"]["prompt_tokens"] == tj["count"],
                "chat prompt_token_ids -> %d %r (want %r)" % (st3, raw3[:300], cj["choices"][0]["message"]))
    st, js, raw = post(srv, "/detokenize", {"model": model, "tokens": seed_ids})
    c.check(st == 200 and js.get("prompt") == "<\uff5cbegin\u2581of\u2581sentence\uff5c>Where is New York?",
            "/detokenize -> %d %r" % (st, raw[:200]))
    st, _, raw = srv.request("GET", "/tokenizer_info")
    js = json.loads(raw) if st == 200 else {}
    c.check(st == 200 and js.get("bos_token_id") == 0 and js.get("eos_token_id") == 1 and
            js.get("add_bos_token") is True and js.get("bos_token") == "<\uff5cbegin\u2581of\u2581sentence\uff5c>"
            and js.get("model_max_length") == max_model_len and max_model_len > 16,
            "/tokenizer_info -> %d %r (model_max_length = /tokenize's max_model_len %r)" % (st, raw[:300], max_model_len))
    for path, body, want, param in [
            ("/tokenize", {}, 400, "prompt"),
            ("/tokenize", {"prompt": "a", "messages": CHAT}, 400, "messages"),
            ("/tokenize", {"prompt": "a", "model": "nope"}, 404, "model"),
            ("/tokenize", {"prompt": "a", "bogus": 1}, 400, "bogus"),
            ("/detokenize", {"tokens": [10 ** 9]}, 400, "tokens"),
            ("/detokenize", {"tokens": "abc"}, 400, "tokens"),
            ("/v1/chat/completions", {"prompt_token_ids": [-1], "max_tokens": 1}, 400, "prompt_token_ids")]:
        st, js, raw = post(srv, path, body)
        c.check(st == want and isinstance(js, dict) and js.get("error", {}).get("param") == param,
                "%s %s -> %d %r (want %d naming %s)" % (path, json.dumps(body)[:80], st, raw[:200], want, param))
    st, _, _ = srv.request("GET", "/tokenize")
    c.check(st == 405, "GET /tokenize -> %d (want 405)" % st)


def t_chat_stream(c, srv, model, ref):
    st, datas, ctype = sse(srv, "/v1/chat/completions", {"model": model, "messages": CHAT, "max_tokens": 8,
                                                         "temperature": 0, "ignore_eos": True, "stream": True})
    if not c.check(st == 200 and datas and datas[-1] == "[DONE]", "chat stream -> %d %r" % (st, datas[-2:])):
        return
    evs = [json.loads(d) for d in datas if d != "[DONE]"]
    c.check(all(e.get("object") == "chat.completion.chunk" for e in evs),
            "chat chunk objects %r" % {e.get("object") for e in evs})
    deltas = [e["choices"][0].get("delta", {}) for e in evs if e.get("choices")]
    c.check(deltas and deltas[0].get("role") == "assistant", "first chat delta %r (want role assistant)"
            % deltas[:1])
    text = "".join(d.get("content") or "" for d in deltas)
    if ref.get("chat") is not None:
        c.check(text == ref["chat"], "streamed chat %r != non-streamed %r" % (text, ref["chat"]))
    fins = [e["choices"][0].get("finish_reason") for e in evs if e.get("choices")]
    c.check(fins and fins[-1] == "length", "chat stream finish reasons %r" % fins)


# -- errors ----------------------------------------------------------------------

def raw_http(srv, data, timeout=20):
    """Send raw bytes, read the whole reply; (status, body bytes)."""
    got, _ = raw_exchange(srv.port, data, timeout=timeout)
    head, _, body = got.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else None
    return status, body


def check_error(c, what, st, raw, want):
    c.check(st == want, "%s: status %r (want %d); body %r" % (what, st, want, raw[:300]))
    try:
        js = json.loads(raw)
    except ValueError:
        js = None
    err = js.get("error") if isinstance(js, dict) else None
    c.check(isinstance(err, dict) and isinstance(err.get("message"), str) and err["message"]
            and isinstance(err.get("type"), str),
            "%s: body is not OpenAI-style {\"error\": {\"message\", \"type\", ...}}: %r" % (what, raw[:300]))


def t_errors(c, srv, model, ref):
    base = {"prompt": SEED_IDS, "max_tokens": 4}
    cases = [
        ("malformed JSON", "POST", "/v1/completions", b'{"prompt": "x", "max_tokens": ', 400),
        ("JSON not an object", "POST", "/v1/completions", b'[1, 2]', 400),
        ("max_tokens \"x\"", "POST", "/v1/completions", dict(base, max_tokens="x"), 400),
        ("temperature as a string", "POST", "/v1/completions", dict(base, temperature="hot"), 400),
        ("unknown field", "POST", "/v1/completions", dict(base, frobnicate=1), 400),
        ("missing prompt", "POST", "/v1/completions", {"max_tokens": 4}, 400),
        ("empty prompt string", "POST", "/v1/completions", dict(base, prompt=""), 400),
        ("empty prompt list", "POST", "/v1/completions", dict(base, prompt=[]), 400),
        ("prompt + max_tokens > max_seq_len", "POST", "/v1/completions",
         dict(base, max_tokens=MAX_SEQ_LEN - len(SEED_IDS) + 1), 400),
        ("token id out of range", "POST", "/v1/completions", dict(base, prompt=[0, VOCAB]), 400),
        ("negative token id", "POST", "/v1/completions", dict(base, prompt=[0, -1]), 400),
        ("n=17", "POST", "/v1/completions", dict(base, n=17), 400),
        ("min_tokens > max_tokens", "POST", "/v1/completions", dict(base, min_tokens=5), 400),
        ("negative temperature", "POST", "/v1/completions", dict(base, temperature=-1), 400),
        ("chat without messages", "POST", "/v1/chat/completions", {"max_tokens": 4}, 400),
        ("chat unknown role", "POST", "/v1/chat/completions",
         {"messages": [{"role": "wizard", "content": "x"}], "max_tokens": 2}, 400),
        ("chat messages not a list", "POST", "/v1/chat/completions", {"messages": "hi", "max_tokens": 2}, 400),
        ("chat empty messages", "POST", "/v1/chat/completions", {"messages": [], "max_tokens": 2}, 400),
        ("chat malformed JSON", "POST", "/v1/chat/completions", b"{", 400),
        ("wrong model", "POST", "/v1/completions", dict(base, model="no-such-model"), 404),
        ("chat wrong model", "POST", "/v1/chat/completions", {"model": "nope", "messages": CHAT}, 404),
        ("unknown route", "GET", "/v1/nothing", None, 404),
        ("unknown POST route", "POST", "/v2/completions", base, 404),
        ("wrong method GET /v1/completions", "GET", "/v1/completions", None, 405),
        ("wrong method DELETE /v1/models", "DELETE", "/v1/models", None, 405),
    ]
    for what, method, path, body, want in cases:
        st, h, raw = srv.request(method, path, body, timeout=20)
        check_error(c, "%s (%s %s)" % (what, method, path), st, raw, want)
        c.check(h.get("Content-Type", "").startswith("application/json"), "%s: Content-Type %r"
                % (what, h.get("Content-Type")))
        if want == 405:
            c.check(h.get("Allow"), "%s: 405 without an Allow header" % what)
    # stream: the error comes as a normal JSON reply before any SSE starts
    st, _, raw = srv.request("POST", "/v1/completions", dict(base, max_tokens="x", stream=True), timeout=20)
    check_error(c, "stream with a bad field", st, raw, 400)
    # after all that, a normal request still gives the right answer
    after_ok(c, srv, model, ref, "after the errors")


def t_body_limit(c, srv, model, ref):
    """413 above moeserve.max_body_bytes (MAX_BODY here), with an OpenAI-style body like every other error."""
    big = json.dumps({"prompt": "x" * (MAX_BODY + 100), "max_tokens": 1}).encode()
    req = (b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nConnection: close\r\n"
           b"Content-Length: %d\r\n\r\n" % len(big)) + big
    st, raw = raw_http(srv, req)
    check_error(c, "body of %d bytes over max_body_bytes %d" % (len(big), MAX_BODY), st, raw, 413)
    # a body just under the limit is fine
    ok = json.dumps({"prompt": SEED_TEXT, "max_tokens": 1, "user": "u" * (MAX_BODY - 200)}).encode()
    st, _, raw = srv.request("POST", "/v1/completions", ok, timeout=30)
    c.check(st == 200, "a %d-byte body under the limit -> %d %r" % (len(ok), st, raw[:300]))
    after_ok(c, srv, model, ref, "after the 413")


def after_ok(c, srv, model, ref, what):
    js = comp(c, srv, {"model": model, "prompt": SEED_TEXT, "max_tokens": 16, "temperature": 0}, what)
    if js:
        c.check(js["choices"][0]["text"] == ref["text16"], "%s: %r != %r" % (what, js["choices"][0]["text"],
                                                                          ref["text16"]))
    st, _, _ = srv.request("GET", "/health", timeout=10)
    c.check(st == 200, "/health %s -> %d" % (what, st))


# -- load and disconnect ---------------------------------------------------------

def t_concurrent(c, srv, model, ref, n=36):
    bodies = [{"prompt": [0] + [500 + 13 * i + j for j in range(1 + i % 7)] if i % 3 else "Item %d:" % i,
               "max_tokens": 4 + i % 9, "temperature": 0 if i % 2 else 0.9, "seed": i, "ignore_eos": True}
              for i in range(n)]
    t0 = time.time()
    res = parallel([lambda b=b: post(srv, "/v1/completions", b, timeout=90) for b in bodies], timeout=100)
    dt = time.time() - t0
    ok = 0
    for i, (b, r) in enumerate(zip(bodies, res)):
        if not c.check(isinstance(r, tuple) and r[0] == 200, "concurrent request %d -> %r" % (i, r if not
                                                                                          isinstance(r, tuple)
                                                                                          else r[:2])):
            continue
        u, ch = r[1]["usage"], r[1]["choices"][0]
        if c.check(u["completion_tokens"] == b["max_tokens"] and ch["finish_reason"] == "length",
                   "concurrent request %d: asked %d tokens, usage %r finish %r"
                   % (i, b["max_tokens"], u, ch["finish_reason"])):
            ok += 1
    log("concurrent: %d/%d right in %.1f s" % (ok, n, dt))


def t_disconnect(c, srv, model, ref):
    before = srv.metrics().get('moeserve_requests_total{finish_reason="abort"}', 0)
    body = json.dumps({"prompt": SEED_IDS, "max_tokens": 900, "temperature": 0, "ignore_eos": True, "stream": True})
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
    try:
        s.sendall(("POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                   "Content-Length: %d\r\n\r\n%s" % (len(body), body)).encode())
        got = b""
        deadline = time.time() + 20
        while got.count(b"data: ") < 3 and time.time() < deadline:
            got += s.recv(65536)
        c.check(got.count(b"data: ") >= 3, "not 3 SSE chunks within 20 s: %r" % got[:300])
        # the gauges are published after an engine step: poll briefly
        used, t1 = None, time.time()
        while time.time() - t1 < 3:
            used = gauge(srv, "moeserve_kv_cache_blocks_used")
            if used:
                break
            time.sleep(0.05)
        c.check(used and used > 0, "KV blocks used while a 900-token request streams: %r (want > 0)" % used)
    finally:
        s.close()
    t0 = time.time()
    used = running = None
    while time.time() - t0 < 20:
        m = srv.metrics()
        used, running = m.get("moeserve_kv_cache_blocks_used"), m.get("moeserve_num_requests_running")
        if used == 0 and running == 0:
            break
        time.sleep(0.1)
    c.check(used == 0 and running == 0, "20 s after the client hung up: %r KV blocks used, %r running (want 0, 0)"
            % (used, running))
    after = srv.metrics().get('moeserve_requests_total{finish_reason="abort"}', 0)
    c.check(after == before + 1, "requests_total{abort} %r -> %r (want +1)" % (before, after))
    js = comp(c, srv, {"prompt": SEED_TEXT, "max_tokens": 16, "temperature": 0}, "after disconnect")
    if js:
        c.check(js["choices"][0]["text"] == ref["text16"], "after disconnect: %r" % js["choices"][0]["text"])
    log("disconnect: KV free %.2f s after hang-up" % (time.time() - t0))


# -- main ------------------------------------------------------------------------

def make_config(env):
    with open(os.path.join(env.configs, "tiny-cpu.yaml")) as f:
        base = f.read()
    if "\nmoeserve:\n" not in base:
        raise RuntimeError("configs/tiny-cpu.yaml has no top-level 'moeserve:' block to extend")
    text = base.replace("\nmoeserve:\n", "\nmoeserve:\n  max_body_bytes: %d\n" % MAX_BODY, 1)
    tmp = tempfile.NamedTemporaryFile(mode="w", dir=env.workdir, prefix="api-", suffix=".yaml", delete=False)
    tmp.write(text)
    tmp.close()
    return tmp.name


def main():
    env = Env.from_args()
    model = env.tiny_model()
    c = Checks()
    t_all = time.time()
    # references from the single-process engine (cached across runs)
    ids16 = env.generate(model, SEED_IDS, 16)
    other_ids = env.generate(model, [0, 1000, 2000, 3000], 16)
    texts = detok(env, model, [ids16, other_ids] + [ids16[:k] for k in range(17)])
    ref = {"ids16": ids16, "text16": texts[0], "other16": texts[1], "prefix_k": texts[2:]}
    cfg = make_config(env)
    srv = Server(env, model, np=2, args=["--tp_size", "2", "--ep_size", "2"], config=cfg)
    try:
        srv.start()
        m0 = srv.metrics()
        for name, fn in [("health", t_health), ("models", t_models), ("version", t_version),
                         ("metrics_format", t_metrics)]:
            c.run(name, fn, srv, model)
        for name, fn in [("completion_seed_request", t_seed_request), ("prompt_forms", t_prompt_forms),
                         ("add_special_tokens", t_add_special), ("echo", t_echo), ("stop_string", t_stop_string),
                         ("stop_token_ids", t_stop_token_ids), ("ignore_eos_min_tokens", t_ignore_eos_min_tokens),
                         ("seed_sampling", t_seed), ("sampling_knobs", t_sampling_knobs), ("logprobs", t_logprobs), ("stream", t_stream),
                         ("stream_include_usage", t_stream_usage), ("chat", t_chat), ("chat_stream", t_chat_stream),
                         ("tokenizer_endpoints", t_tokenizer_endpoints),
                         ("errors", t_errors), ("body_limit_413", t_body_limit), ("concurrent_36", t_concurrent), ("disconnect", t_disconnect)]:
            if not srv.alive():
                c.name = name
                c.check(False, "server died before this check:\n%s" % srv.log_tail())
                continue
            c.run(name, fn, srv, model, ref)
        c.run("metrics_counters", t_metrics_count, srv, model, m0)
        c.run("metrics_format_after_load", t_metrics, srv, model)
        c.name = "server_alive"
        c.check(srv.alive(), "server exited during the test:\n%s" % srv.log_tail())
    except Exception as e:  # noqa: BLE001 - e.g. the server never became ready
        c.name = "startup"
        c.check(False, "%s: %s\n%s" % (type(e).__name__, e, srv.log_tail() if srv.proc else ""))
    finally:
        srv.kill()
        os.unlink(cfg)
    log("test_api: %.1f s" % (time.time() - t_all))
    if c.failed:
        log("server log tail:\n" + srv.log_tail(30))
    c.done()


if __name__ == "__main__":
    main()
