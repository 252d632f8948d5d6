import SmolFormats
import SmolTensor

// llama and smollm3 (transformers 5 `LlamaConfig`, `SmolLM3Config`).
//
// llama: every layer full attention with RoPE; no sliding window even if the file has one.
// smollm3: llama with NoPE layers. `no_rope_layers[i]` is 1 when layer i uses RoPE, 0 when not;
// default `int((i + 1) % no_rope_layer_interval != 0)` (every 4th layer NoPE). `layer_types`
// default: sliding for a NoPE layer when `use_sliding_window` and `sliding_window` are set.
extension ModelConfig {
    static let llamaFamilyEntries: [ArchitectureEntry] = [
        ArchitectureEntry(modelType: "llama", family: .llama) { c in
            try ModelConfig(common: c, family: .llama, defaults: CommonDefaults(
                vocabSize: 32000, hiddenSize: 4096, intermediateSize: 11008, numHiddenLayers: 32,
                numAttentionHeads: 32, numKeyValueHeads: nil, headDim: nil, rmsNormEps: 1e-6,
                maxPositionEmbeddings: 2048, tieWordEmbeddings: false, bos: 1, eos: 2, pad: nil, ropeTheta: 10000))
        },
        ArchitectureEntry(modelType: "smollm3", family: .smollm3) { c in
            var m = try ModelConfig(common: c, family: .smollm3, defaults: CommonDefaults(
                vocabSize: 128256, hiddenSize: 2048, intermediateSize: 11008, numHiddenLayers: 36,
                numAttentionHeads: 16, numKeyValueHeads: 4, headDim: nil, rmsNormEps: 1e-6,
                maxPositionEmbeddings: 32768, tieWordEmbeddings: true, bos: 128000, eos: 128001, pad: 128004,
                ropeTheta: 2_000_000))
            let r = c.reader
            let interval = try r.positiveInt("no_rope_layer_interval", default: 4)
            let n = m.numHiddenLayers
            if let flags = try r.intArray("no_rope_layers") {
                // transformers indexes it per layer: it must cover every layer.
                guard flags.count >= n else { throw r.error("no_rope_layers", "has \(flags.count) entries for \(n) layers") }
                m.ropeLayers = flags.prefix(n).map { $0 != 0 }
            } else {
                m.ropeLayers = (0..<n).map { ($0 + 1) % interval != 0 }
            }
            let useSliding = try r.bool("use_sliding_window", default: false)
            let window = try ModelConfig.readWindow(r, default: nil)
            let rope = m.ropeLayers
            try m.setLayerTypes(r) { i in useSliding && window != nil && !rope[i] ? .sliding : .full }
            m.slidingWindow = m.layerTypes.contains(.sliding) ? window : nil
            return m
        },
    ]
}
