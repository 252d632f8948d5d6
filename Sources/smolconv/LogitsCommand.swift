import ArgumentParser
import Foundation
import SmolConvert
import SmolEngine
import SmolFormats
import SmolModels
import SmolTensor

struct Logits: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run token ids through a model and write the logits (and hidden states) as safetensors.",
        discussion: """
        Writes float32 `logits` [T, V] and, with --hidden-states, `hidden_states.0` … \
        `hidden_states.L` [T, D] numbered as transformers' output_hidden_states (0 = embeddings, \
        L = final norm output). The ids are used as given (no BOS is added).
        """
    )

    @Argument(help: "A .gguf file, a Hugging Face folder or a .safetensors file.")
    var model: String

    @Option(help: "Token ids: a JSON array (or a file holding one) or comma-separated ids.")
    var tokens: String

    @Option(help: "The .safetensors file to write.")
    var output: String

    @Flag(name: .customLong("hidden-states"), help: "Also write every layer's hidden states.")
    var hiddenStates = false

    func run() throws {
        try runReportingErrors {
            let ids = try EvaluationInput.parseIDs(tokens)
            let ckpt = try Checkpoint.open(model)
            let engine = try Engine.load(checkpoint: ckpt)
            let start = Date()
            let out = try LogitsExport.write(engine: engine, tokens: ids, to: output, hiddenStates: hiddenStates,
                                             protecting: [model])
            let extra = out.hiddenStates.map { ", \($0.count) hidden states" } ?? ""
            Console.note("forward pass of \(ids.count) tokens in \(Format.fixed(Date().timeIntervalSince(start), 2)) s")
            Console.out("wrote \(output) (logits [\(ids.count), \(engine.vocabSize)]\(extra))")
        }
    }
}
