import Foundation
import SmolTensor

/// How the next token is chosen. Temperature 0 is greedy (argmax, first index on ties).
public struct SamplingOptions: Sendable, Equatable {
    public var temperature: Double
    /// Nucleus sampling: draw from the smallest set of most likely tokens whose probabilities sum
    /// to at least `topP` (1 = the whole vocabulary).
    public var topP: Double
    public var seed: UInt64

    public init(temperature: Double = 0, topP: Double = 1, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topP = topP
        self.seed = seed
    }

    public static let greedy = SamplingOptions()
}

/// xoshiro256** seeded through SplitMix64: the same seed gives the same tokens on every platform
/// (Swift's SystemRandomNumberGenerator cannot be seeded).
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (splitmix(), splitmix(), splitmix(), splitmix())
    }

    public mutating func next() -> UInt64 {
        func rotl(_ v: UInt64, _ k: UInt64) -> UInt64 { (v << k) | (v >> (64 - k)) }
        let result = rotl(s.1 &* 5, 7) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = rotl(s.3, 45)
        return result
    }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }
}

public enum Sampler {
    /// Picks a token from one row of logits.
    public static func pick(_ row: ArraySlice<Float>, _ o: SamplingOptions, _ rng: inout SeededGenerator) -> Int {
        let base = row.startIndex
        if o.temperature <= 0 {
            var best = base
            for j in row.indices where row[j] > row[best] { best = j }
            return best - base
        }
        var m = -Float.infinity
        for v in row where v > m { m = v }
        // Probabilities of logits / T, in Double.
        var probs = row.map { Foundation.exp(Double($0 - m) / o.temperature) }
        let total = probs.reduce(0, +)
        for i in probs.indices { probs[i] /= total }
        var order = Array(probs.indices)
        if o.topP < 1 {
            order.sort { probs[$0] > probs[$1] || (probs[$0] == probs[$1] && $0 < $1) }
            var cum = 0.0, keep = 0
            while keep < order.count { cum += probs[order[keep]]; keep += 1; if cum >= o.topP { break } }
            order = Array(order.prefix(keep))
        }
        let mass = order.reduce(0) { $0 + probs[$1] }
        var u = rng.unit() * mass
        for i in order {
            u -= probs[i]
            if u < 0 { return i }
        }
        return order.last!
    }
}

extension Engine {
    /// Generates up to `maxNewTokens` after `prompt` with the KV cache, calling `onToken` with each
    /// new token as soon as it is chosen (return false to stop). Stops after a token in
    /// `stopTokens`. Returns the new tokens.
    @discardableResult
    public func stream(_ prompt: [Int], maxNewTokens: Int, sampling: SamplingOptions = .greedy,
                       stopTokens: Set<Int> = [], onToken: (Int) throws -> Bool) throws -> [Int] {
        guard maxNewTokens > 0 else { return [] }
        var rng = SeededGenerator(seed: sampling.seed)
        let cache = makeCache()
        let V = vocabSize
        var logits = try forward(prompt, cache: cache, logitsFrom: prompt.count - 1).logits  // [1, V]
        var out: [Int] = []
        for _ in 0..<maxNewTokens {
            let next = Sampler.pick(logits[0..<V], sampling, &rng)
            out.append(next)
            if try !onToken(next) || stopTokens.contains(next) || out.count == maxNewTokens { break }
            logits = try forward([next], cache: cache).logits
        }
        return out
    }
}
