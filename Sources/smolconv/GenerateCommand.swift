import ArgumentParser
import Foundation
import SmolConvert
import SmolEngine
import SmolFormats
import SmolModels
import SmolTensor

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text from a prompt, streaming tokens to stdout.",
        discussion: """
        The prompt is tokenized with the model's tokenizer (BOS first when the model adds one) and \
        continued with the KV cache until --max-tokens new tokens or an end-of-generation token. \
        Greedy by default (the engine's argmax, first index on ties); --temperature > 0 samples, \
        optionally with nucleus --top-p, from a seeded generator (same seed, same text).
        """
    )

    @Argument(help: "A .gguf file, a Hugging Face folder or a .safetensors file.")
    var model: String

    @Option(help: "The prompt text.")
    var prompt: String

    @Option(name: .customLong("max-tokens"), help: "New tokens at most.")
    var maxTokens: Int = 64

    @Option(help: "Sampling temperature; 0 = greedy.")
    var temperature: Double = 0

    @Option(name: .customLong("top-p"), help: "Nucleus sampling mass (with --temperature > 0).")
    var topP: Double = 1

    @Option(help: "Seed of the sampler.")
    var seed: UInt64 = 0

    func validate() throws {
        if maxTokens < 1 { throw ValidationError("--max-tokens must be at least 1") }
        if temperature < 0 { throw ValidationError("--temperature must not be negative") }
        if !(topP > 0 && topP <= 1) { throw ValidationError("--top-p must be in (0, 1]") }
    }

    func run() throws {
        try runReportingErrors {
            let ckpt = try Checkpoint.open(model)
            let codec = try EvaluationInput.codec(for: ckpt)
            let ids = try codec.encode(prompt)
            let engine = try Engine.load(checkpoint: ckpt)
            let start = Date()
            var generated: [Int] = []
            // Decode prompt + continuation each step and write the bytes not written yet, up to the
            // last complete UTF-8 character (byte-fallback pieces form characters together; the
            // prompt keeps SentencePiece's leading-space rule off the first new piece).
            var written = try codec.decode(ids).count
            let sampling = SamplingOptions(temperature: temperature, topP: topP, seed: seed)
            try engine.stream(ids, maxNewTokens: maxTokens, sampling: sampling, stopTokens: codec.stopTokens) { t in
                if codec.stopTokens.contains(t) { return false }
                generated.append(t)
                let bytes = try codec.decode(ids + generated)
                let end = TextCodec.completeUTF8Prefix(bytes)
                if end > written {
                    FileHandle.standardOutput.write(Data(bytes[written..<end]))
                    written = end
                }
                return true
            }
            let bytes = try codec.decode(ids + generated)
            if bytes.count > written { FileHandle.standardOutput.write(Data(bytes[written...])) }
            FileHandle.standardOutput.write(Data("\n".utf8))
            let secs = Date().timeIntervalSince(start)
            Console.note("\(generated.count) tokens in \(Format.fixed(secs, 2)) s (\(Format.fixed(Double(generated.count) / max(secs, 1e-9), 1)) tokens/s, prompt \(ids.count) tokens)")
        }
    }
}
