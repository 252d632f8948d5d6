import Foundation
import Testing
import SmolFormats
import SmolKernels
import SmolModels
import SmolTensor
import SmolTestSupport
@testable import SmolTrain

@Suite struct QuantizedBaseTests {
    /// dx += dy · W with W kept encoded equals the product with W dequantized by the reference twin
    /// (gguf-py-exact dequantization; only the summation order differs). Real Q4_K / Q6_K / Q8_0 rows.
    @Test func transposedProductMatchesDequantizedWeight() throws {
        guard let url = Fixtures.realModel else { print("skipped: run tools/setup for the real model"); return }
        let file = try GGUFFile(path: url.path)
        var tested = Set<GGMLType>()
        for info in file.tensors where info.shape.count == 2 && QuantKernelTypes.supported.contains(info.ggmlType)
            && !tested.contains(info.ggmlType) && info.shape[0] <= 4096 {
            tested.insert(info.ggmlType)
            let ql = try QuantizedLinear(info.tensorInfo, bytes: try file.tensorBytes(info.name))
            let w = ql.dequantizedReference()                       // [rows, cols]
            var r = SplitMix64(seed: 7)
            let T = 3
            let dy = (0..<(T * ql.rows)).map { _ in Float(r.nextDouble() * 2 - 1) }
            var dx = [Float](repeating: 0, count: T * ql.cols)
            ql.accumulateTransposed(dy, tokens: T, into: &dx)
            var ref = [Float](repeating: 0, count: T * ql.cols)
            for t in 0..<T { for c in 0..<ql.cols {
                var s = 0.0
                for o in 0..<ql.rows { s += Double(dy[t * ql.rows + o]) * Double(w[o * ql.cols + c]) }
                ref[t * ql.cols + c] = Float(s)
            } }
            #expect(relativeError(dx, ref) < 1e-5, "\(info.ggmlType.name) \(info.name)")
        }
        #expect(tested.count >= 2, "types tested: \(tested.map(\.name))")
    }

    /// LoRA loss and gradients with the linears kept as Q4_K_M blocks equal those with the same
    /// linears dequantized to Float32 by the reference twin and multiplied by plain sgemm (the path
    /// checked against torch), up to summation order. The first two layers of the real model and the
    /// first 4096 rows of its (encoded, shared) embedding / output layer: debug builds are slow.
    @Test func qloraGradientsMatchTheDequantizedBase() throws {
        guard let url = Fixtures.realModel else { print("skipped: run tools/setup for the real model"); return }
        let full = try LoRAModel.quantized(gguf: try GGUFFile(path: url.path))
        let base = try #require(full.quantized)
        #expect(base.linears.count == 18 * 7 && base.embed != nil && base.lmHead != nil)
        var small = full.model
        small.spec.layers = Array(small.spec.layers.prefix(2))
        small.weights.layers = Array(small.weights.layers.prefix(2))
        // And the first 4096 rows of the vocabulary (rows of a block-encoded matrix are independent).
        let V = 4096
        let embed = try #require(base.embed)
        let head = try QuantizedLinear(type: embed.type, rows: V, cols: embed.cols,
                                       bytes: TensorBytes(Array(embed.bytes.array.prefix(V * embed.rowBytes))))
        small.spec.vocabSize = V
        var qBase = base
        qBase.embed = head; qBase.lmHead = head
        var fBase = qBase
        qBase.linears = base.linears.filter { $0.key.layer < 2 }
        fBase.linears = qBase.linears.mapValues { QuantizedLinear(f32: $0.dequantizedReference(), rows: $0.rows, cols: $0.cols) }
        #expect(qBase.linears.values.contains { $0.type != .f32 })
        let q = try LoRAModel(model: small, quantized: qBase), f = try LoRAModel(model: small, quantized: fBase)
        var adapter = LoRAAdapter.initialized(spec: small.spec, config: LoRAConfig(rank: 2, alpha: 4, targets: LoRAModule.allCases), seed: 3)
        var r = SplitMix64(seed: 9)
        for key in adapter.keys { adapter.pairs[key]!.b = adapter.pairs[key]!.b.map { _ in Float((r.nextDouble() * 2 - 1) * 0.05) } }
        let tokens = [2, 1902, 107, 108, 4000, 3001, 1902, 50, 236, 1000]
        let (lq, gq) = try q.lossAndGradients(tokens: tokens, adapter: adapter)
        let (lf, gf) = try f.lossAndGradients(tokens: tokens, adapter: adapter)
        #expect(abs(lq - lf) / lf < 1e-5, "\(lq) vs \(lf)")
        for (a, b) in zip(gq.namedTensors(), gf.namedTensors()) {
            #expect(relativeError(a.values, b.values) < 1e-4, "\(a.name)")
        }
    }
}
