import Foundation
import SmolTensor

/// bitsandbytes 4-bit NormalFloat (NF4) quantization, bit-identical to bitsandbytes 0.50's CPU
/// backend (`quantize_4bit` / `dequantize_4bit`, with and without double quantization).
/// Layout and formulas: formats/nf4.md.
public enum NF4 {
    /// bitsandbytes' NF4 code (`get_4bit_type("nf4")`), as float32.
    public static let code: [Float] = [
        -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
        -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
        0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
        0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
    ]

    /// Elements per block of the nested (double) quantization of the absmax values.
    public static let nestedBlockSize = 256

    /// The second level of double quantization: absmax values minus `offset`, 8-bit quantized with
    /// `nestedCode` in blocks of 256.
    public struct DoubleQuant: Sendable, Equatable {
        /// One code index per NF4 block.
        public var quantizedAbsmax: [UInt8]
        /// One per 256 NF4 blocks.
        public var nestedAbsmax: [Float]
        /// 256 sorted values in [−1, 1] (bitsandbytes' signed dynamic map).
        public var nestedCode: [Float]
        public var offset: Float

        public init(quantizedAbsmax: [UInt8], nestedAbsmax: [Float], nestedCode: [Float], offset: Float) {
            self.quantizedAbsmax = quantizedAbsmax; self.nestedAbsmax = nestedAbsmax
            self.nestedCode = nestedCode; self.offset = offset
        }
    }

    /// An NF4-quantized [rows, cols] matrix.
    public struct Quantized: Sendable, Equatable {
        public var rows: Int
        public var cols: Int
        public var blockSize: Int
        /// rows·cols/2 bytes; element 2i in the high nibble of byte i, element 2i+1 in the low one.
        public var packed: [UInt8]
        /// One float32 per block (empty with double quantization).
        public var absmax: [Float]
        public var double: DoubleQuant?
        /// The 16 code values (`quant_map`).
        public var code: [Float]

        public init(rows: Int, cols: Int, blockSize: Int, packed: [UInt8], absmax: [Float], double: DoubleQuant?, code: [Float] = NF4.code) {
            self.rows = rows; self.cols = cols; self.blockSize = blockSize
            self.packed = packed; self.absmax = absmax; self.double = double; self.code = code
        }

        public var count: Int { rows * cols }
        public var blockCount: Int { (count + blockSize - 1) / blockSize }
    }

    /// Which absmax a dequantized element uses.
    public enum BlockIndexing: Sendable {
        /// Element i of the flattened matrix uses block i / blockSize: how the blocks were made
        /// (and what bitsandbytes' default/CUDA dequantizers do).
        case flat
        /// bitsandbytes' CPU `dequantize_4bit` kernel: element (r, c) uses block
        /// r·(cols / blockSize) + c / blockSize (integer divisions). Equal to `.flat` when cols is
        /// a multiple of the block size; otherwise it reads shifted absmax values, and this
        /// reproduces what bitsandbytes computes on a CPU.
        case bitsandbytesCPU
    }

    static func validate(rows: Int, cols: Int, blockSize: Int) throws {
        guard [32, 64, 128, 256, 512, 1024, 2048, 4096].contains(blockSize) else {
            throw SmolError(.unsupported, "NF4 block size \(blockSize) is not supported (a power of two from 32 to 4096)")
        }
        guard rows >= 0, cols >= 0, let n = Checked.multiply(rows, cols), n % 2 == 0 else {
            throw SmolError(.invalidArgument, "an NF4 matrix needs an even number of elements, got [\(rows), \(cols)]")
        }
    }

    // MARK: quantization

    /// Quantizes a row-major [rows, cols] float32 matrix like `bitsandbytes.functional.quantize_4bit(
    /// w, blocksize, quant_type="nf4", compress_statistics=doubleQuant)` on the CPU.
    public static func quantize(_ w: [Float], rows: Int, cols: Int, blockSize: Int, doubleQuant: Bool) throws -> Quantized {
        try validate(rows: rows, cols: cols, blockSize: blockSize)
        let n = rows * cols
        guard w.count == n else { throw SmolError(.invalidArgument, "\(w.count) values are not a [\(rows), \(cols)] matrix") }
        let blocks = (n + blockSize - 1) / blockSize
        var absmax = [Float](repeating: 0, count: blocks)
        var packed = [UInt8](repeating: 0, count: n / 2)
        var q = [UInt8](repeating: 0, count: n)
        for b in 0..<blocks {
            let start = b * blockSize, end = min(n, start + blockSize)
            var m: Float = 0
            for i in start..<end { m = max(m, abs(w[i])) }
            absmax[b] = m
            // torch: clamp(x * (1 / absmax), −1, 1), then argmin |scaled − code| (first on ties).
            // An all-zero block gives NaN, whose argmin torch reports as index 0.
            let inv = 1 / m
            for i in start..<end {
                let s = min(max(w[i] * inv, -1), 1)
                q[i] = s.isNaN ? 0 : nearestIndex(s, code)
            }
        }
        for i in 0..<(n / 2) { packed[i] = q[2 * i] << 4 | q[2 * i + 1] }
        guard doubleQuant else {
            return Quantized(rows: rows, cols: cols, blockSize: blockSize, packed: packed, absmax: absmax, double: nil)
        }
        let offset = torchMean(absmax)
        let centered = absmax.map { $0 - offset }
        let (qa, nested) = quantizeBlockwise8bit(centered, code: dynamicCode, blockSize: nestedBlockSize)
        return Quantized(rows: rows, cols: cols, blockSize: blockSize, packed: packed, absmax: [],
                         double: DoubleQuant(quantizedAbsmax: qa, nestedAbsmax: nested, nestedCode: dynamicCode, offset: offset))
    }

    /// The `nested_offset` that `quantize(w, …, doubleQuant: true)` records (torch's mean of the
    /// block absmax values), without quantizing: checkpoint writers need it for the JSON quant
    /// state, whose length goes in the safetensors header before any data is written.
    public static func doubleQuantOffset(_ w: [Float], blockSize: Int) -> Float {
        let n = w.count
        let blocks = (n + blockSize - 1) / blockSize
        var absmax = [Float](repeating: 0, count: blocks)
        for b in 0..<blocks {
            var m: Float = 0
            for i in (b * blockSize)..<min(n, b * blockSize + blockSize) { m = max(m, abs(w[i])) }
            absmax[b] = m
        }
        return torchMean(absmax)
    }

    /// argmin over the code of |x − code[i]|, the first index on ties (torch.argmin).
    @inline(__always)
    static func nearestIndex(_ x: Float, _ code: [Float]) -> UInt8 {
        var best = 0
        var bestDist = abs(x - code[0])
        for i in 1..<code.count {
            let d = abs(x - code[i])
            if d < bestDist { best = i; bestDist = d }
        }
        return UInt8(best)
    }

    /// torch's float32 `mean` of a contiguous 1-D tensor on the CPU: its cascade sum with 8-lane
    /// vectors (the AVX2 kernels bitsandbytes' reference machine ran), four interleaved vector
    /// accumulators, then the tail and the lanes, divided by n. Verified against bitsandbytes'
    /// `offset` for 48…480 values; longer inputs take the multi-level cascade below as in torch's
    /// SumKernel.cpp (not verified here).
    static func torchMean(_ a: [Float]) -> Float {
        let n = a.count
        guard n > 0 else { return .nan }
        let V = 8
        let vecCount = n / V
        var sum: Float = 0
        if n >= V {
            // row_sum over vecCount vectors, ilp factor 4 → multi_row_sum over vecCount/4 rows of 4.
            let rowsIlp = vecCount / 4
            var acc = [[[Float]]](repeating: [[Float]](repeating: [Float](repeating: 0, count: V), count: 4), count: 4)
            let levelPower = max(4, ceilLog2(rowsIlp) / 4)
            let levelStep = 1 << levelPower, levelMask = levelStep - 1
            func addRow(_ i: Int) {
                for k in 0..<4 { for l in 0..<V { acc[0][k][l] += a[(i * 4 + k) * V + l] } }
            }
            var i = 0
            while i + levelStep <= rowsIlp {
                for _ in 0..<levelStep { addRow(i); i += 1 }
                for j in 1..<4 {
                    for k in 0..<4 { for l in 0..<V { acc[j][k][l] += acc[j - 1][k][l]; acc[j - 1][k][l] = 0 } }
                    if i & (levelMask << (j * levelPower)) != 0 { break }
                }
            }
            while i < rowsIlp { addRow(i); i += 1 }
            for j in 1..<4 { for k in 0..<4 { for l in 0..<V { acc[0][k][l] += acc[j][k][l] } } }
            var partial = acc[0]
            for v in (rowsIlp * 4)..<vecCount { for l in 0..<V { partial[0][l] += a[v * V + l] } }
            for k in 1..<4 { for l in 0..<V { partial[0][l] += partial[k][l] } }
            for t in (vecCount * V)..<n { sum += a[t] }
            for l in 0..<V { sum += partial[0][l] }
        } else {
            for t in 0..<n { sum += a[t] }
        }
        return sum / Float(n)
    }

    static func ceilLog2(_ x: Int) -> Int {
        guard x > 1 else { return 0 }
        return Int.bitWidth - (x - 1).leadingZeroBitCount
    }

    /// bitsandbytes' CPU `quantize_blockwise` (8-bit, float32): per block absmax, then each value
    /// times 1/absmax mapped through a 65 536-entry table of nearest code indices.
    static func quantizeBlockwise8bit(_ x: [Float], code: [Float], blockSize: Int) -> ([UInt8], [Float]) {
        let lut = quantizeLUT(code)
        let blocks = (x.count + blockSize - 1) / blockSize
        var absmax = [Float](repeating: 0, count: blocks)
        var out = [UInt8](repeating: 0, count: x.count)
        for b in 0..<blocks {
            let start = b * blockSize, end = min(x.count, start + blockSize)
            var m: Float = 0
            for i in start..<end { m = max(m, abs(x[i])) }
            absmax[b] = m
            if m == 0 { continue }
            let inv = 1 / m
            for i in start..<end { out[i] = lut[lutIndex(x[i] * inv)] }
        }
        return (out, absmax)
    }

    static let lutSize = 65536

    /// For each of 65 536 evenly spaced values v_i = −1 + 2i/65535: the index of the code value
    /// nearest to it (the count of midpoints between neighbours that lie below v_i).
    static func quantizeLUT(_ code: [Float]) -> [UInt8] {
        let mids = (0..<(code.count - 1)).map { 0.5 * (code[$0] + code[$0 + 1]) }
        var lut = [UInt8](repeating: 0, count: lutSize)
        var idx = 0
        for i in 0..<lutSize {
            let v: Float = -1 + (2 * Float(i)) / Float(lutSize - 1)
            while idx < mids.count && mids[idx] < v { idx += 1 }
            lut[i] = UInt8(idx)
        }
        return lut
    }

    @inline(__always)
    static func lutIndex(_ v: Float) -> Int {
        let c = min(max(v, -1), 1)
        let t = (c + 1) * 0.5 * Float(lutSize - 1) + 0.5
        return Int(UInt16(t))
    }

    /// bitsandbytes' signed dynamic map (`create_dynamic_map(signed=True)`, the `nested_quant_map`
    /// of double-quantized checkpoints): 256 sorted float32 values in [−1, 1], as float32 bit
    /// patterns copied from bitsandbytes 0.50.2's output (Tests/Fixtures/quant/
    /// bnb_nf4_reference.safetensors, `nested_code.*`). Recomputing it from its definition (midpoints of
    /// torch.linspace(0.1, 1, 2^i + 1) times 10^(i−6), both signs, 0 and 1) depends on torch's float32
    /// linspace and scalar arithmetic in ways that differ in the last bit for about 20 entries, so
    /// the table is kept as data.
    public static let dynamicCode: [Float] = dynamicCodeBits.map { Float(bitPattern: $0) }

    static let dynamicCodeBits: [UInt32] = [
        0xbf7e3333, 0xbf7a999a, 0xbf770000, 0xbf736666, 0xbf6fcccd, 0xbf6c3333, 0xbf68999a, 0xbf650000,
        0xbf616666, 0xbf5dcccd, 0xbf5a3333, 0xbf56999a, 0xbf530000, 0xbf4f6666, 0xbf4bcccd, 0xbf483333,
        0xbf44999a, 0xbf410000, 0xbf3d6666, 0xbf39cccd, 0xbf363334, 0xbf32999a, 0xbf2f0000, 0xbf2b6666,
        0xbf27cccd, 0xbf243334, 0xbf20999a, 0xbf1d0000, 0xbf196666, 0xbf15cccd, 0xbf123334, 0xbf0e999a,
        0xbf0b0000, 0xbf076666, 0xbf03cccc, 0xbf003333, 0xbef93332, 0xbef20000, 0xbeeacccc, 0xbee3999a,
        0xbedc6666, 0xbed53333, 0xbece0000, 0xbec6cccc, 0xbebf999a, 0xbeb86666, 0xbeb13333, 0xbeaa0000,
        0xbea2cccc, 0xbe9b999a, 0xbe946666, 0xbe8d3334, 0xbe860000, 0xbe7d9999, 0xbe6f3333, 0xbe60cccd,
        0xbe526666, 0xbe440000, 0xbe35999a, 0xbe273333, 0xbe18cccd, 0xbe0a6666, 0xbdf80000, 0xbddb3334,
        0xbdc9eb85, 0xbdc428f7, 0xbdbe6667, 0xbdb8a3d7, 0xbdb2e148, 0xbdad1eb8, 0xbda75c2a, 0xbda1999a,
        0xbd9bd70a, 0xbd96147b, 0xbd9051eb, 0xbd8a8f5d, 0xbd84cccd, 0xbd7e147b, 0xbd728f5d, 0xbd670a3d,
        0xbd5b851f, 0xbd500000, 0xbd447ae1, 0xbd38f5c3, 0xbd2d70a3, 0xbd21eb85, 0xbd166667, 0xbd0ae148,
        0xbcfeb852, 0xbce7ae15, 0xbcd0a3d7, 0xbcb9999a, 0xbca28f5d, 0xbc8b851f, 0xbc68f5c3, 0xbc3ae148,
        0xbc1f3b64, 0xbc160418, 0xbc0ccccd, 0xbc039581, 0xbbf4bc6a, 0xbbe24dd3, 0xbbcfdf3b, 0xbbbd70a4,
        0xbbab020d, 0xbb989374, 0xbb8624dd, 0xbb676c8a, 0xbb428f5c, 0xbb1db22d, 0xbaf1a9fc, 0xbaa7ef9d,
        0xba7765ff, 0xba59e83e, 0xba3c6a80, 0xba1eecc1, 0xba016f01, 0xb9c7e283, 0xb98ce705, 0xb923d70b,
        0xb8ba1f4b, 0xb88aefb3, 0xb8378034, 0xb7b24206, 0xb70205ff, 0xb65a1a94, 0xb513a3b7, 0x00000000,
        0x3513a3b7, 0x365a1a94, 0x370205ff, 0x37b24206, 0x38378034, 0x388aefb3, 0x38ba1f4b, 0x3923d70b,
        0x398ce705, 0x39c7e283, 0x3a016f01, 0x3a1eecc1, 0x3a3c6a80, 0x3a59e83e, 0x3a7765ff, 0x3aa7ef9d,
        0x3af1a9fc, 0x3b1db22d, 0x3b428f5c, 0x3b676c8a, 0x3b8624dd, 0x3b989374, 0x3bab020d, 0x3bbd70a4,
        0x3bcfdf3b, 0x3be24dd3, 0x3bf4bc6a, 0x3c039581, 0x3c0ccccd, 0x3c160418, 0x3c1f3b64, 0x3c3ae148,
        0x3c68f5c3, 0x3c8b851f, 0x3ca28f5d, 0x3cb9999a, 0x3cd0a3d7, 0x3ce7ae15, 0x3cfeb852, 0x3d0ae148,
        0x3d166667, 0x3d21eb85, 0x3d2d70a3, 0x3d38f5c3, 0x3d447ae1, 0x3d500000, 0x3d5b851f, 0x3d670a3d,
        0x3d728f5d, 0x3d7e147b, 0x3d84cccd, 0x3d8a8f5d, 0x3d9051eb, 0x3d96147b, 0x3d9bd70a, 0x3da1999a,
        0x3da75c2a, 0x3dad1eb8, 0x3db2e148, 0x3db8a3d7, 0x3dbe6667, 0x3dc428f7, 0x3dc9eb85, 0x3ddb3334,
        0x3df80000, 0x3e0a6666, 0x3e18cccd, 0x3e273333, 0x3e35999a, 0x3e440000, 0x3e526666, 0x3e60cccd,
        0x3e6f3333, 0x3e7d9999, 0x3e860000, 0x3e8d3334, 0x3e946666, 0x3e9b999a, 0x3ea2cccc, 0x3eaa0000,
        0x3eb13333, 0x3eb86666, 0x3ebf999a, 0x3ec6cccc, 0x3ece0000, 0x3ed53333, 0x3edc6666, 0x3ee3999a,
        0x3eeacccc, 0x3ef20000, 0x3ef93332, 0x3f003333, 0x3f03cccc, 0x3f076666, 0x3f0b0000, 0x3f0e999a,
        0x3f123334, 0x3f15cccd, 0x3f196666, 0x3f1d0000, 0x3f20999a, 0x3f243334, 0x3f27cccd, 0x3f2b6666,
        0x3f2f0000, 0x3f32999a, 0x3f363334, 0x3f39cccd, 0x3f3d6666, 0x3f410000, 0x3f44999a, 0x3f483333,
        0x3f4bcccd, 0x3f4f6666, 0x3f530000, 0x3f56999a, 0x3f5a3333, 0x3f5dcccd, 0x3f616666, 0x3f650000,
        0x3f68999a, 0x3f6c3333, 0x3f6fcccd, 0x3f736666, 0x3f770000, 0x3f7a999a, 0x3f7e3333, 0x3f800000,
    ]

    // MARK: dequantization

    /// The per-block scales: `absmax`, or with double quantization
    /// nestedCode[q] · nestedAbsmax[block / 256] + offset (float32, in that order).
    public static func blockScales(_ q: Quantized) throws -> [Float] {
        guard let d = q.double else {
            guard q.absmax.count == q.blockCount else {
                throw SmolError(.invalidArgument, "NF4: \(q.absmax.count) absmax values for \(q.blockCount) blocks")
            }
            return q.absmax
        }
        guard d.quantizedAbsmax.count == q.blockCount,
              d.nestedAbsmax.count == (q.blockCount + nestedBlockSize - 1) / nestedBlockSize,
              d.nestedCode.count == 256 else {
            throw SmolError(.invalidArgument, "NF4 double quantization: \(d.quantizedAbsmax.count) codes, \(d.nestedAbsmax.count) nested absmax, \(d.nestedCode.count) code values for \(q.blockCount) blocks")
        }
        return d.quantizedAbsmax.enumerated().map { i, c in
            d.nestedCode[Int(c)] * d.nestedAbsmax[i / nestedBlockSize] + d.offset
        }
    }

    /// Dequantizes to a row-major [rows, cols] float32 matrix: code[q] · scale of the element's block.
    public static func dequantize(_ q: Quantized, indexing: BlockIndexing = .flat) throws -> [Float] {
        try validate(rows: q.rows, cols: q.cols, blockSize: q.blockSize)
        guard q.packed.count == q.count / 2, q.code.count == 16 else {
            throw SmolError(.invalidArgument, "NF4: \(q.packed.count) packed bytes for \(q.count) elements")
        }
        let scales = try blockScales(q)
        let perRow = q.cols / q.blockSize
        if indexing == .bitsandbytesCPU, q.rows > 0, (q.rows - 1) * perRow + (q.cols - 1) / q.blockSize >= scales.count {
            throw SmolError(.invalidArgument, "NF4: bitsandbytes' CPU indexing reads past the absmax values")
        }
        var out = [Float](repeating: 0, count: q.count)
        q.packed.withUnsafeBufferPointer { p in
            scales.withUnsafeBufferPointer { s in
                q.code.withUnsafeBufferPointer { c in
                    out.withUnsafeMutableBufferPointer { o in
                        let pp = UnsafeShared(p.baseAddress!), ss = UnsafeShared(s.baseAddress!)
                        let cc = UnsafeShared(c.baseAddress!), oo = UnsafeShared(o.baseAddress!)
                        let cols = q.cols, bs = q.blockSize
                        let run = { (r0: Int, r1: Int) in
                            for r in r0..<r1 {
                                var c0 = 0
                                while c0 < cols {
                                    let flat = r * cols + c0
                                    let block = indexing == .flat ? flat / bs : r * perRow + c0 / bs
                                    // Run to the next block boundary (flat or within the row) or the row end.
                                    let c1 = min(cols, c0 + (bs - flat % bs), (c0 / bs + 1) * bs)
                                    let scale = ss.value[block]
                                    for c in c0..<c1 {
                                        let i = r * cols + c
                                        let byte = pp.value[i >> 1]
                                        let nib = i & 1 == 0 ? byte >> 4 : byte & 0xF
                                        oo.value[i] = cc.value[Int(nib)] * scale
                                    }
                                    c0 = c1
                                }
                            }
                        }
                        if q.count < GGUFQuant.parallelThreshold || q.cols == 0 { run(0, q.rows) } else {
                            parallelChunks(count: q.rows, chunk: max(1, GGUFQuant.parallelChunk / q.cols), run)
                        }
                    }
                }
            }
        }
        return out
    }

    /// The plain twin of `dequantize`: one element at a time.
    public static func dequantizeReference(_ q: Quantized, indexing: BlockIndexing = .flat) throws -> [Float] {
        let scales = try blockScales(q)
        var out = [Float](repeating: 0, count: q.count)
        for r in 0..<q.rows {
            for c in 0..<q.cols {
                let i = r * q.cols + c
                let nib = i % 2 == 0 ? q.packed[i / 2] >> 4 : q.packed[i / 2] & 0xF
                let block = indexing == .flat ? i / q.blockSize : r * (q.cols / q.blockSize) + c / q.blockSize
                out[i] = q.code[Int(nib)] * scales[block]
            }
        }
        return out
    }

    // MARK: checkpoints

    /// Reads an NF4 weight saved by transformers + bitsandbytes (`save_pretrained` of a
    /// `load_in_4bit` model). `name` is the weight's name (e.g. "model.layers.0.mlp.down_proj.weight");
    /// the layout is in formats/nf4.md:
    /// - `name`: U8 [n/2, 1] packed codes
    /// - `name.absmax`: F32 [blocks], or U8 [blocks] with double quantization
    /// - `name.quant_map`: F32 [16] (the NF4 code)
    /// - `name.nested_absmax`: F32 [ceil(blocks/256)], `name.nested_quant_map`: F32 [256] (double only)
    /// - `name.quant_state.bitsandbytes__nf4`: U8, the JSON {quant_type, blocksize, dtype, shape,
    ///   nested_blocksize, nested_dtype, nested_offset}
    public static func checkpointWeight(_ source: TensorSource, _ name: String) throws -> Quantized {
        let file = source.path
        func fail(_ what: String, _ msg: String) -> SmolError { .malformed(file, at: "tensor '\(what)'", msg) }
        func info(_ n: String) throws -> TensorInfo {
            guard let i = source.info(n) else { throw fail(n, "missing (needed for the NF4 weight '\(name)')") }
            return i
        }
        func bytes(_ n: String, _ type: DType) throws -> [UInt8] {
            let i = try info(n)
            guard i.type == .dense(type) else { throw fail(n, "expected \(type.rawValue), found \(i.type.name)") }
            let b = try source.tensorBytes(n).array
            guard b.count == i.byteCount else { throw fail(n, "\(b.count) bytes for shape \(i.shape)") }
            return b
        }
        func floats(_ n: String) throws -> [Float] {
            let b = try bytes(n, .f32)
            return b.withUnsafeBytes { r in (0..<(b.count / 4)).map { Float(bitPattern: UInt32(littleEndian: r.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) } }
        }

        let stateName = "\(name).quant_state.bitsandbytes__nf4"
        let stateBytes = try bytes(stateName, .u8)
        guard let state = try? JSONSerialization.jsonObject(with: Data(stateBytes)) as? [String: Any] else {
            throw fail(stateName, "is not a JSON object")
        }
        guard state["quant_type"] as? String == "nf4" else {
            throw SmolError(.unsupported, file: file, at: "tensor '\(stateName)'", "quant_type \(state["quant_type"] ?? "missing") is not supported (only nf4)")
        }
        // 2-D: a Linear weight as transformers saves it; 3-D: a stacked expert parameter of
        // smolconv's quantized trainable layout (formats/moe-trainable.md), read as [E·R, C].
        guard let blockSize = state["blocksize"] as? Int, let shape = state["shape"] as? [Int], shape.count == 2 || shape.count == 3,
              shape.allSatisfy({ $0 >= 0 }), let rows = Checked.product(Array(shape.dropLast())) else {
            throw fail(stateName, "needs an integer blocksize and a 2-D (or 3-D expert stack) shape")
        }
        let cols = shape[shape.count - 1]
        do { try validate(rows: rows, cols: cols, blockSize: blockSize) } catch let e as SmolError { throw fail(stateName, e.message) }
        let packed = try bytes(name, .u8)
        guard packed.count == rows * cols / 2 else {
            throw fail(name, "\(packed.count) bytes, but shape \(shape) needs \(rows * cols / 2)")
        }
        let code = try floats("\(name).quant_map")
        guard code.count == 16 else { throw fail("\(name).quant_map", "has \(code.count) values, expected 16") }
        let blocks = (rows * cols + blockSize - 1) / blockSize
        let absmaxInfo = try info("\(name).absmax")
        if absmaxInfo.type == .dense(.f32) {
            let absmax = try floats("\(name).absmax")
            guard absmax.count == blocks else { throw fail("\(name).absmax", "\(absmax.count) values for \(blocks) blocks") }
            return Quantized(rows: rows, cols: cols, blockSize: blockSize, packed: packed, absmax: absmax, double: nil, code: code)
        }
        let qa = try bytes("\(name).absmax", .u8)
        guard qa.count == blocks else { throw fail("\(name).absmax", "\(qa.count) codes for \(blocks) blocks") }
        guard (state["nested_blocksize"] as? Int) == nestedBlockSize, let offset = (state["nested_offset"] as? NSNumber)?.floatValue else {
            throw fail(stateName, "double quantization needs nested_blocksize 256 and a nested_offset")
        }
        let nested = try floats("\(name).nested_absmax")
        let nestedCode = try floats("\(name).nested_quant_map")
        guard nested.count == (blocks + nestedBlockSize - 1) / nestedBlockSize, nestedCode.count == 256 else {
            throw fail("\(name).nested_absmax", "\(nested.count) nested absmax and \(nestedCode.count) nested code values for \(blocks) blocks")
        }
        return Quantized(rows: rows, cols: cols, blockSize: blockSize, packed: packed, absmax: [],
                         double: DoubleQuant(quantizedAbsmax: qa, nestedAbsmax: nested, nestedCode: nestedCode, offset: offset),
                         code: code)
    }
}
