import SmolModels
import SmolTensor

/// A tensor of a rewrite's output: what it is, and the recipe that makes its bytes from the
/// rewrite's input tensors (lazy: nothing is read until the recipe is evaluated).
public struct TensorRef: Sendable, Hashable {
    public var info: TensorInfo
    public var recipe: TensorRecipe

    public init(_ info: TensorInfo, _ recipe: TensorRecipe) {
        self.info = info
        self.recipe = recipe
    }

    /// An input tensor as it is.
    public static func input(_ info: TensorInfo) -> TensorRef { TensorRef(info, .input(info.name)) }
}

/// The adjacent-layout rewrites: per-expert ↔ trainable ↔ GGUF, each a pure function of the
/// input tensors' infos and the configuration. Outputs carry recipes over the input names.
/// Every expert the configuration promises must be present (a missing one is an error naming it),
/// and every input tensor must land in an output (an unknown expert tensor is an error, never
/// dropped).
enum Rewrites {
    /// "model.layers.12.mlp.gate.weight" → (12, "mlp.gate.weight"); canonical decimal only.
    static func splitLayer(_ name: String, prefix: String = "model.layers.") -> (Int, String)? {
        guard name.hasPrefix(prefix) else { return nil }
        let rest = name.dropFirst(prefix.count)
        guard let dot = rest.firstIndex(of: ".") else { return nil }
        let digits = rest[..<dot]
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), digits == "0" || digits.first != "0",
              let n = Int(digits) else { return nil }
        return (n, String(rest[rest.index(after: dot)...]))
    }

    static func at(_ name: String) -> String { "tensor '\(name)'" }

    static func moe(_ config: ModelConfig) throws -> MoEConfig {
        guard let m = config.moe else {
            throw SmolError(.invalidArgument, "model_type '\(config.modelType)' has no mixture-of-experts configuration")
        }
        return m
    }

    /// Bytes per element of an unquantized type (nil for ggml block types).
    static func elementSize(_ t: TensorType) -> Int? {
        let (e, b) = t.blockLayout
        return e == 1 ? b : nil
    }

    static func requireElementSize(_ info: TensorInfo) throws -> Int {
        guard let es = elementSize(info.type) else {
            throw SmolError(.unsupported, at: at(info.name), "\(info.type.name) is block-quantized; this layout change transposes elements, so it needs an unquantized tensor")
        }
        return es
    }

    static func require(_ inputs: [String: TensorInfo], _ name: String, _ what: String) throws -> TensorInfo {
        guard let i = inputs[name] else {
            throw SmolError(.mismatch, at: at(name), "missing: \(what) is not in the input; restructuring without it would drop weights")
        }
        return i
    }

    static func expectShape(_ info: TensorInfo, _ shape: [Int], _ what: String) throws {
        guard info.shape == shape else {
            throw SmolError(.mismatch, at: at(info.name), "\(what) has shape \(info.shape), the configuration implies \(shape)")
        }
    }

    static func sameType(_ infos: [TensorInfo]) throws {
        guard let first = infos.first else { return }
        for i in infos where i.type != first.type {
            throw SmolError(.mismatch, at: at(i.name), "\(i.type.name) differs from \(first.name)'s \(first.type.name); experts stacked together must share a type")
        }
    }

    static func bytes(_ info: TensorInfo) -> Int { info.byteCount }

    // MARK: per-expert → trainable

    static func perExpertToTrainable(_ inputs: [String: TensorInfo], _ arch: MoEArchitecture, _ config: ModelConfig) throws -> [String: TensorRef] {
        guard let pe = arch.perExpert else { return try identity(inputs, arch, config) }
        let moe = try moe(config)
        let experts = moe.numExperts
        var out: [String: TensorRef] = [:]
        func emit(_ ref: TensorRef) throws {
            guard out[ref.info.name] == nil else {
                throw SmolError(.mismatch, at: at(ref.info.name), "two input tensors would both become this tensor")
            }
            out[ref.info.name] = ref
        }
        let expertMarker = "\(pe.block).experts."
        for (name, info) in inputs {
            if let (layer, rest) = splitLayer(name) {
                if rest.hasPrefix(expertMarker) {
                    // Checked against the configuration below; anything else under experts. is refused.
                    let tail = rest.dropFirst(expertMarker.count)
                    let parts = tail.split(separator: ".", omittingEmptySubsequences: false)
                    guard layer < config.numHiddenLayers, config.isMoELayer(layer), parts.count == 3, parts[2] == "weight",
                          let e = Int(parts[0]), e >= 0, e < experts, String(e) == parts[0],
                          [pe.gate, pe.up, pe.down].contains(String(parts[1])) else {
                        throw SmolError(.mismatch, at: at(name),
                                        "unexpected expert tensor (the configuration has \(experts) experts per MoE layer and projections \(pe.gate)/\(pe.up)/\(pe.down)); refusing to drop or guess")
                    }
                    continue
                }
                if pe.block != "mlp", rest.hasPrefix(pe.block + ".") {
                    // mixtral: block_sparse_moe.gate → mlp.gate, as transformers 5 renames it.
                    var renamed = info
                    renamed.name = "model.layers.\(layer).mlp." + rest.dropFirst(pe.block.count + 1)
                    try emit(TensorRef(renamed, .input(name)))
                    continue
                }
            }
            try emit(TensorRef.input(info))
        }
        for layer in 0..<config.numHiddenLayers where config.isMoELayer(layer) {
            _ = try require(inputs, "model.layers.\(layer).\(pe.block).gate.weight", "the router of layer \(layer)")
            var gateUp: [TensorRecipe] = [], down: [TensorRecipe] = []
            var members: [TensorInfo] = []
            var rows: Int?, hidden: Int?
            for e in 0..<experts {
                let g = try require(inputs, arch.perExpertName(layer, e, pe.gate), "layer \(layer) expert \(e)'s gate projection")
                let u = try require(inputs, arch.perExpertName(layer, e, pe.up), "layer \(layer) expert \(e)'s up projection")
                let d = try require(inputs, arch.perExpertName(layer, e, pe.down), "layer \(layer) expert \(e)'s down projection")
                guard g.shape.count == 2 else { throw SmolError(.mismatch, at: at(g.name), "expected a matrix, found shape \(g.shape)") }
                let i = rows ?? g.shape[0], h = hidden ?? g.shape[1]
                rows = i; hidden = h
                try expectShape(g, [i, h], "the gate projection")
                try expectShape(u, [i, h], "the up projection")
                try expectShape(d, [h, i], "the down projection")
                members += [g, u, d]
                gateUp += [.input(g.name), .input(u.name)]
                down.append(.input(d.name))
            }
            try sameType(members)
            let type = members[0].type
            try emit(TensorRef(TensorInfo(name: arch.gateUpName(layer), type: type, shape: [experts, 2 * rows!, hidden!]), .concat(gateUp)))
            try emit(TensorRef(TensorInfo(name: arch.downName(layer), type: type, shape: [experts, hidden!, rows!]), .concat(down)))
        }
        return out
    }

    // MARK: trainable → per-expert

    static func trainableToPerExpert(_ inputs: [String: TensorInfo], _ arch: MoEArchitecture, _ config: ModelConfig) throws -> [String: TensorRef] {
        guard let pe = arch.perExpert else { return try identity(inputs, arch, config) }
        let experts = try moe(config).numExperts
        var out: [String: TensorRef] = [:]
        var stacks = Set<String>()
        for layer in 0..<config.numHiddenLayers where config.isMoELayer(layer) {
            _ = try require(inputs, arch.routerName(layer), "the router of layer \(layer)")
            let gu = try require(inputs, arch.gateUpName(layer), "layer \(layer)'s stacked gate/up projection")
            let dn = try require(inputs, arch.downName(layer), "layer \(layer)'s stacked down projection")
            guard gu.shape.count == 3, gu.shape[0] == experts, gu.shape[1] % 2 == 0 else {
                throw SmolError(.mismatch, at: at(gu.name), "expected [\(experts), 2 × intermediate, hidden], found \(gu.shape)")
            }
            let i = gu.shape[1] / 2, h = gu.shape[2]
            try expectShape(dn, [experts, h, i], "the stacked down projection")
            try sameType([gu, dn])
            stacks.formUnion([gu.name, dn.name])
            let half = bytes(gu) / (2 * experts), downBytes = bytes(dn) / experts
            for e in 0..<experts {
                for (proj, offset) in [(pe.gate, 2 * e * half), (pe.up, (2 * e + 1) * half)] {
                    let n = arch.perExpertName(layer, e, proj)
                    out[n] = TensorRef(TensorInfo(name: n, type: gu.type, shape: [i, h]), .slice(.input(gu.name), offset: offset, count: half))
                }
                let n = arch.perExpertName(layer, e, pe.down)
                out[n] = TensorRef(TensorInfo(name: n, type: dn.type, shape: [h, i]), .slice(.input(dn.name), offset: e * downBytes, count: downBytes))
            }
        }
        for (name, info) in inputs where !stacks.contains(name) {
            var renamed = info
            if pe.block != "mlp", let (layer, rest) = splitLayer(name), rest.hasPrefix("mlp.") {
                renamed.name = "model.layers.\(layer).\(pe.block)." + rest.dropFirst(4)
            }
            if rest(of: name).contains("experts.") {
                throw SmolError(.mismatch, at: at(name), "unexpected expert tensor in the trainable layout; refusing to drop or guess")
            }
            guard out[renamed.name] == nil else {
                throw SmolError(.mismatch, at: at(name), "two input tensors would both become \(renamed.name)")
            }
            out[renamed.name] = TensorRef(renamed, .input(name))
        }
        return out
    }

    static func rest(of name: String) -> String { splitLayer(name)?.1 ?? name }

    /// gemma4, gpt_oss: per-expert (on disk) is the trainable layout. Still checks that every MoE
    /// layer's stacks, router (and gpt_oss biases) are there.
    static func identity(_ inputs: [String: TensorInfo], _ arch: MoEArchitecture, _ config: ModelConfig) throws -> [String: TensorRef] {
        for layer in 0..<config.numHiddenLayers where config.isMoELayer(layer) {
            _ = try require(inputs, arch.routerName(layer), "the router of layer \(layer)")
            _ = try require(inputs, arch.gateUpName(layer), "layer \(layer)'s stacked gate/up projection")
            _ = try require(inputs, arch.downName(layer), "layer \(layer)'s stacked down projection")
            if arch.expertBiases {
                _ = try require(inputs, arch.gateUpBiasName(layer), "layer \(layer)'s gate/up bias")
                _ = try require(inputs, arch.downBiasName(layer), "layer \(layer)'s down bias")
            }
        }
        return inputs.mapValues { TensorRef.input($0) }
    }

    // MARK: trainable → GGUF

    static func trainableToGGUF(_ inputs: [String: TensorInfo], _ arch: MoEArchitecture, _ config: ModelConfig) throws -> [String: TensorRef] {
        let experts = try moe(config).numExperts
        let mapping = arch.mapping
        var out: [String: TensorRef] = [:]
        var consumed = Set<String>()
        func emit(_ name: String, _ type: TensorType, _ shape: [Int], _ recipe: TensorRecipe, from source: String) throws {
            guard out[name] == nil else {
                throw SmolError(.mismatch, at: at(source), "two input tensors would both become GGUF tensor \(name)")
            }
            out[name] = TensorRef(TensorInfo(name: name, type: try ggufType(type, source), shape: shape), recipe)
        }
        for layer in 0..<config.numHiddenLayers where config.isMoELayer(layer) {
            _ = try require(inputs, arch.routerName(layer), "the router of layer \(layer)")
            let gu = try require(inputs, arch.gateUpName(layer), "layer \(layer)'s stacked gate/up projection")
            let dn = try require(inputs, arch.downName(layer), "layer \(layer)'s stacked down projection")
            try sameType([gu, dn])
            consumed.formUnion([gu.name, dn.name])
            let blk = "blk.\(layer)."
            switch arch.gateUp {
            case .gateRowsFirst:
                guard gu.shape.count == 3, gu.shape[0] == experts, gu.shape[1] % 2 == 0 else {
                    throw SmolError(.mismatch, at: at(gu.name), "expected [\(experts), 2 × intermediate, hidden], found \(gu.shape)")
                }
                let i = gu.shape[1] / 2, h = gu.shape[2]
                try expectShape(dn, [experts, h, i], "the stacked down projection")
                if arch.ggufFusedGateUp {
                    try emit(blk + "ffn_gate_up_exps.weight", gu.type, gu.shape, .input(gu.name), from: gu.name)
                } else {
                    // convert_hf_to_gguf stacks each expert's gate (and up) rows: [E, I, H].
                    let half = bytes(gu) / (2 * experts)
                    let gates = (0..<experts).map { TensorRecipe.slice(.input(gu.name), offset: 2 * $0 * half, count: half) }
                    let ups = (0..<experts).map { TensorRecipe.slice(.input(gu.name), offset: (2 * $0 + 1) * half, count: half) }
                    try emit(blk + "ffn_gate_exps.weight", gu.type, [experts, i, h], .concat(gates), from: gu.name)
                    try emit(blk + "ffn_up_exps.weight", gu.type, [experts, i, h], .concat(ups), from: gu.name)
                }
                try emit(blk + "ffn_down_exps.weight", dn.type, dn.shape, .input(dn.name), from: dn.name)
            case .interleavedColumns:
                // gpt_oss (conversion/gpt_oss.py): gate_up [E, H, 2I] → transpose → [E, 2I, H], gate =
                // rows ::2, up = rows 1::2; down [E, I, H] → transpose → [E, H, I].
                guard gu.shape.count == 3, gu.shape[0] == experts, gu.shape[2] % 2 == 0 else {
                    throw SmolError(.mismatch, at: at(gu.name), "expected [\(experts), hidden, 2 × intermediate], found \(gu.shape)")
                }
                let h = gu.shape[1], i = gu.shape[2] / 2
                try expectShape(dn, [experts, i, h], "the stacked down projection")
                let es = try requireElementSize(gu)
                for (k, which) in ["gate", "up"].enumerated() {
                    let t = TensorRecipe.TransposeSpec(batch: experts, rows: h, columns: 2 * i, elementSize: es, start: k, stride: 2)
                    try emit(blk + "ffn_\(which)_exps.weight", gu.type, [experts, i, h], .transposeColumns(.input(gu.name), t), from: gu.name)
                }
                let t = TensorRecipe.TransposeSpec(batch: experts, rows: i, columns: h, elementSize: es, start: 0, stride: 1)
                try emit(blk + "ffn_down_exps.weight", dn.type, [experts, h, i], .transposeColumns(.input(dn.name), t), from: dn.name)
            }
            if arch.expertBiases {
                let gb = try require(inputs, arch.gateUpBiasName(layer), "layer \(layer)'s gate/up bias")
                let db = try require(inputs, arch.downBiasName(layer), "layer \(layer)'s down bias")
                guard gb.shape.count == 2, gb.shape[0] == experts, gb.shape[1] % 2 == 0 else {
                    throw SmolError(.mismatch, at: at(gb.name), "expected [\(experts), 2 × intermediate], found \(gb.shape)")
                }
                consumed.formUnion([gb.name, db.name])
                let i = gb.shape[1] / 2
                let es = try requireElementSize(gb)
                for (k, which) in ["gate", "up"].enumerated() {
                    // The bias as [E, 1, 2I]: columns ::2 / 1::2, "transposed" against a single row.
                    let t = TensorRecipe.TransposeSpec(batch: experts, rows: 1, columns: 2 * i, elementSize: es, start: k, stride: 2)
                    try emit(blk + "ffn_\(which)_exps.bias", gb.type, [experts, i], .transposeColumns(.input(gb.name), t), from: gb.name)
                }
                try emit(blk + "ffn_down_exps.bias", db.type, db.shape, .input(db.name), from: db.name)
            }
        }
        for (name, info) in inputs where !consumed.contains(name) {
            guard let g = mapping.ggufName(hf: name) else {
                throw SmolError(.unsupported, at: at(name), "no GGUF name for this tensor in \(arch.modelType); refusing to drop it")
            }
            try emit(g, info.type, info.shape, try permuteQK(info, to: true, arch, config), from: name)
        }
        return out
    }

    // MARK: GGUF → trainable

    static func ggufToTrainable(_ inputs: [String: TensorInfo], _ arch: MoEArchitecture, _ config: ModelConfig) throws -> [String: TensorRef] {
        let experts = try moe(config).numExperts
        let mapping = arch.mapping
        var out: [String: TensorRef] = [:]
        var consumed = Set<String>()
        func emit(_ name: String, _ type: TensorType, _ shape: [Int], _ recipe: TensorRecipe, from source: String) throws {
            guard out[name] == nil else {
                throw SmolError(.mismatch, at: at(source), "two input tensors would both become \(name)")
            }
            out[name] = TensorRef(TensorInfo(name: name, type: type, shape: shape), recipe)
        }
        for layer in 0..<config.numHiddenLayers where config.isMoELayer(layer) {
            let blk = "blk.\(layer)."
            _ = try require(inputs, blk + "ffn_gate_inp.weight", "the router of layer \(layer)")
            let dn = try require(inputs, blk + "ffn_down_exps.weight", "layer \(layer)'s down experts")
            consumed.insert(dn.name)
            switch arch.gateUp {
            case .gateRowsFirst:
                guard dn.shape.count == 3, dn.shape[0] == experts else {
                    throw SmolError(.mismatch, at: at(dn.name), "expected [\(experts), hidden, intermediate], found \(dn.shape)")
                }
                let h = dn.shape[1], i = dn.shape[2]
                if arch.ggufFusedGateUp {
                    let gu = try require(inputs, blk + "ffn_gate_up_exps.weight", "layer \(layer)'s gate/up experts")
                    try expectShape(gu, [experts, 2 * i, h], "the fused gate/up experts")
                    // gate/up and down are separate stacks: llama-quantize may give them different types.
                    consumed.insert(gu.name)
                    try emit(arch.gateUpName(layer), gu.type, gu.shape, .input(gu.name), from: gu.name)
                } else {
                    let g = try require(inputs, blk + "ffn_gate_exps.weight", "layer \(layer)'s gate experts")
                    let u = try require(inputs, blk + "ffn_up_exps.weight", "layer \(layer)'s up experts")
                    try expectShape(g, [experts, i, h], "the gate experts")
                    try expectShape(u, [experts, i, h], "the up experts")
                    try sameType([g, u])  // one stack in the trainable layout; down may differ (llama-quantize's ffn_down bumps)
                    consumed.formUnion([g.name, u.name])
                    let part = bytes(g) / experts
                    var pieces: [TensorRecipe] = []
                    for e in 0..<experts {
                        pieces.append(.slice(.input(g.name), offset: e * part, count: part))
                        pieces.append(.slice(.input(u.name), offset: e * part, count: part))
                    }
                    try emit(arch.gateUpName(layer), g.type, [experts, 2 * i, h], .concat(pieces), from: g.name)
                }
                try emit(arch.downName(layer), dn.type, dn.shape, .input(dn.name), from: dn.name)
            case .interleavedColumns:
                guard dn.shape.count == 3, dn.shape[0] == experts else {
                    throw SmolError(.mismatch, at: at(dn.name), "expected [\(experts), hidden, intermediate], found \(dn.shape)")
                }
                let h = dn.shape[1], i = dn.shape[2]
                let g = try require(inputs, blk + "ffn_gate_exps.weight", "layer \(layer)'s gate experts")
                let u = try require(inputs, blk + "ffn_up_exps.weight", "layer \(layer)'s up experts")
                try expectShape(g, [experts, i, h], "the gate experts")
                try expectShape(u, [experts, i, h], "the up experts")
                try sameType([g, u])
                consumed.formUnion([g.name, u.name])
                let es = try requireElementSize(g)
                let t = TensorRecipe.TransposeSpec(batch: experts, rows: h, columns: 2 * i, elementSize: es, start: 0, stride: 1)
                try emit(arch.gateUpName(layer), g.type, [experts, h, 2 * i], .interleaveTransposed([.input(g.name), .input(u.name)], t), from: g.name)
                // [E, H, I] → [E, I, H]: an interleave of one part is a plain transpose.
                let d = TensorRecipe.TransposeSpec(batch: experts, rows: i, columns: h, elementSize: try requireElementSize(dn), start: 0, stride: 1)
                try emit(arch.downName(layer), dn.type, [experts, i, h], .interleaveTransposed([.input(dn.name)], d), from: dn.name)
            }
            if arch.expertBiases {
                let gb = try require(inputs, blk + "ffn_gate_exps.bias", "layer \(layer)'s gate bias")
                let ub = try require(inputs, blk + "ffn_up_exps.bias", "layer \(layer)'s up bias")
                let db = try require(inputs, blk + "ffn_down_exps.bias", "layer \(layer)'s down bias")
                guard gb.shape.count == 2, gb.shape[0] == experts, ub.shape == gb.shape else {
                    throw SmolError(.mismatch, at: at(gb.name), "expected [\(experts), intermediate] gate and up biases, found \(gb.shape) and \(ub.shape)")
                }
                try sameType([gb, ub])
                consumed.formUnion([gb.name, ub.name, db.name])
                let es = try requireElementSize(gb)
                let t = TensorRecipe.TransposeSpec(batch: experts, rows: 1, columns: 2 * gb.shape[1], elementSize: es, start: 0, stride: 1)
                try emit(arch.gateUpBiasName(layer), gb.type, [experts, 2 * gb.shape[1]],
                         .interleaveTransposed([.input(gb.name), .input(ub.name)], t), from: gb.name)
                try emit(arch.downBiasName(layer), db.type, db.shape, .input(db.name), from: db.name)
            }
        }
        for (name, info) in inputs where !consumed.contains(name) {
            guard let hf = mapping.hfName(gguf: name) else {
                throw SmolError(.unsupported, at: at(name), "no Hugging Face name for this GGUF tensor in \(arch.modelType); refusing to drop it")
            }
            var renamed = info
            renamed.name = hf
            renamed.type = hfType(info.type)
            try emit(hf, renamed.type, info.shape, try permuteQK(renamed, to: false, arch, config, source: name), from: name)
        }
        return out
    }

    // MARK: Types

    /// The GGUF type of a tensor of this type: unquantized dtypes map to ggml's; ggml types stay.
    static func ggufType(_ t: TensorType, _ name: String) throws -> TensorType {
        switch t {
        case .block: return t
        case .dense(let d):
            guard let g = d.ggmlType else {
                throw SmolError(.unsupported, at: at(name), "GGUF has no type for \(d.rawValue)")
            }
            return .block(g)
        }
    }

    /// The safetensors type of a GGUF tensor type where one exists (F32, F16, BF16, integers).
    static func hfType(_ t: TensorType) -> TensorType {
        if case .block(let g) = t, let d = g.denseType { return .dense(d) }
        return t
    }

    // MARK: Q/K permutation

    /// mixtral (LlamaModel): q/k rows reordered for GGML's RoPE. Row (h, half j, i) of HF is row
    /// (h, i, j) of GGUF (`LlamaModel.permute`). As whole-row byte slices, so any type works and
    /// the inverse is exact. `info` is the tensor under its HF name; `source` is the recipe's input.
    static func permuteQK(_ info: TensorInfo, to gguf: Bool, _ arch: MoEArchitecture, _ config: ModelConfig,
                          source: String? = nil) throws -> TensorRecipe {
        let input = TensorRecipe.input(source ?? info.name)
        guard arch.mapping.permutesQueryKey, let (_, rest) = splitLayer(info.name) else { return input }
        let heads: Int
        switch rest {
        case "self_attn.q_proj.weight", "self_attn.q_proj.bias": heads = config.numAttentionHeads
        case "self_attn.k_proj.weight", "self_attn.k_proj.bias": heads = config.numKeyValueHeads
        default: return input
        }
        guard let rows = info.shape.first, heads > 0, rows % (2 * heads) == 0, info.byteCount % rows == 0 else {
            throw SmolError(.mismatch, at: at(info.name), "cannot permute shape \(info.shape) for RoPE with \(heads) heads")
        }
        let rowBytes = info.byteCount / rows, d = rows / heads, half = d / 2
        var pieces: [TensorRecipe] = []
        pieces.reserveCapacity(rows)
        for h in 0..<heads {
            if gguf {
                // GGUF row h*d + 2i + j takes HF row h*d + j*half + i.
                for i in 0..<half { for j in 0..<2 { pieces.append(.slice(input, offset: (h * d + j * half + i) * rowBytes, count: rowBytes)) } }
            } else {
                for j in 0..<2 { for i in 0..<half { pieces.append(.slice(input, offset: (h * d + 2 * i + j) * rowBytes, count: rowBytes)) } }
            }
        }
        return .concat(pieces)
    }
}
