import Foundation
import SmolFormats
import SmolModels
import SmolTensor

/// Where `quantize --calibration` reads statistics from: smolconv's HDF5 file, or a llama.cpp
/// imatrix GGUF (importance only).
public protocol CalibrationStatisticsSource: AnyObject, Sendable {
    var path: String { get }
    var info: CalibrationInfo { get }
    /// Names of the tensors with statistics, sorted.
    var tensorNames: [String] { get }
    func has(_ name: String) -> Bool
    /// `meanAbs` is empty when the source does not hold it (llama.cpp imatrix).
    func statistics(_ name: String) throws -> TensorStatistics?
    func hessian(_ name: String, expert: Int?) throws -> [Float]?
}

extension CalibrationFile: CalibrationStatisticsSource {}

/// Opens `path` as a llama.cpp imatrix GGUF when it ends in .gguf, else as a smolconv HDF5 file.
public func openCalibrationStatistics(_ path: String) throws -> any CalibrationStatisticsSource {
    path.hasSuffix(".gguf") ? try ImatrixGGUF(path: path) : try CalibrationFile(path: path)
}

/// llama-imatrix's GGUF output (`--output-format gguf`, the default since 2025):
/// metadata general.type = "imatrix", imatrix.datasets (string array), imatrix.chunk_count,
/// imatrix.chunk_size; per weight W (GGUF name) two F32 tensors, `W.in_sum2` [n_mat, in] (ggml ne
/// [in, n_mat]: Σx² per column, per expert for MoE) and `W.counts` [n_mat] (rows seen). The
/// importance llama-quantize uses is in_sum2 / counts.
public final class ImatrixGGUF: CalibrationStatisticsSource, @unchecked Sendable {   // immutable after init
    public let path: String
    public let info: CalibrationInfo
    private let file: GGUFFile
    private let bases: Set<String>

    public init(path: String) throws {
        self.path = path
        file = try GGUFFile(path: path)
        guard file.metadata.string("general.type") == "imatrix" else {
            throw SmolError(.malformed, file: path, at: "general.type", "not a llama.cpp imatrix GGUF (general.type is not \"imatrix\")")
        }
        var b = Set<String>()
        for t in file.tensorInfos where t.name.hasSuffix(".in_sum2") { b.insert(String(t.name.dropLast(".in_sum2".count))) }
        bases = b
        let chunks = file.metadata.int("imatrix.chunk_count") ?? 0, size = file.metadata.int("imatrix.chunk_size") ?? 0
        info = CalibrationInfo(corpus: (file.metadata.stringArray("imatrix.datasets") ?? []).joined(separator: ", "),
                               ctx: size, windows: chunks, tokens: chunks * size, model: "", modelHash: "",
                               naming: "gguf", smolconvVersion: "llama-imatrix")
    }

    public func has(_ name: String) -> Bool { bases.contains(name) }
    public var tensorNames: [String] { bases.sorted() }

    public func statistics(_ name: String) throws -> TensorStatistics? {
        guard bases.contains(name), let si = file.info(name + ".in_sum2") else { return nil }
        guard file.info(name + ".counts") != nil else {
            throw SmolError(.malformed, file: path, at: "tensor '\(name).counts'", "missing (in_sum2 without counts)")
        }
        let sums = try loadFloat(file, name + ".in_sum2"), counts = try loadFloat(file, name + ".counts")
        let nMat = counts.count
        guard nMat > 0, sums.count % nMat == 0, si.shape.last == sums.count / nMat else {
            throw SmolError(.malformed, file: path, at: "tensor '\(name).in_sum2'", "\(sums.count) sums for \(nMat) counts, shape \(si.shape)")
        }
        let n = sums.count / nMat
        var imp = [Float](repeating: 0, count: sums.count)
        for m in 0..<nMat { for j in 0..<n { imp[m * n + j] = counts[m] > 0 ? sums[m * n + j] / counts[m] : 0 } }
        return TensorStatistics(name: name, inFeatures: n, experts: nMat > 1 ? nMat : 0, importance: imp, meanAbs: [],
                                counts: counts.map { Int($0) }, sharesInputWith: name)
    }

    public func hessian(_ name: String, expert: Int?) throws -> [Float]? { nil }
}
