import Foundation
import SmolFormats
import SmolModels
import SmolMoE
import SmolTensor

// `smolconv convert` for the Mixture-of-Experts architectures (qwen2_moe, qwen3_moe, mixtral, olmoe,
// gemma4, gpt_oss). Tensors go through SmolMoE's restructure (MoERestructure.plan: the same
// recipes, and the same accounting that proves every input element lands in exactly one output,
// as `moe restructure`), then each output takes its `--outtype` as llama.cpp's converter stores it
// (TextModel.prepare_tensors: 1-D tensors, norms, routers and biases F32; the rest the outtype).
// Metadata: GGUFArchitectureMapping.moeMetadata (convert_hf_to_gguf.py's set_gguf_parameters);
// tensors the converter generates (gemma4's rope_freqs) are written first, as it writes them.
//
// GGUF → HF goes back through the same rewrite, to the layout the checkpoints ship in (per-expert
// for qwen/mixtral/olmoe, fused for gemma4/gpt_oss), with the model's config.json read from beside
// the GGUF file (GGUF metadata does not hold everything transformers' config needs).
extension Converter {
    /// The MoE architecture of a configuration, or nil for a dense one.
    static func moeArchitecture(_ config: ModelConfig) -> MoEArchitecture? {
        guard let arch = MoEArchitecture.forModelType(config.modelType), config.moe != nil else { return nil }
        return arch
    }

    /// Hugging Face MoE checkpoint (per-expert, trainable or fused) → GGUF in llama.cpp's layout.
    static func planMoEHFToGGUF(_ ckpt: Checkpoint, _ config: ModelConfig, _ arch: MoEArchitecture,
                                _ options: ConvertOptions, _ notes: inout [String])
        throws -> (tensors: [PlannedTensor], metadata: GGUFMetadata) {
        let plan = try MoERestructure.plan(ckpt.source.tensorInfos, config: config, to: .gguf)
        let view = MoEPlanSource(plan: plan, source: ckpt.source)
        var tensors: [PlannedTensor] = []
        for (name, values) in try arch.mapping.generatedTensors(config: config) {
            let info = TensorInfo(name: name, type: .dense(.f32), shape: [values.count])
            tensors.append(PlannedTensor(info: info, produce: { try TensorValues.encode(values, as: .dense(.f32)) }, release: {}))
            notes.append("generated \(name) (\(values.count) values) as llama.cpp's converter does for \(config.modelType)")
        }
        for t in view.tensorInfos {
            let keep = GGUFArchitectureMapping.keepsF32(gguf: t.name, shape: t.shape)
            let type = try targetType(t.type, shape: t.shape, outType: options.outType, keepF32: keep, name: t.name, file: ckpt.path)
            tensors.append(planned(view, from: t, to: TensorInfo(name: t.name, type: type, shape: t.shape), transform: nil))
        }
        let stacked = plan.accounting.filter { $0.input.contains("experts") }.count
        notes.append("experts restructured to llama.cpp's layout (\(plan.from.rawValue) → gguf): \(plan.accounting.count) input tensors → \(plan.tensors.count) GGUF tensors, every input element placed exactly once (\(stacked) expert inputs)")
        var meta = try arch.mapping.moeMetadata(from: config, fileType: fileType(tensors.map(\.info)))
        if config.modelType == "olmoe", config.rmsNormEps != 1e-5 {
            notes.append("olmoe: layer_norm_rms_epsilon written as 1e-5 (llama.cpp's converter ignores config.json's \(config.rmsNormEps))")
        }
        if let folder = ckpt.folder {
            for (k, v) in try TokenizerCarry.ggufMetadata(folder: folder, notes: &notes) { meta[k] = v }
        }
        return (tensors, meta)
    }

    /// The config.json beside a GGUF file, when the file holds MoE expert stacks and the config
    /// names an MoE architecture; nil otherwise.
    static func moeConfigBeside(_ ckpt: Checkpoint) throws -> (ModelConfig, MoEArchitecture)? {
        guard ckpt.source.tensorInfos.contains(where: { $0.name.contains("_exps.") }) else { return nil }
        let folder = URL(fileURLWithPath: ckpt.path).deletingLastPathComponent()
        guard FileManager.default.fileExists(atPath: folder.appendingPathComponent("config.json").path) else {
            throw SmolError(.invalidArgument, file: ckpt.path,
                            "this GGUF holds mixture-of-experts stacks; converting it back needs the model's config.json beside it (GGUF metadata does not say everything transformers' config needs)")
        }
        let config = try ModelConfig.load(folder: folder)
        guard let arch = moeArchitecture(config) else {
            throw SmolError(.mismatch, file: folder.appendingPathComponent("config.json").path,
                            "model_type '\(config.modelType)' is not a mixture-of-experts architecture, but the GGUF holds expert stacks")
        }
        if let a = ckpt.gguf?.metadata.string("general.architecture"), a != arch.ggufArchitecture {
            throw SmolError(.mismatch, file: ckpt.path, at: "metadata key 'general.architecture'",
                            "is '\(a)', but config.json's \(config.modelType) converts to '\(arch.ggufArchitecture)'")
        }
        return (config, arch)
    }

    /// GGUF (llama.cpp's MoE layout) → Hugging Face: the restructure back to the layout the
    /// architecture's checkpoints ship in; block-quantized tensors dequantized exactly to F32 first.
    static func planMoEGGUFToHF(_ ckpt: Checkpoint, _ config: ModelConfig, _ arch: MoEArchitecture,
                                _ options: ConvertOptions, _ notes: inout [String])
        throws -> (tensors: [PlannedTensor], files: [(name: String, bytes: [UInt8])]) {
        let g = ckpt.gguf!
        let dense = DequantizedView(g)
        if dense.dequantized > 0 {
            notes.append("dequantized \(dense.dequantized) quantized tensors exactly to F32")
        }
        let layout: MoELayout = arch.perExpert != nil ? .perExpert : .trainable
        let plan = try MoERestructure.plan(dense.tensorInfos, config: config, to: layout, from: .gguf)
        let skipped = Set(dense.tensorInfos.map(\.name)).subtracting(plan.accounting.map(\.input))
        for s in skipped.sorted() { notes.append("skipped \(s) (generated by llama.cpp's converter, not an HF weight)") }
        let view = MoEPlanSource(plan: plan, source: dense)

        // The model's float type: the most common float type of the matrices; F32 tensors the GGUF
        // convention keeps (norms, routers, biases) go back to it when exact.
        var counts: [DType: Int] = [:]
        for t in view.tensorInfos where t.shape.count >= 2 {
            if let d = t.type.denseDType, d.isFloatingPoint { counts[d, default: 0] += 1 }
        }
        let modelType = options.outType.dtype ?? counts.max { $0.value < $1.value || ($0.value == $1.value && $0.key.rawValue > $1.key.rawValue) }?.key ?? .f32
        var tensors: [PlannedTensor] = []
        for t in view.tensorInfos {
            let to = TensorInfo(name: t.name, type: .dense(modelType), shape: t.shape)
            if t.type == to.type || t.type.denseDType?.isFloatingPoint != true {
                tensors.append(planned(view, from: t, to: t, transform: nil))
            } else if options.outType == .auto && t.type == .dense(.f32) {
                let name = t.name
                tensors.append(PlannedTensor(info: to, produce: {
                    let values = try TensorValues.decode(try view.tensorBytes(name), t)
                    guard values.withUnsafeBufferPointer({ ElementCodec.isExactlyRepresentable($0, in: modelType) }) else {
                        throw SmolError(.mismatch, file: ckpt.path, at: "tensor '\(name)'",
                                        "F32 values do not fit \(modelType.rawValue) exactly; convert with --outtype f32")
                    }
                    return try TensorValues.encode(values, as: to.type)
                }, release: { view.release(name) }))
            } else {
                tensors.append(planned(view, from: t, to: to, transform: nil))
            }
        }
        let configPath = URL(fileURLWithPath: ckpt.path).deletingLastPathComponent().appendingPathComponent("config.json").path
        var cfg = config.json
        cfg = cfg.setting(cfg["torch_dtype"] != nil ? "torch_dtype" : "dtype", .string(torchDTypeName(modelType)))
        notes.append("config.json from \(configPath)")
        var files: [(String, [UInt8])] = [("config.json", Array((cfg.serialized(indent: 2, sortKeys: true) + "\n").utf8))]
        files += try TokenizerCarry.huggingFaceFiles(metadata: g.metadata, notes: &notes)
        return (tensors, files)
    }
}
