import Foundation
import SmolKernels

/// AdamW with PyTorch's semantics (`torch.optim.AdamW`, non-amsgrad, non-maximize):
///   p ← p · (1 − lr · wd)                       (decoupled weight decay)
///   m ← β1 m + (1 − β1) g ;  v ← β2 v + (1 − β2) g²
///   p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + eps)
/// in Float32 like torch's single-tensor path (bias corrections computed in Double, as Python floats).
public struct AdamW: Sendable {
    public var beta1: Double
    public var beta2: Double
    public var eps: Double
    public var weightDecay: Double
    /// Steps taken (t of the bias corrections).
    public internal(set) var step: Int = 0
    /// First and second moments, shaped as the adapter.
    public var m: [LoRAKey: LoRAPair] = [:]
    public var v: [LoRAKey: LoRAPair] = [:]

    public init(beta1: Double = 0.9, beta2: Double = 0.999, eps: Double = 1e-8, weightDecay: Double = 0.01) {
        self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay
    }

    /// One update of every pair of `adapter` with `gradients` at learning rate `lr`.
    public mutating func update(_ adapter: inout LoRAAdapter, gradients: LoRAAdapter, lr: Double) {
        step += 1
        let bc1 = 1 - pow(beta1, Double(step))
        let bc2 = 1 - pow(beta2, Double(step))
        let stepSize = Float(lr / bc1)
        let bc2Sqrt = Float(bc2.squareRoot())
        let decay = Float(1 - lr * weightDecay)
        let b2 = Float(beta2), e = Float(eps)
        // torch passes 1 − β as Python floats (Double), rounded to Float32 once.
        let oneMinusB1 = Float(1 - beta1), oneMinusB2 = Float(1 - beta2)
        let wd = weightDecay != 0
        func apply(_ p: inout [Float], _ g: [Float], _ m: inout [Float], _ v: inout [Float]) {
            // Element-wise (no reduction), so spreading it over the cores and letting LLVM
            // vectorize the loop changes no result.
            p.withUnsafeMutableBufferPointer { pp in g.withUnsafeBufferPointer { gp in
                m.withUnsafeMutableBufferPointer { mp in v.withUnsafeMutableBufferPointer { vp in
                    let pb = pp.baseAddress!, gb = gp.baseAddress!, mb = mp.baseAddress!, vb = vp.baseAddress!
                    let n = pp.count, chunk = 1 << 15
                    parallelFor((n + chunk - 1) / chunk) { c in
                        for i in (c * chunk)..<min(n, (c + 1) * chunk) {
                            if wd { pb[i] *= decay }
                            // torch: exp_avg.lerp_(grad, 1 - beta1) = m + (1 - β1)(g - m)
                            let mi = mb[i] + oneMinusB1 * (gb[i] - mb[i])
                            let vi = vb[i] * b2 + oneMinusB2 * (gb[i] * gb[i])
                            mb[i] = mi; vb[i] = vi
                            let denom = vi.squareRoot() / bc2Sqrt + e
                            pb[i] -= stepSize * (mi / denom)
                        }
                    }
                } }
            } }
        }
        for key in adapter.keys {
            guard let g = gradients.pairs[key] else { continue }
            // Moved out of the dictionaries while updated, so the arrays change in place (a
            // copy-out/write-back copies each of them every step).
            var p = adapter.pairs.removeValue(forKey: key)!
            var mk = m.removeValue(forKey: key) ?? p.zeros(), vk = v.removeValue(forKey: key) ?? p.zeros()
            apply(&p.a, g.a, &mk.a, &vk.a)
            apply(&p.b, g.b, &mk.b, &vk.b)
            adapter.pairs[key] = p
            m[key] = mk; v[key] = vk
        }
    }
}

/// Global L2 norm of all gradients (as `torch.nn.utils.clip_grad_norm_` computes it, in Double here).
public func globalNorm(_ g: LoRAAdapter) -> Double {
    var s = 0.0
    for p in g.pairs.values {
        for x in p.a { s += Double(x) * Double(x) }
        for x in p.b { s += Double(x) * Double(x) }
    }
    return s.squareRoot()
}

/// Scales `g` so its global norm is at most `maxNorm` (torch's clip_grad_norm_: factor
/// maxNorm / (norm + 1e-6), applied only when below 1). Returns the norm before clipping.
@discardableResult
public func clipGradients(_ g: inout LoRAAdapter, maxNorm: Double) -> Double {
    let norm = globalNorm(g)
    let coef = maxNorm / (norm + 1e-6)
    if coef < 1 {
        let c = Float(coef)
        for key in g.pairs.keys {
            g.pairs[key]!.a = g.pairs[key]!.a.map { $0 * c }
            g.pairs[key]!.b = g.pairs[key]!.b.map { $0 * c }
        }
    }
    return norm
}

/// Learning-rate schedules with linear warm-up, as transformers' `get_*_schedule_with_warmup`.
public enum LRSchedule: String, Sendable, CaseIterable {
    case constant, linear, cosine

    /// The multiplier of the base learning rate at `step` (0-based: the rate of the step'th update).
    public func factor(step: Int, warmup: Int, total: Int) -> Double {
        if step < warmup { return Double(step) / Double(max(1, warmup)) }
        switch self {
        case .constant:
            return 1
        case .linear:
            return max(0, Double(total - step) / Double(max(1, total - warmup)))
        case .cosine:
            let progress = Double(step - warmup) / Double(max(1, total - warmup))
            return max(0, 0.5 * (1 + cos(Double.pi * 0.5 * 2 * progress)))
        }
    }
}
