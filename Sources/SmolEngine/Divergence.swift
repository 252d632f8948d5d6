import Foundation
import SmolKernels
import SmolTensor

/// What `Divergence.run` measured: two models on the same tokens, chunks and scored positions as
/// `Perplexity` (llama.cpp's `--kl-divergence` protocol, but with the original model's full
/// softmax rather than llama.cpp's 16-bit quantized log-probabilities).
public struct DivergenceResult: Sendable {
    public var original: NLLStatistics
    public var converted: NLLStatistics
    /// KL(original ‖ converted) at every scored position, in chunk order.
    public var kld: [Double]
    /// Mean KLD of each chunk.
    public var chunkKLD: [Double]
    /// Scored positions where both models' most likely token is the same.
    public var sameTop1: Int
    public var chunks: Int
    public var context: Int
    /// Forward-pass wall time of each model.
    public var originalSeconds: Double
    public var convertedSeconds: Double

    public var tokensScored: Int { kld.count }
    public var meanKLD: Double { kld.isEmpty ? .nan : kld.reduce(0, +) / Double(kld.count) }
    /// llama.cpp's uncertainty of the mean: sqrt((E[x²] − E[x]²) / (n − 1)).
    public var meanKLDStandardError: Double {
        let n = Double(kld.count)
        guard kld.count > 1 else { return 0 }
        let m = meanKLD, v = kld.reduce(0) { $0 + $1 * $1 } / n - m * m
        return v > 0 ? (v / (n - 1)).squareRoot() : 0
    }
    /// The 99th percentile, interpolated as llama.cpp's `percentile` does.
    public var kldP99: Double { Divergence.percentile(kld, 0.99) }
    public var top1Agreement: Double { kld.isEmpty ? .nan : Double(sameTop1) / Double(kld.count) }
    public var originalTokensPerSecond: Double { originalSeconds > 0 ? Double(chunks * context) / originalSeconds : 0 }
    public var convertedTokensPerSecond: Double { convertedSeconds > 0 ? Double(chunks * context) / convertedSeconds : 0 }
}

public enum Divergence {
    public typealias Progress = (_ chunk: Int, _ chunks: Int, _ meanKLDSoFar: Double) -> Void

    /// Runs both models chunk by chunk under `protocol` and compares their next-token
    /// distributions at the scored positions.
    public static func run(original: Engine, converted: Engine, tokens: [Int], protocol p: PerplexityProtocol,
                           progress: Progress? = nil) throws -> DivergenceResult {
        let V = original.vocabSize
        guard converted.vocabSize == V else {
            throw SmolError(.mismatch, "vocabulary sizes differ: \(V) vs \(converted.vocabSize)")
        }
        let chunks = try p.chunkCount(tokenCount: tokens.count)
        if let bad = tokens.first(where: { $0 < 0 || $0 >= V }) {
            throw SmolError(.invalidArgument, "token id \(bad) outside the vocabulary (0..<\(V))")
        }
        var result = DivergenceResult(original: NLLStatistics(), converted: NLLStatistics(), kld: [], chunkKLD: [],
                                      sameTop1: 0, chunks: chunks, context: p.context, originalSeconds: 0, convertedSeconds: 0)
        for i in 0..<chunks {
            let chunk = p.chunk(i, of: tokens)
            var t0 = Date()
            let a = try original.forward(chunk, logitsFrom: p.firstScored).logits   // [R, V]
            result.originalSeconds += Date().timeIntervalSince(t0)
            t0 = Date()
            let b = try converted.forward(chunk, logitsFrom: p.firstScored).logits  // [R, V]
            result.convertedSeconds += Date().timeIntervalSince(t0)
            let targets = p.targets(i, of: tokens)
            let n = targets.count
            var rows = [Row](repeating: Row(), count: n)
            a.withUnsafeBufferPointer { ap in
                b.withUnsafeBufferPointer { bp in
                    rows.withUnsafeMutableBufferPointer { rp in
                        let pa = ap.baseAddress!, pb = bp.baseAddress!, out = rp.baseAddress!
                        parallelFor(n) { r in
                            out[r] = compareRow(pa + r * V, pb + r * V, V, target: targets[r])
                        }
                    }
                }
            }
            var sum: Double = 0
            for r in rows {
                result.original.add(r.nllOriginal)
                result.converted.add(r.nllConverted)
                result.kld.append(r.kld)
                if r.sameTop1 { result.sameTop1 += 1 }
                sum += r.kld
            }
            result.chunkKLD.append(sum / Double(n))
            progress?(i + 1, chunks, result.meanKLD)
        }
        return result
    }

    struct Row {
        var nllOriginal: Double = 0
        var nllConverted: Double = 0
        var kld: Double = 0
        var sameTop1 = false
    }

    /// KL(P ‖ Q) = Σ p_i (log p_i − log q_i) over the full vocabulary, P from `a`, Q from `b`;
    /// log-probabilities as `LogSoftmax` computes them. Identical rows give exactly 0.
    static func compareRow(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int, target: Int) -> Row {
        let (ma, la) = LogSoftmax.normalizer(a, n)
        let (mb, lb) = LogSoftmax.normalizer(b, n)
        let ca = Double(ma) + la, cb = Double(mb) + lb   // log Z of each
        var kl: Double = 0
        for i in 0..<n {
            let lpa = Double(a[i]) - ca, lqb = Double(b[i]) - cb
            kl += Foundation.exp(lpa) * (lpa - lqb)
        }
        return Row(nllOriginal: ca - Double(a[target]), nllConverted: cb - Double(b[target]),
                   kld: max(0, kl), sameTop1: LogSoftmax.argmax(a, n) == LogSoftmax.argmax(b, n))
    }

    /// llama.cpp's percentile: sorted values, linear interpolation at fraction · (n − 1).
    public static func percentile(_ values: [Double], _ fraction: Double) -> Double {
        guard !values.isEmpty else { return .nan }
        let v = values.sorted()
        if fraction <= 0 { return v[0] }
        if fraction >= 1 { return v[v.count - 1] }
        let p = fraction * Double(v.count - 1)
        let ip = Int(p), f = p - Double(ip)
        return (1 - f) * v[ip] + f * v[min(ip + 1, v.count - 1)]
    }
}
