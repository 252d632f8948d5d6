import Foundation
import Testing
import SmolFormats
import SmolTensor
import SmolTestSupport

@Suite struct PackCommandTests {
    /// pack → inspect → convert (from the pack) → unpack, end to end, on the sharded BF16 fixture.
    @Test func packInspectConvertUnpack() throws {
        let dir = Fixtures.temporaryDirectory("smolpack-cli")
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = Fixtures.hf("qwen3_moe_bf16_sharded").path
        let packed = dir.appendingPathComponent("q.smolpack").path
        let p = try CLIRun.run(["pack", input, packed, "--json"])
        #expect(p.status == 0, "\(p.stderr)")
        let json = try JSONParser.parse(Array(p.stdout.utf8))
        #expect(json.objectValue?["files"]?.intValue == 13)
        #expect(json.objectValue?["tensors"]?.intValue == 69)

        let a = try CLIRun.run(["inspect", input, "--json"]), b = try CLIRun.run(["inspect", packed, "--json"])
        #expect(a.status == 0 && b.status == 0, "\(b.stderr)")
        let ja = try JSONParser.parse(Array(a.stdout.utf8)).objectValue, jb = try JSONParser.parse(Array(b.stdout.utf8)).objectValue
        #expect(ja?["tensors"] == jb?["tensors"])
        #expect(ja?["architecture"] == jb?["architecture"])

        // convert reads the pack like the folder: same output bytes.
        let c1 = try CLIRun.run(["convert", input, dir.appendingPathComponent("a.safetensors").path])
        let c2 = try CLIRun.run(["convert", packed, dir.appendingPathComponent("b.safetensors").path])
        #expect(c1.status == 0 && c2.status == 0, "\(c1.stderr) \(c2.stderr)")
        #expect(FileManager.default.contentsEqual(atPath: dir.appendingPathComponent("a.safetensors").path,
                                                  andPath: dir.appendingPathComponent("b.safetensors").path))

        let out = dir.appendingPathComponent("restored").path
        let u = try CLIRun.run(["unpack", packed, out])
        #expect(u.status == 0, "\(u.stderr)")
        for f in try FileManager.default.subpathsOfDirectory(atPath: input) {
            var isDir: ObjCBool = false
            FileManager.default.fileExists(atPath: (input as NSString).appendingPathComponent(f), isDirectory: &isDir)
            if isDir.boolValue { continue }
            #expect(FileManager.default.contentsEqual(atPath: (input as NSString).appendingPathComponent(f),
                                                      andPath: (out as NSString).appendingPathComponent(f)), "\(f)")
        }
        // A second unpack onto an existing folder is refused with one clear line.
        let again = try CLIRun.run(["unpack", packed, out])
        #expect(again.status == 1 && again.stderr.contains("already exists") && !again.crashed)

        // --check decodes and verifies without writing; a flipped byte in the chunk data fails it.
        let ok = try CLIRun.run(["unpack", packed, "--check"])
        #expect(ok.status == 0 && ok.stdout.contains("checked"), "\(ok.stderr)")
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: packed)))
        bytes[PackIndex.headerSize + 20] ^= 0x40
        let bad = dir.appendingPathComponent("bad.smolpack").path
        try Data(bytes).write(to: URL(fileURLWithPath: bad))
        let broken = try CLIRun.run(["unpack", bad, "--check"])
        #expect(broken.status == 1 && broken.stderr.contains("chunk 0") && !broken.crashed, "\(broken.stderr)")
        let noOutput = try CLIRun.run(["unpack", packed])
        #expect(noOutput.status != 0 && !noOutput.crashed)
    }
}
