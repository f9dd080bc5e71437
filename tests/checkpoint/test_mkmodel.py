#!/usr/bin/env python3
"""test_mkmodel.py — moeserve-mkmodel: determinism (same seed → identical
bytes, other seed → other weights), the safetensors rules the Python
`safetensors` library enforces (contiguous data, 8-aligned header,
__metadata__ format "pt"), HF names, FP8 block scales with partial blocks,
the bit-exact dequantized twin (and FP8 linears keeping their BF16 std),
the peaky lm_head (row next(v) aligned with embedding v), the presets and
the command-line errors.

usage: test_mkmodel.py MKMODEL            (standard library only)
"""
import glob
import hashlib
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

FAILS = []


def check(cond, msg):
    if not cond:
        FAILS.append(msg)
        print("FAIL:", msg, file=sys.stderr)


def run(mk, *args, ok=True):
    p = subprocess.run([mk, *args], capture_output=True, text=True, timeout=120)
    if ok and p.returncode != 0:
        raise SystemExit(f"mkmodel {' '.join(args)} failed ({p.returncode}): {p.stderr}")
    return p


def digests(d):
    return {os.path.basename(f): hashlib.sha256(open(f, "rb").read()).hexdigest()
            for f in sorted(glob.glob(os.path.join(d, "*")))}


def read_st(path):
    """Parse one safetensors file with the rules of the reference library."""
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    check(n % 8 == 0, f"{path}: header length {n} not 8-aligned")
    hdr = json.loads(b[8:8 + n])
    check(hdr.get("__metadata__", {}).get("format") == "pt", f"{path}: __metadata__.format is not pt")
    sizes = {"BF16": 2, "F32": 4, "F8_E4M3": 1}
    ents = sorted((v["data_offsets"], k) for k, v in hdr.items() if k != "__metadata__")
    pos = 0
    out = {}
    for (s, e), k in ents:
        v = hdr[k]
        check(s == pos, f"{path}: {k} starts at {s}, expected {pos} (data must be contiguous)")
        check(e - s == math.prod(v["shape"]) * sizes[v["dtype"]], f"{path}: {k} size")
        pos = e
        out[k] = (v["dtype"], v["shape"], b[8 + n + s:8 + n + e])
    check(8 + n + pos == len(b), f"{path}: trailing bytes")
    return out


def read_ckpt(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    tensors = {}
    if os.path.exists(idx):
        wm = json.load(open(idx))["weight_map"]
        for f in sorted(set(wm.values())):
            part = read_st(os.path.join(d, f))
            for k in part:
                check(wm.get(k) == f, f"{d}: {k} in {f} but index says {wm.get(k)}")
            tensors.update(part)
        check(set(wm) == set(tensors), f"{d}: index and shards disagree")
    else:
        tensors = read_st(os.path.join(d, "model.safetensors"))
    return tensors


def bf16s(raw):
    return struct.unpack("<%df" % (len(raw) // 2), b"".join(b"\0\0" + raw[i:i + 2] for i in range(0, len(raw), 2)))


def fp8(c):
    s = -1.0 if c & 0x80 else 1.0
    e, m = (c >> 3) & 15, c & 7
    return s * (m / 8 * 2.0 ** -6 if e == 0 else (1 + m / 8) * 2.0 ** (e - 7))


def main():
    mk = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        p = lambda *a: os.path.join(tmp, *a)

        # Determinism: bf16 (sharded), fp8 + twin, tiny-noq (one file).
        run(mk, "--preset", "tiny", "--dtype", "bf16", "--out", p("a1"), "--seed", "7")
        run(mk, "--preset", "tiny", "--dtype", "bf16", "--out", p("a2"), "--seed", "7")
        run(mk, "--preset", "tiny", "--dtype", "bf16", "--out", p("a3"), "--seed", "8")
        da1, da2, da3 = digests(p("a1")), digests(p("a2")), digests(p("a3"))
        check(da1 == da2, "same seed gave different bytes (bf16)")
        check(len([f for f in da1 if f.startswith("model-")]) >= 2, f"tiny is not sharded: {sorted(da1)}")
        check(da1["config.json"] == da3["config.json"], "seed changed config.json")
        diff = [f for f in da1 if f.endswith(".safetensors") and da1[f] != da3.get(f)]
        check(len(diff) == len([f for f in da1 if f.endswith(".safetensors")]), "another seed left a shard unchanged")

        run(mk, "--preset", "tiny", "--dtype", "fp8", "--out", p("f1"), "--dequant-twin", p("t1"))
        run(mk, "--preset", "tiny", "--dtype", "fp8", "--out", p("f2"), "--dequant-twin", p("t2"))
        check(digests(p("f1")) == digests(p("f2")), "same seed gave different bytes (fp8)")
        check(digests(p("t1")) == digests(p("t2")), "same seed gave different bytes (twin)")

        run(mk, "--preset", "tiny-noq", "--dtype", "bf16", "--out", p("n1"))
        run(mk, "--preset", "tiny-noq", "--dtype", "bf16", "--out", p("n2"))
        check(digests(p("n1")) == digests(p("n2")), "same seed gave different bytes (tiny-noq)")
        check(os.path.exists(p("n1", "model.safetensors")), "tiny-noq should be one file")

        # Names and dtypes as Hugging Face has them.
        F, T = read_ckpt(p("f1")), read_ckpt(p("t1"))
        cfg = json.load(open(p("f1", "config.json")))
        check(cfg["model_type"] == "deepseek_v3" and cfg["architectures"] == ["DeepseekV3ForCausalLM"], "config ids")
        check(cfg["quantization_config"] == {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                             "weight_block_size": [128, 128]}, "quantization_config")
        check("quantization_config" not in json.load(open(p("t1", "config.json"))), "twin config must be bf16")
        check(cfg["rope_scaling"]["type"] == "yarn" and
              cfg["max_position_embeddings"] / cfg["rope_scaling"]["original_max_position_embeddings"] ==
              cfg["rope_scaling"]["factor"], "tiny yarn: max_pos / original must equal factor")
        check(cfg["n_group"] > 1 and cfg["topk_group"] < cfg["n_group"] and cfg["first_k_dense_replace"] >= 1,
              "tiny routing geometry")
        for k in ["model.embed_tokens.weight", "lm_head.weight", "model.norm.weight",
                  "model.layers.1.mlp.gate.weight", "model.layers.0.input_layernorm.weight",
                  "model.layers.0.self_attn.q_a_layernorm.weight"]:
            check(F[k][0] == "BF16", f"{k} should stay BF16")
        check(F["model.layers.1.mlp.gate.e_score_correction_bias"][0] == "F32", "bias F32")
        quant = [k for k in F if F[k][0] == "F8_E4M3"]
        for suffix in ["self_attn.q_a_proj.weight", "self_attn.q_b_proj.weight", "self_attn.kv_a_proj_with_mqa.weight",
                       "self_attn.kv_b_proj.weight", "self_attn.o_proj.weight", "mlp.gate_proj.weight",
                       "mlp.experts.0.up_proj.weight", "mlp.shared_experts.down_proj.weight"]:
            check(any(k.endswith(suffix) for k in quant), f"no FP8 tensor ends with {suffix}")
        for k in quant:
            dt, shp, raw = F[k]
            s = F.get(k + "_scale_inv")
            check(s is not None and s[0] == "F32" and s[1] == [math.ceil(shp[0] / 128), math.ceil(shp[1] / 128)],
                  f"{k}_scale_inv shape")
        check(any(F[k][1][1] % 128 for k in quant) and any(F[k][1][0] % 128 for k in quant),
              "tiny fp8 should have partial 128-blocks in both dimensions")
        check(set(T) == {k for k in F if not k.endswith("_scale_inv")}, "twin has other tensor names")

        # Twin == exact dequantization (every element of a few tensors with partial blocks).
        for k in ["model.layers.1.mlp.experts.5.down_proj.weight", "model.layers.0.self_attn.q_b_proj.weight",
                  "model.layers.2.self_attn.kv_b_proj.weight"]:
            _, (r, c), raw = F[k]
            sc = struct.unpack("<%df" % (len(F[k + "_scale_inv"][2]) // 4), F[k + "_scale_inv"][2])
            bc = math.ceil(c / 128)
            tv = bf16s(T[k][2])
            bad = sum(1 for i in range(r) for j in range(c) if fp8(raw[i * c + j]) * sc[(i // 128) * bc + j // 128]
                      != tv[i * c + j])
            check(bad == 0, f"{k}: {bad} twin values differ from fp8 * scale_inv")
            codes = set(raw)
            check(len(codes) > 150 and max(x & 0x7f for x in codes) >= 0x70, f"{k}: fp8 codes do not span the range")
        for k in T:
            if F[k][0] != "F8_E4M3":
                check(F[k][2] == T[k][2], f"{k}: non-quantized tensor differs in the twin")
            else:
                # An FP8 linear keeps about its BF16 std (1/sqrt(fan_in)): the fp8 model behaves like the bf16 one.
                v = bf16s(T[k][2])
                ratio = math.sqrt(sum(x * x for x in v) / len(v)) * math.sqrt(T[k][1][1])
                check(0.75 <= ratio <= 1.15, f"{k}: fp8 std is {ratio:.3f} x 1/sqrt(fan_in)")

        # q_lora_rank null and its q_proj.
        N = read_ckpt(p("n1"))
        ncfg = json.load(open(p("n1", "config.json")))
        check(ncfg["q_lora_rank"] is None and ncfg["rope_scaling"] is None and ncfg["n_group"] == 1, "tiny-noq config")
        check("model.layers.0.self_attn.q_proj.weight" in N and
              not any("q_a_proj" in k for k in N), "tiny-noq must use q_proj")
        check(N["model.layers.1.mlp.shared_experts.gate_proj.weight"][1] ==
              [ncfg["moe_intermediate_size"] * ncfg["n_shared_experts"], ncfg["hidden_size"]], "shared expert width")

        # Peaky head (tools/mkmodel_write.c): lm_head row next(v) = 3/H x token v's unit-variance embedding
        # (std 2.5) + a random part orthogonal to it; next() has no fixed point and is one-to-one.
        V, H = ncfg["vocab_size"], ncfg["hidden_size"]
        emb, head = bf16s(N["model.embed_tokens.weight"][2]), bf16s(N["lm_head.weight"][2])
        esd = math.sqrt(sum(x * x for x in emb) / len(emb))
        check(2.3 < esd < 2.7, f"embedding std {esd:.3f}, expected ~2.5")
        seen = set()
        for v in range(0, V, 37):
            e = emb[v * H:(v + 1) * H]
            ee = sum(x * x for x in e)
            proj = sorted(((sum(h * x for h, x in zip(head[u * H:(u + 1) * H], e)) / ee * H * 2.5, u)
                           for u in range(V)), reverse=True)
            (p1, u1), (p2, _) = proj[0], proj[1]
            check(abs(p1 - 3.0) < 0.02 and p2 < 2.2 and u1 != v and u1 not in seen,
                  f"lm_head: token {v}'s aligned row {u1} projects {p1:.4f} (expected 3), next best {p2:.3f}")
            seen.add(u1)

        # MTP layer, --layers, --shard-mb 0, --config-only, r1 geometry, tokenizer copy.
        run(mk, "--preset", "tiny", "--out", p("m"), "--mtp", "--layers", "2", "--shard-mb", "0")
        M = read_ckpt(p("m"))
        mcfg = json.load(open(p("m", "config.json")))
        check(mcfg["num_hidden_layers"] == 2 and mcfg["num_nextn_predict_layers"] == 1, "mtp config")
        for k in ["embed_tokens.weight", "enorm.weight", "hnorm.weight", "eh_proj.weight",
                  "shared_head.norm.weight", "shared_head.head.weight", "mlp.experts.0.gate_proj.weight"]:
            check("model.layers.2." + k in M, f"MTP tensor model.layers.2.{k} missing")
        check(M["model.layers.2.eh_proj.weight"][1] == [256, 512], "eh_proj shape")

        run(mk, "--preset", "r1", "--dtype", "fp8", "--out", p("r1"), "--config-only")
        check(sorted(os.listdir(p("r1"))) == ["config.json", "generation_config.json"], "--config-only wrote weights")
        r1 = json.load(open(p("r1", "config.json")))
        check((r1["hidden_size"], r1["num_hidden_layers"], r1["n_routed_experts"], r1["vocab_size"],
               r1["rope_scaling"]["factor"], r1["q_lora_rank"]) == (7168, 61, 256, 129280, 40, 1536), "r1 geometry")
        run(mk, "--preset", "r1", "--out", p("r1"), "--config-only", "--layers", "4")
        check(json.load(open(p("r1", "config.json")))["num_hidden_layers"] == 4, "r1 --layers")

        os.mkdir(p("tok"))
        for f in ["tokenizer.json", "tokenizer_config.json"]:
            open(p("tok", f), "w").write('{"x": "%s"}' % f)
        run(mk, "--preset", "tiny", "--out", p("withtok"), "--tokenizer", p("tok"), "--config-only")
        check(json.load(open(p("withtok", "config.json")))["vocab_size"] == 129280, "--tokenizer vocab")
        check(open(p("withtok", "tokenizer.json")).read() == '{"x": "tokenizer.json"}', "tokenizer copy")

        # Rewriting a dir from sharded to one file leaves no stale shards.
        run(mk, "--preset", "tiny", "--out", p("a1"), "--seed", "7", "--shard-mb", "0")
        check(sorted(os.listdir(p("a1"))) == ["config.json", "generation_config.json", "model.safetensors"],
              f"stale files: {sorted(os.listdir(p('a1')))}")

        # Command-line errors: exit 2 and a message naming the option.
        for args, needle in [(["--preset", "huge", "--out", p("x")], "huge"),
                             (["--preset", "tiny", "--dtype", "int4", "--out", p("x")], "--dtype"),
                             (["--preset", "tiny", "--seed", "-1", "--out", p("x")], "--seed"),
                             (["--preset", "tiny", "--out", p("x"), "--dequant-twin", p("y")], "--dequant-twin"),
                             (["--preset", "tiny"], "--out"), (["--bogus"], "--bogus"),
                             (["--preset", "tiny", "--out", p("x"), "--layers", "0"], "--layers")]:
            r = run(mk, *args, ok=False)
            check(r.returncode == 2 and needle in r.stderr, f"{args}: rc {r.returncode} stderr {r.stderr!r}")
        r = run(mk, "--preset", "tiny", "--out", p("x"), "--tokenizer", p("nowhere"), ok=False)
        check(r.returncode == 1 and "tokenizer.json" in r.stderr, f"missing tokenizer: {r.stderr!r}")

    print(f"{'FAILED' if FAILS else 'ok'}: {len(FAILS)} failure(s)")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
