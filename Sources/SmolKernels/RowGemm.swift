import COpenBLAS
import CSmolKernels

extension Kernels {
    /// Few-row matrix product against a weight read in place, for one expert's token group (see
    /// CSmolKernels/gemm_rows.c for why it is not sgemm): single-threaded, so experts can run on
    /// separate cores.
    ///   transposedWeight: c[n, out] (+)= x[n, k] · wᵀ, w [out, k] (the forward of y = x · Wᵀ)
    ///   otherwise:        c[n, out] (+)= x[n, k] · w,  w [k, out] (its input gradient)
    /// Row strides ldx, ldw, ldc; accumulate adds to c instead of overwriting it; work: see
    /// `gemmRowsWork`. Without AVX2 and FMA it calls sgemm. The plain twin is `ReferenceKernels.gemmRows`.
    public static func gemmRows(transposedWeight: Bool, n: Int, outDim: Int, k: Int,
                                _ x: UnsafePointer<Float>, ldx: Int, _ w: UnsafePointer<Float>, ldw: Int,
                                accumulate: Bool, _ c: UnsafeMutablePointer<Float>, ldc: Int,
                                work: UnsafeMutablePointer<Float>? = nil) {
        if n == 0 || outDim == 0 { return }
        if k == 0 {
            if !accumulate { for t in 0..<n { (c + t * ldc).update(repeating: 0, count: outDim) } }
            return
        }
        guard useAVX2Kernels else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, transposedWeight ? CblasTrans : CblasNoTrans,
                        Int32(n), Int32(outDim), Int32(k), 1, x, Int32(ldx), w, Int32(ldw),
                        accumulate ? 1 : 0, c, Int32(ldc))
            return
        }
        func run(_ work: UnsafeMutablePointer<Float>) {
            if transposedWeight {
                smolk_sgemm_rows_nt_avx2(n, outDim, k, x, ldx, w, ldw, accumulate ? 1 : 0, c, ldc, work)
            } else {
                smolk_sgemm_rows_nn_avx2(n, outDim, k, x, ldx, w, ldw, accumulate ? 1 : 0, c, ldc, work)
            }
        }
        if let work { return run(work) }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: smolk_sgemm_rows_work(n, outDim, k)) { run($0.baseAddress!) }
    }

    /// Floats of `work` that `gemmRows` needs for these sizes (pass it a buffer at least this large
    /// to reuse one across calls: a fresh one is page faults on every call).
    public static func gemmRowsWork(n: Int, outDim: Int, k: Int) -> Int { smolk_sgemm_rows_work(n, outDim, k) }
}

extension ReferenceKernels {
    /// Twin of `Kernels.gemmRows`: each element a Double sum in k order.
    public static func gemmRows(transposedWeight: Bool, n: Int, outDim: Int, k: Int,
                                _ x: UnsafePointer<Float>, ldx: Int, _ w: UnsafePointer<Float>, ldw: Int,
                                accumulate: Bool, _ c: UnsafeMutablePointer<Float>, ldc: Int) {
        for t in 0..<n {
            for o in 0..<outDim {
                var s: Double = accumulate ? Double(c[t * ldc + o]) : 0
                for j in 0..<k {
                    let wv = transposedWeight ? w[o * ldw + j] : w[j * ldw + o]
                    s += Double(x[t * ldx + j]) * Double(wv)
                }
                c[t * ldc + o] = Float(s)
            }
        }
    }
}
