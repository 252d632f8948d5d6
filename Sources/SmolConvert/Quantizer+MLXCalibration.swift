import Foundation
import SmolCalibration
import SmolFormats
import SmolModels
import SmolQuant
import SmolTensor

/// `quantize --format mlx --calibration STATS --method imatrix|gptq`: the MLX folder's affine
/// weights (same layout, same tensors, same config as the plain MLX output) with each quantized
/// weight's integers, scales and biases chosen from calibration statistics instead of
/// mx.quantize's rounding. Works in Hugging Face naming: a statistics file in HF naming is read
/// directly, a GGUF-named one through the architecture's name table; per-expert MoE weights
/// (`…experts.E.gate_proj.weight`, Mixtral's `w1/w2/w3`) read expert E's slice of their stack's
/// [E, …] statistics, and an expert without calibration tokens is rounded as mx.quantize does
/// and listed.
final class AffineCalibration: @unchecked Sendable {   // used by the single writer thread
    let method: CalibrationMethod
    let gptq: GPTQOptions
    let file: any CalibrationStatisticsSource
    private let experts: ExpertStatisticsIndex
    private let mapping: GGUFArchitectureMapping?
    /// Per tensor: how it was rounded (a weight may be quantized twice by the writer's cache).
    private var methodOf: [String: String] = [:]
    private var fallbackOf: [String: Int] = [:]

    init(path: String, method: CalibrationMethod, gptq: GPTQOptions, modelType: String) throws {
        switch method {
        case .awq, .awqGPTQ:
            throw SmolError(.unsupported, "--method \(method.rawValue) folds scales into norms and producer rows in GGUF naming; with --format mlx use imatrix or gptq")
        default:
            break
        }
        self.method = method
        self.gptq = gptq
        file = try openCalibrationStatistics(path)
        experts = ExpertStatisticsIndex(file)
        mapping = GGUFArchitectureMapping.byModelType[modelType] ?? GGUFArchitectureMapping.moeByModelType[modelType]
        if method == .gptq, file is ImatrixGGUF {
            throw SmolError(.invalidArgument, file: path, "--method gptq needs Hessians (smolconv calibrate); an imatrix holds importance only")
        }
    }

    /// The statistics entry of an HF weight and, for a per-expert weight, its expert.
    func locate(_ name: String) -> (name: String, expert: Int?)? {
        if file.has(name) { return (name, nil) }
        if let g = mapping?.ggufName(hf: name), file.has(g) { return (g, nil) }
        if let (n, e) = experts.forPerExpert(name) { return (n, e) }
        return nil
    }

    /// Quantizes W [rows, cols] named `name`; scales and biases are stored as `dtype`.
    func quantize(_ name: String, _ w: [Float], rows: Int, cols: Int, target: AffineTarget, dtype: DType) throws -> MLXAffine.Quantized {
        let rtn = { try MLXAffine.quantize(w, rows: rows, cols: cols, bits: target.bits, groupSize: target.groupSize) }
        guard method != .rtn, let (sn, expert) = locate(name), let st = try file.statistics(sn) else {
            methodOf[name] = nil
            return try rtn()
        }
        let index = expert ?? 0
        guard st.inFeatures == cols, (expert == nil) == (st.experts == 0), index < st.counts.count else {
            throw SmolError(.mismatch, file: file.path, at: sn,
                            "statistics for \(st.inFeatures) input columns and \(st.experts) experts do not fit \(name) ([\(rows), \(cols)]\(expert.map { ", expert \($0)" } ?? ""))")
        }
        guard st.counts[index] > 0 else {
            // No token reached this expert: nothing to weight by.
            methodOf[name] = "rtn (expert without tokens)"
            if let expert { fallbackOf[name] = expert }
            return try rtn()
        }
        let importance = Array(st.importance[(index * cols)..<((index + 1) * cols)])
        var hessian: [Float]?
        if method == .gptq {
            hessian = try file.hessian(sn, expert: expert)
            guard hessian != nil else {
                throw SmolError(.invalidArgument, file: file.path, at: sn, "--method gptq needs a Hessian, which this file does not hold (calibrate without --no-hessian)")
            }
        }
        methodOf[name] = method.rawValue
        return try CalibratedQuantizer.quantizeAffine(target, w, rows: rows, cols: cols, method: method, importance: importance,
                                                      hessian: hessian, gptq: gptq, storedAs: dtype)
    }

    /// Expert slices rounded to nearest for want of tokens: each per-expert tensor with its expert.
    var expertFallbacks: [QuantizeSummary.ExpertFallback] {
        fallbackOf.keys.sorted().map { QuantizeSummary.ExpertFallback(tensor: $0, experts: [fallbackOf[$0]!]) }
    }

    func summaryNotes() -> [String] {
        var counts: [String: Int] = [:]
        for m in methodOf.values { counts[m, default: 0] += 1 }
        return ["calibration: \(file.path) (corpus \(file.info.corpus), \(file.info.tokens) tokens, ctx \(file.info.ctx)); "
                + (counts.isEmpty ? "no quantized weight has statistics" : counts.keys.sorted().map { "\($0) ×\(counts[$0]!)" }.joined(separator: ", "))
                + "; other weights rounded as mx.quantize"]
    }
}
