import Foundation
import Testing
import SmolConvert
import SmolEngine
import SmolFormats
import SmolModels
import SmolQuant
import SmolTensor
import SmolTestSupport

let moeFixtures = ["qwen2_moe", "qwen3_moe", "mixtral", "olmoe", "gemma4_moe", "gpt_oss", "qwen3_moe_bf16_sharded"]

/// Logits of an F16 GGUF against the F32 transformers reference: the weights themselves are rounded
/// to F16 (2⁻¹¹ relative each), which moves these tiny random models' logits by up to 9e-4 of the
/// largest (measured: mixtral 9.0e-4); 2e-3 leaves room, and a layout error is O(1).
let moeF16LogitTolerance: Float = 2e-3

private func fnv1a64(_ b: TensorBytes) -> String {
    var h: UInt64 = 0xcbf29ce484222325
    b.withUnsafeBytes { raw in for x in raw { h ^= UInt64(x); h = h &* 0x100000001b3 } }
    let s = String(h, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
}

private func json(_ path: String) throws -> [String: Any] {
    try JSONSerialization.jsonObject(with: Data(contentsOf: Fixtures.root.appendingPathComponent(path))) as! [String: Any]
}

/// A GGUF metadata value as tools/golden_moe_convert.py records gguf-py's: [type, value], arrays as
/// [element type, values]; float32 compared as float32.
private func matches(_ v: GGUFValue, type: String, value: Any) -> Bool {
    guard v.type.name == type else { return false }
    switch v {
    case .uint32(let x): return (value as? NSNumber)?.intValue == Int(x)
    case .float32(let x): return (value as? NSNumber).map { Float($0.doubleValue) == x } ?? false
    case .string(let s): return value as? String == s
    case .array(.bool(let b)):
        guard let a = value as? [Any], a.count == 2, a[0] as? String == "BOOL", let vs = a[1] as? [Bool] else { return false }
        return vs == b
    case .array(.uint32(let u)):
        guard let a = value as? [Any], a.count == 2, a[0] as? String == "UINT32", let vs = a[1] as? [Int] else { return false }
        return vs == u.map(Int.init)
    default: return false
    }
}

@Suite struct MoEConvertTests {
    /// HF MoE fixture → GGUF: the metadata keys, value types, values and order that
    /// convert_hf_to_gguf.py writes (tools/golden_moe_convert.py replays its set_gguf_parameters on
    /// gguf-py's writer), tensor names/shapes/types as its prepare_tensors stores them for
    /// --outtype f16, the bytes of numpy's re-implementation of its expert stacking for --outtype
    /// f32 (tools/golden_moe_gguf.py), and gemma4's generated rope_freqs.
    @Test(arguments: moeFixtures)
    func convertWritesWhatLlamaCppWrites(fixture: String) throws {
        let dir = Fixtures.temporaryDirectory("moe-convert")
        defer { try? FileManager.default.removeItem(at: dir) }
        let golden = try json("gguf-convert/moe-\(fixture).json")
        let layout = try json("gguf-names/moe-\(fixture).json")["tensors"] as! [String: [String: Any]]
        let tensors = golden["tensors"] as! [String: [String: Any]]
        let generated = golden["generated"] as! [String: [String: Any]]
        let fileTypes = golden["file_type"] as! [String: Int]
        for outType in [ConvertOptions.OutType.f32, .f16] {
            var options = ConvertOptions()
            options.outType = outType
            let out = dir.appendingPathComponent("\(outType.rawValue).gguf").path
            _ = try Converter.convert(input: Fixtures.hf(fixture).path, output: out, options: options)
            let g = try GGUFFile(path: out)

            let want = golden["metadata"] as! [[Any]]
            let got = Array(g.metadata)
            #expect(got.map(\.key) == want.map { $0[0] as! String }, "\(fixture) \(outType): metadata keys or order differ")
            for entry in want {
                let key = entry[0] as! String
                guard let v = g.metadata[key] else { continue }
                let value: Any = key == "general.file_type" ? fileTypes[outType.rawValue]! : entry[2]
                #expect(matches(v, type: entry[1] as! String, value: value), "\(fixture) \(outType): \(key) = \(v), llama.cpp writes \(entry[1]) \(value)")
            }

            #expect(Set(g.tensorInfos.map(\.name)) == Set(tensors.keys).union(generated.keys))
            for t in g.tensorInfos {
                if let e = generated[t.name] {
                    #expect(t.shape == e["shape"] as! [Int] && t.type.name == e["type"] as! String)
                    let values = (e["values"] as! [NSNumber]).map { Float($0.doubleValue) }
                    #expect(try loadFloat(g, t.name) == values, "\(fixture): \(t.name) values")
                    continue
                }
                guard let e = tensors[t.name], let l = layout[t.name] else { continue }
                #expect(t.shape == e["shape"] as! [Int], "\(fixture): \(t.name) shape \(t.shape)")
                if outType == .f16 {
                    #expect(t.type.name == e["f16"] as! String, "\(fixture): \(t.name) is \(t.type.name) with --outtype f16")
                } else {
                    // F32 throughout; a BF16 checkpoint's values widened exactly.
                    #expect(t.type == .dense(.f32), "\(fixture): \(t.name) is \(t.type.name) with --outtype f32")
                    if l["dtype"] as! String == "F32" {
                        #expect(fnv1a64(try g.tensorBytes(t.name)) == l["fnv1a64"] as! String, "\(fixture): \(t.name) bytes differ from the converter's")
                    }
                }
            }
        }
    }

    /// `--outtype auto` keeps the checkpoint's dtype, so a BF16 checkpoint's matrices are the
    /// converter's bytes (tools/golden_moe_gguf.py records them BF16).
    @Test func autoKeepsBF16Bytes() throws {
        let dir = Fixtures.temporaryDirectory("moe-convert")
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("m.gguf").path
        _ = try Converter.convert(input: Fixtures.hf("qwen3_moe_bf16_sharded").path, output: out)
        let g = try GGUFFile(path: out)
        let layout = try json("gguf-names/moe-qwen3_moe_bf16_sharded.json")["tensors"] as! [String: [String: Any]]
        var checked = 0
        for t in g.tensorInfos where t.type == .dense(.bf16) {
            #expect(fnv1a64(try g.tensorBytes(t.name)) == layout[t.name]?["fnv1a64"] as? String, "\(t.name)")
            checked += 1
        }
        #expect(checked == 16)  // 2 layers × (q, k, v, o, gate/up/down stacks) + embeddings + head; routers stay F32
        #expect(g.metadata.int("general.file_type") == 32)
    }

    /// The engine runs the converted GGUF (config.json beside it): F32 within the engine's 1e-4 of
    /// transformers' logits; F16 within the rounding of its weights, and exactly as the same values
    /// widened back to F32 (GGUF → GGUF --outtype f32), so the F16 file is read exactly.
    @Test(arguments: ["qwen2_moe", "qwen3_moe", "mixtral", "olmoe", "gemma4_moe", "gpt_oss"])
    func engineRunsConvertedGGUF(fixture: String) throws {
        let dir = Fixtures.temporaryDirectory("moe-convert")
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.copyItem(at: Fixtures.hf(fixture).appendingPathComponent("config.json"),
                                         to: dir.appendingPathComponent("config.json"))
        let ref = try FixtureReference(fixture)
        let ids = try ref.ints("input_ids")
        let want = try ref.floats("logits")
        var f32 = ConvertOptions(), f16 = ConvertOptions()
        f32.outType = .f32
        f16.outType = .f16
        let a = dir.appendingPathComponent("f32.gguf").path, b = dir.appendingPathComponent("f16.gguf").path
        let c = dir.appendingPathComponent("f16-widened.gguf").path
        _ = try Converter.convert(input: Fixtures.hf(fixture).path, output: a, options: f32)
        _ = try Converter.convert(input: Fixtures.hf(fixture).path, output: b, options: f16)
        _ = try Converter.convert(input: b, output: c, options: f32)
        let la = try Engine.load(a, options: fixtureOptions).forward(ids).logits
        let lb = try Engine.load(b, options: fixtureOptions).forward(ids).logits
        let lc = try Engine.load(c, options: fixtureOptions).forward(ids).logits
        #expect(relativeError(la, want) < logitTolerance, "\(fixture) F32: \(relativeError(la, want))")
        #expect(relativeError(lb, want) < moeF16LogitTolerance, "\(fixture) F16: \(relativeError(lb, want))")
        #expect(relativeError(lb, lc) < logitTolerance, "\(fixture) F16 vs its exact F32 widening: \(relativeError(lb, lc))")
    }

    /// GGUF → HF goes back through the same rewrite (config.json beside the GGUF): the F32 GGUF of
    /// an F32 checkpoint gives back the checkpoint's tensors bit for bit, in the layout it ships in.
    @Test(arguments: ["qwen2_moe", "mixtral", "gemma4_moe", "gpt_oss"])
    func ggufBackToHFGivesTheCheckpoint(fixture: String) throws {
        let dir = Fixtures.temporaryDirectory("moe-convert")
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.copyItem(at: Fixtures.hf(fixture).appendingPathComponent("config.json"),
                                         to: dir.appendingPathComponent("config.json"))
        let g = dir.appendingPathComponent("m.gguf").path, back = dir.appendingPathComponent("back").path
        _ = try Converter.convert(input: Fixtures.hf(fixture).path, output: g)
        let s = try Converter.convert(input: g, output: back)
        if fixture == "gemma4_moe" { #expect(s.notes.contains { $0.contains("skipped rope_freqs.weight") }) }
        let orig = try SafetensorsFile(path: Fixtures.hf(fixture).appendingPathComponent("model.safetensors").path)
        let got = try SafetensorsFile(path: URL(fileURLWithPath: back).appendingPathComponent("model.safetensors").path)
        #expect(Set(orig.tensorInfos.map(\.name)) == Set(got.tensorInfos.map(\.name)))
        for t in orig.tensorInfos {
            #expect(got.info(t.name) == t, "\(fixture): \(t.name)")
            #expect(fnv1a64(try got.tensorBytes(t.name)) == fnv1a64(try orig.tensorBytes(t.name)), "\(fixture): \(t.name) bytes")
        }
    }

    /// Without config.json beside it, a GGUF with expert stacks is refused, naming what is missing.
    @Test func moeGGUFToHFNeedsConfig() throws {
        let dir = Fixtures.temporaryDirectory("moe-convert")
        defer { try? FileManager.default.removeItem(at: dir) }
        let g = dir.appendingPathComponent("m.gguf").path
        _ = try Converter.convert(input: Fixtures.hf("olmoe").path, output: g)
        #expect { try Converter.convert(input: g, output: dir.appendingPathComponent("back").path) } throws: { e in
            (e as? SmolError)?.message.contains("config.json beside it") == true
        }
    }
}

@Suite struct MoEQuantizeTests {
    func typesOf(_ fixture: String, _ mix: QuantMix) throws -> ([String: String], [String: String], String) {
        let dir = Fixtures.temporaryDirectory("moe-quant")
        defer { try? FileManager.default.removeItem(at: dir) }
        var options = QuantizeOptions()
        options.mix = mix
        let out = dir.appendingPathComponent("q.gguf").path
        let s = try Quantizer.quantize(input: Fixtures.hf(fixture).path, output: out, options: options)
        let types = Dictionary(uniqueKeysWithValues: s.rows.map { ($0.name, $0.to) })
        let asked = Dictionary(uniqueKeysWithValues: s.rows.compactMap { r in r.fallbackFrom.map { (r.name, $0) } })
        let g = try GGUFFile(path: out)
        for t in g.tensorInfos { #expect(types[t.name] == t.type.name, "\(t.name): the file says \(t.type.name)") }
        return (types, asked, g.metadata.string("general.architecture") ?? "")
    }

    /// qwen2moe Q4_K_M, each type derived by hand from llama.cpp's src/llama-quant.cpp
    /// (`tensor_allows_quantization`, `llama_tensor_get_type_impl`, `tensor_type_fallback`) for this
    /// model: 2 layers, n_expert = 8, n_gqa = 2, every row 64 or 32 wide.
    @Test func qwen2MoeQ4KMFollowsLlamaQuant() throws {
        let (t, asked, _) = try typesOf("qwen2_moe", .q4_K_M)
        // OUTPUT: ne[0] = 64 is not a multiple of Q4_K's 256 → Q8_0.
        #expect(t["output.weight"] == "Q8_0")
        // TOKEN_EMBD with an output.weight: the default Q4_K, then the fallback (64 % 256) → Q5_0.
        #expect(t["token_embd.weight"] == "Q5_0" && asked["token_embd.weight"] == "Q4_K")
        for b in 0..<2 {
            // ATTENTION_V and ATTENTION_K: `n_expert == 8` → Q8_0 (the Mixtral-8x rule).
            #expect(t["blk.\(b).attn_v.weight"] == "Q8_0" && t["blk.\(b).attn_k.weight"] == "Q8_0")
            // ATTENTION_OUTPUT: n_expert == 8 and Q4_K_M → Q5_K, fallback → Q5_1.
            #expect(t["blk.\(b).attn_output.weight"] == "Q5_1" && asked["blk.\(b).attn_output.weight"] == "Q5_K")
            // Routers: "ffn_gate_inp.weight" is never quantized; ffn_gate_inp_shexp [1, 64] has
            // ne = {64, 1}: ggml_n_dims 1, so it is not quantized either. Norms, biases: F32.
            #expect(t["blk.\(b).ffn_gate_inp.weight"] == "F32" && t["blk.\(b).ffn_gate_inp_shexp.weight"] == "F32")
            #expect(t["blk.\(b).attn_q.bias"] == "F32" && t["blk.\(b).ffn_norm.weight"] == "F32")
            // FFN_GATE / FFN_UP (expert stacks [8, 32, 64] and the shared expert): default Q4_K → Q5_0.
            for n in ["ffn_gate_exps", "ffn_up_exps", "ffn_gate_shexp", "ffn_up_shexp", "attn_q"] {
                #expect(t["blk.\(b).\(n).weight"] == "Q5_0", "\(n)")
            }
        }
        // FFN_DOWN (exps and shexp): with n_expert > 1 the layer comes from the name; Q4_K_M bumps to
        // Q6_K where use_more_bits(i, 2): i = 1 (i ≥ 7·2/8) → Q6_K → fallback (32/64-wide rows) Q8_0;
        // i = 0 keeps Q4_K → Q5_0.
        #expect(t["blk.0.ffn_down_exps.weight"] == "Q5_0" && t["blk.0.ffn_down_shexp.weight"] == "Q5_0")
        #expect(t["blk.1.ffn_down_exps.weight"] == "Q8_0" && asked["blk.1.ffn_down_exps.weight"] == "Q6_K")
        #expect(t["blk.1.ffn_down_shexp.weight"] == "Q8_0")
    }

    /// mixtral (n_expert = 4: none of the 8-expert rules) and gemma4 (tied embeddings).
    @Test func mixtralAndGemma4Q4KMFollowLlamaQuant() throws {
        let (m, masked, arch) = try typesOf("mixtral", .q4_K_M)
        #expect(arch == "llama")
        // ATTENTION_V: use_more_bits(i_attention_wv, 2): layer 1 → Q6_K → Q8_0; layer 0 Q4_K → Q5_0.
        #expect(m["blk.0.attn_v.weight"] == "Q5_0" && m["blk.1.attn_v.weight"] == "Q8_0")
        // n_expert 4: attn_k / attn_output keep Q4_K → Q5_0.
        #expect(m["blk.0.attn_k.weight"] == "Q5_0" && m["blk.0.attn_output.weight"] == "Q5_0")
        // ffn_down_exps rows are 48 wide: Q4_K (layer 0) → Q5_0 and Q6_K (layer 1) → Q8_0 do not
        // fit 32-blocks either → F16 (tensor_type_fallback's "unusual shape").
        #expect(m["blk.0.ffn_down_exps.weight"] == "F16" && masked["blk.0.ffn_down_exps.weight"] == "Q4_K")
        #expect(m["blk.1.ffn_down_exps.weight"] == "F16" && masked["blk.1.ffn_down_exps.weight"] == "Q6_K")

        let (g, _, _) = try typesOf("gemma4_moe", .q4_K_M)
        // Tied embeddings: `has_tied_embeddings && category == TOKEN_EMBD` takes the output rule for
        // both tables (rows 64 and 96 → Q8_0).
        #expect(g["token_embd.weight"] == "Q8_0" && g["per_layer_token_embd.weight"] == "Q8_0")
        // FFN_DOWN over 6 layers (dense ffn_down and ffn_down_exps alike): use_more_bits for i = 2, 5.
        for i in 0..<6 {
            let want = [2, 5].contains(i) ? "Q8_0" : "Q5_0"
            #expect(g["blk.\(i).ffn_down_exps.weight"] == want && g["blk.\(i).ffn_down.weight"] == want, "layer \(i)")
            // ffn_gate_up_exps has no "ffn_up" substring: FFN_GATE, Q4_K → Q5_0.
            #expect(g["blk.\(i).ffn_gate_up_exps.weight"] == "Q5_0")
            // per_layer_model_proj is never quantized; proj [64, 16]: 16-wide rows → F16.
            #expect(g["blk.\(i).proj.weight"] == "F16")
        }
        #expect(g["per_layer_model_proj.weight"] == "F32" && g["rope_freqs.weight"] == "F32")
    }

    /// The engine runs quantized MoE GGUFs (HF and GGUF input; mixed expert types; gpt_oss's
    /// interleave) exactly as their values say: the same logits as the file dequantized to F32
    /// (GGUF → GGUF --outtype f32, exact), and within a loose bound of transformers' logits.
    @Test(arguments: ["qwen2_moe", "mixtral", "gemma4_moe", "gpt_oss"])
    func engineRunsQuantizedMoE(fixture: String) throws {
        let dir = Fixtures.temporaryDirectory("moe-quant")
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.copyItem(at: Fixtures.hf(fixture).appendingPathComponent("config.json"),
                                         to: dir.appendingPathComponent("config.json"))
        let f32 = dir.appendingPathComponent("f32.gguf").path, q = dir.appendingPathComponent("q.gguf").path
        let back = dir.appendingPathComponent("back.gguf").path
        var c = ConvertOptions()
        c.outType = .f32
        _ = try Converter.convert(input: Fixtures.hf(fixture).path, output: f32, options: c)
        var options = QuantizeOptions()
        options.mix = .q4_K_M
        _ = try Quantizer.quantize(input: f32, output: q, options: options)  // GGUF input
        _ = try Converter.convert(input: q, output: back, options: c)
        let ref = try FixtureReference(fixture)
        let ids = try ref.ints("input_ids")
        let lq = try Engine.load(q, options: fixtureOptions).forward(ids).logits
        let lb = try Engine.load(back, options: fixtureOptions).forward(ids).logits
        #expect(relativeError(lq, lb) < logitTolerance, "\(fixture): quantized vs its dequantization \(relativeError(lq, lb))")
        // Q4_K_M on random tiny models whose routing flips: measured worst 0.54 (qwen3_moe); a
        // layout error gives unrelated logits (≳ 1).
        let err = relativeError(lq, try ref.floats("logits"))
        #expect(err > 0 && err < 0.6, "\(fixture): \(err)")
    }
}
