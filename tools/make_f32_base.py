"""Makes the F32 base of a GGUF model with gguf-py alone (until `smolconv convert --outtype f32`
can dequantize on main): every tensor dequantized to F32 with gguf.quants.dequantize, metadata copied,
general.file_type = 0 (ALL_F32). tools/bench_pack.sh makes a BF16 checkpoint from it with
`smolconv convert BASE.gguf OUT.gguf --outtype bf16`.

    python3 tools/make_f32_base.py MODEL.gguf BASE_F32.gguf
"""
import sys
import numpy as np
import gguf
from gguf.quants import dequantize


def main(src, dst):
    r = gguf.GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(dst, arch)
    for name, field in r.fields.items():
        if name.startswith("GGUF.") or name in ("general.architecture", "general.file_type"):
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            w.add_key_value(name, field.contents(), vtype, sub_type=field.types[-1])
        else:
            w.add_key_value(name, field.contents(), vtype)
    w.add_file_type(0)
    for t in r.tensors:
        shape = tuple(reversed([int(x) for x in t.shape]))
        data = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
        w.add_tensor(t.name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

if __name__ == "__main__":
    main(*sys.argv[1:])
