import Foundation
import Testing
import SmolTensor
import SmolFormats
import SmolTestSupport

/// `meta.json`'s `checkpoint_tensors`: name → [file, dtype, shape], written by the fixture
/// generator from what transformers saved (an outside reference for names, dtypes and shapes).
func checkpointTensors(_ arch: String) throws -> [String: (file: String, dtype: String, shape: [Int])] {
    let meta = try JSONParser.parse(contentsOf: Fixtures.hf(arch).appendingPathComponent("meta.json").path)
    let tensors = try #require(meta.objectValue?["checkpoint_tensors"]?.objectValue)
    var out: [String: (file: String, dtype: String, shape: [Int])] = [:]
    for m in tensors.members {
        let a = try #require(m.value.arrayValue)
        try #require(a.count == 3)
        out[m.key] = (try #require(a[0].stringValue), try #require(a[1].stringValue),
                      try #require(a[2].arrayValue).map { $0.intValue ?? -1 })
    }
    return out
}

@Suite struct SafetensorsReaderTests {
    @Test(arguments: Fixtures.allHF.filter { $0 != "qwen3_moe_bf16_sharded" })
    func singleFileMatchesMeta(arch: String) throws {
        let expected = try checkpointTensors(arch)
        let f = try SafetensorsFile(path: Fixtures.hf(arch).appendingPathComponent("model.safetensors").path)
        #expect(f.tensorInfos.count == expected.count)
        #expect(f.metadata == ["format": "pt"])
        for info in f.tensorInfos {
            let e = try #require(expected[info.name], "\(arch): unexpected tensor \(info.name)")
            #expect(e.file == "model.safetensors")
            #expect(info.type.name == e.dtype, "\(arch) \(info.name)")
            #expect(info.shape == e.shape, "\(arch) \(info.name)")
            #expect(try f.tensorBytes(info.name).count == info.byteCount)
        }
        // Data-offset order, contiguous from the data section start.
        var cursor = f.dataSectionOffset
        for info in f.tensorInfos {
            #expect(try f.dataOffset(of: info.name) == cursor)
            cursor += info.byteCount
        }
        #expect(cursor == f.file.size)
    }
}
