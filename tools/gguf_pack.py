"""A tiny hand-written GGUF byte builder for test fixtures that gguf-py cannot write (version 2,
malformed files). It follows the GGUF spec (ggml/docs/gguf.md) directly and shares no code with
smolconv. Used by tools/golden_gguf.py and tools/make_malformed_gguf.py.
"""
import struct

UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
_FMT = {UINT8: "<B", INT8: "<b", UINT16: "<H", INT16: "<h", UINT32: "<I", INT32: "<i", FLOAT32: "<f",
        BOOL: "<?", UINT64: "<Q", INT64: "<q", FLOAT64: "<d"}


def u32(v):
    return struct.pack("<I", v)


def u64(v):
    return struct.pack("<Q", v)


def string(s):
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return u64(len(b)) + b


def value(vtype, v, sub=None):
    """The bytes of a value without its type tag. Arrays: v is a list, sub its element type; an
    element of a nested array is a (sub_type, list) pair."""
    if vtype in _FMT:
        return struct.pack(_FMT[vtype], v)
    if vtype == STRING:
        return string(v)
    if vtype == ARRAY:
        out = u32(sub) + u64(len(v))
        for item in v:
            out += value(ARRAY, item[1], item[0]) if sub == ARRAY else value(sub, item)
        return out
    raise ValueError(vtype)


def kv(key, vtype, v, sub=None):
    return string(key) + u32(vtype) + value(vtype, v, sub)


def tensor_info(name, ne, ggml_type, offset):
    out = string(name) + u32(len(ne))
    for d in ne:
        out += u64(d)
    return out + u32(ggml_type) + u64(offset)


def pad(n, align):
    return (align - n % align) % align


def gguf(kvs, infos, data=b"", version=3, magic=b"GGUF", n_tensors=None, n_kv=None, align=32):
    """kvs, infos: lists of already-packed bytes. The data section starts at the next multiple of
    `align` after the infos; `data` is written there as given (callers pad tensors themselves)."""
    head = magic + u32(version)
    head += u64(len(infos) if n_tensors is None else n_tensors)
    head += u64(len(kvs) if n_kv is None else n_kv)
    head += b"".join(kvs) + b"".join(infos)
    return head + b"\0" * pad(len(head), align) + data
