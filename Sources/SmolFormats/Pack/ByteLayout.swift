import SmolTensor

/// How a packed chunk's bytes are regrouped before compression, so that bytes with similar
/// statistics sit together (ZipNN, DFloat11: the sign+exponent bytes of BF16/F16/F32 weights are
/// highly repetitive, the low mantissa bytes nearly random; in quantized blocks the f16 scales
/// compress, the packed integers hardly).
///
/// The data is a sequence of records of `recordSize` bytes (an element, or a quantization block).
/// `groups` tile a record: group (start, length, width) is bytes [start, start + length) of every
/// record, read as length / width elements of `width` bytes. The transformed chunk is, group after
/// group, `width` planes: plane k holds byte k of every element of the group, record after record.
/// So BF16 is (2, [(0, 2, 2)]) → [low bytes][high bytes]; Q8_0 is (34, [(0, 2, 2), (2, 32, 1)]) →
/// [scale low bytes][scale high bytes][all qs]. The identity is (1, [(0, 1, 1)]).
///
/// `rotate` (container version 2) first turns every element of width 2, 4 or 8, read as a
/// little-endian unsigned integer, left by one bit, so the sign bit moves from the top to the
/// bottom. BF16 = s|e7…e0|m6…m0 becomes e7…e0|m6…m0 s: the high plane is exactly the exponent
/// (few distinct values, ~3 bits of entropy in weights) and the low plane sign + mantissa (nearly
/// random). F32 becomes [m6…m0 s][m14…m7][m22…m15][e7…e0]. A plain high/low split would mix
/// exponent and mantissa bits in both planes (ZipNN and DFloat11 separate the exponent likewise).
public struct ByteLayout: Sendable, Hashable, CustomStringConvertible {
    public struct Group: Sendable, Hashable {
        public var start: Int
        public var length: Int
        public var width: Int
        public init(_ start: Int, _ length: Int, _ width: Int) {
            self.start = start
            self.length = length
            self.width = width
        }
    }

    public var recordSize: Int
    public var groups: [Group]
    /// Rotate every element of width ≥ 2 left by one bit before the split (see above).
    public var rotate: Bool

    public init(recordSize: Int, groups: [Group], rotate: Bool = false) {
        self.recordSize = recordSize
        self.groups = groups
        self.rotate = rotate
    }

    public static let identity = ByteLayout(recordSize: 1, groups: [Group(0, 1, 1)])

    /// Largest record accepted from a file (the largest ggml block is 292 bytes).
    public static let maxRecordSize = 4096

    public var isIdentity: Bool { groups.allSatisfy { $0.width == 1 } && groups.count == 1 }

    public var description: String {
        isIdentity ? "none" : (rotate ? "rot1 " : "") + "\(recordSize):" + groups.map { "\($0.start)+\($0.length)/\($0.width)" }.joined(separator: ",")
    }

    /// The same layout without the rotation (the plain byte planes).
    public var unrotated: ByteLayout { ByteLayout(recordSize: recordSize, groups: groups) }

    /// Nil when the layout is well formed; else what is wrong (groups must tile the record in order).
    public var problem: String? {
        guard recordSize >= 1, recordSize <= Self.maxRecordSize else { return "record size \(recordSize) outside 1…\(Self.maxRecordSize)" }
        guard !groups.isEmpty else { return "no groups" }
        var at = 0
        for g in groups {
            guard g.start == at else { return "group at \(g.start) does not start where the previous ends (\(at))" }
            guard g.length >= 1, g.width >= 1, g.length % g.width == 0 else {
                return "group at \(g.start): length \(g.length) is not a positive multiple of width \(g.width)"
            }
            guard !rotate || [1, 2, 4, 8].contains(g.width) else {
                return "group at \(g.start): width \(g.width) cannot be rotated (only 2, 4 or 8)"
            }
            at += g.length
            guard at <= recordSize else { return "groups extend past the record size \(recordSize)" }
        }
        return at == recordSize ? nil : "groups cover \(at) of \(recordSize) record bytes"
    }

    /// The layout smolconv tries first for a tensor of this type (the identity when none helps).
    /// Measured on the real Gemma 3 270M Q4_K_M model: splitting scales from quants saves 2–4 % on
    /// quantized tensors; rotated byte planes save ~30 % on BF16 weights (formats/smolpack.md).
    public static func preferred(for type: TensorType) -> ByteLayout {
        func l(_ r: Int, _ g: [(Int, Int, Int)]) -> ByteLayout {
            ByteLayout(recordSize: r, groups: g.map { Group($0.0, $0.1, $0.2) })
        }
        switch type {
        case .dense(let d):
            // Floats (and 2/4/8-byte integers, where the rotation is harmless): rotated planes.
            if d.size == 1 { return .identity }
            return ByteLayout(recordSize: d.size, groups: [Group(0, d.size, d.size)], rotate: [2, 4, 8].contains(d.size))
        case .block(let g):
            // Field offsets from ggml-common.h's block structs (see GGMLType.blockLayout).
            switch g {
            case .q4_0, .iq4_NL: return l(18, [(0, 2, 2), (2, 16, 1)])
            case .q4_1: return l(20, [(0, 4, 2), (4, 16, 1)])
            case .q5_0: return l(22, [(0, 2, 2), (2, 4, 1), (6, 16, 1)])
            case .q5_1: return l(24, [(0, 4, 2), (4, 4, 1), (8, 16, 1)])
            case .q8_0: return l(34, [(0, 2, 2), (2, 32, 1)])
            case .q2_K: return l(84, [(0, 16, 1), (16, 64, 1), (80, 4, 2)])
            case .q3_K: return l(110, [(0, 32, 1), (32, 64, 1), (96, 12, 1), (108, 2, 2)])
            case .q4_K: return l(144, [(0, 4, 2), (4, 12, 1), (16, 128, 1)])
            case .q5_K: return l(176, [(0, 4, 2), (4, 12, 1), (16, 32, 1), (48, 128, 1)])
            case .q6_K: return l(210, [(0, 128, 1), (128, 64, 1), (192, 16, 1), (208, 2, 2)])
            case .q8_K: return l(292, [(0, 4, 4), (4, 256, 1), (260, 32, 2)])
            case .iq4_XS: return l(136, [(0, 2, 2), (2, 2, 2), (4, 4, 1), (8, 128, 1)])
            case .mxfp4: return l(17, [(0, 1, 1), (1, 16, 1)])
            default: return .identity
            }
        }
    }

    /// Sizes of the planes `split` makes of `bytes` bytes (whole records), in order: for each group,
    /// `width` planes of (records × length / width) bytes. The identity is one plane.
    public func planeSizes(bytes: Int) -> [Int] {
        let n = bytes / recordSize
        return groups.flatMap { g in [Int](repeating: n * (g.length / g.width), count: g.width) }
    }

    /// Number of planes (`planeSizes(bytes:).count`).
    public var planeCount: Int { groups.reduce(0) { $0 + $1.width } }

    // MARK: - Kernels

    /// Regroups `src` (whole records) into planes in `dst` (same size).
    public func split(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) {
        precondition(src.count == dst.count && src.count % recordSize == 0)
        guard src.count > 0 else { return }
        if isIdentity { dst.copyMemory(from: src); return }
        let n = src.count / recordSize
        let s = src.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let d = dst.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var base = 0
        for g in groups {
            let m = g.length / g.width
            if g.width > 1 && (rotate || (recordSize == g.width && [2, 4, 8].contains(g.width))) {
                Self.splitRotated(s + g.start, stride: recordSize, records: n, elements: m, width: g.width, by: rotate ? 1 : 0, into: d + base)
            } else if g.width == 1 {
                // One plane: the field's bytes, record after record.
                for r in 0..<n { (d + base + r * g.length).update(from: s + r * recordSize + g.start, count: g.length) }
            } else if m == 1 && g.width == 2 {
                let p0 = d + base, p1 = p0 + n, q = s + g.start
                for r in 0..<n { let o = r * recordSize; p0[r] = q[o]; p1[r] = q[o + 1] }
            } else if m == 1 && g.width == 4 {
                let p0 = d + base, p1 = p0 + n, p2 = p1 + n, p3 = p2 + n, q = s + g.start
                for r in 0..<n { let o = r * recordSize; p0[r] = q[o]; p1[r] = q[o + 1]; p2[r] = q[o + 2]; p3[r] = q[o + 3] }
            } else {
                let planeSize = n * m
                for r in 0..<n {
                    for e in 0..<m {
                        let from = s + r * recordSize + g.start + e * g.width
                        for k in 0..<g.width { d[base + k * planeSize + r * m + e] = from[k] }
                    }
                }
            }
            base += n * g.length
        }
    }

    /// The inverse of `split`.
    public func merge(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) {
        precondition(src.count == dst.count && src.count % recordSize == 0)
        mergeRecords(src, from: 0, into: dst)
    }

    /// Merges records [first, first + dst.count / recordSize) of the split chunk `src` (all of its
    /// planes) into `dst`: one tile of the chunk, so that unpacking can checksum and write each
    /// tile while it is still in cache. `merge` is the whole chunk as one tile.
    public func mergeRecords(_ src: UnsafeRawBufferPointer, from first: Int, into dst: UnsafeMutableRawBufferPointer) {
        precondition(src.count % recordSize == 0 && dst.count % recordSize == 0 && first >= 0
                     && first * recordSize + dst.count <= src.count)
        guard dst.count > 0 else { return }
        let n = src.count / recordSize    // records in the chunk: planes are n × (elements per record) bytes
        let count = dst.count / recordSize
        let s = src.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let d = dst.baseAddress!.assumingMemoryBound(to: UInt8.self)
        if isIdentity { d.update(from: s + first * recordSize, count: dst.count); return }
        for g in groups {
            let m = g.length / g.width
            let plane = n * m
            // The group's planes start at n × g.start (groups tile the record in order); the tile's
            // first element in each plane is first × m.
            let q = s + n * g.start + first * m
            if g.width > 1 && (rotate || (recordSize == g.width && [2, 4, 8].contains(g.width))) {
                Self.mergeRotated(q, plane: plane, stride: recordSize, records: count, elements: m, width: g.width, by: rotate ? 1 : 0,
                                  into: d + g.start)
            } else if g.width == 1 {
                Self.copyFields(q, length: g.length, records: count, stride: recordSize, into: d + g.start)
            } else if m == 1 && g.width == 2 {
                let p0 = q, p1 = p0 + plane, o = d + g.start
                for r in 0..<count { let at = r * recordSize; o[at] = p0[r]; o[at + 1] = p1[r] }
            } else if m == 1 && g.width == 4 {
                let p0 = q, p1 = p0 + plane, p2 = p1 + plane, p3 = p2 + plane, o = d + g.start
                for r in 0..<count { let at = r * recordSize; o[at] = p0[r]; o[at + 1] = p1[r]; o[at + 2] = p2[r]; o[at + 3] = p3[r] }
            } else {
                for r in 0..<count {
                    for e in 0..<m {
                        let to = d + r * recordSize + g.start + e * g.width
                        for k in 0..<g.width { to[k] = q[k * plane + r * m + e] }
                    }
                }
            }
        }
    }

    /// Scatters `records` fields of `length` bytes, packed back to back at `src`, to `dst` every
    /// `stride` bytes. Fields whose length is a multiple of 8 (Q8_0's 32 quants, Q4_K's 128) are
    /// copied as 8-byte words: a library memmove call per 32-byte field costs more than the copy.
    private static func copyFields(_ src: UnsafePointer<UInt8>, length: Int, records: Int, stride: Int,
                                   into dst: UnsafeMutablePointer<UInt8>) {
        if length % 8 == 0 && length <= 256 {
            let words = length / 8
            let from = UnsafeRawPointer(src), to = UnsafeMutableRawPointer(dst)
            for r in 0..<records {
                let a = r &* length, b = r &* stride
                for w in 0..<words {
                    to.storeBytes(of: from.loadUnaligned(fromByteOffset: a &+ 8 &* w, as: UInt64.self), toByteOffset: b &+ 8 &* w, as: UInt64.self)
                }
            }
        } else {
            for r in 0..<records { (dst + r * stride).update(from: src + r * length, count: length) }
        }
    }

    /// Split of one group of 2-, 4- or 8-byte elements: element e of record r (width bytes at
    /// src + r·stride + e·width) rotated left by `by` bits (1, or 0 for plain planes); its byte k
    /// goes to plane k at index r·elements + e. Wrapping index arithmetic (sizes are bounded by the
    /// chunk) so the dense loops vectorize.
    private static func splitRotated(_ src: UnsafePointer<UInt8>, stride: Int, records n: Int, elements m: Int, width: Int,
                                     by k: Int, into dst: UnsafeMutablePointer<UInt8>) {
        let k16 = UInt16(k), k32 = UInt32(k), k64 = UInt64(k)
        let plane = n * m
        let raw = UnsafeRawPointer(src)
        if stride == width && m == 1 {
            // Dense elements back to back: straight loops the compiler vectorizes.
            switch width {
            case 2:
                let p0 = dst, p1 = dst + plane
                for i in 0..<n {
                    let v = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 &* i, as: UInt16.self))
                    let x = (v &<< k16) | (v &>> (16 &- k16))
                    p0[i] = UInt8(truncatingIfNeeded: x); p1[i] = UInt8(truncatingIfNeeded: x &>> 8)
                }
                return
            case 4:
                let p0 = dst, p1 = p0 + plane, p2 = p1 + plane, p3 = p2 + plane
                for i in 0..<n {
                    let v = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 &* i, as: UInt32.self))
                    let x = (v &<< k32) | (v &>> (32 &- k32))
                    p0[i] = UInt8(truncatingIfNeeded: x); p1[i] = UInt8(truncatingIfNeeded: x &>> 8)
                    p2[i] = UInt8(truncatingIfNeeded: x &>> 16); p3[i] = UInt8(truncatingIfNeeded: x &>> 24)
                }
                return
            default: break
            }
        }
        switch width {
        case 2:
            let p0 = dst, p1 = dst + plane
            for r in 0..<n {
                for e in 0..<m {
                    let v = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: r * stride + e * 2, as: UInt16.self))
                    let x = (v &<< k16) | (v &>> (16 &- k16))
                    p0[r * m + e] = UInt8(truncatingIfNeeded: x); p1[r * m + e] = UInt8(truncatingIfNeeded: x &>> 8)
                }
            }
        case 4:
            let p0 = dst, p1 = p0 + plane, p2 = p1 + plane, p3 = p2 + plane
            for r in 0..<n {
                for e in 0..<m {
                    let v = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: r * stride + e * 4, as: UInt32.self))
                    let x = (v &<< k32) | (v &>> (32 &- k32)), i = r * m + e
                    p0[i] = UInt8(truncatingIfNeeded: x); p1[i] = UInt8(truncatingIfNeeded: x &>> 8)
                    p2[i] = UInt8(truncatingIfNeeded: x &>> 16); p3[i] = UInt8(truncatingIfNeeded: x &>> 24)
                }
            }
        default: // 8
            for r in 0..<n {
                for e in 0..<m {
                    let v = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: r * stride + e * 8, as: UInt64.self))
                    let x = (v &<< k64) | (v &>> (64 &- k64)), i = r * m + e
                    for k in 0..<8 { dst[k * plane + i] = UInt8(truncatingIfNeeded: x &>> UInt64(8 * k)) }
                }
            }
        }
    }

    /// The inverse of `splitRotated`.
    /// `plane`: distance between the planes (the whole chunk's elements per plane), which exceeds
    /// n × m when merging a tile of the chunk.
    private static func mergeRotated(_ src: UnsafePointer<UInt8>, plane: Int, stride: Int, records n: Int, elements m: Int, width: Int,
                                     by k: Int, into dst: UnsafeMutablePointer<UInt8>) {
        let k16 = UInt16(k), k32 = UInt32(k), k64 = UInt64(k)
        let raw = UnsafeMutableRawPointer(dst)
        if stride == width && m == 1 {
            // Dense elements back to back (BF16/F16/F32 tensors): vectorizable loops.
            switch width {
            case 2:
                let p0 = src, p1 = src + plane
                for i in 0..<n {
                    let x = UInt16(p0[i]) | UInt16(p1[i]) &<< 8
                    raw.storeBytes(of: ((x &>> k16) | (x &<< (16 &- k16))).littleEndian, toByteOffset: 2 &* i, as: UInt16.self)
                }
                return
            case 4:
                let p0 = src, p1 = p0 + plane, p2 = p1 + plane, p3 = p2 + plane
                for i in 0..<n {
                    let x = UInt32(p0[i]) | UInt32(p1[i]) &<< 8 | UInt32(p2[i]) &<< 16 | UInt32(p3[i]) &<< 24
                    raw.storeBytes(of: ((x &>> k32) | (x &<< (32 &- k32))).littleEndian, toByteOffset: 4 &* i, as: UInt32.self)
                }
                return
            default: break
            }
        }
        switch width {
        case 2:
            let p0 = src, p1 = src + plane
            for r in 0..<n {
                for e in 0..<m {
                    let i = r * m + e
                    let x = UInt16(p0[i]) | UInt16(p1[i]) &<< 8
                    raw.storeBytes(of: ((x &>> k16) | (x &<< (16 &- k16))).littleEndian, toByteOffset: r * stride + e * 2, as: UInt16.self)
                }
            }
        case 4:
            let p0 = src, p1 = p0 + plane, p2 = p1 + plane, p3 = p2 + plane
            for r in 0..<n {
                for e in 0..<m {
                    let i = r * m + e
                    let x = UInt32(p0[i]) | UInt32(p1[i]) &<< 8 | UInt32(p2[i]) &<< 16 | UInt32(p3[i]) &<< 24
                    raw.storeBytes(of: ((x &>> k32) | (x &<< (32 &- k32))).littleEndian, toByteOffset: r * stride + e * 4, as: UInt32.self)
                }
            }
        default: // 8
            for r in 0..<n {
                for e in 0..<m {
                    let i = r * m + e
                    var x: UInt64 = 0
                    for k in 0..<8 { x |= UInt64(src[k * plane + i]) &<< UInt64(8 * k) }
                    raw.storeBytes(of: ((x &>> k64) | (x &<< (64 &- k64))).littleEndian, toByteOffset: r * stride + e * 8, as: UInt64.self)
                }
            }
        }
    }

    /// The plain twin of `split`: for every source byte, where the definition puts it.
    public func splitReference(_ src: [UInt8]) -> [UInt8] {
        var src = src
        if rotate {
            // Rotate each element in place, bit by bit: new bit i = old bit (i − 1) mod 8·width.
            for r in 0..<(src.count / recordSize) {
                for g in groups where g.width > 1 {
                    for e in 0..<(g.length / g.width) {
                        let at = r * recordSize + g.start + e * g.width
                        let old = Array(src[at..<(at + g.width)])
                        let bits = 8 * g.width
                        for i in 0..<bits {
                            let j = (i + bits - 1) % bits
                            let bit = (old[j / 8] >> (j % 8)) & 1
                            if bit == 1 { src[at + i / 8] |= 1 << (i % 8) } else { src[at + i / 8] &= ~(1 << (i % 8)) }
                        }
                    }
                }
            }
        }
        let n = src.count / recordSize
        var out: [UInt8] = []
        out.reserveCapacity(src.count)
        for g in groups {
            for k in 0..<g.width {
                for r in 0..<n {
                    for e in 0..<(g.length / g.width) { out.append(src[r * recordSize + g.start + e * g.width + k]) }
                }
            }
        }
        return out
    }
}
