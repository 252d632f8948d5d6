import Foundation
import SmolFormats
import SmolTensor
import SmolTestSupport
import Testing

@Suite("GGUF reader")
struct GGUFReaderTests {
    /// The real Gemma 3 270M Q4_K_M against gguf-py's view of it (Tests/Fixtures/gguf/gemma3-270m-layout.json).
    @Test func realModelMatchesGGUFPy() throws {
        guard let url = Fixtures.realModel else {
            print("skipped: the real model is not installed (run tools/setup)")
            return
        }
        let golden = try GGUFGolden.load("gemma3-270m-layout.json")
        let clock = ContinuousClock()
        let start = clock.now
        let f = try GGUFFile(path: url.path)
        print("GGUF: parsed the real model's header in \(clock.now - start)")

        #expect(f.version == 3)
        #expect(f.alignment == 32)
        #expect(f.dataOffset == GGUFGolden.int(golden["data_offset"]))
        #expect(f.fileSize == GGUFGolden.int(golden["file_bytes"]))
        #expect(try GGUFGolden.tensorMismatch(f, golden["tensors"] as! [[String: Any]]) == nil)

        let goldenMeta = golden["metadata"] as! [[String: Any]]
        #expect(f.metadata.keys == goldenMeta.map { $0["key"] as! String })
        for g in goldenMeta {
            let key = g["key"] as! String
            #expect(GGUFGolden.mismatch(f.metadata[key], g, path: key) == nil)
        }
    }

    /// The figures in shared/references/README.md (llama.cpp's view of the model).
    @Test func realModelFacts() throws {
        guard let url = Fixtures.realModel else {
            print("skipped: the real model is not installed (run tools/setup)")
            return
        }
        let f = try GGUFFile(path: url.path)
        #expect(f.tensors.count == 236)
        var histogram: [String: Int] = [:]
        for t in f.tensors { histogram[t.ggmlType.name, default: 0] += 1 }
        #expect(histogram == ["F32": 109, "Q5_0": 81, "Q4_K": 27, "Q8_0": 10, "Q6_K": 9])
        #expect(f.tensor("output.weight") == nil)  // tied output
        #expect(f.tensor("token_embd.weight")?.shape == [262_144, 640])
        #expect(f.tensor("token_embd.weight")?.ne == [640, 262_144])

        let m = f.metadata
        #expect(m.string("general.architecture") == "gemma3")
        #expect(m.int("gemma3.block_count") == 18)
        #expect(m.int("gemma3.embedding_length") == 640)
        #expect(m.int("gemma3.feed_forward_length") == 2048)
        #expect(m.int("gemma3.attention.head_count") == 4)
        #expect(m.int("gemma3.attention.head_count_kv") == 1)
        #expect(m.int("gemma3.attention.key_length") == 256)
        #expect(m.int("gemma3.attention.value_length") == 256)
        #expect(m.int("gemma3.attention.sliding_window") == 512)
        #expect(m.float("gemma3.rope.freq_base") == 1e6)
        #expect(m.float("gemma3.attention.layer_norm_rms_epsilon") == Float(1e-6))
        #expect(m.string("tokenizer.ggml.model") == "llama")
        #expect(m.bool("tokenizer.ggml.add_bos_token") == true)
        #expect(m.int("general.file_type") == 15)
        #expect(m.stringArray("tokenizer.ggml.tokens")?.count == 262_144)
        #expect(m.floatArray("tokenizer.ggml.scores")?.count == 262_144)
        #expect(m.intArray("tokenizer.ggml.token_type")?.count == 262_144)
        // Wrong-type accessors answer nil rather than converting.
        #expect(m.string("gemma3.block_count") == nil)
        #expect(m.int("general.architecture") == nil)
        #expect(m.floatArray("tokenizer.ggml.tokens") == nil)
    }

    /// Every value type, arrays of each, nested arrays, several tensor types, alignment 64: a file
    /// written by gguf.GGUFWriter.
    @Test func allTypesWrittenByGGUFPy() throws {
        try checkAgainstGolden(gguf: "all-types.gguf", json: "all-types.json", alignment: 64)
    }

    /// A version-2 file built from the spec and read back by gguf.GGUFReader.
    @Test func version2() throws {
        let f = try checkAgainstGolden(gguf: "v2.gguf", json: "v2.json", alignment: 32)
        #expect(f.version == 2)
        #expect(f.metadata.stringArray("tokenizer.ggml.tokens") == ["<unk>", "<s>", "▁a"])
    }

    @discardableResult
    func checkAgainstGolden(gguf: String, json: String, alignment: Int) throws -> GGUFFile {
        let golden = try GGUFGolden.load(json)
        let f = try GGUFFile(path: GGUFGolden.dir.appendingPathComponent(gguf).path)
        #expect(f.version == UInt32(GGUFGolden.int(golden["version"]) ?? -1))
        #expect(f.alignment == alignment)
        #expect(f.dataOffset == GGUFGolden.int(golden["data_offset"]))
        let goldenMeta = golden["metadata"] as! [[String: Any]]
        #expect(f.metadata.keys == goldenMeta.map { $0["key"] as! String })
        for g in goldenMeta {
            let key = g["key"] as! String
            #expect(GGUFGolden.mismatch(f.metadata[key], g, path: key) == nil)
        }
        #expect(try GGUFGolden.tensorMismatch(f, golden["tensors"] as! [[String: Any]]) == nil)
        return f
    }

    @Test func accessorsConvertIntegerTypes() throws {
        let f = try GGUFFile(path: GGUFGolden.dir.appendingPathComponent("all-types.gguf").path)
        let m = f.metadata
        #expect(m.int("t.uint8") == 255)
        #expect(m.int("t.int64") == Int.min)
        #expect(m.int("t.uint64") == nil)  // 2^64 - 1 does not fit in Int
        #expect(m.double("t.float64") == Double.pi)
        #expect(m.float("t.float32") == 1.5)
        #expect(m.intArray("a.int8") == [-128, -1, 0, 127])
        #expect(m.intArray("a.uint64") == nil)
        #expect(m.floatArray("a.float64")?.count == 3)
        #expect(m.stringArray("a.string") == ["", "a", "ñ", "<start_of_turn>", "▁the"])
        #expect(m.array("n.int32") == .array([.int32([1, 2, 3]), .int32([4, 5])]))
        #expect(m["missing"] == nil && m.int("missing") == nil)
    }
}
