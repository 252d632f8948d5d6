import ArgumentParser
import Foundation
import SmolConvert
import SmolEngine
import SmolFormats
import SmolModels
import SmolTensor

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Judge a conversion: run the original and the converted model on the same text and compare.",
        discussion: """
        Both models run on the same chunks and scored positions as `smolconv perplexity` \
        (llama.cpp's protocol). Reported: the perplexity of each and their difference, the mean and \
        99th-percentile KL(original ‖ converted) over the scored positions (full softmax, Float32 \
        engine: 0 for the same weights, where llama.cpp shows a floor near 0.003–0.005), top-1 \
        agreement, per-tensor SQNR in dB between the two checkpoints where names correspond \
        (across formats through llama.cpp's name map; both dequantized), and both throughputs. \
        The text is tokenized with ORIGINAL's tokenizer.

        --json keys: ppl_original, ppl_converted, delta_ppl, kld_mean, kld_p99, top1_agreement, \
        tokens_scored, tensors [{name, converted_name, shape, original_type, converted_type, \
        sqnr_db (null when bit-identical), identical}], per_layer_sqnr_db, kld_per_chunk, and the \
        throughputs. --plot writes a PNG: SQNR per layer and KLD per chunk.
        """
    )

    @Argument(help: "The original checkpoint (.gguf, Hugging Face folder or .safetensors).")
    var original: String

    @Argument(help: "The converted checkpoint.")
    var converted: String

    @OptionGroup var text: EvaluationTextOptions
    @OptionGroup var output: OutputOptions

    @Option(help: "Write a PNG plot (per-layer SQNR, KLD per chunk) to this path.")
    var plot: String?

    func run() throws {
        try runReportingErrors {
            let ckpt = try Checkpoint.open(original)
            let tokens = try text.load(for: ckpt)
            let p = PerplexityProtocol(context: text.ctx, bos: EvaluationInput.bos(of: ckpt))
            let chunks = try p.chunkCount(tokenCount: tokens.count)
            Console.note("verify: \(Format.grouped(tokens.count)) tokens, \(chunks) chunks of \(text.ctx), scoring \(Format.grouped(chunks * p.scoredPerChunk))")
            let chunkBar = Console.Progress("verify", total: chunks)
            let tensorBar = Console.Progress("tensors", total: 1)
            let report = try Verifier.run(original: original, converted: converted, tokens: tokens, protocol: p) { stage in
                switch stage {
                case .loading(let path): Console.note("loading \(path)")
                case .chunk(let i, let n):
                    chunkBar.update(i, of: n, detail: "chunk \(i)/\(n)")
                    if !Console.stderrIsTTY { Console.err("[\(i)/\(n)]" + (i == n ? "\n" : " ")) }
                case .tensors(let i, let n): tensorBar.update(i, of: n, detail: "\(i)/\(n)")
                }
            }
            chunkBar.finish("\(report.divergence.chunks) chunks")
            tensorBar.finish("\(report.tensors.tensors.count) tensors compared")
            if let plot {
                let out = try OutputFile(path: plot, protecting: [original, converted])
                try out.write(report.plot().pngData())
                try out.commit()
                Console.note("wrote \(plot)")
            }
            if output.json {
                Console.out(report.json().serialized(indent: 2))
            } else {
                Console.out(render(report))
            }
        }
    }

    func render(_ r: VerifyReport) -> String {
        let d = r.divergence
        func sqnr(_ v: Double) -> String { v == .infinity ? "exact" : Format.fixed(v, 2) }
        var lines: [String] = []
        lines.append("                     original              converted")
        lines.append("PPL                  \(pad(Format.fixed(r.pplOriginal, 4) + " ± " + Format.fixed(d.original.perplexityStandardError, 4)))\(Format.fixed(r.pplConverted, 4)) ± \(Format.fixed(d.converted.perplexityStandardError, 4))")
        lines.append("tokens/s             \(pad(Format.fixed(d.originalTokensPerSecond, 1)))\(Format.fixed(d.convertedTokensPerSecond, 1))")
        lines.append("")
        lines.append("ΔPPL                 \(String(format: "%+.6f", r.deltaPPL)) (\(String(format: "%+.4f", 100 * r.deltaPPL / r.pplOriginal)) %)")
        lines.append("mean KLD             \(String(format: "%.6e", d.meanKLD)) ± \(String(format: "%.2e", d.meanKLDStandardError))")
        lines.append("99% KLD              \(String(format: "%.6e", d.kldP99))")
        lines.append("max KLD              \(String(format: "%.6e", d.kld.max() ?? .nan))")
        lines.append("same top-1           \(Format.fixed(100 * d.top1Agreement, 2)) % of \(Format.grouped(d.tokensScored)) scored tokens (\(d.chunks) chunks × \(d.context))")
        let ts = r.tensors
        let exact = ts.tensors.filter(\.identical).count
        lines.append("")
        lines.append("tensors compared     \(ts.tensors.count) (\(exact) bit-identical)" +
                     (ts.onlyInOriginal.isEmpty ? "" : ", only in original: \(ts.onlyInOriginal.joined(separator: ", "))") +
                     (ts.onlyInConverted.isEmpty ? "" : ", only in converted: \(ts.onlyInConverted.joined(separator: ", "))"))
        let width = min(50, ts.tensors.map(\.name.count).max() ?? 10)
        lines.append("  " + "tensor".padding(toLength: width, withPad: " ", startingAt: 0) + "  original  converted  SQNR dB")
        for t in ts.tensors {
            lines.append("  " + t.name.padding(toLength: max(width, t.name.count), withPad: " ", startingAt: 0) + "  " +
                         t.originalType.name.padding(toLength: 8, withPad: " ", startingAt: 0) + "  " +
                         t.convertedType.name.padding(toLength: 9, withPad: " ", startingAt: 0) + "  " + sqnr(t.sqnrDB))
        }
        return lines.joined(separator: "\n")
    }

    func pad(_ s: String) -> String { s.padding(toLength: max(22, s.count + 2), withPad: " ", startingAt: 0) }
}
