import Foundation
import SmolTensor

// Calibration statistics file (HDF5, written by `smolconv calibrate`):
//
//   /                       attributes: format = "smolconv-calibration", format_version (int),
//                           corpus (string), ctx (int), windows (int), tokens (int, rows per linear),
//                           model (path), model_xxh64 (hex of the model file's XXH64), naming
//                           ("gguf" or "hf"), smolconv_version (string)
//   /tensors/<NAME>/        one group per weight tensor (NAME: the checkpoint's own tensor name),
//                           attributes: in_features, layer, experts (0 dense), tokens (total rows),
//                           shares_input_with (the first tensor of the same input; itself if none)
//     importance            F32 [in] or [E, in]       Σx²/N, llama-imatrix's per-column importance
//     mean_abs              F32 [in] or [E, in]       Σ|x|/N, AWQ's activation scale
//     counts                I64 [1] or [E]            N: rows seen (per expert for MoE)
//     hessian               F32 [in, in] or [E, in, in]  Σ x·xᵀ/N (GPTQ); optional
// Tensors that share an input (q/k/v, gate/up) share the datasets: hard links to the first
// tensor's, so h5py sees a dataset under every name and the bytes are stored once.
// MoE experts: one group per expert input with [E, …] datasets, a row for every expert of the
// layer (zeros and count 0 for experts no token was routed to). HF naming uses the engine's stacked
// names (`model.layers.N.<prefix>experts.gate_up_proj` for the gate/up input, `….down_proj`); GGUF
// naming the first of llama.cpp's stacks present (`blk.N.ffn_gate_exps.weight` or
// `ffn_gate_up_exps`, `blk.N.ffn_down_exps.weight`); ffn_up_exps reads the gate stack's group
// (ExpertStatisticsIndex).

/// Metadata of a calibration run.
public struct CalibrationInfo: Sendable, Equatable {
    public var corpus: String
    public var ctx: Int
    public var windows: Int
    public var tokens: Int
    public var model: String
    public var modelHash: String
    /// "gguf" when tensor names are GGUF names, "hf" for Hugging Face names.
    public var naming: String
    public var smolconvVersion: String

    public init(corpus: String, ctx: Int, windows: Int, tokens: Int, model: String, modelHash: String,
                naming: String, smolconvVersion: String) {
        self.corpus = corpus; self.ctx = ctx; self.windows = windows; self.tokens = tokens
        self.model = model; self.modelHash = modelHash; self.naming = naming; self.smolconvVersion = smolconvVersion
    }
}

/// The statistics of one weight tensor, as read back. [E] leading dimension for MoE stacks.
public struct TensorStatistics: Sendable {
    public var name: String
    public var inFeatures: Int
    /// 0 for dense weights.
    public var experts: Int
    /// [in] or [E, in]
    public var importance: [Float]
    public var meanAbs: [Float]
    /// [1] or [E]
    public var counts: [Int]
    public var sharesInputWith: String
}

public enum CalibrationFormat {
    public static let name = "smolconv-calibration"
    public static let version: Int64 = 1
    /// Largest dataset read back (elements); a 16k-wide Hessian is 2.7e8.
    static let readLimit = 1 << 31
}

/// Writes collected statistics. `rename` maps the engine's HF names to the checkpoint's names
/// (nil: the tensor is skipped, e.g. a name the checkpoint does not have). `expertsPerLayer`: the
/// model's expert count per MoE layer, so that experts no token reached (always the case for some
/// experts of a short corpus) still get their zero rows and count 0 in the [E, …] datasets.
public enum CalibrationWriter {
    public static func write(_ inputs: [InputStatistics], info: CalibrationInfo, to path: String,
                             naming tensorName: (String) -> String? = { $0 }, expertsPerLayer: [Int: Int] = [:]) throws {
        let tmp = path + ".tmp-\(getpid())"
        let f = try HDF5File.create(tmp)
        var committed = false
        defer { if !committed { try? f.close(); try? FileManager.default.removeItem(atPath: tmp) } }
        try f.setAttribute("/", "format", CalibrationFormat.name)
        try f.setAttribute("/", "format_version", CalibrationFormat.version)
        try f.setAttribute("/", "corpus", info.corpus)
        try f.setAttribute("/", "ctx", Int64(info.ctx))
        try f.setAttribute("/", "windows", Int64(info.windows))
        try f.setAttribute("/", "tokens", Int64(info.tokens))
        try f.setAttribute("/", "model", info.model)
        try f.setAttribute("/", "model_xxh64", info.modelHash)
        try f.setAttribute("/", "naming", info.naming)
        try f.setAttribute("/", "smolconv_version", info.smolconvVersion)
        try f.createGroup("/tensors")

        // Dense inputs: one entry; MoE: the experts of one stacked tensor gathered into [E, …].
        var groups: [(weights: [String], parts: [InputStatistics])] = []
        var index: [String: Int] = [:]
        for s in inputs {
            if let i = index[s.weights[0]] { groups[i].parts.append(s) } else {
                index[s.weights[0]] = groups.count
                groups.append((s.weights, [s]))
            }
        }
        for g in groups {
            let names = g.weights.compactMap(tensorName)
            guard let first = names.first else { continue }
            let n = g.parts[0].inDim
            let isMoE = g.parts[0].expert != nil
            let E = isMoE ? max((g.parts.compactMap(\.expert).max() ?? 0) + 1, expertsPerLayer[g.parts[0].layer] ?? 0) : 0
            let rowsOut = isMoE ? E : 1
            var importance = [Float](repeating: 0, count: rowsOut * n), meanAbs = importance
            var counts = [Int64](repeating: 0, count: rowsOut)
            var hessian: [Float]? = g.parts[0].hessianUpper == nil ? nil : [Float](repeating: 0, count: rowsOut * n * n)
            for p in g.parts {
                let r = p.expert ?? 0
                importance.replaceSubrange(r * n..<(r + 1) * n, with: p.importance)
                meanAbs.replaceSubrange(r * n..<(r + 1) * n, with: p.meanAbs)
                counts[r] = Int64(p.tokens)
                if let h = p.hessian { hessian!.replaceSubrange(r * n * n..<(r + 1) * n * n, with: h) }
            }
            let base = "/tensors/\(first)"
            try f.createGroup(base)
            let vshape = isMoE ? [E, n] : [n]
            try f.write(base + "/importance", importance, shape: vshape)
            try f.write(base + "/mean_abs", meanAbs, shape: vshape)
            try f.write(base + "/counts", counts, shape: [rowsOut])
            if let hessian { try f.write(base + "/hessian", hessian, shape: isMoE ? [E, n, n] : [n, n]) }
            for name in names {
                let group = "/tensors/\(name)"
                if name != first {
                    try f.createGroup(group)
                    for d in ["importance", "mean_abs", "counts"] + (hessian == nil ? [] : ["hessian"]) {
                        try f.hardLink(base + "/" + d, group + "/" + d)
                    }
                }
                try f.setAttribute(group, "in_features", Int64(n))
                try f.setAttribute(group, "layer", Int64(g.parts[0].layer))
                try f.setAttribute(group, "experts", Int64(E))
                try f.setAttribute(group, "tokens", counts.reduce(0, +))
                try f.setAttribute(group, "shares_input_with", first)
            }
        }
        try f.close()
        guard rename(tmp, path) == 0 else {
            throw SmolError(.io, file: path, "cannot move the finished file into place: \(String(cString: strerror(errno)))")
        }
        committed = true
    }
}

/// A calibration file opened for reading; datasets are read on demand (Hessians can be large).
public final class CalibrationFile: @unchecked Sendable {   // the HDF5 handle is used under `lock`
    public let path: String
    public let info: CalibrationInfo
    /// Tensor names with statistics, sorted.
    public let tensorNames: [String]
    private let file: HDF5File
    private let lock = NSLock()

    public init(path: String) throws {
        self.path = path
        let file = try HDF5File.open(path)
        self.file = file
        guard try file.stringAttribute("/", "format") == CalibrationFormat.name else {
            throw SmolError(.malformed, file: path, at: "attribute 'format'", "not a smolconv calibration file")
        }
        let version = try file.int64Attribute("/", "format_version") ?? 0
        guard version == CalibrationFormat.version else {
            throw SmolError(.unsupported, file: path, at: "attribute 'format_version'", "version \(version); this build reads \(CalibrationFormat.version)")
        }
        func s(_ k: String) throws -> String { try file.stringAttribute("/", k) ?? "" }
        func i(_ k: String) throws -> Int { Int(try file.int64Attribute("/", k) ?? 0) }
        info = CalibrationInfo(corpus: try s("corpus"), ctx: try i("ctx"), windows: try i("windows"), tokens: try i("tokens"),
                               model: try s("model"), modelHash: try s("model_xxh64"), naming: try s("naming"),
                               smolconvVersion: try s("smolconv_version"))
        tensorNames = file.exists("/tensors") ? try file.children("/tensors").sorted() : []
    }

    public func has(_ name: String) -> Bool { tensorNames.contains(name) }

    /// The per-column statistics of `name` (nil when the file has none for it).
    public func statistics(_ name: String) throws -> TensorStatistics? {
        lock.lock(); defer { lock.unlock() }
        let base = "/tensors/\(name)"
        guard file.exists(base) else { return nil }
        let n = Int(try file.int64Attribute(base, "in_features") ?? 0)
        let E = Int(try file.int64Attribute(base, "experts") ?? 0)
        let imp = try file.readFloats(base + "/importance", limit: CalibrationFormat.readLimit)
        let mean = try file.readFloats(base + "/mean_abs", limit: CalibrationFormat.readLimit)
        let counts = try file.readInt64s(base + "/counts", limit: 1 << 24)
        let want = E > 0 ? [E, n] : [n]
        guard imp.shape == want, mean.shape == want, counts.values.count == max(E, 1) else {
            throw SmolError(.malformed, file: path, at: base, "statistics of shape \(imp.shape) / \(mean.shape) for in_features \(n), experts \(E)")
        }
        return TensorStatistics(name: name, inFeatures: n, experts: E, importance: imp.values, meanAbs: mean.values,
                                counts: counts.values.map { Int($0) },
                                sharesInputWith: try file.stringAttribute(base, "shares_input_with") ?? name)
    }

    /// Σ x·xᵀ/N of `name`'s input, [in, in] (expert `expert`'s slice for MoE), nil when absent.
    public func hessian(_ name: String, expert: Int? = nil) throws -> [Float]? {
        lock.lock(); defer { lock.unlock() }
        let d = "/tensors/\(name)/hessian"
        guard file.exists(d) else { return nil }
        let shape = try file.shape(d)
        if let e = expert {
            guard shape.count == 3, shape[1] == shape[2], e < shape[0] else {
                throw SmolError(.malformed, file: path, at: d, "expert \(e) of a Hessian of shape \(shape)")
            }
            return try file.readFloats(d, leading: e, limit: CalibrationFormat.readLimit).values
        }
        guard shape.count == 2, shape[0] == shape[1] else {
            throw SmolError(.malformed, file: path, at: d, "Hessian of shape \(shape)")
        }
        return try file.readFloats(d, limit: CalibrationFormat.readLimit).values
    }
}
