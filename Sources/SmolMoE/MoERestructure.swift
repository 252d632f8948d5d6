import Foundation
import SmolFormats
import SmolModels
import SmolTensor

/// Where one input tensor went.
public struct AccountingLine: Sendable, Equatable {
    public var input: String
    public var elements: Int
    /// Output tensors holding its elements (sorted).
    public var outputs: [String]
}

/// A planned restructure: every output tensor with the recipe that makes it from the input
/// tensors, and the proof that each input tensor's elements all went into the outputs exactly once.
public struct MoEPlan: Sendable {
    public let architecture: MoEArchitecture
    public let from: MoELayout
    public let to: MoELayout
    /// In write order.
    public let tensors: [TensorRef]
    /// One line per input tensor, in input name order.
    public let accounting: [AccountingLine]
    /// For GGUF output: `general.architecture`, `{arch}.block_count` and the `{arch}.expert_*` keys.
    public let ggufMetadata: GGUFMetadata?

    /// Output bytes of one tensor, reading inputs from `source`.
    public func bytes(_ ref: TensorRef, from source: TensorSource) throws -> TensorBytes {
        try ref.recipe.evaluate { try source.tensorBytes($0) }
    }
}

/// Restructures MoE checkpoints between the per-expert, trainable and GGUF layouts
/// (formats/moe-trainable.md). Planning reads tensor infos only; bytes move when written.
public enum MoERestructure {
    /// The layout a set of tensor names is in.
    public static func detectLayout<C: Collection>(_ names: C, _ arch: MoEArchitecture) -> MoELayout where C.Element == String {
        if names.contains(where: { $0.hasPrefix("blk.") || $0 == "token_embd.weight" }) { return .gguf }
        if let pe = arch.perExpert {
            let marker = ".\(pe.block).experts."
            if names.contains(where: { n in
                guard let r = n.range(of: marker) else { return false }
                return n[r.upperBound...].first?.isNumber == true
            }) { return .perExpert }
        } else {
            // gemma4 / gpt_oss ship fused: their on-disk layout is the trainable one.
            return .trainable
        }
        return .trainable
    }

    /// Plans the restructure of `inputs` (in any layout) to `layout`. Throws when an expert the
    /// configuration promises is missing, a tensor has no place in the target layout, or the
    /// accounting finds an input whose elements did not all land in the outputs exactly once.
    public static func plan(_ inputs: [TensorInfo], config: ModelConfig, to layout: MoELayout,
                            from given: MoELayout? = nil) throws -> MoEPlan {
        guard let arch = MoEArchitecture.forModelType(config.modelType) else {
            let known = MoEArchitecture.all.map(\.modelType).joined(separator: ", ")
            throw SmolError(.unsupported, "model_type '\(config.modelType)' is not a mixture-of-experts architecture smolconv restructures (supported: \(known))")
        }
        guard config.moe != nil else {
            throw SmolError(.invalidArgument, "this \(config.modelType) configuration has no experts (enable_moe_block is off?)")
        }
        var byName: [String: TensorInfo] = [:]
        for i in inputs {
            guard byName.updateValue(i, forKey: i.name) == nil else {
                throw SmolError(.invalidArgument, at: "tensor '\(i.name)'", "duplicate tensor name")
            }
        }
        let from = given ?? detectLayout(byName.keys, arch)
        if from == .gguf && layout != .gguf {
            // Made by llama.cpp's converter from the configuration (gemma4's rope_freqs), not weights:
            // nothing in the other layouts holds them.
            for g in generatedGGUFTensors { byName[g] = nil }
        }
        let sizes = byName.mapValues(\.byteCount)

        // Every layout change goes through the trainable layout.
        var steps: [([String: TensorInfo], MoEArchitecture, ModelConfig) throws -> [String: TensorRef]] = []
        switch from {
        case .perExpert: if layout != .perExpert { steps.append(Rewrites.perExpertToTrainable) }
        case .gguf: if layout != .gguf { steps.append(Rewrites.ggufToTrainable) }
        case .trainable: break
        }
        let viaTrainable = from != layout
        if viaTrainable || from == .trainable {
            switch layout {
            case .perExpert: if from != .perExpert { steps.append(Rewrites.trainableToPerExpert) }
            case .gguf: if from != .gguf { steps.append(Rewrites.trainableToGGUF) }
            case .trainable: break
            }
        }
        if steps.isEmpty {
            // Same layout: still check the experts are all there, by a round trip through trainable.
            switch from {
            case .perExpert: _ = try Rewrites.perExpertToTrainable(byName, arch, config)
            case .gguf: _ = try Rewrites.ggufToTrainable(byName, arch, config)
            case .trainable: _ = try Rewrites.trainableToGGUF(byName, arch, config)
            }
        }

        var current: [String: TensorRef] = byName.mapValues { TensorRef.input($0) }
        for step in steps {
            let next = try step(current.mapValues(\.info), arch, config)
            let recipes = current.mapValues(\.recipe)
            current = try next.mapValues { ref in
                TensorRef(ref.info, try ref.recipe.substituting(recipes).simplified(sizes))
            }
        }
        let ordered = order(Array(current.values), layout)
        let accounting = try account(inputs: byName, outputs: ordered)
        return MoEPlan(architecture: arch, from: from, to: layout, tensors: ordered, accounting: accounting,
                       ggufMetadata: layout == .gguf ? ggufMetadata(config, arch) : nil)
    }

    /// GGUF tensors llama.cpp's converter generates from the configuration rather than converts
    /// (`generate_extra_tensors`); left out when leaving the GGUF layout.
    public static let generatedGGUFTensors: Set<String> = ["rope_freqs.weight"]

    /// Proves that every element of every input went into exactly one output position, by name
    /// and element count, and that every output is exactly as large as its recipe.
    public static func account(inputs: [String: TensorInfo], outputs: [TensorRef]) throws -> [AccountingLine] {
        let sizes = inputs.mapValues(\.byteCount)
        var placed: [String: Int] = [:]
        var into: [String: Set<String>] = [:]
        var outBytes = 0
        for o in outputs {
            let c = try o.recipe.contributions(sizes)
            let total = c.values.reduce(0, +)
            guard total == o.info.byteCount, o.recipe.byteCount(sizes) == o.info.byteCount else {
                throw SmolError(.mismatch, at: "tensor '\(o.info.name)'",
                                "accounting: the output needs \(o.info.byteCount) bytes (\(o.info.type.name) \(o.info.shape)) but its recipe takes \(total) bytes from the inputs")
            }
            outBytes += total
            for (k, v) in c {
                placed[k, default: 0] += v
                into[k, default: []].insert(o.info.name)
            }
        }
        var lines: [AccountingLine] = []
        for name in inputs.keys.sorted() {
            let info = inputs[name]!
            let got = placed[name] ?? 0
            let elements = info.elementCount
            func el(_ bytes: Int) -> Int { info.byteCount == 0 ? 0 : bytes / (info.byteCount / max(elements, 1)) }
            if got == 0 {
                throw SmolError(.mismatch, at: "tensor '\(name)'", "accounting: this input (\(elements) elements) went into no output")
            }
            if got != info.byteCount {
                throw SmolError(.mismatch, at: "tensor '\(name)'",
                                "accounting: \(el(got)) elements of its \(elements) went into the outputs (\(got < info.byteCount ? "some dropped" : "some twice"))")
            }
            lines.append(AccountingLine(input: name, elements: elements, outputs: into[name]!.sorted()))
        }
        for k in placed.keys where inputs[k] == nil {
            throw SmolError(.mismatch, at: "tensor '\(k)'", "accounting: an output reads a tensor that is not an input")
        }
        let inBytes = inputs.values.reduce(0) { $0 + $1.byteCount }
        guard inBytes == outBytes else {
            throw SmolError(.mismatch, "accounting: \(inBytes) input bytes but \(outBytes) output bytes")
        }
        return lines
    }

    /// Output order. Safetensors writers sort by themselves; GGUF gets whole-model tensors first
    /// (token embeddings), then blocks in index order, each block's names sorted, then the rest.
    static func order(_ refs: [TensorRef], _ layout: MoELayout) -> [TensorRef] {
        func key(_ name: String) -> (Int, Int, String) {
            if layout == .gguf {
                if let (b, rest) = Rewrites.splitLayer(name, prefix: "blk.") { return (1, b, rest) }
                if name.hasPrefix("token_embd") || name.hasPrefix("per_layer") || name.hasPrefix("rope") { return (0, 0, name) }
                return (2, 0, name)
            }
            return (0, 0, name)
        }
        return refs.sorted { a, b in
            let ka = key(a.info.name), kb = key(b.info.name)
            if ka.0 != kb.0 { return ka.0 < kb.0 }
            if ka.1 != kb.1 { return ka.1 < kb.1 }
            return ka.2.utf8.lexicographicallyPrecedes(kb.2.utf8)
        }
    }

    /// The metadata llama.cpp's converter writes about the experts (`TextModel.set_gguf_parameters`:
    /// expert_count, expert_used_count; Qwen2MoeModel, GptOssModel, Gemma4Model add
    /// expert_feed_forward_length; Qwen2MoeModel expert_shared_feed_forward_length), plus
    /// `general.architecture` and `{arch}.block_count` so the file names its layers. All UINT32,
    /// as gguf-py's `add_expert_count` and friends write them.
    public static func ggufMetadata(_ config: ModelConfig, _ arch: MoEArchitecture) -> GGUFMetadata {
        let a = arch.ggufArchitecture
        var m = GGUFMetadata()
        m["general.architecture"] = .string(a)
        m["\(a).block_count"] = .uint32(UInt32(config.numHiddenLayers))
        if let moe = config.moe {
            m["\(a).expert_count"] = .uint32(UInt32(moe.numExperts))
            m["\(a).expert_used_count"] = .uint32(UInt32(moe.numExpertsPerToken))
            if arch.writesExpertFeedForwardLength {
                m["\(a).expert_feed_forward_length"] = .uint32(UInt32(moe.expertIntermediateSize))
            }
            if let shared = moe.sharedExpertIntermediateSize {
                m["\(a).expert_shared_feed_forward_length"] = .uint32(UInt32(shared))
            }
        }
        return m
    }

    // MARK: Writing

    /// Files of a Hugging Face folder that are not weights and are copied unchanged.
    public static let carriedFiles = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                                      "special_tokens_map.json", "tokenizer.model", "chat_template.jinja", "vocab.json", "merges.txt"]

    /// Writes a planned restructure. GGUF output: one `.gguf` file. Per-expert and trainable:
    /// a folder (created; it must not exist or be empty) with `model.safetensors` (or shards of at
    /// most `maxShardSize` bytes and an index), tensors in the `safetensors` library's order as
    /// transformers' `save_pretrained` writes them, and `carriedFiles` found in `inputFolder`
    /// copied byte for byte. Inputs are never overwritten; each file appears only when complete.
    /// `quantizeExperts` (trainable output only) stores the expert stacks quantized
    /// (ExpertQuantization.swift) and records how in config.json.
    /// - Returns: the paths written.
    @discardableResult
    public static func write(_ plan: MoEPlan, source: TensorSource, to output: String, inputFolder: String?,
                             maxShardSize: Int = 50_000_000_000, protecting inputs: [String] = [],
                             quantizeExperts: ExpertQuantization? = nil) throws -> [String] {
        if quantizeExperts != nil, plan.to != .trainable {
            throw SmolError(.invalidArgument, file: output, "quantized experts exist in the trainable layout only")
        }
        switch plan.to {
        case .gguf:
            let tensors = try plan.tensors.map { ref -> GGUFWriter.Tensor in
                guard case .block(let g) = ref.info.type else {
                    throw SmolError(.invalidArgument, file: output, at: "tensor '\(ref.info.name)'", "internal: GGUF output with a safetensors type")
                }
                return GGUFWriter.Tensor(name: ref.info.name, type: g, shape: ref.info.shape) { try plan.bytes(ref, from: source) }
            }
            try GGUFWriter.write(to: output, metadata: plan.ggufMetadata ?? GGUFMetadata(), tensors: tensors, protecting: inputs)
            return [output]
        case .perExpert, .trainable:
            var tensors: [SafetensorsTensor] = []
            var quantized: [String] = []
            for ref in plan.tensors {
                if let q = quantizeExperts, ExpertQuantization.isExpertStack(ref.info) {
                    let info = ref.info
                    tensors += try q.outputs(for: info) {
                        let bytes = try plan.bytes(ref, from: source)
                        return try bytes.withUnsafeBytes { try ElementCodec.decode(info.type.denseDType!, $0, count: info.elementCount) }
                    }
                    quantized.append(info.name)
                } else {
                    tensors.append(SafetensorsTensor(ref.info) { try plan.bytes(ref, from: source) })
                }
            }
            if let q = quantizeExperts, quantized.isEmpty {
                throw SmolError(.invalidArgument, file: output, "--quantize-experts \(q.method): this model has no F32/F16/BF16 expert stacks to quantize")
            }
            let fm = FileManager.default
            var isDir: ObjCBool = false
            if fm.fileExists(atPath: output, isDirectory: &isDir) {
                guard isDir.boolValue, (try? fm.contentsOfDirectory(atPath: output))?.isEmpty == true else {
                    throw SmolError(.invalidArgument, file: output, "output must be a new (or empty) folder")
                }
            } else {
                do { try fm.createDirectory(atPath: output, withIntermediateDirectories: true) } catch {
                    throw SmolError(.io, file: output, "cannot create the folder: \(error.localizedDescription)")
                }
            }
            var written = try SafetensorsWriter.writeSharded(tensors, to: output, maxShardSize: maxShardSize,
                                                             order: .safetensorsLibrary, protecting: inputs)
            if let inputFolder {
                for f in carriedFiles {
                    let from = (inputFolder as NSString).appendingPathComponent(f)
                    guard fm.fileExists(atPath: from) else { continue }
                    var bytes: [UInt8]
                    do { bytes = Array(try Data(contentsOf: URL(fileURLWithPath: from))) } catch {
                        throw SmolError(.io, file: from, "cannot read: \(error.localizedDescription)")
                    }
                    if f == "config.json", let q = quantizeExperts {
                        // As transformers writes config.json: sorted keys, indent 2, final newline.
                        let cfg = try JSONValue.parse(bytes, file: from).setting(ExpertQuantization.configKey, q.configValue(tensors: quantized))
                        bytes = Array((cfg.serialized(indent: 2, sortKeys: true) + "\n").utf8)
                    }
                    let to = (output as NSString).appendingPathComponent(f)
                    let out = try OutputFile(path: to, protecting: inputs + [from])
                    try out.write(bytes)
                    try out.commit()
                    written.append(to)
                }
            }
            return written
        }
    }
}
