import Foundation
import SmolKernels
import SmolTensor

// Perplexity's output layer without the [R, V] logits: the vocabulary is taken a tile of rows of
// the output weight at a time; each tile's logits [R, Vt] go through sgemm into one reused buffer
// (a few MB, in cache) and are folded at once into every row's running log-sum-exp and its
// target's logit. For the real Gemma 3 (V = 262,144) a chunk's full logits are 268 MB: writing,
// page-faulting, zeroing (OpenBLAS's beta pass) and re-reading them cost more than a tenth of the
// perplexity run (perf, F32 base).
//
// Arithmetic: llama.cpp's log_softmax sums Float32 expf(x − max) in Double with the row's global
// max. Here each tile's exps are taken against the running max (≥ every earlier tile's max) and the
// Double sum is rescaled by exp(old max − new max) when a later tile raises it: the same sum up to
// Float32 rounding of individual exps (relative 1e-7 each) and Double rounding; the perplexity
// agrees with the full-logits path to ~1e-9 relative (EngineTests). `nllFullLogits` is the twin.

extension Engine {
    /// Vocabulary rows per output-layer tile: [R ≤ 512, 4096] Float32 logits is ≤ 8 MB.
    public static let headTileRows = 4096

    /// −log p(targets[r]) for rows from..<T of `tokens` (targets.count == T − from), run from an
    /// empty cache: perplexity scoring without materialising the logits. `tileRows`: vocabulary rows
    /// per tile (tests use small ones to cross many tile boundaries).
    public func negativeLogLikelihoods(_ tokens: [Int], from: Int, targets: [Int],
                                       tileRows: Int = Engine.headTileRows) throws -> [Double] {
        let V = vocabSize, D = model.spec.hiddenSize
        guard targets.count == tokens.count - from else {
            throw SmolError(.invalidArgument, "\(targets.count) targets for \(tokens.count - from) scored rows")
        }
        if let bad = targets.first(where: { !(0..<V).contains($0) }) {
            throw SmolError(.invalidArgument, "target id \(bad) outside the vocabulary (0..<\(V))")
        }
        let (h, _) = try decoder(tokens, cache: nil, captureHiddenStates: false, logitsFrom: from, observer: nil)  // [R, D]
        let R = targets.count
        var maxima = [Float](repeating: -.infinity, count: R)   // running max per row
        var sums = [Double](repeating: 0, count: R)            // Σ exp(x − max) per row
        var targetLogits = [Float](repeating: 0, count: R)
        let tile = max(1, tileRows)
        var buffer = [Float](repeating: 0, count: R * min(tile, V))   // [R, Vt]
        let cap = model.spec.finalLogitSoftcap
        h.withUnsafeBufferPointer { hp in
            model.weights.lmHead.withUnsafeBufferPointer { wp in
                buffer.withUnsafeMutableBufferPointer { bp in
                    maxima.withUnsafeMutableBufferPointer { mp in
                        sums.withUnsafeMutableBufferPointer { sp in
                            targetLogits.withUnsafeMutableBufferPointer { tp in
                                let b = bp.baseAddress!, m = mp.baseAddress!, s = sp.baseAddress!, t = tp.baseAddress!
                                var v0 = 0
                                while v0 < V {
                                    let n = min(tile, V - v0)
                                    Kernels.matmul(hp.baseAddress!, rows: R, inDim: D, weight: wp.baseAddress! + v0 * D,
                                                   outDim: n, into: b)                   // [R, n]
                                    if let cap { Kernels.softcap(b, count: R * n, cap: cap) }
                                    let base = v0
                                    parallelFor(R) { r in
                                        let row = b + r * n
                                        Self.foldTile(row, n, max: &m[r], sum: &s[r])
                                        let target = targets[r]
                                        if target >= base && target < base + n { t[r] = row[target - base] }
                                    }
                                    v0 += n
                                }
                            }
                        }
                    }
                }
            }
        }
        return (0..<R).map { Double(maxima[$0]) + Foundation.log(sums[$0]) - Double(targetLogits[$0]) }
    }

    /// Folds one tile of a row's logits into its running (max, Σ exp(x − max)).
    @inline(__always)
    static func foldTile(_ row: UnsafePointer<Float>, _ n: Int, max m: inout Float, sum s: inout Double) {
        var tm = m
        for i in 0..<n where row[i] > tm { tm = row[i] }
        if tm > m {
            if s > 0 { s *= Foundation.exp(Double(m) - Double(tm)) }
            m = tm
        }
        s += LogSoftmax.sumExp(row, n, shift: m)
    }

    /// The twin: full logits of the scored rows, then llama.cpp's row log-softmax.
    public func nllFullLogits(_ tokens: [Int], from: Int, targets: [Int]) throws -> [Double] {
        let logits = try forward(tokens, logitsFrom: from).logits
        let V = vocabSize
        return logits.withUnsafeBufferPointer { lp in
            targets.indices.map { LogSoftmax.nll(lp.baseAddress! + $0 * V, V, target: targets[$0]) }
        }
    }
}
