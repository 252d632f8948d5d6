import SmolTensor

// Fast dequantizers. Same arithmetic as RefDequant (so the same bits), organised for speed:
// - 2/3/4-bit types compute the handful of possible output values of a group once into a small
//   table (e.g. Q4_K: 16 values `d1·q − dm1` per 32 elements) and then only look values up;
// - wider types precompute the group scale and run a flat loop the compiler can vectorize;
// - `GGUFQuant.dequantize` runs the kernel on several threads for large tensors.

typealias RangeDequant = (UnsafeRawPointer, UnsafeMutablePointer<Float>, Int) -> Void

enum FastDequant {
    static func kernel(_ type: GGMLType) -> RangeDequant {
        switch type {
        case .f32: return { b, y, n in UnsafeMutableRawPointer(y).copyMemory(from: b, byteCount: 4 * n) }
        case .f16: return f16
        case .bf16: return bf16
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

    @inline(__always)
    static func bytes(_ b: UnsafeRawPointer) -> UnsafePointer<UInt8> { b.assumingMemoryBound(to: UInt8.self) }

    static func f16(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        halfToFloatTable.withUnsafeBufferPointer { t in
            let table = t.baseAddress!
            for i in 0..<n { y[i] = table[Int(loadU16(b, 2 * i))] }
        }
    }

    static func bf16(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        for i in 0..<n { y[i] = Float(bitPattern: UInt32(loadU16(b, 2 * i)) << 16) }
    }

    /// Writes 32 outputs from 16 nibble-packed bytes through a 16-entry table: low nibbles to
    /// y[0..<16], high nibbles to y[16..<32] (the ggml "split halves" order).
    @inline(__always)
    static func lookupSplit16(_ qs: UnsafePointer<UInt8>, _ t: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        for j in 0..<16 {
            let q = qs[j]
            y[j] = t[Int(q & 0xF)]
            y[j + 16] = t[Int(q >> 4)]
        }
    }

    static func q4_0(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 16) { tb in
            let t = tb.baseAddress!
            for i in 0..<n {
                let blk = b + 18 * i
                let d = loadHalf(blk, 0)
                for v in 0..<16 { t[v] = d * Float(v - 8) }
                lookupSplit16(bytes(blk + 2), t, y + 32 * i)
            }
        }
    }

    static func q4_1(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 16) { tb in
            let t = tb.baseAddress!
            for i in 0..<n {
                let blk = b + 20 * i
                let d = loadHalf(blk, 0), m = loadHalf(blk, 2)
                for v in 0..<16 { t[v] = d * Float(v) + m }
                lookupSplit16(bytes(blk + 4), t, y + 32 * i)
            }
        }
    }

    static func q5_0(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 32) { tb in
            let t = tb.baseAddress!
            for i in 0..<n {
                let blk = b + 22 * i
                let d = loadHalf(blk, 0)
                for v in 0..<32 { t[v] = d * Float(v - 16) }
                let qh = loadU32(blk, 2)
                let qs = bytes(blk + 6)
                let yy = y + 32 * i
                for j in 0..<16 {
                    let h0 = Int((qh >> UInt32(j)) << 4) & 0x10
                    let h1 = Int(qh >> UInt32(j + 12)) & 0x10
                    yy[j] = t[Int(qs[j] & 0xF) | h0]
                    yy[j + 16] = t[Int(qs[j] >> 4) | h1]
                }
            }
        }
    }

    static func q5_1(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 32) { tb in
            let t = tb.baseAddress!
            for i in 0..<n {
                let blk = b + 24 * i
                let d = loadHalf(blk, 0), m = loadHalf(blk, 2)
                for v in 0..<32 { t[v] = d * Float(v) + m }
                let qh = loadU32(blk, 4)
                let qs = bytes(blk + 8)
                let yy = y + 32 * i
                for j in 0..<16 {
                    let h0 = Int((qh >> UInt32(j)) << 4) & 0x10
                    let h1 = Int(qh >> UInt32(j + 12)) & 0x10
                    yy[j] = t[Int(qs[j] & 0xF) | h0]
                    yy[j + 16] = t[Int(qs[j] >> 4) | h1]
                }
            }
        }
    }

    static func q8_0(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        for i in 0..<n {
            let blk = b + 34 * i
            let d = loadHalf(blk, 0)
            let qs = (blk + 2).assumingMemoryBound(to: Int8.self)
            let yy = y + 32 * i
            for j in 0..<32 { yy[j] = d * Float(qs[j]) }
        }
    }

    static func q2_K(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 4) { tb in
            let t = tb.baseAddress!
            for i in 0..<n {
                let blk = b + 84 * i
                let scales = bytes(blk)
                let d = loadHalf(blk, 80), dmin = loadHalf(blk, 82)
                var yy = y + 256 * i
                for half in 0..<2 {
                    let q = bytes(blk + 16 + 32 * half)
                    for j in 0..<4 {
                        let shift = UInt8(2 * j)
                        for part in 0..<2 {
                            let sc = scales[8 * half + 2 * j + part]
                            let dl = d * Float(sc & 0xF), ml = dmin * Float(sc >> 4)
                            t[0] = dl * 0 - ml; t[1] = dl * 1 - ml; t[2] = dl * 2 - ml; t[3] = dl * 3 - ml
                            let qq = q + 16 * part
                            for l in 0..<16 { yy[l] = t[Int((qq[l] >> shift) & 3)] }
                            yy += 16
                        }
                    }
                }
            }
        }
    }

    static func q3_K(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        // Table index: 2-bit low part | (high bit set ? 4 : 0); value dl·(low − (high ? 0 : 4)).
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 8) { tb in
            let t = tb.baseAddress!
            for i in 0..<n {
                let blk = b + 110 * i
                let hm = bytes(blk), scales = bytes(blk + 96)
                let d = loadHalf(blk, 108)
                var yy = y + 256 * i
                var group = 0
                for half in 0..<2 {
                    let q = bytes(blk + 32 + 32 * half)
                    for j in 0..<4 {
                        let shift = UInt8(2 * j)
                        let bit = UInt8(4 * half + j)
                        for part in 0..<2 {
                            let dl = d * Float(scaleQ3K(group, scales))
                            group += 1
                            for v in 0..<4 {
                                t[v] = dl * Float(v - 4)
                                t[v + 4] = dl * Float(v)
                            }
                            let qq = q + 16 * part, hh = hm + 16 * part
                            for l in 0..<16 {
                                let idx = Int((qq[l] >> shift) & 3) | Int(((hh[l] >> bit) & 1) << 2)
                                yy[l] = t[idx]
                            }
                            yy += 16
                        }
                    }
                }
            }
        }
    }

    static func q4_K(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 32) { tb in
            let t1 = tb.baseAddress!, t2 = t1 + 16
            for i in 0..<n {
                let blk = b + 144 * i
                let d = loadHalf(blk, 0), dmin = loadHalf(blk, 2)
                let scales = bytes(blk + 4)
                let yy = y + 256 * i
                for c in 0..<4 {
                    let (s1, m1) = scaleMinK4(2 * c, scales), (s2, m2) = scaleMinK4(2 * c + 1, scales)
                    let d1 = d * Float(s1), dm1 = dmin * Float(m1)
                    let d2 = d * Float(s2), dm2 = dmin * Float(m2)
                    for v in 0..<16 {
                        t1[v] = d1 * Float(v) - dm1
                        t2[v] = d2 * Float(v) - dm2
                    }
                    let q = bytes(blk + 16 + 32 * c)
                    let o = yy + 64 * c
                    for l in 0..<32 {
                        o[l] = t1[Int(q[l] & 0xF)]
                        o[l + 32] = t2[Int(q[l] >> 4)]
                    }
                }
            }
        }
    }

    static func q5_K(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 64) { tb in
            let t1 = tb.baseAddress!, t2 = t1 + 32
            for i in 0..<n {
                let blk = b + 176 * i
                let d = loadHalf(blk, 0), dmin = loadHalf(blk, 2)
                let scales = bytes(blk + 4), qh = bytes(blk + 16)
                let yy = y + 256 * i
                for c in 0..<4 {
                    let (s1, m1) = scaleMinK4(2 * c, scales), (s2, m2) = scaleMinK4(2 * c + 1, scales)
                    let d1 = d * Float(s1), dm1 = dmin * Float(m1)
                    let d2 = d * Float(s2), dm2 = dmin * Float(m2)
                    for v in 0..<32 {
                        t1[v] = d1 * Float(v) - dm1
                        t2[v] = d2 * Float(v) - dm2
                    }
                    let ql = bytes(blk + 48 + 32 * c)
                    let sh1 = UInt8(2 * c), sh2 = UInt8(2 * c + 1)
                    let o = yy + 64 * c
                    for l in 0..<32 {
                        o[l] = t1[Int(ql[l] & 0xF) | Int(((qh[l] >> sh1) & 1) << 4)]
                        o[l + 32] = t2[Int(ql[l] >> 4) | Int(((qh[l] >> sh2) & 1) << 4)]
                    }
                }
            }
        }
    }

    static func q6_K(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 16) { sb in
            let ds = sb.baseAddress!
            for i in 0..<n {
                let blk = b + 210 * i
                let d = loadHalf(blk, 208)
                let sc = (blk + 192).assumingMemoryBound(to: Int8.self)
                for g in 0..<16 { ds[g] = d * Float(sc[g]) }
                for half in 0..<2 {
                    let ql = bytes(blk + 64 * half), qh = bytes(blk + 128 + 32 * half)
                    let yy = y + 256 * i + 128 * half
                    let dd = ds + 8 * half
                    for l in 0..<32 {
                        let g = l >> 4
                        let h = qh[l]
                        yy[l] = dd[g] * Float(Int8(bitPattern: (ql[l] & 0xF) | ((h & 3) << 4)) &- 32)
                        yy[l + 32] = dd[g + 2] * Float(Int8(bitPattern: (ql[l + 32] & 0xF) | (((h >> 2) & 3) << 4)) &- 32)
                        yy[l + 64] = dd[g + 4] * Float(Int8(bitPattern: (ql[l] >> 4) | (((h >> 4) & 3) << 4)) &- 32)
                        yy[l + 96] = dd[g + 6] * Float(Int8(bitPattern: (ql[l + 32] >> 4) | ((h >> 6) << 4)) &- 32)
                    }
                }
            }
        }
    }

    static func q8_K(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        for i in 0..<n {
            let blk = b + 292 * i
            let d = Float(bitPattern: loadU32(blk, 0))
            let qs = (blk + 4).assumingMemoryBound(to: Int8.self)
            let yy = y + 256 * i
            for j in 0..<256 { yy[j] = d * Float(qs[j]) }
        }
    }

    static func iq4_NL(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 16) { tb in
            let t = tb.baseAddress!
            for i in 0..<n {
                let blk = b + 18 * i
                let d = loadHalf(blk, 0)
                for v in 0..<16 { t[v] = d * Float(kvaluesIQ4NL[v]) }
                lookupSplit16(bytes(blk + 2), t, y + 32 * i)
            }
        }
    }

    static func iq4_XS(_ b: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 32) { tb in
            let t = tb.baseAddress!, kv = t + 16
            for v in 0..<16 { kv[v] = Float(kvaluesIQ4NL[v]) }
            for i in 0..<n {
                let blk = b + 136 * i
                let d = loadHalf(blk, 0)
                let sh = loadU16(blk, 2)
                let sl = bytes(blk + 4)
                for ib in 0..<8 {
                    let low = Int((sl[ib / 2] >> UInt8(4 * (ib % 2))) & 0xF)
                    let high = Int((sh >> UInt16(2 * ib)) & 3) << 4
                    let dl = d * Float((low | high) - 32)
                    for v in 0..<16 { t[v] = dl * kv[v] }
                    lookupSplit16(bytes(blk + 8 + 16 * ib), t, y + 256 * i + 32 * ib)
                }
            }
        }
    }
}
