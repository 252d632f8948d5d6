#!/usr/bin/env python3
"""Write a Hugging Face tokenizer.json + tokenizer_config.json from a byte-level BPE GGUF vocabulary.

Usage: gguf_vocab_to_tokenizer_json.py VOCAB.gguf OUT_FOLDER

Reads the GGUF with gguf-py (llama.cpp's own library) and writes the layout transformers' fast
tokenizers use for Llama 3 / Qwen2 / GPT-2: model BPE (vocab + merges as pairs), control and
user-defined tokens as added_tokens, the pre-tokenizer regex of the file's `tokenizer.ggml.pre`
followed by ByteLevel, and a TemplateProcessing post-processor that prepends BOS when llama.cpp
would. It is independent of smolconv's Swift code, so the test that reads both files and
compares ids checks one implementation against another.
"""
import json
import os
import sys

import gguf

# tokenizer.json split patterns, as the original models' tokenizer.json files spell them.
PATTERNS = {
    "llama-bpe": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
}
# llama.cpp adds BOS by default for these pre-tokenizers when the file has no add_bos_token.
DEFAULT_ADD_BOS = {"llama-bpe": True}


def field(reader, key):
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def main():
    src, out = sys.argv[1], sys.argv[2]
    r = gguf.GGUFReader(src)
    if field(r, "tokenizer.ggml.model") != "gpt2":
        sys.exit(f"{src}: not a byte-level BPE (gpt2) vocabulary")
    pre = field(r, "tokenizer.ggml.pre")
    tokens = field(r, "tokenizer.ggml.tokens")
    types = field(r, "tokenizer.ggml.token_type")
    merges = field(r, "tokenizer.ggml.merges")
    bos = field(r, "tokenizer.ggml.bos_token_id")
    eos = field(r, "tokenizer.ggml.eos_token_id")
    add_bos = field(r, "tokenizer.ggml.add_bos_token")
    if add_bos is None:
        add_bos = DEFAULT_ADD_BOS.get(pre, False)

    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True}
    if pre == "gpt-2":
        pre_tokenizer = dict(byte_level, use_regex=True)
    elif pre in PATTERNS:
        pre_tokenizer = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": PATTERNS[pre]}, "behavior": "Isolated", "invert": False},
            dict(byte_level, use_regex=False)]}
    else:
        sys.exit(f"{src}: no tokenizer.json pattern for pre '{pre}'")

    vocab, added = {}, []
    for i, (t, ty) in enumerate(zip(tokens, types)):
        if ty in (3, 4):  # control, user-defined
            added.append({"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": ty == 3})
        else:
            vocab[t] = i
    pairs = []
    for m in merges:
        a, b = m.split(" ", 1) if m.find(" ", 1) > 0 else (m, "")
        pairs.append([a, b])

    post = None
    if add_bos and bos is not None:
        bos_text = tokens[bos]
        post = {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": bos_text, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": bos_text, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": bos_text, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {bos_text: {"id": bos_text, "ids": [bos], "tokens": [bos_text]}}}
    doc = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None, "pre_tokenizer": pre_tokenizer, "post_processor": post,
        "decoder": dict(byte_level, use_regex=True),
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": pre == "llama-bpe", "vocab": vocab, "merges": pairs},
    }
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 131072}
    if bos is not None:
        config["bos_token"] = tokens[bos]
    if eos is not None:
        config["eos_token"] = tokens[eos]
    os.makedirs(out, exist_ok=True)
    for name, obj in (("tokenizer.json", doc), ("tokenizer_config.json", config)):
        tmp = os.path.join(out, name + ".part")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, indent=1)
        os.replace(tmp, os.path.join(out, name))


if __name__ == "__main__":
    main()
