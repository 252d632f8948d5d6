import Foundation
import Testing
import SmolTensor
import SmolFormats
import SmolModels
import SmolEngine
import SmolTestSupport

/// NLLs from our logits vs from transformers' logits: logits agree to ~1e-6 relative (see
/// `activationTolerance`), so each log-probability to ~1e-5 absolute; 1e-4 leaves margin and is
/// far below a wrong row/target offset (O(1)).
let nllTolerance: Double = 1e-4

/// −log softmax(row)[target] in Double, written out plainly (the test's own reference).
func referenceNLL(_ row: ArraySlice<Float>, _ target: Int) -> Double {
    let m = Double(row.max()!)
    let z = row.reduce(0.0) { $0 + Foundation.exp(Double($1) - m) }
    return m + Foundation.log(z) - Double(row[row.startIndex + target])
}

@Suite struct PerplexityProtocolTests {
    @Test func chunkRuleMatchesLlamaCppOnTheGPL3Text() throws {
        // llama.cpp on the GPL-3 text (shared/references/README.md): 7,563 tokens with BOS,
        // -c 512 → 14 chunks × 255 scored tokens = 3,570.
        let p = PerplexityProtocol(context: 512, bos: 2)
        #expect(try p.chunkCount(tokenCount: 7563) == 14)
        #expect(p.scoredPerChunk == 255)
        #expect(p.firstScored == 256)
        // Fewer than 2 × ctx tokens: llama.cpp refuses.
        #expect(throws: SmolError.self) { try p.chunkCount(tokenCount: 1023) }
        #expect(try p.chunkCount(tokenCount: 1024) == 2)
    }

    @Test func chunksStartWithBOSAndScoreTheOriginalTokens() {
        let tokens = Array(100..<140)
        let p = PerplexityProtocol(context: 10, bos: 7)
        let c = p.chunk(2, of: tokens)
        #expect(c == [7] + Array(121..<130))
        // Rows 5 … 8 predict the tokens at 6 … 9 of the chunk.
        #expect(p.targets(2, of: tokens) == [126, 127, 128, 129])
        #expect(PerplexityProtocol(context: 10, bos: nil).chunk(1, of: tokens) == Array(110..<120))
    }

    /// The protocol run on a fixture against the same statistic computed from transformers'
    /// logits: the text is the fixture's 32 ids twice, ctx 32 and no BOS, so both chunks are
    /// exactly the reference forward pass, scored at rows 16 … 30.
    @Test(arguments: ["llama", "gemma3", "qwen3"])
    func perplexityMatchesTransformersLogits(arch: String) throws {
        let ref = try Reference(arch)
        let ids = try ref.ints("input_ids")
        let logits = try ref.floats("logits")
        let V = logits.count / ids.count
        var nlls: [Double] = []
        for _ in 0..<2 {
            for row in 16...30 { nlls.append(referenceNLL(logits[(row * V)..<((row + 1) * V)], ids[row + 1])) }
        }
        let mean = nlls.reduce(0, +) / Double(nlls.count)
        let r = try Perplexity.run(try engine(arch), tokens: ids + ids, protocol: PerplexityProtocol(context: 32, bos: nil))
        #expect(r.tokensScored == 30)
        #expect(r.chunks == 2)
        #expect(abs(Foundation.log(r.perplexity) - mean) < nllTolerance, "\(arch): \(r.perplexity) vs \(Foundation.exp(mean))")
        // llama.cpp's uncertainty: ppl · sqrt((E[nll²] − E[nll]²) / (n − 1)).
        let m2 = nlls.reduce(0) { $0 + $1 * $1 } / Double(nlls.count)
        let expectedErr = Foundation.exp(mean) * ((m2 - mean * mean) / Double(nlls.count - 1)).squareRoot()
        #expect(abs(r.standardError - expectedErr) / expectedErr < 1e-3)
    }

    @Test func outOfVocabularyTokenIsRejected() throws {
        let e = try engine("llama")
        #expect(throws: SmolError.self) {
            try Perplexity.run(e, tokens: Array(repeating: 1, count: 15) + [e.vocabSize], protocol: PerplexityProtocol(context: 8, bos: nil))
        }
    }
}

@Suite struct DivergenceTests {
    @Test func sameModelHasZeroDivergence() throws {
        let e = try engine("gemma3")
        let ids = try Reference("gemma3").ints("input_ids")
        let d = try Divergence.run(original: e, converted: e, tokens: ids + ids, protocol: PerplexityProtocol(context: 32, bos: 2))
        #expect(d.meanKLD == 0)
        #expect(d.kldP99 == 0)
        #expect(d.top1Agreement == 1)
        #expect(d.original == d.converted)
    }

    /// Two different models over the same 512-token vocabulary (the llama and smollm3 fixtures):
    /// the KLD at each scored row equals Σ p (log p − log q) computed plainly from both logit rows.
    @Test func divergenceMatchesAPlainComputation() throws {
        let a = try engine("llama"), b = try engine("smollm3")
        let ids = try Reference("llama").ints("input_ids")
        let p = PerplexityProtocol(context: 32, bos: nil)
        let d = try Divergence.run(original: a, converted: b, tokens: ids + ids, protocol: p)
        let la = try a.forward(ids).logits, lb = try b.forward(ids).logits
        let V = a.vocabSize
        var expected: [Double] = []
        for row in 16...30 {
            let ra = la[(row * V)..<((row + 1) * V)], rb = lb[(row * V)..<((row + 1) * V)]
            let za = referenceNLL(ra, 0) + Double(ra[ra.startIndex]), zb = referenceNLL(rb, 0) + Double(rb[rb.startIndex])
            var kl = 0.0
            for j in 0..<V {
                let lp = Double(ra[ra.startIndex + j]) - za, lq = Double(rb[rb.startIndex + j]) - zb
                kl += Foundation.exp(lp) * (lp - lq)
            }
            expected.append(kl)
        }
        #expect(d.kld.count == 30)
        let mean = (expected + expected).reduce(0, +) / 30
        #expect(d.meanKLD > 0)
        // The engine sums Float32 exp terms in Double (as llama.cpp does); the test uses Double
        // exp: log-normalizers differ by ≲ 1e-7, which moves each KL by at most about that.
        #expect(abs(d.meanKLD - mean) < 1e-6, "\(d.meanKLD) vs \(mean)")
        #expect(d.top1Agreement < 1)
    }

    @Test func percentileInterpolatesLikeLlamaCpp() {
        // llama.cpp: p = f·(n−1), linear between neighbours (numpy's default 'linear' method).
        #expect(abs(Divergence.percentile([4, 1, 3, 2], 0.99) - 3.97) < 1e-12)
        #expect(Divergence.percentile([5], 0.99) == 5)
        #expect(Divergence.percentile([1, 2, 3, 4, 5], 0.5) == 3)
    }
}

@Suite struct SamplingTests {
    @Test func greedyStreamEqualsGenerate() throws {
        let e = try engine("qwen3")
        let prompt = Array(try Reference("qwen3").ints("generated_ids").prefix(8))
        var seen: [Int] = []
        let out = try e.stream(prompt, maxNewTokens: 12) { seen.append($0); return true }
        #expect(out == seen)
        #expect(prompt + out == (try Reference("qwen3").ints("generated_ids")))
    }

    @Test func seededSamplingIsReproducibleAndTopPNarrowsToArgmax() throws {
        let e = try engine("llama")
        let prompt = [1, 5, 9, 13]
        let s = SamplingOptions(temperature: 1, topP: 1, seed: 42)
        let a = try e.stream(prompt, maxNewTokens: 10, sampling: s) { _ in true }
        let b = try e.stream(prompt, maxNewTokens: 10, sampling: s) { _ in true }
        #expect(a == b)
        // A nucleus smaller than any single token's mass keeps only the most likely token.
        let narrow = try e.stream(prompt, maxNewTokens: 10, sampling: SamplingOptions(temperature: 1, topP: 1e-9, seed: 7)) { _ in true }
        #expect(narrow == (try e.stream(prompt, maxNewTokens: 10) { _ in true }))
    }
}

/// The tiled output layer + running log-sum-exp of perplexity against its twin (full logits, then
/// llama.cpp's row log-softmax): the same sums, but sgemm on a tile of the output weight may round
/// a logit differently in its last bit (other blocking), which moves an NLL by ~1e-7 relative
/// (measured up to 5e-7); 2e-6 leaves margin and is far below a wrong target, a skipped tile or a
/// missing rescale (O(1e-2) or more). Tiles of 7 and 100 vocabulary rows cross many tile
/// boundaries (with the running max rescaled whenever a later tile raises it), gemma2 adds the
/// final logit soft-capping.
let tiledNLLTolerance: Double = 2e-6

@Suite struct ScoredHeadTests {
    @Test(arguments: ["llama", "gemma2", "gemma3"])
    func tiledNLLMatchesFullLogits(arch: String) throws {
        let e = try engine(arch)
        let ids = try Reference(arch).ints("input_ids")
        let from = 10
        let targets = Array(ids[(from + 1)...]) + [ids[0]]          // any in-vocabulary targets
        let tokens = ids
        let full = try e.nllFullLogits(tokens, from: from, targets: targets)
        for tile in [7, 100, Engine.headTileRows] {
            let tiled = try e.negativeLogLikelihoods(tokens, from: from, targets: targets, tileRows: tile)
            #expect(tiled.count == full.count)
            for (a, b) in zip(tiled, full) {
                #expect(abs(a - b) <= tiledNLLTolerance * max(1, abs(b)), "\(arch) tile \(tile): \(a) vs \(b)")
            }
        }
        #expect(throws: SmolError.self) { try e.negativeLogLikelihoods(tokens, from: from, targets: [e.vocabSize] + targets.dropFirst()) }
    }
}
