import COpenBLAS
import Foundation
import SmolQuant
import SmolTensor

/// How a weight is rounded.
public enum CalibrationMethod: String, CaseIterable, Sendable {
    /// Round to nearest with the type's own quantizer (llama-quantize without an imatrix).
    case rtn
    /// The type's quantizer weighted by the per-column importance E[x²] (llama-quantize --imatrix).
    case imatrix
    /// GPTQ with the Hessian E[x·xᵀ]; each group's grid chosen by the type's own quantizer
    /// (importance-weighted), columns rounded onto it with error feedback.
    case gptq
    /// AWQ: per-input-channel scales s = mean|x|^α (α searched per input on the Hessian output
    /// error), folded into the preceding norm (or producing weight); then imatrix rounding.
    case awq
    /// AWQ's scales, then GPTQ rounding of the scaled weights (Hessian rescaled to match).
    case awqGPTQ = "awq+gptq"
}

/// Group-wise affine int-N in MLX's layout (value = scale·q + bias per group of columns).
public struct AffineTarget: Sendable, Equatable {
    public var bits: Int
    public var groupSize: Int
    public init(bits: Int, groupSize: Int) { self.bits = bits; self.groupSize = groupSize }
    /// Storage per weight with Float16 scale and bias per group.
    public var bitsPerWeightF16: Double { Double(bits) + 32 / Double(groupSize) }
}

/// Per-tensor quantizers that use calibration statistics. Weights are [rows, cols] row-major
/// (cols = in_features); importance [cols]; Hessian [cols, cols].
public enum CalibratedQuantizer {
    // MARK: GGUF types

    /// GGUF bytes of `type` for W by `method` (.awq is handled by the pipeline: it rescales, then
    /// calls this with .imatrix).
    public static func quantizeGGUF(_ type: GGMLType, _ w: [Float], rows: Int, cols: Int, method: CalibrationMethod,
                                    importance: [Float]?, hessian: [Float]?, gptq: GPTQOptions = GPTQOptions()) throws -> [UInt8] {
        switch method {
        case .rtn:
            return try GGUFQuant.quantize(type, w, rows: rows, rowLength: cols)
        case .imatrix, .awq:
            return try GGUFQuant.quantize(type, w, rows: rows, rowLength: cols, importance: importance)
        case .gptq, .awqGPTQ:
            guard let hessian else { throw SmolError(.invalidArgument, "GPTQ needs a Hessian (calibrate without --no-hessian)") }
            return try gptqGGUF(type, w, rows: rows, cols: cols, hessian: hessian, importance: importance, options: gptq)
        }
    }

    /// GPTQ onto a GGUF block type: each block's scales come from the type's quantizer (with
    /// `importance`) applied to the block's current (error-compensated) weights.
    public static func gptqGGUF(_ type: GGMLType, _ w: [Float], rows: Int, cols: Int, hessian: [Float],
                                importance: [Float]?, options: GPTQOptions = GPTQOptions()) throws -> [UInt8] {
        guard BlockGrid.supports(type) else {
            throw SmolError(.unsupported, "GPTQ onto \(type.name) is not supported (\(BlockGrid.supportedTypes.map(\.name).joined(separator: ", ")))")
        }
        let (width, blockBytes) = type.blockLayout
        guard cols % width == 0 else { throw SmolError(.invalidArgument, "rows of \(cols) are not whole \(type.name) blocks") }
        let groups = cols / width
        var blocks = [[UInt8]](repeating: [], count: groups)   // per group: [rows] blocks, scales kept
        let maxCode = BlockGrid.maxCode(type)
        let codes = try GPTQ.run(weights: w, rows: rows, cols: cols, hessian: hessian, groupWidth: width, options: options) { g, values in
            let imp = importance.map { Array($0[(g * width)..<((g + 1) * width)]) }
            let bytes = try GGUFQuant.quantize(type, values, rows: rows, rowLength: width, importance: imp)
            var grid = ColumnGrid(scale: [Float](repeating: 0, count: rows * width), offset: [Float](repeating: 0, count: rows * width),
                                  codes: [Int32](repeating: 0, count: rows * width), maxCode: maxCode)
            bytes.withUnsafeBytes { b in
                grid.scale.withUnsafeMutableBufferPointer { s in
                    grid.offset.withUnsafeMutableBufferPointer { o in
                        grid.codes.withUnsafeMutableBufferPointer { c in
                            for r in 0..<rows {
                                BlockGrid.decode(type, b.baseAddress! + r * blockBytes, codes: c.baseAddress! + r * width,
                                                 scale: s.baseAddress! + r * width, offset: o.baseAddress! + r * width)
                            }
                        }
                    }
                }
            }
            blocks[g] = bytes
            return grid
        }
        var out = [UInt8](repeating: 0, count: rows * groups * blockBytes)
        var blockCodes = [Int32](repeating: 0, count: width)
        out.withUnsafeMutableBytes { o in
            for g in 0..<groups {
                blocks[g].withUnsafeBytes { src in
                    for r in 0..<rows {
                        let dst = o.baseAddress! + (r * groups + g) * blockBytes
                        dst.copyMemory(from: src.baseAddress! + r * blockBytes, byteCount: blockBytes)
                        for k in 0..<width { blockCodes[k] = codes[r * cols + g * width + k] }
                        blockCodes.withUnsafeBufferPointer { BlockGrid.encode(type, $0.baseAddress!, into: dst) }
                    }
                }
            }
        }
        return out
    }

    // MARK: group-wise affine (MLX layout)

    /// RTN (MLX's own rounding), importance-weighted range search, or GPTQ, onto affine groups.
    /// `storedAs`: the dtype scales and biases are saved in (MLX keeps the weight's dtype). For
    /// imatrix and GPTQ each group's scale and bias are rounded to it before codes are chosen, so
    /// the codes are optimal for the values a reader will see; RTN stays mx.quantize (Float32
    /// grid, rounded when saved, as mlx does).
    public static func quantizeAffine(_ target: AffineTarget, _ w: [Float], rows: Int, cols: Int, method: CalibrationMethod,
                                      importance: [Float]?, hessian: [Float]?, gptq: GPTQOptions = GPTQOptions(),
                                      storedAs: DType = .f32) throws -> MLXAffine.Quantized {
        let gs = target.groupSize
        let store: (Float) -> Float
        switch storedAs {
        case .f16: store = { FloatBits.f16ToF32(FloatBits.f32ToF16($0)) }
        case .bf16: store = { FloatBits.bf16ToF32(FloatBits.f32ToBF16($0)) }
        default: store = { $0 }
        }
        switch method {
        case .rtn:
            return try MLXAffine.quantize(w, rows: rows, cols: cols, bits: target.bits, groupSize: gs)
        case .imatrix, .awq:
            let imp = importance ?? [Float](repeating: 1, count: cols)
            var scales = [Float](repeating: 0, count: rows * cols / gs), biases = scales
            var codes = [Int32](repeating: 0, count: rows * cols)
            for r in 0..<rows {
                for g in 0..<(cols / gs) {
                    var (s, b) = weightedAffineGrid(w, at: r * cols + g * gs, count: gs, importance: imp, at: g * gs, bits: target.bits)
                    s = store(s); b = store(b)
                    scales[r * (cols / gs) + g] = s; biases[r * (cols / gs) + g] = b
                    for k in 0..<gs { codes[r * cols + g * gs + k] = affineCode(w[r * cols + g * gs + k], s, b, bits: target.bits) }
                }
            }
            return pack(codes, scales: scales, biases: biases, rows: rows, cols: cols, target: target)
        case .gptq, .awqGPTQ:
            guard let hessian else { throw SmolError(.invalidArgument, "GPTQ needs a Hessian (calibrate without --no-hessian)") }
            let imp = importance ?? [Float](repeating: 1, count: cols)
            let groups = cols / gs
            var scales = [Float](repeating: 0, count: rows * groups), biases = scales
            let maxCode = Int32((1 << target.bits) - 1)
            let codes = try GPTQ.run(weights: w, rows: rows, cols: cols, hessian: hessian, groupWidth: gs, options: gptq) { g, values in
                var grid = ColumnGrid(scale: [Float](repeating: 0, count: rows * gs), offset: [Float](repeating: 0, count: rows * gs),
                                      codes: [Int32](repeating: 0, count: rows * gs), maxCode: maxCode)
                for r in 0..<rows {
                    var (s, b) = weightedAffineGrid(values, at: r * gs, count: gs, importance: imp, at: g * gs, bits: target.bits)
                    s = store(s); b = store(b)
                    scales[r * groups + g] = s; biases[r * groups + g] = b
                    for k in 0..<gs { grid.scale[r * gs + k] = s; grid.offset[r * gs + k] = b }
                }
                return grid
            }
            return pack(codes, scales: scales, biases: biases, rows: rows, cols: cols, target: target)
        }
    }

    @inline(__always)
    static func affineCode(_ x: Float, _ s: Float, _ b: Float, bits: Int) -> Int32 {
        guard s != 0 else { return 0 }
        let t = ((x - b) / s).rounded(.toNearestOrEven)
        return t.isNaN ? 0 : Int32(max(0, min(Float((1 << bits) - 1), t)))
    }

    /// The affine grid (scale, bias) of one group minimising Σ importance·(x − x̂)² over a range
    /// shrink search (the [min, max] range scaled by 1 − 0.02·t, t < 20, centred on the range).
    static func weightedAffineGrid(_ x: [Float], at off: Int, count n: Int, importance imp: [Float], at impOff: Int, bits: Int) -> (Float, Float) {
        var lo = Float.infinity, hi = -Float.infinity
        for k in 0..<n { lo = min(lo, x[off + k]); hi = max(hi, x[off + k]) }
        let levels = Float((1 << bits) - 1)
        guard hi > lo else { return (0, lo) }
        var best = (Float(0), lo), bestErr = Float.infinity
        for t in 0..<20 {
            let f = 1 - 0.02 * Float(t)
            let mid = (hi + lo) / 2, half = (hi - lo) / 2 * f
            let b = mid - half, s = 2 * half / levels
            var e: Float = 0
            for k in 0..<n {
                let v = x[off + k]
                let q = s * Float(affineCode(v, s, b, bits: bits)) + b
                e += (imp[impOff + k] + 1e-12) * (v - q) * (v - q)
            }
            if e < bestErr { bestErr = e; best = (s, b) }
        }
        return best
    }

    /// MLX's packing: each row a little-endian bit stream, element j at bits j·bits…
    static func pack(_ codes: [Int32], scales: [Float], biases: [Float], rows: Int, cols: Int, target: AffineTarget) -> MLXAffine.Quantized {
        let bits = target.bits, words = cols * bits / 32
        var weight = [UInt32](repeating: 0, count: rows * words)
        for r in 0..<rows {
            for j in 0..<cols {
                let bit = j * bits, c = UInt64(codes[r * cols + j])
                let wi = r * words + bit / 32, sh = bit % 32
                weight[wi] |= UInt32(truncatingIfNeeded: c << UInt64(sh))
                if sh + bits > 32 { weight[wi + 1] |= UInt32(truncatingIfNeeded: c >> UInt64(32 - sh)) }
            }
        }
        return MLXAffine.Quantized(rows: rows, cols: cols, bits: bits, groupSize: target.groupSize,
                                   weight: weight, scales: scales, biases: biases)
    }

    // MARK: error measures

    /// ‖(Ŵ − W)·X‖² / N = Σ_rows δ·H·δᵀ with H = E[x·xᵀ]: the mean squared output error on the
    /// calibration inputs. W, Ŵ [rows, cols]; H [cols, cols].
    public static func outputError(_ w: [Float], _ wq: [Float], rows: Int, cols: Int, hessian h: [Float]) -> Double {
        var d = [Float](repeating: 0, count: rows * cols)
        for i in d.indices { d[i] = wq[i] - w[i] }
        var dh = [Float](repeating: 0, count: rows * cols)
        d.withUnsafeBufferPointer { dp in
            h.withUnsafeBufferPointer { hp in
                dh.withUnsafeMutableBufferPointer { op in
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(cols), Int32(cols),
                                1, dp.baseAddress, Int32(cols), hp.baseAddress, Int32(cols), 0, op.baseAddress, Int32(cols))
                }
            }
        }
        var s = 0.0
        for i in d.indices { s += Double(d[i]) * Double(dh[i]) }
        return s
    }
}
