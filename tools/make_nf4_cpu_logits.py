"""Adds `reference_f32path.safetensors` to Tests/Fixtures/quant/llama-nf4{,-double}/: the logits transformers +
bitsandbytes compute when they load that saved folder on a CPU without AVX512-BF16 (bitsandbytes then runs its
dequantize-then-F32-linear path; with AVX512-BF16 it repacks the weights for a BF16 kernel instead).

Made with torch 2.15.0, transformers 5.24.0, bitsandbytes 0.50.2 on an x86-64 CPU without avx512_bf16. These
logits differ from the folders' `reference.safetensors` (made by whoever made the folders, on their machine) by
about 1e-2 of the largest logit, while matching a NumPy forward pass over the dequantized weights to 1e-6.
"""
import os
import numpy as np
import torch
import bitsandbytes.functional as F
from transformers import AutoModelForCausalLM
from safetensors.numpy import load_file, save_file

assert not F.has_avx512bf16(), "run this on a CPU without AVX512-BF16 (else bitsandbytes takes its BF16 kernel)"
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "quant")
for name in ["llama-nf4", "llama-nf4-double"]:
    folder = os.path.join(root, name)
    ids = load_file(os.path.join(folder, "reference.safetensors"))["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(folder, device_map="cpu").eval()
    with torch.no_grad():
        logits = model(torch.tensor(ids)).logits.float().numpy()
    save_file({"input_ids": ids, "logits": logits}, os.path.join(folder, "reference_f32path.safetensors"))
    print(name, "vs reference.safetensors:", np.abs(logits - load_file(os.path.join(folder, "reference.safetensors"))["logits"]).max())
