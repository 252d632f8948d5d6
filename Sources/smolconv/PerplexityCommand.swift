import ArgumentParser
import Foundation
import SmolConvert
import SmolEngine
import SmolFormats
import SmolModels
import SmolTensor
import SmolTrain

/// Options the evaluation commands share: where the tokens come from and the chunk size.
struct EvaluationTextOptions: ParsableArguments {
    @Option(name: .customLong("text-file"), help: "A UTF-8 text, tokenized with the model's tokenizer (BOS first when the model adds one).")
    var textFile: String?

    @Option(name: .customLong("tokens"), help: "Token ids instead of a text: a JSON array (or file holding one) or comma-separated ids.")
    var tokens: String?

    @Option(help: "Tokens per chunk (llama.cpp -c).")
    var ctx: Int = 512

    func validate() throws {
        if (textFile == nil) == (tokens == nil) { throw ValidationError("give exactly one of --text-file and --tokens") }
        if ctx < 4 { throw ValidationError("--ctx must be at least 4") }
    }

    /// The evaluation tokens for `checkpoint`.
    func load(for checkpoint: Checkpoint) throws -> [Int] {
        if let tokens { return try EvaluationInput.parseIDs(tokens) }
        return try EvaluationInput.tokenize(try EvaluationInput.readText(textFile!), checkpoint: checkpoint)
    }
}

struct PerplexityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "perplexity",
        abstract: "Perplexity of a model on a text, with llama.cpp's protocol (llama-perplexity).",
        discussion: """
        The text is tokenized with BOS (when the model adds one) and cut into tokens/ctx chunks of \
        --ctx tokens; each chunk starts from an empty cache with its first token set to BOS, and \
        only its second half is scored (positions ctx/2 … ctx-2 predicting the next token). PPL = \
        exp(mean NLL) ± llama.cpp's standard error. The text must have at least 2 × ctx tokens.

        MODEL is a GGUF file (block types dequantized exactly), a Hugging Face folder or a \
        .safetensors file with config.json beside it; the engine computes in Float32.

        --json prints {"ppl", "ppl_stderr", "tokens_scored", "chunks", "ctx", "seconds", \
        "tokens_per_second"}; tokens_per_second counts every token run through the model \
        (chunks × ctx). Progress goes to stderr.

        --adapter DIR applies a PEFT LoRA adapter (as `smolconv train` writes it) through the \
        training forward (SmolTrain: y = x·Wᵀ + (alpha/r)·(x·Aᵀ)·Bᵀ, no merged weight; a dense \
        GGUF's weights stay in their stored blocks); the protocol is the same.
        """
    )

    @Argument(help: "A .gguf file, a Hugging Face folder or a .safetensors file.")
    var model: String

    @OptionGroup var text: EvaluationTextOptions
    @OptionGroup var output: OutputOptions

    @Option(help: "A PEFT LoRA adapter folder to apply (adapter_config.json, adapter_model.safetensors).")
    var adapter: String?

    func run() throws {
        try runReportingErrors {
            let ckpt = try Checkpoint.open(model)
            let tokens = try text.load(for: ckpt)
            let p = PerplexityProtocol(context: text.ctx, bos: EvaluationInput.bos(of: ckpt))
            let chunks = try p.chunkCount(tokenCount: tokens.count)
            Console.note("perplexity: \(Format.grouped(tokens.count)) tokens, \(chunks) chunks of \(text.ctx), scoring \(Format.grouped(chunks * p.scoredPerChunk))")
            let loadStart = Date()
            let progress = Console.Progress("perplexity", total: chunks)
            let report: Perplexity.Progress = { i, n, ppl in
                progress.update(i, of: n, detail: "[\(i)/\(n)] \(Format.fixed(ppl, 4))")
                if !Console.stderrIsTTY { Console.err("[\(i)]\(Format.fixed(ppl, 4)),") }
            }
            let r: PerplexityResult
            if let adapter {
                var lora: LoRAModel? = nil
                if let g = ckpt.gguf, let r = try? GGUFWeightReader(file: g), r.config.moe == nil { lora = try LoRAModel.quantized(gguf: g) }
                let loraModel = try lora ?? LoRAModel(model: try ModelLoader.load(checkpoint: ckpt))
                let prefix = DenseArchitectures.table[loraModel.spec.modelType]?.names.prefix ?? "model."
                let (weights, _) = try PEFTAdapter.read(directory: adapter, spec: loraModel.spec, namePrefix: prefix)
                Console.note("loaded \(model) with adapter \(adapter) (r=\(weights.config.rank)) in \(Format.fixed(Date().timeIntervalSince(loadStart), 1)) s")
                r = try Perplexity.run(vocabSize: loraModel.spec.vocabSize, tokens: tokens, protocol: p, progress: report) { chunk, from in
                    try loraModel.logits(tokens: chunk, adapter: weights, fromRow: from)
                }
            } else {
                let engine = try Engine.load(checkpoint: ckpt)
                Console.note("loaded \(model) in \(Format.fixed(Date().timeIntervalSince(loadStart), 1)) s")
                r = try Perplexity.run(engine, tokens: tokens, protocol: p, progress: report)
            }
            if !Console.stderrIsTTY { Console.err("\n") }
            progress.finish("\(r.chunks) chunks in \(Format.fixed(r.seconds, 1)) s")
            if output.json {
                Console.out(JSONValue.object(JSONObject([
                    ("ppl", .double(r.perplexity)),
                    ("ppl_stderr", .double(r.standardError)),
                    ("tokens_scored", .int(r.tokensScored)),
                    ("chunks", .int(r.chunks)),
                    ("ctx", .int(r.context)),
                    ("seconds", .double(r.seconds)),
                    ("tokens_per_second", .double(r.tokensPerSecond)),
                ])).serialized(indent: 2))
            } else {
                Console.out("PPL = \(Format.fixed(r.perplexity, 4)) +/- \(Format.fixed(r.standardError, 5))")
                Console.out("tokens scored \(Format.grouped(r.tokensScored)) (\(r.chunks) chunks × \(p.scoredPerChunk))")
                Console.out("speed         \(Format.fixed(r.tokensPerSecond, 1)) tokens/s (\(Format.grouped(r.chunks * r.context)) tokens in \(Format.fixed(r.seconds, 2)) s)")
            }
        }
    }
}
