import SmolTensor
import Foundation

// SmolQuant: pure functions between float arrays and quantized bytes.
//
// - GGUF (ggml) block types: `GGUFQuant.dequantize` / `GGUFQuant.quantize`, bit-exact with gguf-py's
//   `gguf.quants.dequantize` and, for the types gguf-py can quantize, with `gguf.quants.quantize`;
//   the k-quant quantizers follow llama.cpp's `quantize_row_*_ref` / `quantize_*_impl` search.
//   Block layouts: formats/gguf-quants.md.
// - MLX affine quantization (`MLXAffine`) and bitsandbytes NF4 (`NF4`): formats/gguf-quants.md.
//
// Nothing here reads files: callers hand in bytes (mapped or owned) and get bytes or floats back.

/// Hands unsafe pointers to `DispatchQueue.concurrentPerform` workers. Every caller gives each
/// worker a disjoint output range, so sharing the pointers is race-free.
struct UnsafeShared<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// Runs `body(chunkStart, chunkEnd)` over `0..<count` in pieces of `chunk`, on several threads when
/// there is more than one piece. Used for tensors big enough that threading pays off.
@inline(__always)
func parallelChunks(count: Int, chunk: Int, _ body: (Int, Int) -> Void) {
    let pieces = (count + chunk - 1) / chunk
    if pieces <= 1 {
        if count > 0 { body(0, count) }
        return
    }
    withoutActuallyEscaping(body) { body in
        let shared = UnsafeShared(body)
        DispatchQueue.concurrentPerform(iterations: pieces) { i in
            let start = i * chunk
            shared.value(start, min(count, start + chunk))
        }
    }
}
