import ArgumentParser
import Foundation
import SmolConvert
import SmolFormats
import SmolTensor

extension ConvertOptions.OutType: ExpressibleByArgument {}

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert between Hugging Face folders, safetensors files and GGUF files.",
        discussion: """
        The output kind follows OUT: a name ending in .gguf writes GGUF (v3), one ending in \
        .safetensors writes a single safetensors file, anything else writes a Hugging Face folder \
        (model.safetensors or shards with an index, config.json, tokenizer files).

        HF ↔ GGUF uses llama.cpp's tensor names, metadata keys and value conventions (Q/K row \
        permutation for llama-style RoPE, Gemma norms stored as 1 + w) for llama, smollm3, qwen3, \
        gemma2 and gemma3. GGUF → GGUF and HF → HF change float types only. Quantized GGUF tensors \
        are dequantized exactly when a float output is asked for.

        --outtype auto (the default) keeps each tensor's float type, so HF → GGUF → HF is \
        bit-identical; 1-D tensors (norms, biases) are stored as F32 in GGUF, as llama.cpp does.
        """
    )

    @Argument(help: "Input: a Hugging Face folder, a .safetensors file or a .gguf file.")
    var input: String

    @Argument(help: "Output: a .gguf file, a .safetensors file or a folder (must not exist).")
    var output: String

    @Option(help: "Float type of the weights: \(ConvertOptions.OutType.allCases.map(\.rawValue).joined(separator: ", ")).")
    var outtype: ConvertOptions.OutType = .auto

    @Option(help: "Largest safetensors shard in bytes for folder output (default 5000000000).")
    var maxShardSize: Int?

    @OptionGroup var outputOptions: OutputOptions

    func validate() throws {
        if let s = maxShardSize, s <= 0 { throw ValidationError("--max-shard-size must be positive") }
    }

    func run() throws {
        try runReportingErrors {
            var options = ConvertOptions()
            options.outType = outtype
            if let s = maxShardSize { options.maxShardBytes = s }
            let progress = Console.Progress("convert", total: 1)
            let summary = try Converter.convert(input: input, output: output, options: options) { done, total, name in
                progress.update(done, of: total, detail: name)
            }
            progress.finish("\(summary.tensors.count) tensors, \(Format.bytes(summary.bytesWritten)) in \(Format.fixed(summary.seconds, 2)) s")
            for n in summary.notes { Console.note(n) }
            if outputOptions.json {
                var hist: [String: Int] = [:]
                for t in summary.tensors { hist[t.type.name, default: 0] += 1 }
                let json = JSONValue.object(JSONObject([
                    ("input", .string(summary.input)),
                    ("output", .string(summary.output)),
                    ("input_format", .string(summary.inputFormat.rawValue)),
                    ("output_format", .string(summary.outputKind.rawValue)),
                    ("architecture", summary.architecture.map(JSONValue.string) ?? .null),
                    ("tensors", .int(summary.tensors.count)),
                    ("types", .object(JSONObject(hist.sorted { $0.key < $1.key }.map { ($0.key, JSONValue.int($0.value)) }))),
                    ("bytes", .int(summary.bytesWritten)),
                    ("seconds", .double(summary.seconds)),
                    ("notes", .array(summary.notes.map(JSONValue.string))),
                ]))
                Console.out(json.serialized(indent: 2))
            } else {
                Console.out("wrote \(summary.output) (\(summary.outputKind.rawValue), \(summary.tensors.count) tensors, \(Format.grouped(summary.bytesWritten)) bytes)")
            }
        }
    }
}
