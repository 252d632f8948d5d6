import COpenBLAS
import Foundation
import SmolTensor

/// Dense symmetric positive-definite algebra GPTQ needs, in Float64 on row-major n×n matrices.
enum SPD {
    /// Lower Cholesky factor L (A = L·Lᵀ), in place over the lower triangle; the strict upper
    /// triangle is zeroed. Blocked (64 columns): unblocked factor of the diagonal block, dtrsm for
    /// the panel below it, dsyrk for the trailing matrix. Returns false when A is not positive definite.
    static func cholesky(_ a: inout [Double], n: Int) -> Bool {
        let nb = 64
        var ok = true
        a.withUnsafeMutableBufferPointer { p in
            let A = p.baseAddress!
            var k = 0
            while k < n && ok {
                let b = min(nb, n - k)
                // Diagonal block, unblocked.
                for j in k..<(k + b) {
                    var s = A[j * n + j]
                    for t in k..<j { s -= A[j * n + t] * A[j * n + t] }
                    guard s > 0, s.isFinite else { ok = false; return }
                    let d = s.squareRoot()
                    A[j * n + j] = d
                    for i in (j + 1)..<(k + b) {
                        var v = A[i * n + j]
                        for t in k..<j { v -= A[i * n + t] * A[j * n + t] }
                        A[i * n + j] = v / d
                    }
                }
                let rest = n - k - b
                if rest > 0 {
                    // Panel: L21 = A21 · L11⁻ᵀ.
                    cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit,
                                Int32(rest), Int32(b), 1, A + k * n + k, Int32(n), A + (k + b) * n + k, Int32(n))
                    // Trailing: A22 −= L21 · L21ᵀ (lower triangle).
                    cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, Int32(rest), Int32(b), -1,
                                A + (k + b) * n + k, Int32(n), 1, A + (k + b) * n + (k + b), Int32(n))
                }
                k += b
            }
            for i in 0..<n { for j in (i + 1)..<max(i + 1, n) { A[i * n + j] = 0 } }
        }
        return ok
    }

    /// The plain twin of `cholesky`: the textbook column-by-column loops.
    static func choleskyReference(_ a: [Double], n: Int) -> [Double]? {
        var L = [Double](repeating: 0, count: n * n)
        for j in 0..<n {
            var s = a[j * n + j]
            for t in 0..<j { s -= L[j * n + t] * L[j * n + t] }
            guard s > 0 else { return nil }
            L[j * n + j] = s.squareRoot()
            for i in (j + 1)..<max(j + 1, n) {
                var v = a[i * n + j]
                for t in 0..<j { v -= L[i * n + t] * L[j * n + t] }
                L[i * n + j] = v / L[j * n + j]
            }
        }
        return L
    }

    /// A⁻¹ from its lower Cholesky factor L: A⁻¹ = L⁻ᵀ·L⁻¹.
    static func inverse(fromCholesky L: [Double], n: Int) -> [Double] {
        var inv = [Double](repeating: 0, count: n * n)   // L⁻¹, by solving L·X = I
        for i in 0..<n { inv[i * n + i] = 1 }
        L.withUnsafeBufferPointer { l in
            inv.withUnsafeMutableBufferPointer { x in
                cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit,
                            Int32(n), Int32(n), 1, l.baseAddress, Int32(n), x.baseAddress, Int32(n))
            }
        }
        var out = [Double](repeating: 0, count: n * n)
        inv.withUnsafeBufferPointer { x in
            out.withUnsafeMutableBufferPointer { o in
                // (L⁻¹)ᵀ·L⁻¹, upper triangle, then mirrored.
                cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(n), Int32(n), 1,
                            x.baseAddress, Int32(n), 0, o.baseAddress, Int32(n))
            }
        }
        for i in 0..<n { for j in 0..<i { out[i * n + j] = out[j * n + i] } }
        return out
    }
}
