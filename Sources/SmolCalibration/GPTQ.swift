import COpenBLAS
import Foundation
import SmolQuant
import SmolTensor

/// GPTQ options (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative
/// Pre-trained Transformers", Algorithm 1 with lazy batch updates).
public struct GPTQOptions: Sendable, Equatable {
    /// λ = dampening · mean(diag H) is added to H's diagonal before inversion (the paper's 1 %).
    public var dampening: Double = 0.01
    /// Quantize columns in order of decreasing H_ii ("act-order"). Grids are then fixed up front
    /// from the unchanged weights ("static groups"), so every group keeps one scale set.
    public var actOrder = false
    /// Columns per lazy batch (rounded up to a multiple of the group width).
    public var blockSize = 128
    public init() {}
}

/// The grid of one group of columns [start, start + width) for every row: value = scale·code +
/// offset with codes 0…maxCode; `codes` holds the group's own choice (kept where scale is 0).
public struct ColumnGrid: Sendable {
    /// [rows, width]
    public var scale: [Float]
    public var offset: [Float]
    public var codes: [Int32]
    public var maxCode: Int32
    public init(scale: [Float], offset: [Float], codes: [Int32], maxCode: Int32) {
        self.scale = scale; self.offset = offset; self.codes = codes; self.maxCode = maxCode
    }
}

public enum GPTQ {
    /// GPTQ on W [rows, cols] (row-major) with H = E[x·xᵀ] [cols, cols]: columns are rounded one at a
    /// time onto the grid of their group (`makeGrid(group, current values [rows, width])`, called
    /// when the group is reached, or up front with act-order), and each column's rounding error,
    /// scaled by the inverse Hessian's Cholesky factor, is pushed onto the columns not yet rounded.
    /// Returns the codes [rows, cols] (in order, each grid is dropped once its group is done: a
    /// vocabulary-sized output layer holds only one at a time).
    public static func run(weights w: [Float], rows: Int, cols: Int, hessian h: [Float], groupWidth: Int,
                           options: GPTQOptions = GPTQOptions(),
                           makeGrid: (_ group: Int, _ values: [Float]) throws -> ColumnGrid) throws -> [Int32] {
        guard groupWidth > 0, cols % groupWidth == 0, w.count == rows * cols, h.count == cols * cols else {
            throw SmolError(.invalidArgument, "GPTQ: a [\(rows), \(cols)] weight, a \(h.count)-element Hessian and groups of \(groupWidth) do not fit")
        }
        let n = cols, groups = cols / groupWidth
        // Column order (act-order: decreasing diagonal, ties by index for determinism).
        let perm: [Int] = options.actOrder
            ? (0..<n).sorted { h[$0 * n + $0] != h[$1 * n + $1] ? h[$0 * n + $0] > h[$1 * n + $1] : $0 < $1 }
            : Array(0..<n)
        var W = [Float](repeating: 0, count: rows * n)      // [rows, n] permuted columns
        for r in 0..<rows { for p in 0..<n { W[r * n + p] = w[r * n + perm[p]] } }
        var H = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n { H[i * n + j] = Double(h[perm[i] * n + perm[j]]) } }
        // Dead inputs (never active): H_ii = 1 and the column's weights to 0, as the reference code.
        var meanDiag = 0.0
        for i in 0..<n {
            if H[i * n + i] <= 0 {
                H[i * n + i] = 1
                for r in 0..<rows { W[r * n + i] = 0 }
            }
            meanDiag += H[i * n + i]
        }
        meanDiag /= Double(max(n, 1))
        // U: upper Cholesky factor of (H + λI)⁻¹ (the paper's Hinv); λ grows ×10 if H is singular.
        var U = [Float]()
        var damp = options.dampening * meanDiag
        for _ in 0..<6 {
            var A = H
            for i in 0..<n { A[i * n + i] += damp }
            guard SPD.cholesky(&A, n: n) else { damp *= 10; continue }
            var inv = SPD.inverse(fromCholesky: A, n: n)
            guard SPD.cholesky(&inv, n: n) else { damp *= 10; continue }
            U = [Float](repeating: 0, count: n * n)
            for i in 0..<n { for j in i..<n { U[i * n + j] = Float(inv[j * n + i]) } }
            break
        }
        guard !U.isEmpty else { throw SmolError(.invalidArgument, "GPTQ: the Hessian stays singular after dampening") }

        var grids = [ColumnGrid?](repeating: nil, count: groups)
        // A group's columns [rows, width] of m (the original weights, or W when in order).
        func gather(_ group: Int, from m: [Float]) -> [Float] {
            var v = [Float](repeating: 0, count: rows * groupWidth)
            for r in 0..<rows {
                for k in 0..<groupWidth { v[r * groupWidth + k] = m[r * n + group * groupWidth + k] }
            }
            return v
        }
        if options.actOrder {
            for g in 0..<groups { grids[g] = try makeGrid(g, gather(g, from: w)) }
        }
        var codes = [Int32](repeating: 0, count: rows * n)   // original column order
        let bs = max(groupWidth, (options.blockSize + groupWidth - 1) / groupWidth * groupWidth)
        var err = [Float](repeating: 0, count: rows * bs)     // [rows, bs] errors of the batch
        var i1 = 0
        while i1 < n {
            let i2 = min(i1 + bs, n), count = i2 - i1
            for i in i1..<i2 {
                let orig = perm[i]
                let g = orig / groupWidth, k = orig % groupWidth
                if grids[g] == nil {
                    // In order: the group starts here and lies inside this batch (bs is a multiple of
                    // the width), so its columns carry every update so far.
                    grids[g] = try makeGrid(g, gather(g, from: W))
                }
                let grid = grids[g]!
                if !options.actOrder && k == groupWidth - 1 { grids[g] = nil }
                let d = U[i * n + i]
                for r in 0..<rows {
                    let x = W[r * n + i]
                    let a = grid.scale[r * groupWidth + k], b = grid.offset[r * groupWidth + k]
                    var c = grid.codes[r * groupWidth + k]
                    if a != 0 {
                        let t = ((x - b) / a).rounded(.toNearestOrEven)
                        c = t.isNaN ? 0 : Int32(max(0, min(Float(grid.maxCode), t)))
                    }
                    codes[r * n + orig] = c
                    let q = a * Float(c) + b
                    let e = (x - q) / d
                    err[r * bs + (i - i1)] = e
                    // Within the batch: W[r, i+1..<i2] −= e · U[i, i+1..<i2].
                    if i + 1 < i2 {
                        W.withUnsafeMutableBufferPointer { wp in
                            U.withUnsafeBufferPointer { up in
                                let row = wp.baseAddress! + r * n, urow = up.baseAddress! + i * n
                                for j in (i + 1)..<i2 { row[j] -= e * urow[j] }
                            }
                        }
                    }
                }
            }
            if i2 < n {
                // Lazy batch update: W[:, i2:] −= Err[:, :count] · U[i1:i2, i2:].
                W.withUnsafeMutableBufferPointer { wp in
                    U.withUnsafeBufferPointer { up in
                        err.withUnsafeBufferPointer { ep in
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(n - i2), Int32(count),
                                        -1, ep.baseAddress, Int32(bs), up.baseAddress! + i1 * n + i2, Int32(n),
                                        1, wp.baseAddress! + i2, Int32(n))
                        }
                    }
                }
            }
            i1 = i2
        }
        return codes
    }
}
