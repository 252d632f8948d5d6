import Foundation
import SmolFormats
import SmolTensor
import SmolTestSupport
import Testing

/// Tests/Fixtures/malformed/gguf (tools/make_malformed_gguf.py): each broken file must be refused
/// with a SmolError naming the file and saying what is wrong; none may crash the reader.
@Suite("GGUF malformed files")
struct GGUFMalformedTests {
    static let dir = Fixtures.root.appendingPathComponent("malformed/gguf")

    struct Case: Decodable, CustomTestStringConvertible, Sendable {
        var file: String
        var broken: String
        var error: String
        var testDescription: String { file }
    }

    static let cases: [Case] = {
        guard let data = try? Data(contentsOf: dir.appendingPathComponent("cases.json")),
              let cases = try? JSONDecoder().decode([Case].self, from: data) else { return [] }
        return cases
    }()

    @Test func corpusIsThere() {
        #expect(Self.cases.count >= 25)
    }

    @Test(arguments: cases)
    func refused(_ c: Case) {
        let path = Self.dir.appendingPathComponent(c.file).path
        do {
            let f = try GGUFFile(path: path)
            Issue.record("\(c.file) (\(c.broken)) was accepted: \(f.tensors.count) tensors")
        } catch let e as SmolError {
            #expect(e.kind == .malformed)
            #expect(e.description.contains(c.error), "\(c.file): \(e)")
            #expect(e.description.contains(c.file), "\(e)")
        } catch {
            Issue.record("\(c.file): not a SmolError: \(error)")
        }
    }

    /// The file the corpus breaks is itself fine (so each error comes from the one broken thing).
    @Test func baseFileIsValid() throws {
        let f = try GGUFFile(path: Self.dir.appendingPathComponent("valid.gguf").path)
        #expect(f.tensors.map(\.name) == ["a", "b"])
        #expect(f.tensor("b")?.shape == [2, 4])
        let b = try f.tensorBytes("b").array
        let floats = b.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        #expect(floats == [0, 1, 2, 3, 4, 5, 6, 7])
    }
}
