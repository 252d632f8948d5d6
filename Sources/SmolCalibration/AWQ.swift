import Foundation
import SmolQuant
import SmolTensor

/// AWQ's per-input-channel scale search (Lin et al. 2023, "AWQ: Activation-aware Weight
/// Quantization"): s = mean|x|^α, normalised so √(max·min) = 1, for α on a grid in [0, 1]; the α
/// whose quantized weights Q(W·diag(s))·diag(1/s) give the smallest output error on the
/// calibration inputs, Σ_members tr(ΔW·H·ΔWᵀ), wins (α = 0 is plain rounding, so AWQ never does worse
/// on the calibration statistics).
public enum AWQ {
    public struct Member {
        public var weights: [Float]   // [rows, cols]
        public var rows: Int
        /// Quantize-then-dequantize of a [rows, cols] matrix with per-column importance.
        public var roundTrip: (_ w: [Float], _ importance: [Float]) throws -> [Float]
        public init(weights: [Float], rows: Int, roundTrip: @escaping (_ w: [Float], _ importance: [Float]) throws -> [Float]) {
            self.weights = weights; self.rows = rows; self.roundTrip = roundTrip
        }
    }

    /// Scales for `grid` values of α; `tie`: channel groups that must share one scale (GQA: the
    /// o_proj columns of the heads reading one value head), given as a map channel → representative.
    public static func searchScales(meanAbs: [Float], importance: [Float], hessian: [Float], members: [Member],
                                    grid: Int = 11, tie: ((Int) -> Int)? = nil) throws -> (scales: [Float], alpha: Float, error: Double, plainError: Double) {
        let n = meanAbs.count
        var base = meanAbs.map { max($0, 1e-5) }
        if let tie {
            // Average the channels tied to one representative.
            var sum = [Float](repeating: 0, count: n), cnt = [Float](repeating: 0, count: n)
            for c in 0..<n { sum[tie(c)] += base[c]; cnt[tie(c)] += 1 }
            for c in 0..<n { base[c] = sum[tie(c)] / cnt[tie(c)] }
        }
        var best: (s: [Float], a: Float, e: Double) = ([Float](repeating: 1, count: n), 0, .infinity)
        var plain = Double.nan
        for step in 0..<max(grid, 1) {
            let alpha = grid > 1 ? Float(step) / Float(grid - 1) : 0
            var s = base.map { Float(pow(Double($0), Double(alpha))) }
            let mx = s.max()!, mn = s.min()!
            let norm = Float((Double(mx) * Double(mn)).squareRoot())
            for c in 0..<n { s[c] /= norm }
            let imp = (0..<n).map { importance[$0] / (s[$0] * s[$0]) }
            var e = 0.0
            for m in members {
                var ws = m.weights
                for r in 0..<m.rows { for c in 0..<n { ws[r * n + c] *= s[c] } }
                var q = try m.roundTrip(ws, imp)
                for r in 0..<m.rows { for c in 0..<n { q[r * n + c] /= s[c] } }
                e += CalibratedQuantizer.outputError(m.weights, q, rows: m.rows, cols: n, hessian: hessian)
            }
            if step == 0 { plain = e }
            if e < best.e { best = (s, alpha, e) }
        }
        return (best.s, best.a, best.e, plain)
    }
}
