import Foundation
import Testing
import SmolTestSupport
@testable import SmolTensor

@Suite struct OutputFileTests {
    @Test func nothingAppearsUntilCommit() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("out.bin").path
        let out = try OutputFile(path: path)
        try out.write([1, 2, 3])
        #expect(!FileManager.default.fileExists(atPath: path))
        try out.commit()
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data([1, 2, 3]))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["out.bin"])
    }

    @Test func abandonedOutputLeavesNoFile() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("out.bin").path
        do {
            let out = try OutputFile(path: path)
            try out.write([UInt8](repeating: 7, count: 3 << 20))
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }

    @Test func refusesToOverwriteAnInput() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("in.bin").path
        try Data([9]).write(to: URL(fileURLWithPath: input))
        #expect(throws: SmolError.self) { try OutputFile(path: input, protecting: [input]) }
        #expect(try Data(contentsOf: URL(fileURLWithPath: input)) == Data([9]))
    }

    @Test func mappedFileRejectsOutOfRangeReads() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("f.bin").path
        try Data([1, 2, 3, 4]).write(to: URL(fileURLWithPath: path))
        let f = try MappedFile(path: path)
        #expect(try f.bytes(at: 1, count: 3).count == 3)
        #expect(throws: SmolError.self) { try f.bytes(at: 2, count: 3) }
        #expect(throws: SmolError.self) { try f.bytes(at: Int.max, count: 2) }
        var r = ByteReader(try f.bytes(at: 0, count: 4), file: path)
        #expect(try r.read(UInt16.self, "a") == 0x0201)
        #expect(throws: SmolError.self) { try r.read(UInt32.self, "b") }
    }
}
