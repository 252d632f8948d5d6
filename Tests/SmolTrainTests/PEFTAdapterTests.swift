import Foundation
import Testing
import SmolFormats
import SmolModels
import SmolEngine
import SmolTensor
import SmolTestSupport
@testable import SmolTrain

@Suite struct PEFTAdapterTests {
    func spec(_ arch: String) throws -> (DenseDecoderSpec, ModelConfig) {
        let dir = Fixtures.hf(arch)
        let config = try ModelConfig.load(folder: dir)
        let model = try ModelLoader.load(config: config, source: try SafetensorsCheckpoint(path: dir.path))
        return (model.spec, config)
    }

    /// Read + write reproduces PEFT's files byte for byte (same names, shapes, order, header, config),
    /// MoE adapters with target_parameters (per-expert A/B stacks, `experts.base_layer`) included.
    @Test(arguments: Fixtures.denseArchitectures + moeLoRAArchitectures)
    func roundTripIsByteIdenticalToPEFT(arch: String) throws {
        let (spec, _) = try spec(arch)
        let src = Fixtures.hf(arch).appendingPathComponent("lora")
        let (adapter, json) = try PEFTAdapter.read(directory: src.path, spec: spec)
        #expect(adapter.config.rank == 4 && adapter.config.alpha == 8 && adapter.config.scale == 2)
        #expect(adapter.config.targets.count == (arch == "gemma4_moe" ? 4 : moeLoRAArchitectures.contains(arch) ? 6 : 7))
        let out = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: out) }
        try PEFTAdapter.write(adapter, to: out.path, configJSON: json)
        for file in [PEFTAdapter.weightsFile, PEFTAdapter.configFile] {
            let ours = try Data(contentsOf: out.appendingPathComponent(file))
            let peft = try Data(contentsOf: src.appendingPathComponent(file))
            #expect(ours == peft, "\(arch) \(file) differs")
        }
    }

    /// A fresh adapter's config has PEFT's keys and values for the same settings.
    @Test(arguments: Fixtures.denseArchitectures)
    func freshConfigHasPEFTKeys(arch: String) throws {
        let (spec, config) = try spec(arch)
        let peft = try JSONValue.parse(Array(try Data(contentsOf: Fixtures.hf(arch).appendingPathComponent("lora/adapter_config.json"))))
        let cfg = LoRAConfig(rank: 4, alpha: 8, targets: LoRAModule.linears)
        let adapter = LoRAAdapter.initialized(spec: spec, config: cfg, seed: 1)
        let out = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: out) }
        try PEFTAdapter.write(adapter, to: out.path, baseModelClass: config.architectures.first, modelType: config.modelType)
        let ours = try JSONValue.parse(Array(try Data(contentsOf: out.appendingPathComponent(PEFTAdapter.configFile))))
        #expect(Set(ours.objectValue!.keys) == Set(peft.objectValue!.keys))
        for key in peft.objectValue!.keys where !["target_modules", "init_lora_weights"].contains(key) {
            #expect(ours[key] == peft[key], "\(arch) \(key): \(ours[key]!) vs \(peft[key]!)")
        }
        #expect(Set(ours["target_modules"]!.arrayValue!) == Set(peft["target_modules"]!.arrayValue!))
        // Same tensor names and shapes as PEFT's file; B starts at zero.
        let ourFile = try SafetensorsFile(path: out.appendingPathComponent(PEFTAdapter.weightsFile).path)
        let peftFile = try SafetensorsFile(path: Fixtures.hf(arch).appendingPathComponent("lora/adapter_model.safetensors").path)
        #expect(ourFile.tensorInfos == peftFile.tensorInfos)
        let back = try PEFTAdapter.read(directory: out.path, spec: spec).adapter
        #expect(back.pairs == adapter.pairs)
        #expect(back.pairs.values.allSatisfy { $0.b.allSatisfy { $0 == 0 } })
    }

    @Test func rejectsWrongShapesAndUnknownModules() throws {
        let (spec, _) = try spec("llama")
        let (adapter, json) = try PEFTAdapter.read(directory: Fixtures.hf("llama").appendingPathComponent("lora").path, spec: spec)
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        // Rank in the config disagrees with the tensors.
        try PEFTAdapter.write(adapter, to: dir.path, configJSON: json)
        let cfg = dir.appendingPathComponent(PEFTAdapter.configFile)
        try Data(JSONWriter.python(json.setting("r", .int(8))).utf8).write(to: cfg)
        #expect(throws: SmolError.self) { try PEFTAdapter.read(directory: dir.path, spec: spec) }
        // A module the engine does not adapt.
        try Data(JSONWriter.python(json.setting("target_modules", .array([.string("lm_head")]))).utf8).write(to: cfg)
        #expect(throws: SmolError.self) { try PEFTAdapter.read(directory: dir.path, spec: spec) }
        // DoRA.
        try Data(JSONWriter.python(json.setting("use_dora", .bool(true))).utf8).write(to: cfg)
        #expect(throws: SmolError.self) { try PEFTAdapter.read(directory: dir.path, spec: spec) }
    }
}
