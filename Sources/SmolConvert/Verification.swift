import Foundation
import SmolEngine
import SmolFormats
import SmolModels
import SmolTensor

/// `smolconv verify`: the engine as the judge of a conversion. Both models run on the same
/// tokens under llama.cpp's perplexity protocol; the report holds both perplexities, the KL
/// divergence of the converted model from the original at every scored position, top-1
/// agreement, per-tensor SQNR, and both throughputs.
public struct VerifyReport: Sendable {
    public var originalPath: String
    public var convertedPath: String
    public var divergence: DivergenceResult
    public var tensors: TensorComparisonResult

    public var pplOriginal: Double { divergence.original.perplexity }
    public var pplConverted: Double { divergence.converted.perplexity }
    public var deltaPPL: Double { pplConverted - pplOriginal }

    /// The machine-readable report. SQNR of bit-identical tensors is +∞, which JSON cannot hold:
    /// `sqnr_db` is null there and `identical` true.
    public func json() -> JSONValue {
        func num(_ d: Double) -> JSONValue { d.isFinite ? .double(d) : .null }
        let d = divergence
        let tensorList: [JSONValue] = tensors.tensors.map { t in
            .object(JSONObject([
                ("name", .string(t.name)),
                ("converted_name", .string(t.convertedName)),
                ("shape", .array(t.shape.map { JSONValue.int($0) })),
                ("original_type", .string(t.originalType.name)),
                ("converted_type", .string(t.convertedType.name)),
                ("sqnr_db", num(t.sqnrDB)),
                ("identical", .bool(t.identical)),
            ]))
        }
        return .object(JSONObject([
            ("original", .string(originalPath)),
            ("converted", .string(convertedPath)),
            ("ppl_original", num(pplOriginal)),
            ("ppl_original_stderr", num(d.original.perplexityStandardError)),
            ("ppl_converted", num(pplConverted)),
            ("ppl_converted_stderr", num(d.converted.perplexityStandardError)),
            ("delta_ppl", num(deltaPPL)),
            ("kld_mean", num(d.meanKLD)),
            ("kld_mean_stderr", num(d.meanKLDStandardError)),
            ("kld_p99", num(d.kldP99)),
            ("kld_max", num(d.kld.max() ?? .nan)),
            ("kld_per_chunk", .array(d.chunkKLD.map(num))),
            ("top1_agreement", num(d.top1Agreement)),
            ("tokens_scored", .int(d.tokensScored)),
            ("chunks", .int(d.chunks)),
            ("context", .int(d.context)),
            ("original_seconds", num(d.originalSeconds)),
            ("converted_seconds", num(d.convertedSeconds)),
            ("original_tokens_per_second", num(d.originalTokensPerSecond)),
            ("converted_tokens_per_second", num(d.convertedTokensPerSecond)),
            ("tensors", .array(tensorList)),
            ("per_layer_sqnr_db", .array(tensors.perLayerSQNR.map(num))),
            ("only_in_original", .array(tensors.onlyInOriginal.map(JSONValue.string))),
            ("only_in_converted", .array(tensors.onlyInConverted.map(JSONValue.string))),
        ]))
    }

    /// Two panels: per-layer SQNR (bars; identical layers drawn to the top in grey) and mean KLD
    /// per chunk (line with markers).
    public func plot() -> RGBImage {
        let layers = tensors.perLayerSQNR
        let identicalNote = layers.contains(.infinity) ? "GREY BARS TO THE TOP: BIT-IDENTICAL (SQNR = INF)" : nil
        let sqnr = PlotPanel(title: "SQNR PER LAYER (DB), CONVERTED VS ORIGINAL", xLabel: "LAYER",
                             xTickLabels: layers.indices.map(String.init), values: layers.map { $0 },
                             style: .bars, color: (52, 101, 164), note: identicalNote)
        let chunks = divergence.chunkKLD
        let kld = PlotPanel(title: "MEAN KL DIVERGENCE PER CHUNK (NATS)", xLabel: "CHUNK (\(divergence.context) TOKENS)",
                            xTickLabels: chunks.indices.map { String($0 + 1) }, values: chunks.map { $0 },
                            style: .lineWithMarkers, color: (204, 0, 0),
                            note: String(format: "MEAN %.3E, P99 %.3E, TOP-1 AGREEMENT %.2f%%",
                                         divergence.meanKLD, divergence.kldP99, 100 * divergence.top1Agreement))
        return Plotter.render([sqnr, kld])
    }
}

public enum Verifier {
    public enum Stage: Sendable { case loading(String), chunk(Int, Int), tensors(Int, Int) }
    public typealias Progress = (Stage) -> Void

    /// Loads both checkpoints, runs them on `tokens`, compares their tensors.
    public static func run(original: String, converted: String, tokens: [Int], protocol p: PerplexityProtocol,
                           options: EngineOptions = EngineOptions(), progress: Progress? = nil) throws -> VerifyReport {
        let oc = try Checkpoint.open(original), cc = try Checkpoint.open(converted)
        progress?(.loading(original))
        let a = try Engine.load(checkpoint: oc, options: options)
        progress?(.loading(converted))
        let b = try Engine.load(checkpoint: cc, options: options)
        let d = try Divergence.run(original: a, converted: b, tokens: tokens, protocol: p) { i, n, _ in
            progress?(.chunk(i, n))
        }
        let t = try TensorComparison.compare(original: oc, converted: cc) { i, n, _ in progress?(.tensors(i, n)) }
        return VerifyReport(originalPath: original, convertedPath: converted, divergence: d, tensors: t)
    }
}
