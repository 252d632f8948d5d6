import Foundation

/// Where the tests' reference data lives. Everything under Tests/Fixtures is committed (see its
/// README for provenance); the real model is installed by tools/setup into .cache/models.
public enum Fixtures {
    /// Tests/Fixtures
    public static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    /// The package root.
    public static let packageRoot: URL = root.deletingLastPathComponent().deletingLastPathComponent()

    /// Tests/Fixtures/hf/<name>: tiny transformers 5.17 models.
    public static func hf(_ name: String) -> URL { root.appendingPathComponent("hf").appendingPathComponent(name) }

    public static let denseArchitectures = ["llama", "smollm3", "qwen3", "gemma2", "gemma3", "gemma4"]
    public static let moeArchitectures = ["qwen3_moe", "qwen2_moe", "mixtral", "olmoe", "gemma4_moe", "gpt_oss", "qwen3_moe_bf16_sharded"]
    public static var allHF: [String] { denseArchitectures + moeArchitectures }

    /// The real Gemma 3 270M Q4_K_M GGUF, or nil (with the reason printed once) when tools/setup has
    /// not been run. CI always runs it. SMOLCONV_REAL_MODEL overrides the location.
    public static var realModel: URL? {
        let path = ProcessInfo.processInfo.environment["SMOLCONV_REAL_MODEL"]
            ?? packageRoot.appendingPathComponent(".cache/models/gemma-3-270m-q4_k_m.gguf").path
        if FileManager.default.fileExists(atPath: path) { return URL(fileURLWithPath: path) }
        return nil
    }

    /// A fresh temporary folder, removed by the caller with `cleanup`.
    public static func temporaryDirectory(_ tag: String = "smolconv-test") -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(tag)-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// The built smolconv executable next to the test bundle (for end-to-end tests).
    public static var smolconvBinary: URL {
        var dir = Bundle.main.bundleURL
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("smolconv")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return packageRoot.appendingPathComponent(".build/debug/smolconv")
    }
}
