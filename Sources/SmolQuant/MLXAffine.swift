import SmolTensor

/// MLX's affine quantization (`mx.quantize(w, group_size, bits)`, mode "affine"), bit-identical to
/// mlx 0.32's CPU implementation for float32 weights.
///
/// Layout of a [rows, cols] matrix (formats/gguf-quants.md, "MLX affine"):
/// - `weight`: uint32 [rows, cols·bits/32]. Each row is a little-endian bit stream: element j
///   occupies bits j·bits … j·bits+bits−1 counted from bit 0 of word 0 (so 3-, 5- and 6-bit values
///   straddle word boundaries; 2/4/8 bits fill words from the low end).
/// - `scales`, `biases`: [rows, cols/groupSize], in the weight's dtype (float32 here).
/// - value = scale · q + bias (one float32 multiply, one add).
///
/// Per group: n = 2^bits − 1; scale = max((max − min)/n, 1e-7), negated unless |min| > |max|;
/// edge = min if |min| > |max| else max; q0 = rint(edge/scale); when q0 ≠ 0, scale = edge/q0 and
/// bias = edge (the edge value is then exactly representable), else bias = 0;
/// q = clamp(rint((w − bias)/scale), 0, n), rint rounding half to even.
public enum MLXAffine {
    public static let supportedBits = [2, 3, 4, 5, 6, 8]
    public static let supportedGroupSizes = [32, 64, 128]

    /// A quantized [rows, cols] matrix in MLX's layout.
    public struct Quantized: Sendable, Equatable {
        public var rows: Int
        public var cols: Int
        public var bits: Int
        public var groupSize: Int
        /// [rows, cols·bits/32]
        public var weight: [UInt32]
        /// [rows, cols/groupSize]
        public var scales: [Float]
        /// [rows, cols/groupSize]
        public var biases: [Float]

        public init(rows: Int, cols: Int, bits: Int, groupSize: Int, weight: [UInt32], scales: [Float], biases: [Float]) {
            self.rows = rows; self.cols = cols; self.bits = bits; self.groupSize = groupSize
            self.weight = weight; self.scales = scales; self.biases = biases
        }

        /// uint32 words per row.
        public var wordsPerRow: Int { cols * bits / 32 }
    }

    static func validate(rows: Int, cols: Int, bits: Int, groupSize: Int) throws {
        guard supportedBits.contains(bits) else {
            throw SmolError(.unsupported, "MLX affine quantization with \(bits) bits is not supported (2, 3, 4, 5, 6 or 8)")
        }
        guard supportedGroupSizes.contains(groupSize) else {
            throw SmolError(.unsupported, "MLX affine group size \(groupSize) is not supported (32, 64 or 128)")
        }
        guard rows >= 0, cols >= 0, cols % groupSize == 0, Checked.multiply(rows, cols) != nil else {
            throw SmolError(.invalidArgument, "a [\(rows), \(cols)] matrix cannot be split into groups of \(groupSize)")
        }
    }

    /// Quantizes a row-major [rows, cols] float32 matrix.
    public static func quantize(_ w: [Float], rows: Int, cols: Int, bits: Int, groupSize: Int) throws -> Quantized {
        try validate(rows: rows, cols: cols, bits: bits, groupSize: groupSize)
        guard w.count == rows * cols else {
            throw SmolError(.invalidArgument, "\(w.count) values are not a [\(rows), \(cols)] matrix")
        }
        let groups = rows * cols / groupSize
        var q = Quantized(rows: rows, cols: cols, bits: bits, groupSize: groupSize,
                          weight: [UInt32](repeating: 0, count: rows * cols * bits / 32),
                          scales: [Float](repeating: 0, count: groups), biases: [Float](repeating: 0, count: groups))
        let nBins = Float((1 << bits) - 1)
        let eps: Float = 1e-7
        let wordsPerGroup = groupSize * bits / 32
        w.withUnsafeBufferPointer { wp in
            q.weight.withUnsafeMutableBufferPointer { out in
                for g in 0..<groups {
                    let x = wp.baseAddress! + g * groupSize
                    var wMin = Float.infinity, wMax = -Float.infinity
                    for j in 0..<groupSize {
                        wMax = Swift.max(wMax, x[j])
                        wMin = Swift.min(wMin, x[j])
                    }
                    let mask = abs(wMin) > abs(wMax)
                    var scale = Swift.max((wMax - wMin) / nBins, eps)
                    if !mask { scale = -scale }
                    let edge = mask ? wMin : wMax
                    let q0 = (edge / scale).rounded(.toNearestOrEven)
                    var bias: Float = 0
                    if q0 != 0 {
                        scale = edge / q0
                        bias = edge
                    }
                    // The group's bits start on a word boundary (groupSize·bits is a multiple of 32).
                    var writer = BitWriter(out.baseAddress! + g * wordsPerGroup)
                    for j in 0..<groupSize {
                        var v = ((x[j] - bias) / scale).rounded(.toNearestOrEven)
                        v = Swift.min(Swift.max(v, 0), nBins)
                        writer.append(UInt64(v.isNaN ? 0 : v), bits: bits)
                    }
                    q.scales[g] = scale
                    q.biases[g] = bias
                }
            }
        }
        return q
    }

    /// Dequantizes to a row-major [rows, cols] float32 matrix (threaded for large matrices).
    public static func dequantize(_ q: Quantized) throws -> [Float] {
        try check(q)
        var out = [Float](repeating: 0, count: q.rows * q.cols)
        let gs = q.groupSize, bits = q.bits, wordsPerGroup = gs * bits / 32
        let groups = q.rows * q.cols / gs
        q.weight.withUnsafeBufferPointer { wp in
            q.scales.withUnsafeBufferPointer { sp in
                q.biases.withUnsafeBufferPointer { bp in
                    out.withUnsafeMutableBufferPointer { op in
                        let w = UnsafeShared(wp.baseAddress!), s = UnsafeShared(sp.baseAddress!)
                        let b = UnsafeShared(bp.baseAddress!), o = UnsafeShared(op.baseAddress!)
                        let chunk = Swift.max(1, GGUFQuant.parallelChunk / gs)
                        let run = { (g0: Int, g1: Int) in
                            let mask = UInt64((1 << bits) - 1)
                            for g in g0..<g1 {
                                let scale = s.value[g], bias = b.value[g]
                                let words = w.value + g * wordsPerGroup
                                let y = o.value + g * gs
                                // Read the group's stream 64 bits at a time.
                                var acc: UInt64 = 0, have = 0, next = 0
                                for j in 0..<gs {
                                    if have < bits {
                                        acc |= UInt64(words[next]) << UInt64(have)
                                        next += 1
                                        have += 32
                                    }
                                    y[j] = scale * Float(acc & mask) + bias
                                    acc >>= UInt64(bits)
                                    have -= bits
                                }
                            }
                        }
                        if q.rows * q.cols < GGUFQuant.parallelThreshold { run(0, groups) } else {
                            parallelChunks(count: groups, chunk: chunk, run)
                        }
                    }
                }
            }
        }
        return out
    }

    /// The plain twin of `dequantize`: element j's bits located one by one.
    public static func dequantizeReference(_ q: Quantized) throws -> [Float] {
        try check(q)
        var out = [Float](repeating: 0, count: q.rows * q.cols)
        let groupsPerRow = q.cols / q.groupSize
        for r in 0..<q.rows {
            for j in 0..<q.cols {
                var v: UInt32 = 0
                for bit in 0..<q.bits {
                    let pos = j * q.bits + bit
                    let word = q.weight[r * q.wordsPerRow + pos / 32]
                    v |= ((word >> UInt32(pos % 32)) & 1) << UInt32(bit)
                }
                let g = r * groupsPerRow + j / q.groupSize
                out[r * q.cols + j] = q.scales[g] * Float(v) + q.biases[g]
            }
        }
        return out
    }

    static func check(_ q: Quantized) throws {
        try validate(rows: q.rows, cols: q.cols, bits: q.bits, groupSize: q.groupSize)
        let groups = q.rows * q.cols / q.groupSize
        guard q.weight.count == q.rows * q.wordsPerRow, q.scales.count == groups, q.biases.count == groups else {
            throw SmolError(.invalidArgument, "MLX quantized arrays do not match [\(q.rows), \(q.cols)] with \(q.bits) bits, group \(q.groupSize): weight \(q.weight.count), scales \(q.scales.count), biases \(q.biases.count)")
        }
    }
}

/// Appends little-endian bit fields to a run of uint32 words (which must start zeroed).
struct BitWriter {
    let words: UnsafeMutablePointer<UInt32>
    var bitPos = 0
    init(_ words: UnsafeMutablePointer<UInt32>) { self.words = words }

    mutating func append(_ v: UInt64, bits: Int) {
        let w = bitPos / 32, off = bitPos % 32
        words[w] |= UInt32(truncatingIfNeeded: v << UInt64(off))
        if off + bits > 32 { words[w + 1] |= UInt32(truncatingIfNeeded: v >> UInt64(32 - off)) }
        bitPos += bits
    }
}
