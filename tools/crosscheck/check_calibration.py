#!/usr/bin/env python3
"""`smolconv calibrate` writes a statistics file h5py reads as documented, with statistics numpy
recomputes; `smolconv quantize --method gptq` from it is deterministic and readable by gguf-py.

Model: the llama fixture (Tests/Fixtures/hf/llama, 2 layers, D = 64), fed fixed token ids.
  * h5py: root attributes, one group per Linear weight (q/k/v share the datasets by hard link),
    shapes, counts, importance ≥ 0, Hessian symmetric with diagonal = importance.
  * numpy: the importance (mean x²) of layer 0's q/k/v input, RMSNorm(embedding) · input_layernorm,
    recomputed from model.safetensors.
  * Quantizing twice from the same statistics (GPTQ, Q4_0) gives identical bytes; gguf-py reads the
    file and a GPTQ tensor differs from plain rounding.
  * A llama.cpp-format imatrix GGUF written by gguf-py with the same importance (in_sum2 / counts)
    gives the same --method imatrix bytes as the HDF5 file.

MoE (the qwen3_moe fixture): h5py reads [E, …] expert datasets with a zero row and count for every
expert the router never picked; `quantize --method gptq --json` lists exactly those experts, gguf-py
reads their slices as the plain-rounding bytes (and every other expert's as different); a per-expert
llama.cpp imatrix written by gguf-py gives the same --method imatrix bytes as the HDF5 file.
"""
import json, os, subprocess, sys, tempfile

try:
    import h5py
except ImportError:
    print("skipped: h5py is not installed")
    sys.exit(0)
import numpy as np
import gguf
from safetensors.numpy import load_file

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOLCONV = os.environ.get("SMOLCONV", os.path.join(root, ".build", "debug", "smolconv"))
fixture = os.path.join(root, "Tests", "Fixtures", "hf", "llama")
config = json.load(open(os.path.join(fixture, "config.json")))
weights = load_file(os.path.join(fixture, "model.safetensors"))
V, D, L = config["vocab_size"], config["hidden_size"], config["num_hidden_layers"]
rng = np.random.default_rng(7)
ids = rng.integers(0, V, size=96).tolist()
ctx = 32
failures = []

def check(cond, msg):
    if not cond:
        failures.append(msg)

with tempfile.TemporaryDirectory() as tmp:
    stats = os.path.join(tmp, "stats.h5")
    r = subprocess.run([SMOLCONV, "calibrate", fixture, "--tokens", ",".join(map(str, ids)), "--ctx", str(ctx), "-o", stats],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr); sys.exit(1)
    f = h5py.File(stats, "r")
    a = f.attrs
    check(a["format"] == b"smolconv-calibration" and a["format_version"] == 1, f"format attributes {dict(a)}")
    check(a["ctx"] == ctx and a["windows"] == 3 and a["tokens"] == 96 and a["naming"] == b"hf", f"run attributes {dict(a)}")
    check(len(a["model_xxh64"]) == 16 and len(a["smolconv_version"]) > 0, "model hash / version attributes")
    names = sorted(f["tensors"].keys())
    want = sorted([f"model.layers.{i}.{m}.weight" for i in range(L) for m in
                  ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]] + ["lm_head.weight"])
    check(names == want, f"tensor groups {names}")
    for n in names:
        g = f["tensors"][n]
        cols = weights[n].shape[1]
        check(g.attrs["in_features"] == cols, f"{n}: in_features {g.attrs['in_features']} vs weight {weights[n].shape}")
        check(g["importance"].shape == (cols,) and g["mean_abs"].shape == (cols,) and g["hessian"].shape == (cols, cols), f"{n}: shapes")
        check(list(g["counts"][:]) == [96] and g.attrs["tokens"] == 96, f"{n}: counts {g['counts'][:]}")
        imp, h = g["importance"][:], g["hessian"][:]
        check((imp >= 0).all() and (g["mean_abs"][:] >= 0).all(), f"{n}: negative statistics")
        check(np.allclose(h, h.T) and np.allclose(np.diag(h), imp, rtol=1e-4, atol=1e-7), f"{n}: Hessian not symmetric or diagonal ≠ importance")
        # mean|x|² ≤ mean x² (Jensen)
        check((g["mean_abs"][:] ** 2 <= imp * (1 + 1e-4) + 1e-9).all(), f"{n}: mean|x|² > mean x²")
    q, k = f["tensors"]["model.layers.0.self_attn.q_proj.weight"], f["tensors"]["model.layers.0.self_attn.k_proj.weight"]
    check(q["hessian"].id == k["hessian"].id or h5py.h5o.get_info(q["hessian"].id).addr == h5py.h5o.get_info(k["hessian"].id).addr,
          "q and k do not share one Hessian dataset")
    check(k.attrs["shares_input_with"] == b"model.layers.0.self_attn.q_proj.weight", "shares_input_with")
    # Independent recomputation: each window starts from scratch, so layer 0's input is per-token.
    emb = weights["model.embed_tokens.weight"][ids].astype(np.float64)
    x = emb / np.sqrt((emb ** 2).mean(axis=1, keepdims=True) + config["rms_norm_eps"]) * weights["model.layers.0.input_layernorm.weight"]
    want_imp = (x ** 2).mean(axis=0)
    got = q["importance"][:]
    check(np.allclose(got, want_imp, rtol=1e-4, atol=1e-8), f"layer-0 importance differs from numpy: max rel {np.max(np.abs(got - want_imp) / np.maximum(want_imp, 1e-12))}")
    check(np.allclose(q["mean_abs"][:], np.abs(x).mean(axis=0), rtol=1e-4, atol=1e-8), "layer-0 mean |x| differs from numpy")
    f.close()

    outs = []
    for i in range(2):
        out = os.path.join(tmp, f"gptq{i}.gguf")
        r = subprocess.run([SMOLCONV, "quantize", fixture, out, "--type", "Q4_0", "--calibration", stats, "--method", "gptq"], capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stderr); sys.exit(1)
        outs.append(out)
    rtn = os.path.join(tmp, "rtn.gguf")
    r = subprocess.run([SMOLCONV, "quantize", fixture, rtn, "--type", "Q4_0"], capture_output=True, text=True)
    check(r.returncode == 0, r.stderr)
    check(open(outs[0], "rb").read() == open(outs[1], "rb").read(), "two GPTQ runs from the same statistics differ")
    g = {t.name: t for t in gguf.GGUFReader(outs[0]).tensors}
    p = {t.name: t for t in gguf.GGUFReader(rtn).tensors}
    t = g["blk.0.attn_q.weight"]
    check(t.tensor_type == gguf.GGMLQuantizationType.Q4_0, f"blk.0.attn_q type {t.tensor_type}")
    check(bytes(t.data.tobytes()) != bytes(p["blk.0.attn_q.weight"].data.tobytes()), "GPTQ tensor equals plain rounding")
    deq = gguf.quants.dequantize(t.data, t.tensor_type)
    check(np.isfinite(deq).all(), "GPTQ tensor has non-finite values")

    # The same importance as a llama.cpp imatrix GGUF (written by gguf-py): --method imatrix from it
    # gives the same bytes as from the HDF5 file.
    f = h5py.File(stats, "r")
    imat = os.path.join(tmp, "imatrix.gguf")
    w = gguf.GGUFWriter(imat, "imatrix")
    w.add_type("imatrix")
    w.add_array("imatrix.datasets", ["check_calibration"])
    w.add_uint32("imatrix.chunk_count", 3)
    w.add_uint32("imatrix.chunk_size", ctx)
    hf2gguf = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
               "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for n in sorted(f["tensors"].keys()):
        g = f["tensors"][n]
        gname = "output.weight" if n == "lm_head.weight" else f"blk.{n.split('.')[2]}.{hf2gguf['.'.join(n.split('.')[3:5])]}.weight"
        cnt = float(g["counts"][0])
        w.add_tensor(gname + ".in_sum2", (g["importance"][:].astype(np.float64) * cnt).astype(np.float32).reshape(1, -1))
        w.add_tensor(gname + ".counts", np.array([cnt], np.float32))
    f.close()
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    pair = []
    for src in [stats, imat]:
        out = os.path.join(tmp, f"imatrix-{len(pair)}.gguf")
        r = subprocess.run([SMOLCONV, "quantize", fixture, out, "--type", "Q4_0", "--calibration", src, "--method", "imatrix"], capture_output=True, text=True)
        check(r.returncode == 0, f"quantize --method imatrix from {os.path.basename(src)}: {r.stderr.strip()}")
        pair.append(open(out, "rb").read() if r.returncode == 0 else b"")
    check(pair[0] == pair[1] and len(pair[0]) > 0, "imatrix quantization from the HDF5 file and from the equivalent imatrix GGUF differ")
    check(pair[0] != open(rtn, "rb").read(), "--method imatrix gave the plain-rounding bytes")

# MoE (qwen3_moe fixture, 8 experts, top-2): per-expert statistics as [E, ...] datasets with a row for
# every expert (count 0 where the router sent no token), and quantization that uses each expert's row.
moe = os.path.join(root, "Tests", "Fixtures", "hf", "qwen3_moe")
mcfg = json.load(open(os.path.join(moe, "config.json")))
E, ML = mcfg.get("num_experts") or mcfg["num_local_experts"], mcfg["num_hidden_layers"]
mids = [(i * 7919 + 13) % mcfg["vocab_size"] for i in range(12)]
with tempfile.TemporaryDirectory() as tmp:
    stats = os.path.join(tmp, "moe.h5")
    r = subprocess.run([SMOLCONV, "calibrate", moe, "--tokens", ",".join(map(str, mids)), "--ctx", "12", "-o", stats], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr); sys.exit(1)
    f = h5py.File(stats, "r")
    zero = {}
    for l in range(ML):
        gu, dn = f["tensors"][f"model.layers.{l}.mlp.experts.gate_up_proj"], f["tensors"][f"model.layers.{l}.mlp.experts.down_proj"]
        for g, n in [(gu, mcfg["hidden_size"]), (dn, mcfg["moe_intermediate_size"])]:
            check(g.attrs["experts"] == E and g["counts"].shape == (E,) and g["importance"].shape == (E, n) and g["hessian"].shape == (E, n, n),
                  f"layer {l}: expert dataset shapes {g['counts'].shape} {g['importance'].shape}")
            c = g["counts"][:]
            check(c.sum() == 2 * len(mids), f"layer {l}: counts {c.tolist()} do not add up to top-2 of {len(mids)} tokens")
            for e in np.where(c == 0)[0]:
                check(not g["importance"][e].any() and not g["hessian"][e].any(), f"layer {l} expert {e}: statistics without tokens")
        check((gu["counts"][:] == dn["counts"][:]).all(), f"layer {l}: gate/up and down counts differ")
        zero[l] = [int(e) for e in np.where(gu["counts"][:] == 0)[0]]
    check(any(zero.values()), f"the short corpus reached every expert ({zero}); the fallback is not exercised")
    outs = {}
    for m in ["rtn", "gptq"]:
        out = os.path.join(tmp, f"moe-{m}.gguf")
        args = [SMOLCONV, "quantize", moe, out, "--type", "Q4_0", "--json"] + ([] if m == "rtn" else ["--calibration", stats, "--method", m])
        r = subprocess.run(args, capture_output=True, text=True)
        check(r.returncode == 0, f"quantize {m}: {r.stderr.strip()}")
        outs[m] = (gguf.GGUFReader(out), json.loads(r.stdout) if r.returncode == 0 else {})
    listed = {x["tensor"]: x["experts"] for x in outs["gptq"][1].get("rtn_fallback_experts", [])}
    want = {f"blk.{l}.ffn_{k}_exps.weight": z for l, z in zero.items() if z for k in ["gate", "up", "down"]}
    check(listed == want, f"rtn_fallback_experts {listed} vs zero-count experts {want}")
    rt = {t.name: t for t in outs["rtn"][0].tensors}
    for t in outs["gptq"][0].tensors:
        if "_exps" not in t.name:
            continue
        a, b = np.asarray(t.data).reshape(E, -1), np.asarray(rt[t.name].data).reshape(E, -1)
        l = int(t.name.split(".")[1])
        for e in range(E):
            same = (a[e] == b[e]).all()
            check(same == (e in zero[l]), f"{t.name} expert {e}: {'identical to' if same else 'differs from'} plain rounding with {'no' if e in zero[l] else 'some'} tokens")
    # The same per-expert importance as a llama.cpp imatrix ([E, in] in_sum2 under the GGUF stack
    # names) gives the same --method imatrix bytes as the HDF5 file.
    imat = os.path.join(tmp, "moe-imatrix.gguf")
    w = gguf.GGUFWriter(imat, "imatrix")
    w.add_type("imatrix")
    w.add_array("imatrix.datasets", ["check_calibration"])
    w.add_uint32("imatrix.chunk_count", 1)
    w.add_uint32("imatrix.chunk_size", 12)
    qkvo = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output"}
    for n in sorted(f["tensors"].keys()):
        g = f["tensors"][n]
        parts = n.split(".")
        if n == "lm_head.weight":
            targets = ["output.weight"]
        elif n.endswith("experts.gate_up_proj"):
            targets = [f"blk.{parts[2]}.ffn_gate_exps.weight", f"blk.{parts[2]}.ffn_up_exps.weight"]
        elif n.endswith("experts.down_proj"):
            targets = [f"blk.{parts[2]}.ffn_down_exps.weight"]
        else:
            targets = [f"blk.{parts[2]}.{qkvo['.'.join(parts[3:5])]}.weight"]
        # Counts 1 (0 where the expert saw nothing): in_sum2 / counts is then the importance exactly
        # (a true count would round it in Float32 and move a few Q4_0 scale choices).
        cnt = (g["counts"][:] > 0).astype(np.float32)
        imp = g["importance"][:].astype(np.float32).reshape(len(cnt), -1)
        for t in targets:
            w.add_tensor(t + ".in_sum2", imp * cnt[:, None])
            w.add_tensor(t + ".counts", cnt)
    f.close()
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    pair = []
    for src in [stats, imat]:
        out = os.path.join(tmp, f"moe-imatrix-{len(pair)}.gguf")
        r = subprocess.run([SMOLCONV, "quantize", moe, out, "--type", "Q4_0", "--calibration", src, "--method", "imatrix"], capture_output=True, text=True)
        check(r.returncode == 0, f"MoE quantize --method imatrix from {os.path.basename(src)}: {r.stderr.strip()}")
        pair.append(open(out, "rb").read() if r.returncode == 0 else b"")
    check(pair[0] == pair[1] and len(pair[0]) > 0, "MoE imatrix quantization from the HDF5 file and from the equivalent imatrix GGUF differ")

if failures:
    print("\n".join(failures)); sys.exit(1)
print("ok")
