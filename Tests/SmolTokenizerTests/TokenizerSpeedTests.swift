import Foundation
import SmolFormats
import SmolTestSupport
import SmolTokenizer
import Testing

/// Speed of the real model's tokenizer. Speed targets are met in benchmarks, not timed tests: the
/// budgets are asserted only when SMOLCONV_BENCH=1 (tools/bench_tokenizer sets it, on a release
/// build); otherwise the times are printed and only the result is checked.
@Suite struct TokenizerSpeedTests {
    /// Tokenizing the 35 KB GPL-3 text must stay well under 100 ms (issue 4).
    static let encodeBudget: Duration = .milliseconds(50)
    /// Building the 262,144-token Gemma tokenizer from already-read metadata.
    static let buildBudget: Duration = .milliseconds(500)

    @Test func gpl3EncodeAndVocabularyBuild() throws {
        guard let url = Fixtures.realModel else { print("skipping: the real model is missing; run tools/setup"); return }
        let clock = ContinuousClock()
        let meta = try GGUFFile(path: url.path).metadata
        var tok: Tokenizer?
        let build = try clock.measure { tok = try Tokenizer.fromGGUF(meta) }
        let t = try #require(tok)
        let text = try String(contentsOf: Fixtures.root.appendingPathComponent("tokenizer/GPL-3"), encoding: .utf8)
        var ids: [Int32] = []
        var best = Duration.seconds(1000)
        for _ in 0..<20 {
            let d = clock.measure { ids = t.encode(text) }
            best = min(best, d)
        }
        print("Gemma 3 tokenizer: build \(build), GPL-3 encode (best of 20) \(best), \(ids.count) tokens")
        #expect(ids.count == 7563)
        if ProcessInfo.processInfo.environment["SMOLCONV_BENCH"] == "1" {
            #expect(best < Self.encodeBudget)
            #expect(build < Self.buildBudget)
        }
    }
}
