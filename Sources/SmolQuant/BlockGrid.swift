import SmolTensor

/// The integer grid of a quantized GGUF block: for each element i, the stored code c_i ∈ 0…maxCode
/// and the affine map value = scale_i · c_i + offset_i its (sub-)block scales define. GPTQ needs it
/// to round later columns onto the grid an earlier quantizer call chose, and to write the codes
/// it picked back into the same block (scales unchanged), so the bytes stay a valid block of the type.
///
/// Layouts (formats/gguf-quants.md; ggml's dequantize_row_*), element i of a block:
/// - Q4_0  f16 d | qs[16]: code = nibble (i < 16: low of qs[i], else high of qs[i−16]); v = d·(c − 8)
/// - Q4_1  f16 d, f16 m | qs[16]: v = d·c + m
/// - Q5_0  f16 d | u32 qh | qs[16]: code = nibble | bit i of qh << 4; v = d·(c − 16)
/// - Q5_1  f16 d, f16 m | u32 qh | qs[16]: v = d·c + m
/// - Q8_0  f16 d | i8 qs[32]: code = q + 128; v = d·q
/// - Q4_K  f16 d, f16 dmin | scales[12] | qs[128]: 64-chunk k, l < 32: qs[32k+l] low nibble =
///         element 64k+l (sub-block 2k), high = 64k+32+l (sub-block 2k+1); v = (d·sc)·c − dmin·m
/// - Q6_K  ql[128] | qh[64] | i8 sc[16] | f16 d: half h, l < 32, element 128h + l + 32j (j < 4):
///         low 4 bits in ql[64h + l + 32(j&1)] (high nibble when j ≥ 2), 2 high bits at qh[32h+l]
///         bits 2j; scale sc[8h + l/16 + 2j]; v = (d·sc)·(c − 32)
/// - Q2_K  scales[16] | qs[64] | f16 d | f16 dmin: half h, l < 32, element 128h + 32j + l (j < 4):
///         code = bits 2j of qs[32h + l]; sub-block byte sc = scales[8h + 2j + l/16] (low nibble
///         scale, high nibble min); v = (d·(sc & 15))·c − dmin·(sc >> 4)
/// - Q3_K  hmask[32] | qs[64] | scales[12] | f16 d: element 128h + 32j + l: low 2 bits = bits 2j of
///         qs[32h + l], high bit = bit 4h + j of hmask[l]; code = low | high << 2;
///         v = (d·s)·(c − 4), s the signed 6-bit scale of sub-block 8h + 2j + l/16
/// - Q5_K  f16 d, f16 dmin | scales[12] | qh[32] | qs[128]: 64-chunk k, l < 32: element 64k + l =
///         low nibble of qs[32k+l] | bit 2k of qh[l] << 4, element 64k+32+l = high nibble | bit 2k+1
///         of qh[l] << 4; scales and mins as Q4_K
public enum BlockGrid {
    public static let supportedTypes: [GGMLType] = [.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K]

    public static func supports(_ type: GGMLType) -> Bool { supportedTypes.contains(type) }

    /// The largest code of `type` (codes are 0…maxCode).
    public static func maxCode(_ type: GGMLType) -> Int32 {
        switch type {
        case .q2_K: return 3
        case .q3_K: return 7
        case .q4_0, .q4_1, .q4_K: return 15
        case .q5_0, .q5_1, .q5_K: return 31
        case .q6_K: return 63
        default: return 255
        }
    }

    /// Decodes one block: codes, and the scale and offset of each element. Values reproduce
    /// `GGUFQuant.dequantize` up to the rounding of offset arithmetic (scale·c + offset).
    public static func decode(_ type: GGMLType, _ b: UnsafeRawPointer, codes: UnsafeMutablePointer<Int32>,
                              scale: UnsafeMutablePointer<Float>, offset: UnsafeMutablePointer<Float>) {
        let u8 = b.assumingMemoryBound(to: UInt8.self)
        switch type {
        case .q4_0, .q4_1, .q5_0, .q5_1:
            let d = loadHalf(b, 0)
            let m: Float
            switch type {
            case .q4_0: m = -8 * d
            case .q5_0: m = -16 * d
            default: m = loadHalf(b, 2)
            }
            let hasHigh = type == .q5_0 || type == .q5_1
            let qsOff = type == .q4_0 ? 2 : type == .q4_1 ? 4 : type == .q5_0 ? 6 : 8
            let qh = hasHigh ? loadU32(b, type == .q5_0 ? 2 : 4) : 0
            for j in 0..<16 {
                let q = u8[qsOff + j]
                codes[j] = Int32(q & 0xF) | (hasHigh ? Int32((qh >> UInt32(j)) & 1) << 4 : 0)
                codes[j + 16] = Int32(q >> 4) | (hasHigh ? Int32((qh >> UInt32(j + 16)) & 1) << 4 : 0)
            }
            for j in 0..<32 { scale[j] = d; offset[j] = m }
        case .q8_0:
            let d = loadHalf(b, 0)
            for j in 0..<32 {
                codes[j] = Int32(Int8(bitPattern: u8[2 + j])) + 128
                scale[j] = d; offset[j] = -128 * d
            }
        case .q4_K:
            let d = loadHalf(b, 0), dmin = loadHalf(b, 2)
            let scales = UnsafePointer(u8 + 4)
            for c in 0..<4 {
                let (s1, m1) = scaleMinK4(2 * c, scales), (s2, m2) = scaleMinK4(2 * c + 1, scales)
                let d1 = d * Float(s1), dm1 = dmin * Float(m1), d2 = d * Float(s2), dm2 = dmin * Float(m2)
                for l in 0..<32 {
                    let q = u8[16 + 32 * c + l]
                    codes[64 * c + l] = Int32(q & 0xF); scale[64 * c + l] = d1; offset[64 * c + l] = -dm1
                    codes[64 * c + 32 + l] = Int32(q >> 4); scale[64 * c + 32 + l] = d2; offset[64 * c + 32 + l] = -dm2
                }
            }
        case .q2_K:
            let d = loadHalf(b, 80), dmin = loadHalf(b, 82)
            for h in 0..<2 {
                for j in 0..<4 {
                    for l in 0..<32 {
                        let e = 128 * h + 32 * j + l
                        let sc = u8[8 * h + 2 * j + l / 16]
                        codes[e] = Int32((u8[16 + 32 * h + l] >> UInt8(2 * j)) & 3)
                        scale[e] = d * Float(sc & 0xF); offset[e] = -(dmin * Float(sc >> 4))
                    }
                }
            }
        case .q3_K:
            let d = loadHalf(b, 108)
            let scales = UnsafePointer(u8 + 96)
            for h in 0..<2 {
                for j in 0..<4 {
                    for l in 0..<32 {
                        let e = 128 * h + 32 * j + l
                        let low = (u8[32 + 32 * h + l] >> UInt8(2 * j)) & 3
                        let high = (u8[l] >> UInt8(4 * h + j)) & 1
                        codes[e] = Int32(low | high << 2)
                        let s = d * Float(scaleQ3K(8 * h + 2 * j + l / 16, scales))
                        scale[e] = s; offset[e] = -4 * s
                    }
                }
            }
        case .q5_K:
            let d = loadHalf(b, 0), dmin = loadHalf(b, 2)
            let scales = UnsafePointer(u8 + 4)
            for c in 0..<4 {
                let (s1, m1) = scaleMinK4(2 * c, scales), (s2, m2) = scaleMinK4(2 * c + 1, scales)
                let d1 = d * Float(s1), dm1 = dmin * Float(m1), d2 = d * Float(s2), dm2 = dmin * Float(m2)
                for l in 0..<32 {
                    let q = u8[48 + 32 * c + l], qh = u8[16 + l]
                    codes[64 * c + l] = Int32(q & 0xF) | Int32((qh >> UInt8(2 * c)) & 1) << 4
                    scale[64 * c + l] = d1; offset[64 * c + l] = -dm1
                    codes[64 * c + 32 + l] = Int32(q >> 4) | Int32((qh >> UInt8(2 * c + 1)) & 1) << 4
                    scale[64 * c + 32 + l] = d2; offset[64 * c + 32 + l] = -dm2
                }
            }
        case .q6_K:
            let d = loadHalf(b, 208)
            for h in 0..<2 {
                for l in 0..<32 {
                    let qh = u8[128 + 32 * h + l]
                    for j in 0..<4 {
                        let lowByte = u8[64 * h + l + 32 * (j & 1)]
                        let low = j >= 2 ? lowByte >> 4 : lowByte & 0xF
                        let e = 128 * h + l + 32 * j
                        codes[e] = Int32(low | (((qh >> UInt8(2 * j)) & 3) << 4))
                        let s = d * Float(Int8(bitPattern: u8[192 + 8 * h + l / 16 + 2 * j]))
                        scale[e] = s; offset[e] = -32 * s
                    }
                }
            }
        default:
            preconditionFailure("BlockGrid does not support \(type.name)")
        }
    }

    /// Writes `codes` (each 0…maxCode) into block `b`, keeping its scales.
    public static func encode(_ type: GGMLType, _ codes: UnsafePointer<Int32>, into b: UnsafeMutableRawPointer) {
        let u8 = b.assumingMemoryBound(to: UInt8.self)
        switch type {
        case .q4_0, .q4_1, .q5_0, .q5_1:
            let hasHigh = type == .q5_0 || type == .q5_1
            let qsOff = type == .q4_0 ? 2 : type == .q4_1 ? 4 : type == .q5_0 ? 6 : 8
            var qh: UInt32 = 0
            for j in 0..<16 {
                let a = UInt32(codes[j]), c = UInt32(codes[j + 16])
                u8[qsOff + j] = UInt8(a & 0xF) | UInt8(c & 0xF) << 4
                qh |= ((a >> 4) & 1) << UInt32(j) | ((c >> 4) & 1) << UInt32(j + 16)
            }
            if hasHigh { b.storeBytes(of: qh.littleEndian, toByteOffset: type == .q5_0 ? 2 : 4, as: UInt32.self) }
        case .q8_0:
            for j in 0..<32 { u8[2 + j] = UInt8(bitPattern: Int8(codes[j] - 128)) }
        case .q4_K:
            for c in 0..<4 {
                for l in 0..<32 {
                    u8[16 + 32 * c + l] = UInt8(codes[64 * c + l] & 0xF) | UInt8(codes[64 * c + 32 + l] & 0xF) << 4
                }
            }
        case .q2_K:
            for h in 0..<2 {
                for l in 0..<32 {
                    var q: UInt8 = 0
                    for j in 0..<4 { q |= UInt8(codes[128 * h + 32 * j + l] & 3) << UInt8(2 * j) }
                    u8[16 + 32 * h + l] = q
                }
            }
        case .q3_K:
            for l in 0..<32 { u8[l] = 0 }
            for h in 0..<2 {
                for l in 0..<32 {
                    var q: UInt8 = 0
                    for j in 0..<4 {
                        let c = UInt8(codes[128 * h + 32 * j + l] & 7)
                        q |= (c & 3) << UInt8(2 * j)
                        u8[l] |= (c >> 2) << UInt8(4 * h + j)
                    }
                    u8[32 + 32 * h + l] = q
                }
            }
        case .q5_K:
            for l in 0..<32 { u8[16 + l] = 0 }
            for c in 0..<4 {
                for l in 0..<32 {
                    let a = UInt8(codes[64 * c + l] & 31), b2 = UInt8(codes[64 * c + 32 + l] & 31)
                    u8[48 + 32 * c + l] = (a & 0xF) | (b2 & 0xF) << 4
                    u8[16 + l] |= (a >> 4) << UInt8(2 * c) | (b2 >> 4) << UInt8(2 * c + 1)
                }
            }
        case .q6_K:
            for h in 0..<2 {
                for l in 0..<32 {
                    var qh: UInt8 = 0
                    var lo = [UInt8](repeating: 0, count: 4)
                    for j in 0..<4 {
                        let c = UInt8(codes[128 * h + l + 32 * j])
                        lo[j] = c & 0xF
                        qh |= (c >> 4 & 3) << UInt8(2 * j)
                    }
                    u8[64 * h + l] = lo[0] | lo[2] << 4
                    u8[64 * h + l + 32] = lo[1] | lo[3] << 4
                    u8[128 + 32 * h + l] = qh
                }
            }
        default:
            preconditionFailure("BlockGrid does not support \(type.name)")
        }
    }
}
