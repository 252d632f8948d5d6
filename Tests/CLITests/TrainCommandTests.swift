import Foundation
import Testing
import SmolFormats
import SmolTensor
import SmolTestSupport

/// `smolconv train` end to end against the fixtures' torch reference (PEFT adapter resumed,
/// the reference input_ids, one AdamW step at lr 1e-2 without clipping or weight decay).
@Suite struct TrainCommandTests {
    /// Gradients: Float32 on both sides, different summation orders; agree to ~2e-6 of the largest
    /// entry per tensor (the library test measures it); 1e-4 as the project sets it.
    let gradientTolerance: Float = 1e-4
    /// After the step: p − lr · g / (|g| + eps) ≈ p ∓ 1e-2; Float32 rounding only (llama's gradients
    /// have no element near eps, where the update would follow the gradient's own noise).
    let stepTolerance: Float = 1e-5

    func floats(_ f: SafetensorsFile, _ name: String) throws -> [Float] {
        let info = try #require(f.info(name), "\(name) missing")
        #expect(info.type == .dense(.f32))
        return try f.tensorBytes(name).withUnsafeBytes { raw in
            (0..<(raw.count / 4)).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) }
        }
    }

    /// llama (dense) and qwen3_moe (per-expert checkpoint, attention + per-expert LoRA). The step is
    /// compared on llama only: two of qwen3_moe's gradient elements sit near AdamW's eps, where the
    /// update follows the gradient's own Float32 noise (the library test bounds those separately).
    @Test(arguments: ["llama", "qwen3_moe"])
    func oneStepOnAFixtureMatchesTorch(arch: String) throws {
        let dir = Fixtures.hf(arch)
        let reference = try SafetensorsFile(path: dir.appendingPathComponent("reference.safetensors").path)
        let ids = try reference.tensorBytes("input_ids").withUnsafeBytes { raw in
            (0..<(raw.count / 8)).map { Int(raw.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }
        }
        let tmp = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let out = tmp.appendingPathComponent("adapter"), grads = tmp.appendingPathComponent("grads.safetensors")
        let log = tmp.appendingPathComponent("log.jsonl")
        let r = try CLIRun.run(["train", dir.path, "--tokens", ids.map(String.init).joined(separator: ","),
                                "--resume", dir.appendingPathComponent("lora").path, "--steps", "1", "--lr", "1e-2",
                                "--weight-decay", "0", "--max-grad-norm", "0", "--lr-schedule", "constant",
                                "--output", out.path, "--save-gradients", grads.path, "--log", log.path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("tokens/s"))
        let torch = try SafetensorsFile(path: dir.appendingPathComponent("lora_reference.safetensors").path)
        let ours = try SafetensorsFile(path: grads.path)
        let torchGrads = torch.tensorInfos.filter { $0.name.hasPrefix("grad.") }
        #expect(ours.tensorInfos.filter { $0.name.hasPrefix("grad.") }.count == torchGrads.count)
        for t in torchGrads {
            let err = relativeError(try floats(ours, t.name), try floats(torch, t.name))
            #expect(err < gradientTolerance, "\(t.name): \(err)")
        }
        let loss = try floats(ours, "loss")[0], torchLoss = try floats(torch, "loss")[0]
        #expect(abs(loss - torchLoss) / torchLoss < 1e-5)
        // The saved adapter holds after_step.* under PEFT's saved names (no ".default").
        let adapter = try SafetensorsFile(path: out.appendingPathComponent("adapter_model.safetensors").path)
        let peft = try SafetensorsFile(path: dir.appendingPathComponent("lora/adapter_model.safetensors").path)
        #expect(adapter.tensorInfos == peft.tensorInfos)
        for t in adapter.tensorInfos where arch == "llama" {
            let torchName = "after_step." + t.name.replacingOccurrences(of: ".weight", with: ".default.weight")
            let err = relativeError(try floats(adapter, t.name), try floats(torch, torchName))
            #expect(err < stepTolerance, "\(t.name): \(err)")
        }
        // The config is PEFT's, carried over unchanged.
        #expect(try Data(contentsOf: out.appendingPathComponent("adapter_config.json"))
                == (try Data(contentsOf: dir.appendingPathComponent("lora/adapter_config.json"))))
        // One JSON line per step.
        let lines = try String(contentsOf: log, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 1)
        let entry = try JSONValue.parse(String(lines[0]))
        #expect(entry["step"]?.intValue == 1)
        #expect(abs((entry["loss"]?.doubleValue ?? 0) - Double(torchLoss)) / Double(torchLoss) < 1e-5)
    }

    @Test func badArgumentsFailCleanly() throws {
        let dir = Fixtures.hf("llama")
        let tmp = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        for args in [["--tokens", "1,2,3", "--targets", "lm_head"], ["--tokens", "1,2,3", "--lr-schedule", "step"],
                     ["--tokens", "1,2,99999"], ["--data", tmp.appendingPathComponent("missing.txt").path]] {
            let r = try CLIRun.run(["train", dir.path, "--output", tmp.appendingPathComponent("o").path, "--steps", "1"] + args)
            #expect(r.status != 0 && !r.crashed, "\(args): \(r.stderr)")
            #expect(r.stderr.lowercased().contains("error"), "\(args): \(r.stderr)")
        }
    }
}
