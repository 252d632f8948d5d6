import Foundation
import SmolFormats
import SmolModels
import SmolQuant
import SmolTensor

// Writing the quantized trainable layout; the layout itself is described (and read) in SmolModels'
// ExpertQuantization.swift and formats/moe-trainable.md.

extension ExpertQuantization {
    /// The tensors that replace the stack `info`, each made on demand from `values` (the stack's
    /// Float32 values, computed once per stack and shared by its parts).
    func outputs(for info: TensorInfo, values: @escaping () throws -> [Float]) throws -> [SafetensorsTensor] {
        try validate(info)
        let dtype = info.type.denseDType!
        let s = info.shape, name = info.name
        switch self {
        case .nf4(let b):
            let n = s[0] * s[1] * s[2]
            let cache = Memo<NF4.Quantized>(uses: 2) {
                try NF4.quantize(try values(), rows: s[0] * s[1], cols: s[2], blockSize: b, doubleQuant: false)
            }
            let state = Array("{\"quant_type\": \"nf4\", \"blocksize\": \(b), \"dtype\": \"\(dtype.torchFloatName)\", \"shape\": [\(s[0]), \(s[1]), \(s[2])]}".utf8)
            return [
                SafetensorsTensor(TensorInfo(name: name, type: .dense(.u8), shape: [n / 2, 1])) { TensorBytes(try cache.get().packed) },
                SafetensorsTensor(TensorInfo(name: name + ".absmax", type: .dense(.f32), shape: [n / b])) {
                    TensorBytes(try ElementCodec.encode(try cache.get().absmax, as: .f32))
                },
                SafetensorsTensor(TensorInfo(name: name + ".quant_map", type: .dense(.f32), shape: [16])) {
                    TensorBytes(try ElementCodec.encode(NF4.code, as: .f32))
                },
                SafetensorsTensor(TensorInfo(name: name + ".quant_state.bitsandbytes__nf4", type: .dense(.u8), shape: [state.count])) {
                    TensorBytes(state)
                },
            ]
        case .int4(let g):
            let cache = Memo<MLXAffine.Quantized>(uses: 3) {
                try MLXAffine.quantize(try values(), rows: s[0] * s[1], cols: s[2], bits: 4, groupSize: g)
            }
            // mx.quantize on F16/BF16 weights: the Float32 result with scales and biases rounded to
            // the weight's dtype (SmolConvert's MLX writer does the same, checked against mlx-lm).
            let groups = [s[0], s[1], s[2] / g]
            return [
                SafetensorsTensor(TensorInfo(name: name, type: .dense(.u32), shape: [s[0], s[1], s[2] / 8])) {
                    let w = try cache.get().weight
                    var bytes = [UInt8](repeating: 0, count: w.count * 4)
                    bytes.withUnsafeMutableBytes { p in
                        for (i, x) in w.enumerated() { p.storeBytes(of: x.littleEndian, toByteOffset: 4 * i, as: UInt32.self) }
                    }
                    return TensorBytes(bytes)
                },
                SafetensorsTensor(TensorInfo(name: name + ".scales", type: .dense(dtype), shape: groups)) {
                    TensorBytes(try ElementCodec.encode(try cache.get().scales, as: dtype))
                },
                SafetensorsTensor(TensorInfo(name: name + ".biases", type: .dense(dtype), shape: groups)) {
                    TensorBytes(try ElementCodec.encode(try cache.get().biases, as: dtype))
                },
            ]
        }
    }


    /// Bytes of the stack once quantized (for summaries).
    public func byteCount(_ info: TensorInfo) -> Int {
        let n = info.elementCount
        switch self {
        case .nf4(let b): return n / 2 + 4 * (n / b) + 64
        case .int4(let g): return n / 2 + 2 * (n / g) * (info.type.denseDType?.size ?? 4)
        }
    }
}

/// Computes a value on first use and drops it after its `uses`-th use: the writer asks for a
/// stack's parts in its own order (possibly far apart), and each part exactly once.
final class Memo<T>: @unchecked Sendable {   // used by one writer thread
    private var value: T?
    private var remaining: Int
    private let make: () throws -> T
    init(uses: Int, _ make: @escaping () throws -> T) { remaining = uses; self.make = make }
    func get() throws -> T {
        let v = try value ?? make()
        remaining -= 1
        value = remaining > 0 ? v : nil
        return v
    }
}
