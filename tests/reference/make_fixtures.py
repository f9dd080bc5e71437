#!/usr/bin/env python3
"""make_fixtures.py — golden fixtures for moeserve from Hugging Face transformers.

Two steps, on two machines:

  1. here (no PyTorch needed): write the checkpoints with moeserve-mkmodel
       python3 tests/reference/make_fixtures.py --generate --mkmodel build/moeserve-mkmodel --ckpt-root .golden-ckpt
  2. on a GPU host with PyTorch 2.11 + transformers 5.17 (offline):
       python3 tests/reference/make_fixtures.py --ckpt-root .golden-ckpt --out OUTDIR

Step 2 loads each bf16 checkpoint with DeepseekV3ForCausalLM.from_pretrained
(dtype bfloat16, eager attention, on the GPU, bf16 GEMMs with fp32
reductions) and writes OUTDIR/<name>.json: the sha256 of every checkpoint
file, the mkmodel arguments, prompts (token ids), the last-position logits
of each prompt and the greedy continuation (32 tokens, KV cache, argmax with
ties to the lowest id, EOS not special) with the top-1/top-2 margin of every
step.

Config (c) is FP8: moeserve loads the F8_E4M3 checkpoint, transformers loads
its dequantized BF16 twin (bit-exact; see tools/mkmodel_write.c), so the
fixture's reference numbers come from the twin.

The models are mkmodel's "peaky" ones (tools/mkmodel_write.c: lm_head row
next(v) is aligned with token v's embedding), so greedy margins are tens of
bf16 ulps rather than the one or two of a purely random model. Prompts are
still chosen, per length class, from seeded candidates as the one whose
greedy trajectory has the largest smallest margin; each fixture records
every step's margin and, in "greedy_margin_summary", each prompt's smallest
margin in bf16 ulps of that step's top logit.

The script also records how transformers itself varies (sdpa instead of
eager, CPU instead of GPU, fp32 instead of bf16) and checks transformers'
reading of the config against an independent fp32 implementation of
shared/reference/deepseek-v3.md written here, so a fixture documents how much
of any difference is reference noise.
"""
import argparse
import glob
import hashlib
import json
import math
import os
import random
import subprocess
import sys
import time

# name -> (mkmodel args, engine checkpoint dir, reference checkpoint dir, what it covers)
CONFIGS = [
    ("tiny_bf16", ["--preset", "tiny", "--dtype", "bf16", "--seed", "0"], "tiny_bf16", "tiny_bf16",
     "q-LoRA, YaRN (factor 4), n_group 4 / topk_group 2, first_k_dense_replace 1, sharded"),
    ("tiny_noq_bf16", ["--preset", "tiny-noq", "--dtype", "bf16", "--seed", "0"], "tiny_noq_bf16", "tiny_noq_bf16",
     "q_lora_rank null, n_group 1, no rope scaling, 2 shared experts, norm_topk_prob false, one file"),
    ("tiny_fp8", ["--preset", "tiny", "--dtype", "fp8", "--seed", "0"], "tiny_fp8", "tiny_fp8_twin",
     "FP8 e4m3 with 128x128 block scales (partial blocks); reference = its dequantized BF16 twin"),
]
PROMPT_LENGTHS = [6, 13, 24]   # one prompt per class; the longest is >= 20
CANDIDATES = 12                # seeded candidates per length class
GEN_TOKENS = 32
TOLERANCE = 2e-2               # max |logit diff| the golden test allows


def sha_files(d):
    return {os.path.basename(f): hashlib.sha256(open(f, "rb").read()).hexdigest()
            for f in sorted(glob.glob(os.path.join(d, "*"))) if os.path.isfile(f)}


def mkmodel_argv(args, out_dir, twin_dir):
    argv = list(args) + ["--out", out_dir]
    if twin_dir:
        argv += ["--dequant-twin", twin_dir]
    return argv


def generate(mkmodel, root):
    os.makedirs(root, exist_ok=True)
    for name, args, eng, ref, _ in CONFIGS:
        twin = os.path.join(root, ref) if ref != eng else None
        subprocess.run([mkmodel] + mkmodel_argv(args, os.path.join(root, eng), twin), check=True)
        print(name, sha_files(os.path.join(root, eng)))


# ---------------------------------------------------------------- GPU side

def load_model(path, dtype, attn, device):
    import torch
    from transformers import DeepseekV3ForCausalLM
    kw = dict(attn_implementation=attn, output_loading_info=True)
    try:
        model, info = DeepseekV3ForCausalLM.from_pretrained(path, dtype=dtype, **kw)
    except TypeError:
        model, info = DeepseekV3ForCausalLM.from_pretrained(path, torch_dtype=dtype, **kw)
    model = model.to(device).eval()
    info = {k: sorted(str(x) for x in v) for k, v in info.items() if isinstance(v, (list, set)) and v}
    return model, info


def last_logits(model, ids):
    import torch
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids], device=model.device), use_cache=False)
    return out.logits[0, -1].float().cpu()


def top2(v):
    import torch
    vals, idx = torch.topk(v, 2)
    # torch.topk's order among equal values is unspecified: take the lowest id among the maxima.
    best = int(torch.nonzero(v == vals[0])[0])
    return best, float(vals[0] - vals[1])


def bf16_ulp(x):
    """Spacing of bf16 values at |x| (8 significant bits)."""
    return 2.0 ** (math.floor(math.log2(abs(x))) - 7) if x else 2.0 ** -133


def greedy_tops(model, ids, toks):
    """Top logit at each greedy step (teacher-forced on the greedy tokens, one forward pass)."""
    import torch
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids + toks[:-1]], device=model.device), use_cache=False)
    return out.logits[0, len(ids) - 1:].float().max(-1).values.cpu().tolist()


def greedy(model, ids, n=GEN_TOKENS):
    """Greedy continuation with the KV cache; returns tokens, margins, prompt logits."""
    import torch
    toks, margins = [], []
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids], device=model.device), use_cache=True)
        first = out.logits[0, -1].float().cpu()
        logits = first
        for i in range(n):
            t, m = top2(logits)
            toks.append(t)
            margins.append(m)
            if i + 1 == n:
                break
            out = model(input_ids=torch.tensor([[t]], device=model.device), past_key_values=out.past_key_values,
                        use_cache=True)
            logits = out.logits[0, -1].float().cpu()
    return toks, margins, first


def inv_freq_ref(c):
    """YaRN (or plain) inverse frequencies exactly as deepseek-v3.md section 3 states them."""
    import torch
    dim, base = c["qk_rope_head_dim"], float(c.get("rope_theta", 10000.0))
    theta = [base ** (-2.0 * i / dim) for i in range(dim // 2)]
    rs = c.get("rope_scaling")
    if not rs:
        return torch.tensor(theta, dtype=torch.float64)
    f, L0 = float(rs["factor"]), rs["original_max_position_embeddings"]
    bf, bs = rs.get("beta_fast", 32), rs.get("beta_slow", 1)
    corr = lambda n: dim * math.log(L0 / (n * 2 * math.pi)) / (2 * math.log(base))
    low, high = max(math.floor(corr(bf)), 0), min(math.ceil(corr(bs)), dim - 1)
    if low == high:
        high += 0.001
    out = []
    for i in range(dim // 2):
        ramp = min(max((i - low) / (high - low), 0.0), 1.0)
        out.append(theta[i] / f * ramp + theta[i] * (1 - ramp))
    return torch.tensor(out, dtype=torch.float64)


def softmax_scale_ref(c):
    s = (c["qk_nope_head_dim"] + c["qk_rope_head_dim"]) ** -0.5
    rs = c.get("rope_scaling")
    if rs and rs.get("mscale_all_dim", 0) and rs["factor"] > 1:
        m = 0.1 * rs["mscale_all_dim"] * math.log(rs["factor"]) + 1.0
        s *= m * m
    return s


def ref_forward(W, c, ids, dev):
    """Independent fp32 DeepSeek-V3 forward (all positions' logits) from the reference doc."""
    import torch
    f = lambda k: W[k].to(dev, torch.float32)
    eps = c["rms_norm_eps"]
    rms = lambda v, w: v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + eps) * w
    lin = lambda v, k: v @ f(k).T
    nh, dn, dr, dv, kvr = (c[k] for k in ["num_attention_heads", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
                                          "kv_lora_rank"])
    T = len(ids)
    x = f("model.embed_tokens.weight")[torch.tensor(ids, device=dev)]
    ang = torch.arange(T, device=dev, dtype=torch.float64)[:, None] * inv_freq_ref(c).to(dev)[None, :]
    cos, sin = ang.cos().float(), ang.sin().float()

    def rope(t):  # rotate interleaved pairs in place (DeepSeek's layout)
        cs, sn = (cos[:, None, :], sin[:, None, :]) if t.dim() == 3 else (cos, sin)
        x0, x1 = t[..., 0::2], t[..., 1::2]
        return torch.stack([x0 * cs - x1 * sn, x0 * sn + x1 * cs], -1).flatten(-2)

    scale = softmax_scale_ref(c)
    mask = torch.full((T, T), float("-inf"), device=dev).triu(1)
    mlp = lambda v, p: lin(torch.nn.functional.silu(lin(v, p + "gate_proj.weight")) * lin(v, p + "up_proj.weight"),
                           p + "down_proj.weight")
    for L in range(c["num_hidden_layers"]):
        p = f"model.layers.{L}."
        h = rms(x, f(p + "input_layernorm.weight"))
        a = p + "self_attn."
        if c.get("q_lora_rank"):
            q = lin(rms(lin(h, a + "q_a_proj.weight"), f(a + "q_a_layernorm.weight")), a + "q_b_proj.weight")
        else:
            q = lin(h, a + "q_proj.weight")
        q = q.view(T, nh, dn + dr)
        ckv = lin(h, a + "kv_a_proj_with_mqa.weight")
        kv = lin(rms(ckv[:, :kvr], f(a + "kv_a_layernorm.weight")), a + "kv_b_proj.weight").view(T, nh, dn + dv)
        Q = torch.cat([q[..., :dn], rope(q[..., dn:])], -1).transpose(0, 1)
        kpe = rope(ckv[:, kvr:])[:, None, :].expand(T, nh, dr)
        K = torch.cat([kv[..., :dn], kpe], -1).transpose(0, 1)
        V = kv[..., dn:].transpose(0, 1)
        P = torch.softmax(Q @ K.transpose(1, 2) * scale + mask, -1)
        x = x + lin((P @ V).transpose(0, 1).reshape(T, nh * dv), a + "o_proj.weight")

        h = rms(x, f(p + "post_attention_layernorm.weight"))
        is_moe = c["n_routed_experts"] and L >= c["first_k_dense_replace"] and L % c.get("moe_layer_freq", 1) == 0
        if not is_moe:
            x = x + mlp(h, p + "mlp.")
            continue
        E, G, k = c["n_routed_experts"], c["n_group"], c["num_experts_per_tok"]
        s = torch.sigmoid(lin(h, p + "mlp.gate.weight"))
        ch = s + f(p + "mlp.gate.e_score_correction_bias")[None, :]
        gs = ch.view(T, G, E // G).topk(2, -1).values.sum(-1)
        gmask = torch.zeros(T, G, device=dev).scatter(1, gs.topk(c["topk_group"], -1).indices, 1.0)
        ch = ch.masked_fill(gmask[:, :, None].expand(T, G, E // G).reshape(T, E) == 0, 0.0)
        idx = ch.topk(k, -1).indices
        w = s.gather(1, idx)
        if c.get("norm_topk_prob", True):
            w = w / (w.sum(-1, keepdim=True) + 1e-20)
        w = w * c["routed_scaling_factor"]
        out = mlp(h, p + "mlp.shared_experts.") if c.get("n_shared_experts") else torch.zeros_like(h)
        for t in range(T):
            for j in range(k):
                out[t] += w[t, j] * mlp(h[t:t + 1], p + f"mlp.experts.{int(idx[t, j])}.")[0]
        x = x + out
    return lin(rms(x, f("model.norm.weight")), "lm_head.weight")


def load_st(d):
    from safetensors.torch import load_file
    W = {}
    for fn in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
        W.update(load_file(fn))
    return W


def compare_weights(model, W):
    """Every checkpoint tensor must be in the model with its exact values (fused experts allowed)."""
    import torch
    sd = model.state_dict()
    ok, bad = 0, []
    for k, v in W.items():
        v = v.float()
        if k in sd:
            same = sd[k].shape == v.shape and torch.equal(sd[k].float().cpu(), v)
        else:
            same = False
            parts = k.split(".")
            if "experts" in parts and parts[parts.index("experts") + 1].isdigit():
                i = parts.index("experts")
                e, proj = int(parts[i + 1]), parts[i + 2]
                base = ".".join(parts[:i + 1])
                cands = []
                for fused in (base + ".gate_up_proj", base + "." + proj):
                    if fused in sd:
                        t = sd[fused][e].float().cpu()
                        for tt in (t, t.T):
                            cands.append(tt)
                            if tt.shape[0] == 2 * v.shape[0]:
                                cands += [tt[:v.shape[0]], tt[v.shape[0]:]]
                same = any(cc.shape == v.shape and torch.equal(cc, v) for cc in cands)
        if same:
            ok += 1
        else:
            bad.append(k)
    return ok, bad


def config_report(model, c):
    import torch
    cfg = model.config
    rot = model.model.rotary_emb
    inv = rot.inv_freq.double().cpu()
    attn = model.model.layers[0].self_attn
    rep = {
        "rope_parameters": {k: v for k, v in (getattr(cfg, "rope_parameters", None) or {}).items()},
        "rope_interleave": getattr(cfg, "rope_interleave", None),
        "rope_type": getattr(rot, "rope_type", None),
        "attention_scaling": float(getattr(rot, "attention_scaling", float("nan"))),
        "softmax_scale": float(attn.scaling),
        "softmax_scale_expected": softmax_scale_ref(c),
        "inv_freq_max_rel_diff": float(((inv - inv_freq_ref(c)).abs() / inv_freq_ref(c)).max()),
        "q_lora_rank": getattr(cfg, "q_lora_rank", None),
    }
    for L, layer in enumerate(model.model.layers):
        g = getattr(layer.mlp, "gate", None)
        if g is not None and hasattr(g, "e_score_correction_bias"):
            rep["e_score_correction_bias_dtype"] = str(g.e_score_correction_bias.dtype)
            rep["router_weight_dtype"] = str(g.weight.dtype)
            break
    return rep


def choose_prompts(model, vocab, seed, log):
    rng = random.Random(seed)
    chosen = []
    for L in PROMPT_LENGTHS:
        best = None
        for _ in range(CANDIDATES):
            ids = [0] + [rng.randrange(2, vocab) for _ in range(L - 1)]
            toks, margins, first = greedy(model, ids)
            score = min(margins)
            if best is None or score > best[0]:
                best = (score, ids, toks, margins, first)
        log(f"  length {L}: best min margin {best[0]:.4f}")
        chosen.append(best[1:])
    return chosen


def make_one(idx, name, args, eng, ref, about, root, out_dir, log, t0, budget_s):
    import torch
    import transformers
    dev = "cuda"
    eng_dir, ref_dir = os.path.join(root, eng), os.path.join(root, ref)
    c = json.load(open(os.path.join(ref_dir, "config.json")))
    fx = {
        "name": name, "about": about,
        "mkmodel_args": args, "dequant_twin": eng != ref,
        "engine_checkpoint": sha_files(eng_dir), "reference_checkpoint": sha_files(ref_dir),
        "vocab_size": c["vocab_size"], "eos_token_id": c["eos_token_id"],
        "tolerance": {"max_abs_logit_diff": TOLERANCE, "greedy": "identical tokens"},
        "reference": {
            "transformers": transformers.__version__, "torch": torch.__version__,
            "device": torch.cuda.get_device_name(0), "dtype": "bfloat16", "attn_implementation": "eager",
            "bf16_reduced_precision_reduction": torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction,
            "greedy": f"{GEN_TOKENS} tokens, KV cache, argmax (lowest id on ties), eos not special",
            "logits": "last prompt position, from the model's bf16 logits, as float32",
        },
    }
    model, info = load_model(ref_dir, torch.bfloat16, "eager", dev)
    W = load_st(ref_dir)
    try:
        ok, bad = compare_weights(model, W)
    except Exception as e:
        ok, bad = -1, [f"compare failed: {e!r}"]
    fx["loading"] = {"loading_info": info, "tensors_matched": ok, "tensors_not_matched": bad}
    log(f"{name}: weights matched {ok}/{len(W)}; loading info {info}")
    try:
        fx["transformers_config"] = config_report(model, c)
    except Exception as e:
        fx["transformers_config"] = f"failed: {e!r}"
    log(f"  config: {fx['transformers_config']}")

    chosen = choose_prompts(model, c["vocab_size"], 1000 + idx, log)
    fx["prompts"] = [p for p, _, _, _ in chosen]
    fx["greedy"] = [t for _, t, _, _ in chosen]
    fx["greedy_margins"] = [[round(m, 6) for m in ms] for _, _, ms, _ in chosen]
    fx["logits"] = [first.tolist() for _, _, _, first in chosen]
    try:  # a summary only: its failure must not cost the fixture
        summ = []
        for ids, toks, ms, _ in chosen:
            tops = greedy_tops(model, ids, toks)
            ulps = [m / bf16_ulp(t) for m, t in zip(ms, tops)]
            k = min(range(len(ms)), key=lambda i: ms[i])
            summ.append({"min_margin": round(min(ms), 6), "at_step": k, "top_logit_there": round(tops[k], 6),
                         "min_margin_ulps": round(min(ulps), 2), "max_top_logit": round(max(tops), 6)})
            log(f"  prompt len {len(ids)}: min margin {min(ms):.4f} at step {k} (top {tops[k]:.3f}); "
                f"min {min(ulps):.1f} bf16 ulps; max top logit {max(tops):.3f}")
        fx["greedy_margin_summary"] = summ
    except Exception as e:
        fx["greedy_margin_summary"] = f"failed: {e!r}"
        log(f"  margin summary failed: {e!r}")
    prim = [first for _, _, _, first in chosen]
    lstd = [float(x.std()) for x in prim]
    fx["logits_stats"] = {"std": lstd, "max_abs": [float(x.abs().max()) for x in prim]}
    # Prefill logits with and without the cache path agree? (same model, use_cache False)
    fx["checks"] = {"no_cache_vs_cache_prompt_logits": max(float((last_logits(model, p) - f).abs().max())
                                                             for p, f in zip(fx["prompts"], prim))}

    variants = {}

    def variant(vname, dtype, attn, device):
        try:
            return variant_(vname, dtype, attn, device)
        except Exception as e:
            variants[vname] = f"failed: {e!r}"
            log(f"  variant {vname}: failed: {e!r}")
            return None

    def variant_(vname, dtype, attn, device):
        if time.time() - t0 > budget_s:
            variants[vname] = "skipped (time budget)"
            return None
        m, _ = load_model(ref_dir, dtype, attn, device)
        d, same = 0.0, True
        for p, toks, first in zip(fx["prompts"], fx["greedy"], prim):
            t2, _, f2 = greedy(m, p)
            d = max(d, float((f2 - first).abs().max()))
            same = same and t2 == toks
        variants[vname] = {"max_abs_logit_diff_vs_fixture": d, "greedy_identical": same}
        log(f"  variant {vname}: {variants[vname]}")
        return m

    variant("bf16_sdpa_gpu", torch.bfloat16, "sdpa", dev)
    variant("bf16_eager_cpu", torch.bfloat16, "eager", "cpu")
    m32 = variant("fp32_eager_gpu", torch.float32, "eager", dev)
    if m32 is not None:
        # Independent implementation of the reference doc vs transformers, both fp32, all positions.
        try:
            d, dt = 0.0, 0.0
            for p in fx["prompts"]:
                with torch.no_grad():
                    tl = m32(input_ids=torch.tensor([p], device=dev), use_cache=False).logits[0].float()
                    rl = ref_forward(W, c, p, dev)
                d = max(d, float((rl - tl).abs().max()))
                dt = max(dt, float((rl[-1].cpu() - prim[fx["prompts"].index(p)]).abs().max()))
            variants["independent_fp32_vs_transformers_fp32"] = {"max_abs_logit_diff_all_positions": d}
            variants["independent_fp32_vs_fixture_bf16"] = {"max_abs_logit_diff_last_position": dt}
            log(f"  independent fp32 implementation vs transformers fp32: {d:.3g}; vs the bf16 fixture: {dt:.3g}")
        except Exception as e:
            variants["independent_fp32_vs_transformers_fp32"] = f"failed: {e!r}"
            log(f"  independent implementation failed: {e!r}")
    fx["variants"] = variants
    with open(os.path.join(out_dir, name + ".json"), "w") as fh:
        json.dump(fx, fh, indent=1)
        fh.write("\n")
    del model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--generate", action="store_true", help="write the checkpoints with mkmodel (no PyTorch needed)")
    ap.add_argument("--mkmodel", default="build/moeserve-mkmodel")
    ap.add_argument("--ckpt-root", required=True)
    ap.add_argument("--out", help="fixture output folder")
    ap.add_argument("--only", help="comma-separated fixture names")
    ap.add_argument("--budget-s", type=float, default=240, help="skip optional variants past this many seconds")
    a = ap.parse_args()
    if a.generate:
        generate(a.mkmodel, a.ckpt_root)
        return 0
    import torch
    t0 = time.time()
    os.makedirs(a.out, exist_ok=True)
    logf = open(os.path.join(a.out, "make_fixtures.log"), "w")

    def log(msg):
        line = f"[{time.time() - t0:6.1f}s] {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    # Reference GEMMs: bf16 inputs, fp32 accumulation without reduced-precision split-K.
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    for i, (name, args, eng, ref, about) in enumerate(CONFIGS):
        if a.only and name not in a.only.split(","):
            continue
        try:
            make_one(i, name, args, eng, ref, about, a.ckpt_root, a.out, log, t0, a.budget_s)
        except Exception as e:  # keep going: one broken config must not cost the others
            import traceback
            log(f"{name}: FAILED: {e!r}\n{traceback.format_exc()}")
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
