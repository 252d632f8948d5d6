import Foundation
import SmolKernels
import SmolModels

/// Sees the input of every linear layer during `Engine.forward` (calibration statistics: importance
/// matrices, GPTQ Hessians, AWQ channel means). The engine calls it synchronously, once per
/// distinct input: q/k/v share one call, gate/up share one call; the output layer's input (the
/// final norm's output, all T rows) is reported last, named by lm_head or the tied embedding.
///
/// Names are the checkpoint tensor names in Hugging Face naming (`model.layers.0.self_attn.q_proj.weight`),
/// the names `DenseDecoderModel` loads by; a GGUF checkpoint's names map to them through SmolModels'
/// GGUF name tables.
public protocol ActivationObserver: AnyObject, Sendable {
    /// `input`: [rows, inDim] row-major, the activations that multiply every weight in `weights`
    /// (each [out, inDim]). `layer`: decoder layer index. `expert`: the MoE expert these token rows
    /// were routed to (nil for dense linears); for experts, `weights` names the stacked tensor.
    func observe(_ input: UnsafeBufferPointer<Float>, rows: Int, inDim: Int, weights: [String], layer: Int, expert: Int?)
}

/// The HF names of one layer's linear weights, as `DecoderWeightLoader` reads them.
struct LinearNames {
    let attention: [String]   // q, k, v (those the layer has)
    let output: [String]      // o
    let gateUp: [String]
    let down: [String]
    let perLayerGate: [String]
    let perLayerProjection: [String]

    init(_ spec: DenseDecoderSpec, layer i: Int) {
        let names = DenseArchitectures.table[spec.modelType]?.names ?? DecoderTensorNames()
        let l = spec.layers[i]
        let n = { (s: String) in names.layer(i, s) }
        var qkv = [n("self_attn.q_proj.weight")]
        if l.kvSharedFrom == nil {
            qkv.append(n("self_attn.k_proj.weight"))
            if !l.valueIsKey { qkv.append(n("self_attn.v_proj.weight")) }
        }
        attention = qkv
        output = [n("self_attn.o_proj.weight")]
        gateUp = [n("mlp.gate_proj.weight"), n("mlp.up_proj.weight")]
        down = [n("mlp.down_proj.weight")]
        perLayerGate = [n("per_layer_input_gate.weight")]
        perLayerProjection = [n("per_layer_projection.weight")]
    }
}

extension LinearNames {
    /// The output layer's weight: lm_head, or the embedding when tied (its layer index is L).
    static func outputHead(_ spec: DenseDecoderSpec) -> String {
        let names = DenseArchitectures.table[spec.modelType]?.names ?? DecoderTensorNames()
        return spec.tiedEmbeddings ? names.embed : names.lmHead
    }
}

extension ActivationObserver {
    func observe(_ x: [Float], rows: Int, inDim: Int, _ weights: [String], layer: Int) {
        x.withUnsafeBufferPointer { observe($0, rows: rows, inDim: inDim, weights: weights, layer: layer, expert: nil) }
    }
}

extension Engine {
    /// MoE calibration: for each expert with routed tokens, its gate/up input rows [n_e, D] and
    /// its down input rows act(x·gateᵀ)·(x·upᵀ) [n_e, I] (recomputed here, only when observed),
    /// named by the trainable layout's stacked tensors. Shared experts and routers are not reported.
    func observeExperts(_ observer: ActivationObserver, layer i: Int, _ spec: MoEBlockSpec, _ w: MoEBlockWeights,
                        input x: [Float], routing r: ExpertRouting) throws {
        let names = DenseArchitectures.table[model.spec.modelType]?.names ?? DecoderTensorNames()
        let guName = names.layer(i, spec.expertPrefix + "experts.gate_up_proj")
        let dnName = names.layer(i, spec.expertPrefix + "experts.down_proj")
        let store = w.experts
        let D = store.hiddenSize, I = store.intermediateSize, K = r.topK
        var rowsOf = [[Int]](repeating: [], count: store.numExperts)
        for t in 0..<r.tokens {
            // A token lists an expert at most once; the set guards against a router that repeats one.
            for e in Set(r.experts[(t * K)..<(t * K + K)]) { rowsOf[e].append(t) }
        }
        var scratch = [Float](repeating: 0, count: max(1, store.scratchCount))
        for (e, rows) in rowsOf.enumerated() where !rows.isEmpty {
            let n = rows.count
            var xe = [Float](repeating: 0, count: n * D)                                       // [n_e, D]
            for (j, t) in rows.enumerated() { for d in 0..<D { xe[j * D + d] = x[t * D + d] } }
            xe.withUnsafeBufferPointer { observer.observe($0, rows: n, inDim: D, weights: [guName], layer: i, expert: e) }
            let h: [Float] = try scratch.withUnsafeMutableBufferPointer { sp in
                try store.withExpert(e, scratch: sp.baseAddress!, reference: false) { m in
                    let gw = Array(UnsafeBufferPointer(start: m.gate, count: I * D))
                    let uw = Array(UnsafeBufferPointer(start: m.up, count: I * D))
                    var g = Kernels.matmul(xe, rows: n, inDim: D, weight: gw, outDim: I)          // [n_e, I]
                    var u = Kernels.matmul(xe, rows: n, inDim: D, weight: uw, outDim: I)
                    if let b = store.gateBias { for j in 0..<n { for k in 0..<I { g[j * I + k] += b[e * I + k] } } }
                    if let b = store.upBias { for j in 0..<n { for k in 0..<I { u[j * I + k] += b[e * I + k] } } }
                    switch spec.activation {
                    case .gated(let a):
                        Kernels.gatedActivation(gate: &g, up: u, a)
                    case .clampedSwiGLU(let alpha, let limit):
                        for k in g.indices {
                            let gc = min(g[k], limit), uc = max(min(u[k], limit), -limit)
                            g[k] = (uc + 1) * gc / (1 + Foundation.exp(-gc * alpha))
                        }
                    }
                    return g
                }
            }
            h.withUnsafeBufferPointer { observer.observe($0, rows: n, inDim: I, weights: [dnName], layer: i, expert: e) }
        }
    }
}
