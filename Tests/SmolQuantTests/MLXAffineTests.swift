import Foundation
import Testing
import SmolTensor
import SmolTestSupport
@testable import SmolQuant

/// MLX affine quantization against mlx 0.32.4's own output (Tests/Fixtures/quant/README.md).
@Suite struct MLXAffineTests {
    static let ref = try! TinySafetensors(Golden.quantDir.appendingPathComponent("mlx_affine_reference.safetensors"))

    struct Case: Sendable, CustomTestStringConvertible {
        let matrix: String, bits: Int, groupSize: Int
        var key: String { "\(matrix).b\(bits).g\(groupSize)" }
        var testDescription: String { key }
    }

    static let cases: [Case] = ["a", "b"].flatMap { m in
        MLXAffine.supportedBits.flatMap { b in MLXAffine.supportedGroupSizes.map { Case(matrix: m, bits: b, groupSize: $0) } }
    }

    @Test(arguments: cases)
    func reproducesMLX(_ c: Case) throws {
        let r = Self.ref
        let shape = r.shape("w.\(c.matrix)")
        let w = r.floats("w.\(c.matrix)")
        let q = try MLXAffine.quantize(w, rows: shape[0], cols: shape[1], bits: c.bits, groupSize: c.groupSize)
        #expect(r.shape("q.\(c.key)") == [shape[0], q.wordsPerRow])
        #expect(q.weight == r.u32("q.\(c.key)"), "packed weight differs")
        #expect(q.scales.map(\.bitPattern) == r.floats("scales.\(c.key)").map(\.bitPattern), "scales differ")
        #expect(q.biases.map(\.bitPattern) == r.floats("biases.\(c.key)").map(\.bitPattern), "biases differ")

        // Dequantize mlx's own arrays (not ours), both paths, against mx.dequantize.
        let theirs = MLXAffine.Quantized(rows: shape[0], cols: shape[1], bits: c.bits, groupSize: c.groupSize,
                                         weight: r.u32("q.\(c.key)"), scales: r.floats("scales.\(c.key)"), biases: r.floats("biases.\(c.key)"))
        let expected = r.floats("dequant.\(c.key)")
        let fast = try MLXAffine.dequantize(theirs), ref = try MLXAffine.dequantizeReference(theirs)
        #expect(firstBitMismatch(fast, expected) == nil, "fast dequantization differs from mx.dequantize")
        #expect(firstBitMismatch(ref, expected) == nil, "reference dequantization differs from mx.dequantize")
    }

    @Test func largeMatrixFastEqualsReference() throws {
        var rng = SplitMix64(seed: 99)
        let rows = 64, cols = 2048
        let w = (0..<(rows * cols)).map { _ in rng.normal() }
        for bits in [3, 5, 6] {
            let q = try MLXAffine.quantize(w, rows: rows, cols: cols, bits: bits, groupSize: 64)
            #expect(firstBitMismatch(try MLXAffine.dequantize(q), try MLXAffine.dequantizeReference(q)) == nil)
        }
    }

    @Test func badArgumentsThrow() {
        let w = [Float](repeating: 0, count: 64)
        #expect(throws: SmolError.self) { try MLXAffine.quantize(w, rows: 1, cols: 64, bits: 7, groupSize: 32) }
        #expect(throws: SmolError.self) { try MLXAffine.quantize(w, rows: 1, cols: 64, bits: 4, groupSize: 48) }
        #expect(throws: SmolError.self) { try MLXAffine.quantize(w, rows: 2, cols: 64, bits: 4, groupSize: 32) }
        let bad = MLXAffine.Quantized(rows: 1, cols: 64, bits: 4, groupSize: 32, weight: [0], scales: [1, 1], biases: [0, 0])
        #expect(throws: SmolError.self) { try MLXAffine.dequantize(bad) }
    }
}
