import COpenBLAS
import Foundation
import SmolTensor

// QuantizedLinear: a linear layer's weight kept in its stored encoding (F32, F16, BF16, Q8_0, Q4_0,
// Q5_0, Q4_K, Q6_K), computing y = x · Wᵀ without ever materialising the whole weight in F32.
//
//   let w = try QuantizedLinear(info, bytes: try gguf.tensorBytes(name))   // mapped bytes, no copy
//   let y = w.apply(x, tokens: T)          // x: [T, cols] → y: [T, rows]
//   let e = try w.gatherRows(tokenIDs)     // embedding lookup: [ids.count, cols]
//
// Exact: activations stay F32 and every weight is dequantized exactly as ggml/gguf-py do
// (`ReferenceKernels.dequantizeRow`); only the summation order differs from dequantize-then-matmul.
//   - tokens ≤ `matvecMaxTokens`: each thread takes a range of weight rows; one token uses a fused
//     dequantize-and-dot per row (decode), a few tokens dequantize each row once into an L1-sized
//     scratch and dot it with every token (small batches);
//   - more tokens: the weight is dequantized a tile of rows at a time (about 4 MB of F32) and each
//     tile goes through `cblas_sgemm` (prefill, perplexity). F32 weights go to sgemm directly.
// Shapes follow PyTorch: weight [rows = out features, cols = in features], row-major.
//
// For the engine: hold every 2-D weight as a QuantizedLinear built from the GGUF's mapped bytes
// (F32 checkpoints too: their sgemm runs on the mapped memory), use `gatherRows` for the token
// embedding, and call `apply` with as few rows as needed (the tied output layer is 168 M weights:
// computing logits only for the rows that are scored or sampled saves most of its cost).
// SMOLCONV_NO_AVX2=1 in the environment forces the portable Swift kernels (QuantDot.swift).

/// A 2-D weight [rows, cols] in a GGUF encoding, used in place (see the top of this file).
public struct QuantizedLinear: Sendable {
    public let type: GGMLType
    /// Output features.
    public let rows: Int
    /// Input features (a whole number of blocks of `type`).
    public let cols: Int
    /// rows × rowBytes encoded bytes, typically a view into the mapped GGUF file.
    public let bytes: TensorBytes
    /// Bytes of one encoded row.
    public let rowBytes: Int

    /// At most this many tokens use the row-at-a-time matvec; more use the tiled sgemm path.
    /// Chosen, not tuned: the matvec path costs one pass over the weight per call plus T dots per
    /// row, the sgemm path dequantizes the whole weight per call; on the shared 2-core machine the
    /// T = 4 / 16 timings of `smolconv-bench` were too noisy to place the crossover more precisely.
    public static let matvecMaxTokens = 8

    /// F32 elements per dequantized tile in the sgemm path: 4 MB, well inside L3 (sgemm packs the
    /// tile into its own panels anyway, so L2 residency buys little), and few enough tiles that the
    /// hand-off between our dequantizing threads and OpenBLAS's stays rare.
    public static let tileElements = 1 << 20

    public init(type: GGMLType, rows: Int, cols: Int, bytes: TensorBytes, name: String = "weight") throws {
        guard QuantKernelTypes.supported.contains(type) else {
            throw SmolError(.unsupported, at: name, "no matmul kernel for \(type.name) (have \(QuantKernelTypes.supported.map(\.name).sorted().joined(separator: ", ")))")
        }
        let (blockElements, blockBytes) = type.blockLayout
        guard rows >= 0, cols >= 0, cols % blockElements == 0 else {
            throw SmolError(.invalidArgument, at: name, "shape [\(rows), \(cols)] is not whole \(type.name) blocks of \(blockElements)")
        }
        guard let rowBytes = Checked.multiply(cols / blockElements, blockBytes),
              let total = Checked.multiply(rowBytes, rows), total == bytes.count else {
            throw SmolError(.invalidArgument, at: name, "\(bytes.count) bytes do not hold a \(type.name) [\(rows), \(cols)] tensor")
        }
        self.type = type
        self.rows = rows
        self.cols = cols
        self.bytes = bytes
        self.rowBytes = rowBytes
    }

    /// From a checkpoint's tensor description: shape [rows, cols] (a 1-D tensor is one row).
    public init(_ info: TensorInfo, bytes: TensorBytes) throws {
        guard let ggml = info.type.ggmlType, info.shape.count == 1 || info.shape.count == 2 else {
            throw SmolError(.unsupported, at: info.name, "a \(info.type.name) tensor of shape \(info.shape) is not a linear weight")
        }
        let rows = info.shape.count == 2 ? info.shape[0] : 1
        try self.init(type: ggml, rows: rows, cols: info.shape.last!, bytes: bytes, name: info.name)
    }

    /// An F32 weight from an array (tests, weights computed at load time).
    public init(f32 weight: [Float], rows: Int, cols: Int) {
        precondition(weight.count == rows * cols, "QuantizedLinear: weight count mismatch")
        type = .f32
        self.rows = rows
        self.cols = cols
        bytes = TensorBytes(elements: weight)
        rowBytes = 4 * cols
    }

    /// y = x · Wᵀ. x: [tokens, cols] → [tokens, rows].
    public func apply(_ x: [Float], tokens: Int) -> [Float] {
        precondition(x.count == tokens * cols, "QuantizedLinear.apply: x has \(x.count) values, expected \(tokens) × \(cols)")
        var y = [Float](repeating: 0, count: tokens * rows)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                apply(xp.baseAddress!, tokens: tokens, into: yp.baseAddress!)
            }
        }
        return y
    }

    /// y = x · Wᵀ into caller memory. x: [tokens, cols], y: [tokens, rows] (overwritten).
    public func apply(_ x: UnsafePointer<Float>, tokens: Int, into y: UnsafeMutablePointer<Float>) {
        if tokens == 0 || rows == 0 { return }
        if cols == 0 { y.update(repeating: 0, count: tokens * rows); return }
        bytes.withUnsafeBytes { raw in
            let w = raw.baseAddress!
            if tokens <= Self.matvecMaxTokens {
                matvec(w, x, tokens, y)
            } else {
                tiledSgemm(w, x, tokens, y)
            }
        }
    }

    /// Rows `ids` of the weight in F32 (embedding lookup). → [ids.count, cols]. Throws for an id
    /// outside 0..<rows.
    public func gatherRows(_ ids: [Int]) throws -> [Float] {
        var out = [Float](repeating: 0, count: ids.count * cols)
        for (t, id) in ids.enumerated() where !(0..<rows).contains(id) {
            throw SmolError(.invalidArgument, at: "token \(t)", "token id \(id) outside the vocabulary (size \(rows))")
        }
        bytes.withUnsafeBytes { raw in
            out.withUnsafeMutableBufferPointer { op in
                for (t, id) in ids.enumerated() {
                    QuantKernels.dequantizeRow(type, raw.baseAddress! + id * rowBytes, count: cols, into: op.baseAddress! + t * cols)
                }
            }
        }
        return out
    }

    /// The whole weight in F32, [rows, cols] (tests, small tensors).
    public func dequantized() -> [Float] {
        var out = [Float](repeating: 0, count: rows * cols)
        bytes.withUnsafeBytes { raw in
            out.withUnsafeMutableBufferPointer { op in
                QuantKernels.dequantizeRows(type, raw.baseAddress!, rowBytes: rowBytes, rows: 0..<rows, cols: cols, into: op.baseAddress!)
            }
        }
        return out
    }

    /// `dequantized()` through the scalar reference dequantizer.
    public func dequantizedReference() -> [Float] {
        var out = [Float](repeating: 0, count: rows * cols)
        bytes.withUnsafeBytes { raw in
            out.withUnsafeMutableBufferPointer { op in
                for r in 0..<rows {
                    ReferenceKernels.dequantizeRow(type, raw.baseAddress! + r * rowBytes, count: cols, into: op.baseAddress! + r * cols)
                }
            }
        }
        return out
    }

    // MARK: kernels

    /// Few tokens: threads split the weight rows. One token: fused dequantize-and-dot per row
    /// (QuantDot.swift). Several: each row is dequantized once into scratch and dotted with every
    /// token (F32 weights are read in place).
    private func matvec(_ w: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ tokens: Int, _ y: UnsafeMutablePointer<Float>) {
        let rows = rows, cols = cols, rowBytes = rowBytes, type = type
        // ~64 KB of encoded weight per task keeps hand-off cost small and the load balanced.
        let grain = max(1, min((rows + 1) / 2, 65536 / max(rowBytes, 1)))
        parallelRanges(rows, grain: grain) { range in
            // One token, or a type without a fused kernel left aside: fused dequantize-and-dot.
            if (tokens == 1 || type == .f32) && QuantKernels.hasFusedDot(type) {
                for r in range {
                    for t in 0..<tokens { y[t * rows + r] = QuantKernels.dotRow(type, w + r * rowBytes, x + t * cols, count: cols)! }
                }
                return
            }
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: cols)
            defer { scratch.deallocate() }
            for r in range {
                QuantKernels.dequantizeRow(type, w + r * rowBytes, count: cols, into: scratch)
                for t in 0..<tokens { y[t * rows + r] = simdDot(scratch, x + t * cols, cols) }
            }
        }
    }

    /// Many tokens: sgemm per tile of dequantized weight rows, written into y's columns.
    private func tiledSgemm(_ w: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ tokens: Int, _ y: UnsafeMutablePointer<Float>) {
        func sgemm(_ tile: UnsafePointer<Float>, _ r0: Int, _ n: Int) {
            // y[:, r0 ..< r0+n] = x · tileᵀ; x: [T, cols], tile: [n, cols], y row stride = rows.
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(tokens), Int32(n), Int32(cols),
                        1, x, Int32(cols), tile, Int32(cols), 0, y + r0, Int32(rows))
        }
        if type == .f32 {
            sgemm(w.assumingMemoryBound(to: Float.self), 0, rows)
            return
        }
        let tileRows = max(1, min(rows, Self.tileElements / cols))
        let tile = UnsafeMutablePointer<Float>.allocate(capacity: tileRows * cols)
        defer { tile.deallocate() }
        var r0 = 0
        while r0 < rows {
            let n = min(tileRows, rows - r0)
            QuantKernels.dequantizeRows(type, w, rowBytes: rowBytes, rows: r0..<(r0 + n), cols: cols, into: tile)
            sgemm(tile, r0, n)
            r0 += n
        }
    }
}

extension QuantKernels {
    /// Dequantizes weight rows `rows` (each `rowBytes` long, starting at `w`) into `dst` as
    /// [rows.count, cols], spread over the cores.
    public static func dequantizeRows(_ type: GGMLType, _ w: UnsafeRawPointer, rowBytes: Int, rows: Range<Int>,
                                      cols: Int, into dst: UnsafeMutablePointer<Float>) {
        let grain = max(1, 65536 / max(rowBytes, 1))
        parallelRanges(rows.count, grain: grain) { range in
            for i in range {
                dequantizeRow(type, w + (rows.lowerBound + i) * rowBytes, count: cols, into: dst + i * cols)
            }
        }
    }
}

/// Runs `body` on consecutive ranges of 0..<count of at least `grain` items, in parallel.
@inlinable
func parallelRanges(_ count: Int, grain: Int, _ body: (Range<Int>) -> Void) {
    if count <= 0 { return }
    let chunk = max(1, grain)
    let tasks = (count + chunk - 1) / chunk
    if tasks <= 1 { body(0..<count); return }
    withoutActuallyEscaping(body) { escaping in
        nonisolated(unsafe) let work = escaping
        DispatchQueue.concurrentPerform(iterations: tasks) { task in
            work((task * chunk)..<min(count, (task + 1) * chunk))
        }
    }
}
