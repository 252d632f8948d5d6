import Foundation
import SmolKernels
import SmolTensor

extension DenseDecoderSpec {
    /// The Llama-shaped spec every architecture starts from, read from the typed configuration's
    /// per-layer facts: x·w norms, 1/√Dh attention scale, sliding window where the layer is
    /// sliding, RoPE where the layer uses it. Architectures then adjust what differs.
    static func base(_ c: ModelConfig) throws -> DenseDecoderSpec {
        guard let activation = Activation(hfName: c.hiddenActivation) else {
            throw SmolError(.unsupported, file: c.file, at: "key 'hidden_act'", "activation '\(c.hiddenActivation)'")
        }
        if c.qkvBias || c.outputProjectionBias || c.mlpBias {
            throw SmolError(.unsupported, file: c.file, "linear biases are not supported by the dense engine yet")
        }
        var layers: [DecoderLayerSpec] = []
        for i in 0..<c.numHiddenLayers {
            let headDim = c.headDim(layer: i)
            layers.append(DecoderLayerSpec(
                heads: c.numAttentionHeads, kvHeads: c.numKeyValueHeads(layer: i), headDim: headDim,
                intermediateSize: c.intermediateSize(layer: i),
                attention: AttentionOptions(scale: Float(pow(Double(headDim), -0.5)), window: c.slidingWindow(layer: i)),
                rope: c.usesRoPE(i) ? try ropeSpec(c.rope(layer: i), headDim: headDim, file: c.file) : nil,
                qkNorm: c.qkNorm == .perHead))
        }
        if c.qkNorm == .acrossHeads {
            throw SmolError(.unsupported, file: c.file, "q/k norm across heads is not a dense architecture here")
        }
        return DenseDecoderSpec(
            modelType: c.modelType, vocabSize: c.vocabSize, hiddenSize: c.hiddenSize,
            normEps: Float(c.rmsNormEps), normWeighting: .multiply, activation: activation,
            embedScale: nil, finalLogitSoftcap: c.finalLogitSoftcapping.map { Float($0) },
            tiedEmbeddings: c.tieWordEmbeddings, perLayerInput: nil, layers: layers)
    }

    /// transformers' inverse-frequency tables for the RoPE types the dense engine supports.
    static func ropeSpec(_ p: RoPEParameters, headDim: Int, file: String?) throws -> RopeSpec {
        let partial = p.partialRotaryFactor ?? 1
        switch p.ropeType {
        case "default", "linear":
            let dim = Int(Double(headDim) * partial)
            var inv = RopeTables.defaultInvFreq(base: p.theta, dim: dim)
            if p.ropeType == "linear", let f = p.factor { inv = inv.map { $0 / Float(f) } }
            return RopeSpec(rotaryDim: dim, invFreq: inv)
        case "proportional":
            return RopeSpec(rotaryDim: headDim,
                            invFreq: RopeTables.proportionalInvFreq(base: p.theta, headDim: headDim,
                                                                    partialRotaryFactor: partial, factor: p.factor ?? 1))
        default:
            throw SmolError(.unsupported, file: file, at: "key 'rope_parameters'", "rope_type '\(p.ropeType)'")
        }
    }

    /// Gemma's embedding multiplier: transformers' `torch.tensor(hidden_size ** 0.5)` in Float32.
    static func gemmaEmbedScale(_ c: ModelConfig) -> Float { Float(Double(c.hiddenSize).squareRoot()) }
}
