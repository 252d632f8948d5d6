import Foundation
import Testing
import SmolTensor
import SmolFormats
import SmolTestSupport

/// zlib's CRC-32 (polynomial 0xEDB88320), to compare tensor bytes with the golden file's
/// `zlib.crc32` values without storing the bytes.
func crc32(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
    var table = [UInt32](repeating: 0, count: 256)
    for i in 0..<256 {
        var c = UInt32(i)
        for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        table[i] = c
    }
    var crc: UInt32 = 0xFFFF_FFFF
    for b in bytes { crc = table[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
    return crc ^ 0xFFFF_FFFF
}

/// nil when equal, else where they differ. Tests compare bytes through this rather than `#expect(a == b)`
/// on arrays: on failure Swift Testing diffs the two collections, which takes minutes for a 500 KB file.
func byteDifference<A: Collection<UInt8>, B: Collection<UInt8>>(_ a: A, _ b: B) -> String? {
    if a.elementsEqual(b) { return nil }
    if a.count != b.count { return "sizes differ: \(a.count) vs \(b.count) bytes" }
    let i = zip(a, b).enumerated().first { $0.element.0 != $0.element.1 }!.offset
    return "first difference at byte \(i)"
}

func hex(_ bytes: UnsafeRawBufferPointer) -> String {
    bytes.map { String(format: "%02x", $0) }.joined()
}

/// Tests/Fixtures/safetensors/golden.json, written by tools/golden_safetensors.py with Python
/// safetensors 0.8.0 (and huggingface_hub for the shard plans).
enum Golden {
    static let json: JSONObject = {
        let path = Fixtures.root.appendingPathComponent("safetensors/golden.json").path
        return (try! JSONParser.parse(contentsOf: path)).objectValue!
    }()
    static var files: JSONObject { json["files"]!.objectValue! }
    static func path(_ relative: String) -> String { Fixtures.root.appendingPathComponent(relative).path }
}

@Suite struct SafetensorsGoldenTests {
    /// Every tensor of every fixture: name, dtype, shape, offsets and a CRC of its bytes as Python
    /// safetensors read them, plus the first/last element bytes of a few tensors.
    @Test func everyFixtureMatchesPythonSafetensors() throws {
        #expect(Golden.files.count >= 60)
        for file in Golden.files.members {
            let g = try #require(file.value.objectValue)
            let f = try SafetensorsFile(path: Golden.path(file.key))
            #expect(f.headerSize == g["header_size"]?.intValue, "\(file.key)")
            #expect(f.tensorInfos.count == g["tensor_count"]?.intValue, "\(file.key)")
            if let meta = g["metadata"]?.objectValue {
                let entries = try #require(f.metadataEntries, "\(file.key)")
                #expect(entries.map(\.key) == meta.keys)
                #expect(entries.map(\.value) == meta.members.map { $0.value.stringValue ?? "?" })
            } else {
                #expect(f.metadataEntries == nil, "\(file.key)")
            }
            if let tensors = g["tensors"]?.arrayValue {
                #expect(tensors.count == f.tensorInfos.count)
                for (t, info) in zip(tensors, f.tensorInfos) {
                    let a = try #require(t.arrayValue)
                    #expect(info.name == a[0].stringValue, "\(file.key)")
                    #expect(info.type.name == a[1].stringValue, "\(file.key) \(info.name)")
                    #expect(info.shape == a[2].arrayValue?.map { $0.intValue ?? -1 }, "\(file.key) \(info.name)")
                    let (b, e) = try f.dataOffsets(of: info.name)
                    #expect(b == a[3].intValue && e == a[4].intValue, "\(file.key) \(info.name)")
                    let crc = try f.tensorBytes(info.name).withUnsafeBytes { crc32($0) }
                    #expect(Int(crc) == a[5].intValue, "\(file.key) \(info.name)")
                }
            }
            for s in try #require(g["samples"]?.objectValue).members {
                let bytes = try f.tensorBytes(s.key)
                let size = try #require(f.info(s.key)).type.blockLayout.bytes
                bytes.withUnsafeBytes { buf in
                    #expect(hex(UnsafeRawBufferPointer(rebasing: buf[0..<size])) == s.value.objectValue?["first"]?.stringValue,
                            "\(file.key) \(s.key)")
                    #expect(hex(UnsafeRawBufferPointer(rebasing: buf[(buf.count - size)...])) == s.value.objectValue?["last"]?.stringValue,
                            "\(file.key) \(s.key)")
                }
            }
        }
    }

    /// The 5-shard checkpoint through its index, against meta.json (shard file, dtype, shape).
    @Test func shardedCheckpointMatchesMeta() throws {
        let arch = "qwen3_moe_bf16_sharded"
        let expected = try checkpointTensors(arch)
        let ck = try SafetensorsCheckpoint(path: Fixtures.hf(arch).path)
        #expect(ck.isSharded)
        #expect(ck.shards.count == 5)
        #expect(ck.indexMetadata["total_size"]?.intValue == ck.tensorInfos.reduce(0) { $0 + $1.byteCount })
        #expect(ck.tensorInfos.count == expected.count)
        for info in ck.tensorInfos {
            let e = try #require(expected[info.name])
            #expect(URL(fileURLWithPath: try ck.shard(of: info.name).path).lastPathComponent == e.file)
            #expect(info.type.name == e.dtype && info.shape == e.shape, "\(info.name)")
            let direct = try SafetensorsFile(path: Fixtures.hf(arch).appendingPathComponent(e.file).path)
            #expect(byteDifference(try ck.tensorBytes(info.name).array, try direct.tensorBytes(info.name).array) == nil)
        }
        // The index path itself opens the same checkpoint.
        let viaIndex = try SafetensorsCheckpoint(path: Fixtures.hf(arch).appendingPathComponent("model.safetensors.index.json").path)
        #expect(viaIndex.tensorInfos == ck.tensorInfos)
    }

    /// Folders (model.safetensors inside), including the MoE `trainable/` ones, agree with the golden listing.
    @Test func checkpointFoldersMatchGolden() throws {
        var folders = Fixtures.allHF.filter { $0 != "qwen3_moe_bf16_sharded" }.map { "hf/\($0)" }
        folders += ["mixtral", "olmoe", "qwen2_moe", "qwen3_moe", "qwen3_moe_bf16_sharded"].map { "hf/\($0)/trainable" }
        for folder in folders {
            let ck = try SafetensorsCheckpoint(path: Golden.path(folder))
            #expect(!ck.isSharded)
            let tensors = try #require(Golden.files["\(folder)/model.safetensors"]?.objectValue?["tensors"]?.arrayValue, "\(folder)")
            #expect(ck.tensorInfos.map(\.name) == tensors.map { $0.arrayValue?[0].stringValue ?? "" }, "\(folder)")
            #expect(ck.tensorInfos.map(\.type.name) == tensors.map { $0.arrayValue?[1].stringValue ?? "" }, "\(folder)")
            #expect(ck.tensorInfos.map(\.shape) == tensors.map { $0.arrayValue?[2].arrayValue?.map { $0.intValue ?? -1 } ?? [] }, "\(folder)")
        }
    }

    /// transformers writes the index with json.dumps(indent=2, sort_keys=True) + "\n"; our Python-style
    /// writer reproduces the fixture's index byte for byte.
    @Test func indexJSONStyleMatchesTransformers() throws {
        let path = Fixtures.hf("qwen3_moe_bf16_sharded").appendingPathComponent("model.safetensors.index.json").path
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let parsed = try JSONParser.parse(contentsOf: path)
        #expect(JSONWriter.python(parsed) + "\n" == text)
    }
}
