#!/usr/bin/env python3
"""mtp_fixtures.py — golden fixtures for moeserve's MTP draft module, from PyTorch + transformers.

transformers' DeepseekV3 ignores the MTP module (checkpoint layer num_hidden_layers), so this script
computes it from its definition (DeepSeek-V3 paper section 2.2; shared/reference/deepseek-v3.md section 5)
with transformers' own modules:

    xn   = the main model's final-normed hidden rows  (model.norm(...), what lm_head reads)
    e    = enorm(Embed(t_{i+1}))                      t_{i+1}: the next prompt token, the greedy token last
    u    = eh_proj(concat(e, hnorm(xn_i)))            embedding first
    u    = DecoderLayer_L(u, positions 0..n-1)        causal over the prompt, its own keys and values
    draft logits = shared_head.head(shared_head.norm(u))   at the last position: the distribution of
                                                           the token after the first generated one

The decoder block is transformers' DeepseekV3DecoderLayer with the checkpoint's layer-L weights: the
checkpoint is loaded once more with num_hidden_layers = L + 1 (its files symlinked into a temp dir), so
from_pretrained itself maps layer L's tensors (fused experts and all) into layers[L]. As a check, the
manual main pass (embed, layers 0..L-1, norm, lm_head) must reproduce the logits of the unmodified model.

Two steps, on two machines:
  1. here: write the checkpoints with moeserve-mkmodel
       python3 tests/reference/mtp_fixtures.py --generate --mkmodel build/moeserve-mkmodel --ckpt-root DIR
  2. on a GPU host with PyTorch + transformers (offline):
       python3 tests/reference/mtp_fixtures.py --ckpt-root DIR --out OUTDIR
Step 2 writes OUTDIR/mtp_<name>.json: the mkmodel arguments, the sha256 of every file, and per prompt the
ids, the greedy first token and its top-1/top-2 margin, and the MTP logits at the last position (fp32).
tests/golden/run_mtp_golden.py checks `moeserve generate --dump-mtp-logits` against them.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (sha_files, mkmodel_argv, load_model, top2, load_st)

# name -> (mkmodel args, engine checkpoint, reference checkpoint)
CONFIGS = [
    ("tiny_bf16", ["--preset", "tiny", "--dtype", "bf16", "--seed", "5", "--mtp"], "mtp_tiny_bf16", "mtp_tiny_bf16"),
    ("tiny_fp8", ["--preset", "tiny", "--dtype", "fp8", "--seed", "5", "--mtp"], "mtp_tiny_fp8", "mtp_tiny_fp8_twin"),
]
PROMPT_LENGTHS = [5, 12, 23]
# max |MTP logit diff| the golden test allows: the main model's 2e-2 plus one bf16 ulp of headroom at these
# logits' magnitude (|logit| < 4: ulp 2^-6), since the MTP logits pass through the whole main model and one more
# block (moeserve and transformers round at the same points but sum in other orders). Measured on the CPU
# backend: 0.0215 at worst (tiny_bf16, prompt 1), 0.0078 on tiny_fp8.
TOLERANCE = 3e-2


def generate(mkmodel, root):
    os.makedirs(root, exist_ok=True)
    for name, args, eng, ref in CONFIGS:
        twin = os.path.join(root, ref) if ref != eng else None
        subprocess.run([mkmodel] + mf.mkmodel_argv(args, os.path.join(root, eng), twin), check=True,
                       stdout=subprocess.DEVNULL)
        print(name, "written")


def widened(ref_dir, tmp):
    """A view of ref_dir whose config has num_hidden_layers + 1 (the MTP block becomes layers[L])."""
    d = os.path.join(tmp, os.path.basename(ref_dir) + "_wide")
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(ref_dir):
        if f != "config.json":
            os.symlink(os.path.abspath(os.path.join(ref_dir, f)), os.path.join(d, f))
    c = json.load(open(os.path.join(ref_dir, "config.json")))
    c["num_hidden_layers"] += 1
    json.dump(c, open(os.path.join(d, "config.json"), "w"))
    return d


def run_layers(model, layers, x, pos):
    import torch
    n = x.shape[1]
    mask = torch.full((n, n), torch.finfo(x.dtype).min, device=x.device, dtype=x.dtype).triu(1)[None, None]
    pe = model.model.rotary_emb(x, pos)
    for layer in layers:
        out = layer(x, attention_mask=mask, position_ids=pos, position_embeddings=pe, use_cache=False)
        x = out[0] if isinstance(out, tuple) else out
    return x


def make_one(name, args, eng, ref, root, out_dir, log):
    import torch
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3RMSNorm
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    ref_dir = os.path.join(root, ref)
    plain, _ = mf.load_model(ref_dir, torch.bfloat16, "eager", dev)
    with tempfile.TemporaryDirectory() as tmp:
        model, info = mf.load_model(widened(ref_dir, tmp), torch.bfloat16, "eager", dev)
    c = model.config
    L = c.num_hidden_layers - 1
    P = f"model.layers.{L}."
    W = {k: v.to(dev) for k, v in mf.load_st(ref_dir).items() if k.startswith(P)}
    missing = [k for k in ("enorm", "hnorm", "eh_proj", "shared_head.norm") if P + k + ".weight" not in W]
    if missing:
        raise SystemExit(f"{ref_dir}: no MTP tensors {missing} under {P}")

    def norm(key):
        m = DeepseekV3RMSNorm(c.hidden_size, eps=c.rms_norm_eps).to(dev, torch.bfloat16)
        m.weight.data.copy_(W[P + key + ".weight"])
        return m

    enorm, hnorm, snorm = norm("enorm"), norm("hnorm"), norm("shared_head.norm")
    eh = W[P + "eh_proj.weight"]
    emb = W.get(P + "embed_tokens.weight", model.model.embed_tokens.weight)
    head = W.get(P + "shared_head.head.weight", model.lm_head.weight)
    rng = random.Random(11)
    prompts, worst_main = [], 0.0
    for n in PROMPT_LENGTHS:
        ids = [rng.randrange(1, c.vocab_size) for _ in range(n)]
        with torch.no_grad():
            t = torch.tensor([ids], device=dev)
            pos = torch.arange(n, device=dev)[None]
            h = run_layers(model, model.model.layers[:L], model.model.embed_tokens(t), pos)
            xn = model.model.norm(h)
            main = model.lm_head(xn)[0, -1].float().cpu()
            want = plain(input_ids=t, use_cache=False).logits[0, -1].float().cpu()
            worst_main = max(worst_main, float((main - want).abs().max()))
            g, margin = mf.top2(main)
            nxt = torch.tensor([ids[1:] + [g]], device=dev)
            u = torch.nn.functional.linear(torch.cat([enorm(emb[nxt]), hnorm(xn)], -1), eh)
            u = run_layers(model, [model.model.layers[L]], u, pos)
            mtp = torch.nn.functional.linear(snorm(u), head)[0, -1].float().cpu()
        d, dm = mf.top2(mtp)
        prompts.append({"ids": ids, "first_token": g, "first_margin": margin, "mtp_argmax": d,
                        "mtp_margin": dm, "mtp_logits": [float(x) for x in mtp.tolist()]})
        log(f"{name}: prompt of {n}: first token {g} (margin {margin:.4f}), MTP draft {d} (margin {dm:.4f})")
    if worst_main > 1e-3:
        raise SystemExit(f"{name}: the manual main pass differs from transformers' by {worst_main} (expected ~0)")
    fx = {"name": name, "mkmodel_args": args, "engine_checkpoint": eng, "reference_checkpoint": ref,
          "sha256": mf.sha_files(os.path.join(root, eng)), "tolerance": TOLERANCE, "mtp_layer": L,
          "main_pass_check_max_abs": worst_main, "device": dev, "torch": torch.__version__,
          "transformers": __import__("transformers").__version__,
          "loading_info": info, "prompts": prompts}
    path = os.path.join(out_dir, f"mtp_{name}.json")
    json.dump(fx, open(path, "w"), indent=1)
    log(f"{name}: wrote {path} (main pass check {worst_main:.2e})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generate", action="store_true")
    ap.add_argument("--mkmodel")
    ap.add_argument("--ckpt-root", required=True)
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.generate:
        generate(a.mkmodel, a.ckpt_root)
        return
    os.makedirs(a.out, exist_ok=True)
    t0 = time.time()

    def log(msg):
        print(f"[{time.time() - t0:6.1f}s] {msg}", flush=True)

    for name, args, eng, ref in CONFIGS:
        make_one(name, args, eng, ref, a.ckpt_root, a.out, log)


if __name__ == "__main__":
    main()
