import Foundation
import SmolFormats
import SmolKernels
import SmolModels
import SmolTensor

// QLoRA-style training on a block-quantized GGUF: the frozen linears (q k v o gate up down of every
// layer) and the token embedding / output layer stay in their stored encoding, mapped from the file,
// and every product with them dequantizes a tile of rows on the fly (SmolKernels' QuantizedLinear):
//   forward   y  = x · Wᵀ        QuantizedLinear.apply (exact dequantization, sgemm per tile)
//   backward  dx += dy · W       `accumulateTransposed` below (same tiles, the other product)
// Only the LoRA matrices, norms and activations are Float32 in memory. The numbers equal those of
// the same model dequantized to Float32 up to summation order.

/// The stored-encoding weights of a GGUF model (see the top of this file).
public struct QuantizedBase: Sendable {
    /// Per layer and module; a linear missing here is read from the Float32 model.
    public var linears: [LoRAKey: QuantizedLinear]
    /// The token embedding [V, D] (rows gathered per token).
    public var embed: QuantizedLinear?
    /// The output layer [V, D] (the embedding when tied).
    public var lmHead: QuantizedLinear?

    /// Bytes of encoded weight kept.
    public var byteCount: Int {
        linears.values.reduce(0) { $0 + $1.bytes.count } + (embed?.bytes.count ?? 0)
            + ((lmHead != nil && lmHead!.bytes.count != embed?.bytes.count) ? lmHead!.bytes.count : 0)
    }
}

extension QuantizedLinear {
    /// dx += dy · W, W dequantized a tile of rows at a time. dy: [tokens, rows], dx: [tokens, cols].
    public func accumulateTransposed(_ dy: [Float], tokens: Int, into dx: inout [Float]) {
        precondition(dy.count == tokens * rows && dx.count == tokens * cols, "accumulateTransposed shape mismatch")
        if tokens == 0 || rows == 0 || cols == 0 { return }
        let rows = rows, cols = cols, rowBytes = rowBytes, type = type
        bytes.withUnsafeBytes { raw in
            let w = raw.baseAddress!
            dy.withUnsafeBufferPointer { dyp in dx.withUnsafeMutableBufferPointer { dxp in
                if type == .f32 {
                    TrainOps.gemm(transA: false, transB: false, m: tokens, n: cols, k: rows, dyp.baseAddress!, lda: rows,
                                  w.assumingMemoryBound(to: Float.self), ldb: cols, beta: 1, dxp.baseAddress!, ldc: cols)
                    return
                }
                let tileRows = max(1, min(rows, QuantizedLinear.tileElements / cols))
                let tile = UnsafeMutablePointer<Float>.allocate(capacity: tileRows * cols)
                defer { tile.deallocate() }
                var r0 = 0
                while r0 < rows {
                    let n = min(tileRows, rows - r0)
                    QuantKernels.dequantizeRows(type, w, rowBytes: rowBytes, rows: r0..<(r0 + n), cols: cols, into: tile)
                    // dx += dy[:, r0 ..< r0+n] · tile
                    TrainOps.gemm(transA: false, transB: false, m: tokens, n: cols, k: n, dyp.baseAddress! + r0, lda: rows,
                                  tile, ldb: cols, beta: 1, dxp.baseAddress!, ldc: cols)
                    r0 += n
                }
            } }
        }
    }
}

/// Hands the dense loader empty arrays for the weights kept encoded (their shapes still checked
/// against the configuration), everything else as `GGUFWeightReader` reads it.
struct KeepingEncodedReader: HFWeightReader {
    let base: GGUFWeightReader
    let kept: Set<String>
    var path: String { base.path }
    func shape(hf name: String) -> [Int]? { base.shape(hf: name) }
    func floats(hf name: String) throws -> [Float] { kept.contains(name) ? [] : try base.floats(hf: name) }
    func normWeighting(for architecture: RMSNormWeighting) throws -> RMSNormWeighting { try base.normWeighting(for: architecture) }
    func displayName(hf name: String) -> String { base.displayName(hf: name) }
}

extension LoRAModel {
    /// Opens a GGUF model for LoRA training with its linears, embedding and output layer kept in
    /// their stored encoding (types QuantizedLinear has kernels for; others, and llama's permuted
    /// q/k rows, are dequantized to Float32 as usual). In the returned model's `model.weights` the
    /// kept weights are empty arrays: use it only through `LoRAModel`.
    public static func quantized(gguf file: GGUFFile, options: TrainOptions = TrainOptions()) throws -> LoRAModel {
        let reader = try GGUFWeightReader(file: file)
        guard let arch = DenseArchitectures.table[reader.config.modelType] else {
            throw SmolError(.unsupported, file: file.path, at: "model_type", "no dense architecture for '\(reader.config.modelType)'")
        }
        let spec = try arch.spec(reader.config)
        let names = arch.names
        var kept = Set<String>()
        func keep(_ hf: String) throws -> QuantizedLinear? {
            guard let g = reader.mapping.ggufName(hf: hf), let info = file.tensor(g), info.shape.count == 2,
                  QuantKernelTypes.supported.contains(info.ggmlType),
                  reader.mapping.transform(hf: hf, config: reader.config) == .none else { return nil }
            let ql = try QuantizedLinear(info.tensorInfo, bytes: try file.tensorBytes(g))
            kept.insert(hf)
            return ql
        }
        var base = QuantizedBase(linears: [:], embed: nil, lmHead: nil)
        for (i, layer) in spec.layers.enumerated() where layer.moe == nil {
            for m in LoRAModule.allCases where LoRAAdapter.shape(of: m, layer: layer, hidden: spec.hiddenSize) != nil {
                if let ql = try keep(names.layer(i, "\(m.parent).\(m.rawValue).weight")) { base.linears[LoRAKey(layer: i, module: m)] = ql }
            }
        }
        base.embed = try keep(names.embed)
        base.lmHead = spec.tiedEmbeddings ? base.embed : try keep(names.lmHead)
        if spec.tiedEmbeddings && base.embed == nil { kept.remove(names.lmHead) }
        let model = try DenseDecoderModel.load(config: reader.config, weights: KeepingEncodedReader(base: reader, kept: kept))
        return try LoRAModel(model: model, options: options, quantized: base)
    }
}
