import Foundation
import Testing
import SmolTensor
import SmolTestSupport
@testable import SmolQuant

/// Quantization: bit-identity with gguf-py where it quantizes, ggml's error budgets elsewhere.
@Suite struct QuantizeTests {
    static let golden = try! TinySafetensors(Golden.dir.appendingPathComponent("quantize.safetensors"))

    static let gguFPyTypes: [GGMLType] = [.f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0]

    @Test(arguments: gguFPyTypes)
    func matchesGGUFPy(_ type: GGMLType) throws {
        let g = Self.golden
        let shape = g.shape("\(type.name).input")
        let x = g.floats("\(type.name).input")
        let expected = g.bytes("\(type.name).bytes")
        let ours = try GGUFQuant.quantize(type, x, rows: shape[0], rowLength: shape[1])
        let bad = zip(ours, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        #expect(ours.count == expected.count)
        #expect(bad == nil, "\(type.name): first differing byte \(bad ?? -1) (block \((bad ?? 0) / type.blockLayout.bytes))")
    }

    static let llamacpp = try! TinySafetensors(Golden.dir.appendingPathComponent("llamacpp_quantize.safetensors"))

    /// llama.cpp's own quantize_* (tools/golden_kquants.py, compiled without FMA contraction), with
    /// and without importance weights.
    @Test(arguments: [GGMLType.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K])
    func matchesLlamaCpp(_ type: GGMLType) throws {
        let g = Self.llamacpp
        let shape = g.shape("input")
        let x = g.floats("input"), importance = g.floats("importance")
        for (kind, w) in [("plain", nil), ("imatrix", importance)] as [(String, [Float]?)] {
            let expected = g.bytes("\(type.name).\(kind)")
            let ours = try GGUFQuant.quantize(type, x, rows: shape[0], rowLength: shape[1], importance: w)
            let bb = type.blockLayout.bytes
            let bad = (0..<(expected.count / bb)).filter { ours[$0 * bb..<($0 + 1) * bb] != expected[$0 * bb..<($0 + 1) * bb] }
            #expect(ours.count == expected.count)
            #expect(bad.isEmpty, "\(type.name) \(kind): \(bad.count) of \(expected.count / bb) blocks differ from llama.cpp, first \(bad.first ?? -1)")
        }
    }

    // ggml's tests/test-quantize-fns.cpp: data 0.1 + 2·cos(i + offset), RMSE of the round trip
    // against these totals (MAX_QUANTIZATION_TOTAL_ERROR, _2BITS, _3BITS).
    static let maxTotalError: Float = 0.002
    static let maxTotalError2Bits: Float = 0.0075
    static let maxTotalError3Bits: Float = 0.0040

    static func budget(_ type: GGMLType) -> Float {
        switch type {
        case .q2_K: return maxTotalError2Bits
        case .q3_K: return maxTotalError3Bits
        default: return maxTotalError
        }
    }

    static func ggmlTestData(_ n: Int, offset: Float) -> [Float] {
        (0..<n).map { 0.1 + 2 * cos(Float($0) + offset) }
    }

    /// test-quantize-fns' `array_rmse`: sqrt(Σ diff²) / n (its name notwithstanding, what the
    /// budgets above are stated in).
    static func ggmlTotalError(_ a: [Float], _ b: [Float]) -> Float {
        var s: Double = 0
        for i in 0..<a.count { let d = Double(a[i]) - Double(b[i]); s += d * d }
        return Float(s.squareRoot()) / Float(a.count)
    }

    static let quantTypes: [GGMLType] = [.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K]

    @Test(arguments: quantTypes)
    func roundTripErrorWithinGGMLBudget(_ type: GGMLType) throws {
        let n = 32 * 128   // test-quantize-fns' test_size
        let x = Self.ggmlTestData(n, offset: 0)
        let q = try GGUFQuant.quantize(type, x, rows: 1, rowLength: n)
        #expect(q.count == n / type.blockLayout.elements * type.blockLayout.bytes)
        let back = try GGUFQuant.dequantize(type, q, count: n)
        let e = Self.ggmlTotalError(x, back)
        #expect(e < Self.budget(type), "\(type.name): RMSE \(e) ≥ \(Self.budget(type))")
    }

    /// With per-column importance (the imatrix path) on 4 rows of the same data: within the same
    /// budget, and different from the plain path for the types that use the weights.
    @Test(arguments: quantTypes)
    func importancePathWithinBudget(_ type: GGMLType) throws {
        let cols = 512, rows = 8   // 4096 values, test-quantize-fns' test_size
        let x = (0..<rows).flatMap { Self.ggmlTestData(cols, offset: Float($0) * 0.37) }
        var rng = SplitMix64(seed: 7)
        let importance = (0..<cols).map { _ in Float.random(in: 0.1...2, using: &rng) }
        let q = try GGUFQuant.quantize(type, x, rows: rows, rowLength: cols, importance: importance)
        let back = try GGUFQuant.dequantize(type, q, count: rows * cols)
        let e = Self.ggmlTotalError(x, back)
        #expect(e < Self.budget(type), "\(type.name) with importance: RMSE \(e)")
        if type != .q8_0 && type != .q8_K {
            let plain = try GGUFQuant.quantize(type, x, rows: rows, rowLength: cols)
            #expect(plain != q, "\(type.name): importance weights had no effect")
        }
    }

    /// Types whose quantizer maps its own dequantized output back to the same bytes. For Q2_K,
    /// Q3_K, Q5_K, Q6_K and Q8_K llama.cpp's search is not idempotent on the first round (measured
    /// with llama.cpp's compiled quantizers: e.g. Q3_K changed 13 of 32 blocks, Q6_K 7, Q5_K 1 on
    /// N(0, 0.05²) data), but the second round is a fixed point.
    static let firstRoundStable: Set<GGMLType> = [.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q4_K]

    /// Grid stability: requantizing our dequantized output gives the same bytes (after one round for
    /// the types where llama.cpp's search itself needs one).
    @Test(arguments: quantTypes)
    func requantizingDequantizedOutputIsStable(_ type: GGMLType) throws {
        var rng = SplitMix64(seed: 11 &+ UInt64(type.rawValue))
        let rows = 8, cols = 1024, n = rows * cols
        let x = (0..<n).map { _ in rng.normal() * 0.05 }
        let q1 = try GGUFQuant.quantize(type, x, rows: rows, rowLength: cols)
        let q2 = try GGUFQuant.quantize(type, GGUFQuant.dequantize(type, q1, count: n), rows: rows, rowLength: cols)
        let q3 = try GGUFQuant.quantize(type, GGUFQuant.dequantize(type, q2, count: n), rows: rows, rowLength: cols)
        let bb = type.blockLayout.bytes
        func changed(_ a: [UInt8], _ b: [UInt8]) -> Int {
            (0..<(a.count / bb)).filter { a[$0 * bb..<($0 + 1) * bb] != b[$0 * bb..<($0 + 1) * bb] }.count
        }
        if type == .q8_K {
            // Q8_K keeps its scale as float32 1/iscale, which can drift by an ulp each round
            // (1 / (−127 / (d·−127)) ≠ d); the levels must not move.
            for b in 0..<(q1.count / bb) {
                #expect(q1[(b * bb + 4)..<((b + 1) * bb)] == q2[(b * bb + 4)..<((b + 1) * bb)], "Q8_K block \(b): levels changed")
                let d1 = Float(bitPattern: q1.withUnsafeBytes { loadU32($0.baseAddress!, b * bb) })
                let d2 = Float(bitPattern: q2.withUnsafeBytes { loadU32($0.baseAddress!, b * bb) })
                #expect(abs(d1 - d2) <= d1.ulp, "Q8_K block \(b): scale \(d1) → \(d2)")
            }
            return
        }
        if Self.firstRoundStable.contains(type) {
            #expect(changed(q1, q2) == 0, "\(type.name): \(changed(q1, q2)) of \(q1.count / bb) blocks changed on requantization")
        }
        #expect(changed(q2, q3) == 0, "\(type.name): \(changed(q2, q3)) blocks changed on the second requantization")
    }

    /// Threads split large inputs by rows; the bytes must equal row-by-row quantization.
    @Test(arguments: [GGMLType.q4_K, .q6_K, .q8_0, .q5_1])
    func threadedEqualsRowByRow(_ type: GGMLType) throws {
        var rng = SplitMix64(seed: 3)
        let rows = 80, cols = 1024
        let x = (0..<(rows * cols)).map { _ in rng.normal() }
        #expect(rows * cols >= GGUFQuant.parallelThreshold)
        let all = try GGUFQuant.quantize(type, x, rows: rows, rowLength: cols)
        var byRow: [UInt8] = []
        for r in 0..<rows {
            byRow += try GGUFQuant.quantize(type, Array(x[(r * cols)..<((r + 1) * cols)]), rows: 1, rowLength: cols)
        }
        #expect(all == byRow)
    }

    @Test func badArgumentsThrow() throws {
        let x = [Float](repeating: 1, count: 256)
        #expect { try GGUFQuant.quantize(.iq2_XXS, x, rows: 1, rowLength: 256) } throws: { e in
            ((e as? SmolError)?.description ?? "").contains("IQ2_XXS")
        }
        #expect(throws: SmolError.self) { try GGUFQuant.quantize(.q4_K, x, rows: 2, rowLength: 128) }
        #expect(throws: SmolError.self) { try GGUFQuant.quantize(.q4_K, x, rows: 1, rowLength: 256, importance: [1, 2]) }
        #expect(throws: SmolError.self) { try GGUFQuant.quantize(.q4_0, x, rows: 1, rowLength: 255) }
    }

    /// Non-finite inputs must not trap (C leaves them undefined; we only promise no crash).
    @Test(arguments: quantTypes)
    func nonFiniteInputsDoNotTrap(_ type: GGMLType) throws {
        var x = (0..<256).map { Float($0) / 256 }
        x[3] = .infinity; x[40] = -.infinity; x[77] = .nan
        _ = try GGUFQuant.quantize(type, x, rows: 1, rowLength: 256)
        _ = try GGUFQuant.quantize(type, x, rows: 1, rowLength: 256, importance: [Float](repeating: 1, count: 256))
    }

    /// Every fast quantizer equals its plain reference twin byte for byte: random rows at several
    /// scales, exact ties (values at k + 0.5 steps), all-zero blocks, tiny and huge magnitudes, and
    /// blocks holding infinities or NaN (where the fast kernels hand over to the reference).
    @Test(arguments: Self.quantTypes)
    func fastEqualsReference(_ type: GGMLType) throws {
        var rng = SplitMix64(seed: 0x5eed ^ UInt64(type.rawValue))
        let rowLength = 512, rows = 48
        var x = [Float](repeating: 0, count: rows * rowLength)
        for r in 0..<rows {
            let scale: Float = [1e-30, 1e-3, 0.08, 1, 300, 1e30, 1e-43][r % 7]   // 1e-43: subnormal, 1/d overflows
            for j in 0..<rowLength { x[r * rowLength + j] = Float.random(in: -1...1, using: &rng) * scale }
        }
        // Ties: a block whose largest magnitude is 127 (so Q8_0's 1/d is 1) holding k + 0.5 values.
        for j in 0..<32 { x[6 * rowLength + j] = j == 0 ? 127 : Float(j % 16) - 7.5 }
        for j in 32..<64 { x[7 * rowLength + j] = 0 }                                   // an all-zero block
        x[8 * rowLength + 5] = .infinity; x[9 * rowLength + 300] = .nan; x[10 * rowLength + 64] = -.infinity
        let fast = try x.withUnsafeBufferPointer { try GGUFQuant.quantize(type, $0.baseAddress!, rows: rows, rowLength: rowLength) }
        let ref = try x.withUnsafeBufferPointer { try GGUFQuant.quantizeReference(type, $0.baseAddress!, rows: rows, rowLength: rowLength) }
        let bad = zip(fast, ref).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        #expect(fast.count == ref.count)
        #expect(bad == nil, "\(type.name): first differing byte \(bad ?? -1) (block \((bad ?? 0) / type.blockLayout.bytes))")
    }
}
