import Foundation
import SmolFormats
import SmolQuant
import SmolTensor

// Quantized Hugging Face-named checkpoints the dense loader reads by dequantizing, weight by weight:
//
// - bitsandbytes NF4 as transformers saves it (formats/nf4.md): the weight `N` is U8 [n/2, 1] and a
//   `N.quant_state.bitsandbytes__nf4` tensor holds its JSON state (shape, blocksize, …). Recognised
//   per tensor by that state tensor, so no configuration is needed.
// - MLX affine as mlx-lm saves it (formats/gguf-quants.md, "MLX affine"): module `M` quantized has
//   `M.weight` U32 [rows, cols·bits/32], `M.scales` and `M.biases` [rows, cols/groupSize] in the
//   model's float dtype; bits and group size come from config.json's `"quantization"`
//   ({"group_size", "bits", "mode"}, with optional per-module dicts keyed by module path).

/// config.json's `"quantization"` block as mlx-lm writes it.
public struct MLXQuantizationConfig: Sendable, Equatable {
    public var groupSize: Int
    public var bits: Int
    /// Per-module overrides (module path → group size, bits); a module mapped to nil is not quantized.
    public var perModule: [String: Params?]

    public struct Params: Sendable, Equatable {
        public var groupSize: Int
        public var bits: Int
    }

    public init(groupSize: Int, bits: Int, perModule: [String: Params?] = [:]) {
        self.groupSize = groupSize; self.bits = bits; self.perModule = perModule
    }

    /// Reads `config["quantization"]`; nil when the configuration has none (not an MLX checkpoint).
    /// Only the affine mode is read (mxfp4/nvfp4/mxfp8 are other layouts).
    public init?(config: JSONValue, file: String) throws {
        guard let q = config["quantization"]?.objectValue else { return nil }
        guard let gs = q["group_size"]?.intValue, let bits = q["bits"]?.intValue else {
            throw SmolError.malformed(file, at: "key 'quantization'", "needs integer group_size and bits")
        }
        if let mode = q["mode"]?.stringValue, mode != "affine" {
            throw SmolError(.unsupported, file: file, at: "key 'quantization.mode'", "MLX quantization mode '\(mode)' is not supported (only affine)")
        }
        var per: [String: Params?] = [:]
        for m in q.members where !["group_size", "bits", "mode"].contains(m.key) {
            if m.value.boolValue == false { per[m.key] = .some(nil); continue }
            guard let o = m.value.objectValue else { continue }
            if let mode = o["mode"]?.stringValue, mode != "affine" {
                throw SmolError(.unsupported, file: file, at: "key 'quantization.\(m.key).mode'", "MLX quantization mode '\(mode)' is not supported (only affine)")
            }
            per[m.key] = Params(groupSize: o["group_size"]?.intValue ?? gs, bits: o["bits"]?.intValue ?? bits)
        }
        self.init(groupSize: gs, bits: bits, perModule: per)
    }

    /// The parameters of module `path` (its weight's name without ".weight").
    public func params(module path: String) -> Params? {
        if let p = perModule[path] { return p }
        return Params(groupSize: groupSize, bits: bits)
    }
}

enum QuantizedWeights {
    static func nf4StateName(_ name: String) -> String { "\(name).quant_state.bitsandbytes__nf4" }

    /// The original [rows, cols] of an NF4 weight, from its JSON state; nil when `name` is not one.
    static func nf4Shape(_ source: TensorSource, _ name: String) -> [Int]? {
        let state = nf4StateName(name)
        guard source.info(state) != nil, let bytes = try? source.tensorBytes(state).array,
              let obj = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
              let shape = obj["shape"] as? [Int] else { return nil }
        return shape
    }

    /// The MLX module of weight `name` when the checkpoint stores it quantized.
    static func mlxModule(_ source: TensorSource, _ name: String, _ q: MLXQuantizationConfig?) -> (String, MLXQuantizationConfig.Params)? {
        guard let q, name.hasSuffix(".weight") else { return nil }
        let module = String(name.dropLast(".weight".count))
        guard source.info(module + ".scales") != nil, let p = q.params(module: module) else { return nil }
        return (module, p)
    }

    static func mlxShape(_ source: TensorSource, _ name: String, _ q: MLXQuantizationConfig?) -> [Int]? {
        guard let (_, p) = mlxModule(source, name, q), let info = source.info(name), info.shape.count == 2 else { return nil }
        return [info.shape[0], info.shape[1] * 32 / p.bits]
    }

    static func mlxFloats(_ source: TensorSource, _ name: String, _ module: String, _ p: MLXQuantizationConfig.Params) throws -> [Float] {
        guard let info = source.info(name), info.type == .dense(.u32), info.shape.count == 2 else {
            throw SmolError.malformed(source.path, at: "tensor '\(name)'", "an MLX-quantized weight must be U32 [rows, words]")
        }
        return try affineFloats(source, name, scalesOf: module, rows: info.shape[0], cols: info.shape[1] * 32 / p.bits,
                                bits: p.bits, groupSize: p.groupSize)
    }

    /// Dequantizes an MLX-affine weight stored as U32 words `name` with `scalesOf.scales` and
    /// `scalesOf.biases`, read as a [rows, cols] matrix (MLX modules and smolconv's int4 expert stacks).
    static func affineFloats(_ source: TensorSource, _ name: String, scalesOf prefix: String, rows: Int, cols: Int,
                             bits: Int, groupSize: Int) throws -> [Float] {
        guard let info = source.info(name) else {
            throw SmolError.malformed(source.path, at: "tensor '\(name)'", "tensor not found")
        }
        let bytes = try source.tensorBytes(name)
        defer { source.release(name) }
        guard bytes.count == info.byteCount else {
            throw SmolError.malformed(source.path, at: "tensor '\(name)'", "\(bytes.count) bytes for shape \(info.shape)")
        }
        let words: [UInt32] = bytes.withUnsafeBytes { r in
            (0..<(r.count / 4)).map { UInt32(littleEndian: r.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) }
        }
        let scales = try loadFloat(source, prefix + ".scales"), biases = try loadFloat(source, prefix + ".biases")
        let groups = cols / max(groupSize, 1)
        guard cols % max(groupSize, 1) == 0, scales.count == rows * groups, biases.count == rows * groups else {
            throw SmolError.malformed(source.path, at: "tensor '\(prefix).scales'",
                                      "\(scales.count) scales and \(biases.count) biases for a [\(rows), \(cols)] matrix in groups of \(groupSize)")
        }
        let q = MLXAffine.Quantized(rows: rows, cols: cols, bits: bits, groupSize: groupSize,
                                    weight: words, scales: scales, biases: biases)
        do { return try MLXAffine.dequantize(q) } catch let e as SmolError where e.file == nil {
            throw SmolError(e.kind, file: source.path, at: "tensor '\(name)'", e.message)
        }
    }

    static func nf4Floats(_ source: TensorSource, _ name: String) throws -> [Float] {
        let q = try NF4.checkpointWeight(source, name)
        // 2-D: what bitsandbytes computes on a CPU (the reference logits were made there). 3-D
        // expert stacks (smolconv's quantized trainable layout): the blocks as made, flat.
        let flat = (nf4Shape(source, name)?.count ?? 2) == 3
        do { return try NF4.dequantize(q, indexing: flat ? .flat : .bitsandbytesCPU) } catch let e as SmolError where e.file == nil {
            throw SmolError(e.kind, file: source.path, at: "tensor '\(name)'", e.message)
        }
    }
}
