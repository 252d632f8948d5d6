import Foundation
import Testing
import SmolFormats
import SmolModels
import SmolMoE
import SmolTensor
import SmolTestSupport

/// FNV-1a 64 over bytes: the checksum tools/golden_moe_gguf.py records for each expected tensor.
func fnv1a64(_ b: TensorBytes) -> String {
    var h: UInt64 = 0xcbf29ce484222325
    b.withUnsafeBytes { raw in for x in raw { h ^= UInt64(x); h = h &* 0x100000001b3 } }
    let s = String(h, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
}

func fileBytes(_ url: URL) throws -> Data { try Data(contentsOf: url) }

/// Every tensor of `a` equals `b`'s by name, type, shape and bytes.
func expectSameTensors(_ a: TensorSource, _ b: TensorSource, _ context: String) throws {
    let ai = Dictionary(uniqueKeysWithValues: a.tensorInfos.map { ($0.name, $0) })
    let bi = Dictionary(uniqueKeysWithValues: b.tensorInfos.map { ($0.name, $0) })
    #expect(Set(ai.keys) == Set(bi.keys), "\(context): names differ: \(Set(ai.keys).symmetricDifference(bi.keys).sorted().prefix(6))")
    for (name, info) in ai {
        guard let other = bi[name] else { continue }
        #expect(info.type == other.type && info.shape == other.shape, "\(context): \(name) \(info.type.name)\(info.shape) vs \(other.type.name)\(other.shape)")
        #expect(try a.tensorBytes(name).array == b.tensorBytes(name).array, "\(context): \(name) bytes differ")
    }
}

@Suite struct RestructureFixtureTests {
    static let perExpertFixtures = ["qwen3_moe", "qwen2_moe", "mixtral", "olmoe", "qwen3_moe_bf16_sharded"]
    static let fusedFixtures = ["gemma4_moe", "gpt_oss"]

    func open(_ fixture: String) throws -> (ModelConfig, SafetensorsCheckpoint) {
        let dir = Fixtures.hf(fixture)
        return (try ModelConfig.load(folder: dir), try SafetensorsCheckpoint(path: dir.path))
    }

    /// per-expert → trainable gives transformers' own `trainable/` folder, file for file, byte for byte.
    @Test(arguments: perExpertFixtures)
    func perExpertToTrainableMatchesTransformers(fixture: String) throws {
        let (config, ckpt) = try open(fixture)
        let plan = try MoERestructure.plan(ckpt.tensorInfos, config: config, to: .trainable)
        #expect(plan.from == .perExpert)
        let out = Fixtures.temporaryDirectory("moe-trainable")
        defer { try? FileManager.default.removeItem(at: out) }
        try MoERestructure.write(plan, source: ckpt, to: out.path, inputFolder: Fixtures.hf(fixture).path)
        let expected = Fixtures.hf(fixture).appendingPathComponent("trainable")
        for f in ["model.safetensors", "config.json", "generation_config.json"] {
            let same = try fileBytes(out.appendingPathComponent(f)) == fileBytes(expected.appendingPathComponent(f))
            #expect(same, "\(fixture): \(f) differs from transformers' trainable/\(f)")
        }
        // Names and shapes are exactly transformers 5's in-memory parameters (meta.json).
        let meta = try JSONSerialization.jsonObject(with: fileBytes(Fixtures.hf(fixture).appendingPathComponent("meta.json"))) as! [String: Any]
        let inMemory = meta["in_memory_params"] as! [String: [Int]]
        let got = Dictionary(uniqueKeysWithValues: plan.tensors.map { ($0.info.name, $0.info.shape) })
        #expect(got == inMemory, "\(fixture): names/shapes differ from in_memory_params")
    }

    /// per-expert → trainable → GGUF → per-expert is bit-identical (F32 and BF16), and the GGUF
    /// matches llama.cpp's converter layout (gguf-py names, numpy values).
    @Test(arguments: perExpertFixtures)
    func roundTripThroughGGUF(fixture: String) throws {
        let (config, ckpt) = try open(fixture)
        let tmp = Fixtures.temporaryDirectory("moe-rt")
        defer { try? FileManager.default.removeItem(at: tmp) }
        let trainableDir = tmp.appendingPathComponent("trainable").path
        try MoERestructure.write(try MoERestructure.plan(ckpt.tensorInfos, config: config, to: .trainable),
                                 source: ckpt, to: trainableDir, inputFolder: Fixtures.hf(fixture).path)
        let trainable = try SafetensorsCheckpoint(path: trainableDir)
        let ggufPath = tmp.appendingPathComponent("model.gguf").path
        let toGGUF = try MoERestructure.plan(trainable.tensorInfos, config: config, to: .gguf)
        try MoERestructure.write(toGGUF, source: trainable, to: ggufPath, inputFolder: nil)
        let gguf = try GGUFFile(path: ggufPath)
        try expectMatchesConverter(gguf, fixture: fixture, config: config)

        let backDir = tmp.appendingPathComponent("per-expert").path
        let back = try MoERestructure.plan(gguf.tensorInfos, config: config, to: .perExpert)
        #expect(back.from == .gguf)
        try MoERestructure.write(back, source: gguf, to: backDir, inputFolder: Fixtures.hf(fixture).path)
        try expectSameTensors(try SafetensorsCheckpoint(path: backDir), ckpt, fixture)
        if fixture != "qwen3_moe_bf16_sharded" {
            // Same tensors, same safetensors order: the very file transformers wrote.
            let same = try fileBytes(URL(fileURLWithPath: backDir).appendingPathComponent("model.safetensors"))
                == fileBytes(Fixtures.hf(fixture).appendingPathComponent("model.safetensors"))
            #expect(same, "\(fixture): per-expert model.safetensors not byte-identical after the round trip")
        }
    }

    /// gemma4_moe and gpt_oss ship fused: on disk = trainable ↔ GGUF, bit-identical both ways.
    @Test(arguments: fusedFixtures)
    func fusedRoundTripThroughGGUF(fixture: String) throws {
        let (config, ckpt) = try open(fixture)
        let tmp = Fixtures.temporaryDirectory("moe-fused")
        defer { try? FileManager.default.removeItem(at: tmp) }
        let toTrainable = try MoERestructure.plan(ckpt.tensorInfos, config: config, to: .trainable)
        #expect(toTrainable.from == .trainable)
        #expect(toTrainable.tensors.allSatisfy { $0.recipe == .input($0.info.name) }, "on-disk → trainable must be the identity")
        let ggufPath = tmp.appendingPathComponent("model.gguf").path
        try MoERestructure.write(try MoERestructure.plan(ckpt.tensorInfos, config: config, to: .gguf),
                                 source: ckpt, to: ggufPath, inputFolder: nil)
        let gguf = try GGUFFile(path: ggufPath)
        try expectMatchesConverter(gguf, fixture: fixture, config: config)
        for layout in [MoELayout.trainable, .perExpert] {
            let dir = tmp.appendingPathComponent(layout.rawValue).path
            try MoERestructure.write(try MoERestructure.plan(gguf.tensorInfos, config: config, to: layout),
                                     source: gguf, to: dir, inputFolder: Fixtures.hf(fixture).path)
            let same = try fileBytes(URL(fileURLWithPath: dir).appendingPathComponent("model.safetensors"))
                == fileBytes(Fixtures.hf(fixture).appendingPathComponent("model.safetensors"))
            #expect(same, "\(fixture): GGUF → \(layout.rawValue) is not the original file")
        }
    }

    /// The GGUF holds exactly the tensors tools/golden_moe_gguf.py derived from gguf-py's names and
    /// numpy re-implementations of llama.cpp's converter steps, and the expert metadata keys.
    func expectMatchesConverter(_ g: GGUFFile, fixture: String, config: ModelConfig) throws {
        let url = Fixtures.root.appendingPathComponent("gguf-names/moe-\(fixture).json")
        let doc = try JSONSerialization.jsonObject(with: fileBytes(url)) as! [String: Any]
        let golden = doc["tensors"] as! [String: [String: Any]]
        let arch = doc["architecture"] as! String
        #expect(g.metadata.string("general.architecture") == arch)
        #expect(g.metadata.int("\(arch).block_count") == doc["block_count"] as? Int)
        #expect(g.metadata.int("\(arch).expert_count") == config.moe?.numExperts)
        #expect(g.metadata.int("\(arch).expert_used_count") == config.moe?.numExpertsPerToken)
        #expect(Set(g.tensorInfos.map(\.name)) == Set(golden.keys),
                "\(fixture): \(Set(g.tensorInfos.map(\.name)).symmetricDifference(golden.keys).sorted().prefix(8))")
        for t in g.tensorInfos {
            guard let e = golden[t.name] else { continue }
            #expect(t.shape == (e["shape"] as! [Int]), "\(fixture): \(t.name) shape \(t.shape)")
            #expect(t.type.name == e["dtype"] as! String, "\(fixture): \(t.name) type \(t.type.name)")
            #expect(fnv1a64(try g.tensorBytes(t.name)) == e["fnv1a64"] as! String, "\(fixture): \(t.name) bytes differ from the converter's")
        }
    }

    /// Removing any expert tensor (or the router) from the input fails the plan, naming it.
    @Test(arguments: ["model.layers.1.mlp.experts.5.up_proj.weight", "model.layers.0.mlp.experts.0.down_proj.weight", "model.layers.0.mlp.gate.weight"])
    func missingTensorIsNamed(missing: String) throws {
        let (config, ckpt) = try open("qwen3_moe")
        let inputs = ckpt.tensorInfos.filter { $0.name != missing }
        for layout in [MoELayout.trainable, .gguf, .perExpert] {
            let error = #expect(throws: SmolError.self) { try MoERestructure.plan(inputs, config: config, to: layout) }
            #expect(error?.description.contains(missing) == true, "\(layout): \(error?.description ?? "")")
        }
    }

    /// An expert beyond the configured count, or a tensor with no GGUF name, is refused, not dropped.
    @Test func strayTensorsAreRefused() throws {
        let (config, ckpt) = try open("mixtral")
        var inputs = ckpt.tensorInfos
        inputs.append(TensorInfo(name: "model.layers.0.block_sparse_moe.experts.4.w1.weight", type: .dense(.f32), shape: [48, 64]))
        let e1 = #expect(throws: SmolError.self) { try MoERestructure.plan(inputs, config: config, to: .trainable) }
        #expect(e1?.description.contains("experts.4.w1") == true)
        var extra = ckpt.tensorInfos
        extra.append(TensorInfo(name: "model.layers.0.mystery.weight", type: .dense(.f32), shape: [4]))
        let e2 = #expect(throws: SmolError.self) { try MoERestructure.plan(extra, config: config, to: .gguf) }
        #expect(e2?.description.contains("mystery") == true)
    }

    /// The accounting itself: an output set that leaves out (or repeats) part of an input fails,
    /// naming the input.
    @Test func accountingCatchesDroppedAndDuplicatedBytes() throws {
        let (config, ckpt) = try open("olmoe")
        let plan = try MoERestructure.plan(ckpt.tensorInfos, config: config, to: .gguf)
        let inputs = Dictionary(uniqueKeysWithValues: ckpt.tensorInfos.map { ($0.name, $0) })
        #expect(plan.accounting.count == inputs.count)
        let upIndex = plan.tensors.firstIndex { $0.info.name == "blk.1.ffn_up_exps.weight" }!
        var dropped = plan.tensors
        dropped.remove(at: upIndex)
        let e1 = #expect(throws: SmolError.self) { try MoERestructure.account(inputs: inputs, outputs: dropped) }
        #expect(e1?.description.contains("model.layers.1.mlp.experts.0.up_proj.weight") == true, "\(e1?.description ?? "")")
        var twice = plan.tensors
        var copy = twice[upIndex]
        copy.info.name = "blk.1.ffn_up_exps_copy.weight"
        twice.append(copy)
        #expect(throws: SmolError.self) { try MoERestructure.account(inputs: inputs, outputs: twice) }
    }

    /// Restructuring a layout to itself changes nothing (every recipe is the input itself), and
    /// writing it reproduces the file.
    @Test(arguments: ["qwen2_moe", "mixtral", "gpt_oss"])
    func idempotent(fixture: String) throws {
        let (config, ckpt) = try open(fixture)
        let trainable = try MoERestructure.plan(ckpt.tensorInfos, config: config, to: .trainable)
        let out = Fixtures.temporaryDirectory("moe-idem")
        defer { try? FileManager.default.removeItem(at: out) }
        let once = out.appendingPathComponent("once").path, twice = out.appendingPathComponent("twice").path
        try MoERestructure.write(trainable, source: ckpt, to: once, inputFolder: nil)
        let first = try SafetensorsCheckpoint(path: once)
        let again = try MoERestructure.plan(first.tensorInfos, config: config, to: .trainable)
        #expect(again.tensors.allSatisfy { $0.recipe == .input($0.info.name) })
        try MoERestructure.write(again, source: first, to: twice, inputFolder: nil)
        #expect(try fileBytes(URL(fileURLWithPath: once).appendingPathComponent("model.safetensors"))
                == fileBytes(URL(fileURLWithPath: twice).appendingPathComponent("model.safetensors")))
        let perExpert = try MoERestructure.plan(ckpt.tensorInfos, config: config, to: .perExpert)
        #expect(perExpert.tensors.allSatisfy { $0.recipe == .input($0.info.name) })
    }
}
