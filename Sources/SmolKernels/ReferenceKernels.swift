import Foundation
import SmolTensor

/// Plain, obviously-correct twins of `Kernels`: scalar loops, one thread, Double accumulators.
/// Slow; they exist so tests can check the optimized kernels against them.
public enum ReferenceKernels {
    /// y = x · Wᵀ. x: [T, inDim], weight: [outDim, inDim] → [T, outDim].
    public static func matmul(_ x: [Float], rows: Int, inDim: Int, weight: [Float], outDim: Int) -> [Float] {
        var y = [Float](repeating: 0, count: rows * outDim)
        for r in 0..<rows {
            for o in 0..<outDim {
                var s = 0.0
                for i in 0..<inDim { s += Double(x[r * inDim + i]) * Double(weight[o * inDim + i]) }
                y[r * outDim + o] = Float(s)
            }
        }
        return y
    }

    public static func rmsNorm(_ x: inout [Float], rows: Int, dim: Int, weight: [Float]?,
                               eps: Float, weighting: RMSNormWeighting = .multiply) {
        for r in 0..<rows {
            var ss = 0.0
            for i in 0..<dim { let v = Double(x[r * dim + i]); ss += v * v }
            let inv = 1 / (ss / Double(dim) + Double(eps)).squareRoot()
            for i in 0..<dim {
                var w = 1.0
                if let weight { w = weighting == .onePlus ? 1 + Double(weight[i]) : Double(weight[i]) }
                x[r * dim + i] = Float(Double(x[r * dim + i]) * inv * w)
            }
        }
    }

    public static func rope(_ x: inout [Float], tokens: Int, heads: Int, headDim: Int, rotaryDim: Int,
                            invFreq: [Float], positions: [Int]) {
        let half = rotaryDim / 2
        for t in 0..<tokens {
            for h in 0..<heads {
                let o = (t * heads + h) * headDim
                for i in 0..<half {
                    let angle = Double(positions[t]) * Double(invFreq[i])
                    let c = cos(angle), s = sin(angle)
                    let a = Double(x[o + i]), b = Double(x[o + i + half])
                    x[o + i] = Float(a * c - b * s)
                    x[o + i + half] = Float(b * c + a * s)
                }
            }
        }
    }

    public static func softmax(_ x: inout [Float], rows: Int, n: Int) {
        for r in 0..<rows {
            let row = Array(x[(r * n)..<((r + 1) * n)]).map(Double.init)
            let m = row.max() ?? 0
            let e = row.map { exp($0 - m) }
            let s = e.reduce(0, +)
            for i in 0..<n { x[r * n + i] = Float(e[i] / s) }
        }
    }

    /// Masked attention written out as a full [T, S] score matrix per head, the mask applied as
    /// −∞, as transformers' eager attention does.
    public static func attention(q: [Float], k: [Float], v: [Float], tokens: Int, keys: Int,
                                 heads: Int, kvHeads: Int, headDim: Int, queryStart: Int,
                                 options: AttentionOptions) -> [Float] {
        let group = heads / kvHeads
        var out = [Float](repeating: 0, count: tokens * heads * headDim)
        for h in 0..<heads {
            let kvh = h / group
            for t in 0..<tokens {
                let p = queryStart + t
                var scores = [Double](repeating: -.infinity, count: keys)
                for j in 0..<keys {
                    let causal = j <= p
                    let inWindow = options.window.map { j > p - $0 } ?? true
                    guard causal && inWindow else { continue }
                    var s = 0.0
                    for d in 0..<headDim {
                        s += Double(q[(t * heads + h) * headDim + d]) * Double(k[(j * kvHeads + kvh) * headDim + d])
                    }
                    s *= Double(options.scale)
                    if let cap = options.softcap { s = tanh(s / Double(cap)) * Double(cap) }
                    scores[j] = s
                }
                // A sink (gpt_oss) is one more logit in the softmax whose probability is dropped.
                let sink = options.sinks.map { Double($0[h]) }
                let m = max(scores.max()!, sink ?? -.infinity)
                if m == -.infinity { continue }
                let e = scores.map { exp($0 - m) }
                let z = e.reduce(0, +) + (sink.map { exp($0 - m) } ?? 0)
                for d in 0..<headDim {
                    var acc = 0.0
                    for j in 0..<keys where e[j] > 0 { acc += e[j] / z * Double(v[(j * kvHeads + kvh) * headDim + d]) }
                    out[(t * heads + h) * headDim + d] = Float(acc)
                }
            }
        }
        return out
    }

    /// One activation value, in Double.
    public static func activation(_ x: Float, _ act: Activation) -> Float {
        let v = Double(x)
        switch act {
        case .silu:
            return Float(v / (1 + exp(-v)))
        case .geluTanh:
            return Float(0.5 * v * (1 + tanh((2 / Double.pi).squareRoot() * (v + 0.044715 * v * v * v))))
        }
    }

    public static func activate(_ x: inout [Float], _ act: Activation) {
        for i in x.indices { x[i] = activation(x[i], act) }
    }

    public static func gatedActivation(gate: inout [Float], up: [Float], _ act: Activation) {
        for i in gate.indices { gate[i] = activation(gate[i], act) * up[i] }
    }

    public static func softcap(_ x: inout [Float], cap: Float) {
        for i in x.indices { x[i] = Float(tanh(Double(x[i]) / Double(cap)) * Double(cap)) }
    }

    public static func crossEntropy(logits: [Float], rows: Int, vocab: Int, labels: [Int],
                                    ignoreIndex: Int = -100) -> Float? {
        var total = 0.0, n = 0
        for r in 0..<rows where labels[r] != ignoreIndex {
            let row = logits[(r * vocab)..<((r + 1) * vocab)].map(Double.init)
            let z = row.map(exp).reduce(0, +)   // fine for test-sized logits
            total += log(z) - row[labels[r]]
            n += 1
        }
        return n == 0 ? nil : Float(total / Double(n))
    }
}
