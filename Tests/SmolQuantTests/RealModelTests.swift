import Foundation
import Testing
import SmolTensor
import SmolTestSupport
@testable import SmolQuant

/// Every tensor of the real Gemma 3 270M Q4_K_M GGUF: our fast and reference dequantizers agree bit
/// for bit, and equal gguf-py's dequantization (sha256 of its float32 bytes, with the tensor's
/// offset and size in the file, from tools/golden_quants.py --model).
@Suite struct RealModelTests {
    /// Tensors up to this many elements are also compared by sha256 (slow in debug builds).
    static let sha256Limit = 1 << 20

    @Test(.enabled(if: Fixtures.realModel != nil, "real model not installed (tools/setup)"))
    func everyTensorMatchesGGUFPy() throws {
        let url = try #require(Fixtures.realModel)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: Golden.dir.appendingPathComponent("model_sha256.json"))) as! [String: [String: Any]]
        #expect(json.count == 236)
        let file = try MappedFile(path: url.path)
        for (name, info) in json.sorted(by: { $0.key < $1.key }) {
            let type = try #require(GGMLType(name: info["type"] as! String))
            let shape = info["shape"] as! [Int]
            let count = shape.reduce(1, *)
            let bytes = try file.bytes(at: info["offset"] as! Int, count: info["nbytes"] as! Int)
            var fast = [Float](repeating: 0, count: count), ref = fast
            try fast.withUnsafeMutableBufferPointer { try GGUFQuant.dequantize(type, bytes, count: count, into: $0.baseAddress!) }
            try ref.withUnsafeMutableBufferPointer { try GGUFQuant.dequantizeReference(type, bytes, count: count, into: $0.baseAddress!) }
            let m = firstBitMismatch(fast, ref)
            #expect(m == nil, "\(name) (\(type.name)): fast and reference differ at \(m ?? -1)")
            let sum = String(weightedChecksum(fast), radix: 16)
            #expect(sum.leftPadded(16) == info["checksum"] as? String, "\(name) (\(type.name)) differs from gguf-py")
            // sha256 too where a debug build hashes it quickly.
            if count <= Self.sha256Limit {
                #expect(SHA256.hex(floats: fast) == info["sha256"] as? String, "\(name) (\(type.name)) sha256 differs from gguf-py")
            }
        }
    }
}

/// tools/golden_quants.py's `weighted_checksum`: Σ bits(v[i])·(2i+1) mod 2⁶⁴.
func weightedChecksum(_ v: [Float]) -> UInt64 {
    v.withUnsafeBufferPointer { p in
        var s: UInt64 = 0
        for i in 0..<p.count { s = s &+ UInt64(p[i].bitPattern) &* UInt64(2 * i + 1) }
        return s
    }
}

extension String {
    func leftPadded(_ n: Int) -> String { String(repeating: "0", count: max(0, n - count)) + self }
}
