#!/usr/bin/env python3
"""`smolconv train` writes PEFT adapter folders that PEFT's own files look like (Python safetensors +
json, no torch needed).

For the llama and qwen3_moe fixtures, `smolconv train` runs one step on the fixture's input_ids twice:
resumed from the fixture's PEFT adapter (Tests/Fixtures/hf/<arch>/lora, written by peft 0.21's
save_pretrained), and fresh with the fixture's r, lora_alpha, target modules and target parameters.
Each written adapter_model.safetensors must hold the same tensor names, shapes and dtypes as PEFT's
(and the same {"format": "pt"} metadata), and each adapter_config.json the same keys with the same
r, lora_alpha, peft_type, bias, target_modules and target_parameters (as sets: PEFT saves them in
set order) and the same auto_mapping.base_model_class. The safetensors library reading the file is
also the check that its header and offsets are well formed.
"""
import json, os, subprocess, sys, tempfile

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOLCONV = os.environ.get("SMOLCONV", os.path.join(root, ".build", "debug", "smolconv"))
try:
    from safetensors import safe_open
except ImportError as e:
    print(f"skipped: safetensors not installed ({e})")
    sys.exit(0)

failures = []
MOE_TARGETS = {"mlp.experts.gate_up_proj": "experts.gate_up_proj", "mlp.experts.down_proj": "experts.down_proj"}


def tensors(path):
    with safe_open(path, "np") as f:
        return {k: (f.get_tensor(k).dtype.str, f.get_tensor(k).shape) for k in f.keys()}, f.metadata()


def compare(label, ours_dir, ref_dir):
    ours, ours_meta = tensors(os.path.join(ours_dir, "adapter_model.safetensors"))
    ref, ref_meta = tensors(os.path.join(ref_dir, "adapter_model.safetensors"))
    if set(ours) != set(ref):
        failures.append(f"{label}: tensor names differ: {sorted(set(ours) ^ set(ref))[:6]}")
    for k in sorted(set(ours) & set(ref)):
        if ours[k] != ref[k]:
            failures.append(f"{label}: {k}: (dtype, shape) {ours[k]} != PEFT's {ref[k]}")
    if ours_meta != ref_meta:
        failures.append(f"{label}: metadata {ours_meta} != PEFT's {ref_meta}")
    a = json.load(open(os.path.join(ours_dir, "adapter_config.json")))
    b = json.load(open(os.path.join(ref_dir, "adapter_config.json")))
    if set(a) != set(b):
        failures.append(f"{label}: adapter_config keys differ: ours only {sorted(set(a) - set(b))}, PEFT only {sorted(set(b) - set(a))}")
    for key in ["r", "lora_alpha", "peft_type", "bias", "use_rslora", "use_dora", "fan_in_fan_out"]:
        if a.get(key) != b.get(key):
            failures.append(f"{label}: {key} = {a.get(key)!r}, PEFT's {b.get(key)!r}")
    for key in ["target_modules", "target_parameters"]:
        if set(a.get(key) or []) != set(b.get(key) or []):
            failures.append(f"{label}: {key} = {a.get(key)!r}, PEFT's {b.get(key)!r}")
    ma, mb = (a.get("auto_mapping") or {}), (b.get("auto_mapping") or {})
    if ma.get("base_model_class") != mb.get("base_model_class"):
        failures.append(f"{label}: auto_mapping.base_model_class = {ma.get('base_model_class')!r}, PEFT's {mb.get('base_model_class')!r}")


def train(*args):
    r = subprocess.run([SMOLCONV, "train", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"smolconv train {' '.join(args)} failed: {r.stderr.strip()[-2000:]}")


with tempfile.TemporaryDirectory() as tmp:
    for arch in ["llama", "qwen3_moe"]:
        src = os.path.join(root, "Tests", "Fixtures", "hf", arch)
        ref_dir = os.path.join(src, "lora")
        with safe_open(os.path.join(src, "reference.safetensors"), "np") as f:
            ids = ",".join(str(int(i)) for i in f.get_tensor("input_ids").reshape(-1))
        cfg = json.load(open(os.path.join(ref_dir, "adapter_config.json")))
        targets = list(cfg["target_modules"]) + [MOE_TARGETS[p] for p in (cfg.get("target_parameters") or [])]
        common = ["--tokens", ids, "--steps", "1", "--lr", "1e-3"]
        resumed, fresh = os.path.join(tmp, f"{arch}-resumed"), os.path.join(tmp, f"{arch}-fresh")
        try:
            train(src, *common, "--resume", ref_dir, "--output", resumed)
            compare(f"{arch} resumed", resumed, ref_dir)
            train(src, *common, "--rank", str(cfg["r"]), "--alpha", str(cfg["lora_alpha"]),
                  "--targets", ",".join(targets), "--output", fresh)
            compare(f"{arch} fresh", fresh, ref_dir)
        except RuntimeError as e:
            failures.append(f"{arch}: {e}")

if failures:
    print("\n".join(failures))
    sys.exit(1)
print("ok: adapters trained on llama and qwen3_moe (resumed and fresh) match PEFT's names, shapes, dtypes and config")
