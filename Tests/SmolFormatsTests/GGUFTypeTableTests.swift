import Foundation
import SmolTensor
import SmolTestSupport
import Testing

/// SmolTensor's GGMLType table against gguf-py's GGML_QUANT_SIZES (Tests/Fixtures/gguf/ggml-quant-sizes.json).
@Suite("GGML type table")
struct GGUFTypeTableTests {
    /// Q8_1: ggml's block_q8_1 has been 36 bytes (f16 d, f16 s, 32 × i8) since ggml replaced its
    /// float d and s with halves; gguf-py's table still says 40. GGUF files never store Q8_1 (it is
    /// ggml's activation format for Q4_1/Q5_1 dot products), so we keep ggml's 36.
    static let knownDifferences: [String: (elements: Int, bytes: Int)] = ["Q8_1": (32, 36)]

    @Test func matchesGGUFPy() throws {
        let golden = try GGUFGolden.load("ggml-quant-sizes.json")
        let rows = golden["types"] as! [[String: Any]]
        #expect(rows.count == GGMLType.allCases.count)
        for row in rows {
            let id = GGUFGolden.int(row["id"])!
            let name = row["name"] as! String
            guard let t = GGMLType(rawValue: UInt32(id)) else {
                Issue.record("gguf-py type \(name) = \(id) missing from GGMLType")
                continue
            }
            #expect(t.name == name)
            #expect(GGMLType(name: name) == t)
            let expected = Self.knownDifferences[name]
                ?? (GGUFGolden.int(row["block_elements"])!, GGUFGolden.int(row["block_bytes"])!)
            #expect(t.blockLayout == expected, "\(name)")
        }
        // The exception is real: gguf-py does say 40.
        #expect(rows.first { $0["name"] as? String == "Q8_1" }.flatMap { GGUFGolden.int($0["block_bytes"]) } == 40)
    }
}
