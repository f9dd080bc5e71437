#!/usr/bin/env python3
"""test_plan_memory.py — `moeserve plan-memory` from config-only directories.

usage: test_plan_memory.py MKMODEL MOESERVE SRCDIR

- the README's R1 command (8 ranks, attention DP, EP 8, FP8 weights and KV,
  configs/r1-fp8-throughput.yaml, kv_cache_free_gpu_memory_fraction 0.8):
  every rank's activations are a few GiB, and weights + activations + KV fit
  an H200's 141 GB; the same on a 80 GB device does not fit (exit 1);
- the arithmetic on the tiny config (2 ranks, attention DP, EP 2, a fixed KV
  pool): weights match a count made here from config.json tensor by tensor,
  KV = blocks x block size x (kv_lora_rank + rope dim) x 2 bytes x layers,
  and activations shrink when max_batch_size / max_num_tokens do (per-rank
  sizing: the job's other ranks do not count);
- bad usage (no --world, a bad --world) exits 2.
(That the engine allocates exactly what sizing predicts is checked by
test_step_io under mpirun, on real checkpoints.)
"""
import json
import os
import re
import subprocess
import sys
import tempfile

mk, ms, src = sys.argv[1], sys.argv[2], sys.argv[3]
fails = 0
GIB = 1 << 30


def check(cond, msg):
    global fails
    if not cond:
        fails += 1
        print("FAIL:", msg, file=sys.stderr)


def plan(model, *args):
    p = subprocess.run([ms, "plan-memory", model] + list(args), capture_output=True, text=True)
    ranks = {}
    for line in p.stdout.splitlines():
        m = re.match(r"rank (\d+): .*\| bytes (.*)$", line)
        if m:
            ranks[int(m.group(1))] = {k: int(v) for k, v in (kv.split("=") for kv in m.group(2).split())}
    return p, ranks


tmp = tempfile.mkdtemp(prefix="ms-plan-mem-")
r1, tiny = os.path.join(tmp, "r1"), os.path.join(tmp, "tiny")
for preset, d in (("r1", r1), ("tiny", tiny)):
    subprocess.run([mk, "--preset", preset, "--dtype", "fp8" if preset == "r1" else "bf16", "--config-only",
                    "--out", d], check=True, stdout=subprocess.DEVNULL)
check(sorted(os.listdir(r1)) == ["config.json"] or "config.json" in os.listdir(r1), "config-only dir")

readme = ["--host", "0.0.0.0", "--port", "8000", "--backend", "pytorch", "--max_batch_size", "1024",
          "--max_num_tokens", "3200", "--max_seq_len", "2048", "--kv_cache_free_gpu_memory_fraction", "0.8",
          "--tp_size", "8", "--ep_size", "8", "--trust_remote_code",
          "--extra_llm_api_options", os.path.join(src, "configs", "r1-fp8-throughput.yaml"), "--world", "8"]
p, ranks = plan(r1, *readme)
print(p.stdout)
check(p.returncode == 0, "R1 plan exit %d: %s" % (p.returncode, p.stderr[-400:]))
check(sorted(ranks) == list(range(8)), "8 rank lines, got %r" % sorted(ranks))
for r, v in ranks.items():
    # 8.2 GiB measured: the yaml turns MTP on, so beside the MoE receive buffers (3200 rows a slot) every
    # sequence samples 2 rows (fp32 logits of 2048 x 129280) and the module has its own head buffers
    check(0.5 * GIB <= v["activations"] <= 10 * GIB, "rank %d activations %.2f GiB" % (r, v["activations"] / GIB))
    total = v["weights"] + v["activations"] + v["kv"]
    check(total <= 141e9, "rank %d: %.1f GB > 141 GB" % (r, total / 1e9))
    check(v["kv_blocks"] > 1000 and v["kv"] == v["kv_blocks"] * 32 * v["kv_token"], "rank %d KV %r" % (r, v))
    # the pool takes 0.8 of what weights and activations leave (within one block and the block-table buffer)
    left = 141e9 - v["weights"] - v["activations"]
    check(abs(v["kv"] - 0.8 * left) < 0.01 * left, "rank %d: KV %.1f GB is not 0.8 of %.1f GB" % (r, v["kv"] / 1e9, left / 1e9))
    check(v["weights"] > 80e9, "rank %d: FP8 R1 weights over EP 8 are ~94 GiB, got %.1f" % (r, v["weights"] / GIB))
p, _ = plan(r1, *(readme + ["--gpu-memory-gb", "80"]))
check(p.returncode == 1 and "does not fit" in p.stdout, "80 GB: exit %d %s" % (p.returncode, p.stdout[-300:]))

# ---- arithmetic on the tiny config ----
c = json.load(open(os.path.join(tiny, "config.json")))
cfg = os.path.join(tmp, "dp.yaml")
with open(cfg, "w") as f:
    f.write("enable_attention_dp: true\nkv_cache_config:\n  max_tokens: 4096\n  tokens_per_block: 32\n")


def rnd(b):
    return (b + 255) // 256 * 256


def weights(c, ep):
    """bf16 weights of one rank: attention replicated (DP), experts split over ep."""
    D, V, L = c["hidden_size"], c["vocab_size"], c["num_hidden_layers"]
    dn, dr, dv, dc = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"], c["kv_lora_rank"]
    H, R, E, Im = c["num_attention_heads"], c["q_lora_rank"], c["n_routed_experts"], c["moe_intermediate_size"]
    Is = Im * c["n_shared_experts"]
    lin = lambda r, k: rnd(2 * r * k)
    b = rnd(2 * D) + rnd(2 * V * D) + (0 if c.get("tie_word_embeddings") else lin(V, D))
    for l in range(L):
        b += 2 * rnd(2 * D) + lin(R, D) + rnd(2 * R) + lin(H * (dn + dr), R) + lin(dc + dr, D) + rnd(2 * dc)
        b += lin(H * (dn + dv), dc) + lin(D, H * dv)
        if l < c["first_k_dense_replace"]:
            b += 3 * lin(c["intermediate_size"], D)
        else:
            mat = 2 * Im * D  # one slot record: gate|up, then down, each 256-aligned
            stride = rnd(rnd(rnd(2 * mat) + mat))
            b += lin(E, D) + rnd(4 * E) + rnd(stride * (E // ep)) + 3 * lin(Is, D)
    return b


small = ["--max_batch_size", "8", "--max_num_tokens", "64", "--extra_llm_api_options", cfg]
p, ranks = plan(tiny, *(small + ["--world", "2", "--tp_size", "2", "--ep_size", "2"]))
check(p.returncode == 0 and sorted(ranks) == [0, 1], "tiny plan: %d %s %s" % (p.returncode, p.stdout, p.stderr))
kv_tok = (c["kv_lora_rank"] + c["qk_rope_head_dim"]) * 2 * c["num_hidden_layers"]
for r, v in ranks.items():
    check(v["weights"] == weights(c, 2), "rank %d weights %d, counted %d" % (r, v["weights"], weights(c, 2)))
    check(v["kv_blocks"] == 128 and v["kv_token"] == kv_tok and v["kv"] == 128 * 32 * kv_tok, "rank %d KV %r" % (r, v))
    # MoE receive: each local slot takes up to ep_size x this rank's tokens (moe max_num_tokens unset)
    check(v["moe_slot_cap"] == 2 * 64 and v["moe_recv_rows"] == (c["n_routed_experts"] // 2) * 2 * 64, "rows %r" % v)
    check(v["naive_ctx"] == 4096, "naive ctx bounded by the pool: %r" % v)
_, one = plan(tiny, *(small + ["--world", "1"]))
check(one and one[0]["weights"] == weights(c, 1), "world 1 weights")
# per rank: 4 ranks of attention DP need no more activations than 2 at the same per-rank limits, except MoE receive
_, big = plan(tiny, *(["--max_batch_size", "64", "--max_num_tokens", "512", "--extra_llm_api_options", cfg,
                       "--world", "2", "--tp_size", "2", "--ep_size", "2"]))
check(big and big[0]["activations"] > ranks[0]["activations"], "activations grow with the per-rank limits")

for bad in (["--world", "0"], ["--world", "x"], []):
    p, _ = plan(tiny, *(small + bad))
    check(p.returncode == 2 and p.stderr.strip(), "bad usage %r: exit %d" % (bad, p.returncode))

subprocess.run(["rm", "-rf", tmp])
print("plan-memory: %d failures" % fails)
sys.exit(1 if fails else 0)
