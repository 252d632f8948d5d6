import Foundation
import SmolFormats
import SmolTensor
import SmolTestSupport
import Testing

@Suite("GGUF writer")
struct GGUFWriterTests {
    static func bytes(_ path: String) throws -> [UInt8] {
        let f = try MappedFile(path: path)
        return withExtendedLifetime(f) { Array(f.all) }
    }

    /// Byte equality of two files without loading them (the real model is 253 MB).
    static func sameBytes(_ a: String, _ b: String) throws -> Bool {
        let fa = try MappedFile(path: a), fb = try MappedFile(path: b)
        return withExtendedLifetime((fa, fb)) { 
            fa.size == fb.size && (fa.size == 0 || memcmp(fa.all.baseAddress!, fb.all.baseAddress!, fa.size) == 0)
        }
    }

    /// A file gguf.GGUFWriter wrote, read and written back: the same bytes.
    @Test func rewritesGGUFPyOutputByteForByte() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let src = GGUFGolden.dir.appendingPathComponent("all-types.gguf").path
        let f = try GGUFFile(path: src)
        let out = dir.appendingPathComponent("copy.gguf").path
        try GGUFWriter.write(to: out, metadata: f.metadata, tensors: f.writerTensors, protecting: [src])
        #expect(try Self.bytes(out) == Self.bytes(src))
        let g = try GGUFFile(path: out)
        #expect(g.metadata == f.metadata)
        #expect(g.tensors == f.tensors)
    }

    /// The real model (written by llama.cpp's llama-quantize), read and written back: the same
    /// 253,113,024 bytes (sha256 a5fd3b62…), and it reads back equal.
    @Test func rewritesRealModelByteForByte() throws {
        guard let url = Fixtures.realModel else {
            print("skipped: the real model is not installed (run tools/setup)")
            return
        }
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let f = try GGUFFile(path: url.path)
        let out = dir.appendingPathComponent("copy.gguf").path
        try GGUFWriter.write(to: out, metadata: f.metadata, tensors: f.writerTensors, protecting: [url.path])
        #expect(try Self.sameBytes(out, url.path))
        let g = try GGUFFile(path: out)
        #expect(g.metadata == f.metadata)
        #expect(g.tensors == f.tensors)
        #expect(g.dataOffset == f.dataOffset)
    }

    /// A v2 file comes back as v3 with everything else equal (v2 and v3 differ only in the version).
    @Test func rewritesVersion2AsVersion3() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let src = GGUFGolden.dir.appendingPathComponent("v2.gguf").path
        let f = try GGUFFile(path: src)
        let out = dir.appendingPathComponent("v3.gguf").path
        try GGUFWriter.write(to: out, metadata: f.metadata, tensors: f.writerTensors)
        var expected = try Self.bytes(src)
        expected[4] = 3
        #expect(try Self.bytes(out) == expected)
        #expect(try GGUFFile(path: out).version == 3)
    }

    /// Values gguf-py cannot write (empty arrays, nested empties, NaN bits) survive write → read.
    @Test func roundTripsEdgeValues() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var m = GGUFMetadata()
        m["general.alignment"] = .uint32(128)
        m["empty.string"] = .string("")
        m["empty.array"] = .array(.int32([]))
        m["nested.empty"] = .array(.array([.string([]), .float64([1e-300]), .array([.bool([true])])]))
        m["nan"] = .float32(Float(bitPattern: 0x7fc0_1234))
        m["bool.array"] = .array(.bool([false, true]))
        let out = dir.appendingPathComponent("edge.gguf").path
        let data: [Float] = [1, 2, 3]
        try GGUFWriter.write(to: out, metadata: m, tensors: [
            .init(name: "x", type: .f32, shape: [1, 3]) { TensorBytes(elements: data) },
            .init(name: "y", type: .q8_0, shape: [2, 32]) { TensorBytes([UInt8](repeating: 7, count: 68)) },
        ])
        let f = try GGUFFile(path: out)
        #expect(f.alignment == 128)
        #expect(f.metadata.keys == m.keys)
        for key in m.keys where key != "nan" { #expect(f.metadata[key] == m[key]) }
        if case .float32(let x) = f.metadata["nan"] { #expect(x.bitPattern == 0x7fc0_1234) } else { Issue.record("nan lost") }
        #expect(f.tensorOffset("y")! - f.tensorOffset("x")! == 128)
        #expect(f.dataOffset % 128 == 0)
        #expect(try f.tensorBytes("x").array == TensorBytes(elements: data).array)
        #expect(f.fileSize == f.dataOffset + 128 + 128)
    }

    @Test func tensorFromTensorInfo() throws {
        let t = try GGUFWriter.Tensor(TensorInfo(name: "w", type: .dense(.bf16), shape: [2, 3])) { TensorBytes([]) }
        #expect(t.type == .bf16 && t.shape == [2, 3])
        #expect(throws: SmolError.self) {
            try GGUFWriter.Tensor(TensorInfo(name: "w", type: .dense(.f8e4m3), shape: [2])) { TensorBytes([]) }
        }
    }

    @Test func metadataKeepsInsertionOrder() {
        var m = GGUFMetadata()
        m["b"] = .uint8(1)
        m["a"] = .uint8(2)
        m["b"] = .uint8(3)  // replaced in place
        #expect(m.keys == ["b", "a"])
        #expect(m.int("b") == 3)
        m["b"] = nil
        #expect(m.keys == ["a"])
        #expect(Array(m.map(\.key)) == ["a"])
    }

    @Test func refusesBadInputAndLeavesNoFile() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("bad.gguf").path
        let f32 = { TensorBytes(elements: [Float](repeating: 0, count: 4)) }
        func fails(_ substring: String, metadata: GGUFMetadata = GGUFMetadata(), _ tensors: [GGUFWriter.Tensor]) {
            do {
                try GGUFWriter.write(to: out, metadata: metadata, tensors: tensors)
                Issue.record("expected an error containing '\(substring)'")
            } catch let e as SmolError {
                #expect(e.description.contains(substring), "\(e)")
                #expect(e.description.contains(out))
            } catch {
                Issue.record("unexpected \(error)")
            }
            #expect(!FileManager.default.fileExists(atPath: out))
            #expect((try? FileManager.default.contentsOfDirectory(atPath: dir.path))?.isEmpty == true)
        }
        fails("producer returned 16 bytes", [.init(name: "t", type: .f32, shape: [5], bytes: f32)])
        fails("duplicate tensor name", [.init(name: "t", type: .f32, shape: [4], bytes: f32),
                                       .init(name: "t", type: .f32, shape: [4], bytes: f32)])
        fails("row length must be a multiple of 32", [.init(name: "t", type: .q8_0, shape: [2, 16], bytes: f32)])
        fails("positive dimensions", [.init(name: "t", type: .f32, shape: [1, 1, 1, 1, 4], bytes: f32)])
        fails("positive dimensions", [.init(name: "t", type: .f32, shape: [], bytes: f32)])
        fails("power of two", metadata: GGUFMetadata([("general.alignment", .uint32(48))]), [])
        fails("power of two", metadata: GGUFMetadata([("general.alignment", .uint64(32))]), [])
        struct Boom: Error {}
        do {
            try GGUFWriter.write(to: out, metadata: GGUFMetadata(), tensors: [.init(name: "t", type: .f32, shape: [4]) { throw Boom() }])
            Issue.record("expected the producer's error")
        } catch is Boom {}
        #expect((try? FileManager.default.contentsOfDirectory(atPath: dir.path))?.isEmpty == true)
    }

    /// Writes files for tools/crosscheck/check_gguf.py (gguf.GGUFReader reads them) when
    /// SMOLCONV_GGUF_CROSSCHECK_DIR is set; otherwise writes them to a temporary folder and reads
    /// them back.
    @Test func writesFilesForCrosscheck() throws {
        let env = ProcessInfo.processInfo.environment["SMOLCONV_GGUF_CROSSCHECK_DIR"]
        let dir = env.map { URL(fileURLWithPath: $0) } ?? Fixtures.temporaryDirectory()
        defer { if env == nil { try? FileManager.default.removeItem(at: dir) } }
        let src = try GGUFFile(path: GGUFGolden.dir.appendingPathComponent("all-types.gguf").path)
        // Re-ordered metadata and tensors, another alignment: offsets recomputed by our writer.
        var m = GGUFMetadata()
        m["general.alignment"] = .uint32(256)
        for (k, v) in src.metadata.reversed() where k != "general.alignment" { m[k] = v }
        let out = dir.appendingPathComponent("smolconv-all-types.gguf").path
        try GGUFWriter.write(to: out, metadata: m, tensors: src.writerTensors.reversed())
        let g = try GGUFFile(path: out)
        #expect(g.metadata == m)
        #expect(g.tensors.map(\.name) == src.tensors.map(\.name).reversed())
        for t in src.tensors { #expect(try g.tensorBytes(t.name).array == src.tensorBytes(t.name).array) }
    }
}
