/// XXH64 (Yann Collet's xxHash, 64-bit variant, spec: xxhash/doc/xxhash_spec.md), the checksum of
/// every chunk in a packed checkpoint. Written from the specification; tested against the spec's
/// vectors and against the zstd command-line tool, whose frame checksum is XXH64's low 32 bits.
public enum XXHash64 {
    static let p1: UInt64 = 0x9E37_79B1_85EB_CA87
    static let p2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
    static let p3: UInt64 = 0x1656_67B1_9E37_79F9
    static let p4: UInt64 = 0x85EB_CA77_C2B2_AE63
    static let p5: UInt64 = 0x27D4_EB2F_1656_67C5

    @inline(__always) static func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 - r)) }

    @inline(__always) static func round(_ acc: UInt64, _ input: UInt64) -> UInt64 {
        rotl(acc &+ input &* p2, 31) &* p1
    }

    @inline(__always) static func merge(_ acc: UInt64, _ v: UInt64) -> UInt64 {
        (acc ^ round(0, v)) &* p1 &+ p4
    }

    /// The 64-bit hash of `bytes` with `seed`.
    public static func hash(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        let n = bytes.count
        guard let base = bytes.baseAddress else { return finish(seed &+ p5, length: 0, base: nil, from: 0, count: 0) }
        @inline(__always) func u64(_ i: Int) -> UInt64 { UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt64.self)) }
        var i = 0
        var h: UInt64
        if n >= 32 {
            var v1 = seed &+ p1 &+ p2, v2 = seed &+ p2, v3 = seed, v4 = seed &- p1
            let limit = n - 32
            while i <= limit {
                v1 = round(v1, u64(i))
                v2 = round(v2, u64(i + 8))
                v3 = round(v3, u64(i + 16))
                v4 = round(v4, u64(i + 24))
                i += 32
            }
            h = rotl(v1, 1) &+ rotl(v2, 7) &+ rotl(v3, 12) &+ rotl(v4, 18)
            h = merge(h, v1); h = merge(h, v2); h = merge(h, v3); h = merge(h, v4)
        } else {
            h = seed &+ p5
        }
        return finish(h, length: n, base: base, from: i, count: n - i)
    }

    public static func hash(_ bytes: [UInt8], seed: UInt64 = 0) -> UInt64 {
        bytes.withUnsafeBytes { hash($0, seed: seed) }
    }

    /// Adds the length, the last < 32 bytes, and the final avalanche.
    static func finish(_ h0: UInt64, length: Int, base: UnsafeRawPointer?, from start: Int, count: Int) -> UInt64 {
        var h = h0 &+ UInt64(length)
        var i = start
        var left = count
        if let base {
            while left >= 8 {
                let k = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                h = rotl(h ^ round(0, k), 27) &* p1 &+ p4
                i += 8; left -= 8
            }
            if left >= 4 {
                let k = UInt64(UInt32(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt32.self)))
                h = rotl(h ^ (k &* p1), 23) &* p2 &+ p3
                i += 4; left -= 4
            }
            while left > 0 {
                let k = UInt64(base.load(fromByteOffset: i, as: UInt8.self))
                h = rotl(h ^ (k &* p5), 11) &* p1
                i += 1; left -= 1
            }
        }
        h ^= h >> 33; h = h &* p2
        h ^= h >> 29; h = h &* p3
        h ^= h >> 32
        return h
    }
}

/// XXH64 fed piece by piece (the spec's streaming form): `digest()` equals `XXHash64.hash` of all
/// the pieces concatenated. Unpacking hashes each decoded tile while it is still in cache.
public struct XXHash64Stream {
    private let seed: UInt64
    private var v1, v2, v3, v4: UInt64
    private var total = 0
    /// Bytes not yet hashed (fewer than 32).
    private var pending: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    private var pendingCount = 0

    public init(seed: UInt64 = 0) {
        self.seed = seed
        v1 = seed &+ XXHash64.p1 &+ XXHash64.p2
        v2 = seed &+ XXHash64.p2
        v3 = seed
        v4 = seed &- XXHash64.p1
    }

    @inline(__always) private mutating func stripe(_ p: UnsafeRawPointer) {
        v1 = XXHash64.round(v1, UInt64(littleEndian: p.loadUnaligned(as: UInt64.self)))
        v2 = XXHash64.round(v2, UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
        v3 = XXHash64.round(v3, UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt64.self)))
        v4 = XXHash64.round(v4, UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 24, as: UInt64.self)))
    }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard var p = bytes.baseAddress, bytes.count > 0 else { return }
        var left = bytes.count
        total += left
        if pendingCount > 0 {
            let take = min(32 - pendingCount, left)
            let at = pendingCount, from = p
            withUnsafeMutableBytes(of: &pending) { ($0.baseAddress! + at).copyMemory(from: from, byteCount: take) }
            pendingCount += take
            p += take
            left -= take
            guard pendingCount == 32 else { return }
            var full = pending
            withUnsafeBytes(of: &full) { stripe($0.baseAddress!) }
            pendingCount = 0
        }
        while left >= 32 {
            stripe(p)
            p += 32
            left -= 32
        }
        if left > 0 {
            let from = p, n = left
            withUnsafeMutableBytes(of: &pending) { $0.baseAddress!.copyMemory(from: from, byteCount: n) }
            pendingCount = left
        }
    }

    public func digest() -> UInt64 {
        var h: UInt64
        if total >= 32 {
            h = XXHash64.rotl(v1, 1) &+ XXHash64.rotl(v2, 7) &+ XXHash64.rotl(v3, 12) &+ XXHash64.rotl(v4, 18)
            h = XXHash64.merge(h, v1); h = XXHash64.merge(h, v2); h = XXHash64.merge(h, v3); h = XXHash64.merge(h, v4)
        } else {
            h = seed &+ XXHash64.p5
        }
        var tail = pending
        let n = pendingCount
        return withUnsafeBytes(of: &tail) { XXHash64.finish(h, length: total, base: $0.baseAddress, from: 0, count: n) }
    }
}
