import SmolTensor

// SIMD dequantization of one row of weights (block layouts: QuantBlocks.swift). Written with Swift
// SIMD types so the same source compiles to SSE2 on baseline x86-64, AVX2 with `-target-cpu
// haswell`-class targets, and NEON on arm64. Results equal `ReferenceKernels.dequantizeRow` bit for
// bit: every element is computed with the same Float32 operations in the same order (Swift never
// contracts a·b + c into an FMA).

@inlinable @inline(__always)
func floats(_ v: SIMD8<Int8>) -> SIMD8<Float> { SIMD8<Float>(SIMD8<Int32>(truncatingIfNeeded: v)) }

@inlinable @inline(__always)
func store(_ v: SIMD8<Float>, _ dst: UnsafeMutablePointer<Float>, _ i: Int) {
    UnsafeMutableRawPointer(dst).storeBytes(of: v, toByteOffset: 4 * i, as: SIMD8<Float>.self)
}

public enum QuantKernels {
    /// Dequantizes `count` elements (a whole number of blocks of `type`) from `src` into `dst`.
    public static func dequantizeRow(_ type: GGMLType, _ src: UnsafeRawPointer, count: Int,
                                     into dst: UnsafeMutablePointer<Float>) {
        switch type {
        case .f32: dst.update(from: src.assumingMemoryBound(to: Float.self), count: count)
        case .f16: f16Row(src, count, dst)
        case .bf16: bf16Row(src, count, dst)
        case .q8_0: q8_0Row(src, count / 32, dst)
        case .q4_0: q4_0Row(src, count / 32, dst)
        case .q5_0: q5_0Row(src, count / 32, dst)
        case .q4_K: q4_KRow(src, count / 256, dst)
        case .q6_K: q6_KRow(src, count / 256, dst)
        default: preconditionFailure("dequantizeRow: \(type.name) is not a kernel type")
        }
    }

    static func f16Row(_ src: UnsafeRawPointer, _ n: Int, _ dst: UnsafeMutablePointer<Float>) {
        var i = 0
        let expMask = SIMD8<UInt32>(repeating: 0x7c00), magic = SIMD8<Float>(repeating: Float(bitPattern: 0x7780_0000))
        while i + 8 <= n {
            let h = SIMD8<UInt32>(truncatingIfNeeded: src.loadUnaligned(fromByteOffset: 2 * i, as: SIMD8<UInt16>.self))
            let magnitude = (h & 0x7fff) &<< 13, sign = (h & 0x8000) &<< 16
            let scaled = unsafeBitCast(unsafeBitCast(magnitude, to: SIMD8<Float>.self) * magic, to: SIMD8<UInt32>.self)
            let special = magnitude | 0x7f80_0000
            let bits = scaled.replacing(with: special, where: (h & expMask) .== expMask) | sign
            store(unsafeBitCast(bits, to: SIMD8<Float>.self), dst, i)
            i += 8
        }
        while i < n { dst[i] = loadHalf(src, 2 * i); i += 1 }
    }

    static func bf16Row(_ src: UnsafeRawPointer, _ n: Int, _ dst: UnsafeMutablePointer<Float>) {
        var i = 0
        while i + 8 <= n {
            let h = SIMD8<UInt32>(truncatingIfNeeded: src.loadUnaligned(fromByteOffset: 2 * i, as: SIMD8<UInt16>.self))
            store(unsafeBitCast(h &<< 16, to: SIMD8<Float>.self), dst, i)
            i += 8
        }
        while i < n { dst[i] = FloatBits.bf16ToF32(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)); i += 1 }
    }

    static func q8_0Row(_ src: UnsafeRawPointer, _ blocks: Int, _ dst: UnsafeMutablePointer<Float>) {
        for b in 0..<blocks {
            let p = src + 34 * b, y = dst + 32 * b
            let d = SIMD8<Float>(repeating: loadHalf(p, 0))
            let q0 = p.loadUnaligned(fromByteOffset: 2, as: SIMD16<Int8>.self)
            let q1 = p.loadUnaligned(fromByteOffset: 18, as: SIMD16<Int8>.self)
            put16(q0, scale: d, minus: nil, y)
            put16(q1, scale: d, minus: nil, y + 16)
        }
    }

    static func q4_0Row(_ src: UnsafeRawPointer, _ blocks: Int, _ dst: UnsafeMutablePointer<Float>) {
        for b in 0..<blocks {
            let p = src + 18 * b, y = dst + 32 * b
            let d = SIMD8<Float>(repeating: loadHalf(p, 0))
            let qs = p.loadUnaligned(fromByteOffset: 2, as: SIMD16<UInt8>.self)
            let lo = SIMD16<Int8>(truncatingIfNeeded: qs & 15) &- 8
            let hi = SIMD16<Int8>(truncatingIfNeeded: qs &>> 4) &- 8
            store(d * floats(lo.lowHalf), y, 0)
            store(d * floats(lo.highHalf), y, 8)
            store(d * floats(hi.lowHalf), y, 16)
            store(d * floats(hi.highHalf), y, 24)
        }
    }

    /// Bit i of a byte broadcast over 8 lanes, as 0 or 16 (the fifth bit of a Q5_0 quant).
    @usableFromInline static let bitSelect = SIMD16<UInt8>(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128)

    static func q5_0Row(_ src: UnsafeRawPointer, _ blocks: Int, _ dst: UnsafeMutablePointer<Float>) {
        let zero = SIMD16<UInt8>(repeating: 0), sixteen = SIMD16<UInt8>(repeating: 16)
        for b in 0..<blocks {
            let p = src + 22 * b, y = dst + 32 * b
            let d = SIMD8<Float>(repeating: loadHalf(p, 0))
            let h0 = p.load(fromByteOffset: 2, as: UInt8.self), h1 = p.load(fromByteOffset: 3, as: UInt8.self)
            let h2 = p.load(fromByteOffset: 4, as: UInt8.self), h3 = p.load(fromByteOffset: 5, as: UInt8.self)
            // Lanes 0–7 see byte 0 of qh, lanes 8–15 byte 1 (elements 0–15); bytes 2, 3 for 16–31.
            let bytesLo = SIMD16<UInt8>(lowHalf: SIMD8(repeating: h0), highHalf: SIMD8(repeating: h1))
            let bytesHi = SIMD16<UInt8>(lowHalf: SIMD8(repeating: h2), highHalf: SIMD8(repeating: h3))
            let fifthLo = zero.replacing(with: sixteen, where: (bytesLo & bitSelect) .!= zero)
            let fifthHi = zero.replacing(with: sixteen, where: (bytesHi & bitSelect) .!= zero)
            let qs = p.loadUnaligned(fromByteOffset: 6, as: SIMD16<UInt8>.self)
            let lo = SIMD16<Int8>(truncatingIfNeeded: (qs & 15) | fifthLo) &- 16
            let hi = SIMD16<Int8>(truncatingIfNeeded: (qs &>> 4) | fifthHi) &- 16
            store(d * floats(lo.lowHalf), y, 0)
            store(d * floats(lo.highHalf), y, 8)
            store(d * floats(hi.lowHalf), y, 16)
            store(d * floats(hi.highHalf), y, 24)
        }
    }

    // SIMD16 throughout: Swift's SIMD32<UInt8> shifts and masks compile lane by lane through the
    // stack (measured 30× slower than two SIMD16 halves on x86-64).

    @inline(__always)
    static func put16(_ q: SIMD16<Int8>, scale: SIMD8<Float>, minus m: SIMD8<Float>?, _ y: UnsafeMutablePointer<Float>) {
        if let m {
            store(scale * floats(q.lowHalf) - m, y, 0)
            store(scale * floats(q.highHalf) - m, y, 8)
        } else {
            store(scale * floats(q.lowHalf), y, 0)
            store(scale * floats(q.highHalf), y, 8)
        }
    }

    static func q4_KRow(_ src: UnsafeRawPointer, _ blocks: Int, _ dst: UnsafeMutablePointer<Float>) {
        for b in 0..<blocks {
            let p = src + 144 * b, y = dst + 256 * b
            let d = loadHalf(p, 0), dmin = loadHalf(p, 2)
            for c in 0..<4 {
                let (sc1, m1) = q4KScaleMin(2 * c, p + 4)
                let (sc2, m2) = q4KScaleMin(2 * c + 1, p + 4)
                let d1 = SIMD8<Float>(repeating: d * Float(sc1)), mm1 = SIMD8<Float>(repeating: dmin * Float(m1))
                let d2 = SIMD8<Float>(repeating: d * Float(sc2)), mm2 = SIMD8<Float>(repeating: dmin * Float(m2))
                let yc = y + 64 * c
                for half in 0..<2 {
                    let q = p.loadUnaligned(fromByteOffset: 16 + 32 * c + 16 * half, as: SIMD16<UInt8>.self)
                    put16(SIMD16<Int8>(truncatingIfNeeded: q & 15), scale: d1, minus: mm1, yc + 16 * half)
                    put16(SIMD16<Int8>(truncatingIfNeeded: q &>> 4), scale: d2, minus: mm2, yc + 32 + 16 * half)
                }
            }
        }
    }

    static func q6_KRow(_ src: UnsafeRawPointer, _ blocks: Int, _ dst: UnsafeMutablePointer<Float>) {
        let three = SIMD16<UInt8>(repeating: 3), fifteen = SIMD16<UInt8>(repeating: 15)
        for b in 0..<blocks {
            let p = src + 210 * b
            let d = loadHalf(p, 208)
            for h in 0..<2 {
                let ql = p + 64 * h, qh = p + 128 + 32 * h, sc = p + 192 + 8 * h
                let y = dst + 256 * b + 128 * h
                // l in 16·s ..< 16·s + 16 shares scale index s (+2, +4, +6 for the other quarters).
                for s in 0..<2 {
                    let a = ql.loadUnaligned(fromByteOffset: 16 * s, as: SIMD16<UInt8>.self)
                    let c = ql.loadUnaligned(fromByteOffset: 32 + 16 * s, as: SIMD16<UInt8>.self)
                    let hb = qh.loadUnaligned(fromByteOffset: 16 * s, as: SIMD16<UInt8>.self)
                    let q1 = SIMD16<Int8>(truncatingIfNeeded: (a & fifteen) | ((hb & three) &<< 4)) &- 32
                    let q2 = SIMD16<Int8>(truncatingIfNeeded: (c & fifteen) | (((hb &>> 2) & three) &<< 4)) &- 32
                    let q3 = SIMD16<Int8>(truncatingIfNeeded: (a &>> 4) | (((hb &>> 4) & three) &<< 4)) &- 32
                    let q4 = SIMD16<Int8>(truncatingIfNeeded: (c &>> 4) | ((hb &>> 6) &<< 4)) &- 32
                    func scale(_ k: Int) -> SIMD8<Float> {
                        SIMD8(repeating: d * Float(sc.load(fromByteOffset: k, as: Int8.self)))
                    }
                    put16(q1, scale: scale(s), minus: nil, y + 16 * s)
                    put16(q2, scale: scale(s + 2), minus: nil, y + 32 + 16 * s)
                    put16(q3, scale: scale(s + 4), minus: nil, y + 64 + 16 * s)
                    put16(q4, scale: scale(s + 6), minus: nil, y + 96 + 16 * s)
                }
            }
        }
    }
}
