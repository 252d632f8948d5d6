import Foundation
import SmolFormats
import SmolModels
import SmolTensor

// PEFT LoRA adapter folders, as `PeftModel.save_pretrained` (peft 0.21) writes them:
//
//   adapter_config.json        json.dumps(LoraConfig.to_dict(), indent=2, sort_keys=True), no final
//                              newline. Keys used here: r, lora_alpha, target_modules (list of module
//                              names), use_rslora, use_dora, bias, fan_in_fan_out, rank_pattern,
//                              alpha_pattern, layers_to_transform, target_parameters,
//                              modules_to_save, base_model_name_or_path, auto_mapping.
//   adapter_model.safetensors  one tensor per LoRA matrix, metadata {"format": "pt"}, tensors in the
//                              safetensors library's order (dtype, then name):
//                              base_model.model.<prefix>layers.<i>.<self_attn|mlp>.<module>.lora_A.weight [r, in]
//                              base_model.model.<prefix>layers.<i>.<self_attn|mlp>.<module>.lora_B.weight [out, r]
//                              (the in-memory adapter name, `.default`, is dropped on save).
//                              MoE `target_parameters` (experts.gate_up_proj / experts.down_proj):
//                              base_model.model.<prefix>layers.<i>.mlp.experts[.base_layer].lora_A.weight [E·r, in]
//                              …lora_B.weight [out, E·r]; one wrapper per parameter, the first-listed
//                              innermost (`.base_layer`), target_parameters saved in set order.

public enum PEFTAdapter {
    public static let configFile = "adapter_config.json"
    public static let weightsFile = "adapter_model.safetensors"

    /// Reads a PEFT LoRA adapter folder for a model of `spec`, checking every matrix's shape.
    /// Returns the adapter and the configuration JSON as read (kept so a save writes it back).
    public static func read(directory: String, spec: DenseDecoderSpec, namePrefix: String = "model.") throws
        -> (adapter: LoRAAdapter, configJSON: JSONValue) {
        let configPath = (directory as NSString).appendingPathComponent(configFile)
        guard let data = FileManager.default.contents(atPath: configPath) else {
            throw SmolError(.invalidArgument, file: configPath, "cannot read the adapter configuration")
        }
        let json = try JSONValue.parse(Array(data), file: configPath)
        guard json.objectValue != nil else { throw SmolError.malformed(configPath, at: "top level", "not a JSON object") }
        if let t = json["peft_type"]?.stringValue, t != "LORA" {
            throw SmolError(.unsupported, file: configPath, at: "peft_type", "'\(t)' adapters are not supported (only LORA)")
        }
        guard let r = json["r"]?.intValue, r > 0, r <= 65536 else {
            throw SmolError.malformed(configPath, at: "r", "missing or not a positive integer")
        }
        guard let alpha = json["lora_alpha"]?.doubleValue, alpha.isFinite else {
            throw SmolError.malformed(configPath, at: "lora_alpha", "missing or not a number")
        }
        for (key, allowed) in [("use_dora", JSONValue.bool(false)), ("fan_in_fan_out", .bool(false)), ("bias", .string("none"))] {
            if let v = json[key], !v.isNull, v != allowed {
                throw SmolError(.unsupported, file: configPath, at: key, "\(v) is not supported (only \(allowed))")
            }
        }
        for key in ["rank_pattern", "alpha_pattern"] {
            if let o = json[key]?.objectValue, o.count > 0 {
                throw SmolError(.unsupported, file: configPath, at: key, "per-module ranks / alphas are not supported")
            }
        }
        for key in ["layers_to_transform", "modules_to_save", "trainable_token_indices"] {
            if let v = json[key], !v.isNull, v.arrayValue?.isEmpty != true {
                throw SmolError(.unsupported, file: configPath, at: key, "\(v) is not supported")
            }
        }
        guard let list = json["target_modules"]?.arrayValue else {
            throw SmolError(.unsupported, file: configPath, at: "target_modules", "only a list of module names is supported")
        }
        var targets: [LoRAModule] = []
        for v in list {
            guard let s = v.stringValue, let m = LoRAModule(rawValue: s) else {
                throw SmolError(.unsupported, file: configPath, at: "target_modules",
                                "\(v) is not one of \(LoRAModule.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            guard !m.isExperts else {
                throw SmolError(.unsupported, file: configPath, at: "target_modules", "\(v) is not a module name")
            }
            targets.append(m)
        }
        // MoE experts: `target_parameters` such as "mlp.experts.gate_up_proj", in wrapping order.
        var expertOrder: [LoRAModule] = [], expertPrefix = "mlp."
        if let tp = json["target_parameters"], !tp.isNull {
            for v in tp.arrayValue ?? [] {
                guard let s = v.stringValue,
                      let m = [LoRAModule.expertsGateUp, .expertsDown].first(where: { s == "experts." + $0.rawValue.dropFirst(8) || s.hasSuffix("." + $0.rawValue) }) else {
                    throw SmolError(.unsupported, file: configPath, at: "target_parameters",
                                    "\(v) is not supported (only <prefix>experts.gate_up_proj and <prefix>experts.down_proj)")
                }
                expertPrefix = String(s.dropLast(m.rawValue.count))
                expertOrder.append(m)
            }
        }
        targets += expertOrder
        let config = LoRAConfig(rank: r, alpha: alpha, targets: targets.sorted(),
                                useRSLoRA: json["use_rslora"]?.boolValue ?? false,
                                baseModel: json["base_model_name_or_path"]?.stringValue)

        let weightsPath = (directory as NSString).appendingPathComponent(weightsFile)
        let file = try SafetensorsFile(path: weightsPath)
        var pairs: [LoRAKey: (a: [Float]?, b: [Float]?, shapeA: [Int], shapeB: [Int])] = [:]
        let head = "base_model.model." + namePrefix + "layers."
        var moduleOfPath: [String: LoRAModule] = [:]
        for m in LoRAModule.linears { moduleOfPath["\(m.parent).\(m.rawValue)"] = m }
        // Experts: PEFT nests one wrapper per target parameter in the order the LoraConfig listed
        // them, but saves target_parameters as a set (any order), so which of `experts` and
        // `experts.base_layer` holds which parameter is read from the shapes: gate_up has
        // A [E·r, D] and B [2I, E·r], down A [E·r, I] and B [D, E·r] (D = I and 2I = D cannot both hold).
        var expertPaths: [LoRAModule: String] = [:]
        if !expertOrder.isEmpty {
            var shapesOfPath: [String: (a: [Int]?, b: [Int]?, layer: Int)] = [:]
            for info in file.tensorInfos where info.name.hasPrefix(head) {
                let rest = info.name.dropFirst(head.count)
                guard let dot = rest.firstIndex(of: "."), let layer = Int(rest[..<dot]), layer >= 0, layer < spec.layers.count,
                      spec.layers[layer].moe != nil, rest.hasSuffix(".lora_A.weight") || rest.hasSuffix(".lora_B.weight") else { continue }
                let path = String(rest[rest.index(after: dot)...].dropLast(".lora_A.weight".count))
                guard path.hasPrefix(expertPrefix + "experts") else { continue }
                var e = shapesOfPath[path] ?? (nil, nil, layer)
                if rest.hasSuffix(".lora_A.weight") { e.a = info.shape } else { e.b = info.shape }
                shapesOfPath[path] = e
            }
            for (path, e) in shapesOfPath {
                guard let a = e.a, let b = e.b, a.count == 2, b.count == 2, let moe = spec.layers[e.layer].moe else { continue }
                let D = spec.hiddenSize, I = moe.intermediateSize
                let module: LoRAModule
                if a[1] == D && b[0] == 2 * I { module = .expertsGateUp } else if a[1] == I && b[0] == D { module = .expertsDown } else {
                    throw SmolError(.mismatch, file: weightsPath, at: "layer \(e.layer) \(path)",
                                    "LoRA shapes \(a) / \(b) fit neither experts.gate_up_proj nor experts.down_proj")
                }
                guard expertOrder.contains(module) else {
                    throw SmolError(.mismatch, file: weightsPath, at: "layer \(e.layer) \(path)", "\(module.rawValue) is not in target_parameters")
                }
                if let other = expertPaths[module], other != path {
                    throw SmolError(.malformed, file: weightsPath, at: path, "\(module.rawValue) also held by \(other)")
                }
                expertPaths[module] = path
            }
        }
        for (m, path) in expertPaths { moduleOfPath[path] = m }
        for info in file.tensorInfos {
            let name = info.name
            guard name.hasPrefix(head) else {
                throw SmolError(.unsupported, file: weightsPath, at: "tensor '\(name)'", "not a LoRA matrix of a decoder layer")
            }
            // <i>.<module path>.lora_<A|B>.weight
            let rest = name.dropFirst(head.count)
            let isA = rest.hasSuffix(".lora_A.weight")
            guard isA || rest.hasSuffix(".lora_B.weight"), let dot = rest.firstIndex(of: "."),
                  let layer = Int(rest[..<dot]), layer >= 0, layer < spec.layers.count,
                  let module = moduleOfPath[String(rest[rest.index(after: dot)...].dropLast(".lora_A.weight".count))] else {
                throw SmolError(.unsupported, file: weightsPath, at: "tensor '\(name)'", "not a LoRA matrix this model has")
            }
            guard targets.contains(module) else {
                throw SmolError(.mismatch, file: weightsPath, at: "tensor '\(name)'", "module \(module.rawValue) is not in target_modules")
            }
            guard let (inDim, outDim) = LoRAAdapter.shape(of: module, layer: spec.layers[layer], hidden: spec.hiddenSize) else {
                throw SmolError(.mismatch, file: weightsPath, at: "tensor '\(name)'", "layer \(layer) has no \(module.rawValue)")
            }
            let rank = r * (module.isExperts ? (spec.layers[layer].moe?.experts ?? 1) : 1)   // experts: E·r
            let expected = isA ? [rank, inDim] : [outDim, rank]
            guard info.shape == expected else {
                throw SmolError(.mismatch, file: weightsPath, at: "tensor '\(name)'", "shape \(info.shape), expected \(expected) (r = \(r))")
            }
            let values = try loadFloat(file, name)
            let key = LoRAKey(layer: layer, module: module)
            var entry = pairs[key] ?? (nil, nil, [rank, inDim], [outDim, rank])
            if isA { entry.a = values } else { entry.b = values }
            pairs[key] = entry
        }
        var out: [LoRAKey: LoRAPair] = [:]
        for (key, e) in pairs {
            guard let a = e.a, let b = e.b else {
                throw SmolError.malformed(weightsPath, at: "layer \(key.layer) \(key.module.rawValue)", "lora_A or lora_B missing")
            }
            out[key] = LoRAPair(a: a, b: b, rank: e.shapeA[0], inDim: e.shapeA[1], outDim: e.shapeB[0])
        }
        // Every targeted linear the model has must be adapted (PEFT adapts them all).
        for (i, l) in spec.layers.enumerated() {
            for m in targets where LoRAAdapter.shape(of: m, layer: l, hidden: spec.hiddenSize) != nil {
                if out[LoRAKey(layer: i, module: m)] == nil {
                    throw SmolError.malformed(weightsPath, at: "layer \(i) \(m.rawValue)", "targeted module without LoRA weights")
                }
            }
        }
        return (LoRAAdapter(config: config, pairs: out, namePrefix: namePrefix, expertPaths: expertPaths), json)
    }

    /// The configuration PEFT 0.21 writes for a LoRA adapter with default options.
    public static func defaultConfigJSON(_ config: LoRAConfig, baseModelClass: String?, modelType: String?,
                                         targetParameters: [String] = []) -> JSONValue {
        var pairs: [(String, JSONValue)] = [
            ("alora_invocation_tokens", .null), ("alpha_pattern", .object(JSONObject())), ("arrow_config", .null),
        ]
        if let cls = baseModelClass, let type = modelType {
            // PEFT records the model class when task_type is None. The module path follows
            // transformers' layout: models/<family>/modeling_<family>.py (text configs drop "_text").
            let family = type.hasSuffix("_text") ? String(type.dropLast(5)) : type
            pairs.append(("auto_mapping", .object(JSONObject([
                ("base_model_class", .string(cls)),
                ("parent_library", .string("transformers.models.\(family).modeling_\(family)")),
            ]))))
        }
        pairs += [
            ("base_model_name_or_path", config.baseModel.map { JSONValue.string($0) } ?? .null), ("bias", .string("none")),
            ("corda_config", .null), ("ensure_weight_tying", .bool(false)), ("eva_config", .null),
            ("exclude_modules", .null), ("fan_in_fan_out", .bool(false)), ("inference_mode", .bool(true)),
            ("init_lora_weights", .bool(true)), ("kasa_config", .null), ("layer_replication", .null),
            ("layers_pattern", .null), ("layers_to_transform", .null), ("loftq_config", .object(JSONObject())),
            ("lora_alpha", alphaJSON(config.alpha)), ("lora_bias", .bool(false)), ("lora_dropout", .double(0)),
            ("lora_ga_config", .null), ("megatron_config", .null), ("megatron_core", .string("megatron.core")),
            ("modules_to_save", .null), ("monteclora_config", .null), ("peft_type", .string("LORA")),
            ("peft_version", .string("0.21.0")), ("qalora_group_size", .int(16)), ("r", .int(config.rank)),
            ("rank_pattern", .object(JSONObject())), ("revision", .null),
            ("target_modules", .array(config.targets.filter { !$0.isExperts }.sorted().map { .string($0.rawValue) })),
            ("target_parameters", targetParameters.isEmpty ? .null : .array(targetParameters.map { .string($0) })), ("task_type", .null), ("trainable_token_indices", .null),
            ("use_bdlora", .null), ("use_dora", .bool(false)), ("use_qalora", .bool(false)),
            ("use_rslora", .bool(config.useRSLoRA)), ("velora_config", .null),
        ]
        return .object(JSONObject(pairs))
    }

    static func alphaJSON(_ a: Double) -> JSONValue {
        a == a.rounded() && abs(a) < 1e15 ? .int(Int(a)) : .double(a)
    }

    /// Writes `adapter` as a PEFT folder (created when missing). `configJSON`: a configuration read
    /// with the adapter, written back with r, lora_alpha and target_modules updated (other keys
    /// kept); nil writes `defaultConfigJSON`. Both files go through a temporary name.
    public static func write(_ adapter: LoRAAdapter, to directory: String, configJSON: JSONValue? = nil,
                             baseModelClass: String? = nil, modelType: String? = nil, protecting inputs: [String] = []) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // target_parameters in wrapping order: the innermost (most ".base_layer"s) first.
        let targetParameters = adapter.expertPaths.sorted { $0.value.count > $1.value.count }.map { m, path in
            path.replacingOccurrences(of: ".base_layer", with: "") + "." + m.rawValue.dropFirst("experts.".count)
        }
        var json = configJSON ?? defaultConfigJSON(adapter.config, baseModelClass: baseModelClass, modelType: modelType,
                                                   targetParameters: targetParameters)
        if configJSON != nil {
            json = json.setting("r", .int(adapter.config.rank)).setting("lora_alpha", alphaJSON(adapter.config.alpha))
            // Keep the file's order of target_modules when the set is unchanged.
            let old = Set(json["target_modules"]?.arrayValue?.compactMap(\.stringValue) ?? [])
            let linears = adapter.config.targets.filter { !$0.isExperts }
            if old != Set(linears.map(\.rawValue)) {
                json = json.setting("target_modules", .array(linears.sorted().map { .string($0.rawValue) }))
            }
        }
        let tensors = adapter.namedTensors().map { t in
            SafetensorsTensor(TensorInfo(name: t.name, type: .dense(.f32), shape: t.shape)) { TensorBytes(elements: t.values) }
        }
        try SafetensorsWriter.write(tensors, to: (directory as NSString).appendingPathComponent(weightsFile),
                                    order: .safetensorsLibrary, protecting: inputs)
        let out = try OutputFile(path: (directory as NSString).appendingPathComponent(configFile), protecting: inputs)
        try out.write(Array(JSONWriter.python(json, indent: 2, sortKeys: true).utf8))
        try out.commit()
    }
}
