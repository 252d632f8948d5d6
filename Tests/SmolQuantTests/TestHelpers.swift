import Foundation
import SmolTensor
import SmolTestSupport

/// A minimal safetensors reader for the golden files (8-byte little-endian header length, JSON
/// header, data), so these tests do not depend on SmolFormats' reader.
struct TinySafetensors {
    let data: Data
    let entries: [String: (dtype: String, shape: [Int], start: Int, end: Int)]

    init(_ url: URL) throws {
        data = try Data(contentsOf: url)
        let n = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as! [String: Any]
        var e: [String: (String, [Int], Int, Int)] = [:]
        for (k, v) in header where k != "__metadata__" {
            let d = v as! [String: Any]
            let off = d["data_offsets"] as! [Int]
            e[k] = (d["dtype"] as! String, d["shape"] as! [Int], 8 + n + off[0], 8 + n + off[1])
        }
        entries = e
    }

    func bytes(_ name: String) -> [UInt8] {
        guard let e = entries[name] else { fatalError("no tensor \(name)") }
        return [UInt8](data[e.start..<e.end])
    }

    func shape(_ name: String) -> [Int] { entries[name]!.shape }

    func floats(_ name: String) -> [Float] {
        let b = bytes(name)
        return b.withUnsafeBytes { r in (0..<(b.count / 4)).map { Float(bitPattern: UInt32(littleEndian: r.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) } }
    }

    func u32(_ name: String) -> [UInt32] {
        let b = bytes(name)
        return b.withUnsafeBytes { r in (0..<(b.count / 4)).map { UInt32(littleEndian: r.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) } }
    }

    func u16(_ name: String) -> [UInt16] {
        let b = bytes(name)
        return b.withUnsafeBytes { r in (0..<(b.count / 2)).map { UInt16(littleEndian: r.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) } }
    }
}

enum Golden {
    static let dir = Fixtures.root.appendingPathComponent("quant-golden")
    static let quantDir = Fixtures.root.appendingPathComponent("quant")
}

/// Index of the first element whose bits differ, or nil when the arrays are bit-identical.
func firstBitMismatch(_ a: [Float], _ b: [Float]) -> Int? {
    if a.count != b.count { return min(a.count, b.count) }
    for i in 0..<a.count where a[i].bitPattern != b[i].bitPattern { return i }
    return nil
}

/// Deterministic generator (SplitMix64) for test inputs.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Standard normal (Box–Muller).
    mutating func normal() -> Float {
        let u1 = Double.random(in: Double.ulpOfOne..<1, using: &self)
        let u2 = Double.random(in: 0..<1, using: &self)
        return Float((-2 * Foundation.log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }
}

/// SHA-256 (FIPS 180-4), for comparing against golden digests of large float arrays.
enum SHA256 {
    static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    static func hex(_ data: UnsafeRawBufferPointer) -> String {
        var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
        let n = data.count
        var tail = [UInt8](data[(n - n % 64)...])
        tail.append(0x80)
        while tail.count % 64 != 56 { tail.append(0) }
        for i in (0..<8).reversed() { tail.append(UInt8(truncatingIfNeeded: (UInt64(n) &* 8) >> (8 * UInt64(i)))) }
        var w = [UInt32](repeating: 0, count: 64)
        func block(_ p: UnsafeRawPointer) {
            for t in 0..<16 { w[t] = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 4 * t, as: UInt32.self)) }
            for t in 16..<64 {
                let s0 = w[t-15].rotr(7) ^ w[t-15].rotr(18) ^ (w[t-15] >> 3)
                let s1 = w[t-2].rotr(17) ^ w[t-2].rotr(19) ^ (w[t-2] >> 10)
                w[t] = w[t-16] &+ s0 &+ w[t-7] &+ s1
            }
            var (a, b, c, d, e, f, g, hh) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])
            for t in 0..<64 {
                let t1 = hh &+ (e.rotr(6) ^ e.rotr(11) ^ e.rotr(25)) &+ ((e & f) ^ (~e & g)) &+ k[t] &+ w[t]
                let t2 = (a.rotr(2) ^ a.rotr(13) ^ a.rotr(22)) &+ ((a & b) ^ (a & c) ^ (b & c))
                (hh, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
            }
            h[0] &+= a; h[1] &+= b; h[2] &+= c; h[3] &+= d; h[4] &+= e; h[5] &+= f; h[6] &+= g; h[7] &+= hh
        }
        if let base = data.baseAddress {
            var off = 0
            while off + 64 <= n { block(base + off); off += 64 }
        }
        tail.withUnsafeBytes { t in
            var off = 0
            while off < t.count { block(t.baseAddress! + off); off += 64 }
        }
        return h.map { String(format: "%08x", $0) }.joined()
    }

    static func hex(floats: [Float]) -> String { floats.withUnsafeBytes { hex($0) } }
}

extension UInt32 {
    func rotr(_ n: UInt32) -> UInt32 { (self >> n) | (self << (32 - n)) }
}

/// A `TensorSource` over a safetensors file read with `TinySafetensors` (dense dtypes only).
final class TinySafetensorsSource: TensorSource, @unchecked Sendable {
    let path: String
    let file: TinySafetensors
    let tensorInfos: [TensorInfo]

    init(_ url: URL) throws {
        path = url.path
        file = try TinySafetensors(url)
        tensorInfos = file.entries.sorted { $0.value.start < $1.value.start }.map { k, v in
            TensorInfo(name: k, type: .dense(DType(rawValue: v.dtype)!), shape: v.shape)
        }
    }

    func tensorBytes(_ name: String) throws -> TensorBytes { TensorBytes(file.bytes(name)) }
}
