import Foundation
import SmolFormats
import SmolKernels
import SmolModels
import SmolTensor

/// Linear weights kept in the checkpoint's own block encoding (GGUF Q8_0, Q4_K, …), used for
/// calls of at most `QuantizedLinear.matvecMaxTokens` tokens: decode reads each weight once per
/// token, so reading 4.5–8.5 bits per weight instead of the 32 of the engine's Float32 copy is what
/// makes it fast (decode is bandwidth-bound). Exact: activations stay Float32 and every weight is
/// dequantized exactly inside the fused dot (QuantizedLinear.swift), so results differ from the
/// Float32 path only in the order of the additions. Prefill and perplexity keep the Float32 copy
/// and sgemm, which is faster for many tokens.
struct StoredLinears: Sendable {
    /// One layer's projections; nil where the stored tensor is Float32 (sgemv on the Float32 copy
    /// is as good), has no kernel, or is stored transformed (llama's permuted Q/K rows).
    struct Layer: Sendable {
        var q, k, v, o, gate, up, down: QuantizedLinear?   // [out, in] as the HF weight
    }
    var layers: [Layer]
    /// [V, D]: lm_head, or the token embedding when tied.
    var lmHead: QuantizedLinear?

    var isEmpty: Bool {
        lmHead == nil && layers.allSatisfy { [$0.q, $0.k, $0.v, $0.o, $0.gate, $0.up, $0.down].allSatisfy { $0 == nil } }
    }

    /// The block-encoded linears of a GGUF checkpoint whose tensors map onto `spec`; nil for other
    /// formats or when no tensor qualifies.
    static func from(_ ckpt: Checkpoint, spec: DenseDecoderSpec) throws -> StoredLinears? {
        guard ckpt.format == .gguf, let file = ckpt.gguf,
              let reader = try? GGUFWeightReader(file: file), reader.config.modelType == spec.modelType else { return nil }
        let names = DenseArchitectures.table[spec.modelType]?.names ?? DecoderTensorNames()
        func linear(_ hf: String, rows: Int, cols: Int) throws -> QuantizedLinear? {
            guard let (info, bytes) = try reader.encoded(hf: hf), let type = info.type.ggmlType,
                  type != .f32, QuantKernelTypes.supported.contains(type), info.shape == [rows, cols] else { return nil }
            if type == .q5_0 {
                // Lossless re-encoding as Q8_0 (same values bit for bit): faster to decode here.
                let q8 = bytes.withUnsafeBytes { QuantKernels.q5_0AsQ8_0($0) }
                return try QuantizedLinear(type: .q8_0, rows: rows, cols: cols, bytes: TensorBytes(q8), name: info.name)
            }
            return try QuantizedLinear(info, bytes: bytes)
        }
        let D = spec.hiddenSize
        var layers: [Layer] = []
        for (i, l) in spec.layers.enumerated() {
            let n = { (s: String) in names.layer(i, s) }
            let qd = l.heads * l.headDim, kvd = l.kvHeads * l.headDim, F = l.intermediateSize
            var layer = Layer()
            layer.q = try linear(n("self_attn.q_proj.weight"), rows: qd, cols: D)
            if l.kvSharedFrom == nil {
                layer.k = try linear(n("self_attn.k_proj.weight"), rows: kvd, cols: D)
                if !l.valueIsKey { layer.v = try linear(n("self_attn.v_proj.weight"), rows: kvd, cols: D) }
            }
            layer.o = try linear(n("self_attn.o_proj.weight"), rows: D, cols: qd)
            if F > 0 {
                layer.gate = try linear(n("mlp.gate_proj.weight"), rows: F, cols: D)
                layer.up = try linear(n("mlp.up_proj.weight"), rows: F, cols: D)
                layer.down = try linear(n("mlp.down_proj.weight"), rows: D, cols: F)
            }
            layers.append(layer)
        }
        let head = try linear(spec.tiedEmbeddings ? names.embed : names.lmHead, rows: spec.vocabSize, cols: D)
        let stored = StoredLinears(layers: layers, lmHead: head)
        return stored.isEmpty ? nil : stored
    }
}

extension Engine {
    /// y = x · Wᵀ for x [T, inDim] → [T, outDim]: through the stored encoding for few tokens when
    /// the engine has it, else through BLAS on the Float32 weight.
    @inline(__always)
    func linear(_ x: [Float], rows T: Int, inDim: Int, weight: [Float], stored: QuantizedLinear?, outDim: Int) -> [Float] {
        if let s = stored, T <= QuantizedLinear.matvecMaxTokens { return s.apply(x, tokens: T) }
        return Kernels.matmul(x, rows: T, inDim: inDim, weight: weight, outDim: outDim)
    }
}
