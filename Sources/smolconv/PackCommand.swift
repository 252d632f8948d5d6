import ArgumentParser
import Foundation
import SmolFormats
import SmolTensor

struct Pack: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pack a checkpoint losslessly (zstd) into one smolpack file that every command reads.",
        discussion: """
        IN is a .gguf file, a .safetensors file or a Hugging Face folder (every file in it is packed: \
        shards, index, config and tokenizer files). Each tensor's bytes are regrouped into byte planes \
        where that helps (BF16/F16/F32: each element rotated so the exponent bits fill one plane and \
        sign + mantissa the others; quantized blocks: scales apart from the packed integers) and compressed with zstd in independent chunks, each with an XXH64 checksum; \
        each plane is its own zstd frame, Huffman-coded only (no matches) where that is smaller, as for exponents. \
        `smolconv unpack` restores the original byte for byte; inspect, convert and the other commands \
        read packed files directly, decompressing tensors on demand. Container: formats/smolpack.md.
        """
    )

    @Argument(help: "A .gguf file, a .safetensors file or a Hugging Face folder.")
    var input: String

    @Argument(help: "The packed file to write.")
    var output: String

    @Option(help: "zstd level, 1…22, of the planes that keep zstd's matches (default \(PackOptions.defaultLevel); exponent planes are coded entropy-only at every level; 5 is ~0.5 % smaller for 1.6× the pack time).")
    var level: Int = PackOptions.defaultLevel

    @Option(help: "Bytes per chunk, the unit of parallel work and random access (default 4194304).")
    var chunkSize: Int = 4 << 20

    @Flag(help: "Compress bytes as they are, without regrouping them into planes.")
    var noByteLayouts = false

    @Flag(help: "Compress each chunk as one zstd frame, not one frame per byte plane (writes container version 1 or 2, readable by older smolconv).")
    var noPlaneCodings = false

    @OptionGroup var outputOptions: OutputOptions

    func validate() throws {
        guard (1...22).contains(level) else { throw ValidationError("--level must be within 1…22") }
    }

    func run() throws {
        try runReportingErrors {
            var options = PackOptions()
            options.level = level
            options.chunkSize = chunkSize
            options.byteLayouts = !noByteLayouts
            options.planeCodings = !noPlaneCodings
            let progress = Console.Progress("pack", total: 1)
            let s = try SmolPack.pack(input: input, output: output, options: options) { done, total in
                progress.update(done, of: total)
            }
            progress.finish("\(Format.bytes(s.rawBytes)) → \(Format.bytes(s.packedBytes)) in \(Format.fixed(s.seconds, 2)) s")
            report(s, action: "packed")
        }
    }

    func report(_ s: PackSummary, action: String) {
        PackReport.print(s, action: action, json: outputOptions.json)
    }
}

struct Unpack: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Restore the original file or folder from a smolpack file, byte for byte.",
        discussion: "Every chunk is checked against its checksum; a corrupted chunk is reported with the tensor it belongs to."
    )

    @Argument(help: "A packed file written by `smolconv pack`.")
    var input: String

    @Argument(help: "The file or folder to restore (a folder must not exist); omit with --check.")
    var output: String?

    @Flag(name: .long, help: "Only decode every chunk and verify its checksum; write nothing.")
    var check = false

    @OptionGroup var outputOptions: OutputOptions

    func validate() throws {
        if check && output != nil { throw ValidationError("--check writes nothing: give no OUTPUT") }
        if !check && output == nil { throw ValidationError("missing OUTPUT (or --check to only verify)") }
    }

    func run() throws {
        try runReportingErrors {
            let progress = Console.Progress(check ? "check" : "unpack", total: 1)
            let update: SmolPack.Progress = { done, total in progress.update(done, of: total) }
            let s = try check ? SmolPack.verify(input: input, progress: update)
                              : SmolPack.unpack(input: input, output: output!, progress: update)
            progress.finish("\(Format.bytes(s.packedBytes)) → \(Format.bytes(s.rawBytes)) in \(Format.fixed(s.seconds, 2)) s")
            PackReport.print(s, action: check ? "checked" : "unpacked", json: outputOptions.json)
        }
    }
}

/// The size summary both commands print.
enum PackReport {
    static func print(_ s: PackSummary, action: String, json: Bool) {
        let ratio = s.rawBytes == 0 ? 1 : Double(s.packedBytes) / Double(s.rawBytes)
        let rate = s.seconds > 0 ? Double(s.rawBytes) / s.seconds / 1e6 : 0
        if json {
            let v = JSONValue.object(JSONObject([
                ("input", .string(s.input)),
                ("output", .string(s.output)),
                ("kind", .string(s.kind == .folder ? "folder" : "file")),
                ("files", .int(s.files)),
                ("tensors", .int(s.tensors)),
                ("raw_bytes", .int(s.rawBytes)),
                ("packed_bytes", .int(s.packedBytes)),
                ("ratio", .double(ratio)),
                ("seconds", .double(s.seconds)),
                ("raw_mb_per_s", .double(rate)),
            ]))
            Console.out(v.serialized(indent: 2))
            return
        }
        Console.out("\(action) \(s.input)\(s.output.isEmpty ? "" : " → \(s.output)") (\(s.files) file\(s.files == 1 ? "" : "s"), \(s.tensors) tensors)")
        Console.out("  original  \(Format.grouped(s.rawBytes).padding(toLength: 16, withPad: " ", startingAt: 0)) bytes")
        Console.out("  packed    \(Format.grouped(s.packedBytes).padding(toLength: 16, withPad: " ", startingAt: 0)) bytes  (\(Format.fixed(100 * ratio, 1)) %)")
        Console.out("  time      \(Format.fixed(s.seconds, 2)) s, \(Format.fixed(rate, 0)) MB/s of original bytes")
    }
}
