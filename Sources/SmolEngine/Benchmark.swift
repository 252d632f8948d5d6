import Foundation
import SmolTensor

/// Prefill and decode throughput measured as `llama-bench -p N -n M` does, so the figures compare
/// with llama.cpp's: prefill runs an N-token prompt from an empty cache (logits for its last row
/// only, as llama.cpp computes them); decode runs M single-token steps from an empty cache (each
/// step computes the full output layer, the step a generator takes). Tokens are fixed
/// pseudo-random ids (llama-bench uses random ids too: speed does not depend on them).
public struct EngineBenchmark: Sendable {
    public var promptTokens: Int
    public var generateTokens: Int
    /// Timed repetitions of each test, after one untimed warm-up (pages of the mapped weights in,
    /// thread pools started).
    public var repetitions: Int

    public init(promptTokens: Int = 128, generateTokens: Int = 32, repetitions: Int = 3) {
        self.promptTokens = promptTokens
        self.generateTokens = generateTokens
        self.repetitions = repetitions
    }

    /// Throughputs of each repetition, tokens per second.
    public struct Result: Sendable {
        public var prefill: [Double]
        public var decode: [Double]
    }

    /// Deterministic ids in 1..<vocab (a linear congruential sequence).
    public static func tokens(_ n: Int, vocab: Int, seed: UInt64 = 1) -> [Int] {
        var x = seed
        return (0..<n).map { _ in
            x = x &* 6364136223846793005 &+ 1442695040888963407
            return 1 + Int((x >> 33) % UInt64(max(vocab - 1, 1)))
        }
    }

    public func run(_ engine: Engine) throws -> Result {
        guard promptTokens > 0 || generateTokens > 0, repetitions > 0 else {
            throw SmolError(.invalidArgument, "benchmark needs prompt or generated tokens and at least one repetition")
        }
        let prompt = Self.tokens(promptTokens, vocab: engine.vocabSize)
        let steps = Self.tokens(generateTokens, vocab: engine.vocabSize, seed: 2)
        func prefill() throws -> Double {
            let start = DispatchTime.now().uptimeNanoseconds
            _ = try engine.forward(prompt, cache: engine.makeCache(), logitsFrom: prompt.count - 1)
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        }
        func decode() throws -> Double {
            let cache = engine.makeCache()
            let start = DispatchTime.now().uptimeNanoseconds
            for t in steps { _ = try engine.forward([t], cache: cache) }
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        }
        var result = Result(prefill: [], decode: [])
        if promptTokens > 0 {
            _ = try prefill()
            for _ in 0..<repetitions { result.prefill.append(Double(promptTokens) / (try prefill())) }
        }
        if generateTokens > 0 {
            _ = try decode()
            for _ in 0..<repetitions { result.decode.append(Double(generateTokens) / (try decode())) }
        }
        return result
    }
}
