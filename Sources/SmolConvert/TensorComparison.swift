import Foundation
import SmolFormats
import SmolModels
import SmolQuant
import SmolTensor

/// Signal-to-quantization-noise ratio of one tensor of a converted checkpoint against the same
/// tensor of the original: 10·log10(Σ x² / Σ (y − x)²), x original, y converted, both decoded
/// (dequantized) to Float32 and summed in Double. +∞ when the values are identical.
public struct TensorSQNR: Sendable {
    /// The name in the original checkpoint.
    public var name: String
    /// The name in the converted checkpoint (differs across formats).
    public var convertedName: String
    public var shape: [Int]
    public var originalType: TensorType
    public var convertedType: TensorType
    public var signalEnergy: Double
    public var noiseEnergy: Double
    /// Block number (`model.layers.N.` / `blk.N.`), nil for whole-model tensors.
    public var layer: Int?

    public var sqnrDB: Double {
        if noiseEnergy == 0 { return .infinity }
        if signalEnergy == 0 { return -.infinity }
        return 10 * log10(signalEnergy / noiseEnergy)
    }
    public var identical: Bool { noiseEnergy == 0 }
}

/// Which tensors of two checkpoints hold the same weights, and how close they are.
public struct TensorComparisonResult: Sendable {
    public var tensors: [TensorSQNR]
    /// Tensors of one side with no counterpart on the other (e.g. gemma2's dropped lm_head).
    public var onlyInOriginal: [String]
    public var onlyInConverted: [String]

    /// SQNR of each layer's tensors pooled (Σ signal / Σ noise), indexed by layer; +∞ for a layer
    /// whose tensors are all identical.
    public var perLayerSQNR: [Double] {
        let layers = (tensors.compactMap(\.layer).max() ?? -1) + 1
        var s = [Double](repeating: 0, count: layers), n = s
        for t in tensors { if let l = t.layer { s[l] += t.signalEnergy; n[l] += t.noiseEnergy } }
        return (0..<layers).map { n[$0] == 0 ? .infinity : 10 * log10(s[$0] / n[$0]) }
    }
}

public enum TensorComparison {
    public typealias Progress = (_ done: Int, _ total: Int, _ name: String) -> Void

    /// Compares every pair of corresponding tensors. Between an HF checkpoint and a GGUF file,
    /// names go through the architecture's `GGUFArchitectureMapping` and the HF values are brought
    /// to the GGUF convention with the converter's own exact transforms (Q/K permutation, gemma's
    /// 1 + w in Float32), so an exact conversion scores +∞ on every tensor.
    public static func compare(original: Checkpoint, converted: Checkpoint,
                               progress: Progress? = nil) throws -> TensorComparisonResult {
        let pairs = try correspondence(original, converted)
        var out: [TensorSQNR] = []
        for (i, p) in pairs.matched.enumerated() {
            progress?(i, pairs.matched.count, p.original.name)
            let a = try values(original, p.original, toGGUF: p.originalToGGUF, affine: p.originalAffine)
            let b = try values(converted, p.converted, toGGUF: p.convertedToGGUF, affine: p.convertedAffine)
            var s: Double = 0, n: Double = 0
            a.withUnsafeBufferPointer { ap in
                b.withUnsafeBufferPointer { bp in
                    for j in 0..<ap.count {
                        let x = Double(ap[j]), d = Double(bp[j]) - x
                        s += x * x; n += d * d
                    }
                }
            }
            out.append(TensorSQNR(name: p.original.name, convertedName: p.converted.name, shape: p.original.shape,
                                  originalType: p.original.type, convertedType: p.converted.type,
                                  signalEnergy: s, noiseEnergy: n, layer: layerIndex(p.original.name)))
        }
        progress?(pairs.matched.count, pairs.matched.count, "")
        return TensorComparisonResult(tensors: out, onlyInOriginal: pairs.onlyOriginal, onlyInConverted: pairs.onlyConverted)
    }

    struct Pair {
        var original: TensorInfo
        var converted: TensorInfo
        /// HF → GGUF value transform for an HF-side tensor compared with a GGUF one.
        var originalToGGUF: ((inout [Float], DType) throws -> Void)?
        var convertedToGGUF: ((inout [Float], DType) throws -> Void)?
        /// MLX-affine quantized weights (U32 words + scales + biases), dequantized to compare.
        var originalAffine: MLXAffineWeight? = nil
        var convertedAffine: MLXAffineWeight? = nil
    }

    /// An MLX-quantized module weight of a Hugging Face folder (config.json "quantization": bits,
    /// group_size; `M.weight` U32 [rows, cols·bits/32] beside `M.scales` and `M.biases`).
    struct MLXAffineWeight {
        var bits: Int
        var groupSize: Int
        /// [rows, cols]: the shape of the weight it stands for.
        var shape: [Int]
    }

    static func mlxAffine(_ ckpt: Checkpoint, _ info: TensorInfo) -> MLXAffineWeight? {
        guard info.type == .dense(.u32), info.shape.count == 2, info.name.hasSuffix(".weight"),
              let q = ckpt.config?["quantization"], let bits = q["bits"]?.intValue, let gs = q["group_size"]?.intValue,
              MLXAffine.supportedBits.contains(bits) else { return nil }
        let module = String(info.name.dropLast(".weight".count))
        guard ckpt.source.info(module + ".scales") != nil, ckpt.source.info(module + ".biases") != nil else { return nil }
        return MLXAffineWeight(bits: bits, groupSize: gs, shape: [info.shape[0], info.shape[1] * 32 / bits])
    }

    static func values(_ ckpt: Checkpoint, _ info: TensorInfo,
                       toGGUF: ((inout [Float], DType) throws -> Void)?, affine: MLXAffineWeight? = nil) throws -> [Float] {
        if let a = affine {
            let module = String(info.name.dropLast(".weight".count))
            let raw = try ckpt.source.tensorBytes(info.name)
            defer { ckpt.source.release(info.name) }
            let words: [UInt32] = raw.withUnsafeBytes { r in
                (0..<(r.count / 4)).map { UInt32(littleEndian: r.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) }
            }
            let q = MLXAffine.Quantized(rows: a.shape[0], cols: a.shape[1], bits: a.bits, groupSize: a.groupSize, weight: words,
                                        scales: try loadFloat(ckpt.source, module + ".scales"),
                                        biases: try loadFloat(ckpt.source, module + ".biases"))
            var v: [Float]
            do { v = try MLXAffine.dequantize(q) } catch let e as SmolError {
                throw SmolError(e.kind, file: ckpt.path, at: "tensor '\(info.name)'", e.message)
            }
            // The dequantized values are Float32 (Q/K permutation applies to them as to floats).
            try toGGUF?(&v, .f32)
            return v
        }
        var v = try loadFloat(ckpt.source, info.name)
        if let toGGUF, case .dense(let dt) = info.type { try toGGUF(&v, dt) }
        return v
    }

    static func hfConfig(_ c: Checkpoint) throws -> ModelConfig {
        guard let json = c.config else {
            throw SmolError(.invalidArgument, file: c.path, "no config.json: cannot match tensor names with a GGUF file")
        }
        return try ModelConfig(json: json, file: ((c.folder ?? c.path) as NSString).appendingPathComponent("config.json"))
    }

    static func correspondence(_ o: Checkpoint, _ c: Checkpoint) throws
        -> (matched: [Pair], onlyOriginal: [String], onlyConverted: [String]) {
        let oIsGGUF = o.format == .gguf, cIsGGUF = c.format == .gguf
        // Name in the converted file for each original name, and the HF-side transform.
        var nameMap: (String) -> String? = { $0 }
        var oTransform: ((String, [Int]) -> ((inout [Float], DType) throws -> Void)?) = { _, _ in nil }
        var cTransform = oTransform
        if oIsGGUF != cIsGGUF {
            let hfSide = oIsGGUF ? c : o
            let config = try hfConfig(hfSide)
            guard let m = GGUFArchitectureMapping.forModelType(config.modelType) else {
                throw SmolError(.unsupported, file: hfSide.path, "no HF ↔ GGUF name map for model_type '\(config.modelType)'")
            }
            let transform: (String, [Int]) -> ((inout [Float], DType) throws -> Void)? = { hf, shape in
                if m.transform(hf: hf, config: config) == .none { return nil }
                return { values, dt in try m.toGGUF(hf: hf, values: &values, shape: shape, config: config, sourceDType: dt) }
            }
            if oIsGGUF {
                nameMap = { m.hfName(gguf: $0) }
                cTransform = transform
            } else {
                nameMap = { m.ggufName(hf: $0) }
                oTransform = transform
            }
        }
        var byName: [String: TensorInfo] = [:]
        for t in c.source.tensorInfos { byName[t.name] = t }
        var matched: [Pair] = [], onlyOriginal: [String] = [], used = Set<String>()
        for t in o.source.tensorInfos {
            guard let cn = nameMap(t.name), let ct = byName[cn] else { onlyOriginal.append(t.name); continue }
            let oa = mlxAffine(o, t), ca = mlxAffine(c, ct)
            let oShape = oa?.shape ?? t.shape, cShape = ca?.shape ?? ct.shape
            guard cShape == oShape else {
                throw SmolError(.mismatch, file: c.path, at: "tensor '\(cn)'", "shape \(cShape), the original's '\(t.name)' is \(oShape)")
            }
            used.insert(cn)
            if ca != nil {
                let module = String(cn.dropLast(".weight".count))
                used.formUnion([module + ".scales", module + ".biases"])
            }
            matched.append(Pair(original: t, converted: ct,
                                originalToGGUF: oTransform(t.name, oShape), convertedToGGUF: cTransform(cn, cShape),
                                originalAffine: oa, convertedAffine: ca))
        }
        let onlyConverted = c.source.tensorInfos.map(\.name).filter { !used.contains($0) }
        return (matched, onlyOriginal, onlyConverted)
    }

    /// N of "model.layers.N." or "blk.N.".
    public static func layerIndex(_ name: String) -> Int? {
        for prefix in ["model.layers.", "blk."] where name.hasPrefix(prefix) {
            let rest = name.dropFirst(prefix.count)
            if let dot = rest.firstIndex(of: "."), let n = Int(rest[..<dot]) { return n }
        }
        return nil
    }
}
