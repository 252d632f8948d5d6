import Foundation
import Testing
import SmolFormats
import SmolModels
import SmolMoE
import SmolTensor
import SmolTestSupport

/// Tensors held in memory.
final class MemorySource: TensorSource, @unchecked Sendable {
    let path = "<memory>"
    let tensorInfos: [TensorInfo]
    let data: [String: [Float]]
    init(_ tensors: [(TensorInfo, [Float])]) {
        tensorInfos = tensors.map(\.0)
        data = Dictionary(uniqueKeysWithValues: tensors.map { ($0.0.name, $0.1) })
    }
    func tensorBytes(_ name: String) throws -> TensorBytes { TensorBytes(elements: data[name]!) }
}

/// A 1-layer, 2-expert, hidden-size-8 model per architecture, with every element distinct, checked
/// element by element against the layouts' definitions (transformers' modeling code for the
/// trainable stacks, llama.cpp's converter for GGUF), and round-tripped.
@Suite struct SyntheticTests {
    static let fixtures = ["qwen2_moe", "qwen3_moe", "mixtral", "olmoe", "gemma4_moe", "gpt_oss"]
    static let h = 8, i = 4, e = 2

    /// The fixture's config.json shrunk to one layer, two experts, H = 8, I = 4.
    func config(_ fixture: String) throws -> ModelConfig {
        var o = try JSONSerialization.jsonObject(with: Data(contentsOf: Fixtures.hf(fixture).appendingPathComponent("config.json"))) as! [String: Any]
        o["num_hidden_layers"] = 1
        o["hidden_size"] = Self.h
        for k in ["num_experts", "num_local_experts"] where o[k] != nil { o[k] = Self.e }
        if o["num_experts"] == nil && o["num_local_experts"] == nil { o["num_experts"] = Self.e }
        for k in ["num_experts_per_tok", "top_k_experts"] where o[k] != nil { o[k] = 1 }
        if o["moe_intermediate_size"] != nil { o["moe_intermediate_size"] = Self.i } else { o["intermediate_size"] = Self.i }
        o["mlp_only_layers"] = []
        if let lt = o["layer_types"] as? [Any] { o["layer_types"] = [lt.last!] }
        o.removeValue(forKey: "per_layer_config")
        o["num_kv_shared_layers"] = 0
        let text = String(decoding: try JSONSerialization.data(withJSONObject: o), as: UTF8.self)
        return try ModelConfig(jsonText: text)
    }

    var counter: Float = 0
    mutating func values(_ n: Int) -> [Float] { defer { counter += Float(n) }; return (0..<n).map { counter + Float($0) } }

    @Test(arguments: fixtures)
    func layoutsAreTheDefinitions(fixture: String) throws {
        var s = self
        let c = try config(fixture)
        let arch = try #require(MoEArchitecture.forModelType(c.modelType))
        let (h, i, e) = (Self.h, Self.i, Self.e)
        var tensors: [(TensorInfo, [Float])] = []
        func add(_ name: String, _ shape: [Int]) -> [Float] {
            let v = s.values(shape.reduce(1, *))
            tensors.append((TensorInfo(name: name, type: .dense(.f32), shape: shape), v))
            return v
        }
        _ = add("model.norm.weight", [h])
        _ = add(arch.routerName(0), [e, h])
        // Per-expert values (for fused architectures the stacks are built from them below).
        var gate: [[Float]] = [], up: [[Float]] = [], down: [[Float]] = []
        for _ in 0..<e { gate.append(s.values(i * h)); up.append(s.values(i * h)); down.append(s.values(h * i)) }
        if let pe = arch.perExpert {
            for x in 0..<e {
                tensors.append((TensorInfo(name: "model.layers.0.\(pe.block).experts.\(x).\(pe.gate).weight", type: .dense(.f32), shape: [i, h]), gate[x]))
                tensors.append((TensorInfo(name: "model.layers.0.\(pe.block).experts.\(x).\(pe.up).weight", type: .dense(.f32), shape: [i, h]), up[x]))
                tensors.append((TensorInfo(name: "model.layers.0.\(pe.block).experts.\(x).\(pe.down).weight", type: .dense(.f32), shape: [h, i]), down[x]))
            }
            if pe.block != "mlp" {
                tensors = tensors.map { t in
                    t.0.name == arch.routerName(0) ? (TensorInfo(name: "model.layers.0.\(pe.block).gate.weight", type: t.0.type, shape: t.0.shape), t.1) : t
                }
            }
        } else if arch.gateUp == .interleavedColumns {
            // gpt_oss: gate_up[x][r][2j] = gate unit j's weight for input r, [2j+1] the up unit's.
            var gu = [Float](), dn = [Float]()
            for x in 0..<e {
                for r in 0..<h { for j in 0..<i { gu.append(gate[x][j * h + r]); gu.append(up[x][j * h + r]) } }
                for j in 0..<i { for r in 0..<h { dn.append(down[x][r * i + j]) } }
            }
            tensors.append((TensorInfo(name: arch.gateUpName(0), type: .dense(.f32), shape: [e, h, 2 * i]), gu))
            tensors.append((TensorInfo(name: arch.downName(0), type: .dense(.f32), shape: [e, i, h]), dn))
            _ = add(arch.gateUpBiasName(0), [e, 2 * i])
            _ = add(arch.downBiasName(0), [e, h])
        } else {
            tensors.append((TensorInfo(name: arch.gateUpName(0), type: .dense(.f32), shape: [e, 2 * i, h]),
                            (0..<e).flatMap { gate[$0] + up[$0] }))
            tensors.append((TensorInfo(name: arch.downName(0), type: .dense(.f32), shape: [e, h, i]), down.flatMap { $0 }))
        }
        let src = MemorySource(tensors)

        func run(_ source: TensorSource, _ layout: MoELayout) throws -> MemorySource {
            let plan = try MoERestructure.plan(source.tensorInfos, config: c, to: layout)
            return MemorySource(try plan.tensors.map { t in
                let b = try plan.bytes(t, from: source)
                return (t.info, b.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) })
            })
        }

        let trainable = try run(src, .trainable)
        if arch.gateUp == .gateRowsFirst {
            // transformers: gate, up = gate_up_proj[e].chunk(2, dim=-2) — rows 0..<I gate, I..<2I up.
            let gu = try #require(trainable.data[arch.gateUpName(0)])
            for x in 0..<e { for r in 0..<i { for col in 0..<h {
                #expect(gu[(x * 2 * i + r) * h + col] == gate[x][r * h + col])
                #expect(gu[(x * 2 * i + i + r) * h + col] == up[x][r * h + col])
            } } }
            #expect(trainable.data[arch.downName(0)] == down.flatMap { $0 })
        }
        let gguf = try run(trainable, .gguf)
        if !arch.ggufFusedGateUp {
            // llama.cpp: ffn_gate_exps[x] is expert x's gate matrix [I, H], ffn_down_exps[x] its down [H, I].
            #expect(gguf.data["blk.0.ffn_gate_exps.weight"] == gate.flatMap { $0 })
            #expect(gguf.data["blk.0.ffn_up_exps.weight"] == up.flatMap { $0 })
        }
        #expect(gguf.data["blk.0.ffn_down_exps.weight"] == down.flatMap { $0 })
        // Round trips: GGUF → trainable → per-expert give back the inputs exactly.
        for layout in [MoELayout.trainable, .perExpert] {
            let back = try run(gguf, layout)
            // Fused architectures: src is already trainable (= their per-expert layout).
            let want = layout == .trainable ? trainable.data : src.data
            #expect(back.data == want, "\(fixture) GGUF → \(layout.rawValue)")
        }
    }
}
