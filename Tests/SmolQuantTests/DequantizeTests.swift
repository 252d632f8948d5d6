import Foundation
import Testing
import SmolTensor
import SmolTestSupport
@testable import SmolQuant

/// Dequantization against gguf-py (Tests/Fixtures/quant-golden, made by tools/golden_quants.py).
@Suite struct DequantizeTests {
    static let golden = try! TinySafetensors(Golden.dir.appendingPathComponent("dequant.safetensors"))

    @Test(arguments: GGUFQuant.dequantizableTypes)
    func matchesGGUFPy(_ type: GGMLType) throws {
        let g = Self.golden
        let blocks = g.bytes("\(type.name).blocks")
        let expected = g.floats("\(type.name).dequant")
        #expect(expected.count > 0)
        let fast = try GGUFQuant.dequantize(type, blocks, count: expected.count)
        let ref = try GGUFQuant.dequantizeReference(type, blocks, count: expected.count)
        let mf = firstBitMismatch(fast, expected), mr = firstBitMismatch(ref, expected)
        #expect(mf == nil, "\(type.name) fast: element \(mf ?? -1): \(mf.map { fast[$0] } ?? 0) vs gguf-py \(mf.map { expected[$0] } ?? 0)")
        #expect(mr == nil, "\(type.name) reference: element \(mr ?? -1): \(mr.map { ref[$0] } ?? 0) vs gguf-py \(mr.map { expected[$0] } ?? 0)")
    }

    /// All 65 536 half floats and bfloat16s against the sha256 of numpy's conversion (NaN payloads
    /// included: numpy keeps them unquieted).
    @Test func allHalfFloats() throws {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: Golden.dir.appendingPathComponent("f16_all.json"))) as! [String: String]
        let bits = (0..<65536).flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] }
        for type in [GGMLType.f16, .bf16] {
            let fast = try GGUFQuant.dequantize(type, bits, count: 65536)
            let ref = try GGUFQuant.dequantizeReference(type, bits, count: 65536)
            #expect(SHA256.hex(floats: fast) == json[type.name], "\(type.name) fast")
            #expect(SHA256.hex(floats: ref) == json[type.name], "\(type.name) reference")
        }
    }

    /// The threaded fast path against the reference on tensors large enough to be split, with random
    /// bytes and sane scales (golden data covers the arithmetic; this covers the chunking).
    @Test(arguments: GGUFQuant.dequantizableTypes)
    func fastEqualsReferenceOnLargeTensors(_ type: GGMLType) throws {
        var rng = SplitMix64(seed: 0x5eed ^ UInt64(type.rawValue))
        let (elements, bytes) = type.blockLayout
        let count = 3 * GGUFQuant.parallelThreshold + 7 * 256   // several chunks and a ragged end
        let blocks = count / elements
        var raw = (0..<(blocks * bytes)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        // Keep scale fields finite so the comparison is about values, not NaN propagation.
        for b in 0..<blocks {
            for off in halfFieldOffsets(type) {
                let h = Float16(rng.normal() * 0.01).bitPattern
                raw[b * bytes + off] = UInt8(h & 0xff); raw[b * bytes + off + 1] = UInt8(h >> 8)
            }
        }
        let fast = try GGUFQuant.dequantize(type, raw, count: count)
        let ref = try GGUFQuant.dequantizeReference(type, raw, count: count)
        let m = firstBitMismatch(fast, ref)
        #expect(m == nil, "\(type.name): fast and reference differ at element \(m ?? -1)")
    }

    @Test func unsupportedTypesAndBadSizesThrow() throws {
        let bytes = [UInt8](repeating: 0, count: 1024)
        #expect { try GGUFQuant.dequantize(.iq2_XXS, bytes, count: 256) } throws: { e in
            let s = (e as? SmolError)?.description ?? ""
            return s.contains("IQ2_XXS") && s.contains("not supported yet")
        }
        // Not a whole number of blocks.
        #expect(throws: SmolError.self) { try GGUFQuant.dequantize(.q4_K, bytes, count: 100) }
        // Source shorter than the count needs: 8 Q4_K blocks are 1152 bytes.
        #expect(throws: SmolError.self) { try GGUFQuant.dequantize(.q4_K, bytes, count: 8 * 256) }
        #expect(throws: SmolError.self) { try GGUFQuant.dequantizeReference(.q8_0, bytes, count: 32 * 31) }
    }
}

/// Offsets of the f16 scale fields in a block (formats/gguf-quants.md).
func halfFieldOffsets(_ type: GGMLType) -> [Int] {
    switch type {
    case .q4_0, .q5_0, .q8_0, .iq4_NL, .iq4_XS: return [0]
    case .q4_1, .q5_1, .q4_K, .q5_K: return [0, 2]
    case .q2_K: return [80, 82]
    case .q3_K: return [108]
    case .q6_K: return [208]
    default: return []
    }
}
