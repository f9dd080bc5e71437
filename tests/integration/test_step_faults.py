#!/usr/bin/env python3
"""test_step_faults.py — a data fault raised inside a step (the device fault
word that comes back with the step's one download) ends that step's requests
with a 500 naming it, on every rank layout, and serving goes on.

On np 2 attention DP / EP 2 with moe_config.max_num_tokens 2 (two rows per
expert slot per step), a 40-token prompt overflows a slot's receive capacity:
the MoE raises KERN_FAULT_CAPACITY, every rank finishes the step (nothing
hangs, nobody aborts), the request gets a 500 that names the capacity, and a
1-token-prompt request afterwards decodes exactly the reference tokens.
"""
from harness import Checks, Env, Server, log


def main():
    env = Env.from_args()
    model = env.tiny_model()
    c = Checks()
    prompt = [0] + [(17 * i) % 500 + 3 for i in range(39)]
    short = [0]
    ref = env.generate(model, short, 6)
    with Server(env, model, np=2, yaml_extra="enable_attention_dp: true\nmoe_config:\n  max_num_tokens: 2") as srv:
        st, js = srv.post_json("/v1/completions", dict(prompt=prompt, max_tokens=2, temperature=0))
        msg = str(js)
        c.check(st == 500 and "capacity" in msg, "capacity overflow answered %d %s" % (st, msg[:300]))
        js = srv.completion(prompt=short, max_tokens=6, temperature=0, ignore_eos=True, logprobs=0)
        toks = js["choices"][0].get("logprobs", {}).get("tokens")
        text = env.detokenize(model, [ref])[0]
        c.check(js["choices"][0]["text"] == text, "after the fault: %r != %r" % (js["choices"][0]["text"], text))
        c.check(len(srv.ranks_alive()) == 2, "both ranks still run: %r" % srv.ranks_alive())
        c.check(srv.kv_blocks_used_settled() == 0, "KV blocks freed")
        log("capacity fault -> %d; next request right (%r)" % (st, toks))
    c.done()


if __name__ == "__main__":
    main()
