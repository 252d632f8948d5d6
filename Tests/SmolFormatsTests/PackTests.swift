import Foundation
import Testing
@testable import SmolFormats
import SmolTensor
import SmolTestSupport

/// smolpack: checksums, byte layouts, byte-identical round trips, on-demand tensor reads,
/// corruption and truncation.
@Suite struct PackTests {
    // MARK: - XXH64

    /// The spec's vectors (xxhash_spec.md / XXH64 reference implementation) and the zstd CLI's frame
    /// checksums (low 32 bits of XXH64) from tools/golden_pack.py.
    @Test func xxh64MatchesTheSpecAndZstd() throws {
        #expect(XXHash64.hash([UInt8]()) == 0xEF46_DB37_51D8_E999)
        let data = try Data(contentsOf: Fixtures.root.appendingPathComponent("pack/xxh64_zstd.json"))
        let root = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let cases = try #require(root["cases"] as? [[String: Any]])
        #expect(cases.count > 10)
        for c in cases {
            let n = try #require((c["length"] as? NSNumber)?.intValue)
            let low = try #require((c["xxh64_low32"] as? NSNumber)?.uint32Value)
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 * 131 + 7) }
            #expect(UInt32(truncatingIfNeeded: XXHash64.hash(bytes)) == low, "length \(n)")
        }
    }

    /// The streaming form equals the one-shot hash however the input is cut (pieces shorter and
    /// longer than a 32-byte stripe, empty pieces); the one-shot hash is checked against the spec
    /// and zstd above.
    @Test func streamingXXH64EqualsOneShot() throws {
        var rng = SplitMix(seed: 3)
        for n in [0, 1, 31, 32, 33, 100, 1000, 4099] {
            let bytes = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let whole = XXHash64.hash(bytes)
            for _ in 0..<5 {
                var h = XXHash64Stream()
                var at = 0
                while at < n {
                    let k = min(n - at, Int(rng.next() % 70))
                    bytes.withUnsafeBytes { h.update(UnsafeRawBufferPointer(rebasing: $0[at..<(at + k)])) }
                    at += k
                }
                #expect(h.digest() == whole, "length \(n)")
            }
        }
    }

    // MARK: - Byte layouts

    @Test func byteLayoutsMatchTheirReferenceTwinAndInvert() throws {
        var types: [TensorType] = DType.allCases.map { .dense($0) }
        types += GGMLType.allCases.filter(\.isQuantized).map { .block($0) }
        var rng = SplitMix(seed: 7)
        for type in types {
            let layout = ByteLayout.preferred(for: type)
            #expect(layout.problem == nil, "\(type)")
            if !layout.isIdentity { #expect(layout.recordSize == type.blockLayout.bytes, "\(type)") }
            for records in [0, 1, 3, 37] {
                let src = (0..<(records * layout.recordSize)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                var split = [UInt8](repeating: 0, count: src.count)
                src.withUnsafeBytes { s in split.withUnsafeMutableBytes { layout.split(s, into: $0) } }
                #expect(split == layout.splitReference(src), "\(type) × \(records)")
                var back = [UInt8](repeating: 0, count: src.count)
                split.withUnsafeBytes { s in back.withUnsafeMutableBytes { layout.merge(s, into: $0) } }
                #expect(back == src, "\(type) × \(records)")
                // Merged tile by tile (as unpack does), uneven tiles: the same bytes.
                for tile in [1, 2, 5] where records > 0 {
                    var tiled = [UInt8](repeating: 0, count: src.count)
                    var first = 0
                    while first < records {
                        let k = min(tile, records - first), r = layout.recordSize
                        split.withUnsafeBytes { s in
                            tiled.withUnsafeMutableBytes { layout.mergeRecords(s, from: first, into: UnsafeMutableRawBufferPointer(rebasing: $0[(first * r)..<((first + k) * r)])) }
                        }
                        first += k
                    }
                    #expect(tiled == src, "\(type) × \(records), tiles of \(tile)")
                }
                #expect(layout.planeSizes(bytes: src.count).reduce(0, +) == src.count)
                #expect(layout.planeSizes(bytes: src.count).count == layout.planeCount)
            }
        }
        // Unrotated planes by definition: low bytes, then high bytes.
        let planes = ByteLayout.preferred(for: .dense(.bf16)).unrotated
        #expect(planes.splitReference([1, 2, 3, 4, 5, 6]) == [1, 3, 5, 2, 4, 6])
        // Rotated layouts on other groupings (Q8_0's f16 scale, a 2 × u32 field) against the twin.
        for layout in [ByteLayout(recordSize: 34, groups: [.init(0, 2, 2), .init(2, 32, 1)], rotate: true),
                       ByteLayout(recordSize: 12, groups: [.init(0, 8, 4), .init(8, 4, 1)], rotate: true),
                       ByteLayout(recordSize: 16, groups: [.init(0, 16, 8)], rotate: true)] {
            #expect(layout.problem == nil)
            let src = (0..<(5 * layout.recordSize)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            var split = [UInt8](repeating: 0, count: src.count), back = split
            src.withUnsafeBytes { s in split.withUnsafeMutableBytes { layout.split(s, into: $0) } }
            #expect(split == layout.splitReference(src), "\(layout)")
            split.withUnsafeBytes { s in back.withUnsafeMutableBytes { layout.merge(s, into: $0) } }
            #expect(back == src, "\(layout)")
        }
        #expect(ByteLayout(recordSize: 3, groups: [.init(0, 3, 3)], rotate: true).problem != nil)
    }

    /// The rotated planes hold exactly the IEEE fields, checked against Swift's own Float accessors
    /// (sign, exponentBitPattern, significandBitPattern): BF16 high plane = the 8 exponent bits, low
    /// plane = mantissa << 1 | sign; F32 plane 3 = exponent, planes 0–2 = mantissa << 1 | sign.
    @Test func rotatedPlanesSeparateExponentFromSignAndMantissa() throws {
        var rng = SplitMix(seed: 11)
        let values: [Float] = [-1, 1, 0, -0, .infinity, -.greatestFiniteMagnitude, .leastNonzeroMagnitude] +
            (0..<200).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: rng.next())) }.filter { !$0.isNaN }
        let n = values.count
        // F32
        var f32 = [UInt8](), out = [UInt8](repeating: 0, count: 4 * n)
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { f32 += $0 } }
        let l32 = ByteLayout.preferred(for: .dense(.f32))
        #expect(l32.rotate)
        f32.withUnsafeBytes { s in out.withUnsafeMutableBytes { l32.split(s, into: $0) } }
        for (i, v) in values.enumerated() {
            #expect(UInt(out[3 * n + i]) == v.exponentBitPattern, "\(v)")
            let low = UInt32(out[i]) | UInt32(out[n + i]) << 8 | UInt32(out[2 * n + i]) << 16
            #expect(low == v.significandBitPattern << 1 | (v.sign == .minus ? 1 : 0), "\(v)")
        }
        // BF16 (truncated floats: the top half of each bit pattern)
        var bf = [UInt8]()
        for v in values { withUnsafeBytes(of: UInt16(v.bitPattern >> 16).littleEndian) { bf += $0 } }
        let l16 = ByteLayout.preferred(for: .dense(.bf16))
        var planes = [UInt8](repeating: 0, count: 2 * n)
        bf.withUnsafeBytes { s in planes.withUnsafeMutableBytes { l16.split(s, into: $0) } }
        for (i, v) in values.enumerated() {
            #expect(UInt(planes[n + i]) == v.exponentBitPattern, "\(v)")
            #expect(UInt32(planes[i]) == (v.significandBitPattern >> 16) << 1 | (v.sign == .minus ? 1 : 0), "\(v)")
        }
        // -1.0 as BF16 is 0xBF80: exponent 0x7F, sign 1, mantissa 0.
        #expect(l16.splitReference([0x80, 0xBF]) == [0x01, 0x7F])
    }

    /// The writer uses the lowest version a pack needs: 3 when a segment codes its planes as
    /// separate frames (the default for BF16: the exponent plane entropy-only), 2 with one frame
    /// per chunk but rotated layouts, 1 without either (readable by the oldest smolconv). All round
    /// trip. Packs written by older smolconv — version 1 (Tests/Fixtures/pack/v1-all-types.smolpack)
    /// and version 2 (v2-bf16-shard.smolpack) — still read and unpack byte for byte.
    @Test func containerVersionsOneTwoAndThree() throws {
        let dir = Fixtures.temporaryDirectory("smolpack")
        defer { try? FileManager.default.removeItem(at: dir) }
        let bf16 = Fixtures.hf("qwen3_moe_bf16_sharded").appendingPathComponent("model-00003-of-00005.safetensors").path
        func version(_ p: String) throws -> UInt32 {
            let f = try MappedFile(path: p)   // kept alive while its bytes are read
            let b = Array(try f.bytes(at: 8, count: 4))
            return UInt32(b[0]) | UInt32(b[1]) << 8 | UInt32(b[2]) << 16 | UInt32(b[3]) << 24
        }
        func segments(_ p: String) throws -> [PackIndex.Segment] {
            try PackIndex.read(MappedFile(path: p)).members[0].segments.filter { $0.tensor != nil }
        }
        var o = PackOptions()
        o.chunkSize = 16384
        let packed = dir.appendingPathComponent("packed.smolpack").path
        let v3 = try roundTrip(bf16, in: dir, options: o)
        #expect(try version(packed) == 3)
        // BF16 rotated planes: the exponent plane (plane 1) entropy-only, each zstd chunk two frames.
        let coded = try segments(packed).filter { !$0.planeCodings.isEmpty }
        #expect(!coded.isEmpty)
        for s in coded {
            #expect(s.planeCodings.count == s.layout.planeCount)
            #expect(s.layout.rotate && s.planeCodings[1] == .entropyOnly, "\(s.layout) \(s.planeCodings)")
        }
        let file = try MappedFile(path: packed)
        let chunk = try #require(coded.first?.chunks.first { $0.codec == .zstd })
        #expect(try Zstd.frames(file.bytes(at: chunk.offset, count: chunk.storedSize)).count == 2)

        o.planeCodings = false
        let v2 = try roundTrip(bf16, in: dir, options: o)
        #expect(try version(packed) == 2)
        #expect(try segments(packed).contains { $0.layout.rotate })
        #expect(try segments(packed).allSatisfy { $0.planeCodings.isEmpty })
        #expect(v3.packedBytes < v2.packedBytes, "\(v3.packedBytes) vs \(v2.packedBytes)")
        o.rotate = false
        try roundTrip(bf16, in: dir, options: o)
        #expect(try version(packed) == 1)
        #expect(try segments(packed).allSatisfy { !$0.layout.rotate })

        for (old, original, v) in [("pack/v1-all-types.smolpack", Fixtures.root.appendingPathComponent("gguf/all-types.gguf").path, UInt32(1)),
                                   ("pack/v2-bf16-shard.smolpack", bf16, UInt32(2))] {
            let path = Fixtures.root.appendingPathComponent(old).path
            #expect(try version(path) == v)
            let restored = dir.appendingPathComponent("restored-v\(v)").path
            _ = try SmolPack.unpack(input: path, output: restored)
            #expect(FileManager.default.contentsEqual(atPath: restored, andPath: original), "\(old)")
        }
    }

    /// Unpacking writes chunks in place from several threads (`write`); the plain twin appends
    /// them in order (`writeSequential`). Both give the original bytes, also with many small chunks
    /// and a member made of several segments.
    @Test func parallelInPlaceUnpackEqualsSequentialTwin() throws {
        let dir = Fixtures.temporaryDirectory("smolpack")
        defer { try? FileManager.default.removeItem(at: dir) }
        for input in [Fixtures.hf("llama").appendingPathComponent("model.safetensors").path,
                      Fixtures.root.appendingPathComponent("gguf/all-types.gguf").path] {
            var o = PackOptions()
            o.chunkSize = 4096
            let packed = dir.appendingPathComponent("p.smolpack").path
            try? FileManager.default.removeItem(atPath: packed)
            _ = try SmolPack.pack(input: input, output: packed, options: o)
            let pack = try PackedCheckpoint(path: packed)
            let a = dir.appendingPathComponent("parallel").path, b = dir.appendingPathComponent("sequential").path
            for p in [a, b] { try? FileManager.default.removeItem(atPath: p) }
            var written = [0, 0]
            let outA = try OutputFile(path: a)
            try pack.write(member: 0, to: outA) { written[0] += $0 }
            try outA.commit()
            let outB = try OutputFile(path: b)
            try pack.writeSequential(member: 0, to: outB) { written[1] += $0 }
            try outB.commit()
            let size = try #require(try FileManager.default.attributesOfItem(atPath: input)[.size] as? Int)
            #expect(written == [size, size])
            #expect(FileManager.default.contentsEqual(atPath: a, andPath: input), "\(input)")
            #expect(FileManager.default.contentsEqual(atPath: b, andPath: input), "\(input)")
        }
    }

    // MARK: - Round trips

    /// Packs `input`, unpacks it, and checks every restored file equals the original byte for byte.
    @discardableResult
    func roundTrip(_ input: String, in dir: URL, options: PackOptions = PackOptions()) throws -> PackSummary {
        let packed = dir.appendingPathComponent("packed.smolpack").path
        let restored = dir.appendingPathComponent("restored").path
        try? FileManager.default.removeItem(atPath: packed)
        try? FileManager.default.removeItem(atPath: restored)
        let s = try SmolPack.pack(input: input, output: packed, options: options)
        #expect(PackedCheckpoint.isPacked(packed))
        _ = try SmolPack.unpack(input: packed, output: restored)
        var isDir: ObjCBool = false
        FileManager.default.fileExists(atPath: input, isDirectory: &isDir)
        let files = isDir.boolValue ? try SmolPack.listFiles(input) : [""]
        #expect(try (isDir.boolValue ? SmolPack.listFiles(restored) : [""]) == files)
        for f in files {
            let a = f.isEmpty ? input : (input as NSString).appendingPathComponent(f)
            let b = f.isEmpty ? restored : (restored as NSString).appendingPathComponent(f)
            #expect(FileManager.default.contentsEqual(atPath: a, andPath: b), "\(input): \(f) differs after unpack")
        }
        return s
    }

    @Test(arguments: Fixtures.allHF)
    func everyFixtureRoundTripsByteForByte(_ name: String) throws {
        let dir = Fixtures.temporaryDirectory("smolpack")
        defer { try? FileManager.default.removeItem(at: dir) }
        let folder = Fixtures.hf(name).path
        let s = try roundTrip(folder, in: dir)
        #expect(s.kind == .folder)
        // Also with small chunks (many per tensor) and without byte layouts.
        var o = PackOptions()
        o.chunkSize = 4096
        try roundTrip(folder, in: dir, options: o)
        o.byteLayouts = false
        try roundTrip(folder, in: dir, options: o)

        // Read through Checkpoint.open: same tensors, same bytes, same config.
        let packed = dir.appendingPathComponent("p2.smolpack").path
        _ = try SmolPack.pack(input: folder, output: packed, options: o)
        let original = try Checkpoint.open(folder)
        let ckpt = try Checkpoint.open(packed)
        #expect(ckpt.packed != nil)
        #expect(ckpt.format == .huggingFace)
        #expect(ckpt.source.tensorInfos == original.source.tensorInfos)
        #expect(ckpt.config == original.config)
        for t in original.source.tensorInfos {
            #expect(try ckpt.source.tensorBytes(t.name).array == original.source.tensorBytes(t.name).array, "\(t.name)")
        }
        // Side files are there for code that reads the folder (tokenizer, generation config).
        let folderFiles = try SmolPack.listFiles(folder).filter { !$0.hasSuffix(".safetensors") && !$0.hasSuffix(".index.json") }
        for f in folderFiles {
            let extracted = (try #require(ckpt.folder) as NSString).appendingPathComponent(f)
            #expect(FileManager.default.contentsEqual(atPath: extracted, andPath: (folder as NSString).appendingPathComponent(f)), "\(f)")
        }
    }

    @Test func singleSafetensorsAndGGUFFilesRoundTrip() throws {
        let dir = Fixtures.temporaryDirectory("smolpack")
        defer { try? FileManager.default.removeItem(at: dir) }
        for input in [Fixtures.hf("llama").appendingPathComponent("model.safetensors").path,
                      Fixtures.hf("qwen3_moe_bf16_sharded").appendingPathComponent("model-00003-of-00005.safetensors").path,
                      Fixtures.root.appendingPathComponent("gguf/all-types.gguf").path,
                      Fixtures.root.appendingPathComponent("gguf/v2.gguf").path] {
            let s = try roundTrip(input, in: dir)
            #expect(s.kind == .file)
            let original = try Checkpoint.open(input)
            let ckpt = try Checkpoint.open(dir.appendingPathComponent("packed.smolpack").path)
            #expect(ckpt.format == original.format)
            #expect(ckpt.source.tensorInfos == original.source.tensorInfos)
            for t in original.source.tensorInfos {
                #expect(try ckpt.source.tensorBytes(t.name).array == original.source.tensorBytes(t.name).array, "\(t.name)")
            }
            if let g = original.gguf {
                let p = try #require(ckpt.gguf)
                #expect(p.metadata == g.metadata)
                #expect(p.tensors == g.tensors)
                #expect(p.version == g.version && p.dataOffset == g.dataOffset && p.fileSize == g.fileSize)
            }
        }
    }

    /// The real model (GGUF, mostly quantized): byte-identical round trip, and tensors read on
    /// demand from the packed file equal the mapped originals.
    @Test func realModelRoundTripsAndReadsOnDemand() throws {
        guard let model = Fixtures.realModel else { return }
        let dir = Fixtures.temporaryDirectory("smolpack")
        defer { try? FileManager.default.removeItem(at: dir) }
        let s = try roundTrip(model.path, in: dir)
        #expect(s.packedBytes < s.rawBytes)
        let g = try GGUFFile(path: model.path)
        let ckpt = try Checkpoint.open(dir.appendingPathComponent("packed.smolpack").path)
        let p = try #require(ckpt.gguf)
        #expect(p.metadata == g.metadata)
        #expect(p.tensors == g.tensors)
        for name in ["token_embd.weight", "blk.0.attn_q.weight", "blk.17.ffn_down.weight", "output_norm.weight"] where g.tensor(name) != nil {
            #expect(try p.tensorBytes(name).array == g.tensorBytes(name).array, "\(name)")
        }
    }

    // MARK: - Corruption and truncation

    func packLlama(_ dir: URL) throws -> (path: String, index: PackIndex, bytes: [UInt8]) {
        let path = dir.appendingPathComponent("llama.smolpack").path
        var o = PackOptions()
        o.chunkSize = 16384
        _ = try SmolPack.pack(input: Fixtures.hf("llama").appendingPathComponent("model.safetensors").path, output: path, options: o)
        let index = try PackIndex.read(MappedFile(path: path))
        return (path, index, Array(try Data(contentsOf: URL(fileURLWithPath: path))))
    }

    @Test func aFlippedByteInAChunkIsReportedWithItsTensor() throws {
        let dir = Fixtures.temporaryDirectory("smolpack")
        defer { try? FileManager.default.removeItem(at: dir) }
        let (path, index, bytes) = try packLlama(dir)
        // Every chunk of the largest tensor, in turn: one flipped byte in its stored bytes.
        let seg = try #require(index.members[0].segments.filter { $0.tensor != nil }.max { $0.length < $1.length })
        let name = try #require(seg.tensor?.name)
        #expect(seg.chunks.count > 1)
        for (ci, c) in seg.chunks.enumerated() {
            var b = bytes
            b[c.offset + c.storedSize / 2] ^= 0x10
            let bad = dir.appendingPathComponent("bad-\(ci).smolpack").path
            try Data(b).write(to: URL(fileURLWithPath: bad))
            let pack = try PackedCheckpoint(path: bad)   // the index is intact
            let e = try #require(throws: SmolError.self) { _ = try pack.tensorBytes(name) }
            #expect(e.kind == .malformed)
            #expect(e.location?.contains("tensor '\(name)' chunk \(ci)") == true, "\(e)")
            let e2 = try #require(throws: SmolError.self) {
                _ = try SmolPack.unpack(input: bad, output: dir.appendingPathComponent("out-\(ci)").path)
            }
            #expect(e2.location?.contains("tensor '\(name)'") == true, "\(e2)")
            #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("out-\(ci)").path))
            // The other tensors still read.
            for t in pack.tensorInfos where t.name != name { _ = try pack.tensorBytes(t.name) }
        }
        // A stored (incompressible) chunk has only the checksum to catch it.
        let stored = index.members[0].segments.flatMap { s in s.chunks.map { (s, $0) } }.first { $0.1.codec == .stored }
        if let (s, c) = stored {
            var b = bytes
            b[c.offset] ^= 1
            let bad = dir.appendingPathComponent("bad-stored.smolpack").path
            try Data(b).write(to: URL(fileURLWithPath: bad))
            let pack = try PackedCheckpoint(path: bad)
            let e = try #require(throws: SmolError.self) {
                _ = try pack.memberBytes(0)
            }
            #expect(e.message.contains("checksum mismatch"), "\(e)")
            _ = s
        }
    }

    @Test func aCorruptedIndexIsRejected() throws {
        let dir = Fixtures.temporaryDirectory("smolpack")
        defer { try? FileManager.default.removeItem(at: dir) }
        let (_, _, bytes) = try packLlama(dir)
        var b = bytes
        let indexOffset = Int(b[(b.count - 32)..<(b.count - 24)].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        b[indexOffset + 5] ^= 0x01
        let bad = dir.appendingPathComponent("bad-index.smolpack").path
        try Data(b).write(to: URL(fileURLWithPath: bad))
        let e = try #require(throws: SmolError.self) { _ = try Checkpoint.open(bad) }
        #expect(e.kind == .malformed && e.message.contains("index checksum mismatch"), "\(e)")
    }

    /// A version-3 index whose plane codings disagree with the layout, or with the frames a chunk
    /// holds, is rejected naming the tensor (the index is re-encoded with a valid checksum, so only
    /// the structural checks can catch it).
    @Test func planeCodingsMustMatchTheLayoutAndTheFrames() throws {
        let dir = Fixtures.temporaryDirectory("smolpack")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("bf16.smolpack").path
        var o = PackOptions()
        o.chunkSize = 16384
        _ = try SmolPack.pack(input: Fixtures.hf("qwen3_moe_bf16_sharded").appendingPathComponent("model-00003-of-00005.safetensors").path,
                              output: path, options: o)
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        let index = try PackIndex.read(MappedFile(path: path))
        let si = try #require(index.members[0].segments.firstIndex { !$0.planeCodings.isEmpty })
        let name = try #require(index.members[0].segments[si].tensor?.name)
        let indexOffset = Int(bytes[(bytes.count - 32)..<(bytes.count - 24)].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        func rewritten(_ change: (inout PackIndex.Segment) -> Void, _ file: String) throws -> String {
            var bad = index
            change(&bad.members[0].segments[si])
            let encoded = bad.encoded(version: 3)
            let out = Array(bytes[0..<indexOffset]) + encoded
                + PackIndex.trailer(indexOffset: indexOffset, indexLength: encoded.count, checksum: XXHash64.hash(encoded))
            let p = dir.appendingPathComponent(file).path
            try Data(out).write(to: URL(fileURLWithPath: p))
            return p
        }
        // Three codings for a two-plane layout: the index is refused.
        let threeCodings = try rewritten({ $0.planeCodings.append(.level) }, "three.smolpack")
        let e = try #require(throws: SmolError.self) { _ = try PackedCheckpoint(path: threeCodings) }
        #expect(e.kind == .malformed && e.message.contains("plane codings") && e.location?.contains(name) == true, "\(e)")
        // No codings, but the chunks hold one frame per plane: reading the tensor fails, naming it.
        let oneFrame = try rewritten({ $0.planeCodings = [] }, "one.smolpack")
        let pack = try PackedCheckpoint(path: oneFrame)
        let e2 = try #require(throws: SmolError.self) { _ = try pack.tensorBytes(name) }
        #expect(e2.kind == .malformed && e2.message.contains("2 zstd frames") && e2.location?.contains("tensor '\(name)'") == true, "\(e2)")
    }

    @Test func truncatedPacksAreRejected() throws {
        let dir = Fixtures.temporaryDirectory("smolpack")
        defer { try? FileManager.default.removeItem(at: dir) }
        let (_, _, bytes) = try packLlama(dir)
        for n in [8, 16, 47, 100, bytes.count / 2, bytes.count - 33, bytes.count - 8, bytes.count - 1] {
            let bad = dir.appendingPathComponent("cut-\(n).smolpack").path
            try Data(bytes[0..<n]).write(to: URL(fileURLWithPath: bad))
            let e = try #require(throws: SmolError.self, "cut at \(n)") { _ = try Checkpoint.open(bad) }
            #expect(e.kind == .malformed, "cut at \(n): \(e)")
            #expect(e.file == bad)
            let u = try #require(throws: SmolError.self) { _ = try SmolPack.unpack(input: bad, output: dir.appendingPathComponent("o").path) }
            #expect(u.kind == .malformed)
        }
        // Bytes appended after the trailer leave no trailer at the end.
        let extra = dir.appendingPathComponent("extra.smolpack").path
        try Data(bytes + [0, 1, 2]).write(to: URL(fileURLWithPath: extra))
        #expect(throws: SmolError.self) { _ = try PackedCheckpoint(path: extra) }
    }

    @Test func packRefusesBadArgumentsAndKeepsInputs() throws {
        let dir = Fixtures.temporaryDirectory("smolpack")
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = Fixtures.hf("llama").appendingPathComponent("model.safetensors").path
        var o = PackOptions()
        o.level = 0
        #expect(throws: SmolError.self) { _ = try SmolPack.pack(input: input, output: dir.appendingPathComponent("x").path, options: o) }
        #expect(throws: SmolError.self) { _ = try SmolPack.pack(input: input, output: input) }
        let packed = dir.appendingPathComponent("p.smolpack").path
        _ = try SmolPack.pack(input: input, output: packed)
        // Packing a pack, or unpacking onto the pack itself, is refused.
        #expect(throws: SmolError.self) { _ = try SmolPack.pack(input: packed, output: dir.appendingPathComponent("pp").path) }
        #expect(throws: SmolError.self) { _ = try SmolPack.unpack(input: packed, output: packed) }
        #expect(PackedCheckpoint.isPacked(packed))
    }
}

/// A small deterministic generator for test data.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
