#!/usr/bin/env python3
"""Golden files for QLoRA on an NF4 base (Tests/Fixtures/qlora/).

1. `smolconv quantize Tests/Fixtures/hf/llama Tests/Fixtures/qlora/llama_nf4 --format nf4` (bitsandbytes'
   layout; tools/crosscheck/check_nf4_quantize.py checks those bytes against bitsandbytes itself).
2. numpy dequantizes every NF4 weight of that folder from formats/nf4.md (code[nibble] · absmax of the
   element's block, high nibble first; every fixture matrix has cols a multiple of the block size, so
   bitsandbytes' CPU block indexing equals the flat one) — nothing of smolconv's is used here.
3. transformers' LlamaForCausalLM in float64 with those weights, PEFT's adapter Tests/Fixtures/hf/llama/lora
   (PeftModel.from_pretrained), `model(input_ids, labels=input_ids)` on the fixture's input_ids, backward:
   loss and the gradient of every lora_A / lora_B in float64 → Tests/Fixtures/qlora/llama_nf4_lora_reference.safetensors
   (names as PEFT's parameters, prefixed grad.; `loss` F64 [1]).

Usage: SMOLCONV=.build/release/smolconv python3 tools/golden_qlora_nf4.py
"""
import json, os, shutil, subprocess, sys
import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from transformers import AutoConfig, LlamaForCausalLM
from peft import PeftModel

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOLCONV = os.environ.get("SMOLCONV", os.path.join(root, ".build", "release", "smolconv"))
SRC = os.path.join(root, "Tests", "Fixtures", "hf", "llama")
OUT = os.path.join(root, "Tests", "Fixtures", "qlora")
NF4_DIR = os.path.join(OUT, "llama_nf4")

os.makedirs(OUT, exist_ok=True)
if os.path.exists(NF4_DIR):
    shutil.rmtree(NF4_DIR)
subprocess.run([SMOLCONV, "quantize", SRC, NF4_DIR, "--format", "nf4"], check=True)
for extra in ["generation_config.json"]:
    if os.path.exists(os.path.join(NF4_DIR, extra)):
        os.remove(os.path.join(NF4_DIR, extra))

# formats/nf4.md: the 16 NF4 values (bitsandbytes' table).
tensors = load_file(os.path.join(NF4_DIR, "model.safetensors"))
weights = {}
for name, t in tensors.items():
    if ".quant_state." in name or name.endswith((".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map")):
        continue
    state_name = name + ".quant_state.bitsandbytes__nf4"
    if state_name not in tensors:
        weights[name] = t.astype(np.float64)
        continue
    state = json.loads(bytes(tensors[state_name]).decode())
    assert state["quant_type"] == "nf4" and "nested_blocksize" not in state, state
    rows, cols = state["shape"]
    bs = state["blocksize"]
    assert cols % bs == 0, "flat and bitsandbytes-CPU block indexing differ for this matrix"
    packed = t.reshape(-1)
    nib = np.empty(packed.size * 2, dtype=np.uint8)
    nib[0::2] = packed >> 4
    nib[1::2] = packed & 0xF
    code = tensors[name + ".quant_map"].astype(np.float64)
    absmax = tensors[name + ".absmax"].astype(np.float64)
    w = code[nib] * np.repeat(absmax, bs)[: rows * cols]
    weights[name] = w.reshape(rows, cols)

config = AutoConfig.from_pretrained(SRC)
torch.manual_seed(0)
model = LlamaForCausalLM(config).to(torch.float64)
missing, unexpected = model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()}, strict=False)
assert not unexpected and all("rotary" in m for m in missing), (missing, unexpected)
model = PeftModel.from_pretrained(model, os.path.join(SRC, "lora")).to(torch.float64)
model.train()
for n, p in model.named_parameters():
    p.requires_grad_("lora_" in n)
ids = torch.from_numpy(load_file(os.path.join(SRC, "reference.safetensors"))["input_ids"].astype(np.int64))
out = model(input_ids=ids, labels=ids)
out.loss.backward()
ref = {"loss": np.array([out.loss.item()], dtype=np.float64)}
for n, p in model.named_parameters():
    if "lora_" in n:
        ref["grad." + n] = p.grad.detach().numpy().astype(np.float64)
save_file(ref, os.path.join(OUT, "llama_nf4_lora_reference.safetensors"))
print(f"loss {out.loss.item():.10f}, {len(ref) - 1} gradients written")
