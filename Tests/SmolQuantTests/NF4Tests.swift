import Foundation
import Testing
import SmolTensor
import SmolTestSupport
@testable import SmolQuant

/// NF4 against bitsandbytes 0.50.2's CPU output (Tests/Fixtures/quant/README.md).
@Suite struct NF4Tests {
    static let ref = try! TinySafetensors(Golden.quantDir.appendingPathComponent("bnb_nf4_reference.safetensors"))
    static let mlx = try! TinySafetensors(Golden.quantDir.appendingPathComponent("mlx_affine_reference.safetensors"))

    struct Case: Sendable, CustomTestStringConvertible {
        let matrix: String, blockSize: Int, double: Bool
        var key: String { "\(matrix).nf4.bs\(blockSize)" + (double ? ".double" : "") }
        var testDescription: String { key }
    }

    static let cases: [Case] = ["a", "b"].flatMap { m in
        [32, 64, 128, 256].flatMap { bs in [false, true].map { Case(matrix: m, blockSize: bs, double: $0) } }
    }

    @Test func codeTables() {
        #expect(NF4.code.map(\.bitPattern) == Self.ref.floats("code.nf4").map(\.bitPattern))
        // dynamicCode is copied from the reference file; check it against the table a separate
        // bitsandbytes run stored in the double-quantized checkpoint.
        let ckpt = try! TinySafetensors(Golden.quantDir.appendingPathComponent("llama-nf4-double/model.safetensors"))
        let stored = ckpt.floats("model.layers.0.mlp.down_proj.weight.nested_quant_map")
        #expect(NF4.dynamicCode.map(\.bitPattern) == stored.map(\.bitPattern))
        #expect(NF4.dynamicCode == NF4.dynamicCode.sorted() && NF4.dynamicCode.last == 1 && NF4.dynamicCode.contains(0))
    }

    @Test(arguments: cases)
    func quantizeMatchesBitsandbytes(_ c: Case) throws {
        let r = Self.ref
        // The input matrices live in the MLX reference file (the same w.a / w.b).
        let shape = Self.mlx.shape("w.\(c.matrix)")
        let w = Self.mlx.floats("w.\(c.matrix)")
        let q = try NF4.quantize(w, rows: shape[0], cols: shape[1], blockSize: c.blockSize, doubleQuant: c.double)
        #expect(q.packed == r.bytes("packed.\(c.key)"), "packed codes differ")
        if let d = q.double {
            #expect(d.quantizedAbsmax == r.bytes("absmax.\(c.key)"), "8-bit absmax codes differ")
            #expect(d.nestedAbsmax.map(\.bitPattern) == r.floats("nested_absmax.\(c.key)").map(\.bitPattern))
            #expect(d.offset.bitPattern == r.floats("offset.\(c.key)")[0].bitPattern, "offset \(d.offset) vs \(r.floats("offset.\(c.key)")[0])")
        } else {
            #expect(q.absmax.map(\.bitPattern) == r.floats("absmax.\(c.key)").map(\.bitPattern))
        }
    }

    /// Dequantizing bitsandbytes' own arrays reproduces its CPU `dequantize_4bit` bit for bit; the
    /// flat indexing agrees wherever rows are whole blocks (all but w.b with blocks of 256).
    @Test(arguments: cases)
    func dequantizeMatchesBitsandbytes(_ c: Case) throws {
        let r = Self.ref
        let shape = r.shape("dequant.\(c.key)")
        let double: NF4.DoubleQuant? = c.double
            ? NF4.DoubleQuant(quantizedAbsmax: r.bytes("absmax.\(c.key)"), nestedAbsmax: r.floats("nested_absmax.\(c.key)"),
                              nestedCode: r.floats("nested_code.\(c.key)"), offset: r.floats("offset.\(c.key)")[0])
            : nil
        let q = NF4.Quantized(rows: shape[0], cols: shape[1], blockSize: c.blockSize, packed: r.bytes("packed.\(c.key)"),
                              absmax: c.double ? [] : r.floats("absmax.\(c.key)"), double: double, code: r.floats("code.nf4"))
        let expected = r.floats("dequant.\(c.key)")
        let cpu = try NF4.dequantize(q, indexing: .bitsandbytesCPU)
        #expect(firstBitMismatch(cpu, expected) == nil)
        #expect(firstBitMismatch(try NF4.dequantizeReference(q, indexing: .bitsandbytesCPU), expected) == nil)
        let flat = try NF4.dequantize(q)
        #expect(firstBitMismatch(flat, try NF4.dequantizeReference(q)) == nil)
        if shape[1] % c.blockSize == 0 {
            #expect(firstBitMismatch(flat, expected) == nil)
        } else {
            #expect(firstBitMismatch(flat, expected) != nil, "expected bitsandbytes' CPU row indexing to differ here")
        }
    }

    /// The on-disk checkpoints: every NF4 weight parses; requantizing the original F32 weights
    /// (Tests/Fixtures/hf/llama) reproduces the saved bytes; dequantization equals the
    /// reference-file formula applied to the saved arrays.
    @Test(arguments: ["llama-nf4", "llama-nf4-double"])
    func checkpointLayout(_ dir: String) throws {
        let src = try TinySafetensorsSource(Golden.quantDir.appendingPathComponent(dir).appendingPathComponent("model.safetensors"))
        let original = try TinySafetensors(Fixtures.hf("llama").appendingPathComponent("model.safetensors"))
        let names = src.tensorInfos.map(\.name).filter { $0.hasSuffix(".quant_state.bitsandbytes__nf4") }
            .map { String($0.dropLast(".quant_state.bitsandbytes__nf4".count)) }
        #expect(names.count >= 7)
        for name in names {
            let q = try NF4.checkpointWeight(src, name)
            #expect([q.rows, q.cols] == original.shape(name), "\(name): shape")
            #expect((q.double != nil) == (dir == "llama-nf4-double"))
            let requantized = try NF4.quantize(original.floats(name), rows: q.rows, cols: q.cols, blockSize: q.blockSize, doubleQuant: q.double != nil)
            #expect(requantized.packed == q.packed, "\(name): packed codes differ from the checkpoint")
            #expect(requantized.absmax == q.absmax && requantized.double?.quantizedAbsmax == q.double?.quantizedAbsmax, "\(name): absmax differs")
            #expect(requantized.double?.offset == q.double?.offset, "\(name): offset differs")
            let w = try NF4.dequantize(q, indexing: .bitsandbytesCPU)
            #expect(firstBitMismatch(w, try NF4.dequantizeReference(q)) == nil, "\(name): dequantization")
            // NF4 keeps each value within half a code gap of the original: |w − x| ≤ absmax · 0.16
            // (the widest half gap of the NF4 code, between −1 and −0.696, is 0.152).
            let x = original.floats(name)
            let scales = try NF4.blockScales(q)
            for i in stride(from: 0, to: x.count, by: 7) {
                #expect(abs(w[i] - x[i]) <= scales[i / q.blockSize] * 0.16 + 1e-6, "\(name)[\(i)]")
            }
        }
    }

    @Test func malformedCheckpointsThrow() throws {
        final class Fake: TensorSource, @unchecked Sendable {
            let path = "fake.safetensors"
            var tensors: [String: (TensorInfo, [UInt8])] = [:]
            var tensorInfos: [TensorInfo] { tensors.values.map(\.0) }
            func tensorBytes(_ name: String) throws -> TensorBytes { TensorBytes(tensors[name]!.1) }
            func add(_ n: String, _ t: DType, _ shape: [Int], _ b: [UInt8]) { tensors[n] = (TensorInfo(name: n, type: .dense(t), shape: shape), b) }
        }
        let f = Fake()
        let json = Array(#"{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [64, 128]}"#.utf8)
        f.add("w.quant_state.bitsandbytes__nf4", .u8, [json.count], json)
        f.add("w", .u8, [100, 1], [UInt8](repeating: 0, count: 100))   // should be 4096 bytes
        f.add("w.quant_map", .f32, [16], NF4.code.withUnsafeBytes { Array($0) })
        f.add("w.absmax", .f32, [128], [UInt8](repeating: 0, count: 512))
        #expect { try NF4.checkpointWeight(f, "w") } throws: { e in
            let s = (e as? SmolError)?.description ?? ""
            return s.contains("fake.safetensors") && s.contains("'w'")
        }
        #expect(throws: SmolError.self) { try NF4.checkpointWeight(f, "missing") }
    }
}
