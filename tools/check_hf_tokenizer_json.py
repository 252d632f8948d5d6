#!/usr/bin/env python3
"""Check a tokenizer.json with Hugging Face's own `tokenizers` library against llama.cpp's ids.

Usage: check_hf_tokenizer_json.py FOLDER VOCAB.gguf   (uses VOCAB.gguf.inp / VOCAB.gguf.out)
       check_hf_tokenizer_json.py FOLDER --gemma3 Tests/Fixtures

FOLDER holds a tokenizer.json smolconv wrote (TokenizerVocabulary.writeHuggingFace). Every
llama.cpp test string is encoded without special tokens and compared with the .out ids (or, with
--gemma3, the real model's cases and GPL-3 ids). Needs `pip install tokenizers` (not installed by
tools/setup; this is a manual cross-check, see formats/tokenizers.md).
"""
import json
import os
import sys

from tokenizers import Tokenizer


def main():
    folder, ref = sys.argv[1], sys.argv[2]
    tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    bad = 0
    if ref == "--gemma3":
        fx = sys.argv[3]
        cases = json.load(open(os.path.join(fx, "gemma3-270m-tokenizer-cases.json")))["cases"]
        pairs = [(c["text"], c["ids_with_bos"][1:]) for c in cases]
        gpl = open(os.path.join(fx, "tokenizer/GPL-3"), encoding="utf-8").read()
        pairs.append((gpl, json.load(open(os.path.join(fx, "gemma3-270m-gpl3-tokens.json")))["ids_with_bos"][1:]))
    else:
        inp = open(ref + ".inp", encoding="utf-8").read().split("\n__ggml_vocab_test__\n")
        out = open(ref + ".out", encoding="utf-8").read().split("\n")
        pairs = [(s, [int(x) for x in o.split()]) for s, o in zip(inp, out)]
    for text, expected in pairs:
        got = tok.encode(text, add_special_tokens=False).ids
        if got != expected:
            bad += 1
            print(f"mismatch: {text[:60]!r}: {got[:16]} expected {expected[:16]}")
    print(f"{folder}: {len(pairs)} strings, {bad} mismatches")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
