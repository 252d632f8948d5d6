import Foundation
import SmolKernels
import SmolQuant
import SmolTensor

/// One layer's mixture-of-experts block, resolved from the configuration. Names are those of
/// transformers 5's in-memory ("trainable") layout: stacked `experts.gate_up_proj` and
/// `experts.down_proj`; checkpoints in other layouts are read through SmolMoE's restructure
/// (SmolEngine's `ModelLoader` does that).
public struct MoEBlockSpec: Sendable, Equatable {
    /// E
    public var experts: Int
    /// K
    public var topK: Int
    /// I: one expert's intermediate size.
    public var intermediateSize: Int
    public var scoring: RouterScoring
    public var activation: ExpertActivation
    /// gpt_oss: the router has a bias [E].
    public var routerBias: Bool
    /// qwen2_moe: an always-on shared expert of this size, scaled by σ(x · shared_expert_gate).
    public var sharedExpertSize: Int?
    /// gemma4: the router reads the residual stream through a weightless RMSNorm times
    /// `router.scale` times D^-½, chosen weights are multiplied by `router.per_expert_scale`, the
    /// experts read `pre_feedforward_layernorm_2`(residual), and the block's output
    /// `post_feedforward_layernorm_2`(experts) is added to `post_feedforward_layernorm_1`(dense MLP).
    public var gemma4Style: Bool
    /// What precedes `experts.` after "model.layers.N." ("mlp." or "" for gemma4).
    public var expertPrefix: String
    /// The router weight after "model.layers.N." (its bias replaces `.weight` by `.bias`).
    public var routerName: String
    /// gpt_oss: gate_up [E, D, 2I] with gate/up in alternating columns, down [E, I, D], biases.
    public var interleavedGateUp: Bool

    public init(experts: Int, topK: Int, intermediateSize: Int, scoring: RouterScoring, activation: ExpertActivation,
                routerBias: Bool = false, sharedExpertSize: Int? = nil, gemma4Style: Bool = false,
                expertPrefix: String = "mlp.", routerName: String = "mlp.gate.weight", interleavedGateUp: Bool = false) {
        self.experts = experts; self.topK = topK; self.intermediateSize = intermediateSize
        self.scoring = scoring; self.activation = activation; self.routerBias = routerBias
        self.sharedExpertSize = sharedExpertSize; self.gemma4Style = gemma4Style
        self.expertPrefix = expertPrefix; self.routerName = routerName; self.interleavedGateUp = interleavedGateUp
    }
}

/// One layer's MoE weights.
public struct MoEBlockWeights: Sendable {
    public var router: [Float]              // [E, D]
    public var routerBias: [Float]?         // [E]
    public var routerScale: [Float]?        // [D] gemma4
    public var perExpertScale: [Float]?     // [E] gemma4
    public var experts: any ExpertStore
    public var sharedGate: [Float]?         // [S, D] qwen2_moe
    public var sharedUp: [Float]?           // [S, D]
    public var sharedDown: [Float]?         // [D, S]
    public var sharedExpertGate: [Float]?   // [1, D]
    public var preNorm2: [Float]?           // [D] gemma4 pre_feedforward_layernorm_2
    public var postNorm1: [Float]?          // [D] gemma4 post_feedforward_layernorm_1
    public var postNorm2: [Float]?          // [D] gemma4 post_feedforward_layernorm_2

    public init(router: [Float], experts: any ExpertStore) {
        self.router = router
        self.experts = experts
    }
}

/// Stacked experts held in a GGUF block type (or F16/BF16/F32 bytes), dequantized one expert at
/// a time (`GGUFQuant.dequantize`, or its reference twin) into the kernel's scratch.
public struct QuantizedExpertStore: ExpertStore {
    /// One projection of every expert: expert e's [rows, columns] matrix is the `rowsBytes` bytes
    /// at `offset + e · expertStride` (a fused gate_up stack holds gate and up at two offsets).
    public struct Stack: Sendable {
        public var type: GGMLType
        public var bytes: TensorBytes
        public var expertStride: Int
        public var offset: Int
        public var elements: Int

        /// Checks that `elements` per expert are whole blocks and fit the bytes.
        public init(type: GGMLType, bytes: TensorBytes, experts: Int, expertStride: Int, offset: Int, elements: Int) throws {
            let (be, bb) = type.blockLayout
            guard elements % be == 0 else {
                throw SmolError(.unsupported, "\(type.name) expert matrices of \(elements) elements are not whole blocks of \(be)")
            }
            let need = elements / be * bb
            guard let last = Checked.multiply(experts - 1, expertStride).flatMap({ Checked.add($0, offset + need) }),
                  last <= bytes.count else {
                throw SmolError(.malformed, "\(experts) experts of \(elements) \(type.name) elements need more than the \(bytes.count) bytes given")
            }
            self.type = type; self.bytes = bytes; self.expertStride = expertStride; self.offset = offset
            self.elements = elements
        }

        var byteCount: Int { elements / type.blockLayout.elements * type.blockLayout.bytes }

        func dequantize(_ e: Int, into dst: UnsafeMutablePointer<Float>, reference: Bool) throws {
            try bytes.withUnsafeBytes { raw in
                let slice = UnsafeRawBufferPointer(rebasing: raw[(offset + e * expertStride)..<(offset + e * expertStride + byteCount)])
                if reference {
                    try GGUFQuant.dequantizeReference(type, slice, count: elements, into: dst)
                } else {
                    try GGUFQuant.dequantize(type, slice, count: elements, into: dst)
                }
            }
        }
    }

    public let numExperts: Int
    public let hiddenSize: Int
    public let intermediateSize: Int
    public let gate: Stack      // [E, I, D]
    public let up: Stack        // [E, I, D]
    public let down: Stack      // [E, D, I]
    public let gateBias: [Float]?
    public let upBias: [Float]?
    public let downBias: [Float]?
    public var scratchCount: Int { 3 * hiddenSize * intermediateSize }

    public init(experts: Int, hidden: Int, intermediate: Int, gate: Stack, up: Stack, down: Stack,
                gateBias: [Float]? = nil, upBias: [Float]? = nil, downBias: [Float]? = nil) throws {
        let m = hidden * intermediate
        guard gate.elements == m, up.elements == m, down.elements == m else {
            throw SmolError(.mismatch, "quantized expert stacks of \(gate.elements)/\(up.elements)/\(down.elements) elements per expert, expected \(m)")
        }
        numExperts = experts; hiddenSize = hidden; intermediateSize = intermediate
        self.gate = gate; self.up = up; self.down = down
        self.gateBias = gateBias; self.upBias = upBias; self.downBias = downBias
    }

    public func withExpert<R>(_ e: Int, scratch: UnsafeMutablePointer<Float>, reference: Bool, parts: ExpertParts,
                              _ body: (ExpertMatrices) throws -> R) throws -> R {
        precondition(e >= 0 && e < numExperts, "expert \(e) out of range")
        let m = hiddenSize * intermediateSize
        if parts.contains(.gateUp) {
            try gate.dequantize(e, into: scratch, reference: reference)
            try up.dequantize(e, into: scratch + m, reference: reference)
        }
        if parts.contains(.down) { try down.dequantize(e, into: scratch + 2 * m, reference: reference) }
        return try body(ExpertMatrices(gate: scratch, up: scratch + m, down: scratch + 2 * m))
    }
}

extension DecoderWeightLoader {
    /// Loads one MoE block by trainable-layout names, checking shapes against the spec.
    func loadMoEBlock(_ m: MoEBlockSpec, layer i: Int) throws -> MoEBlockWeights {
        let D = spec.hiddenSize, E = m.experts, I = m.intermediateSize
        let n = { (s: String) in names.layer(i, s) }
        let routerBiasName = m.routerName.hasSuffix(".weight") ? String(m.routerName.dropLast(7)) + ".bias" : m.routerName + "_bias"
        var w = MoEBlockWeights(router: try tensor(n(m.routerName), [E, D]), experts: try loadExperts(m, layer: i))
        if m.routerBias { w.routerBias = try tensor(n(routerBiasName), [E]) }
        if let S = m.sharedExpertSize {
            w.sharedGate = try tensor(n("mlp.shared_expert.gate_proj.weight"), [S, D])
            w.sharedUp = try tensor(n("mlp.shared_expert.up_proj.weight"), [S, D])
            w.sharedDown = try tensor(n("mlp.shared_expert.down_proj.weight"), [D, S])
            w.sharedExpertGate = try tensor(n("mlp.shared_expert_gate.weight"), [1, D])
        }
        if m.gemma4Style {
            w.routerScale = try tensor(n("router.scale"), [D])
            w.perExpertScale = try tensor(n("router.per_expert_scale"), [E])
            w.preNorm2 = try tensor(n("pre_feedforward_layernorm_2.weight"), [D])
            w.postNorm1 = try tensor(n("post_feedforward_layernorm_1.weight"), [D])
            w.postNorm2 = try tensor(n("post_feedforward_layernorm_2.weight"), [D])
        }
        return w
    }

    /// The stacked experts: Float32 (from F32/F16/BF16) or, for GGUF block types, kept quantized.
    func loadExperts(_ m: MoEBlockSpec, layer i: Int) throws -> any ExpertStore {
        let D = spec.hiddenSize, E = m.experts, I = m.intermediateSize
        let guName = names.layer(i, m.expertPrefix + "experts.gate_up_proj")
        let dnName = names.layer(i, m.expertPrefix + "experts.down_proj")
        guard let guShape = reader.shape(hf: guName), let dnShape = reader.shape(hf: dnName) else {
            let missing = reader.shape(hf: guName) == nil ? guName : dnName
            throw SmolError(.malformed, file: reader.path, at: "tensor '\(reader.displayName(hf: missing))'",
                            "tensor not found (experts are read in the trainable layout; per-expert and GGUF checkpoints go through SmolEngine's ModelLoader)")
        }
        if m.interleavedGateUp {
            // gpt_oss: gate_up [E, D, 2I] (column 2j gate, 2j+1 up of unit j), down [E, I, D];
            // transposed here into the kernels' [E, I, D] / [E, D, I].
            let guF = try tensor(guName, [E, D, 2 * I]), dnF = try tensor(dnName, [E, I, D])
            let guB = try tensor(guName + "_bias", [E, 2 * I]), dnB = try tensor(dnName + "_bias", [E, D])
            var gate = [Float](repeating: 0, count: E * I * D), up = gate, down = gate
            for e in 0..<E {
                for d in 0..<D {
                    let src: Int = (e * D + d) * 2 * I
                    for j in 0..<I {
                        let row: Int = (e * I + j) * D + d
                        gate[row] = guF[src + 2 * j]
                        up[row] = guF[src + 2 * j + 1]
                        let downRow: Int = (e * D + d) * I + j
                        down[downRow] = dnF[row]
                    }
                }
            }
            let gb = (0..<(E * I)).map { guB[2 * $0] }, ub = (0..<(E * I)).map { guB[2 * $0 + 1] }
            return DenseExpertStore(experts: E, hidden: D, intermediate: I, gate: gate, up: up, down: down,
                                    gateBias: gb, upBias: ub, downBias: dnB)
        }
        // gate_up [E, 2I, D]: expert e's gate rows then its up rows; down [E, D, I].
        guard guShape == [E, 2 * I, D] else {
            throw SmolError(.mismatch, file: reader.path, at: "tensor '\(guName)'", "shape \(guShape), the configuration implies \([E, 2 * I, D])")
        }
        guard dnShape == [E, D, I] else {
            throw SmolError(.mismatch, file: reader.path, at: "tensor '\(dnName)'", "shape \(dnShape), the configuration implies \([E, D, I])")
        }
        // Block-quantized stacks stay encoded when the reader can hand the bytes over as stored.
        if let (gu, guBytes) = try reader.raw(hf: guName), let (dn, dnBytes) = try reader.raw(hf: dnName),
           case .block(let gt) = gu.type, case .block(let dt) = dn.type, gt.denseType == nil || dt.denseType == nil {
            let per = guBytes.count / E
            let gate = try QuantizedExpertStore.Stack(type: gt, bytes: guBytes, experts: E, expertStride: per, offset: 0, elements: I * D)
            let up = try QuantizedExpertStore.Stack(type: gt, bytes: guBytes, experts: E, expertStride: per, offset: per / 2, elements: I * D)
            let down = try QuantizedExpertStore.Stack(type: dt, bytes: dnBytes, experts: E, expertStride: dnBytes.count / E,
                                                      offset: 0, elements: I * D)
            return try QuantizedExpertStore(experts: E, hidden: D, intermediate: I, gate: gate, up: up, down: down)
        }
        let guF = try tensor(guName, [E, 2 * I, D]), dnF = try tensor(dnName, [E, D, I])
        var gate = [Float](), up = [Float]()
        gate.reserveCapacity(E * I * D); up.reserveCapacity(E * I * D)
        let m: Int = I * D
        for e in 0..<E {
            let g0: Int = 2 * e * m
            gate += guF[g0..<(g0 + m)]
            up += guF[(g0 + m)..<(g0 + 2 * m)]
        }
        return DenseExpertStore(experts: E, hidden: D, intermediate: I, gate: gate, up: up, down: dnF)
    }
}

extension DenseDecoderModel {
    /// The model as transformers runs it after loading or casting it to `dtype` (bf16/f16): the
    /// rotary `inv_freq` is a floating buffer, so it is rounded to that dtype with the weights and
    /// stays rounded when the model is cast back to float32. Needed to reproduce references made
    /// from a bf16-loaded model (the qwen3_moe_bf16_sharded fixture: logits 2e-3 off without it,
    /// 1e-6 with it).
    public func withRoPETablesRounded(to dtype: DType) -> DenseDecoderModel {
        let round: (Float) -> Float
        switch dtype {
        case .bf16: round = { FloatBits.bf16ToF32(FloatBits.f32ToBF16($0)) }
        case .f16: round = { FloatBits.f16ToF32(FloatBits.f32ToF16($0)) }
        default: return self
        }
        var m = self
        for i in m.spec.layers.indices {
            guard var rope = m.spec.layers[i].rope else { continue }
            rope.invFreq = rope.invFreq.map(round)
            m.spec.layers[i].rope = rope
        }
        return m
    }
}
