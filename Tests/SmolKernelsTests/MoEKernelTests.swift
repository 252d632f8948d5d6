import Foundation
import Testing
import SmolTestSupport
import SmolTensor
@testable import SmolKernels

/// A store holding its experts as Float16 bits, decoded on request: exercises the scratch
/// (dequantize-per-expert) path of the kernels without SmolQuant.
struct HalfExpertStore: ExpertStore {
    let numExperts: Int, hiddenSize: Int, intermediateSize: Int
    let bits: [UInt16]   // per expert: gate [I, D], up [I, D], down [D, I]
    var gateBias: [Float]? { nil }
    var upBias: [Float]? { nil }
    var downBias: [Float]? { nil }
    var scratchCount: Int { 3 * hiddenSize * intermediateSize }
    /// Experts the kernels asked for (a class so the kernel's calls are visible to the test).
    final class Log: @unchecked Sendable {   // appended to from the kernel's workers, under `lock`
        private var list: [Int] = []
        private let lock = NSLock()
        func append(_ e: Int) { lock.lock(); list.append(e); lock.unlock() }
        var asked: [Int] { get { lock.lock(); defer { lock.unlock() }; return list } set { lock.lock(); list = newValue; lock.unlock() } }
    }
    let log = Log()

    func withExpert<R>(_ e: Int, scratch: UnsafeMutablePointer<Float>, reference: Bool, parts: ExpertParts,
                       _ body: (ExpertMatrices) throws -> R) throws -> R {
        log.append(e)
        let m = hiddenSize * intermediateSize
        for i in 0..<(3 * m) { scratch[i] = FloatBits.f16ToF32(bits[e * 3 * m + i]) }
        return try body(ExpertMatrices(gate: scratch, up: scratch + m, down: scratch + 2 * m))
    }
}

func randomRouting(tokens: Int, experts: Int, topK: Int, _ rng: inout SeededRandom, skip: Set<Int> = []) -> ExpertRouting {
    var ids: [Int] = [], w: [Float] = []
    let allowed = (0..<experts).filter { !skip.contains($0) }
    for _ in 0..<tokens {
        var chosen: [Int] = []
        while chosen.count < topK {
            let e = allowed[Int(rng.next() % UInt64(allowed.count))]
            if !chosen.contains(e) { chosen.append(e) }
        }
        ids += chosen
        w += rng.floats(topK).map { abs($0) + 0.1 }
    }
    return ExpertRouting(tokens: tokens, topK: topK, experts: ids, weights: w)
}

@Suite struct MoEKernelTests {
    @Test(arguments: [ExpertActivation.gated(.silu), .gated(.geluTanh), .clampedSwiGLU(alpha: 1.702, limit: 0.5)])
    func groupedExpertsMatchReferenceLoop(_ act: ExpertActivation) throws {
        // E 6, K 2, D 40, I 24, T 33; with biases (gpt_oss shape) when clamped. The small limit
        // makes the clamp bite on both sides.
        var rng = SeededRandom(7)
        let E = 6, K = 2, D = 40, I = 24, T = 33
        let biases = { if case .clampedSwiGLU = act { return true } else { return false } }()
        let store = DenseExpertStore(experts: E, hidden: D, intermediate: I,
                                     gate: rng.floats(E * I * D), up: rng.floats(E * I * D), down: rng.floats(E * D * I),
                                     gateBias: biases ? rng.floats(E * I) : nil, upBias: biases ? rng.floats(E * I) : nil,
                                     downBias: biases ? rng.floats(E * D) : nil)
        let x = rng.floats(T * D)
        let routing = randomRouting(tokens: T, experts: E, topK: K, &rng)
        let fast = try Kernels.moeExperts(x, routing: routing, store: store, activation: act)
        let ref = try ReferenceKernels.moeExperts(x, routing: routing, store: store, activation: act)
        #expect(relativeError(fast, ref) < kernelTolerance)
    }

    @Test func groupedKernelFetchesOnlyActiveExpertsOnce() throws {
        // 8 experts, experts 2 and 5 never chosen: the grouped kernel dequantizes each used expert
        // exactly once; the reference loop once per (token, slot).
        var rng = SeededRandom(11)
        let E = 8, K = 2, D = 16, I = 8, T = 20
        let bits = rng.floats(E * 3 * I * D).map { FloatBits.f32ToF16($0) }
        let store = HalfExpertStore(numExperts: E, hiddenSize: D, intermediateSize: I, bits: bits)
        let routing = randomRouting(tokens: T, experts: E, topK: K, &rng, skip: [2, 5])
        let x = rng.floats(T * D)
        let fast = try Kernels.moeExperts(x, routing: routing, store: store, activation: .gated(.silu))
        let used = Set(routing.experts)
        #expect(store.log.asked.sorted() == used.sorted())
        store.log.asked = []
        let ref = try ReferenceKernels.moeExperts(x, routing: routing, store: store, activation: .gated(.silu))
        #expect(store.log.asked.count == T * K)
        #expect(relativeError(fast, ref) < kernelTolerance)
    }

    @Test func expertOutputByHand() throws {
        // One expert, D = 2, I = 1: gate row [1, 0], up row [0, 1], down [2, 3]ᵀ. Token x = [1, 2]:
        // g = 1, u = 2, h = silu(1)·2, y = h·[2, 3], weighted by 0.5.
        let store = DenseExpertStore(experts: 1, hidden: 2, intermediate: 1, gate: [1, 0], up: [0, 1], down: [2, 3])
        let routing = ExpertRouting(tokens: 1, topK: 1, experts: [0], weights: [0.5])
        let y = try Kernels.moeExperts([1, 2], routing: routing, store: store, activation: .gated(.silu))
        let h = Float(1 / (1 + exp(-1.0))) * 2
        #expect(abs(y[0] - 0.5 * h * 2) < 1e-6 && abs(y[1] - 0.5 * h * 3) < 1e-6)
    }

    @Test(arguments: [RouterScoring.softmaxThenTopK(renormalize: false), .softmaxThenTopK(renormalize: true), .topKThenSoftmax])
    func routerMatchesReference(_ scoring: RouterScoring) {
        var rng = SeededRandom(3)
        let T = 17, E = 9, K = 3
        let logits = rng.floats(T * E, scale: 4)
        let fast = Kernels.route(logits: logits, tokens: T, experts: E, topK: K, scoring: scoring)
        let ref = ReferenceKernels.route(logits: logits, tokens: T, experts: E, topK: K, scoring: scoring)
        #expect(fast.experts == ref.experts)
        #expect(relativeError(fast.weights, ref.weights) < kernelTolerance)
    }

    @Test func routerByHand() {
        // logits [0, ln 3, ln 2]: softmax [1/6, 1/2, 1/3]; top-2 = experts 1, 2.
        let l: [Float] = [0, Float(log(3.0)), Float(log(2.0))]
        let plain = Kernels.route(logits: l, tokens: 1, experts: 3, topK: 2, scoring: .softmaxThenTopK(renormalize: false))
        #expect(plain.experts == [1, 2])
        #expect(abs(plain.weights[0] - 0.5) < 1e-6 && abs(plain.weights[1] - 1.0 / 3) < 1e-6)
        // Renormalised, and softmax over the top-k logits: both [3/5, 2/5].
        for s in [RouterScoring.softmaxThenTopK(renormalize: true), .topKThenSoftmax] {
            let r = Kernels.route(logits: l, tokens: 1, experts: 3, topK: 2, scoring: s)
            #expect(abs(r.weights[0] - 0.6) < 1e-6 && abs(r.weights[1] - 0.4) < 1e-6)
        }
    }

    @Test func attentionSinksMatchReference() {
        var rng = SeededRandom(5)
        let T = 70, H = 4, Hkv = 2, Dh = 8   // ≥ attentionBLASMinTokens: the BLAS path, two blocks
        let q = rng.floats(T * H * Dh), k = rng.floats(T * Hkv * Dh), v = rng.floats(T * Hkv * Dh)
        let opts = AttentionOptions(scale: 0.35, window: 4, sinks: rng.floats(H, scale: 2))
        let fast = Kernels.attention(q: q, k: k, v: v, tokens: T, keys: T, heads: H, kvHeads: Hkv, headDim: Dh, queryStart: 0, options: opts)
        let ref = ReferenceKernels.attention(q: q, k: k, v: v, tokens: T, keys: T, heads: H, kvHeads: Hkv, headDim: Dh, queryStart: 0, options: opts)
        #expect(relativeError(fast, ref) < kernelTolerance)
        // By hand: the first query sees one key; with sink s its output is v0 · 1/(1 + e^(s − x)).
        let one = Kernels.attention(q: [1], k: [2], v: [3], tokens: 1, keys: 1, heads: 1, kvHeads: 1, headDim: 1, queryStart: 0,
                                    options: AttentionOptions(scale: 1, sinks: [2]))
        #expect(abs(one[0] - 3 * 0.5) < 1e-6)
    }
}
