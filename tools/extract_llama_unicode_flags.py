#!/usr/bin/env python3
"""Extract llama.cpp's code point category table (unicode-data.cpp `unicode_ranges_flags`) as JSON.

Usage: extract_llama_unicode_flags.py path/to/llama.cpp/src/unicode-data.cpp OUT.json

The output, Tests/Fixtures/tokenizer/llama-unicode-flags.json, is a list of [first_codepoint, flags]
ranges (each runs to the next start - 1): the category bits of llama.cpp's unicode.h
(0x01 undefined, 0x02 number, 0x04 letter, 0x08 separator, 0x10 mark, 0x20 punctuation,
0x40 symbol, 0x80 control). The Swift tests compare smolconv's categories with it.
"""
import json
import re
import sys

src, out = sys.argv[1], sys.argv[2]
text = open(src, encoding="utf-8").read()
body = text.split("unicode_ranges_flags = {", 1)[1].split("};", 1)[0]
ranges = [[int(a, 16), int(b, 16)] for a, b in re.findall(r"\{0x([0-9A-Fa-f]+), 0x([0-9A-Fa-f]+)\}", body)]
assert ranges[0][0] == 0 and ranges[-1][0] == 0x110000, "unexpected table bounds"
with open(out, "w") as f:
    json.dump({"source": "llama.cpp src/unicode-data.cpp (vendored in llama-cpp-python 0.3.36), unicode_ranges_flags",
               "ranges": ranges}, f, separators=(",", ":"))
