import SmolTensor

// k-quant block quantizers: llama.cpp's quantize_row_{q2..q6}_K_ref (no importance) and
// quantize_row_{q2..q6}_K_impl (per-column importance from an imatrix), one 256-element block per
// call. The packed layouts are in formats/gguf-quants.md.

extension Quantizers {
    /// Packs 256 2-bit levels the way Q2_K and Q3_K store them: byte j/4 + l of each 128-element
    /// half holds elements l, l+32, l+64, l+96 at bit offsets 0, 2, 4, 6.
    static func pack2Bit(_ L: UnsafePointer<UInt8>, _ qs: UnsafeMutableRawPointer) {
        for j in stride(from: 0, to: 256, by: 128) {
            for l in 0..<32 {
                let v = L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6)
                qs.storeBytes(of: v, toByteOffset: j / 4 + l, as: UInt8.self)
            }
        }
    }

    // MARK: Q2_K — u8 scales[16] | u8 qs[64] | f16 d | f16 dmin

    static func q2_KRef(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 256 + 16) { lb in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 48) { fb in
                let L = lb.baseAddress!, Laux = L + 256
                let weights = fb.baseAddress!, mins = weights + 16, scales = mins + 16
                let q4scale: Float = 15
                var maxScale: Float = 0, maxMin: Float = 0
                for j in 0..<16 {
                    for l in 0..<16 { weights[l] = abs(x[16 * j + l]) }
                    scales[j] = makeQkx2Quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5, 0.1, 15, true)
                    if scales[j] > maxScale { maxScale = scales[j] }
                    if mins[j] > maxMin { maxMin = mins[j] }
                }
                var sc = [UInt8](repeating: 0, count: 16)
                if maxScale > 0 {
                    let iscale = q4scale / maxScale
                    for j in 0..<16 { sc[j] = UInt8(truncatingIfNeeded: nearestInt(iscale * scales[j])) }
                    storeHalf(y, 80, maxScale / q4scale)
                } else {
                    storeHalf(y, 80, 0)
                }
                if maxMin > 0 {
                    let iscale = q4scale / maxMin
                    for j in 0..<16 { sc[j] |= UInt8(truncatingIfNeeded: nearestInt(iscale * mins[j]) << 4) }
                    storeHalf(y, 82, maxMin / q4scale)
                } else {
                    storeHalf(y, 82, 0)
                }
                for j in 0..<16 { y.storeBytes(of: sc[j], toByteOffset: j, as: UInt8.self) }
                q2_KRequantize(x, y, L)
                pack2Bit(L, y + 16)
            }
        }
    }

    /// Recomputes the levels from the stored (f16-rounded) scales, as both Q2_K paths do.
    static func q2_KRequantize(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, _ L: UnsafeMutablePointer<UInt8>) {
        let dAll = loadHalf(y, 80), mAll = loadHalf(y, 82)
        for j in 0..<16 {
            let sc = y.load(fromByteOffset: j, as: UInt8.self)
            let d = dAll * Float(sc & 0xF)
            if d == 0 { continue }
            let dm = mAll * Float(sc >> 4)
            for ii in 0..<16 {
                let l = nearestInt((x[16 * j + ii] + dm) / d)
                L[16 * j + ii] = UInt8(max(0, min(3, l)))
            }
        }
    }

    static func q2_KImpl(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, _ qw: UnsafePointer<Float>?) {
        let qw = qw!
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 256 + 16 + 32) { lb in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 64) { fb in
                let L = lb.baseAddress!, Laux = L + 256, Ls = Laux + 16, Lm = Ls + 16
                let weight = fb.baseAddress!, mins = weight + 16, scales = mins + 16, sw = scales + 16
                var sumX2: Float = 0
                for j in 0..<256 { sumX2 += x[j] * x[j] }
                let sigma2 = sumX2 / 256
                for j in 0..<16 {
                    for l in 0..<16 { weight[l] = qw[16 * j + l] * (sigma2 + x[16 * j + l] * x[16 * j + l]).squareRoot() }
                    sw[j] = 0
                    for l in 0..<16 { sw[j] += weight[l] }
                    scales[j] = makeQkx3Quants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux, -0.9, 0.05, 36, false)
                }
                let dm = makeQpQuants(16, 15, scales, Ls, sw)
                let mm = makeQpQuants(16, 15, mins, Lm, sw)
                storeHalf(y, 80, dm)
                storeHalf(y, 82, mm)
                for j in 0..<16 { y.storeBytes(of: Ls[j] | (Lm[j] << 4), toByteOffset: j, as: UInt8.self) }
                q2_KRequantize(x, y, L)
                pack2Bit(L, y + 16)
            }
        }
    }

    // MARK: Q3_K — u8 hmask[32] | u8 qs[64] | u8 scales[12] | f16 d

    /// Stores 16 6-bit scale codes (0…63, bias 32) into Q3_K's 12 scale bytes.
    static func q3_KPackScales(_ codes: (Int) -> Int, _ s: UnsafeMutableRawPointer) {
        var b = [UInt8](repeating: 0, count: 12)
        for j in 0..<16 {
            let l = codes(j)
            if j < 8 { b[j] = UInt8(truncatingIfNeeded: l & 0xF) } else { b[j - 8] |= UInt8(truncatingIfNeeded: (l & 0xF) << 4) }
            b[j % 4 + 8] |= UInt8(truncatingIfNeeded: (l >> 4) << (2 * (j / 4)))
        }
        for i in 0..<12 { s.storeBytes(of: b[i], toByteOffset: i, as: UInt8.self) }
    }

    /// Levels from the stored scales, then the hmask/qs packing (shared by both Q3_K paths).
    static func q3_KFinish(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, _ L: UnsafeMutablePointer<Int8>) {
        let dAll = loadHalf(y, 108)
        let scales = UnsafePointer((y + 96).assumingMemoryBound(to: UInt8.self))
        for j in 0..<16 {
            let d = dAll * Float(scaleQ3K(j, scales))
            if d == 0 { continue }
            for ii in 0..<16 {
                let l = nearestInt(x[16 * j + ii] / d)
                L[16 * j + ii] = Int8(max(-4, min(3, l)) + 4)
            }
        }
        var hmask = [UInt8](repeating: 0, count: 32)
        var m = 0
        var hm: UInt8 = 1
        for j in 0..<256 {
            if L[j] > 3 {
                hmask[m] |= hm
                L[j] -= 4
            }
            m += 1
            if m == 32 { m = 0; hm <<= 1 }
        }
        for i in 0..<32 { y.storeBytes(of: hmask[i], toByteOffset: i, as: UInt8.self) }
        L.withMemoryRebound(to: UInt8.self, capacity: 256) { pack2Bit($0, y + 32) }
    }

    static func q3_KRef(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        withUnsafeTemporaryAllocation(of: Int8.self, capacity: 256) { lb in
            let L = lb.baseAddress!
            var scales = [Float](repeating: 0, count: 16)
            var maxScale: Float = 0, amax: Float = 0
            for j in 0..<16 {
                scales[j] = makeQ3Quants(16, 4, x + 16 * j, L + 16 * j)
                let a = abs(scales[j])
                if a > amax { amax = a; maxScale = scales[j] }
            }
            if maxScale != 0 {
                let iscale = -32 / maxScale
                q3_KPackScales({ j in
                    // C stores nearest_int's result in an int8_t before clamping.
                    let l = Int(Int8(truncatingIfNeeded: nearestInt(iscale * scales[j])))
                    return max(-32, min(31, l)) + 32
                }, y + 96)
                storeHalf(y, 108, 1 / iscale)
            } else {
                q3_KPackScales({ _ in 0 }, y + 96)
                storeHalf(y, 108, 0)
            }
            q3_KFinish(x, y, L)
        }
    }

    static func q3_KImpl(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, _ qw: UnsafePointer<Float>?) {
        let qw = qw!
        withUnsafeTemporaryAllocation(of: Int8.self, capacity: 256 + 16) { lb in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 48) { fb in
                let L = lb.baseAddress!, Ls = L + 256
                let weight = fb.baseAddress!, scales = weight + 16, sw = scales + 16
                var sumX2: Float = 0
                for j in 0..<256 { sumX2 += x[j] * x[j] }
                let sigma2 = 2 * sumX2 / 256
                for j in 0..<16 {
                    for l in 0..<16 { weight[l] = qw[16 * j + l] * (sigma2 + x[16 * j + l] * x[16 * j + l]).squareRoot() }
                    var sumw: Float = 0
                    for l in 0..<16 { sumw += weight[l] }
                    sw[j] = sumw
                    scales[j] = makeQxQuants(16, 4, x + 16 * j, L + 16 * j, weight)
                }
                let dBlock = makeQxQuants(16, 32, scales, Ls, sw)
                q3_KPackScales({ Int(Ls[$0]) }, y + 96)
                storeHalf(y, 108, dBlock)
                q3_KFinish(x, y, L)
            }
        }
    }

    // MARK: Q4_K / Q5_K — f16 d | f16 dmin | u8 scales[12] | (Q5_K: u8 qh[32]) | u8 qs[128]

    /// Packs 8 6-bit scales and mins into the 12 scale bytes (inverse of `scaleMinK4`).
    static func packScaleMinK4(_ ls: [UInt8], _ lm: [UInt8], _ s: UnsafeMutableRawPointer) {
        var b = [UInt8](repeating: 0, count: 12)
        for j in 0..<8 {
            if j < 4 {
                b[j] = ls[j]
                b[j + 4] = lm[j]
            } else {
                b[j + 4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4)
                b[j - 4] |= (ls[j] >> 4) << 6
                b[j] |= (lm[j] >> 4) << 6
            }
        }
        for i in 0..<12 { s.storeBytes(of: b[i], toByteOffset: i, as: UInt8.self) }
    }

    /// Levels from the stored scales and the final packing (shared by Q4_K/Q5_K, both paths).
    static func q45_KFinish(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, _ L: UnsafeMutablePointer<UInt8>, nmax: Int) {
        let dAll = loadHalf(y, 0), mAll = loadHalf(y, 2)
        let scales = UnsafePointer((y + 4).assumingMemoryBound(to: UInt8.self))
        for j in 0..<8 {
            let (sc, m) = scaleMinK4(j, scales)
            let d = dAll * Float(sc)
            if d == 0 { continue }
            let dm = mAll * Float(m)
            for ii in 0..<32 {
                let l = nearestInt((x[32 * j + ii] + dm) / d)
                L[32 * j + ii] = UInt8(max(0, min(nmax, l)))
            }
        }
        if nmax == 15 {
            for c in 0..<4 {
                for l in 0..<32 {
                    y.storeBytes(of: L[64 * c + l] | (L[64 * c + l + 32] << 4), toByteOffset: 16 + 32 * c + l, as: UInt8.self)
                }
            }
        } else {
            var qh = [UInt8](repeating: 0, count: 32)
            var m1: UInt8 = 1, m2: UInt8 = 2
            for c in 0..<4 {
                for j in 0..<32 {
                    var l1 = L[64 * c + j], l2 = L[64 * c + j + 32]
                    if l1 > 15 { l1 -= 16; qh[j] |= m1 }
                    if l2 > 15 { l2 -= 16; qh[j] |= m2 }
                    y.storeBytes(of: l1 | (l2 << 4), toByteOffset: 48 + 32 * c + j, as: UInt8.self)
                }
                m1 <<= 2; m2 <<= 2
            }
            for j in 0..<32 { y.storeBytes(of: qh[j], toByteOffset: 16 + j, as: UInt8.self) }
        }
    }

    static func q45_KRef(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, nmax: Int) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 256 + 32) { lb in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 48) { fb in
                let L = lb.baseAddress!, Laux = L + 256
                let weights = fb.baseAddress!, mins = weights + 32, scales = mins + 8
                var maxScale: Float = 0, maxMin: Float = 0
                for j in 0..<8 {
                    var sumX2: Float = 0
                    for l in 0..<32 { sumX2 += x[32 * j + l] * x[32 * j + l] }
                    let avX = (sumX2 / 32).squareRoot()
                    for l in 0..<32 { weights[l] = avX + abs(x[32 * j + l]) }
                    scales[j] = nmax == 15
                        ? makeQkx2Quants(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -1, 0.1, 20, false)
                        : makeQkx2Quants(32, 31, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.5, 0.1, 15, false)
                    if scales[j] > maxScale { maxScale = scales[j] }
                    if mins[j] > maxMin { maxMin = mins[j] }
                }
                let invScale: Float = maxScale > 0 ? 63 / maxScale : 0
                let invMin: Float = maxMin > 0 ? 63 / maxMin : 0
                var ls = [UInt8](repeating: 0, count: 8), lm = ls
                for j in 0..<8 {
                    ls[j] = min(63, UInt8(truncatingIfNeeded: nearestInt(invScale * scales[j])))
                    lm[j] = min(63, UInt8(truncatingIfNeeded: nearestInt(invMin * mins[j])))
                }
                packScaleMinK4(ls, lm, y + 4)
                storeHalf(y, 0, maxScale / 63)
                storeHalf(y, 2, maxMin / 63)
                q45_KFinish(x, y, L, nmax: nmax)
            }
        }
    }

    static func q45_KImpl(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, _ qw: UnsafePointer<Float>?, nmax: Int) {
        let qw = qw!
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 256 + 32 + 16) { lb in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 56) { fb in
                let L = lb.baseAddress!, Laux = L + 256, Ls = Laux + 32, Lm = Ls + 8
                let weights = fb.baseAddress!, mins = weights + 32, scales = mins + 8, sw = scales + 8
                var sumX2: Float = 0
                for l in 0..<256 { sumX2 += x[l] * x[l] }
                let sigma2 = 2 * sumX2 / 256
                for j in 0..<8 {
                    for l in 0..<32 { weights[l] = qw[32 * j + l] * (sigma2 + x[32 * j + l] * x[32 * j + l]).squareRoot() }
                    var sumw: Float = 0
                    for l in 0..<32 { sumw += weights[l] }
                    sw[j] = sumw
                    scales[j] = makeQkx3Quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9, 0.05, 36, false)
                }
                let dBlock = makeQpQuants(8, 63, scales, Ls, sw)
                let mBlock = makeQpQuants(8, 63, mins, Lm, sw)
                packScaleMinK4((0..<8).map { min(63, Ls[$0]) }, (0..<8).map { min(63, Lm[$0]) }, y + 4)
                storeHalf(y, 0, dBlock)
                storeHalf(y, 2, mBlock)
                q45_KFinish(x, y, L, nmax: nmax)
            }
        }
    }

    // MARK: Q6_K — u8 ql[128] | u8 qh[64] | i8 scales[16] | f16 d

    static func q6_K(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer, _ qw: UnsafePointer<Float>?) {
        withUnsafeTemporaryAllocation(of: Int8.self, capacity: 256) { lb in
            let L = lb.baseAddress!
            var scales = [Float](repeating: 0, count: 16)
            var maxScale: Float = 0, maxAbsScale: Float = 0
            for ib in 0..<16 {
                let scale = makeQxQuants(16, 32, x + 16 * ib, L + 16 * ib, qw.map { $0 + 16 * ib })
                scales[ib] = scale
                if abs(scale) > maxAbsScale { maxAbsScale = abs(scale); maxScale = scale }
            }
            if maxAbsScale < groupMaxEps {
                y.initializeMemory(as: UInt8.self, repeating: 0, count: 210)
                return
            }
            let iscale = -128 / maxScale
            storeHalf(y, 208, 1 / iscale)
            for ib in 0..<16 {
                let s = Int8(truncatingIfNeeded: min(127, nearestInt(iscale * scales[ib])))
                y.storeBytes(of: s, toByteOffset: 192 + ib, as: Int8.self)
            }
            let dAll = loadHalf(y, 208)
            for j in 0..<16 {
                let d = dAll * Float(y.load(fromByteOffset: 192 + j, as: Int8.self))
                if d == 0 { continue }
                for ii in 0..<16 {
                    let l = nearestInt(x[16 * j + ii] / d)
                    L[16 * j + ii] = Int8(max(-32, min(31, l)) + 32)
                }
            }
            for half in 0..<2 {
                let j = 128 * half
                for l in 0..<32 {
                    let v = (0..<4).map { UInt8(L[j + l + 32 * $0]) }
                    y.storeBytes(of: (v[0] & 0xF) | ((v[2] & 0xF) << 4), toByteOffset: 64 * half + l, as: UInt8.self)
                    y.storeBytes(of: (v[1] & 0xF) | ((v[3] & 0xF) << 4), toByteOffset: 64 * half + l + 32, as: UInt8.self)
                    let h = (v[0] >> 4) | ((v[1] >> 4) << 2) | ((v[2] >> 4) << 4) | ((v[3] >> 4) << 6)
                    y.storeBytes(of: h, toByteOffset: 128 + 32 * half + l, as: UInt8.self)
                }
            }
        }
    }
}
