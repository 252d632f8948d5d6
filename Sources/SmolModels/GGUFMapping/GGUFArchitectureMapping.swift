import SmolTensor

/// How a tensor's values change between the Hugging Face checkpoint and the GGUF file, as llama.cpp's
/// `convert_hf_to_gguf.py` changes them.
public enum GGUFTensorTransform: Sendable, Equatable {
    case none
    /// llama/smollm3 `LlamaModel.permute`: within each of `heads` row groups (one per head), the
    /// rows of the two RoPE halves are interleaved, turning HF's "rotate half" layout into the
    /// GGML/Meta "adjacent pairs" layout. q uses the attention heads, k the key/value heads.
    case ropePermute(heads: Int)
    /// gemma2/3: RMSNorm weights are stored as `1 + w` (transformers computes `x * (1 + w)`).
    case addOne
}

/// One architecture's HF ↔ GGUF conventions for `smolconv convert`: tensor names, value transforms,
/// the `general.architecture` name and which tensors stay F32. Pure functions: the streaming
/// pipeline that reads and writes bytes lives in SmolConvert.
///
/// Every table is llama.cpp's: gguf-py's `TensorNameMap` (`gguf/tensor_mapping.py`) for names,
/// `convert_hf_to_gguf.py` (`LlamaModel`, `SmolLM3Model`, `Qwen3Model`, `Gemma2Model`,
/// `Gemma3Model`, `TextModel.prepare_tensors`) for transforms and storage types.
/// formats/architectures.md describes them.
public struct GGUFArchitectureMapping: Sendable {
    /// The HF `model_type` this mapping converts.
    public let modelType: String
    /// `general.architecture` (gguf-py `MODEL_ARCH_NAMES`).
    public let ggufArchitecture: String
    /// Per-block name pairs without the ".weight"/".bias" suffix: HF after "model.layers.N.",
    /// GGUF after "blk.N.".
    let blockNames: [(hf: String, gguf: String)]
    /// Whole-model name pairs without suffix.
    let globalNames: [(hf: String, gguf: String)]
    /// HF tensors the converter drops (gemma2: `lm_head.weight`, which llama.cpp never reads).
    let dropped: Set<String>
    /// Q/K permutation for llama-style RoPE.
    let permutesQK: Bool
    /// Norm weights stored as 1 + w.
    let normPlusOne: Bool
    /// Per-block names matched whole (suffix included), for tensors whose HF name has no
    /// ".weight"/".bias" suffix (gemma4 `router.scale` → `ffn_gate_inp.scale`, gpt_oss
    /// `self_attn.sinks` → `attn_sinks.weight`). Checked before `blockNames`.
    var exactBlockNames: [(hf: String, gguf: String)] = []

    /// Whether the file stores every RMSNorm weight as `1 + w` (gemma2/3).
    public var storesNormsPlusOne: Bool { normPlusOne }

    // MARK: Names

    /// The GGUF name of an HF tensor; nil when the converter does not write it (dropped, or not
    /// part of this architecture).
    public func ggufName(hf name: String) -> String? {
        if dropped.contains(name) { return nil }
        if !exactBlockNames.isEmpty, let (block, rest) = GGUFArchitectureMapping.splitBlock(name, prefix: "model.layers."),
           let e = exactBlockNames.first(where: { $0.hf == rest }) {
            return "blk.\(block).\(e.gguf)"
        }
        guard let (base, suffix) = GGUFArchitectureMapping.splitSuffix(name) else { return nil }
        if let g = globalNames.first(where: { $0.hf == base }) { return g.gguf + suffix }
        guard let (block, rest) = GGUFArchitectureMapping.splitBlock(base, prefix: "model.layers.") else { return nil }
        guard let b = blockNames.first(where: { $0.hf == rest }) else { return nil }
        return "blk.\(block).\(b.gguf)\(suffix)"
    }

    /// True for HF tensors llama.cpp's converter deliberately leaves out (gemma2's `lm_head.weight`).
    public func isDropped(hf name: String) -> Bool { dropped.contains(name) }

    /// The HF name of a GGUF tensor; nil for names that do not come from an HF tensor here
    /// (e.g. `rope_freqs.weight`, which the converter generates for llama3-type RoPE).
    public func hfName(gguf name: String) -> String? {
        if !exactBlockNames.isEmpty, let (block, rest) = GGUFArchitectureMapping.splitBlock(name, prefix: "blk."),
           let e = exactBlockNames.first(where: { $0.gguf == rest }) {
            return "model.layers.\(block).\(e.hf)"
        }
        guard let (base, suffix) = GGUFArchitectureMapping.splitSuffix(name) else { return nil }
        if let g = globalNames.first(where: { $0.gguf == base }) {
            let hf = g.hf + suffix
            return dropped.contains(hf) ? nil : hf
        }
        guard let (block, rest) = GGUFArchitectureMapping.splitBlock(base, prefix: "blk.") else { return nil }
        guard let b = blockNames.first(where: { $0.gguf == rest }) else { return nil }
        return "model.layers.\(block).\(b.hf)\(suffix)"
    }

    /// "a.b.weight" → ("a.b", ".weight"); only `.weight` and `.bias` (gguf-py's `try_suffixes`).
    static func splitSuffix(_ name: String) -> (String, String)? {
        for s in [".weight", ".bias"] where name.hasSuffix(s) {
            return (String(name.dropLast(s.count)), s)
        }
        return nil
    }

    /// "model.layers.12.mlp.up_proj" → (12, "mlp.up_proj"); the index must be canonical decimal.
    static func splitBlock(_ base: String, prefix: String) -> (Int, String)? {
        guard base.hasPrefix(prefix) else { return nil }
        let rest = base.dropFirst(prefix.count)
        guard let dot = rest.firstIndex(of: ".") else { return nil }
        let digits = rest[..<dot]
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
              digits == "0" || digits.first != "0", let n = Int(digits) else { return nil }
        return (n, String(rest[rest.index(after: dot)...]))
    }

    // MARK: Values

    /// The transform applied to an HF tensor on its way into GGUF.
    public func transform(hf name: String, config: ModelConfig) -> GGUFTensorTransform {
        if permutesQK {
            if name.hasSuffix("self_attn.q_proj.weight") || name.hasSuffix("self_attn.q_proj.bias") {
                return .ropePermute(heads: config.numAttentionHeads)
            }
            if name.hasSuffix("self_attn.k_proj.weight") || name.hasSuffix("self_attn.k_proj.bias") {
                return .ropePermute(heads: config.numKeyValueHeads)
            }
        }
        // Gemma{2,3}Model: `if name.endswith("norm.weight"): data_torch = data_torch + 1`.
        if normPlusOne, name.hasSuffix("norm.weight") { return .addOne }
        return .none
    }

    /// HF → GGUF values, in place. `values` is row-major with `shape` (unchanged by every
    /// transform). `sourceDType` is the checkpoint's dtype: the converter adds 1 to F16 norms in
    /// F16 (torch keeps F16 and F32 tensors as they are, turns everything else into F32 first), so
    /// the sum is rounded to F16 before the F32 store, as there.
    public func toGGUF(hf name: String, values: inout [Float], shape: [Int], config: ModelConfig,
                       sourceDType: DType = .f32) throws {
        switch transform(hf: name, config: config) {
        case .none: break
        case .ropePermute(let heads):
            try GGUFArchitectureMapping.ropePermute(&values, shape: shape, heads: heads, inverse: false, name: name)
        case .addOne:
            if sourceDType == .f16 {
                for i in values.indices { values[i] = FloatBits.f16ToF32(FloatBits.f32ToF16(values[i] + 1)) }
            } else {
                for i in values.indices { values[i] += 1 }
            }
        }
    }

    /// GGUF → HF values, in place: the inverse permutation (exact), or `w - 1` for gemma norms
    /// (not bit-exact: `(w + 1) - 1` loses the low bits of small `w`, as in any such round trip).
    public func fromGGUF(gguf name: String, values: inout [Float], shape: [Int], config: ModelConfig) throws {
        guard let hf = hfName(gguf: name) else { return }
        switch transform(hf: hf, config: config) {
        case .none: break
        case .ropePermute(let heads):
            try GGUFArchitectureMapping.ropePermute(&values, shape: shape, heads: heads, inverse: true, name: name)
        case .addOne:
            for i in values.indices { values[i] -= 1 }
        }
    }

    /// `LlamaModel.permute(w, n_head, n_kv_head)`: `w.reshape(heads, 2, rows/heads/2, *rest)
    /// .swapaxes(1, 2).reshape(w.shape)`. Row (h, half j, i) of HF moves to GGUF row (h, i, j):
    /// gguf[h*d + 2i + j] = hf[h*d + j*d/2 + i], d = rows/heads. Works on weights [rows, cols] and
    /// biases [rows].
    public static func ropePermute(_ values: inout [Float], shape: [Int], heads: Int, inverse: Bool, name: String) throws {
        guard let rows = shape.first, shape.count == 1 || shape.count == 2, heads > 0, rows % (2 * heads) == 0 else {
            throw SmolError(.mismatch, at: "tensor '\(name)'",
                            "cannot permute shape \(shape) for RoPE with \(heads) heads (rows must be a multiple of 2 × heads)")
        }
        let cols = shape.count == 2 ? shape[1] : 1
        guard let count = Checked.product([rows, cols]), count == values.count else {
            throw SmolError(.mismatch, at: "tensor '\(name)'", "\(values.count) values for shape \(shape)")
        }
        let d = rows / heads
        let half = d / 2
        var out = [Float](repeating: 0, count: values.count)
        values.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for h in 0..<heads {
                    for j in 0..<2 {
                        for i in 0..<half {
                            let hfRow = h * d + j * half + i
                            let ggRow = h * d + 2 * i + j
                            let (from, to) = inverse ? (ggRow, hfRow) : (hfRow, ggRow)
                            for c in 0..<cols { dst[to * cols + c] = src[from * cols + c] }
                        }
                    }
                }
            }
        }
        values = out
    }

    // MARK: Storage type

    /// Whether the converter stores this tensor as F32 whatever the output type (`--outtype`),
    /// per `TextModel.prepare_tensors`: 1-D tensors and names ending in "_norm.weight", anything
    /// whose name does not end in ".weight" (biases), and the MoE router (`ffn_gate_inp`).
    /// Everything else (embeddings, projections) takes the output type.
    public static func keepsF32(gguf name: String, shape: [Int]) -> Bool {
        if shape.count <= 1 || name.hasSuffix("_norm.weight") { return true }
        if !name.hasSuffix(".weight") { return true }
        if let (base, _) = splitSuffix(name), let (_, rest) = splitBlock(base, prefix: "blk."),
           rest == "ffn_gate_inp" || rest == "ffn_gate_inp_shexp" {
            return true
        }
        return false
    }

    // MARK: Registry

    /// The mapping for an HF `model_type`, or nil when `smolconv convert` has none.
    public static func forModelType(_ modelType: String) -> GGUFArchitectureMapping? { byModelType[modelType] }

    /// The mapping for a GGUF `general.architecture`, or nil.
    public static func forGGUFArchitecture(_ arch: String) -> GGUFArchitectureMapping? {
        byModelType.values.first { $0.ggufArchitecture == arch }
    }

    /// HF `model_type` → mapping (dense architectures).
    public static let byModelType: [String: GGUFArchitectureMapping] = {
        let attention: [(hf: String, gguf: String)] = [
            ("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"), ("self_attn.v_proj", "attn_v"),
            ("self_attn.o_proj", "attn_output"),
        ]
        let qkNorm: [(hf: String, gguf: String)] = [("self_attn.q_norm", "attn_q_norm"), ("self_attn.k_norm", "attn_k_norm")]
        let mlp: [(hf: String, gguf: String)] = [("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"), ("mlp.down_proj", "ffn_down")]
        // llama-style: norm before attention and before the MLP.
        let llamaNorms: [(hf: String, gguf: String)] = [("input_layernorm", "attn_norm"), ("post_attention_layernorm", "ffn_norm")]
        // gemma2/3 sandwich norms: gguf-py maps gemma's post_attention_layernorm to
        // post_attention_norm and pre_feedforward_layernorm to ffn_norm.
        let gemmaNorms: [(hf: String, gguf: String)] = [
            ("input_layernorm", "attn_norm"), ("post_attention_layernorm", "post_attention_norm"),
            ("pre_feedforward_layernorm", "ffn_norm"), ("post_feedforward_layernorm", "post_ffw_norm"),
        ]
        let global: [(hf: String, gguf: String)] = [("model.embed_tokens", "token_embd"), ("model.norm", "output_norm"), ("lm_head", "output")]
        let all = [
            GGUFArchitectureMapping(modelType: "llama", ggufArchitecture: "llama", blockNames: llamaNorms + attention + mlp,
                                    globalNames: global, dropped: [], permutesQK: true, normPlusOne: false),
            GGUFArchitectureMapping(modelType: "smollm3", ggufArchitecture: "smollm3", blockNames: llamaNorms + attention + mlp,
                                    globalNames: global, dropped: [], permutesQK: true, normPlusOne: false),
            GGUFArchitectureMapping(modelType: "qwen3", ggufArchitecture: "qwen3", blockNames: llamaNorms + attention + qkNorm + mlp,
                                    globalNames: global, dropped: [], permutesQK: false, normPlusOne: false),
            GGUFArchitectureMapping(modelType: "gemma2", ggufArchitecture: "gemma2", blockNames: gemmaNorms + attention + mlp,
                                    globalNames: global, dropped: ["lm_head.weight"], permutesQK: false, normPlusOne: true),
            GGUFArchitectureMapping(modelType: "gemma3_text", ggufArchitecture: "gemma3", blockNames: gemmaNorms + attention + qkNorm + mlp,
                                    globalNames: global, dropped: [], permutesQK: false, normPlusOne: true),
        ]
        return Dictionary(uniqueKeysWithValues: all.map { ($0.modelType, $0) })
    }()
}
