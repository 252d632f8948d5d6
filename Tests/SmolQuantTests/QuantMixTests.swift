import Testing
import SmolFormats
import SmolQuant
import SmolTensor
import SmolTestSupport

/// llama-quantize's type choice, checked against llama.cpp's own outputs on the real Gemma 3 270M:
/// the shipped Q4_K_M file's per-tensor types, and the file sizes llama-quantize produced for each
/// mix (shared/references/README.md, measured with llama.cpp commit 0c1e57098).
@Suite struct QuantMixTests {
    static let referenceFileBytes: [QuantMix: Int] = [
        .q8_0: 291_543_744, .q6_K: 282_972_864, .q4_K_M: 253_113_024, .q4_0: 241_408_704, .q2_K: 237_077_184,
    ]

    static func realModel() throws -> GGUFFile? {
        guard let url = Fixtures.realModel else {
            print("skipped: run tools/setup to install the real model")
            return nil
        }
        return try GGUFFile(path: url.path)
    }

    static func facts(_ g: GGUFFile) -> QuantModelFacts {
        QuantModelFacts(layerCount: g.metadata.int("gemma3.block_count")!, headCount: g.metadata.int("gemma3.attention.head_count")!,
                        headCountKV: g.metadata.int("gemma3.attention.head_count_kv")!, architecture: "gemma3")
    }

    /// The model as its F32 base: every tensor F32, as llama-quantize saw it.
    static func f32Tensors(_ g: GGUFFile) -> [(name: String, type: GGMLType, shape: [Int])] {
        g.tensors.map { ($0.name, GGMLType.f32, $0.shape) }
    }

    @Test func q4KMChoosesExactlyTheShippedTypes() throws {
        guard let g = try Self.realModel() else { return }
        let plan = try QuantMixPlanner.plan(Self.f32Tensors(g), mix: .q4_K_M, facts: Self.facts(g))
        for (choice, t) in zip(plan, g.tensors) {
            #expect(choice.type == t.ggmlType, "\(t.name): chose \(choice.type.name), llama.cpp wrote \(t.ggmlType.name)")
        }
        // The 640-wide rows cannot hold k-quant blocks: those tensors fell back.
        #expect(plan.contains { $0.fallbackFrom == .q6_K && $0.type == .q8_0 })
        #expect(plan.contains { $0.fallbackFrom == .q4_K && $0.type == .q5_0 })
    }

    @Test(arguments: [QuantMix.q8_0, .q6_K, .q4_K_M, .q4_0, .q2_K])
    func fileSizeEqualsLlamaQuantize(_ mix: QuantMix) throws {
        guard let g = try Self.realModel() else { return }
        let plan = try QuantMixPlanner.plan(Self.f32Tensors(g), mix: mix, facts: Self.facts(g))
        // llama-quantize copies the metadata, then sets these two keys (removed and appended).
        var meta = g.metadata
        meta["general.quantization_version"] = nil
        meta["general.file_type"] = nil
        meta["general.quantization_version"] = .uint32(2)
        meta["general.file_type"] = .uint32(UInt32(mix.fileType))
        let layout = try GGUFWriter.layout(metadata: meta, tensors: zip(plan, g.tensors).map { ($1.name, $0.type, $1.shape) })
        #expect(layout.fileSize == Self.referenceFileBytes[mix], "\(mix.rawValue)")
    }

    @Test func normsRoutersAndVectorsAreNeverQuantized() throws {
        let tensors: [(name: String, type: GGMLType, shape: [Int])] = [
            ("blk.0.attn_norm.weight", .f32, [64]), ("blk.0.ffn_gate_inp.weight", .f32, [8, 64]),
            ("blk.0.attn_q.bias", .f32, [64]), ("blk.0.attn_q.weight", .f32, [64, 256]), ("output.weight", .f32, [512, 256]),
        ]
        let plan = try QuantMixPlanner.plan(tensors, mix: .q4_0, facts: QuantModelFacts(layerCount: 1, headCount: 4, headCountKV: 4, architecture: "llama"))
        #expect(plan.map(\.quantize) == [false, false, false, true, true])
        #expect(plan[3].type == .q4_0)
        #expect(plan[4].type == .q6_K) // the output tensor gets Q6_K in the simple mixes, as in llama.cpp
    }

    @Test func overridesApplyAsInLlamaQuantize() throws {
        let tensors: [(name: String, type: GGMLType, shape: [Int])] = [
            ("token_embd.weight", .f32, [512, 256]), ("blk.0.attn_q.weight", .f32, [256, 256]),
            ("blk.0.ffn_up.weight", .f32, [512, 256]), ("output.weight", .f32, [512, 256]),
        ]
        var o = QuantOverrides()
        o.tensorTypes = [("ffn_up", .q8_0), ("attn_q", .q5_K)]
        o.tokenEmbeddingType = .q4_K
        o.outputTensorType = .f16
        let facts = QuantModelFacts(layerCount: 1, headCount: 4, headCountKV: 4, architecture: "llama")
        let plan = try QuantMixPlanner.plan(tensors, mix: .q4_K_M, facts: facts, overrides: o)
        #expect(plan.map(\.type) == [.q4_K, .q5_K, .q8_0, .f16])
        var pure = QuantOverrides()
        pure.pure = true
        #expect(try QuantMixPlanner.plan(tensors, mix: .q4_K_M, facts: facts, overrides: pure).map(\.type) == [.q4_K, .q4_K, .q4_K, .q4_K])
    }
}
