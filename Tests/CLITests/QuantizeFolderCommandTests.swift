import Foundation
import Testing
import SmolTestSupport

@Suite struct QuantizeFolderCommandTests {
    /// `smolconv quantize --format nf4 --double-quant` writes what transformers + bitsandbytes save
    /// (Tests/Fixtures/quant/llama-nf4-double, made by them): the same model.safetensors bytes.
    @Test func nf4DoubleQuantFromTheCommandLine() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("nf4").path
        let r = try CLIRun.run(["quantize", Fixtures.hf("llama").path, out, "--format", "nf4", "--double-quant"])
        #expect(r.status == 0, "\(r.stderr)")
        let ref = Fixtures.hf("llama").deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("quant/llama-nf4-double/model.safetensors")
        #expect(try Data(contentsOf: URL(fileURLWithPath: out + "/model.safetensors")) == (try Data(contentsOf: ref)))
    }

    /// Flags that do not fit the format are refused with a message, not ignored.
    @Test func mismatchedFlagsAreRefused() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let dq = try CLIRun.run(["quantize", Fixtures.hf("llama").path, dir.appendingPathComponent("a").path, "--format", "mlx", "--double-quant"])
        #expect(dq.status != 0 && !dq.crashed && dq.stderr.contains("--double-quant"), "\(dq.stderr)")
        let gs = try CLIRun.run(["quantize", Fixtures.hf("llama").path, dir.appendingPathComponent("b").path, "--format", "mlx", "--group-size", "48"])
        #expect(gs.status != 0 && !gs.crashed && (gs.stderr.contains("group size") || gs.stderr.contains("group-size")), "\(gs.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("b").path))
    }
}
