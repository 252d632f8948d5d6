/// Exact byte-string → id map for token texts.
///
/// Swift `String` equality and hashing follow canonical equivalence ("é" == "e\u{301}"), but
/// vocabularies are byte-exact (both spellings can be separate tokens), so token texts are kept
/// as UTF-8 bytes in one contiguous buffer with an open-addressing index over it. Lookups take a
/// byte slice and allocate nothing; building it for a 262,144-token vocabulary takes a few ms.
struct TokenTable: Sendable {
    /// All texts, back to back.
    private(set) var bytes: [UInt8] = []
    /// Start of text i in `bytes`; `starts[i + 1]` is its end.
    private(set) var starts: [Int] = [0]
    /// Open-addressing slots holding id + 1 (0 = empty); capacity a power of two.
    private var slots: [Int32] = []
    private var mask = 0

    var count: Int { starts.count - 1 }

    init(_ texts: [[UInt8]]) {
        let total = texts.reduce(0) { $0 + $1.count }
        bytes.reserveCapacity(total)
        starts.reserveCapacity(texts.count + 1)
        for t in texts {
            bytes.append(contentsOf: t)
            starts.append(bytes.count)
        }
        var cap = 16
        while cap < texts.count * 2 { cap <<= 1 }
        slots = [Int32](repeating: 0, count: cap)
        mask = cap - 1
        bytes.withUnsafeBufferPointer { all in
            for i in 0..<texts.count {
                let s = UnsafeBufferPointer(rebasing: all[starts[i]..<starts[i + 1]])
                insert(Int32(i), s, all)
            }
        }
    }

    /// Later texts win over earlier equal ones, as in llama.cpp (`token_to_id[word] = i`).
    private mutating func insert(_ id: Int32, _ key: UnsafeBufferPointer<UInt8>, _ all: UnsafeBufferPointer<UInt8>) {
        var h = Int(truncatingIfNeeded: TokenTable.hash(key)) & mask
        while true {
            let v = slots[h]
            if v == 0 { slots[h] = id + 1; return }
            let other = Int(v - 1)
            if TokenTable.equal(key, UnsafeBufferPointer(rebasing: all[starts[other]..<starts[other + 1]])) {
                slots[h] = id + 1
                return
            }
            h = (h + 1) & mask
        }
    }

    @inline(__always)
    static func hash(_ key: UnsafeBufferPointer<UInt8>) -> UInt64 {
        // FNV-1a, then a final avalanche so the low bits used for the slot are well mixed.
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in key { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        h ^= h >> 33
        h = h &* 0xff51_afd7_ed55_8ccd
        h ^= h >> 33
        return h
    }

    @inline(__always)
    static func equal(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
        guard a.count == b.count else { return false }
        if a.isEmpty { return true }
        return memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0
    }

    /// The id of the text `key`, or nil.
    @inline(__always)
    func id(_ key: UnsafeBufferPointer<UInt8>) -> Int32? {
        bytes.withUnsafeBufferPointer { all in
            var h = Int(truncatingIfNeeded: TokenTable.hash(key)) & mask
            while true {
                let v = slots[h]
                if v == 0 { return nil }
                let other = Int(v - 1)
                if TokenTable.equal(key, UnsafeBufferPointer(rebasing: all[starts[other]..<starts[other + 1]])) {
                    return v - 1
                }
                h = (h + 1) & mask
            }
        }
    }

    func id(_ key: [UInt8]) -> Int32? { key.withUnsafeBufferPointer { id($0) } }

    /// Text i as bytes.
    func text(_ i: Int) -> ArraySlice<UInt8> { bytes[starts[i]..<starts[i + 1]] }
    func textLength(_ i: Int) -> Int { starts[i + 1] - starts[i] }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
