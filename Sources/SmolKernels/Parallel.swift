import Dispatch

// Dimension legend used in shape comments across SmolKernels:
//   T   = tokens (query rows)          S   = key/value positions (cache length)
//   D   = hidden size                  F   = feed-forward (intermediate) size
//   H   = query heads                  Hkv = key/value heads (GQA: H is a multiple of Hkv)
//   Dh  = head dimension               V   = vocabulary size
// All tensors are row-major Float32 arrays; a shape [T, D] means element (t, d) is at t*D + d.

/// Runs `body(i)` for `i in 0..<count`, spread over the cores when the work is worth it.
/// `grain` is the number of iterations one task takes at least, so tiny loops stay on one thread
/// (thread hand-off costs more than a short row). Used by the engine and the trainer too.
@inlinable
public func parallelFor(_ count: Int, grain: Int = 1, _ body: (Int) -> Void) {
    if count <= 0 { return }
    let chunk = max(1, grain)
    let tasks = (count + chunk - 1) / chunk
    if tasks <= 1 {
        for i in 0..<count { body(i) }
        return
    }
    // concurrentPerform wants a @Sendable closure; `body` writes disjoint rows through raw
    // pointers, which is data-race free by construction but not expressible to the checker.
    withoutActuallyEscaping(body) { escaping in
        nonisolated(unsafe) let work = escaping
        DispatchQueue.concurrentPerform(iterations: tasks) { task in
            let start = task * chunk
            let end = min(count, start + chunk)
            for i in start..<end { work(i) }
        }
    }
}

/// Dot product of `n` floats, 8 lanes wide with a scalar tail. Accumulates in Float (as BLAS and
/// PyTorch do); the reference kernels accumulate in Double.
@inlinable
func simdDot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc0 = SIMD8<Float>(repeating: 0)
    var acc1 = SIMD8<Float>(repeating: 0)
    var i = 0
    let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
    while i + 16 <= n {
        acc0 += ra.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            * rb.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
        acc1 += ra.loadUnaligned(fromByteOffset: (i + 8) * 4, as: SIMD8<Float>.self)
            * rb.loadUnaligned(fromByteOffset: (i + 8) * 4, as: SIMD8<Float>.self)
        i += 16
    }
    if i + 8 <= n {
        acc0 += ra.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            * rb.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
        i += 8
    }
    var s = (acc0 + acc1).sum()
    while i < n { s += a[i] * b[i]; i += 1 }
    return s
}

/// y[0..<n] += alpha * x[0..<n]
@inlinable
func simdAxpy(_ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    var i = 0
    let av = SIMD8<Float>(repeating: alpha)
    let rx = UnsafeRawPointer(x), ry = UnsafeMutableRawPointer(y)
    while i + 8 <= n {
        let v = ry.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            + av * rx.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
        ry.storeBytes(of: v, toByteOffset: i * 4, as: SIMD8<Float>.self)
        i += 8
    }
    while i < n { y[i] += alpha * x[i]; i += 1 }
}
