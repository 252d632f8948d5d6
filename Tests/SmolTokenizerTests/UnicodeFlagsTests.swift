import Foundation
import SmolFormats
import SmolTestSupport
@testable import SmolTokenizer
import Testing

@Suite struct UnicodeFlagsTests {
    /// Our categories (from Swift's Unicode data) against llama.cpp's generated table, for every
    /// code point. They may differ only where one Unicode version assigns a code point the other
    /// does not know; those are counted and must stay few and outside the test corpora.
    @Test func categoriesMatchLlamaCppTable() throws {
        let doc = try TokenizerFixtures.json("tokenizer/llama-unicode-flags.json")
        let ranges = try #require(doc.objectValue?["ranges"]?.arrayValue).map { r in
            (r.arrayValue![0].intValue!, UInt16(r.arrayValue![1].intValue!))
        }
        #expect(ranges.first?.0 == 0 && ranges.last?.0 == 0x110000)
        var differ = 0
        var oursAssignedOnly = 0
        var assignedDiffer: [String] = []
        var examples: [String] = []
        for k in 0..<(ranges.count - 1) {
            let (lo, flags) = ranges[k]
            let hi = ranges[k + 1].0
            for cp in lo..<hi {
                let ours = CodepointFlags.of(UInt32(cp)).category.rawValue
                if ours != flags {
                    differ += 1
                    if flags == CodepointFlags.undefined.rawValue { oursAssignedOnly += 1 }
                    if examples.last.map({ !$0.hasPrefix(String(format: "%05X", cp - 1)) }) ?? true || examples.count < 2 {
                        examples.append(String(format: "%05X ours %02x llama %02x", cp, ours, flags))
                    }
                    // A difference between two *assigned* categories would be a real bug.
                    if ours != CodepointFlags.undefined.rawValue && flags != CodepointFlags.undefined.rawValue {
                        assignedDiffer.append(String(format: "U+%04X ours %02x llama %02x", cp, ours, flags))
                    }
                }
            }
        }
        // DUMP_UNICODE_GAPS=1 writes the ranges llama.cpp leaves undefined and Swift assigns to
        // /tmp/unicode-gaps.txt (the source of CodepointFlags.llamaUnassigned after a toolchain update).
        if ProcessInfo.processInfo.environment["DUMP_UNICODE_GAPS"] != nil {
            var out = ""
            var start = -1, prev = -2
            for k in 0..<(ranges.count - 1) {
                for cp in ranges[k].0..<ranges[k + 1].0 where ranges[k].1 == 1 && CodepointFlags.of(UInt32(cp)).category.rawValue != 1 {
                    if cp != prev + 1 { if start >= 0 { out += String(format: "0x%05X...0x%05X,\n", start, prev) }; start = cp }
                    prev = cp
                }
            }
            if start >= 0 { out += String(format: "0x%05X...0x%05X,\n", start, prev) }
            try? out.write(toFile: "/tmp/unicode-gaps.txt", atomically: true, encoding: .utf8)
        }
        print("code points whose category differs (Unicode version gaps): \(differ), e.g. \(examples.prefix(40))")
        #expect(assignedDiffer.isEmpty, "\(assignedDiffer.prefix(20))")
        // Where llama.cpp says undefined we must too (an older Swift toolchain may know fewer
        // code points than llama.cpp's table; those are counted above but not failed).
        #expect(oursAssignedOnly == 0, "\(examples.prefix(20))")
    }

    @Test func byteLevelMapIsGPT2s() {
        // GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 upward.
        #expect(ByteLevel.byteToCodepoint[0x21] == 0x21)
        #expect(ByteLevel.byteToCodepoint[0x20] == 0x120) // "Ġ"
        #expect(ByteLevel.byteToCodepoint[0x0A] == 0x10A) // "Ċ"
        #expect(ByteLevel.byteToCodepoint[0x00] == 0x100)
        #expect(ByteLevel.byteToCodepoint[0xAD] == 0x143)
        #expect(Set(ByteLevel.byteToCodepoint).count == 256)
        for b in 0..<256 { #expect(ByteLevel.byte(forCodepoint: ByteLevel.byteToCodepoint[b]) == UInt8(b)) }
    }
}
