#!/usr/bin/env python3
"""PyTorch side of tools/bench_lora.sh (needs torch, transformers, peft: `pip install torch transformers
peft`; not part of CI or tools/setup).

  dense: Gemma 3 270M's configuration (hidden 640, 18 layers, 4 heads / 1 KV head of 256, FFN 2048,
         vocab 262144, tied embeddings), random F32 weights, PEFT LoRA r=16 alpha=32 on q k v o gate up
         down, AdamW (lr 1e-4), one sequence of SEQ tokens per step (labels = input_ids). Prints one
         JSON line: steps timed (after one warm-up step), tokens/s, peak RSS of the process.
  moe:   one Qwen3-30B-A3B MoE block (transformers' Qwen3MoeSparseMoeBlock: E=128, top-8, H=2048,
         I=768), random F32 weights, PEFT LoRA r=16 on the experts via target_parameters
         (mlp.experts.gate_up_proj / down_proj), 512 tokens, forward + backward of sum(out²)/2.
  moe-model DIR: writes the smolconv side's one-layer checkpoint with that MoE block (numpy only).
Threads: torch.set_num_threads(THREADS) (default 2).
"""
import json, os, resource, sys, time

mode = sys.argv[1] if len(sys.argv) > 1 else "dense"
threads = int(os.environ.get("THREADS", "2"))
import torch
torch.set_num_threads(threads)
torch.manual_seed(0)
from peft import LoraConfig, get_peft_model


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if mode == "dense":
    from transformers import Gemma3TextConfig, Gemma3ForCausalLM
    seq, steps = int(os.environ.get("SEQ", "256")), int(os.environ.get("STEPS", "5"))
    cfg = Gemma3TextConfig(vocab_size=262144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
                           num_attention_heads=4, num_key_value_heads=1, head_dim=256, sliding_window=512,
                           max_position_embeddings=32768, rms_norm_eps=1e-6, query_pre_attn_scalar=256,
                           tie_word_embeddings=True)
    model = Gemma3ForCausalLM(cfg).to(torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.0)
    ids = torch.randint(0, cfg.vocab_size, (1, seq))
    times = []
    for s in range(steps + 1):
        t = time.time()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step(); opt.zero_grad(set_to_none=True)
        times.append(time.time() - t)
    dt = sum(times[1:]) / steps
    print(json.dumps({"impl": "torch+peft", "mode": "dense", "threads": threads, "seq": seq, "steps_timed": steps,
                      "seconds_per_step": dt, "tokens_per_second": seq / dt, "peak_rss_mb": peak_rss_mb(),
                      "torch": torch.__version__}))
elif mode == "moe":
    from transformers import Qwen3MoeConfig
    from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock
    T, runs = int(os.environ.get("TOKENS", "512")), int(os.environ.get("RUNS", "2"))
    cfg = Qwen3MoeConfig(hidden_size=2048, moe_intermediate_size=768, num_experts=128, num_experts_per_tok=8,
                         norm_topk_prob=True)
    impl = os.environ.get("EXPERTS_IMPL")
    if impl:
        cfg._experts_implementation = impl

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mlp = Qwen3MoeSparseMoeBlock(cfg)

        def forward(self, x):
            out = self.mlp(x)
            return out[0] if isinstance(out, tuple) else out

    block = Wrap().to(torch.float32)
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, 0.02)
    block = get_peft_model(block, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=[],
                                             target_parameters=["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]))
    x = torch.randn(1, T, 2048)
    times = []
    for s in range(runs + 1):
        t = time.time()
        out = block(x)
        (out.pow(2).sum() / 2).backward()
        block.zero_grad(set_to_none=True)
        times.append(time.time() - t)
    dt = sum(times[1:]) / runs
    print(json.dumps({"impl": "torch+peft", "mode": "moe", "threads": threads, "tokens": T, "runs_timed": runs,
                      "experts_implementation": impl or "default", "seconds": dt, "peak_rss_mb": peak_rss_mb(),
                      "torch": torch.__version__}))
elif mode == "moe-model":
    # A one-layer Qwen3-MoE checkpoint with Qwen3-30B-A3B's MoE block (E=128, top-8, H=2048, I=768;
    # small attention: 4 heads / 2 KV heads of 128, vocab 512), random F32 weights in the per-expert
    # layout transformers saves, for `smolconv train` (and `smolconv quantize --type Q4_0`).
    import numpy as np
    from safetensors.numpy import save_file
    out = sys.argv[2]
    os.makedirs(out, exist_ok=True)
    H, I, E, V, heads, kv, hd = 2048, 768, 128, 512, 4, 2, 128
    rng = np.random.default_rng(0)
    r = lambda *shape: (rng.standard_normal(shape, dtype=np.float32) * 0.02)
    t = {"model.embed_tokens.weight": r(V, H), "lm_head.weight": r(V, H), "model.norm.weight": np.ones(H, np.float32)}
    p = "model.layers.0."
    t.update({p + "input_layernorm.weight": np.ones(H, np.float32), p + "post_attention_layernorm.weight": np.ones(H, np.float32),
              p + "self_attn.q_proj.weight": r(heads * hd, H), p + "self_attn.k_proj.weight": r(kv * hd, H),
              p + "self_attn.v_proj.weight": r(kv * hd, H), p + "self_attn.o_proj.weight": r(H, heads * hd),
              p + "self_attn.q_norm.weight": np.ones(hd, np.float32), p + "self_attn.k_norm.weight": np.ones(hd, np.float32),
              p + "mlp.gate.weight": r(E, H)})
    for e in range(E):
        t[f"{p}mlp.experts.{e}.gate_proj.weight"] = r(I, H)
        t[f"{p}mlp.experts.{e}.up_proj.weight"] = r(I, H)
        t[f"{p}mlp.experts.{e}.down_proj.weight"] = r(H, I)
    save_file(t, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    json.dump({"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": H,
               "intermediate_size": 6144, "moe_intermediate_size": I, "num_experts": E, "num_experts_per_tok": 8,
               "norm_topk_prob": True, "num_hidden_layers": 1, "num_attention_heads": heads, "num_key_value_heads": kv,
               "head_dim": hd, "vocab_size": V, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "hidden_act": "silu",
               "attention_bias": False, "decoder_sparse_step": 1, "mlp_only_layers": [], "tie_word_embeddings": False,
               "max_position_embeddings": 4096, "dtype": "float32"}, open(os.path.join(out, "config.json"), "w"), indent=2)
    print(f"wrote {out}")
else:
    sys.exit(f"unknown mode {mode}")
