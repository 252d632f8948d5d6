import ArgumentParser
import Foundation
import SmolConvert
import SmolFormats
import SmolTensor

struct Calibrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Collect activation statistics of every linear layer (for quantize --calibration).",
        discussion: """
        Runs MODEL over a calibration text in windows of --ctx tokens (each from an empty cache, its \
        first token set to BOS, as llama-imatrix) and writes an HDF5 file with, per weight tensor \
        (named as the checkpoint names it): importance (mean x² per input column, llama-imatrix's \
        statistic), mean_abs (mean |x|, AWQ's), counts (rows seen; per expert for MoE) and hessian \
        (Σ x·xᵀ / N, GPTQ's; --no-hessian leaves it out). Tensors that see the same input (q/k/v, \
        gate/up) share the datasets (hard links).

        --calibration NAME takes a recipe of calibration/recipes.json ("default": the Debian licence \
        texts; "gpl2": GPL-2 alone). The GPL-3 evaluation text is not in any recipe.
        """
    )

    @Argument(help: "A .gguf file, a Hugging Face folder or a .safetensors file.")
    var model: String

    @Option(name: .customLong("text-file"), help: "A UTF-8 calibration text.")
    var textFile: String?

    @Option(name: .customLong("tokens"), help: "Token ids instead of a text: a JSON array (or a file holding one) or comma-separated ids.")
    var tokens: String?

    @Option(name: .customLong("calibration"), help: "A recipe of calibration/recipes.json, e.g. default.")
    var recipe: String?

    @Option(help: "Folder holding recipes.json (default: ./calibration or the repository's).")
    var calibrationDir: String?

    @Option(help: "Tokens per window.")
    var ctx: Int = 512

    @Option(help: "Use at most this many windows.")
    var maxWindows: Int?

    @Flag(help: "Do not collect Hessians (imatrix and AWQ without its error search only).")
    var noHessian = false

    @Option(name: [.short, .customLong("output")], help: "The statistics file to write (.h5).")
    var output: String

    func validate() throws {
        if [textFile, recipe, tokens].compactMap({ $0 }).count != 1 { throw ValidationError("give exactly one of --text-file, --tokens and --calibration") }
        if ctx < 2 { throw ValidationError("--ctx must be at least 2") }
    }

    func run() throws {
        try runReportingErrors {
            let corpus: Calibrator.Corpus
            if let textFile {
                corpus = .textFile(textFile)
            } else if let tokens {
                corpus = .tokens(try EvaluationInput.parseIDs(tokens))
            } else {
                guard let dir = calibrationDir ?? Calibrator.defaultDirectory() else {
                    throw SmolError(.invalidArgument, "no calibration/recipes.json found; pass --calibration-dir")
                }
                corpus = .recipe(name: recipe!, directory: dir)
            }
            var options = Calibrator.Options()
            options.ctx = ctx
            options.hessians = !noHessian
            options.maxWindows = maxWindows
            options.smolconvVersion = Smolconv.configuration.version
            let progress = Console.Progress("calibrate", total: 1)
            let s = try Calibrator.run(model: model, corpus: corpus, output: output, options: options) { i, n in
                progress.update(i, of: n, detail: "window \(i)/\(n)")
                if !Console.stderrIsTTY && (i % 10 == 0 || i == n) { Console.err("[\(i)/\(n)]" + (i == n ? "\n" : " ")) }
            }
            progress.finish("\(s.windows) windows, \(Format.grouped(s.tokens)) tokens in \(Format.fixed(s.seconds, 1)) s")
            Console.out("wrote \(s.output): statistics of \(s.tensors) tensors from \(Format.grouped(s.tokens)) tokens (\(s.windows) windows of ≤ \(ctx))")
        }
    }
}
