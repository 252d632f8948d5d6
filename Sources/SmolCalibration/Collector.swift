import COpenBLAS
import Foundation
import SmolEngine
import SmolTensor

/// Sums over the rows of one distinct linear input (one per dense input; one per expert for MoE):
/// what llama-imatrix (Σx²), AWQ (Σ|x|) and GPTQ (Σ x·xᵀ) need. Dimensions: `inDim` = in.
public final class InputStatistics: @unchecked Sendable {   // mutated only by its collector, under its lock
    /// Checkpoint names (HF naming) of every weight that multiplies this input.
    public let weights: [String]
    public let layer: Int
    public let expert: Int?
    public let inDim: Int
    /// Rows (tokens) seen.
    public internal(set) var tokens: Int = 0
    /// [in] Σ x²
    public internal(set) var sumSquares: [Double]
    /// [in] Σ |x|
    public internal(set) var sumAbs: [Double]
    /// [in, in] Σ x·xᵀ, upper triangle accumulated (row i, columns ≥ i); `symmetricHessian` fills both.
    var hessianUpper: [Double]?

    init(weights: [String], layer: Int, expert: Int?, inDim: Int, hessian: Bool) {
        self.weights = weights; self.layer = layer; self.expert = expert; self.inDim = inDim
        sumSquares = [Double](repeating: 0, count: inDim)
        sumAbs = [Double](repeating: 0, count: inDim)
        hessianUpper = hessian ? [Double](repeating: 0, count: inDim * inDim) : nil
    }

    /// Mean square per column (llama-imatrix's importance): Σx² / tokens. [in]
    public var importance: [Float] { sumSquares.map { Float(tokens > 0 ? $0 / Double(tokens) : 0) } }
    /// Mean |x| per column (AWQ's activation scale). [in]
    public var meanAbs: [Float] { sumAbs.map { Float(tokens > 0 ? $0 / Double(tokens) : 0) } }
    /// Σ x·xᵀ / tokens, both triangles, [in, in]; nil when Hessians were not collected.
    public var hessian: [Float]? {
        guard let h = hessianUpper else { return nil }
        let n = inDim, scale = tokens > 0 ? 1 / Double(tokens) : 0
        var out = [Float](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in i..<n {
                let v = Float(h[i * n + j] * scale)
                out[i * n + j] = v
                out[j * n + i] = v
            }
        }
        return out
    }

    /// Adds `rows` rows of x ([rows, in] row-major). The Hessian goes through BLAS: one ssyrk per
    /// call in Float32 (sums of at most a window of products), added to the Float64 total.
    func add(_ x: UnsafeBufferPointer<Float>, rows: Int) {
        let n = inDim
        precondition(x.count == rows * n, "observed input shape mismatch")
        tokens += rows
        for r in 0..<rows {
            let row = x.baseAddress! + r * n
            for j in 0..<n {
                let v = Double(row[j])
                sumSquares[j] += v * v
                sumAbs[j] += abs(v)
            }
        }
        guard hessianUpper != nil else { return }
        var partial = [Float](repeating: 0, count: n * n)
        partial.withUnsafeMutableBufferPointer { c in
            // C = Xᵀ·X (upper triangle), X [rows, n] row-major.
            cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(n), Int32(rows), 1,
                        x.baseAddress, Int32(n), 0, c.baseAddress, Int32(n))
        }
        hessianUpper!.withUnsafeMutableBufferPointer { h in
            partial.withUnsafeBufferPointer { p in
                for i in 0..<n { for j in i..<n { h[i * n + j] += Double(p[i * n + j]) } }
            }
        }
    }

    /// The plain twin of `add`'s Hessian: Σ x·xᵀ by loops in Double, for tests. [in, in]
    static func referenceHessian(_ x: [Float], rows: Int, inDim n: Int) -> [Double] {
        var h = [Double](repeating: 0, count: n * n)
        for r in 0..<rows { for i in 0..<n { for j in 0..<n { h[i * n + j] += Double(x[r * n + i]) * Double(x[r * n + j]) } } }
        return h
    }
}

/// Collects `InputStatistics` for every linear input while the engine runs (pass it as the
/// `observer` of `Engine.forward`).
public final class StatisticsCollector: ActivationObserver, @unchecked Sendable {   // state under `lock`
    public let collectHessians: Bool
    private var byKey: [String: InputStatistics] = [:]
    private var order: [String] = []
    private let lock = NSLock()

    /// `hessians`: also accumulate Σ x·xᵀ (GPTQ, AWQ's error measure); in² Doubles per distinct input.
    public init(hessians: Bool = true) { collectHessians = hessians }

    public func observe(_ input: UnsafeBufferPointer<Float>, rows: Int, inDim: Int, weights: [String], layer: Int, expert: Int?) {
        guard rows > 0, let first = weights.first else { return }
        let key = expert.map { "\(first)#\($0)" } ?? first
        lock.lock(); defer { lock.unlock() }
        let s: InputStatistics
        if let existing = byKey[key] {
            s = existing
        } else {
            s = InputStatistics(weights: weights, layer: layer, expert: expert, inDim: inDim, hessian: collectHessians)
            byKey[key] = s
            order.append(key)
        }
        precondition(s.inDim == inDim, "input width of \(first) changed between calls")
        s.add(input, rows: rows)
    }

    /// Every distinct input seen, in first-seen order (layer order).
    public var inputs: [InputStatistics] {
        lock.lock(); defer { lock.unlock() }
        return order.map { byKey[$0]! }
    }
}
