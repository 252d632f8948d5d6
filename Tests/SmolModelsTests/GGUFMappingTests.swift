import Foundation
import Testing
import SmolTensor
import SmolFormats
import SmolModels
import SmolTestSupport

/// Tests/Fixtures/gguf-names/<fixture>.json, written by tools/golden_gguf_names.py from gguf-py's
/// TensorNameMap (and numpy for the permutation order).
struct GoldenNames {
    let architecture: String
    let names: [String: String?]
    let qRowOrder: [Int]?
    let kRowOrder: [Int]?

    init(_ fixture: String) throws {
        let url = Fixtures.root.appendingPathComponent("gguf-names/\(fixture).json")
        let o = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        architecture = o["architecture"] as! String
        var n: [String: String?] = [:]
        for (k, v) in o["names"] as! [String: Any] { n[k] = v as? String }
        names = n
        qRowOrder = (o["q_row_order"] as? [NSNumber])?.map(\.intValue)
        kRowOrder = (o["k_row_order"] as? [NSNumber])?.map(\.intValue)
    }
}

@Suite struct GGUFMappingTests {
    static let dense = ["llama", "smollm3", "qwen3", "gemma2", "gemma3"]

    func load(_ fixture: String) throws -> (ModelConfig, GGUFArchitectureMapping, SafetensorsFile) {
        let config = try ModelConfig.load(folder: Fixtures.hf(fixture))
        let mapping = try #require(GGUFArchitectureMapping.forModelType(config.modelType))
        let st = try SafetensorsFile(path: Fixtures.hf(fixture).appendingPathComponent("model.safetensors").path)
        return (config, mapping, st)
    }

    @Test(arguments: dense)
    func namesMatchGGUFPyAndAreABijection(fixture: String) throws {
        let (_, mapping, st) = try load(fixture)
        let golden = try GoldenNames(fixture)
        #expect(mapping.ggufArchitecture == golden.architecture)
        #expect(Set(st.names) == Set(golden.names.keys))
        var seen = Set<String>()
        for name in st.names {
            let expected = golden.names[name]!
            let got = mapping.ggufName(hf: name)
            #expect(got == expected, "\(fixture): \(name)")
            if let got {
                #expect(seen.insert(got).inserted, "\(fixture): two tensors map to \(got)")
                #expect(mapping.hfName(gguf: got) == name, "\(fixture): \(got) does not map back")
            }
        }
        #expect(GGUFArchitectureMapping.forGGUFArchitecture(golden.architecture)?.modelType == mapping.modelType)
    }

    @Test func unknownNamesMapToNil() throws {
        let m = try #require(GGUFArchitectureMapping.forModelType("llama"))
        for bad in ["model.layers.x.mlp.up_proj.weight", "model.layers.01.mlp.up_proj.weight", "model.layers.0.mlp.up_proj",
                    "model.layers.0.self_attn.q_norm.weight", "model.layers.-1.mlp.up_proj.weight", "rotary.inv_freq"] {
            #expect(m.ggufName(hf: bad) == nil, "\(bad)")
        }
        for bad in ["blk.0.attn_q_norm.weight", "rope_freqs.weight", "blk..attn_q.weight", "blk.0.attn_q"] {
            #expect(m.hfName(gguf: bad) == nil, "\(bad)")
        }
        #expect(GGUFArchitectureMapping.forModelType("gemma2")?.hfName(gguf: "output.weight") == nil)
    }

    func floats(_ st: SafetensorsFile, _ name: String) throws -> ([Float], [Int]) {
        let info = try #require(st.info(name))
        #expect(info.type == .dense(.f32))
        let bytes = try st.tensorBytes(name)
        let values = bytes.withUnsafeBytes { raw in (0..<info.elementCount).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } }
        return (values, info.shape)
    }

    /// The permutation moves whole rows in the order numpy computes for `LlamaModel.permute`, and
    /// the inverse restores every bit.
    @Test(arguments: ["llama", "smollm3"])
    func qkPermutationMatchesConverterAndInverts(fixture: String) throws {
        let (config, mapping, st) = try load(fixture)
        let golden = try GoldenNames(fixture)
        for name in st.names where name.contains("self_attn.q_proj") || name.contains("self_attn.k_proj") {
            let order = try #require(name.contains("q_proj") ? golden.qRowOrder : golden.kRowOrder)
            let (original, shape) = try floats(st, name)
            var v = original
            try mapping.toGGUF(hf: name, values: &v, shape: shape, config: config)
            let cols = shape.count == 2 ? shape[1] : 1
            #expect(order.count == shape[0])
            for (row, src) in order.enumerated() {
                #expect(Array(v[row * cols..<(row + 1) * cols]).map(\.bitPattern) == Array(original[src * cols..<(src + 1) * cols]).map(\.bitPattern))
            }
            #expect(v != original)
            let gguf = try #require(mapping.ggufName(hf: name))
            try mapping.fromGGUF(gguf: gguf, values: &v, shape: shape, config: config)
            #expect(v.map(\.bitPattern) == original.map(\.bitPattern), "\(fixture): \(name)")
        }
    }

    @Test func transformsPerArchitecture() throws {
        for fixture in Self.dense {
            let (config, mapping, st) = try load(fixture)
            for name in st.names {
                let t = mapping.transform(hf: name, config: config)
                switch config.modelType {
                case "llama", "smollm3":
                    if name.hasSuffix("q_proj.weight") { #expect(t == .ropePermute(heads: config.numAttentionHeads)) }
                    else if name.hasSuffix("k_proj.weight") { #expect(t == .ropePermute(heads: config.numKeyValueHeads)) }
                    else { #expect(t == .none) }
                case "gemma2", "gemma3_text":
                    #expect(t == (name.hasSuffix("norm.weight") ? .addOne : .none), "\(name)")
                default:
                    #expect(t == .none)
                }
            }
        }
    }

    /// gemma norms: GGUF holds 1 + w; for F16 checkpoints the sum is rounded to F16 first.
    @Test func gemmaNormShift() throws {
        let (config, mapping, st) = try load("gemma3")
        let (original, shape) = try floats(st, "model.layers.0.self_attn.q_norm.weight")
        var v = original
        try mapping.toGGUF(hf: "model.layers.0.self_attn.q_norm.weight", values: &v, shape: shape, config: config)
        #expect(v == original.map { $0 + 1 })
        var h: [Float] = [0.1]
        try mapping.toGGUF(hf: "model.norm.weight", values: &h, shape: [1], config: config, sourceDType: .f16)
        #expect(h == [FloatBits.f16ToF32(FloatBits.f32ToF16(1.1))])
        var w = v
        try mapping.fromGGUF(gguf: "blk.0.attn_q_norm.weight", values: &w, shape: shape, config: config)
        for (a, b) in zip(w, original) { #expect(abs(a - b) <= Float.ulpOfOne * 2) }
    }

    @Test func storageTypes() {
        #expect(GGUFArchitectureMapping.keepsF32(gguf: "blk.0.attn_norm.weight", shape: [64]))
        #expect(GGUFArchitectureMapping.keepsF32(gguf: "blk.0.attn_q.bias", shape: [64]))
        #expect(GGUFArchitectureMapping.keepsF32(gguf: "blk.3.ffn_gate_inp.weight", shape: [8, 64]))
        #expect(!GGUFArchitectureMapping.keepsF32(gguf: "blk.0.attn_q.weight", shape: [64, 64]))
        #expect(!GGUFArchitectureMapping.keepsF32(gguf: "token_embd.weight", shape: [512, 64]))
    }
}

@Suite struct GGUFMetadataMappingTests {
    /// The real Gemma 3 270M Q4_K_M GGUF (llama.cpp's converter): its metadata types as gemma3 with
    /// the published shape, and llama.cpp's defaults fill what the file leaves out (SWA base 1e4,
    /// window pattern 6).
    @Test func realModelConfig() throws {
        guard let url = Fixtures.realModel else { return }
        let gguf = try GGUFFile(path: url.path)
        let m = try ModelConfig(gguf: gguf)
        #expect(m.modelType == "gemma3_text")
        #expect(m.numHiddenLayers == 18)
        #expect(m.hiddenSize == 640)
        #expect(m.intermediateSize == 2048)
        #expect(m.numAttentionHeads == 4)
        #expect(m.numKeyValueHeads == 1)
        #expect(m.headDim == 256)
        #expect(m.slidingWindow == 512)
        #expect(m.rope[.full]?.theta == 1_000_000)
        #expect(m.rope[.sliding]?.theta == 10_000)
        #expect(m.rmsNormEps == 1e-6)
        #expect(m.vocabSize == 262_144)
        #expect(m.maxPositionEmbeddings == 32_768)
        #expect(m.tieWordEmbeddings)
        #expect(m.queryPreAttnScalar == 256)
        #expect(m.bosTokenId == 2 && m.eosTokenIds == [1] && m.padTokenId == 0)
        #expect((0..<18).filter { !m.isSlidingLayer($0) } == [5, 11, 17])
        #expect((0..<18).map { m.ropeBase($0) } == (0..<18).map { ($0 + 1) % 6 == 0 ? 1e6 : 1e4 })
    }

    /// Writing the metadata back from that config reproduces every architecture key of the real
    /// file with the same type and value (the current converter also writes rope.freq_base_swa,
    /// which the older one that made this file did not).
    @Test func realModelMetadataRoundTrip() throws {
        guard let url = Fixtures.realModel else { return }
        let gguf = try GGUFFile(path: url.path)
        let mapping = try #require(GGUFArchitectureMapping.forGGUFArchitecture("gemma3"))
        let ours = mapping.metadata(from: try ModelConfig(gguf: gguf))
        let theirs = gguf.metadata.filter { $0.key.hasPrefix("gemma3.") }
        #expect(!theirs.isEmpty)
        for (key, value) in theirs {
            #expect(ours[key] == value, "\(key): ours \(String(describing: ours[key])), file \(value)")
        }
        #expect(Set(ours.keys).subtracting(theirs.map(\.key)) == ["general.architecture", "gemma3.rope.freq_base_swa"])
        #expect(ours["gemma3.rope.freq_base_swa"] == .float32(10_000))
    }

    /// config → GGUF metadata → config keeps every fact the engine uses, for each dense fixture.
    @Test(arguments: ["llama", "smollm3", "qwen3", "gemma2", "gemma3"])
    func fixtureConfigRoundTripsThroughMetadata(fixture: String) throws {
        let original = try ModelConfig.load(folder: Fixtures.hf(fixture))
        let mapping = try #require(GGUFArchitectureMapping.forModelType(original.modelType))
        let meta = mapping.metadata(from: original, fileType: 0)
        #expect(meta.string("general.architecture") == mapping.ggufArchitecture)
        #expect(meta.int("general.file_type") == 0)
        let json = try mapping.config(from: meta, hasOutputTensor: !original.tieWordEmbeddings, vocabSize: original.vocabSize)
        let back = try ModelConfig(json: json)
        #expect(back.modelType == original.modelType)
        #expect(back.vocabSize == original.vocabSize)
        #expect(back.hiddenSize == original.hiddenSize)
        #expect(back.intermediateSize == original.intermediateSize)
        #expect(back.numHiddenLayers == original.numHiddenLayers)
        #expect(back.numAttentionHeads == original.numAttentionHeads)
        #expect(back.numKeyValueHeads == original.numKeyValueHeads)
        #expect(back.headDim == original.headDim)
        #expect(back.rmsNormEps == original.rmsNormEps)
        #expect(back.maxPositionEmbeddings == original.maxPositionEmbeddings)
        #expect(back.tieWordEmbeddings == original.tieWordEmbeddings)
        #expect(back.layerTypes == original.layerTypes)
        #expect(back.slidingWindow == original.slidingWindow)
        #expect(back.ropeLayers == original.ropeLayers)
        for kind in AttentionKind.allCases { #expect(back.rope[kind]?.theta == original.rope[kind]?.theta) }
        #expect(back.attnLogitSoftcapping == original.attnLogitSoftcapping)
        #expect(back.finalLogitSoftcapping == original.finalLogitSoftcapping)
        #expect(back.queryPreAttnScalar == original.queryPreAttnScalar)
        // The generated config.json is itself valid JSON text that parses back the same.
        let text = JSONWriter.python(json)
        #expect(JSONWriter.python(try JSONParser.parse(text)) == text)
    }

    /// Every tensor of the real GGUF maps to an HF name and back, and what `keepsF32` says stays F32
    /// is F32 there (llama-quantize keeps the same tensors F32 as the converter).
    @Test func realModelTensorNames() throws {
        guard let url = Fixtures.realModel else { return }
        let gguf = try GGUFFile(path: url.path)
        let m = try #require(GGUFArchitectureMapping.forGGUFArchitecture("gemma3"))
        #expect(gguf.tensors.count == 236)
        for t in gguf.tensors {
            let hf = try #require(m.hfName(gguf: t.name), "\(t.name)")
            #expect(m.ggufName(hf: hf) == t.name)
            #expect(GGUFArchitectureMapping.keepsF32(gguf: t.name, shape: t.shape) == (t.ggmlType == .f32), "\(t.name)")
        }
    }

    @Test func wrongArchitectureAndMissingKeysThrow() throws {
        let mapping = try #require(GGUFArchitectureMapping.forModelType("llama"))
        var meta = GGUFMetadata([("general.architecture", .string("qwen3"))])
        #expect(throws: SmolError.self) { try mapping.config(from: meta, hasOutputTensor: true, vocabSize: 8) }
        meta["general.architecture"] = .string("llama")
        meta["llama.block_count"] = .uint32(2)
        do {
            _ = try mapping.config(from: meta, hasOutputTensor: true, vocabSize: 8, file: "m.gguf")
            Issue.record("expected an error")
        } catch let e as SmolError {
            #expect(e.description.contains("m.gguf") && e.description.contains("llama.embedding_length"))
        }
    }
}
