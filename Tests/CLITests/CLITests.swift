import Foundation
import Testing
import SmolFormats
import SmolTensor
import SmolTestSupport

/// Runs the built `smolconv` binary and captures what a user would see.
struct CLIRun {
    var status: Int32
    var stdout: String
    var stderr: String
    /// True when the process ended by a signal (a crash or trap), not by exit().
    var crashed: Bool

    static func run(_ args: [String]) throws -> CLIRun {
        let p = Process()
        p.executableURL = Fixtures.smolconvBinary
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return CLIRun(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
                      stderr: String(decoding: e, as: UTF8.self), crashed: p.terminationReason == .uncaughtSignal)
    }
}

@Suite struct InspectCommandTests {
    @Test func inspectJSONListsEveryFixtureTensorRowMajor() throws {
        for name in Fixtures.allHF {
            let r = try CLIRun.run(["inspect", Fixtures.hf(name).path, "--json"])
            #expect(r.status == 0, "\(name): \(r.stderr)")
            let json = try JSONValue.parse(r.stdout)
            let meta = try JSONValue.parse(Array(try Data(contentsOf: Fixtures.hf(name).appendingPathComponent("meta.json"))))
            let expected = try #require(meta["checkpoint_tensors"]?.objectPairs)
            let tensors = try #require(json["tensors"]?.arrayValue)
            #expect(tensors.count == expected.count, "\(name)")
            var byName: [String: JSONValue] = [:]
            for t in tensors { byName[t["name"]!.stringValue!] = t }
            for (tname, spec) in expected {
                let t = try #require(byName[tname], "\(name): \(tname) missing")
                #expect(t["dtype"]?.stringValue == spec.arrayValue?[1].stringValue, "\(name) \(tname)")
                #expect(t["shape"] == spec.arrayValue?[2], "\(name) \(tname)")
            }
            #expect(json["format"]?.stringValue == "safetensors")
            #expect(json["architecture"]?.stringValue == meta["spec"]?["model_type"]?.stringValue)
        }
    }

    @Test func inspectOfTheRealModelReportsItsTypes() throws {
        guard let model = Fixtures.realModel else {
            print("skipped: run tools/setup to install the real model")
            return
        }
        let r = try CLIRun.run(["inspect", model.path, "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let json = try JSONValue.parse(r.stdout)
        #expect(json["format"]?.stringValue == "gguf")
        #expect(json["architecture"]?.stringValue == "gemma3")
        #expect(json["tensors"]?.arrayValue?.count == 236)
        let types = try #require(json["types"])
        #expect(types["F32"]?.intValue == 109)
        #expect(types["Q5_0"]?.intValue == 81)
        #expect(types["Q4_K"]?.intValue == 27)
        #expect(types["Q8_0"]?.intValue == 10)
        #expect(types["Q6_K"]?.intValue == 9)
        // Row-major: the embedding is [vocab, hidden].
        let embd = json["tensors"]?.arrayValue?.first { $0["name"]?.stringValue == "token_embd.weight" }
        #expect(embd?["shape"] == .array([.int(262_144), .int(640)]))
        #expect(json["metadata"]?["gemma3.block_count"]?.intValue == 18)
        #expect(json["metadata"]?["tokenizer.ggml.tokens"]?["count"]?.intValue == 262_144)
        let table = try CLIRun.run(["inspect", model.path])
        #expect(table.stdout.contains("F32 ×109, Q5_0 ×81, Q4_K ×27, Q8_0 ×10, Q6_K ×9"))
    }
}

@Suite struct MalformedInputTests {
    /// Every file of the malformed corpus (Tests/Fixtures/malformed/*/): `inspect` and `convert` exit
    /// with status 1 and one line naming the file, without a crash and without leaving an output.
    static var corpus: [URL] {
        let root = Fixtures.root.appendingPathComponent("malformed")
        var out: [URL] = []
        for sub in ["safetensors", "gguf"] {
            let dir = root.appendingPathComponent(sub)
            // Every case file; the README, the expectations list and the well-formed control file aside.
            for name in (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
            where !name.hasSuffix(".md") && !name.hasSuffix(".json") && !name.hasPrefix("valid") {
                out.append(dir.appendingPathComponent(name))
            }
        }
        return out.sorted { $0.path < $1.path }
    }

    @Test func corpusHasAtLeastTwentyFiveFiles() {
        #expect(MalformedInputTests.corpus.count >= 25)
    }

    @Test(arguments: MalformedInputTests.corpus)
    func malformedFileFailsCleanly(_ file: URL) throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        for (args, out) in [(["inspect", file.path], nil as String?),
                            (["convert", file.path, dir.appendingPathComponent("out.gguf").path], "out.gguf"),
                            (["convert", file.path, dir.appendingPathComponent("out").path], "out")] {
            let r = try CLIRun.run(args)
            #expect(!r.crashed, "\(file.lastPathComponent): \(args[0]) crashed: \(r.stderr)")
            #expect(r.status == 1, "\(file.lastPathComponent): \(args[0]) exit \(r.status)")
            let lines = r.stderr.split(separator: "\n")
            #expect(lines.count == 1, "\(file.lastPathComponent): \(args[0]) printed \(r.stderr)")
            #expect(r.stderr.hasPrefix("smolconv: error: "), "\(r.stderr)")
            #expect(r.stderr.contains(file.lastPathComponent), "\(file.lastPathComponent): error does not name the file: \(r.stderr)")
            if let out {
                #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent(out).path))
            }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty, "temporary files left behind")
    }
}

@Suite struct ConvertCommandTests {
    @Test func refusesToOverwriteItsInput() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let src = dir.appendingPathComponent("m.safetensors")
        try FileManager.default.copyItem(at: Fixtures.hf("llama").appendingPathComponent("model.safetensors"), to: src)
        let before = try Data(contentsOf: src)
        let r = try CLIRun.run(["convert", src.path, src.path])
        #expect(r.status == 1)
        #expect(r.stderr.contains("overwrite the input"))
        #expect(try Data(contentsOf: src) == before)
    }
}
