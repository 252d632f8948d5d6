import CSmolKernels
import Foundation
import SmolTensor

// Fused dequantize-and-dot of one encoded weight row with an F32 activation row (the matvec inner
// loop): no F32 copy of the row is written. For Q8_0, Q4_0, Q5_0 and Q6_K, d·q is exact in Float32,
// so Σ d·(Σ qᵢxᵢ) is the dot of the exactly dequantized row up to summation order. Q4_K keeps the
// per-element (d·sc)·q − dmin·m of the dequantizer, whose subtraction rounds, so it too differs from
// dequantize-then-dot only in summation order.
//
// On x86-64 CPUs with AVX2 + FMA + F16C, the C twins in CSmolKernels run instead (chosen once at
// run time): Swift cannot target AVX2 per function, and its baseline-SSE2 build of these loops is
// 2–3× too slow to stream the Q8_0 output layer at memory bandwidth (numbers in kernels.c). The
// Swift versions stay as the portable path and as the C code's test twin.

/// Whether the CSmolKernels AVX2 kernels run on this CPU (SMOLCONV_NO_AVX2=1 turns them off).
let useAVX2Kernels: Bool = smolk_has_avx2() != 0
    && ProcessInfo.processInfo.environment["SMOLCONV_NO_AVX2"] == nil

extension QuantKernels {
    static func hasFusedDot(_ type: GGMLType) -> Bool {
        switch type {
        case .f32, .q8_0, .q4_0, .q5_0, .q4_K, .q6_K: return true
        default: return false
        }
    }

    /// Σ wᵢ·xᵢ over `count` elements of an encoded row of `type`; nil when `type` has no fused
    /// kernel (dequantize into scratch and use `simdDot`).
    @inline(__always)
    static func dotRow(_ type: GGMLType, _ w: UnsafeRawPointer, _ x: UnsafePointer<Float>, count: Int) -> Float? {
        if useAVX2Kernels {
            switch type {
            case .q8_0: return smolk_q8_0_dot_avx2(w, x, count / 32)
            case .q5_0: return smolk_q5_0_dot_avx2(w, x, count / 32)
            case .q4_K: return smolk_q4_K_dot_avx2(w, x, count / 256)
            case .q6_K: return smolk_q6_K_dot_avx2(w, x, count / 256)
            default: break
            }
        }
        return portableDotRow(type, w, x, count: count)
    }

    /// The Swift (portable) fused dots; `dotRow` without the AVX2 dispatch.
    @inline(__always)
    static func portableDotRow(_ type: GGMLType, _ w: UnsafeRawPointer, _ x: UnsafePointer<Float>, count: Int) -> Float? {
        switch type {
        case .f32: return simdDot(w.assumingMemoryBound(to: Float.self), x, count)
        case .q8_0: return q8_0Dot(w, x, count / 32)
        case .q4_0: return q4_0Dot(w, x, count / 32)
        case .q5_0: return q5_0Dot(w, x, count / 32)
        case .q4_K: return q4_KDot(w, x, count / 256)
        case .q6_K: return q6_KDot(w, x, count / 256)
        default: return nil
        }
    }

    @inline(__always)
    static func load8(_ x: UnsafePointer<Float>, _ i: Int) -> SIMD8<Float> {
        UnsafeRawPointer(x).loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)
    }

    /// Σ q·x over 16 quants and x[0..<16].
    @inline(__always)
    static func dot16(_ q: SIMD16<Int8>, _ x: UnsafePointer<Float>) -> SIMD8<Float> {
        floats(q.lowHalf) * load8(x, 0) + floats(q.highHalf) * load8(x, 8)
    }

    static func q8_0Dot(_ w: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ blocks: Int) -> Float {
        var acc = SIMD8<Float>(repeating: 0)
        for b in 0..<blocks {
            let p = w + 34 * b, xb = x + 32 * b
            let s = dot16(p.loadUnaligned(fromByteOffset: 2, as: SIMD16<Int8>.self), xb)
                + dot16(p.loadUnaligned(fromByteOffset: 18, as: SIMD16<Int8>.self), xb + 16)
            acc += SIMD8(repeating: loadHalf(p, 0)) * s
        }
        return acc.sum()
    }

    static func q4_0Dot(_ w: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ blocks: Int) -> Float {
        var acc = SIMD8<Float>(repeating: 0)
        for b in 0..<blocks {
            let p = w + 18 * b, xb = x + 32 * b
            let qs = p.loadUnaligned(fromByteOffset: 2, as: SIMD16<UInt8>.self)
            let s = dot16(SIMD16<Int8>(truncatingIfNeeded: qs & 15) &- 8, xb)
                + dot16(SIMD16<Int8>(truncatingIfNeeded: qs &>> 4) &- 8, xb + 16)
            acc += SIMD8(repeating: loadHalf(p, 0)) * s
        }
        return acc.sum()
    }

    static func q5_0Dot(_ w: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ blocks: Int) -> Float {
        let zero = SIMD16<UInt8>(repeating: 0), sixteen = SIMD16<UInt8>(repeating: 16)
        var acc = SIMD8<Float>(repeating: 0)
        for b in 0..<blocks {
            let p = w + 22 * b, xb = x + 32 * b
            let h0 = p.load(fromByteOffset: 2, as: UInt8.self), h1 = p.load(fromByteOffset: 3, as: UInt8.self)
            let h2 = p.load(fromByteOffset: 4, as: UInt8.self), h3 = p.load(fromByteOffset: 5, as: UInt8.self)
            let bytesLo = SIMD16<UInt8>(lowHalf: SIMD8(repeating: h0), highHalf: SIMD8(repeating: h1))
            let bytesHi = SIMD16<UInt8>(lowHalf: SIMD8(repeating: h2), highHalf: SIMD8(repeating: h3))
            let fifthLo = zero.replacing(with: sixteen, where: (bytesLo & bitSelect) .!= zero)
            let fifthHi = zero.replacing(with: sixteen, where: (bytesHi & bitSelect) .!= zero)
            let qs = p.loadUnaligned(fromByteOffset: 6, as: SIMD16<UInt8>.self)
            let s = dot16(SIMD16<Int8>(truncatingIfNeeded: (qs & 15) | fifthLo) &- 16, xb)
                + dot16(SIMD16<Int8>(truncatingIfNeeded: (qs &>> 4) | fifthHi) &- 16, xb + 16)
            acc += SIMD8(repeating: loadHalf(p, 0)) * s
        }
        return acc.sum()
    }

    static func q4_KDot(_ w: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ blocks: Int) -> Float {
        var acc = SIMD8<Float>(repeating: 0)
        @inline(__always) func sub(_ q: SIMD16<Int8>, _ d: SIMD8<Float>, _ m: SIMD8<Float>, _ x: UnsafePointer<Float>) -> SIMD8<Float> {
            (d * floats(q.lowHalf) - m) * load8(x, 0) + (d * floats(q.highHalf) - m) * load8(x, 8)
        }
        for b in 0..<blocks {
            let p = w + 144 * b, xb = x + 256 * b
            let d = loadHalf(p, 0), dmin = loadHalf(p, 2)
            for c in 0..<4 {
                let (sc1, m1) = q4KScaleMin(2 * c, p + 4)
                let (sc2, m2) = q4KScaleMin(2 * c + 1, p + 4)
                let d1 = SIMD8<Float>(repeating: d * Float(sc1)), mm1 = SIMD8<Float>(repeating: dmin * Float(m1))
                let d2 = SIMD8<Float>(repeating: d * Float(sc2)), mm2 = SIMD8<Float>(repeating: dmin * Float(m2))
                let xc = xb + 64 * c
                for half in 0..<2 {
                    let q = p.loadUnaligned(fromByteOffset: 16 + 32 * c + 16 * half, as: SIMD16<UInt8>.self)
                    acc += sub(SIMD16<Int8>(truncatingIfNeeded: q & 15), d1, mm1, xc + 16 * half)
                    acc += sub(SIMD16<Int8>(truncatingIfNeeded: q &>> 4), d2, mm2, xc + 32 + 16 * half)
                }
            }
        }
        return acc.sum()
    }

    static func q6_KDot(_ w: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ blocks: Int) -> Float {
        let three = SIMD16<UInt8>(repeating: 3), fifteen = SIMD16<UInt8>(repeating: 15)
        var acc = SIMD8<Float>(repeating: 0)
        for b in 0..<blocks {
            let p = w + 210 * b
            let d = loadHalf(p, 208)
            for h in 0..<2 {
                let ql = p + 64 * h, qh = p + 128 + 32 * h, sc = p + 192 + 8 * h
                let xh = x + 256 * b + 128 * h
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
                    acc += scale(s) * dot16(q1, xh + 16 * s)
                    acc += scale(s + 2) * dot16(q2, xh + 32 + 16 * s)
                    acc += scale(s + 4) * dot16(q3, xh + 64 + 16 * s)
                    acc += scale(s + 6) * dot16(q4, xh + 96 + 16 * s)
                }
            }
        }
        return acc.sum()
    }
}
