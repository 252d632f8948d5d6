import COpenBLAS
import Foundation
import SmolTensor

// Mixture-of-experts kernels. Extra legend: E experts, K experts chosen per token (top-k),
// I one expert's intermediate size.

/// What an expert's FFN applies between its gate/up and its down projection.
public enum ExpertActivation: Sendable, Equatable {
    /// act(gate) · up: SwiGLU with .silu (qwen, mixtral, olmoe), GeGLU with .geluTanh (gemma4).
    case gated(Activation)
    /// gpt_oss: g = min(gate, limit), u = clamp(up, −limit, limit), out = (u + 1) · g · σ(alpha · g).
    case clampedSwiGLU(alpha: Float, limit: Float)
}

/// How router logits become top-k expert weights.
public enum RouterScoring: Sendable, Equatable {
    /// softmax over all E logits, then the K largest probabilities (qwen2/3 MoE, mixtral, olmoe,
    /// gemma4); `renormalize` divides them by their sum (`norm_topk_prob`; mixtral and gemma4 always).
    case softmaxThenTopK(renormalize: Bool)
    /// The K largest logits, then softmax over those K (gpt_oss).
    case topKThenSoftmax
}

/// The experts chosen for T tokens: slot k < K of token t is expert `experts[t·K + k]` with weight
/// `weights[t·K + k]`, slots in descending score order.
public struct ExpertRouting: Sendable, Equatable {
    public var tokens: Int
    public var topK: Int
    /// [T, K]
    public var experts: [Int]
    /// [T, K]
    public var weights: [Float]

    public init(tokens: Int, topK: Int, experts: [Int], weights: [Float]) {
        precondition(experts.count == tokens * topK && weights.count == experts.count, "routing shape mismatch")
        self.tokens = tokens; self.topK = topK; self.experts = experts; self.weights = weights
    }
}

/// One expert's three matrices as Float32, HF [out, in] layout.
public struct ExpertMatrices {
    /// [I, D]
    public var gate: UnsafePointer<Float>
    /// [I, D]
    public var up: UnsafePointer<Float>
    /// [D, I]
    public var down: UnsafePointer<Float>

    public init(gate: UnsafePointer<Float>, up: UnsafePointer<Float>, down: UnsafePointer<Float>) {
        self.gate = gate; self.up = up; self.down = down
    }
}

/// The stacked experts of one MoE layer, held as Float32 or quantized. The kernels ask for one
/// expert at a time, so a quantized store dequantizes only the experts a batch actually uses.
public protocol ExpertStore: Sendable {
    /// E
    var numExperts: Int { get }
    /// D
    var hiddenSize: Int { get }
    /// I
    var intermediateSize: Int { get }
    /// gpt_oss biases: gate and up [E, I] each, down [E, D]; nil when the experts have none.
    var gateBias: [Float]? { get }
    var upBias: [Float]? { get }
    var downBias: [Float]? { get }
    /// Floats of scratch `withExpert` needs (0 when the weights are already Float32).
    var scratchCount: Int { get }
    /// Calls `body` with expert `e`'s matrices as Float32, dequantizing into `scratch` (at least
    /// `scratchCount` floats) when held quantized; `reference` selects the plain dequantizer twin.
    /// Only the matrices in `parts` need be valid (a quantized store decodes just those).
    func withExpert<R>(_ e: Int, scratch: UnsafeMutablePointer<Float>, reference: Bool, parts: ExpertParts,
                       _ body: (ExpertMatrices) throws -> R) throws -> R
}

/// Which of an expert's matrices a caller reads.
public struct ExpertParts: OptionSet, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    public static let gateUp = ExpertParts(rawValue: 1)
    public static let down = ExpertParts(rawValue: 2)
    public static let all: ExpertParts = [.gateUp, .down]
}

extension ExpertStore {
    /// `withExpert` with all three matrices valid.
    public func withExpert<R>(_ e: Int, scratch: UnsafeMutablePointer<Float>, reference: Bool,
                              _ body: (ExpertMatrices) throws -> R) throws -> R {
        try withExpert(e, scratch: scratch, reference: reference, parts: .all, body)
    }
}

/// Float32 experts: gate and up [E, I, D], down [E, D, I] (each expert's matrices contiguous).
public struct DenseExpertStore: ExpertStore {
    public let numExperts: Int
    public let hiddenSize: Int
    public let intermediateSize: Int
    public let gate: [Float]
    public let up: [Float]
    public let down: [Float]
    public let gateBias: [Float]?
    public let upBias: [Float]?
    public let downBias: [Float]?
    public var scratchCount: Int { 0 }

    public init(experts: Int, hidden: Int, intermediate: Int, gate: [Float], up: [Float], down: [Float],
                gateBias: [Float]? = nil, upBias: [Float]? = nil, downBias: [Float]? = nil) {
        let m = experts * hidden * intermediate
        precondition(gate.count == m && up.count == m && down.count == m, "expert stack shape mismatch")
        precondition(gateBias.map { $0.count == experts * intermediate } ?? true
                     && upBias.map { $0.count == experts * intermediate } ?? true
                     && downBias.map { $0.count == experts * hidden } ?? true, "expert bias shape mismatch")
        numExperts = experts; hiddenSize = hidden; intermediateSize = intermediate
        self.gate = gate; self.up = up; self.down = down
        self.gateBias = gateBias; self.upBias = upBias; self.downBias = downBias
    }

    public func withExpert<R>(_ e: Int, scratch: UnsafeMutablePointer<Float>, reference: Bool, parts: ExpertParts,
                              _ body: (ExpertMatrices) throws -> R) throws -> R {
        precondition(e >= 0 && e < numExperts, "expert \(e) out of range")
        let m = hiddenSize * intermediateSize
        return try gate.withUnsafeBufferPointer { g in
            try up.withUnsafeBufferPointer { u in
                try down.withUnsafeBufferPointer { d in
                    try body(ExpertMatrices(gate: g.baseAddress! + e * m, up: u.baseAddress! + e * m,
                                            down: d.baseAddress! + e * m))
                }
            }
        }
    }
}

extension Kernels {
    /// Router: top-k experts and weights from logits [T, E] (bias already added).
    public static func route(logits: [Float], tokens: Int, experts: Int, topK: Int, scoring: RouterScoring) -> ExpertRouting {
        precondition(logits.count == tokens * experts && topK >= 1 && topK <= experts, "route shape mismatch")
        var chosen = [Int](repeating: 0, count: tokens * topK)
        var weights = [Float](repeating: 0, count: tokens * topK)
        logits.withUnsafeBufferPointer { lp in
            chosen.withUnsafeMutableBufferPointer { cp in
                weights.withUnsafeMutableBufferPointer { wp in
                    let l = lp.baseAddress!, c = cp.baseAddress!, w = wp.baseAddress!
                    parallelFor(tokens, grain: max(1, 4096 / experts)) { t in
                        var row = Array(UnsafeBufferPointer(start: l + t * experts, count: experts))
                        if case .softmaxThenTopK = scoring { row.withUnsafeMutableBufferPointer { softmaxRow($0.baseAddress!, experts) } }
                        let top = topIndices(row, topK)
                        var vals = top.map { row[$0] }
                        switch scoring {
                        case .softmaxThenTopK(let renormalize):
                            if renormalize {
                                var s: Float = 0
                                for v in vals { s += v }
                                vals = vals.map { $0 / s }
                            }
                        case .topKThenSoftmax:
                            vals.withUnsafeMutableBufferPointer { softmaxRow($0.baseAddress!, topK) }
                        }
                        for k in 0..<topK { c[t * topK + k] = top[k]; w[t * topK + k] = vals[k] }
                    }
                }
            }
        }
        return ExpertRouting(tokens: tokens, topK: topK, experts: chosen, weights: weights)
    }

    /// The `k` largest entries' indices, largest first; equal values keep the lower index first.
    static func topIndices(_ v: [Float], _ k: Int) -> [Int] {
        var best: [Int] = []
        best.reserveCapacity(k + 1)
        for i in v.indices {
            // Insertion into a short sorted list: K is small (2…8) next to E.
            var pos = best.count
            while pos > 0 && v[best[pos - 1]] < v[i] { pos -= 1 }
            if pos < k { best.insert(i, at: pos); if best.count > k { best.removeLast() } }
        }
        return best
    }

    /// The routed experts' output, grouped: the (token, slot) pairs are sorted by expert, and each
    /// active expert runs as three matrix products (BLAS) over its whole token group, with one
    /// dequantization per active expert and call; unused experts are never touched. Active experts
    /// are spread over the cores (each worker dequantizes and multiplies its own experts), and the
    /// final weighted sum runs through `parallelFor`.
    /// x: [T, D] → [T, D]: out[t] = Σ_k weight[t,k] · expert[t,k](x[t]), summed in slot order.
    public static func moeExperts(_ x: [Float], routing r: ExpertRouting, store: any ExpertStore,
                                  activation: ExpertActivation) throws -> [Float] {
        let T = r.tokens, K = r.topK, D = store.hiddenSize, I = store.intermediateSize, E = store.numExperts
        precondition(x.count == T * D, "moeExperts shape mismatch")
        var out = [Float](repeating: 0, count: T * D)
        if T == 0 { return out }

        // Counting sort of the T·K slots by expert (stable: token order within an expert).
        var counts = [Int](repeating: 0, count: E + 1)
        for e in r.experts { precondition(e >= 0 && e < E, "routed expert \(e) out of range"); counts[e + 1] += 1 }
        for e in 0..<E { counts[e + 1] += counts[e] }       // counts[e] = first sorted row of expert e
        var fill = counts
        var sortedToken = [Int](repeating: 0, count: T * K)  // sorted row → token
        var rowOfSlot = [Int](repeating: 0, count: T * K)    // slot t·K+k → sorted row
        for s in 0..<(T * K) {
            let e = r.experts[s], row = fill[e]
            fill[e] += 1
            sortedToken[row] = s / K
            rowOfSlot[s] = row
        }
        let sizes: [Int] = (0..<E).map { counts[$0 + 1] - counts[$0] }
        let maxGroup = sizes.max() ?? 0

        var y = [Float](repeating: 0, count: T * K * D)         // [T·K, D] expert outputs, sorted rows
        // Active experts split over the cores (`forEachExpert`), largest groups first, each worker
        // with its own gather/activation buffers and dequantization scratch.
        let active: [Int] = (0..<E).filter { sizes[$0] > 0 }.sorted { sizes[$0] > sizes[$1] }
        let groupStart = counts, tokenOfRow = sortedToken   // immutable copies for the workers
        // Per worker: gathered inputs [maxGroup, D], then gate and up [maxGroup, I] each.
        let threaded = min(active.count, ProcessInfo.processInfo.activeProcessorCount) <= 1
        try y.withUnsafeMutableBufferPointer { yp in
            try x.withUnsafeBufferPointer { xp in
                nonisolated(unsafe) let yb = yp.baseAddress!, xb = xp.baseAddress!
                try forEachExpert(active, scratchCount: store.scratchCount, workCount: maxGroup * (D + 2 * I),
                                  narrowBLAS: false) { e, scratch, work in
                    let xsb = work, gb = work + maxGroup * D, ub = gb + maxGroup * I
                    let start = groupStart[e], n = groupStart[e + 1] - start
                    for j in 0..<n { (xsb + j * D).update(from: xb + tokenOfRow[start + j] * D, count: D) }
                    try store.withExpert(e, scratch: scratch, reference: false) { m in
                        sgemmNT(xsb, n, D, m.gate, I, gb)
                        sgemmNT(xsb, n, D, m.up, I, ub)
                        if let bg = store.gateBias, let bu = store.upBias {
                            addRowBias(gb, n, I, bg, offset: e * I)
                            addRowBias(ub, n, I, bu, offset: e * I)
                        }
                        applyExpertActivation(gate: gb, up: ub, n * I, activation, threaded: threaded)
                        sgemmNT(gb, n, I, m.down, D, yb + start * D)
                        if let bd = store.downBias { addRowBias(yb + start * D, n, D, bd, offset: e * D) }
                    }
                }
            }
        }

        // out[t] = Σ_k w[t,k] · y[row of slot (t,k)], in slot order (as the reference sums).
        y.withUnsafeBufferPointer { yp in
            out.withUnsafeMutableBufferPointer { op in
                let yb = yp.baseAddress!, ob = op.baseAddress!
                parallelFor(T, grain: max(1, 8192 / max(K * D, 1))) { t in
                    for k in 0..<K {
                        let s = t * K + k
                        simdAxpy(r.weights[s], yb + rowOfSlot[s] * D, ob + t * D, D)
                    }
                }
            }
        }
        return out
    }

    /// c[n, outDim] = a[n, inDim] · bᵀ with b [outDim, inDim] (cblas_sgemm).
    @inline(__always)
    static func sgemmNT(_ a: UnsafePointer<Float>, _ n: Int, _ inDim: Int, _ b: UnsafePointer<Float>, _ outDim: Int,
                        _ c: UnsafeMutablePointer<Float>) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(outDim), Int32(inDim),
                    1, a, Int32(inDim), b, Int32(inDim), 0, c, Int32(outDim))
    }

    /// rows of x [n, dim] += bias[offset ..< offset + dim]
    static func addRowBias(_ x: UnsafeMutablePointer<Float>, _ n: Int, _ dim: Int, _ bias: [Float], offset: Int) {
        bias.withUnsafeBufferPointer { bp in
            let b = bp.baseAddress! + offset
            for r in 0..<n { simdAxpy(1, b, x + r * dim, dim) }
        }
    }

    /// gate[i] ← activation(gate[i], up[i]) for i < count (over the cores when `threaded`).
    static func applyExpertActivation(gate: UnsafeMutablePointer<Float>, up: UnsafeMutablePointer<Float>,
                                      _ count: Int, _ act: ExpertActivation, threaded: Bool) {
        let grain = threaded ? 16384 : max(count, 1)
        switch act {
        case .gated(let a):
            parallelFor(count, grain: grain) { i in gate[i] = activation(gate[i], a) * up[i] }
        case .clampedSwiGLU(let alpha, let limit):
            parallelFor(count, grain: grain) { i in gate[i] = clampedSwiGLU(gate[i], up[i], alpha: alpha, limit: limit) }
        }
    }

    /// gpt_oss's expert activation in Float32, in transformers' order of operations.
    @inlinable
    public static func clampedSwiGLU(_ gate: Float, _ up: Float, alpha: Float, limit: Float) -> Float {
        let g = min(gate, limit)
        let u = max(min(up, limit), -limit)
        let glu = g * (1 / (1 + Foundation.exp(-(g * alpha))))
        return (u + 1) * glu
    }
}

extension ReferenceKernels {
    /// Router twin: softmax in Double, top-k by a full stable sort.
    public static func route(logits: [Float], tokens: Int, experts: Int, topK: Int, scoring: RouterScoring) -> ExpertRouting {
        var chosen: [Int] = [], weights: [Float] = []
        for t in 0..<tokens {
            let row = (0..<experts).map { Double(logits[t * experts + $0]) }
            func softmax(_ v: [Double]) -> [Double] {
                let m = v.max()!
                let e = v.map { exp($0 - m) }
                let s = e.reduce(0, +)
                return e.map { $0 / s }
            }
            let scores = { if case .softmaxThenTopK = scoring { return softmax(row) } else { return row } }()
            let order = scores.indices.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }
            let top = Array(order.prefix(topK))
            var vals = top.map { scores[$0] }
            switch scoring {
            case .softmaxThenTopK(let renormalize):
                if renormalize { let s = vals.reduce(0, +); vals = vals.map { $0 / s } }
            case .topKThenSoftmax:
                vals = softmax(vals)
            }
            chosen += top
            weights += vals.map { Float($0) }
        }
        return ExpertRouting(tokens: tokens, topK: topK, experts: chosen, weights: weights)
    }

    /// The plain twin of `Kernels.moeExperts`: per token, per chosen expert, that expert fetched
    /// (dequantized through the reference dequantizer when held quantized) and applied to the one
    /// token with scalar Double loops.
    public static func moeExperts(_ x: [Float], routing r: ExpertRouting, store: any ExpertStore,
                                  activation: ExpertActivation) throws -> [Float] {
        let T = r.tokens, K = r.topK, D = store.hiddenSize, I = store.intermediateSize
        var out = [Float](repeating: 0, count: T * D)
        var scratch = [Float](repeating: 0, count: max(1, store.scratchCount))
        for t in 0..<T {
            var acc = [Double](repeating: 0, count: D)
            for k in 0..<K {
                let e = r.experts[t * K + k], w = Double(r.weights[t * K + k])
                let y: [Double] = try scratch.withUnsafeMutableBufferPointer { sp in
                    try store.withExpert(e, scratch: sp.baseAddress!, reference: true) { m in
                        var h = [Double](repeating: 0, count: I)
                        for i in 0..<I {
                            var sg = 0.0, su = 0.0
                            for d in 0..<D {
                                let xv = Double(x[t * D + d])
                                sg += xv * Double(m.gate[i * D + d])
                                su += xv * Double(m.up[i * D + d])
                            }
                            if let b = store.gateBias { sg += Double(b[e * I + i]) }
                            if let b = store.upBias { su += Double(b[e * I + i]) }
                            h[i] = referenceActivation(sg, su, activation)
                        }
                        return (0..<D).map { d in
                            var s = 0.0
                            for i in 0..<I { s += h[i] * Double(m.down[d * I + i]) }
                            if let b = store.downBias { s += Double(b[e * D + d]) }
                            return s
                        }
                    }
                }
                for d in 0..<D { acc[d] += w * y[d] }
            }
            for d in 0..<D { out[t * D + d] = Float(acc[d]) }
        }
        return out
    }

    static func referenceActivation(_ g: Double, _ u: Double, _ act: ExpertActivation) -> Double {
        switch act {
        case .gated(let a):
            return Double(activation(Float(g), a)) * u
        case .clampedSwiGLU(let alpha, let limit):
            let gc = min(g, Double(limit)), uc = max(min(u, Double(limit)), -Double(limit))
            return (uc + 1) * gc / (1 + exp(-gc * Double(alpha)))
        }
    }
}

/// Hands out indices 0, 1, 2, … to the workers of `moeExperts`.
final class ExpertQueue: @unchecked Sendable {   // all state under `lock`
    private var nextIndex = 0
    private var cancelled = false
    private let lock = NSLock()

    func take(_ count: Int) -> Int? {
        lock.lock(); defer { lock.unlock() }
        guard !cancelled, nextIndex < count else { return nil }
        nextIndex += 1
        return nextIndex - 1
    }

    /// Stops handing out work; the first error is kept for the caller.
    func fail(_ error: any Error) {
        lock.lock(); cancelled = true; if firstError == nil { firstError = error }; lock.unlock()
    }

    var failure: (any Error)? { lock.lock(); defer { lock.unlock() }; return firstError }
    private var firstError: (any Error)?
}

extension Kernels {
    /// Runs `body(e, scratch, work)` for every expert of `order` (largest groups first is best),
    /// spread over the cores: one worker per core takes the next expert from a shared queue, each
    /// with its own `scratchCount`-float dequantization scratch and `workCount`-float work buffer
    /// (allocated once). One expert's products are too small for BLAS to thread well (≈ T·K/E rows),
    /// so the parallelism comes from here; narrowBLAS runs OpenBLAS single-threaded meanwhile
    /// (`BLASThreading.single`: process-wide, so a caller passes false where BLAS's own threads
    /// matter little and concurrent callers should keep their count). `body` must write only its
    /// own expert's rows of shared outputs. The first error stops the queue and is rethrown.
    public static func forEachExpert(_ order: [Int], scratchCount: Int, workCount: Int = 0, narrowBLAS: Bool = true,
                                     _ body: (_ expert: Int, _ scratch: UnsafeMutablePointer<Float>,
                                              _ work: UnsafeMutablePointer<Float>) throws -> Void) throws {
        if order.isEmpty { return }
        let workers = max(1, min(order.count, ProcessInfo.processInfo.activeProcessorCount))
        let next = ExpertQueue()
        try withoutActuallyEscaping(body) { escaping in
            nonisolated(unsafe) let work = escaping
            BLASThreading.single(if: narrowBLAS) {
                DispatchQueue.concurrentPerform(iterations: workers) { _ in
                    var scratch = [Float](repeating: 0, count: max(1, scratchCount))
                    var buffer = [Float](repeating: 0, count: max(1, workCount))
                    scratch.withUnsafeMutableBufferPointer { sp in buffer.withUnsafeMutableBufferPointer { bp in
                        while let i = next.take(order.count) {
                            do { try work(order[i], sp.baseAddress!, bp.baseAddress!) } catch { next.fail(error) }
                        }
                    } }
                }
            }
            if let failure = next.failure { throw failure }
        }
    }
}

/// OpenBLAS's own thread count, narrowed while the caller parallelises over independent products.
public enum BLASThreading {
    /// Runs `body` with OpenBLAS single-threaded (each calling thread computes its own product),
    /// restoring the previous count afterwards. The count is process-wide: BLAS calls made
    /// meanwhile by other threads also run single-threaded (slower, and rounded differently in
    /// the last bits where OpenBLAS splits a product by thread count).
    public static func single<R>(if narrow: Bool = true, _ body: () throws -> R) rethrows -> R {
        if !narrow { return try body() }
        let previous = openblas_get_num_threads()
        if previous > 1 { openblas_set_num_threads(1) }
        defer { if previous > 1 { openblas_set_num_threads(previous) } }
        return try body()
    }
}
