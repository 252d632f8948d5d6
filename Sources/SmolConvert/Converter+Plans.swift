import Foundation
import SmolFormats
import SmolModels
import SmolTensor

extension Converter {
    static func mapping(for modelType: String?, file: String) throws -> GGUFArchitectureMapping {
        guard let modelType else {
            throw SmolError(.invalidArgument, file: file, "no model_type in config.json: cannot tell which architecture this is")
        }
        guard let m = GGUFArchitectureMapping.forModelType(modelType) else {
            let known = GGUFArchitectureMapping.byModelType.keys.sorted().joined(separator: ", ")
            throw SmolError(.unsupported, file: file, "convert between HF and GGUF is not supported for model_type '\(modelType)' yet (supported: \(known))")
        }
        return m
    }

    /// Hugging Face → GGUF with llama.cpp's names, transforms and metadata.
    static func planHFToGGUF(_ ckpt: Checkpoint, _ options: ConvertOptions, _ notes: inout [String])
        throws -> (tensors: [PlannedTensor], metadata: GGUFMetadata) {
        guard let json = ckpt.config else {
            throw SmolError(.invalidArgument, file: ckpt.path, "converting to GGUF needs config.json next to the weights")
        }
        let configPath = (ckpt.folder ?? ckpt.path) + "/config.json"
        let config = try ModelConfig(json: json, file: configPath)
        if let arch = moeArchitecture(config) {
            return try planMoEHFToGGUF(ckpt, config, arch, options, &notes)
        }
        let m = try mapping(for: config.modelType, file: configPath)
        var plan: [PlannedTensor] = []
        for t in ckpt.source.tensorInfos {
            guard let name = m.ggufName(hf: t.name) else {
                if m.isDropped(hf: t.name) {
                    notes.append("dropped \(t.name) (llama.cpp's converter does not write it for \(config.modelType))")
                    continue
                }
                throw SmolError(.unsupported, file: ckpt.path, at: "tensor '\(t.name)'",
                                "no GGUF name for this tensor in \(config.modelType); refusing to drop it silently")
            }
            guard case .dense(let srcType) = t.type else {
                throw SmolError(.unsupported, file: ckpt.path, at: "tensor '\(t.name)'", "unexpected type \(t.type.name)")
            }
            let keep = GGUFArchitectureMapping.keepsF32(gguf: name, shape: t.shape)
            let type = try targetType(t.type, shape: t.shape, outType: options.outType, keepF32: keep, name: t.name, file: ckpt.path)
            let to = TensorInfo(name: name, type: type, shape: t.shape)
            let transform: ((inout [Float]) throws -> Void)?
            if m.transform(hf: t.name, config: config) == .none {
                transform = nil
            } else {
                let hfName = t.name, shape = t.shape
                transform = { values in try m.toGGUF(hf: hfName, values: &values, shape: shape, config: config, sourceDType: srcType) }
            }
            plan.append(planned(ckpt.source, from: t, to: to, transform: transform))
        }
        var meta = m.metadata(from: config, fileType: fileType(plan.map(\.info)))
        if let folder = ckpt.folder {
            for (k, v) in try TokenizerCarry.ggufMetadata(folder: folder, notes: &notes) { meta[k] = v }
        }
        return (plan, meta)
    }

    /// GGUF → Hugging Face: HF names, inverse transforms, config.json (and tokenizer files) from the
    /// metadata. Quantized tensors are dequantized exactly.
    static func planGGUFToHF(_ ckpt: Checkpoint, _ options: ConvertOptions, _ notes: inout [String])
        throws -> (tensors: [PlannedTensor], files: [(name: String, bytes: [UInt8])]) {
        let g = ckpt.gguf!
        guard let arch = g.metadata.string("general.architecture") else {
            throw SmolError.malformed(ckpt.path, at: "metadata", "no general.architecture: cannot tell which architecture this is")
        }
        if let (config, moe) = try moeConfigBeside(ckpt) {
            return try planMoEGGUFToHF(ckpt, config, moe, options, &notes)
        }
        guard let m = GGUFArchitectureMapping.forGGUFArchitecture(arch) else {
            throw SmolError(.unsupported, file: ckpt.path, "convert GGUF → HF is not supported for architecture '\(arch)' yet")
        }
        // The vocabulary size: the metadata's, else the token list's, else the embedding's rows
        // (tokenizer-less GGUFs, such as test models, carry only the last).
        let vocab = g.metadata.int("\(arch).vocab_size") ?? g.metadata.stringArray("tokenizer.ggml.tokens")?.count
            ?? g.tensor("token_embd.weight")?.shape.first
        let configJSON = try m.config(from: g.metadata, hasOutputTensor: g.tensor("output.weight") != nil,
                                      vocabSize: vocab, file: ckpt.path)
        let config = try ModelConfig(json: configJSON, file: ckpt.path)

        // The model's float type: the most common dense float type of the matrices (F32 when they are
        // all quantized). 1-D tensors stored as F32 by the GGUF convention go back to it when exact.
        var counts: [DType: Int] = [:]
        for t in g.tensorInfos where t.shape.count >= 2 {
            if case .dense(let d) = t.type, d.isFloatingPoint { counts[d, default: 0] += 1 }
        }
        let modelType = options.outType.dtype ?? counts.max { $0.value < $1.value }?.key ?? .f32
        var plan: [PlannedTensor] = []
        var quantized = 0
        for t in g.tensorInfos {
            guard let name = m.hfName(gguf: t.name) else {
                notes.append("skipped \(t.name) (generated by llama.cpp's converter, not an HF weight)")
                continue
            }
            if case .block = t.type { quantized += 1 }
            let to: TensorInfo
            let ggufName = t.name, shape = t.shape
            let changes = m.transform(hf: name, config: config) != .none
            if t.shape.count < 2 && modelType != .f32 {
                // Decide per tensor after the transform: narrow only when exact.
                let source = g
                plan.append(PlannedTensor(info: TensorInfo(name: name, type: .dense(modelType), shape: t.shape), produce: {
                    var values = try TensorValues.decode(try source.tensorBytes(ggufName), t)
                    if changes { try m.fromGGUF(gguf: ggufName, values: &values, shape: shape, config: config) }
                    let exact = values.withUnsafeBufferPointer { ElementCodec.isExactlyRepresentable($0, in: modelType) }
                    guard exact || options.outType != .auto else {
                        throw SmolError(.mismatch, file: ckpt.path, at: "tensor '\(ggufName)'",
                                        "F32 values do not fit \(modelType.rawValue) exactly; convert with --outtype f32")
                    }
                    return try TensorValues.encode(values, as: .dense(modelType))
                }, release: { source.release(ggufName) }))
                continue
            }
            let type: TensorType
            if let d = options.outType.dtype { type = .dense(d) } else {
                switch t.type {
                case .dense(let d) where d == .f32 || d == .f16 || d == .bf16: type = t.type
                default: type = .dense(.f32)
                }
            }
            to = TensorInfo(name: name, type: type, shape: t.shape)
            plan.append(planned(g, from: t, to: to, transform: changes ? { values in
                try m.fromGGUF(gguf: ggufName, values: &values, shape: shape, config: config)
            } : nil))
        }
        if quantized > 0 { notes.append("dequantized \(quantized) quantized tensors exactly to \(options.outType.dtype?.rawValue ?? "F32")") }
        var cfg = configJSON
        cfg = cfg.setting("dtype", .string(torchDTypeName(modelType)))
        var files: [(String, [UInt8])] = [("config.json", Array((cfg.serialized(indent: 2, sortKeys: true) + "\n").utf8))]
        files += try TokenizerCarry.huggingFaceFiles(metadata: g.metadata, notes: &notes)
        return (plan, files)
    }

    static func torchDTypeName(_ d: DType) -> String {
        switch d {
        case .f16: return "float16"
        case .bf16: return "bfloat16"
        default: return "float32"
        }
    }

    /// Hugging Face or safetensors → Hugging Face or safetensors: same names, float types as asked,
    /// config.json and tokenizer files carried along.
    static func planHFToHF(_ ckpt: Checkpoint, _ options: ConvertOptions, _ notes: inout [String])
        throws -> (tensors: [PlannedTensor], files: [(name: String, bytes: [UInt8])]) {
        var plan: [PlannedTensor] = []
        for t in ckpt.source.tensorInfos {
            let type = try targetType(t.type, shape: t.shape, outType: options.outType, keepF32: false, name: t.name, file: ckpt.path)
            plan.append(planned(ckpt.source, from: t, to: TensorInfo(name: t.name, type: type, shape: t.shape), transform: nil))
        }
        var files: [(String, [UInt8])] = []
        if let folder = ckpt.folder {
            let fm = FileManager.default
            for name in (try? fm.contentsOfDirectory(atPath: folder).sorted()) ?? [] {
                guard name != SafetensorsCheckpoint.indexFileName, !name.hasSuffix(".safetensors") else { continue }
                let path = (folder as NSString).appendingPathComponent(name)
                var isDir: ObjCBool = false
                guard fm.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue else { continue }
                guard [".json", ".model", ".txt", ".jinja"].contains(where: name.hasSuffix) else { continue }
                guard var data = fm.contents(atPath: path).map(Array.init) else { continue }
                if name == "config.json", let d = options.outType.dtype, var cfg = ckpt.config {
                    cfg = cfg.setting(cfg["torch_dtype"] != nil ? "torch_dtype" : "dtype", .string(torchDTypeName(d)))
                    data = Array((cfg.serialized(indent: 2, sortKeys: true) + "\n").utf8)
                }
                files.append((name, data))
            }
        }
        return (plan, files)
    }
}
