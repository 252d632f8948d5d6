import Foundation
import Testing
import SmolTensor
import SmolTestSupport
@testable import SmolQuant

/// Every tensor of the real Gemma 3 270M Q4_K_M GGUF: our fast and reference dequantizers agree bit
/// for bit, and equal gguf-py's dequantization (sha256 of its float32 bytes, with the tensor's
/// offset and size in the file, from tools/golden_quants.py --model).
@Suite struct RealModelTests {
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
            #expect(SHA256.hex(floats: fast) == info["sha256"] as? String, "\(name) (\(type.name)) differs from gguf-py")
        }
    }
}
