import Foundation
import SmolCalibration
import SmolFormats
import SmolModels
import SmolQuant
import SmolTensor

/// `quantize --calibration stats.h5 --method …` inside the GGUF pipeline: which tensors have
/// statistics, how each is rounded, and AWQ's scales (searched up front, layer by layer, because
/// they change the norms and producing weights written before or after the matrices they serve).
/// Works in GGUF naming and conventions (a Hugging Face input is planned into them first); a
/// statistics file in HF naming is read through the architecture's name map.
final class CalibrationContext: @unchecked Sendable {   // used by the single writer thread
    let options: QuantizeOptions
    let file: (any CalibrationStatisticsSource)?
    let mapping: GGUFArchitectureMapping?
    /// AWQ: column scales (W·diag(s)) and row divisors (diag(1/s)·W) per GGUF tensor name, norm
    /// divisors per norm name, and the tensors' original values getter.
    private var colScale: [String: [Float]] = [:]
    private var rowScale: [String: [Float]] = [:]
    private var normScale: [String: [Float]] = [:]
    private var loaders: [String: () throws -> [Float]] = [:]
    private var used: [String: Int] = [:]
    private var awqNotes: [String] = []
    /// MoE expert stacks → their [E, …] statistics.
    private let experts: ExpertStatisticsIndex?
    /// Expert slices rounded to nearest because their expert saw no calibration token.
    private(set) var expertFallbacks: [QuantizeSummary.ExpertFallback] = []

    /// Layer weights ("blk.N.*.weight"): the 2-D matrices and the 3-D MoE expert stacks
    /// ([E, out, in]) calibration applies to.
    static func isLayerMatrix(_ t: TensorInfo) -> Bool {
        t.name.hasPrefix("blk.") && t.name.hasSuffix(".weight")
            && (t.shape.count == 2 || (t.shape.count == 3 && ExpertWeightName.ggufStack(t.name) != nil))
    }

    init(options: QuantizeOptions, tensors: [Quantizer.SourceTensor], planned: [QuantChoice], facts: QuantModelFacts) throws {
        self.options = options
        // MoE architectures (qwen3moe, olmoe, …) have their own name tables; Mixtral ("llama") and
        // gemma4 share the dense ones for everything but the experts.
        mapping = GGUFArchitectureMapping.forGGUFArchitecture(facts.architecture)
            ?? GGUFArchitectureMapping.moeByModelType.values.first { $0.ggufArchitecture == facts.architecture }
        if let path = options.calibration {
            let f = try openCalibrationStatistics(path)
            file = f
            experts = ExpertStatisticsIndex(f)
        } else {
            file = nil
            experts = nil
            if options.method != .rtn {
                throw SmolError(.invalidArgument, "--method \(options.method.rawValue) needs --calibration STATS.h5 (from smolconv calibrate)")
            }
        }
        if options.method == .awq || options.method == .awqGPTQ, let file, file is ImatrixGGUF {
            throw SmolError(.invalidArgument, file: file.path, "--method awq needs mean |x| and Hessians (smolconv calibrate); an imatrix holds importance only")
        }
        for t in tensors {
            let t = t
            loaders[t.info.name] = { try TensorValues.decode(try t.raw(), t.info) }
        }
        if options.method == .awq || options.method == .awqGPTQ { try planAWQ(tensors: tensors, planned: planned, facts: facts) }
    }

    /// The statistics' name for a GGUF tensor name.
    func statsName(_ name: String) -> String? {
        guard let file else { return nil }
        if file.has(name) { return name }
        if let hf = mapping?.hfName(gguf: name), file.has(hf) { return hf }
        return nil
    }

    func handles(_ t: TensorInfo, type: GGMLType) -> Bool {
        // Layer matrices, the output head (or tied embedding) when the statistics hold its input,
        // and MoE expert stacks with per-expert statistics.
        guard options.method != .rtn else { return false }
        if t.shape.count == 3 { return expertStatsName(t) != nil }
        return t.shape.count == 2 && statsName(t.name) != nil
    }

    /// The statistics of a GGUF expert stack [E, out, in].
    func expertStatsName(_ t: TensorInfo) -> String? {
        guard t.shape.count == 3 else { return nil }
        return experts?.forStack(t.name)
    }

    /// One expert's slice of a stack: its statistics, or nil when the expert saw no token (the
    /// caller rounds it to nearest and lists it).
    private func expertInputs(_ t: TensorInfo, stats st: TensorStatistics, statsName sn: String, expert e: Int,
                              needsHessian: Bool) throws -> (importance: [Float], hessian: [Float]?)? {
        let cols = t.shape[2]
        guard st.counts[e] > 0 else { return nil }
        let importance = Array(st.importance[(e * cols)..<((e + 1) * cols)])
        var hessian: [Float]?
        if needsHessian {
            hessian = try file!.hessian(sn, expert: e)
            guard hessian != nil else {
                throw SmolError(.invalidArgument, file: file!.path, at: sn, "--method gptq needs a Hessian, which this file does not hold (an imatrix has importance only; calibrate without --no-hessian)")
            }
        }
        return (importance, hessian)
    }

    /// The [E, …] statistics of a stack, checked against its shape [E, out, in].
    private func expertStatistics(_ t: TensorInfo) throws -> (name: String, stats: TensorStatistics)? {
        guard let sn = expertStatsName(t), let st = try file!.statistics(sn) else { return nil }
        let E = t.shape[0], cols = t.shape[2]
        guard st.experts == E, st.inFeatures == cols, st.counts.count == E else {
            throw SmolError(.mismatch, file: file!.path, at: sn,
                            "statistics for \(st.experts) experts of \(st.inFeatures) input columns; \(t.name) is \(t.shape) ([experts, out, in])")
        }
        return (sn, st)
    }

    /// Quantizes an [E, out, in] stack expert by expert: each expert's slice with its own
    /// statistics, experts without tokens with `rtn`. Returns the slices in expert order.
    private func quantizeExperts<R>(_ t: TensorInfo, _ values: [Float], method m: CalibrationMethod,
                                    calibrated: (_ w: [Float], _ importance: [Float], _ hessian: [Float]?) throws -> R,
                                    rtn: (_ w: [Float]) throws -> R) throws -> [R] {
        let E = t.shape[0], per = t.shape[1] * t.shape[2]
        guard m != .rtn, let (sn, st) = try expertStatistics(t) else {
            return try (0..<E).map { e in try rtn(Array(values[(e * per)..<((e + 1) * per)])) }
        }
        var out: [R] = []
        var skipped: [Int] = []
        for e in 0..<E {
            let w = Array(values[(e * per)..<((e + 1) * per)])
            if let (imp, h) = try expertInputs(t, stats: st, statsName: sn, expert: e, needsHessian: m == .gptq) {
                out.append(try calibrated(w, imp, h))
            } else {
                skipped.append(e)
                out.append(try rtn(w))
            }
        }
        used[m.rawValue + " (expert slices)", default: 0] += E - skipped.count
        if !skipped.isEmpty {
            used[CalibrationMethod.rtn.rawValue + " (expert slices without tokens)", default: 0] += skipped.count
            expertFallbacks.append(QuantizeSummary.ExpertFallback(tensor: t.name, experts: skipped))
        }
        return out
    }

    func replacement(_ name: String) -> (() throws -> [Float])? {
        guard let s = normScale[name], let load = loaders[name] else { return nil }
        return {
            var v = try load()
            for c in v.indices { v[c] /= s[c] }
            return v
        }
    }

    /// Values after AWQ's scaling and the importance seen by the scaled weights.
    private func prepared(_ t: TensorInfo, _ values: [Float]) throws -> (w: [Float], importance: [Float]?, hessian: [Float]?) {
        let rows = t.shape[0], cols = t.shape[1]
        var w = values
        var importance: [Float]?
        var hessian: [Float]?
        if let sn = statsName(t.name), let st = try file!.statistics(sn) {
            guard st.inFeatures == cols, st.experts == 0 else {
                throw SmolError(.mismatch, file: file!.path, at: sn, "statistics for \(st.inFeatures) input columns, the tensor has \(cols)")
            }
            importance = st.importance
            if options.method == .gptq || options.method == .awqGPTQ {
                hessian = try file!.hessian(sn, expert: nil)
                guard hessian != nil else {
                    throw SmolError(.invalidArgument, file: file!.path, at: sn, "--method gptq needs a Hessian, which this file does not hold (an imatrix has importance only; calibrate without --no-hessian)")
                }
            }
        }
        if let rs = rowScale[t.name] { for r in 0..<rows { for c in 0..<cols { w[r * cols + c] /= rs[r] } } }
        if let cs = colScale[t.name] {
            for r in 0..<rows { for c in 0..<cols { w[r * cols + c] *= cs[c] } }
            importance = importance.map { imp in (0..<cols).map { imp[$0] / (cs[$0] * cs[$0]) } }
            // The scaled weights see x / s: H' = diag(1/s)·H·diag(1/s).
            if var hh = hessian {
                for i in 0..<cols { for j in 0..<cols { hh[i * cols + j] /= cs[i] * cs[j] } }
                hessian = hh
            }
        }
        return (w, importance, hessian)
    }

    private func method(for type: GGMLType?) -> CalibrationMethod {
        switch options.method {
        case .awq: return .imatrix
        case .gptq, .awqGPTQ: return type.map(BlockGrid.supports) ?? true ? .gptq : .imatrix
        default: return options.method
        }
    }

    func quantize(_ t: TensorInfo, _ values: [Float], type: GGMLType) throws -> [UInt8] {
        if t.shape.count == 3 {
            // Rows of a stack are whole rows of one expert: the stack's bytes are the experts' in order.
            let rows = t.shape[1], cols = t.shape[2]
            let m = method(for: type)
            return try quantizeExperts(t, values, method: m, calibrated: { w, imp, h in
                try CalibratedQuantizer.quantizeGGUF(type, w, rows: rows, cols: cols, method: m, importance: imp, hessian: h, gptq: self.options.gptq)
            }, rtn: { w in
                try GGUFQuant.quantize(type, w, rows: rows, rowLength: cols)
            }).flatMap { $0 }
        }
        let (w, imp, h) = try prepared(t, values)
        let m = imp == nil ? .rtn : method(for: type)
        used[m.rawValue, default: 0] += 1
        return try CalibratedQuantizer.quantizeGGUF(type, w, rows: t.shape[0], cols: t.shape[1], method: m,
                                                    importance: imp, hessian: h, gptq: options.gptq)
    }

    /// Dequantized values of the affine int-N result.
    func quantizeAffine(_ t: TensorInfo, _ values: [Float], _ target: AffineTarget) throws -> [Float] {
        let rows = t.shape[t.shape.count - 2], cols = t.shape[t.shape.count - 1]
        guard cols % target.groupSize == 0 else {
            throw SmolError(.invalidArgument, "\(t.name): \(cols) columns are not groups of \(target.groupSize)")
        }
        if t.shape.count == 3 {
            let m = options.method == .rtn ? CalibrationMethod.rtn : method(for: nil)
            return try quantizeExperts(t, values, method: m, calibrated: { w, imp, h in
                try MLXAffine.dequantize(try CalibratedQuantizer.quantizeAffine(target, w, rows: rows, cols: cols, method: m,
                                                                                importance: imp, hessian: h, gptq: self.options.gptq))
            }, rtn: { w in
                try MLXAffine.dequantize(try MLXAffine.quantize(w, rows: rows, cols: cols, bits: target.bits, groupSize: target.groupSize))
            }).flatMap { $0 }
        }
        let (w, imp, h) = try prepared(t, values)
        let m = imp == nil ? .rtn : method(for: nil)
        used[m.rawValue, default: 0] += 1
        let q = try CalibratedQuantizer.quantizeAffine(target, w, rows: rows, cols: cols, method: m, importance: imp, hessian: h, gptq: options.gptq)
        // AWQ's scales stay folded (norms and producer rows carry their inverse).
        return try MLXAffine.dequantize(q)
    }

    func summaryNotes() -> [String] {
        var n: [String] = []
        if let file {
            n.append("calibration: \(file.path) (corpus \(file.info.corpus), \(file.info.tokens) tokens, ctx \(file.info.ctx)); "
                     + used.keys.sorted().map { "\($0) ×\(used[$0]!)" }.joined(separator: ", "))
        }
        return n + awqNotes
    }

    // MARK: AWQ

    private func planAWQ(tensors: [Quantizer.SourceTensor], planned: [QuantChoice], facts: QuantModelFacts) throws {
        guard let file else { return }
        var typeOf: [String: GGMLType] = [:]
        for (i, t) in tensors.enumerated() where planned[i].quantize { typeOf[t.info.name] = planned[i].type }
        let infos = Dictionary(tensors.map { ($0.info.name, $0.info) }, uniquingKeysWith: { a, _ in a })
        let affine = options.affine
        func roundTrip(_ name: String, rows: Int, cols: Int) -> ((_ w: [Float], _ imp: [Float]) throws -> [Float])? {
            if let affine {
                return { w, imp in
                    try MLXAffine.dequantize(try CalibratedQuantizer.quantizeAffine(affine, w, rows: rows, cols: cols, method: .imatrix, importance: imp, hessian: nil))
                }
            }
            guard let type = typeOf[name], type.isQuantized, cols % type.blockLayout.elements == 0 else { return nil }
            return { w, imp in
                try GGUFQuant.dequantize(type, try GGUFQuant.quantize(type, w, rows: rows, rowLength: cols, importance: imp), count: rows * cols)
            }
        }
        let H = facts.headCount, Hkv = max(facts.headCountKV, 1)
        var searched = 0, improved = 0
        for layer in 0..<facts.layerCount {
            let p = "blk.\(layer)."
            // (members, fold into norm | fold into producer rows, tie)
            var groups: [(members: [String], norm: String?, producer: String?, tie: ((Int) -> Int)?)] = [
                ([p + "attn_q.weight", p + "attn_k.weight", p + "attn_v.weight"], p + "attn_norm.weight", nil, nil),
                ([p + "ffn_gate.weight", p + "ffn_up.weight"], p + "ffn_norm.weight", nil, nil),
                ([p + "ffn_down.weight"], nil, p + "ffn_up.weight", nil),
            ]
            if let v = infos[p + "attn_v.weight"], H % Hkv == 0 {
                // o_proj column h·Dh + d reads value row (h / (H/Hkv))·Dh + d: one scale per value row.
                let dh = v.shape[0] / Hkv, perKV = H / Hkv
                groups.append(([p + "attn_output.weight"], nil, p + "attn_v.weight", { c in ((c / dh) / perKV) * dh + c % dh }))
            }
            for g in groups {
                guard g.members.allSatisfy({ infos[$0] != nil }),
                      let sn = statsName(g.members[0]), let st = try file.statistics(sn), st.experts == 0,
                      st.meanAbs.count == st.inFeatures, let h = try file.hessian(sn, expert: nil) else { continue }
                if let norm = g.norm, infos[norm]?.shape != [st.inFeatures] { continue }
                var members: [AWQ.Member] = []
                for name in g.members {
                    let info = infos[name]!
                    guard info.shape[1] == st.inFeatures, let rt = roundTrip(name, rows: info.shape[0], cols: info.shape[1]) else { members = []; break }
                    members.append(AWQ.Member(weights: try loaders[name]!(), rows: info.shape[0], roundTrip: rt))
                }
                guard !members.isEmpty else { continue }
                let r = try AWQ.searchScales(meanAbs: st.meanAbs, importance: st.importance, hessian: h, members: members,
                                             grid: options.awqGrid, tie: g.tie)
                searched += 1
                guard r.alpha > 0 else { continue }
                improved += 1
                for name in g.members { colScale[name] = r.scales }
                if let norm = g.norm { normScale[norm] = r.scales }
                if let producer = g.producer {
                    // Producer rows: value row k carries the scale of the o columns tied to it.
                    let rows = infos[producer]!.shape[0]
                    var rs = [Float](repeating: 1, count: rows)
                    if let tie = g.tie { for c in 0..<st.inFeatures { rs[tie(c)] = r.scales[c] } } else { rs = r.scales }
                    rowScale[producer] = rs
                }
            }
        }
        if file.tensorNames.contains(where: { $0.contains("experts.") || $0.contains("_exps.") }) {
            awqNotes.append("AWQ: MoE experts get no scales (their norm is shared by every expert); each expert is rounded with its own importance\(options.method == .awqGPTQ ? " and Hessian (GPTQ)" : "")")
        }
        awqNotes.append("AWQ: scales searched for \(searched) inputs (α grid of \(options.awqGrid)); \(improved) use α > 0, folded into norms, ffn_up rows (ffn_down) and attn_v rows (attn_output)")
    }
}
