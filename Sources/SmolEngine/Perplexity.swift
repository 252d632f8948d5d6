import Dispatch
import Foundation
import SmolKernels
import SmolTensor

/// llama.cpp's perplexity protocol (`llama-perplexity`, tools/perplexity/perplexity.cpp,
/// `perplexity()` with the default stride 0), so figures compare one to one:
///
/// - the text is tokenized once, with BOS when the vocabulary adds one;
/// - it is cut into `tokens.count / context` chunks of `context` tokens (the tail is dropped);
///   fewer than 2 × context tokens is refused, as there;
/// - each chunk runs from an empty cache with its first token replaced by BOS (when the model
///   adds BOS);
/// - only the second half is scored: logits at positions context/2 … context − 2 predict the
///   tokens at context/2 + 1 … context − 1, so context − context/2 − 1 tokens per chunk;
/// - PPL = exp(mean NLL); its uncertainty is llama.cpp's:
///   ppl · sqrt((mean(NLL²) − mean(NLL)²) / (count − 1)).
public struct PerplexityProtocol: Sendable, Equatable {
    /// Tokens per chunk (llama.cpp `-c`).
    public var context: Int
    /// The token that replaces each chunk's first token; nil when the model adds no BOS.
    public var bos: Int?

    public init(context: Int = 512, bos: Int?) {
        self.context = context
        self.bos = bos
    }

    /// First scored logit row of a chunk (llama.cpp `first = n_ctx/2`).
    public var firstScored: Int { context / 2 }
    /// Scored positions per chunk: rows firstScored … context − 2.
    public var scoredPerChunk: Int { context - firstScored - 1 }

    /// How many chunks `tokenCount` tokens give; throws when llama.cpp would refuse the text.
    public func chunkCount(tokenCount: Int) throws -> Int {
        guard context >= 4 else {
            throw SmolError(.invalidArgument, "context \(context) is too small (at least 4 tokens)")
        }
        guard tokenCount >= 2 * context else {
            throw SmolError(.invalidArgument,
                            "the text has \(tokenCount) tokens; perplexity with a context of \(context) needs at least \(2 * context) (llama.cpp's rule)")
        }
        return tokenCount / context
    }

    /// Chunk `i`'s tokens, first token replaced by BOS when there is one.
    public func chunk(_ i: Int, of tokens: [Int]) -> [Int] {
        var c = Array(tokens[(i * context)..<((i + 1) * context)])
        if let bos { c[0] = bos }
        return c
    }

    /// The token each scored row predicts, for chunk `i` (the original text's tokens, never the
    /// BOS substitute).
    public func targets(_ i: Int, of tokens: [Int]) -> [Int] {
        let start = i * context
        return (firstScored..<(context - 1)).map { tokens[start + $0 + 1] }
    }
}

/// Running sums of negative log-likelihoods, as llama.cpp keeps them (Double).
public struct NLLStatistics: Sendable, Equatable {
    public var count = 0
    public var sum: Double = 0
    public var sumOfSquares: Double = 0

    public init() {}

    public mutating func add(_ nll: Double) {
        count += 1
        sum += nll
        sumOfSquares += nll * nll
    }

    public var meanNLL: Double { count == 0 ? .nan : sum / Double(count) }
    /// exp(mean NLL).
    public var perplexity: Double { Foundation.exp(meanNLL) }
    /// llama.cpp's "PPL = x +/- y": ppl · sqrt((E[nll²] − E[nll]²) / (count − 1)); 0 when the
    /// variance is not positive or there is a single value.
    public var perplexityStandardError: Double {
        guard count > 1 else { return 0 }
        let m = sum / Double(count)
        let v = sumOfSquares / Double(count) - m * m
        return v > 0 ? (v / Double(count - 1)).squareRoot() * perplexity : 0
    }
}

/// What `Perplexity.run` measured.
public struct PerplexityResult: Sendable {
    public var statistics: NLLStatistics
    public var chunks: Int
    public var context: Int
    /// Perplexity of each chunk on its own.
    public var chunkPerplexities: [Double]
    /// Wall time of the forward passes and scoring.
    public var seconds: Double

    public var perplexity: Double { statistics.perplexity }
    public var standardError: Double { statistics.perplexityStandardError }
    public var tokensScored: Int { statistics.count }
    /// Tokens run through the model (chunks × context) per second.
    public var tokensPerSecond: Double { seconds > 0 ? Double(chunks * context) / seconds : 0 }
}

/// Log-probabilities of a row of logits, computed the way llama.cpp's `log_softmax` does it
/// (Float32 `expf(x − max)` summed in Double; expf here is `FastMath.exp`, within 2 ulp of libm's),
/// but returned in Double.
public enum LogSoftmax {
    /// log Σ exp(x − max) and max for a row of `n` logits.
    @inlinable
    public static func normalizer(_ row: UnsafePointer<Float>, _ n: Int) -> (max: Float, logSum: Double) {
        var m = -Float.infinity
        for i in 0..<n where row[i] > m { m = row[i] }
        return (m, Foundation.log(sumExp(row, n, shift: m)))
    }

    /// Σ exp(row[i] − shift) in Double: exps in blocks of 256 (FastMath's vectorized loop, ≤ 2 ulp),
    /// each block summed in Double in order.
    @inlinable
    public static func sumExp(_ row: UnsafePointer<Float>, _ n: Int, shift: Float) -> Double {
        var s: Double = 0
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 256) { buf in
            let e = buf.baseAddress!
            var i = 0
            while i < n {
                let k = Swift.min(256, n - i)
                FastMath.expShifted(row + i, shift, e, k)
                for j in 0..<k { s += Double(e[j]) }
                i += k
            }
        }
        return s
    }

    /// −log p(target).
    @inlinable
    public static func nll(_ row: UnsafePointer<Float>, _ n: Int, target: Int) -> Double {
        let (m, ls) = normalizer(row, n)
        return Double(m) + ls - Double(row[target])
    }

    /// Index of the largest logit (first wins ties).
    @inlinable
    public static func argmax(_ row: UnsafePointer<Float>, _ n: Int) -> Int {
        var best = 0
        for i in 1..<n where row[i] > row[best] { best = i }
        return best
    }
}

public enum Perplexity {
    public typealias Progress = (_ chunk: Int, _ chunks: Int, _ perplexitySoFar: Double) -> Void

    /// The perplexity of `engine` on `tokens` (already tokenized, BOS first when the model adds
    /// one) under llama.cpp's protocol.
    public static func run(_ engine: Engine, tokens: [Int], protocol p: PerplexityProtocol,
                           progress: Progress? = nil) throws -> PerplexityResult {
        try run(vocabSize: engine.vocabSize, tokens: tokens, protocol: p, progress: progress) { chunk, from, targets in
            try engine.negativeLogLikelihoods(chunk, from: from, targets: targets)
        }
    }

    /// The same protocol over any forward: `logits(chunk, from)` returns the logits [chunk.count −
    /// from, V] of rows from ..< chunk.count (e.g. a model with a LoRA adapter applied); the chunk
    /// handed over stops before its last token, whose logits nothing scores.
    public static func run(vocabSize V: Int, tokens: [Int], protocol p: PerplexityProtocol, progress: Progress? = nil,
                           logits forward: (_ chunk: [Int], _ from: Int) throws -> [Float]) throws -> PerplexityResult {
        try run(vocabSize: V, tokens: tokens, protocol: p, progress: progress) { chunk, from, targets in
            let logits = try forward(chunk, from)  // [R, V]
            guard logits.count == targets.count * V else {
                throw SmolError(.invalidArgument, "the forward returned \(logits.count) logits for \(targets.count) rows of \(V)")
            }
            var nll = [Double](repeating: 0, count: targets.count)
            logits.withUnsafeBufferPointer { lp in
                nll.withUnsafeMutableBufferPointer { np in
                    let l = lp.baseAddress!, out = np.baseAddress!
                    parallelFor(targets.count) { r in out[r] = LogSoftmax.nll(l + r * V, V, target: targets[r]) }
                }
            }
            return nll
        }
    }

    /// The protocol over a scorer: `nll(chunk, from, targets)` returns −log p(targets[r]) for rows
    /// from ..< chunk.count (the row at chunk.count − 1 has no target and is not asked for).
    public static func run(vocabSize V: Int, tokens: [Int], protocol p: PerplexityProtocol, progress: Progress? = nil,
                           scores: (_ chunk: [Int], _ from: Int, _ targets: [Int]) throws -> [Double]) throws -> PerplexityResult {
        let chunks = try p.chunkCount(tokenCount: tokens.count)
        if let bad = tokens.first(where: { $0 < 0 || $0 >= V }) {
            throw SmolError(.invalidArgument, "token id \(bad) outside the vocabulary (0..<\(V))")
        }
        let start = Date()
        var stats = NLLStatistics()
        var perChunk: [Double] = []
        for i in 0..<chunks {
            let targets = p.targets(i, of: tokens)
            let chunk = p.chunk(i, of: tokens)
            let nll = try scores(Array(chunk[..<(p.context - 1)]), p.firstScored, targets)
            guard nll.count == targets.count else {
                throw SmolError(.invalidArgument, "the scorer returned \(nll.count) values for \(targets.count) targets")
            }
            var chunkStats = NLLStatistics()
            for v in nll { stats.add(v); chunkStats.add(v) }
            perChunk.append(chunkStats.perplexity)
            progress?(i + 1, chunks, stats.perplexity)
        }
        return PerplexityResult(statistics: stats, chunks: chunks, context: p.context, chunkPerplexities: perChunk,
                                seconds: Date().timeIntervalSince(start))
    }
}
