import Foundation
import Testing
import SmolTestSupport

@Suite struct CalibratedQuantizeCommandTests {
    /// `calibrate` then `quantize --calibration --method gptq` on an MoE fixture from the command
    /// line: experts the short corpus never reached (the counts h5py reads back would say 0) are
    /// listed in the table and under "rtn_fallback_experts" in --json, the same list both ways.
    @Test func zeroTokenExpertsAreListed() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let stats = dir.appendingPathComponent("stats.h5").path
        // Ids below the fixture's vocabulary (512); these 12 tokens leave experts 6 and 7 of layer 1 unused.
        let ids = (0..<12).map { String(($0 * 7919 + 13) % 512) }.joined(separator: ",")
        let c = try CLIRun.run(["calibrate", Fixtures.hf("qwen3_moe").path, "--tokens", ids, "--ctx", "12", "--output", stats])
        #expect(c.status == 0, "\(c.stderr)")
        let human = try CLIRun.run(["quantize", Fixtures.hf("qwen3_moe").path, dir.appendingPathComponent("a.gguf").path,
                                    "--type", "Q4_0", "--calibration", stats, "--method", "gptq"])
        #expect(human.status == 0, "\(human.stderr)")
        #expect(human.stdout.contains("experts without calibration tokens"), "\(human.stdout)")
        let json = try CLIRun.run(["quantize", Fixtures.hf("qwen3_moe").path, dir.appendingPathComponent("b.gguf").path,
                                   "--type", "Q4_0", "--calibration", stats, "--method", "gptq", "--json"])
        #expect(json.status == 0, "\(json.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let listed = try #require(object["rtn_fallback_experts"] as? [[String: Any]])
        #expect(!listed.isEmpty)
        for entry in listed {
            let tensor = try #require(entry["tensor"] as? String), experts = try #require(entry["experts"] as? [Int])
            #expect(tensor.contains("_exps.weight") && !experts.isEmpty)
            // The table line for the same tensor names the same experts.
            let line = "  \(tensor): expert\(experts.count == 1 ? "" : "s") \(experts.map(String.init).joined(separator: ", "))"
            #expect(human.stdout.contains(line), "\(line) missing from:\n\(human.stdout)")
        }
        // The two runs wrote the same bytes (quantizing from the statistics is deterministic).
        #expect(try Data(contentsOf: dir.appendingPathComponent("a.gguf")) == (try Data(contentsOf: dir.appendingPathComponent("b.gguf"))))
    }
}
