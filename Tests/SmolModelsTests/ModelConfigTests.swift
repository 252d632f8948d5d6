import Foundation
import Testing
import SmolFormats
import SmolTensor
import SmolModels
import SmolTestSupport

/// The fixtures' config.json and meta.json read with Foundation's JSONSerialization: an
/// independent reader, so the typed values are checked against what transformers wrote, and the
/// per-layer facts against the tensor shapes transformers saved.
struct FixtureFacts {
    let config: [String: Any]
    /// name → shape, from meta.json `checkpoint_tensors` (written by transformers).
    let shapes: [String: [Int]]

    init(_ name: String) throws {
        let dir = Fixtures.hf(name)
        config = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("config.json"))) as! [String: Any]
        let meta = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("meta.json"))) as! [String: Any]
        var s: [String: [Int]] = [:]
        for (k, v) in meta["checkpoint_tensors"] as! [String: Any] {
            s[k] = ((v as! [Any])[2] as! [Any]).map { ($0 as! NSNumber).intValue }
        }
        shapes = s
    }

    func int(_ k: String) -> Int? { (config[k] as? NSNumber)?.intValue }
    func double(_ k: String) -> Double? { (config[k] as? NSNumber)?.doubleValue }
    func bool(_ k: String) -> Bool? { (config[k] as? NSNumber)?.boolValue }
    func layer(_ i: Int, _ suffix: String) -> [Int]? { shapes["model.layers.\(i).\(suffix)"] }
    func hasLayerTensor(_ i: Int, prefix: String) -> Bool { shapes.keys.contains { $0.hasPrefix("model.layers.\(i).\(prefix)") } }
}

@Suite struct ModelConfigTests {
    @Test(arguments: Fixtures.allHF)
    func commonFieldsMatchTheJSON(name: String) throws {
        let m = try ModelConfig.load(folder: Fixtures.hf(name))
        let f = try FixtureFacts(name)
        #expect(m.modelType == f.config["model_type"] as? String)
        #expect(m.vocabSize == f.int("vocab_size"))
        #expect(m.hiddenSize == f.int("hidden_size"))
        #expect(m.intermediateSize == f.int("intermediate_size"))
        #expect(m.numHiddenLayers == f.int("num_hidden_layers"))
        #expect(m.numAttentionHeads == f.int("num_attention_heads"))
        #expect(m.numKeyValueHeads == f.int("num_key_value_heads"))
        #expect(m.headDim == f.int("head_dim"))
        #expect(m.rmsNormEps == f.double("rms_norm_eps"))
        #expect(m.maxPositionEmbeddings == f.int("max_position_embeddings"))
        #expect(m.tieWordEmbeddings == f.bool("tie_word_embeddings"))
        #expect(m.bosTokenId == f.int("bos_token_id"))
        #expect(m.eosTokenIds == (f.int("eos_token_id").map { [$0] } ?? []))
        #expect(m.padTokenId == f.int("pad_token_id"))
        #expect(m.architectures == f.config["architectures"] as? [String])
        #expect(m.hiddenActivation == (f.config["hidden_act"] ?? f.config["hidden_activation"]) as? String)
        // Tied embeddings ⇔ transformers saved no lm_head.
        #expect(m.tieWordEmbeddings == (f.shapes["lm_head.weight"] == nil))
        #expect(f.shapes["model.embed_tokens.weight"] == [m.vocabSize, m.hiddenSize])

        // RoPE as written in rope_parameters (flat, or keyed by layer type).
        let rp = f.config["rope_parameters"] as! [String: Any]
        for kind in AttentionKind.allCases {
            let p = (rp[kind.rawValue] as? [String: Any]) ?? rp
            #expect(m.rope[kind]!.theta == (p["rope_theta"] as! NSNumber).doubleValue)
            #expect(m.rope[kind]!.ropeType == p["rope_type"] as? String)
            #expect(m.rope[kind]!.partialRotaryFactor == (p["partial_rotary_factor"] as? NSNumber)?.doubleValue)
            #expect(m.rope[kind]!.factor == (p["factor"] as? NSNumber)?.doubleValue)
        }
    }

    @Test(arguments: Fixtures.allHF)
    func perLayerFactsMatchTheSavedTensors(name: String) throws {
        let m = try ModelConfig.load(folder: Fixtures.hf(name))
        let f = try FixtureFacts(name)
        let types = f.config["layer_types"] as? [String]
        let window = f.int("sliding_window")
        for i in 0..<m.numHiddenLayers {
            // Layer types: as written; files without them are all full attention (llama, olmoe,
            // qwen3_moe, and mixtral with sliding_window null).
            #expect(m.attentionKind(i).rawValue == (types?[i] ?? "full_attention"), "\(name) layer \(i)")
            #expect(m.isSlidingLayer(i) == (m.attentionKind(i) == .sliding), "\(name) layer \(i)")
            if m.isSlidingLayer(i) { #expect(m.slidingWindow(layer: i) == window) }

            // Head geometry from q/k projections.
            let q = try #require(f.layer(i, "self_attn.q_proj.weight"))
            let k = try #require(f.layer(i, "self_attn.k_proj.weight"))
            #expect(q == [m.numAttentionHeads * m.headDim(layer: i), m.hiddenSize], "\(name) layer \(i)")
            #expect(k == [m.numKeyValueHeads(layer: i) * m.headDim(layer: i), m.hiddenSize], "\(name) layer \(i)")
            #expect(f.layer(i, "self_attn.o_proj.weight") == [m.hiddenSize, m.numAttentionHeads * m.headDim(layer: i)])
            #expect(m.qkvBias == (f.layer(i, "self_attn.q_proj.bias") != nil), "\(name)")
            #expect(m.outputProjectionBias == (f.layer(i, "self_attn.o_proj.bias") != nil), "\(name)")
            switch m.qkNorm {
            case .none: #expect(f.layer(i, "self_attn.q_norm.weight") == nil)
            case .perHead: #expect(f.layer(i, "self_attn.q_norm.weight") == [m.headDim(layer: i)])
            case .acrossHeads: #expect(f.layer(i, "self_attn.q_norm.weight") == [m.numAttentionHeads * m.headDim(layer: i)])
            }

            // FFN kind from what was saved.
            // (mixtral is saved in its original layout: block_sparse_moe.experts.N.w1/w2/w3.)
            let savedExperts = ["mlp.experts.", "experts.", "block_sparse_moe.experts."].contains { f.hasLayerTensor(i, prefix: $0) }
            #expect(m.isMoELayer(i) == savedExperts, "\(name) layer \(i)")
            #expect(m.hasDenseMLP(i) == (f.layer(i, "mlp.gate_proj.weight") != nil), "\(name) layer \(i)")
            if m.hasDenseMLP(i) {
                #expect(f.layer(i, "mlp.gate_proj.weight") == [m.intermediateSize(layer: i), m.hiddenSize])
            }
            if m.isMoELayer(i), let moe = m.moe {
                if let fused = f.layer(i, "mlp.experts.gate_up_proj") ?? f.layer(i, "experts.gate_up_proj") {
                    #expect(fused[0] == moe.numExperts)
                    // gpt_oss stores [E, hidden, 2*inter]; the others [E, 2*inter, hidden].
                    #expect(fused.contains(2 * moe.expertIntermediateSize))
                } else {
                    let (e, gate) = m.family == .mixtral ? ("block_sparse_moe.experts", "w1") : ("mlp.experts", "gate_proj")
                    #expect(f.layer(i, "\(e).\(moe.numExperts - 1).\(gate).weight") == [moe.expertIntermediateSize, m.hiddenSize])
                    #expect(f.layer(i, "\(e).\(moe.numExperts).\(gate).weight") == nil)
                }
                let router = f.layer(i, "mlp.gate.weight") ?? f.layer(i, "mlp.router.weight") ?? f.layer(i, "router.proj.weight")
                    ?? f.layer(i, "block_sparse_moe.gate.weight")
                #expect(router == [moe.numExperts, m.hiddenSize], "\(name) layer \(i)")
                #expect(f.layer(i, "mlp.shared_expert.gate_proj.weight") == moe.sharedExpertIntermediateSize.map { [$0, m.hiddenSize] })
            }
        }
    }

    @Test func moeFieldsMatchTheJSON() throws {
        for name in ["qwen3_moe", "qwen2_moe", "mixtral", "olmoe", "gpt_oss", "gemma4_moe", "qwen3_moe_bf16_sharded"] {
            let m = try ModelConfig.load(folder: Fixtures.hf(name))
            let f = try FixtureFacts(name)
            let moe = try #require(m.moe)
            #expect(moe.numExperts == (f.int("num_experts") ?? f.int("num_local_experts")))
            #expect(moe.numExpertsPerToken == (f.int("num_experts_per_tok") ?? f.int("top_k_experts")))
            #expect(moe.expertIntermediateSize == (f.int("moe_intermediate_size") ?? f.int("intermediate_size")))
            if let n = f.bool("norm_topk_prob") { #expect(moe.normTopKProb == n) }
            if let s = f.int("decoder_sparse_step") { #expect(moe.decoderSparseStep == s) }
            if let a = f.double("router_aux_loss_coef") { #expect(moe.routerAuxLossCoef == a) }
            #expect(moe.sharedExpertIntermediateSize == f.int("shared_expert_intermediate_size"))
        }
        for name in ["llama", "smollm3", "qwen3", "gemma2", "gemma3", "gemma4"] {
            #expect(try ModelConfig.load(folder: Fixtures.hf(name)).moe == nil)
        }
    }

    @Test func smollm3NoRoPELayers() throws {
        let m = try ModelConfig.load(folder: Fixtures.hf("smollm3"))
        let f = try FixtureFacts("smollm3")
        let flags = (f.config["no_rope_layers"] as! [NSNumber]).map { $0.intValue != 0 }
        #expect((0..<m.numHiddenLayers).map { m.usesRoPE($0) } == flags)
        #expect(flags.contains(false))
    }

    @Test func gemmaSoftcapsAndScalars() throws {
        for name in ["gemma2", "gemma3"] {
            let m = try ModelConfig.load(folder: Fixtures.hf(name))
            let f = try FixtureFacts(name)
            #expect(m.queryPreAttnScalar == f.double("query_pre_attn_scalar"))
            // null in the file means "no softcapping", not the class default.
            #expect(m.attnLogitSoftcapping == f.double("attn_logit_softcapping"))
            #expect(m.finalLogitSoftcapping == f.double("final_logit_softcapping"))
        }
        let g3 = try ModelConfig.load(folder: Fixtures.hf("gemma3"))
        let rp = try FixtureFacts("gemma3").config["rope_parameters"] as! [String: [String: Any]]
        for i in 0..<g3.numHiddenLayers {
            #expect(g3.ropeBase(i) == (rp[g3.attentionKind(i).rawValue]!["rope_theta"] as! NSNumber).doubleValue)
        }
        #expect(g3.ropeBase(0) != g3.ropeBase(5))
    }

    @Test func gemma4PerLayerInputsAndOptions() throws {
        for name in ["gemma4", "gemma4_moe"] {
            let m = try ModelConfig.load(folder: Fixtures.hf(name))
            let f = try FixtureFacts(name)
            let g = try #require(m.gemma4)
            #expect(g.hiddenSizePerLayerInput == f.int("hidden_size_per_layer_input"))
            #expect(g.vocabSizePerLayerInput == f.int("vocab_size_per_layer_input"))
            #expect(g.attentionKEqV == f.bool("attention_k_eq_v"))
            #expect(g.numKVSharedLayers == f.int("num_kv_shared_layers"))
            #expect(f.shapes["model.embed_tokens_per_layer.weight"] == [g.vocabSizePerLayerInput, m.numHiddenLayers * g.hiddenSizePerLayerInput])
            #expect(f.shapes["model.per_layer_model_projection.weight"] == [m.numHiddenLayers * g.hiddenSizePerLayerInput, m.hiddenSize])
            for i in 0..<m.numHiddenLayers {
                #expect(m.kvSourceLayer(i) == nil)  // num_kv_shared_layers = 0 in the fixtures
                #expect(f.layer(i, "self_attn.v_proj.weight") != nil)
                #expect(f.layer(i, "layer_scalar") == [1])
                // Partial rotary only on full layers, as rope_parameters says.
                let rp = (f.config["rope_parameters"] as! [String: [String: Any]])[m.attentionKind(i).rawValue]!
                #expect(m.rope(layer: i).partialRotaryFactor == (rp["partial_rotary_factor"] as? NSNumber)?.doubleValue)
            }
        }
    }

    @Test func gptOssOptions() throws {
        let m = try ModelConfig.load(folder: Fixtures.hf("gpt_oss"))
        let f = try FixtureFacts("gpt_oss")
        // The fixture omits swiglu_limit: GptOssConfig's default is 7.0.
        #expect(f.config["swiglu_limit"] == nil)
        #expect(m.gptOss?.swigluLimit == 7.0)
        #expect(f.layer(0, "self_attn.sinks") == [m.numAttentionHeads])
        let rp = f.config["rope_parameters"] as! [String: Any]
        let r = m.rope(layer: 0)
        #expect(r.ropeType == "yarn")
        #expect(r.betaFast == (rp["beta_fast"] as! NSNumber).doubleValue)
        #expect(r.betaSlow == (rp["beta_slow"] as! NSNumber).doubleValue)
        #expect(r.originalMaxPositionEmbeddings == (rp["original_max_position_embeddings"] as! NSNumber).intValue)
        #expect(r.truncate == (rp["truncate"] as! NSNumber).boolValue)
    }

    /// transformers writes config.json as `json.dumps(d, indent=2, sort_keys=True) + "\n"`: our
    /// JSON value must reproduce the file byte for byte (unknown keys, int/float spelling, order).
    @Test(arguments: Fixtures.allHF)
    func jsonRoundTripIsByteExact(name: String) throws {
        let url = Fixtures.hf(name).appendingPathComponent("config.json")
        let original = try String(contentsOf: url, encoding: .utf8)
        let m = try ModelConfig.load(folder: Fixtures.hf(name))
        #expect(JSONWriter.python(m.json, indent: 2, sortKeys: true) + "\n" == original)
        // (Compared as text: parsed members also carry their byte offsets.)
        let again = try ModelConfig(json: try JSONParser.parse(JSONWriter.compact(m.json)))
        #expect(JSONWriter.compact(again.json) == JSONWriter.compact(m.json))
    }

    @Test func unknownModelTypeNamesFileAndType() throws {
        do {
            _ = try ModelConfig(jsonText: #"{"model_type": "mamba9", "hidden_size": 4}"#, file: "/x/config.json")
            Issue.record("expected an error")
        } catch let e as SmolError {
            #expect(e.kind == .unsupported)
            #expect(e.description.contains("/x/config.json"))
            #expect(e.description.contains("mamba9"))
        }
    }

    @Test func badValuesNameTheKey() throws {
        let cases: [(String, String)] = [
            (#"{"model_type": "llama", "hidden_size": "big"}"#, "hidden_size"),
            (#"{"model_type": "llama", "num_hidden_layers": 0}"#, "num_hidden_layers"),
            (#"{"model_type": "llama", "num_attention_heads": 4, "num_key_value_heads": 3, "hidden_size": 64}"#, "num_key_value_heads"),
            (#"{"model_type": "qwen3", "num_hidden_layers": 2, "layer_types": ["full_attention"]}"#, "layer_types"),
            (#"{"model_type": "gemma2", "num_hidden_layers": 1, "layer_types": ["linear_attention"]}"#, "layer_types"),
            (#"{"hidden_size": 4}"#, "model_type"),
            (#"{"model_type": "llama", "rope_parameters": 3}"#, "rope_parameters"),
            (#"{"model_type": "gemma3", "text_config": {"hidden_size": true}}"#, "text_config.hidden_size"),
        ]
        for (text, key) in cases {
            do {
                _ = try ModelConfig(jsonText: text, file: "c.json")
                Issue.record("expected an error for \(text)")
            } catch let e as SmolError {
                #expect(e.description.contains("c.json"), "\(e)")
                #expect(e.description.contains(key), "\(e)")
            }
        }
    }

    @Test func malformedJSONNamesFileAndOffset() throws {
        do {
            _ = try ModelConfig(jsonText: #"{"model_type": "llama", "hidden_size": 64,}"#, file: "bad.json")
            Issue.record("expected an error")
        } catch let e as SmolError {
            #expect(e.kind == .malformed)
            #expect(e.description.contains("bad.json") && e.description.contains("offset"))
        }
        // Numbers keep their source text, so a file Python wrote is written back unchanged.
        let v = try JSONValue.parse(#"{"s": "a\u00e9\ud83d\ude00", "n": -1.5e-3, "i": 12, "b": [true, null]}"#)
        #expect(v["s"]?.stringValue == "aé😀")
        #expect(v["n"]?.doubleValue == -1.5e-3)
        #expect(v["i"] == .int(12))
        #expect(v.serialized(indent: nil) == #"{"s": "a\u00e9\ud83d\ude00", "n": -1.5e-3, "i": 12, "b": [true, null]}"#)
    }

    /// transformers 4 files (the Gemma 3 checkpoints on the Hub, written by transformers 4.5x) carry
    /// `rope_theta` + `rope_local_base_freq` and a nested `text_config` for the multimodal ones.
    @Test func legacyGemma3LayoutAndTextConfig() throws {
        let text = #"""
        {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
         "text_config": {"model_type": "gemma3_text", "hidden_size": 2560, "num_hidden_layers": 12,
           "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
           "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
           "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 1024},
         "tie_word_embeddings": true}
        """#
        let m = try ModelConfig(jsonText: text)
        #expect(m.modelType == "gemma3_text")
        #expect(m.text.objectValue?["hidden_size"]?.intValue == 2560)
        #expect(m.json.objectValue?["model_type"]?.stringValue == "gemma3")
        #expect((0..<12).map { m.attentionKind($0) == .full } == (0..<12).map { ($0 + 1) % 6 == 0 })
        #expect(m.rope(layer: 5).theta == 1_000_000 && m.rope(layer: 5).ropeType == "linear" && m.rope(layer: 5).factor == 8)
        #expect(m.rope(layer: 0).theta == 10_000 && m.rope(layer: 0).ropeType == "default" && m.rope(layer: 0).factor == nil)
        #expect(m.slidingWindow(layer: 0) == 1024)
        #expect(m.slidingWindow(layer: 5) == nil)
    }
}
