import Foundation
import Testing
import SmolKernels
import SmolTensor
@testable import SmolTrain

// Every backward of TrainOps against Float64 central finite differences of a plain Float64 forward
// written here (loops, no BLAS), on tiny shapes. The scalar differentiated is L = Σ c ⊙ y with
// random c (so every output element matters).

/// The analytic gradients are Float32 (accumulated over ≤ a few dozen terms); the finite differences
/// are Float64 with step 1e-5 (truncation ~1e-10). Float32 rounding of the analytic side sits near
/// 1e-6 relative; a wrong derivative is O(1). 1e-4 of the largest entry separates them clearly.
let fdTolerance = 1e-4

struct Rand {
    var g = SplitMix64(seed: 12345)
    mutating func floats(_ n: Int, scale: Double = 1) -> [Float] { (0..<n).map { _ in Float((g.nextDouble() * 2 - 1) * scale) } }
}

/// Central differences of f at x (Float64), one coordinate at a time.
func finiteDifference(_ x: [Double], _ f: ([Double]) -> Double, step: Double = 1e-5) -> [Double] {
    var g = [Double](repeating: 0, count: x.count)
    var xp = x
    for i in x.indices {
        xp[i] = x[i] + step; let a = f(xp)
        xp[i] = x[i] - step; let b = f(xp)
        xp[i] = x[i]
        g[i] = (a - b) / (2 * step)
    }
    return g
}

func relError(_ a: [Float], _ ref: [Double]) -> Double {
    var num = 0.0, den = 0.0
    for i in a.indices { num = max(num, abs(Double(a[i]) - ref[i])); den = max(den, abs(ref[i])) }
    return den == 0 ? num : num / den
}

func dot(_ c: [Float], _ y: [Double]) -> Double { zip(c, y).reduce(0) { $0 + Double($1.0) * $1.1 } }

// MARK: Float64 forwards

func rmsNorm64(_ x: [Double], rows: Int, dim: Int, weight: [Float]?, onePlus: Bool, eps: Double) -> [Double] {
    var y = x
    for r in 0..<rows {
        var ss = 0.0
        for i in 0..<dim { ss += x[r * dim + i] * x[r * dim + i] }
        let inv = 1 / (ss / Double(dim) + eps).squareRoot()
        for i in 0..<dim {
            let w = weight.map { onePlus ? 1 + Double($0[i]) : Double($0[i]) } ?? 1
            y[r * dim + i] = x[r * dim + i] * inv * w
        }
    }
    return y
}

func attention64(q: [Double], k: [Double], v: [Double], T: Int, H: Int, Hkv: Int, Dh: Int, scale: Double,
                 softcap: Double?, window: Int?, sinks: [Float]?) -> [Double] {
    var out = [Double](repeating: 0, count: T * H * Dh)
    let group = H / Hkv
    for h in 0..<H {
        let kvh = h / group
        for t in 0..<T {
            var s = [Double](repeating: -.infinity, count: T)
            for j in 0...t {
                if let w = window, j <= t - w { continue }
                var acc = 0.0
                for d in 0..<Dh { acc += q[(t * H + h) * Dh + d] * k[(j * Hkv + kvh) * Dh + d] }
                acc *= scale
                if let c = softcap { acc = c * tanh(acc / c) }
                s[j] = acc
            }
            let sink = sinks.map { Double($0[h]) }
            let m = max(s.max()!, sink ?? -.infinity)
            let e = s.map { exp($0 - m) }
            let z = e.reduce(0, +) + (sink.map { exp($0 - m) } ?? 0)
            for d in 0..<Dh {
                var acc = 0.0
                for j in 0..<T { acc += e[j] / z * v[(j * Hkv + kvh) * Dh + d] }
                out[(t * H + h) * Dh + d] = acc
            }
        }
    }
    return out
}

func act64(_ x: Double, _ a: Activation) -> Double {
    switch a {
    case .silu: return x / (1 + exp(-x))
    case .geluTanh: return 0.5 * x * (1 + tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)))
    }
}

struct AttentionCase: Sendable, CustomTestStringConvertible {
    var softcap: Float?
    var window: Int?
    var sinks: Bool
    init(softcap: Float?, window: Int?, sinks: Bool) { self.softcap = softcap; self.window = window; self.sinks = sinks }
    var testDescription: String { "softcap \(softcap.map { "\($0)" } ?? "-") window \(window.map { "\($0)" } ?? "-") sinks \(sinks)" }
}

@Suite struct TrainOpsTests {
    @Test(arguments: [RMSNormWeighting.multiply, .onePlus])
    func rmsNormBackwardMatchesFiniteDifferences(weighting: RMSNormWeighting) {
        var r = Rand()
        let rows = 3, dim = 8
        let x = r.floats(rows * dim), w = r.floats(dim), c = r.floats(rows * dim)
        for weight in [w, nil] as [[Float]?] {
            let analytic = TrainOps.rmsNormBackward(c, input: x, rows: rows, dim: dim, weight: weight, eps: 1e-6, weighting: weighting)
            let fd = finiteDifference(x.map(Double.init)) {
                dot(c, rmsNorm64($0, rows: rows, dim: dim, weight: weight, onePlus: weighting == .onePlus, eps: 1e-6))
            }
            #expect(relError(analytic, fd) < fdTolerance, "\(weighting) weight \(weight != nil)")
        }
    }

    @Test func ropeBackwardIsTheTransposeOfRope() {
        var r = Rand()
        let T = 5, H = 2, Dh = 8
        let invFreq = RopeTables.defaultInvFreq(base: 10000, dim: 6)   // partial rotary: 6 of 8 dims
        let positions = Array(0..<T)
        let x = r.floats(T * H * Dh), c = r.floats(T * H * Dh)
        var g = c
        TrainOps.ropeBackward(&g, tokens: T, heads: H, headDim: Dh, rotaryDim: 6, invFreq: invFreq, positions: positions)
        // RoPE is linear, so the finite difference of L = c · rope(x) is exact up to rounding.
        let fd = finiteDifference(x.map(Double.init)) { x64 in
            var y = x64
            for t in 0..<T { for h in 0..<H { for i in 0..<3 {
                let o = (t * H + h) * Dh
                let angle = Double(Float(positions[t]) * invFreq[i])
                let a = x64[o + i], b = x64[o + i + 3]
                y[o + i] = a * cos(angle) - b * sin(angle)
                y[o + i + 3] = b * cos(angle) + a * sin(angle)
            } } }
            return dot(c, y)
        }
        #expect(relError(g, fd) < fdTolerance)
    }

    @Test(arguments: [Activation.silu, .geluTanh])
    func gatedActivationBackwardMatchesFiniteDifferences(act: Activation) {
        var r = Rand()
        let n = 16
        let gate = r.floats(n, scale: 3), up = r.floats(n), c = r.floats(n)
        let (dg, du) = TrainOps.gatedActivationBackward(c, gate: gate, up: up, act)
        let fdG = finiteDifference(gate.map(Double.init)) { g in (0..<n).reduce(0) { $0 + Double(c[$1]) * act64(g[$1], act) * Double(up[$1]) } }
        let fdU = finiteDifference(up.map(Double.init)) { u in (0..<n).reduce(0) { $0 + Double(c[$1]) * act64(Double(gate[$1]), act) * u[$1] } }
        #expect(relError(dg, fdG) < fdTolerance)
        #expect(relError(du, fdU) < fdTolerance)
    }

    @Test(arguments: [AttentionCase(softcap: nil, window: nil, sinks: false), AttentionCase(softcap: 2, window: 3, sinks: false),
                      AttentionCase(softcap: nil, window: 2, sinks: true)])
    func attentionForwardAndBackward(c: AttentionCase) {
        var r = Rand()
        let T = 6, H = 4, Hkv = 2, Dh = 4
        let q = r.floats(T * H * Dh, scale: 1.5), k = r.floats(T * Hkv * Dh, scale: 1.5), v = r.floats(T * Hkv * Dh)
        let sinks: [Float]? = c.sinks ? r.floats(H) : nil
        let opts = AttentionOptions(scale: 0.5, softcap: c.softcap, window: c.window, sinks: sinks)
        // Forward: the BLAS version against the reference kernel.
        let out = TrainOps.attentionForward(q: q, k: k, v: v, tokens: T, keys: T, heads: H, kvHeads: Hkv, headDim: Dh, options: opts)
        let ref = ReferenceKernels.attention(q: q, k: k, v: v, tokens: T, keys: T, heads: H, kvHeads: Hkv, headDim: Dh, queryStart: 0, options: opts)
        #expect(relError(out, ref.map(Double.init)) < 1e-5)
        // Backward.
        let cc = r.floats(T * H * Dh)
        var dk = [Float](repeating: 0, count: k.count), dv = dk
        let dq = TrainOps.attentionBackward(cc, q: q, k: k, v: v, tokens: T, keys: T, heads: H, kvHeads: Hkv, headDim: Dh,
                                            options: opts, dk: &dk, dv: &dv)
        let q64 = q.map(Double.init), k64 = k.map(Double.init), v64 = v.map(Double.init)
        func L(_ q: [Double], _ k: [Double], _ v: [Double]) -> Double {
            dot(cc, attention64(q: q, k: k, v: v, T: T, H: H, Hkv: Hkv, Dh: Dh, scale: 0.5, softcap: c.softcap.map(Double.init),
                                window: c.window, sinks: sinks))
        }
        #expect(relError(dq, finiteDifference(q64) { L($0, k64, v64) }) < fdTolerance, "dq")
        #expect(relError(dk, finiteDifference(k64) { L(q64, $0, v64) }) < fdTolerance, "dk")
        #expect(relError(dv, finiteDifference(v64) { L(q64, k64, $0) }) < fdTolerance, "dv")
    }

    @Test func crossEntropyAndSoftcapBackward() {
        var r = Rand()
        let R = 4, V = 7, cap: Float = 3
        let z = r.floats(R * V, scale: 4)
        let labels = [2, -100, 6, 0]
        var logits = z
        Kernels.softcap(&logits, cap: cap)
        let capped = logits
        let (nll, count) = TrainOps.crossEntropyBackward(&logits, rows: R, vocab: V, labels: labels, gradScale: 1.0 / 3)
        TrainOps.softcapBackward(&logits, capped: capped, cap: cap)
        #expect(count == 3)
        func mean(_ z: [Double]) -> Double {
            var total = 0.0
            for row in 0..<R where labels[row] >= 0 {
                let c = (0..<V).map { Double(cap) * tanh(z[row * V + $0] / Double(cap)) }
                total += log(c.map(exp).reduce(0, +)) - c[labels[row]]
            }
            return total / 3
        }
        #expect(abs(nll / 3 - mean(z.map(Double.init))) < 1e-6)
        #expect(relError(logits, finiteDifference(z.map(Double.init), mean)) < fdTolerance)
    }

    @Test func loraLinearBackwardMatchesFiniteDifferences() {
        var r = Rand()
        let T = 3, inDim = 5, outDim = 4, rank = 2, s: Float = 2
        let x = r.floats(T * inDim), w = r.floats(outDim * inDim), a = r.floats(rank * inDim), b = r.floats(outDim * rank)
        let c = r.floats(T * outDim)
        var y = TrainOps.linear(x, rows: T, inDim: inDim, weight: w, outDim: outDim)
        let u = TrainOps.loraForward(x, rows: T, inDim: inDim, outDim: outDim, rank: rank, scale: s, a: a, b: b, into: &y)
        func f(_ x: [Double], _ a: [Double], _ b: [Double]) -> Double {
            var total = 0.0
            for t in 0..<T {
                var xa = [Double](repeating: 0, count: rank)
                for j in 0..<rank { for i in 0..<inDim { xa[j] += x[t * inDim + i] * a[j * inDim + i] } }
                for o in 0..<outDim {
                    var acc = 0.0
                    for i in 0..<inDim { acc += x[t * inDim + i] * Double(w[o * inDim + i]) }
                    for j in 0..<rank { acc += Double(s) * xa[j] * b[o * rank + j] }
                    total += Double(c[t * outDim + o]) * acc
                }
            }
            return total
        }
        let x64 = x.map(Double.init), a64 = a.map(Double.init), b64 = b.map(Double.init)
        #expect(abs(dot(c, y.map(Double.init)) - f(x64, a64, b64)) < 1e-5)
        var gA = [Float](repeating: 0, count: a.count), gB = [Float](repeating: 0, count: b.count)
        var dx = [Float](repeating: 0, count: x.count)
        TrainOps.linearBackward(c, rows: T, outDim: outDim, weight: w, inDim: inDim, into: &dx)
        TrainOps.loraBackward(c, x: x, u: u, rows: T, inDim: inDim, outDim: outDim, rank: rank, scale: s, a: a, b: b,
                              gradA: &gA, gradB: &gB, dx: &dx)
        #expect(relError(dx, finiteDifference(x64) { f($0, a64, b64) }) < fdTolerance, "dx")
        #expect(relError(gA, finiteDifference(a64) { f(x64, $0, b64) }) < fdTolerance, "dA")
        #expect(relError(gB, finiteDifference(b64) { f(x64, a64, $0) }) < fdTolerance, "dB")
    }

    /// Routing weights' backward (the chosen experts held fixed) against finite differences of the
    /// router as `Kernels.route` defines it, in Float64.
    @Test(arguments: [RouterScoring.softmaxThenTopK(renormalize: true), .softmaxThenTopK(renormalize: false), .topKThenSoftmax])
    func routingBackwardMatchesFiniteDifferences(scoring: RouterScoring) {
        var r = Rand()
        let T = 3, E = 6, K = 2
        let logits = r.floats(T * E, scale: 2), c = r.floats(T * K)
        let routing = Kernels.route(logits: logits, tokens: T, experts: E, topK: K, scoring: scoring)
        let analytic = routingBackward(c, logits: logits, routing: routing, experts: E, scoring: scoring)
        // The same experts stay chosen under ±1e-5 (no near ties in these logits).
        func weights(_ l: [Double]) -> Double {
            var total = 0.0
            for t in 0..<T {
                let row = Array(l[(t * E)..<((t + 1) * E)])
                let chosen = Array(routing.experts[(t * K)..<((t + 1) * K)])
                var w: [Double]
                switch scoring {
                case .topKThenSoftmax:
                    let m = chosen.map { row[$0] }.max()!
                    let e = chosen.map { exp(row[$0] - m) }
                    w = e.map { $0 / e.reduce(0, +) }
                case .softmaxThenTopK(let renormalize):
                    let m = row.max()!
                    let e = row.map { exp($0 - m) }
                    let z = e.reduce(0, +)
                    w = chosen.map { e[$0] / z }
                    if renormalize { let s = w.reduce(0, +); w = w.map { $0 / s } }
                }
                for k in 0..<K { total += Double(c[t * K + k]) * w[k] }
            }
            return total
        }
        #expect(relError(analytic, finiteDifference(logits.map(Double.init), weights)) < fdTolerance)
    }

    @Test func clampedSwiGLUDerivativesMatchFiniteDifferences() {
        let act = ExpertActivation.clampedSwiGLU(alpha: 1.702, limit: 7)
        for (g, u) in [(0.3, -0.8), (-2.0, 1.5), (8.0, 0.5), (1.0, 9.0), (2.5, -7.5)] as [(Double, Double)] {
            let (dg, du) = expertActivationDerivatives(Float(g), Float(u), act)
            func f(_ g: Double, _ u: Double) -> Double {
                let gc = min(g, 7), uc = max(min(u, 7), -7)
                return (uc + 1) * gc / (1 + exp(-1.702 * gc))
            }
            let h = 1e-5
            #expect(abs(Double(dg) - (f(g + h, u) - f(g - h, u)) / (2 * h)) < 1e-4, "gate \(g), \(u)")
            #expect(abs(Double(du) - (f(g, u + h) - f(g, u - h)) / (2 * h)) < 1e-4, "up \(g), \(u)")
        }
    }
}
