import Foundation
import Testing
import SmolTensor
import SmolTestSupport
@testable import SmolQuant

/// formats/gguf-quants.md's block table agrees with GGMLType.blockLayout, and its fields tile each
/// block exactly.
@Suite struct LayoutDocTests {
    @Test func blockTableMatchesTypes() throws {
        let doc = try String(contentsOf: Fixtures.packageRoot.appendingPathComponent("formats/gguf-quants.md"), encoding: .utf8)
        let sizes = ["f16": 2, "f32": 4, "u8": 1, "i8": 1, "u16": 2, "u32": 4]
        var seen: Set<GGMLType> = []
        for line in doc.split(separator: "\n") where line.hasPrefix("| ") {
            let cols = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            guard cols.count == 4, let type = GGMLType(name: cols[0]), let elements = Int(cols[1]), let bytes = Int(cols[2]) else { continue }
            #expect(type.blockLayout.elements == elements && type.blockLayout.bytes == bytes, "\(type.name)")
            var next = 0
            for field in cols[3].split(separator: ";") {
                // "name type[count] @offset"
                let parts = field.split(separator: " ")
                try #require(parts.count == 3, "\(type.name): \(field)")
                let spec = parts[1], open = try #require(spec.firstIndex(of: "["))
                let size = try #require(sizes[String(spec[..<open])])
                let count = try #require(Int(spec[spec.index(after: open)...].dropLast()))
                let offset = try #require(Int(parts[2].dropFirst()))
                #expect(offset == next, "\(type.name): field \(parts[0]) at \(offset), expected \(next)")
                next = offset + size * count
            }
            #expect(next == bytes, "\(type.name): fields cover \(next) of \(bytes) bytes")
            seen.insert(type)
        }
        #expect(seen == Set(GGUFQuant.dequantizableTypes))
    }
}
