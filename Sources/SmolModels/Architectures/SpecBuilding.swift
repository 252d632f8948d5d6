import Foundation
import SmolKernels
import SmolTensor

extension DenseDecoderSpec {
    /// The Llama-shaped spec every architecture starts from, read from the typed configuration's
    /// per-layer facts: x·w norms, 1/√Dh attention scale, sliding window where the layer is
    /// sliding, RoPE where the layer uses it. Architectures then adjust what differs.
    static func base(_ c: ModelConfig, allowBiases: Bool = false) throws -> DenseDecoderSpec {
        guard let activation = Activation(hfName: c.hiddenActivation) else {
            throw SmolError(.unsupported, file: c.file, at: "key 'hidden_act'", "activation '\(c.hiddenActivation)'")
        }
        if (!allowBiases && (c.qkvBias || c.outputProjectionBias)) || c.mlpBias {
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
                qkNorm: c.qkNorm != .none))
            layers[i].qkNormAcrossHeads = c.qkNorm == .acrossHeads
            layers[i].qkvBias = c.qkvBias
            layers[i].outputBias = c.outputProjectionBias
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
        case "yarn":
            return try yarnSpec(p, headDim: headDim, file: file)
        default:
            throw SmolError(.unsupported, file: file, at: "key 'rope_parameters'", "rope_type '\(p.ropeType)'")
        }
    }

    /// Gemma's embedding multiplier: transformers' `torch.tensor(hidden_size ** 0.5)` in Float32.
    static func gemmaEmbedScale(_ c: ModelConfig) -> Float { Float(Double(c.hiddenSize).squareRoot()) }
}

extension DenseDecoderSpec {
    /// transformers' `_compute_yarn_parameters` (gpt_oss): per frequency pair, a blend of the
    /// original ("extrapolation") and factor-divided ("interpolation") inverse frequency, ramped
    /// linearly between the correction dims of beta_fast and beta_slow rotations over the original
    /// context; cos/sin are multiplied by the attention factor 0.1·ln(factor) + 1 unless given.
    /// Float32 tensor steps are rounded to Float32 where torch rounds them.
    static func yarnSpec(_ p: RoPEParameters, headDim: Int, file: String?) throws -> RopeSpec {
        let dim = Int(Double(headDim) * (p.partialRotaryFactor ?? 1))
        guard let factor = p.factor, let original = p.originalMaxPositionEmbeddings else {
            throw SmolError(.unsupported, file: file, at: "key 'rope_parameters'",
                            "yarn RoPE without factor and original_max_position_embeddings")
        }
        let attentionFactor = p.attentionFactor ?? (factor <= 1 ? 1 : 0.1 * Foundation.log(factor) + 1)
        let betaFast = p.betaFast ?? 32, betaSlow = p.betaSlow ?? 1
        func correctionDim(_ rotations: Double) -> Double {
            Double(dim) * Foundation.log(Double(original) / (rotations * 2 * Double.pi)) / (2 * Foundation.log(p.theta))
        }
        var low = correctionDim(betaFast), high = correctionDim(betaSlow)
        if p.truncate ?? true { low = low.rounded(.down); high = high.rounded(.up) }
        low = max(low, 0); high = min(high, Double(dim - 1))
        if low == high { high += 0.001 }   // transformers' guard against a zero-width ramp
        let half = dim / 2
        let inv: [Float] = (0..<half).map { i in
            let posFreq = Float(Foundation.pow(p.theta, Double(Float(2 * i) / Float(dim))))
            let extrapolation = 1 / posFreq
            let interpolation = 1 / (Float(factor) * posFreq)
            let ramp = min(max((Float(i) - Float(low)) / (Float(high) - Float(low)), 0), 1)
            let extrapolationFactor = 1 - ramp
            return interpolation * (1 - extrapolationFactor) + extrapolation * extrapolationFactor
        }
        return RopeSpec(rotaryDim: dim, invFreq: inv, attentionScaling: Float(attentionFactor))
    }
}
