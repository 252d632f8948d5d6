import Foundation
import SmolFormats
import SmolTestSupport
import SmolTokenizer
import Testing

/// Speed of the real model's tokenizer. The budgets hold for release builds
/// (`swift test -c release --filter TokenizerSpeedTests`); debug builds only print the times.
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
        #if !DEBUG
        #expect(best < Self.encodeBudget)
        #expect(build < Self.buildBudget)
        #endif
    }
}
