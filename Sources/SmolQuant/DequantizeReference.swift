import SmolTensor

// Reference dequantizers: one block at a time, a direct transcription of the formulas in
// formats/gguf-quants.md. Arithmetic order matters for bit-exactness with gguf-py (numpy float32):
// every product and difference below is one float32 rounding, in the order written.

typealias BlockDequant = (UnsafeRawPointer, UnsafeMutablePointer<Float>) -> Void

enum RefDequant {
    static func block(_ type: GGMLType) -> BlockDequant {
        switch type {
        case .f32: return { b, y in y[0] = Float(bitPattern: loadU32(b, 0)) }
        case .f16: return { b, y in y[0] = loadHalf(b, 0) }
        case .bf16: return { b, y in y[0] = Float(bitPattern: UInt32(loadU16(b, 0)) << 16) }
        case .q4_0: return q4_0
        case .q4_1: return q4_1
        case .q5_0: return q5_0
        case .q5_1: return q5_1
        case .q8_0: return q8_0
        case .q2_K: return q2_K
        case .q3_K: return q3_K
        case .q4_K: return q4_K
        case .q5_K: return q5_K
        case .q6_K: return q6_K
        case .q8_K: return q8_K
        case .iq4_NL: return iq4_NL
        case .iq4_XS: return iq4_XS
        default: preconditionFailure("checked by GGUFQuant.checkedBlocks")
        }
    }

    static func bytes(_ b: UnsafeRawPointer) -> UnsafePointer<UInt8> { b.assumingMemoryBound(to: UInt8.self) }

    // Q4_0: f16 d | u8 qs[16]. x[j] = d·(lo(qs[j]) − 8), x[j+16] = d·(hi(qs[j]) − 8).
    static func q4_0(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = loadHalf(b, 0)
        let qs = bytes(b + 2)
        for j in 0..<16 {
            y[j] = d * Float(Int(qs[j] & 0x0F) - 8)
            y[j + 16] = d * Float(Int(qs[j] >> 4) - 8)
        }
    }

    // Q4_1: f16 d, f16 m | u8 qs[16]. x = d·q + m.
    static func q4_1(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = loadHalf(b, 0), m = loadHalf(b, 2)
        let qs = bytes(b + 4)
        for j in 0..<16 {
            y[j] = d * Float(qs[j] & 0x0F) + m
            y[j + 16] = d * Float(qs[j] >> 4) + m
        }
    }

    // Q5_0: f16 d | u32 qh | u8 qs[16]. Bit j of qh is the 5th bit of element j.
    static func q5_0(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = loadHalf(b, 0)
        let qh = loadU32(b, 2)
        let qs = bytes(b + 6)
        for j in 0..<16 {
            let h0 = Int((qh >> UInt32(j)) & 1) << 4
            let h1 = Int((qh >> UInt32(j + 16)) & 1) << 4
            y[j] = d * Float((Int(qs[j] & 0x0F) | h0) - 16)
            y[j + 16] = d * Float((Int(qs[j] >> 4) | h1) - 16)
        }
    }

    // Q5_1: f16 d, f16 m | u32 qh | u8 qs[16]. x = d·q + m.
    static func q5_1(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = loadHalf(b, 0), m = loadHalf(b, 2)
        let qh = loadU32(b, 4)
        let qs = bytes(b + 8)
        for j in 0..<16 {
            let h0 = Int((qh >> UInt32(j)) & 1) << 4
            let h1 = Int((qh >> UInt32(j + 16)) & 1) << 4
            y[j] = d * Float(Int(qs[j] & 0x0F) | h0) + m
            y[j + 16] = d * Float(Int(qs[j] >> 4) | h1) + m
        }
    }

    // Q8_0: f16 d | i8 qs[32]. x = d·q.
    static func q8_0(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = loadHalf(b, 0)
        let qs = bytes(b + 2)
        for j in 0..<32 { y[j] = d * Float(Int8(bitPattern: qs[j])) }
    }

    // Q2_K: u8 scales[16] | u8 qs[64] | f16 d | f16 dmin. 16 groups of 16; group g's scale byte:
    // low nibble scale, high nibble min. x = (d·sc)·q − (dmin·m).
    static func q2_K(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let scales = bytes(b)
        let d = loadHalf(b, 80), dmin = loadHalf(b, 82)
        var out = 0
        for half in 0..<2 {
            let q = bytes(b + 16 + 32 * half)
            for j in 0..<4 {
                let shift = UInt8(2 * j)
                for part in 0..<2 {
                    let sc = scales[8 * half + 2 * j + part]
                    let dl = d * Float(sc & 0xF), ml = dmin * Float(sc >> 4)
                    for l in 0..<16 {
                        y[out] = dl * Float((q[l + 16 * part] >> shift) & 3) - ml
                        out += 1
                    }
                }
            }
        }
    }

    // Q3_K: u8 hmask[32] | u8 qs[64] | u8 scales[12] | f16 d. x = (d·(s − 32))·(q − (hbit ? 0 : 4)).
    static func q3_K(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let hm = bytes(b), scales = bytes(b + 96)
        let d = loadHalf(b, 108)
        var out = 0
        var m: UInt8 = 1
        var group = 0
        for half in 0..<2 {
            let q = bytes(b + 32 + 32 * half)
            for j in 0..<4 {
                let shift = UInt8(2 * j)
                for part in 0..<2 {
                    let dl = d * Float(scaleQ3K(group, scales))
                    group += 1
                    for l in 0..<16 {
                        let low = Int((q[l + 16 * part] >> shift) & 3)
                        let high = hm[l + 16 * part] & m != 0 ? 0 : 4
                        y[out] = dl * Float(low - high)
                        out += 1
                    }
                }
                m <<= 1
            }
        }
    }

    // Q4_K: f16 d | f16 dmin | u8 scales[12] | u8 qs[128]. 8 groups of 32, 6-bit scale and min each.
    static func q4_K(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = loadHalf(b, 0), dmin = loadHalf(b, 2)
        let scales = bytes(b + 4)
        for c in 0..<4 {
            let q = bytes(b + 16 + 32 * c)
            let (s1, m1) = scaleMinK4(2 * c, scales), (s2, m2) = scaleMinK4(2 * c + 1, scales)
            let d1 = d * Float(s1), dm1 = dmin * Float(m1)
            let d2 = d * Float(s2), dm2 = dmin * Float(m2)
            for l in 0..<32 {
                y[64 * c + l] = d1 * Float(q[l] & 0xF) - dm1
                y[64 * c + 32 + l] = d2 * Float(q[l] >> 4) - dm2
            }
        }
    }

    // Q5_K: f16 d | f16 dmin | u8 scales[12] | u8 qh[32] | u8 qs[128].
    static func q5_K(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = loadHalf(b, 0), dmin = loadHalf(b, 2)
        let scales = bytes(b + 4), qh = bytes(b + 16)
        for c in 0..<4 {
            let ql = bytes(b + 48 + 32 * c)
            let u1 = UInt8(1) << UInt8(2 * c), u2 = UInt8(2) << UInt8(2 * c)
            let (s1, m1) = scaleMinK4(2 * c, scales), (s2, m2) = scaleMinK4(2 * c + 1, scales)
            let d1 = d * Float(s1), dm1 = dmin * Float(m1)
            let d2 = d * Float(s2), dm2 = dmin * Float(m2)
            for l in 0..<32 {
                let q1 = Int(ql[l] & 0xF) + (qh[l] & u1 != 0 ? 16 : 0)
                let q2 = Int(ql[l] >> 4) + (qh[l] & u2 != 0 ? 16 : 0)
                y[64 * c + l] = d1 * Float(q1) - dm1
                y[64 * c + 32 + l] = d2 * Float(q2) - dm2
            }
        }
    }

    // Q6_K: u8 ql[128] | u8 qh[64] | i8 scales[16] | f16 d. x = (d·sc)·(q − 32).
    static func q6_K(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = loadHalf(b, 208)
        for half in 0..<2 {
            let ql = bytes(b + 64 * half), qh = bytes(b + 128 + 32 * half)
            let sc = bytes(b + 192 + 8 * half)
            let yy = y + 128 * half
            for l in 0..<32 {
                let iscale = l / 16
                let q1 = Int((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32
                let q2 = Int((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32
                let q3 = Int((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32
                let q4 = Int((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32
                yy[l] = d * Float(Int8(bitPattern: sc[iscale])) * Float(q1)
                yy[l + 32] = d * Float(Int8(bitPattern: sc[iscale + 2])) * Float(q2)
                yy[l + 64] = d * Float(Int8(bitPattern: sc[iscale + 4])) * Float(q3)
                yy[l + 96] = d * Float(Int8(bitPattern: sc[iscale + 6])) * Float(q4)
            }
        }
    }

    // Q8_K: f32 d | i8 qs[256] | i16 bsums[16]. x = d·q.
    static func q8_K(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = Float(bitPattern: loadU32(b, 0))
        let qs = bytes(b + 4)
        for j in 0..<256 { y[j] = d * Float(Int8(bitPattern: qs[j])) }
    }

    // IQ4_NL: f16 d | u8 qs[16]. x = d·kvalues[nibble].
    static func iq4_NL(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = loadHalf(b, 0)
        let qs = bytes(b + 2)
        for j in 0..<16 {
            y[j] = d * Float(kvaluesIQ4NL[Int(qs[j] & 0xF)])
            y[j + 16] = d * Float(kvaluesIQ4NL[Int(qs[j] >> 4)])
        }
    }

    // IQ4_XS: f16 d | u16 scales_h | u8 scales_l[4] | u8 qs[128]. 8 groups of 32, 6-bit scale − 32.
    static func iq4_XS(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = loadHalf(b, 0)
        let sh = loadU16(b, 2)
        let sl = bytes(b + 4)
        for ib in 0..<8 {
            let low = Int((sl[ib / 2] >> UInt8(4 * (ib % 2))) & 0xF)
            let high = Int((sh >> UInt16(2 * ib)) & 3) << 4
            let dl = d * Float((low | high) - 32)
            let qs = bytes(b + 8 + 16 * ib)
            for j in 0..<16 {
                y[32 * ib + j] = dl * Float(kvaluesIQ4NL[Int(qs[j] & 0xF)])
                y[32 * ib + j + 16] = dl * Float(kvaluesIQ4NL[Int(qs[j] >> 4)])
            }
        }
    }
}
