import Foundation
import SmolFormats
import SmolModels
import SmolCalibration
import SmolQuant
import SmolTensor

/// Options of `smolconv quantize`.
public struct QuantizeOptions: Sendable {
    public enum Format: String, CaseIterable, Sendable {
        /// GGUF block and k-quant types, llama-quantize's mixes.
        case gguf
        /// MLX's group-wise affine layout (uint32-packed weight, scales, biases) in a Hugging Face folder.
        case mlx
        /// bitsandbytes NF4 as transformers saves it, in a Hugging Face folder.
        case nf4
    }

    public var format: Format = .gguf
    /// GGUF: the llama-quantize mix; nil picks one from `bits`.
    public var mix: QuantMix?
    /// 2…8; the GGUF default mix for 4 bits is Q4_K_M.
    public var bits: Int = 4
    /// MLX group size (default 64) / NF4 block size (default 64).
    public var groupSize: Int?
    /// NF4: bitsandbytes' double quantization (`bnb_4bit_use_double_quant`) of the block absmax.
    public var doubleQuant = false
    public var overrides = QuantOverrides()
    /// A statistics file from `smolconv calibrate` (GGUF and MLX output); required by every method but rtn.
    public var calibration: String?
    public var method: CalibrationMethod = .rtn
    public var gptq = GPTQOptions()
    /// AWQ: the α grid (α = i / (awqGrid − 1)).
    public var awqGrid = 11
    /// GGUF output: the layer matrices the mix quantizes become group-wise affine int-N (MLX's
    /// grid) instead, stored dequantized as F32 so the engine can evaluate them; the summary
    /// counts their bytes as the packed layout with Float16 scale and bias per group.
    public var affine: AffineTarget?

    public init() {}

    /// The GGUF mix for `bits` when none is named: 2 → Q2_K, 3 → Q3_K_M, 4 → Q4_K_M, 5 → Q5_K_M,
    /// 6 → Q6_K, 8 → Q8_0.
    public static func defaultMix(bits: Int) -> QuantMix? {
        switch bits {
        case 2: return .q2_K
        case 3: return .q3_K_M
        case 4: return .q4_K_M
        case 5: return .q5_K_M
        case 6: return .q6_K
        case 8: return .q8_0
        case 16: return .f16
        case 32: return .f32
        default: return nil
        }
    }
}

/// What a quantization did, per tensor and in total.
public struct QuantizeSummary: Sendable {
    public struct Row: Sendable {
        public var name: String
        public var shape: [Int]
        public var from: String
        public var to: String
        public var bytes: Int
        /// The type llama.cpp's rules asked for before a row-length fallback.
        public var fallbackFrom: String?
    }

    public var input: String
    public var output: String
    public var format: QuantizeOptions.Format
    public var mix: String
    public var rows: [Row]
    public var fileBytes: Int
    public var seconds: Double
    public var notes: [String]

    /// MoE experts that received no calibration token: their slice of `tensor` was rounded to
    /// nearest (the type's own quantizer without statistics) instead of the calibrated method.
    public struct ExpertFallback: Sendable, Equatable {
        public var tensor: String
        /// Expert indices, ascending.
        public var experts: [Int]
        public init(tensor: String, experts: [Int]) { self.tensor = tensor; self.experts = experts }
    }
    /// Empty without calibration or when every expert saw tokens.
    public var expertFallbacks: [ExpertFallback] = []

    /// Bits per weight over the tensors that were quantized.
    public var bitsPerWeightQuantized: Double {
        let q = rows.filter { $0.from != $0.to }
        let n = q.reduce(0) { $0 + (Checked.product($1.shape) ?? 0) }
        return n == 0 ? 0 : Double(q.reduce(0) { $0 + $1.bytes }) * 8 / Double(n)
    }

    /// Bits per weight over the whole model.
    public var bitsPerWeight: Double {
        let n = rows.reduce(0) { $0 + (Checked.product($1.shape) ?? 0) }
        return n == 0 ? 0 : Double(rows.reduce(0) { $0 + $1.bytes }) * 8 / Double(n)
    }
}

/// Streaming quantization: one tensor decoded to F32, quantized (rows split over both cores) and
/// written at a time.
public enum Quantizer {
    public static func quantize(input: String, output: String, options: QuantizeOptions,
                                progress: Converter.Progress? = nil) throws -> QuantizeSummary {
        switch options.format {
        case .gguf: return try quantizeToGGUF(input: input, output: output, options: options, progress: progress)
        case .mlx: return try quantizeToMLX(input: input, output: output, options: options, progress: progress)
        case .nf4: return try quantizeToNF4(input: input, output: output, options: options, progress: progress)
        }
    }

    /// A tensor in GGUF naming: its encoding and bytes (for Hugging Face input: F32 with the
    /// HF → GGUF transforms already applied).
    struct SourceTensor {
        var info: TensorInfo
        var raw: () throws -> TensorBytes
        var release: () -> Void
    }

    static func quantizeToGGUF(input: String, output: String, options: QuantizeOptions,
                               progress: Converter.Progress?) throws -> QuantizeSummary {
        let start = Date()
        guard output.hasSuffix(".gguf") else {
            throw SmolError(.invalidArgument, file: output, "GGUF output needs a name ending in .gguf")
        }
        guard let mix = options.mix ?? QuantizeOptions.defaultMix(bits: options.bits) else {
            throw SmolError(.invalidArgument, "no GGUF mix for --bits \(options.bits); name one with --type")
        }
        let ckpt = try Checkpoint.open(input)
        if FileManager.default.fileExists(atPath: output) && OutputFile.sameFile(input, output) {
            throw SmolError(.invalidArgument, file: output, "output would overwrite the input; choose another name")
        }
        var notes: [String] = []
        var tensors: [SourceTensor] = []
        var metadata: GGUFMetadata
        switch ckpt.format {
        case .gguf:
            let g = ckpt.gguf!
            metadata = g.metadata
            if g.tensorInfos.contains(where: { if case .block = $0.type { return true } else { return false } }) {
                notes.append("input is already quantized: its tensors are dequantized exactly, then requantized (rounding twice)")
            }
            for t in g.tensorInfos {
                let name = t.name
                tensors.append(SourceTensor(info: t, raw: { try g.tensorBytes(name) }, release: { g.release(name) }))
            }
        case .huggingFace, .safetensors:
            var convertNotes: [String] = []
            var convertOptions = ConvertOptions()
            convertOptions.outType = .f32
            let plan = try Converter.planHFToGGUF(ckpt, convertOptions, &convertNotes)
            notes += convertNotes
            metadata = plan.metadata
            for p in plan.tensors {
                tensors.append(SourceTensor(info: p.info, raw: p.produce, release: p.release))
            }
        }
        guard let arch = metadata.string("general.architecture") else {
            throw SmolError.malformed(input, at: "metadata", "no general.architecture")
        }
        let facts = QuantModelFacts(
            layerCount: metadata.int("\(arch).block_count") ?? 0,
            headCount: metadata.int("\(arch).attention.head_count") ?? 0,
            headCountKV: metadata.int("\(arch).attention.head_count_kv") ?? metadata.int("\(arch).attention.head_count") ?? 0,
            expertCount: metadata.int("\(arch).expert_count") ?? 0,
            architecture: arch)
        var planned = try QuantMixPlanner.plan(tensors.map { t in
            (t.info.name, t.info.type.ggmlType ?? .f32, t.info.shape)
        }, mix: mix, facts: facts, overrides: options.overrides)
        let calib = try CalibrationContext(options: options, tensors: tensors, planned: planned, facts: facts)
        if options.affine != nil {
            for i in tensors.indices where planned[i].quantize && CalibrationContext.isLayerMatrix(tensors[i].info) { planned[i].type = .f32 }
        }

        // llama-quantize's file order: by layer (tensors without one first), then by name.
        let order = tensors.indices.sorted { a, b in
            let la = QuantMixPlanner.layerOf(tensors[a].info.name), lb = QuantMixPlanner.layerOf(tensors[b].info.name)
            return la != lb ? la < lb : tensors[a].info.name.utf8.lexicographicallyPrecedes(tensors[b].info.name.utf8)
        }
        var rows: [QuantizeSummary.Row] = []
        var writerTensors: [GGUFWriter.Tensor] = []
        var done = 0
        for i in order {
            let t = tensors[i], choice = planned[i]
            let shape = t.info.shape
            let to = TensorInfo(name: t.info.name, type: TensorType(ggml: choice.type), shape: shape)
            let affine = options.affine.flatMap { a in choice.quantize && CalibrationContext.isLayerMatrix(t.info) ? a : nil }
            rows.append(QuantizeSummary.Row(name: t.info.name, shape: shape, from: t.info.type.name,
                                            to: affine.map { "INT\($0.bits)g\($0.groupSize)" } ?? to.type.name,
                                            bytes: affine.map { Int((Double(t.info.elementCount) * $0.bitsPerWeightF16 / 8).rounded(.up)) } ?? to.byteCount,
                                            fallbackFrom: choice.fallbackFrom?.name))
            let produce: () throws -> TensorBytes
            if let replaced = calib.replacement(t.info.name) {
                // AWQ folded its scales into this (unquantized) tensor.
                produce = { defer { t.release() }; return try TensorValues.encode(try replaced(), as: to.type) }
            } else if choice.quantize, calib.handles(t.info, type: choice.type) || affine != nil {
                let type = choice.type
                produce = {
                    defer { t.release() }
                    let values = try TensorValues.decode(try t.raw(), t.info)
                    if let affine {
                        return try TensorValues.encode(try calib.quantizeAffine(t.info, values, affine), as: .dense(.f32))
                    }
                    return TensorBytes(try calib.quantize(t.info, values, type: type))
                }
            } else if !choice.quantize {
                produce = t.raw
            } else {
                // Row chunk by row chunk: decode (dequantize exactly), quantize, emit.
                let rowLength = max(shape.last ?? 1, 1)
                let type = choice.type
                produce = {
                    TensorBytes(count: to.byteCount) { emit in
                        try TensorValues.forEachRowChunk(try t.raw(), t.info) { values, rows in
                            let q: [UInt8]
                            if type.isQuantized {
                                q = try GGUFQuant.quantize(type, values.baseAddress!, rows: rows, rowLength: rowLength)
                            } else {
                                q = try ElementCodec.encode(values, as: to.type.denseDType!)
                            }
                            try q.withUnsafeBytes { try emit($0) }
                        }
                        t.release()
                    }
                }
            }
            writerTensors.append(GGUFWriter.Tensor(name: to.name, type: choice.type, shape: shape, didWrite: {
                t.release()
                done += 1
                progress?(done, order.count, t.info.name)
            }, bytes: produce))
        }
        // llama-quantize copies the metadata, then sets these two keys (removed and appended).
        metadata["general.quantization_version"] = nil
        metadata["general.file_type"] = nil
        metadata["general.quantization_version"] = .uint32(2)
        metadata["general.file_type"] = .uint32(UInt32(mix.fileType))
        try GGUFWriter.write(to: output, metadata: metadata, tensors: writerTensors, protecting: [input])
        notes += calib.summaryNotes()
        let fallbacks = planned.filter { $0.fallbackFrom != nil }
        if !fallbacks.isEmpty {
            let kinds = Dictionary(grouping: fallbacks) { "\($0.fallbackFrom!.name) → \($0.type.name)" }
            notes.append("rows not a multiple of the block size fell back: " + kinds.keys.sorted().map { "\($0) ×\(kinds[$0]!.count)" }.joined(separator: ", "))
        }
        let size = ((try? FileManager.default.attributesOfItem(atPath: output)[.size]) as? Int) ?? 0
        let mixName = mix.rawValue + (options.affine.map { " + layer matrices INT\($0.bits) g\($0.groupSize) (as F32)" } ?? "")
            + (options.method == .rtn ? "" : " (\(options.method.rawValue))")
        return QuantizeSummary(input: input, output: output, format: .gguf, mix: mixName, rows: rows,
                               fileBytes: size, seconds: Date().timeIntervalSince(start), notes: notes,
                               expertFallbacks: calib.expertFallbacks)
    }
}
