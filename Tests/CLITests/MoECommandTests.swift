import Foundation
import Testing
import SmolFormats
import SmolTensor
import SmolTestSupport

@Suite struct MoECommandTests {
    /// `moe restructure --layout trainable` writes transformers' own trainable/ file.
    @Test func restructureToTrainableMatchesTransformers() throws {
        let tmp = Fixtures.temporaryDirectory("cli-moe")
        defer { try? FileManager.default.removeItem(at: tmp) }
        let out = tmp.appendingPathComponent("trainable").path
        let r = try CLIRun.run(["moe", "restructure", Fixtures.hf("qwen2_moe").path, out, "--layout", "trainable"])
        #expect(r.status == 0, "\(r.stderr)")
        let got = try Data(contentsOf: URL(fileURLWithPath: out).appendingPathComponent("model.safetensors"))
        let want = try Data(contentsOf: Fixtures.hf("qwen2_moe").appendingPathComponent("trainable/model.safetensors"))
        #expect(got == want)
    }

    /// The engine commands read MoE checkpoints in every layout: `logits` on the per-expert folder as
    /// shipped, on the GGUF layout (config.json beside it) and on the quantized trainable layout.
    @Test func logitsReadsEveryExpertLayout() throws {
        let tmp = Fixtures.temporaryDirectory("cli-moe")
        defer { try? FileManager.default.removeItem(at: tmp) }
        let ref = try CLIReference("mixtral")
        let ids = try ref.ints("input_ids").map(String.init).joined(separator: ",")
        let g = tmp.appendingPathComponent("m.gguf").path
        #expect(try CLIRun.run(["moe", "restructure", Fixtures.hf("mixtral").path, g, "--layout", "gguf"]).status == 0)
        try FileManager.default.copyItem(at: Fixtures.hf("mixtral").appendingPathComponent("config.json"),
                                         to: tmp.appendingPathComponent("config.json"))
        let q = tmp.appendingPathComponent("nf4").path
        let rq = try CLIRun.run(["moe", "restructure", Fixtures.hf("mixtral").path, q, "--layout", "trainable", "--quantize-experts", "nf4"])
        #expect(rq.status == 0, "\(rq.stderr)")
        #expect(rq.stdout.contains("quantized to NF4 b64"), "\(rq.stdout)")
        for (model, exact) in [(Fixtures.hf("mixtral").path, true), (g, true), (q, false)] {
            let out = tmp.appendingPathComponent("l.safetensors").path
            try? FileManager.default.removeItem(atPath: out)
            let r = try CLIRun.run(["logits", model, "--tokens", ids, "--output", out])
            #expect(r.status == 0, "\(model): \(r.stderr)")
            let logits = try SafetensorsFile(path: out).tensorBytes("logits").withUnsafeBytes { raw in
                (0..<(raw.count / 4)).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) }
            }
            let err = maxRelError(logits, try ref.floats("logits"))
            // Quantized experts: within the budget SmolEngineTests' QuantizedTrainableLayoutTests states
            // (mixtral NF4 measured 0.44 max relative, the worst fixture); exact layouts within 1e-4.
            #expect(exact ? err < cliActivationTolerance : (err > 0 && err < 0.6), "\(model): \(err)")
        }
    }

    /// int4 experts whose rows do not split into groups are refused before anything is written.
    @Test func quantizeExpertsRefusesShapesItCannotGroup() throws {
        let tmp = Fixtures.temporaryDirectory("cli-moe")
        defer { try? FileManager.default.removeItem(at: tmp) }
        let out = tmp.appendingPathComponent("q").path
        let r = try CLIRun.run(["moe", "restructure", Fixtures.hf("mixtral").path, out, "--layout", "trainable", "--quantize-experts", "int4"])
        #expect(r.status != 0 && !r.crashed)
        #expect(r.stderr.contains("experts.down_proj") && r.stderr.contains("groups of 64"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    /// --dry-run --json prints the plan and the accounting and writes nothing.
    @Test func dryRunPrintsThePlan() throws {
        let tmp = Fixtures.temporaryDirectory("cli-moe")
        defer { try? FileManager.default.removeItem(at: tmp) }
        let out = tmp.appendingPathComponent("m.gguf").path
        let r = try CLIRun.run(["moe", "restructure", Fixtures.hf("olmoe").path, out, "--layout", "gguf", "--dry-run", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out))
        let doc = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        let tensors = doc["tensors"] as! [[String: Any]]
        #expect(tensors.contains { $0["name"] as? String == "blk.0.ffn_gate_exps.weight" && ($0["inputs"] as? [String])?.count == 8 })
        let accounting = doc["accounting"] as! [[String: Any]]
        let st = try SafetensorsFile(path: Fixtures.hf("olmoe").appendingPathComponent("model.safetensors").path)
        #expect(accounting.count == st.tensorInfos.count)
    }

    /// A GGUF input without a config.json beside it is refused with a clear message.
    @Test func ggufInputNeedsConfig() throws {
        let tmp = Fixtures.temporaryDirectory("cli-moe")
        defer { try? FileManager.default.removeItem(at: tmp) }
        let g = tmp.appendingPathComponent("m.gguf").path
        #expect(try CLIRun.run(["moe", "restructure", Fixtures.hf("mixtral").path, g, "--layout", "gguf"]).status == 0)
        let r = try CLIRun.run(["moe", "restructure", g, tmp.appendingPathComponent("back").path, "--layout", "per-expert"])
        #expect(r.status != 0 && !r.crashed)
        #expect(r.stderr.contains("--config"))
        let ok = try CLIRun.run(["moe", "restructure", g, tmp.appendingPathComponent("back").path, "--layout", "per-expert",
                                 "--config", Fixtures.hf("mixtral").appendingPathComponent("config.json").path])
        #expect(ok.status == 0, "\(ok.stderr)")
        let back = try Data(contentsOf: tmp.appendingPathComponent("back/model.safetensors"))
        #expect(back == (try Data(contentsOf: Fixtures.hf("mixtral").appendingPathComponent("model.safetensors"))))
    }

    /// A checkpoint missing one expert tensor: non-zero exit, the message names the tensor, no output.
    @Test func missingExpertFailsAndNamesIt() throws {
        let tmp = Fixtures.temporaryDirectory("cli-moe")
        defer { try? FileManager.default.removeItem(at: tmp) }
        let src = try SafetensorsFile(path: Fixtures.hf("olmoe").appendingPathComponent("model.safetensors").path)
        let missing = "model.layers.1.mlp.experts.6.up_proj.weight"
        let bad = tmp.appendingPathComponent("bad")
        try FileManager.default.createDirectory(at: bad, withIntermediateDirectories: true)
        try SafetensorsWriter.write(src.tensorInfos.filter { $0.name != missing }.map { SafetensorsTensor.from(src, $0) },
                                    to: bad.appendingPathComponent("model.safetensors").path, order: .safetensorsLibrary)
        try FileManager.default.copyItem(at: Fixtures.hf("olmoe").appendingPathComponent("config.json"),
                                         to: bad.appendingPathComponent("config.json"))
        let out = tmp.appendingPathComponent("out").path
        for layout in ["trainable", "gguf"] {
            let r = try CLIRun.run(["moe", "restructure", bad.path, out, "--layout", layout])
            #expect(r.status != 0 && !r.crashed)
            #expect(r.stderr.contains(missing), "\(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: out))
        }
    }
}
