import Foundation
import SmolKernels
import SmolModels
import SmolTensor

/// Which expert kernel MoE layers run.
public enum ExpertKernel: String, Sendable, Equatable {
    /// `Kernels.moeExperts`: tokens grouped by expert, one matrix product per active expert.
    case grouped
    /// `ReferenceKernels.moeExperts`: per token, per chosen expert, plain loops.
    case reference
}

extension Engine {
    /// The feed-forward output of an MoE layer (before any `mlpOutNorm`), in transformers' order.
    /// residual: the stream after attention [T, D]; normed: its pre-MLP norm [T, D]; dense: the
    /// layer's dense MLP output [T, D] when it has one (gemma4).
    func moeBlock(_ spec: MoEBlockSpec, _ w: MoEBlockWeights, residual: [Float], normed x: [Float],
                  dense: [Float]?, tokens T: Int, observer: ActivationObserver? = nil, layer: Int = 0) throws -> [Float] {
        let D = model.spec.hiddenSize, E = spec.experts
        let eps = model.spec.normEps, weighting = model.spec.normWeighting

        let logits = model.routerLogits(spec, w, residual: residual, normed: x, tokens: T)   // [T, E]
        var routing = options.expertKernel == .grouped
            ? Kernels.route(logits: logits, tokens: T, experts: E, topK: spec.topK, scoring: spec.scoring)
            : ReferenceKernels.route(logits: logits, tokens: T, experts: E, topK: spec.topK, scoring: spec.scoring)
        if let pes = w.perExpertScale {
            for s in routing.weights.indices { routing.weights[s] *= pes[routing.experts[s]] }
        }

        var expertIn = x
        if spec.gemma4Style, let n = w.preNorm2 {
            expertIn = residual
            Kernels.rmsNorm(&expertIn, rows: T, dim: D, weight: n, eps: eps, weighting: weighting)
        }
        if let observer { try observeExperts(observer, layer: layer, spec, w, input: expertIn, routing: routing) }
        var y = options.expertKernel == .grouped
            ? try Kernels.moeExperts(expertIn, routing: routing, store: w.experts, activation: spec.activation)
            : try ReferenceKernels.moeExperts(expertIn, routing: routing, store: w.experts, activation: spec.activation)

        // qwen2_moe: + σ(x · shared_expert_gate) · shared_expert(x).
        if let S = spec.sharedExpertSize, let sg = w.sharedGate, let su = w.sharedUp, let sd = w.sharedDown,
           let gateW = w.sharedExpertGate {
            var g = Kernels.matmul(x, rows: T, inDim: D, weight: sg, outDim: S)
            let u = Kernels.matmul(x, rows: T, inDim: D, weight: su, outDim: S)
            Kernels.gatedActivation(gate: &g, up: u, model.spec.activation)
            let shared = Kernels.matmul(g, rows: T, inDim: S, weight: sd, outDim: D)            // [T, D]
            let gate = Kernels.matmul(x, rows: T, inDim: D, weight: gateW, outDim: 1)            // [T, 1]
            for t in 0..<T {
                let s = 1 / (1 + Foundation.exp(-gate[t]))
                for d in 0..<D { y[t * D + d] += s * shared[t * D + d] }
            }
        }

        // gemma4: post_feedforward_layernorm_1(dense) + post_feedforward_layernorm_2(experts).
        if spec.gemma4Style, let dense, let n1 = w.postNorm1, let n2 = w.postNorm2 {
            var m1 = dense
            Kernels.rmsNorm(&m1, rows: T, dim: D, weight: n1, eps: eps, weighting: weighting)
            Kernels.rmsNorm(&y, rows: T, dim: D, weight: n2, eps: eps, weighting: weighting)
            Kernels.add(&m1, y)
            return m1
        }
        return y
    }
}

/// rows of x [rows, bias.count] += bias
func addRowBias(_ x: inout [Float], _ bias: [Float]) {
    let n = bias.count
    precondition(n > 0 && x.count % n == 0, "bias shape mismatch")
    for r in 0..<(x.count / n) { for i in 0..<n { x[r * n + i] += bias[i] } }
}

/// YaRN: transformers multiplies cos and sin by the attention factor, which scales the rotated
/// dims of each head (x: [T, heads, Dh]) by it. Applied after the rotation (the product differs
/// from transformers' in the last bit at most).
func scaleRotated(_ x: inout [Float], heads: Int, headDim: Int, _ rope: RopeSpec) {
    guard rope.attentionScaling != 1 else { return }
    let s = rope.attentionScaling
    for row in 0..<(x.count / headDim) {
        for i in 0..<rope.rotaryDim { x[row * headDim + i] *= s }
    }
}

extension DenseDecoderModel {
    /// Router logits [T, E], bias added; shared by the engine and the trainer. Router input:
    /// gemma4 reads the residual stream, RMS-normalised without weight, times `router.scale` and
    /// D^-½; the others read the pre-MLP norm (`normed`).
    public func routerLogits(_ block: MoEBlockSpec, _ w: MoEBlockWeights, residual: [Float], normed x: [Float],
                             tokens T: Int) -> [Float] {
        let D = spec.hiddenSize
        var routerIn = x
        if block.gemma4Style, let scale = w.routerScale {
            routerIn = residual
            Kernels.rmsNorm(&routerIn, rows: T, dim: D, weight: nil, eps: spec.normEps)
            let rootSize = Float(pow(Double(D), -0.5))
            for t in 0..<T { for d in 0..<D { routerIn[t * D + d] = routerIn[t * D + d] * scale[d] * rootSize } }
        }
        var logits = Kernels.matmul(routerIn, rows: T, inDim: D, weight: w.router, outDim: block.experts)   // [T, E]
        if let b = w.routerBias { addRowBias(&logits, b) }
        return logits
    }
}
