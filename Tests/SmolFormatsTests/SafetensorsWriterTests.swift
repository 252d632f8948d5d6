import Foundation
import Testing
import SmolTensor
import SmolFormats
import SmolTestSupport

@Suite struct SafetensorsWriterTests {
    /// Files written by the Python crate (transformers, PEFT, the fixture scripts) are reproduced
    /// byte for byte when we write the same tensors and metadata in the crate's order.
    @Test func rewriteInLibraryOrderIsByteIdentical() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var compared = 0
        for file in Golden.files.members {
            let source = try SafetensorsFile(path: Golden.path(file.key))
            let out = dir.appendingPathComponent("out.safetensors").path
            try SafetensorsWriter.write(source.tensorInfos.map { SafetensorsTensor.from(source, $0) },
                                        metadata: source.metadataEntries?.map { ($0.key, $0.value) },
                                        to: out, order: .safetensorsLibrary, protecting: [source.path])
            let original = try Data(contentsOf: URL(fileURLWithPath: source.path))
            let written = try Data(contentsOf: URL(fileURLWithPath: out))
            #expect(byteDifference(original, written) == nil, "\(file.key)")
            compared += 1
        }
        #expect(compared == Golden.files.count)
    }

    /// Given order: the reader returns the same tensors in the same order with identical bytes.
    @Test(arguments: Fixtures.allHF.filter { $0 != "qwen3_moe_bf16_sharded" })
    func roundTripGivenOrder(arch: String) throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = try SafetensorsFile(path: Fixtures.hf(arch).appendingPathComponent("model.safetensors").path)
        let reversed = Array(source.tensorInfos.reversed())
        let out = dir.appendingPathComponent("model.safetensors").path
        try SafetensorsWriter.write(reversed.map { SafetensorsTensor.from(source, $0) },
                                    metadata: [("format", "pt"), ("written_by", "smolconv test ✓")], to: out)
        let back = try SafetensorsFile(path: out)
        #expect(back.tensorInfos == reversed)
        #expect(back.metadataEntries?.map(\.key) == ["format", "written_by"])
        #expect(back.metadata["written_by"] == "smolconv test ✓")
        #expect(back.headerSize % 8 == 0)
        for info in reversed {
            #expect(byteDifference(try back.tensorBytes(info.name).array, try source.tensorBytes(info.name).array) == nil)
        }
    }

    /// The shard split equals huggingface_hub's at several sizes (golden plans), the index says
    /// what transformers writes, and reading the shards back gives identical tensors.
    @Test func shardedRoundTripFollowsHuggingfaceHub() throws {
        let plans = try #require(Golden.json["shard_plans"]?.objectValue)
        let source = try SafetensorsFile(path: Golden.path(try #require(plans["source"]?.stringValue)))
        let order = try #require(plans["order"]?.arrayValue).map { $0.stringValue ?? "" }
        #expect(source.tensorInfos.map(\.name) == order)
        for plan in try #require(plans["plans"]?.objectValue).members {
            let maxSize = try #require(Int(plan.key))
            let expected = try #require(plan.value.objectValue?["filename_to_tensors"]?.objectValue)
            let dir = Fixtures.temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: dir) }
            let written = try SafetensorsWriter.writeSharded(source.tensorInfos.map { SafetensorsTensor.from(source, $0) },
                                                             to: dir.path, maxShardSize: maxSize,
                                                             order: .safetensorsLibrary)
            #expect(written.map { URL(fileURLWithPath: $0).lastPathComponent }
                    == expected.keys + (expected.count > 1 ? ["model.safetensors.index.json"] : []), "max \(maxSize)")
            let ck = try SafetensorsCheckpoint(path: dir.path)
            #expect(ck.isSharded == (expected.count > 1))
            for m in expected.members {
                let names = try #require(m.value.arrayValue).map { $0.stringValue ?? "" }
                for n in names {
                    #expect(URL(fileURLWithPath: try ck.shard(of: n).path).lastPathComponent == m.key, "max \(maxSize) \(n)")
                    #expect(byteDifference(try ck.tensorBytes(n).array, try source.tensorBytes(n).array) == nil)
                }
            }
            #expect(Set(ck.tensorInfos) == Set(source.tensorInfos))
            if expected.count > 1 {
                let total = plan.value.objectValue?["metadata"]?.objectValue?["total_size"]?.intValue
                #expect(ck.indexMetadata["total_size"]?.intValue == total)
                #expect(ck.indexMetadata["total_parameters"]?.intValue == source.tensorInfos.reduce(0) { $0 + $1.elementCount })
            }
            // No temporary files left behind.
            let left = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains(".tmp-") }
            #expect(left.isEmpty)
        }
    }

    /// Re-sharding the 5-shard fixture by its own weight_map reproduces each shard byte for byte.
    @Test func fixtureShardsRewriteIdentically() throws {
        let ck = try SafetensorsCheckpoint(path: Fixtures.hf("qwen3_moe_bf16_sharded").path)
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        for shard in ck.shards {
            let out = dir.appendingPathComponent("shard.safetensors").path
            try SafetensorsWriter.write(shard.tensorInfos.map { SafetensorsTensor.from(ck, $0) }, to: out,
                                        order: .safetensorsLibrary)
            #expect(byteDifference(try Data(contentsOf: URL(fileURLWithPath: out)),
                                   try Data(contentsOf: URL(fileURLWithPath: shard.path))) == nil, "\(shard.path)")
        }
    }

    @Test func refusesBlockTypesAndWrongSizes() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("x.safetensors").path
        let q = TensorInfo(name: "w", type: .block(.q4_K), shape: [2, 256])
        let e1 = #expect(throws: SmolError.self) {
            try SafetensorsWriter.write([SafetensorsTensor(q) { TensorBytes([UInt8](repeating: 0, count: 288)) }], to: out)
        }
        #expect(e1?.kind == .unsupported)
        #expect(e1?.description.contains("Q4_K is a ggml block-quantized type") == true)

        let f = TensorInfo(name: "v", type: .dense(.f32), shape: [3])
        let e2 = #expect(throws: SmolError.self) {
            try SafetensorsWriter.write([SafetensorsTensor(f) { TensorBytes([UInt8](repeating: 0, count: 8)) }], to: out)
        }
        #expect(e2?.kind == .mismatch)
        #expect(e2?.description.contains("producer returned 8 bytes") == true)

        let e3 = #expect(throws: SmolError.self) {
            try SafetensorsWriter.write([SafetensorsTensor(f) { TensorBytes(elements: [Float](repeating: 0, count: 3)) },
                                         SafetensorsTensor(f) { TensorBytes(elements: [Float](repeating: 0, count: 3)) }], to: out)
        }
        #expect(e3?.description.contains("duplicate tensor name") == true)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }

    /// Streaming: each producer runs once, in write order, after the header is decided.
    @Test func producersRunOncePerTensorInOrder() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        final class Log: @unchecked Sendable { var calls: [String] = [] }
        let log = Log()
        let infos = [TensorInfo(name: "b", type: .dense(.u8), shape: [3]),
                     TensorInfo(name: "a", type: .dense(.f64), shape: [1]),
                     TensorInfo(name: "c", type: .dense(.bool), shape: [])]
        let tensors = infos.map { info in
            SafetensorsTensor(info) { log.calls.append(info.name); return TensorBytes([UInt8](repeating: 1, count: info.byteCount)) }
        }
        let out = dir.appendingPathComponent("s.safetensors").path
        try SafetensorsWriter.write(tensors, metadata: nil, to: out, order: .safetensorsLibrary)
        #expect(log.calls == ["a", "b", "c"])  // F64 before U8 before BOOL, as the crate orders them
        let back = try SafetensorsFile(path: out)
        #expect(back.metadataEntries == nil)
        #expect(back.tensorInfos.map(\.name) == ["a", "b", "c"])
        #expect(back.info("c")?.shape == [])
    }
}
