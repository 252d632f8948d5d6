import Foundation
import Testing
import SmolFormats
import SmolTensor
import SmolTestSupport
@testable import SmolKernels

/// Quantized matmul vs dequantize-then-Double-matmul: both use exactly the same F32 weights, so the
/// only difference is Float32 summation order (8-lane SIMD or BLAS blocking vs Double). The bound is
/// per output element, relative to Σ|wᵢ·xᵢ| (what rounding errors scale with, unlike the result,
/// which can cancel to ~0): n·u ≈ 2048 · 6e-8 ≈ 1.2e-4 is the worst case for our longest rows,
/// √n·u ≈ 3e-6 the typical; 1e-5 sits between, far below the O(1) error of a wrong index or scale.
let quantMatmulTolerance: Double = 1e-5

/// Random encoded rows of `type` whose f16 scales are finite and realistic (random bits elsewhere).
func randomQuantBytes(_ type: GGMLType, rows: Int, cols: Int, seed: UInt64) -> [UInt8] {
    var rng = SeededRandom(seed)
    let (elements, blockBytes) = type.blockLayout
    var bytes = (0..<(rows * cols / elements * blockBytes)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    func scale(_ bytes: inout [UInt8], at offset: Int, positive: Bool) {
        let magnitude = Float(sign: .plus, exponent: -3 - Int(rng.next() % 10), significand: 1 + Float(rng.next() % 1000) / 1000)
        let bits = Float16(positive || rng.next() % 2 == 0 ? magnitude : -magnitude).bitPattern
        bytes[offset] = UInt8(bits & 0xff); bytes[offset + 1] = UInt8(bits >> 8)
    }
    switch type {
    case .f32:
        return rng.floats(rows * cols).withUnsafeBytes { Array($0) }
    case .f16:
        return rng.floats(rows * cols).map { Float16($0).bitPattern }.withUnsafeBytes { Array($0) }
    case .bf16:
        return rng.floats(rows * cols).map { FloatBits.f32ToBF16($0) }.withUnsafeBytes { Array($0) }
    case .q8_0, .q4_0, .q5_0:
        for b in stride(from: 0, to: bytes.count, by: blockBytes) { scale(&bytes, at: b, positive: false) }
    case .q4_K:
        for b in stride(from: 0, to: bytes.count, by: blockBytes) {
            scale(&bytes, at: b, positive: true); scale(&bytes, at: b + 2, positive: true)
        }
    case .q6_K:
        for b in stride(from: 0, to: bytes.count, by: blockBytes) { scale(&bytes, at: b + 208, positive: false) }
    default:
        preconditionFailure()
    }
    return bytes
}

/// Checks y (from the kernel under test) against Σ wᵢxᵢ in Double over the dequantized weight.
func expectMatmulClose(_ y: [Float], x: [Float], tokens: Int, weight: QuantizedLinear, _ what: String) {
    let w = weight.dequantizedReference()
    var worst = 0.0
    for t in 0..<tokens {
        for r in 0..<weight.rows {
            var s = 0.0, bound = 0.0
            for i in 0..<weight.cols {
                let p = Double(w[r * weight.cols + i]) * Double(x[t * weight.cols + i])
                s += p; bound += abs(p)
            }
            worst = max(worst, abs(Double(y[t * weight.rows + r]) - s) / max(bound, .leastNormalMagnitude))
        }
    }
    #expect(worst <= quantMatmulTolerance, "\(what): worst error \(worst) of Σ|w·x|")
}

@Suite struct QuantizedLinearTests {
    @Test func halfToFloatMatchesFloat16ForEveryBitPattern() {
        for bits in 0...UInt16.max {
            let expected = Float(Float16(bitPattern: bits)), got = halfToFloat(bits)
            if expected.isNaN {
                #expect(got.isNaN && got.sign == expected.sign, "0x\(String(bits, radix: 16))")
            } else {
                #expect(got.bitPattern == expected.bitPattern, "0x\(String(bits, radix: 16))")
            }
        }
    }

    struct Golden: Decodable { var type: String; var rows: Int; var cols: Int }

    /// Reference and fast dequantizers vs gguf-py's `gguf.quants.dequantize` (Tests/Fixtures/kernels),
    /// bit for bit.
    @Test func dequantizeMatchesGGUFPy() throws {
        let dir = Fixtures.root.appendingPathComponent("kernels")
        let manifest = try JSONDecoder().decode([Golden].self, from: Data(contentsOf: dir.appendingPathComponent("manifest.json")))
        #expect(manifest.count == 7)
        for g in manifest {
            let type = try #require(GGMLType(name: g.type))
            let raw = try [UInt8](Data(contentsOf: dir.appendingPathComponent("\(g.type).bin")))
            let expected = try Data(contentsOf: dir.appendingPathComponent("\(g.type).f32")).withUnsafeBytes {
                Array($0.bindMemory(to: Float.self))
            }
            let w = try QuantizedLinear(type: type, rows: g.rows, cols: g.cols, bytes: TensorBytes(raw))
            #expect(expected.count == g.rows * g.cols)
            for (label, got) in [("reference", w.dequantizedReference()), ("fast", w.dequantized())] {
                let mismatches = zip(got, expected).filter { $0.bitPattern != $1.bitPattern }.count
                #expect(mismatches == 0, "\(g.type) \(label): \(mismatches) values differ from gguf-py")
            }
        }
    }

    /// Fast dequantization == reference, bit for bit, on many random rows (every code path, odd
    /// lengths for the dense types' scalar tails).
    @Test(arguments: [GGMLType.f32, .f16, .bf16, .q8_0, .q4_0, .q5_0, .q4_K, .q6_K])
    func fastDequantizeMatchesReference(type: GGMLType) throws {
        let cols = type.blockLayout.elements == 1 ? 517 : 4 * 256
        let rows = 16
        let w = try QuantizedLinear(type: type, rows: rows, cols: cols,
                                    bytes: TensorBytes(randomQuantBytes(type, rows: rows, cols: cols, seed: 7)))
        let fast = w.dequantized(), reference = w.dequantizedReference()
        #expect(zip(fast, reference).allSatisfy { $0.bitPattern == $1.bitPattern })
    }

    /// Q5_0 re-encoded as Q8_0 (the engine's decode layout for Q5_0 weights): the reference
    /// dequantizer gives the same values bit for bit, on random blocks (every high-bit pattern).
    @Test func q5_0AsQ8_0IsLossless() throws {
        let rows = 16, cols = 4 * 256
        let q5 = try QuantizedLinear(type: .q5_0, rows: rows, cols: cols,
                                     bytes: TensorBytes(randomQuantBytes(.q5_0, rows: rows, cols: cols, seed: 11)))
        let q8bytes = q5.bytes.withUnsafeBytes { QuantKernels.q5_0AsQ8_0($0) }
        let q8 = try QuantizedLinear(type: .q8_0, rows: rows, cols: cols, bytes: TensorBytes(q8bytes))
        #expect(zip(q8.dequantizedReference(), q5.dequantizedReference()).allSatisfy { $0.bitPattern == $1.bitPattern })
    }

    /// apply() for every path: matvec (T ≤ matvecMaxTokens) and tiled sgemm (more), with several
    /// tiles (rows > tileElements / cols) and a partial last tile.
    @Test(arguments: [GGMLType.f32, .f16, .bf16, .q8_0, .q4_0, .q5_0, .q4_K, .q6_K])
    func applyMatchesDequantizeThenMatmul(type: GGMLType) throws {
        let cols = 512
        let rows = QuantizedLinear.tileElements / cols + 37
        let w = try QuantizedLinear(type: type, rows: rows, cols: cols,
                                    bytes: TensorBytes(randomQuantBytes(type, rows: rows, cols: cols, seed: 11)))
        var rng = SeededRandom(3)
        for tokens in [1, 3, QuantizedLinear.matvecMaxTokens, QuantizedLinear.matvecMaxTokens + 1, 20] {
            let x = rng.floats(tokens * cols)
            expectMatmulClose(w.apply(x, tokens: tokens), x: x, tokens: tokens, weight: w, "\(type.name) T=\(tokens)")
        }
    }

    /// Both fused dots (the AVX2 C kernels when this CPU has them, and the portable Swift ones) vs
    /// the Double dot over the reference-dequantized row.
    @Test(arguments: [GGMLType.f32, .q8_0, .q4_0, .q5_0, .q4_K, .q6_K])
    func fusedDotsMatchReference(type: GGMLType) throws {
        let rows = 24, cols = 2048
        let w = try QuantizedLinear(type: type, rows: rows, cols: cols,
                                    bytes: TensorBytes(randomQuantBytes(type, rows: rows, cols: cols, seed: 23)))
        var rng = SeededRandom(29)
        let x = rng.floats(cols)
        for path in ["dispatched", "portable"] {
            var y = [Float](repeating: 0, count: rows)
            w.bytes.withUnsafeBytes { raw in
                x.withUnsafeBufferPointer { xp in
                    for r in 0..<rows {
                        let row = raw.baseAddress! + r * w.rowBytes
                        y[r] = (path == "portable" ? QuantKernels.portableDotRow(type, row, xp.baseAddress!, count: cols)
                                : QuantKernels.dotRow(type, row, xp.baseAddress!, count: cols))!
                    }
                }
            }
            expectMatmulClose(y, x: x, tokens: 1, weight: w, "\(type.name) \(path) (AVX2 available: \(useAVX2Kernels))")
        }
    }

    @Test func referenceQuantMatmulEqualsDenseReference() throws {
        let w = try QuantizedLinear(type: .q4_K, rows: 5, cols: 256,
                                    bytes: TensorBytes(randomQuantBytes(.q4_K, rows: 5, cols: 256, seed: 5)))
        var rng = SeededRandom(9)
        let x = rng.floats(2 * 256)
        #expect(ReferenceKernels.matmul(x, tokens: 2, weight: w)
                == ReferenceKernels.matmul(x, rows: 2, inDim: 256, weight: w.dequantized(), outDim: 5))
    }

    @Test func gatherRowsAndValidation() throws {
        let bytes = randomQuantBytes(.q8_0, rows: 10, cols: 64, seed: 2)
        let w = try QuantizedLinear(type: .q8_0, rows: 10, cols: 64, bytes: TensorBytes(bytes))
        let all = w.dequantizedReference()
        #expect(try w.gatherRows([3, 0, 3]) == Array(all[192..<256]) + Array(all[0..<64]) + Array(all[192..<256]))
        #expect(throws: SmolError.self) { try w.gatherRows([10]) }
        #expect(throws: SmolError.self) { try w.gatherRows([-1]) }
        // Byte count, block multiple, unsupported type.
        #expect(throws: SmolError.self) { try QuantizedLinear(type: .q8_0, rows: 10, cols: 64, bytes: TensorBytes(Array(bytes.dropLast()))) }
        #expect(throws: SmolError.self) { try QuantizedLinear(type: .q8_0, rows: 10, cols: 48, bytes: TensorBytes(bytes)) }
        #expect(throws: SmolError.self) { try QuantizedLinear(type: .q2_K, rows: 1, cols: 256, bytes: TensorBytes([UInt8](repeating: 0, count: 84))) }
        #expect(throws: SmolError.self) {
            try QuantizedLinear(TensorInfo(name: "t", type: .block(.q8_0), shape: [2, 2, 32]), bytes: TensorBytes(bytes))
        }
    }

    /// The real Gemma 3 270M Q4_K_M tensors, one per type (Q5_0, Q4_K, Q8_0, Q6_K, and the Q8_0
    /// embedding / tied output), first rows only to keep debug builds quick.
    @Test func realModelTensors() throws {
        guard let url = Fixtures.realModel else { return }
        let gguf = try GGUFFile(path: url.path)
        let names = ["blk.0.attn_q.weight", "blk.0.attn_output.weight", "blk.0.attn_v.weight",
                     "blk.0.ffn_down.weight", "blk.2.ffn_down.weight", "token_embd.weight"]
        var types = Set<GGMLType>()
        for name in names {
            let info = try #require(gguf.tensor(name)).tensorInfo
            let full = try QuantizedLinear(info, bytes: try gguf.tensorBytes(name))
            types.insert(full.type)
            #expect(full.rows == info.shape[0] && full.cols == info.shape[1])
            let rows = min(full.rows, 48)
            let slice = full.bytes.withUnsafeBytes { Array($0[0..<(rows * full.rowBytes)]) }
            let w = try QuantizedLinear(type: full.type, rows: rows, cols: full.cols, bytes: TensorBytes(slice))
            var rng = SeededRandom(17)
            for tokens in [1, 12] {
                let x = rng.floats(tokens * w.cols)
                expectMatmulClose(w.apply(x, tokens: tokens), x: x, tokens: tokens, weight: w, "\(name) T=\(tokens)")
            }
        }
        #expect(types == [.q5_0, .q4_K, .q8_0, .q6_K])
    }
}
