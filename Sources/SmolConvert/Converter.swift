import Foundation
import SmolFormats
import SmolModels
import SmolTensor

/// Options of `smolconv convert`.
public struct ConvertOptions: Sendable {
    /// The float type of the output's weights.
    public enum OutType: String, CaseIterable, Sendable {
        /// Keep each tensor's float type (quantized tensors and F8/F64 become F32, exactly).
        case auto
        case f32, f16, bf16

        var dtype: DType? {
            switch self {
            case .auto: return nil
            case .f32: return .f32
            case .f16: return .f16
            case .bf16: return .bf16
            }
        }
    }

    public var outType: OutType = .auto
    /// Largest safetensors shard written for Hugging Face output (transformers' default, 5 GB... in
    /// decimal units as huggingface_hub counts).
    public var maxShardBytes: Int = 5_000_000_000

    public init() {}
}

/// What the output path asks for.
public enum OutputKind: String, Sendable {
    case gguf
    case safetensorsFile = "safetensors"
    case huggingFaceFolder = "hf"

    /// `*.gguf` → GGUF; `*.safetensors` → one safetensors file; anything else → a Hugging Face folder.
    public static func infer(_ path: String) -> OutputKind {
        if path.hasSuffix(".gguf") { return .gguf }
        if path.hasSuffix(".safetensors") { return .safetensorsFile }
        return .huggingFaceFolder
    }
}

/// What a conversion did.
public struct ConvertSummary: Sendable {
    public var input: String
    public var output: String
    public var inputFormat: CheckpointFormat
    public var outputKind: OutputKind
    public var architecture: String?
    public var tensors: [TensorInfo]
    public var bytesWritten: Int
    public var seconds: Double
    /// Things the user should know: dropped tensors, lossy steps, files not carried.
    public var notes: [String]
}

/// One output tensor of a plan: its encoding and how to produce its bytes from the input.
struct PlannedTensor {
    var info: TensorInfo
    var produce: () throws -> TensorBytes
    var release: () -> Void
}

/// Streaming conversions between Hugging Face folders, safetensors files and GGUF files. One tensor
/// is decoded at a time; unchanged tensors are copied straight from the memory map, and each input
/// tensor's pages are dropped once written, so memory stays bounded whatever the model size.
public enum Converter {
    public typealias Progress = (_ done: Int, _ total: Int, _ tensor: String) -> Void

    public static func convert(input: String, output: String, options: ConvertOptions = ConvertOptions(),
                               progress: Progress? = nil) throws -> ConvertSummary {
        let start = Date()
        let ckpt = try Checkpoint.open(input)
        let kind = OutputKind.infer(output)
        if FileManager.default.fileExists(atPath: output) {
            if OutputFile.sameFile(input, output) || (ckpt.folder.map { OutputFile.sameFile($0, output) } ?? false) {
                throw SmolError(.invalidArgument, file: output, "output would overwrite the input; choose another name")
            }
            if kind == .huggingFaceFolder {
                throw SmolError(.invalidArgument, file: output, "already exists; remove it or choose another folder")
            }
        }
        let protected = [input] + ((ckpt.source as? SafetensorsCheckpoint)?.shards.map(\.path) ?? [])

        var notes: [String] = []
        var written: [TensorInfo] = []
        var bytes = 0
        switch (ckpt.format, kind) {
        case (.gguf, .gguf):
            let plan = try planGGUFToGGUF(ckpt, options, &notes)
            (written, bytes) = try writeGGUF(plan.tensors, metadata: plan.metadata, to: output, protecting: protected, progress)
        case (.huggingFace, .gguf), (.safetensors, .gguf):
            let plan = try planHFToGGUF(ckpt, options, &notes)
            (written, bytes) = try writeGGUF(plan.tensors, metadata: plan.metadata, to: output, protecting: protected, progress)
        case (.gguf, .huggingFaceFolder), (.gguf, .safetensorsFile):
            let plan = try planGGUFToHF(ckpt, options, &notes)
            (written, bytes) = try writeHF(plan.tensors, files: plan.files, kind: kind, to: output,
                                           options: options, protecting: protected, progress)
        case (_, .huggingFaceFolder), (_, .safetensorsFile):
            let plan = try planHFToHF(ckpt, options, &notes)
            (written, bytes) = try writeHF(plan.tensors, files: plan.files, kind: kind, to: output,
                                           options: options, protecting: protected, progress)
        }
        return ConvertSummary(input: input, output: output, inputFormat: ckpt.format, outputKind: kind,
                              architecture: ckpt.architecture, tensors: written, bytesWritten: bytes,
                              seconds: Date().timeIntervalSince(start), notes: notes)
    }

    // MARK: - Type rules

    /// The output type of a float tensor. `keepF32`: GGUF stores 1-D tensors (norms, biases) as F32,
    /// as llama.cpp's converter does.
    static func targetType(_ source: TensorType, shape: [Int], outType: ConvertOptions.OutType,
                           keepF32: Bool, name: String, file: String) throws -> TensorType {
        switch source {
        case .dense(let d) where !d.isFloatingPoint:
            return source // integer tensors pass through unchanged
        default: break
        }
        if keepF32 { return .dense(.f32) }
        if let d = outType.dtype { return .dense(d) }
        switch source {
        case .dense(.f32), .dense(.f16), .dense(.bf16): return source
        default: return .dense(.f32)
        }
    }

    /// The tensor copied as it is, or decoded, transformed and re-encoded.
    static func planned(_ source: TensorSource, from: TensorInfo, to: TensorInfo,
                        transform: ((inout [Float]) throws -> Void)?) -> PlannedTensor {
        let name = from.name
        if transform == nil && from.type == to.type {
            return PlannedTensor(info: to, produce: { try source.tensorBytes(name) }, release: { source.release(name) })
        }
        guard let transform else {
            // A type change only: streamed row chunk by row chunk, never the whole tensor in memory.
            return PlannedTensor(info: to, produce: { TensorValues.streamedConversion(source, from: from, to: to) },
                                 release: { source.release(name) })
        }
        // Transforms (Q/K permutation, norm offsets) need the whole tensor; those tensors are small.
        return PlannedTensor(info: to, produce: {
            var values = try TensorValues.decode(try source.tensorBytes(name), from)
            source.release(name)
            try transform(&values)
            return try TensorValues.encode(values, as: to.type)
        }, release: { source.release(name) })
    }

    // MARK: - Writers

    static func writeGGUF(_ plan: [PlannedTensor], metadata: GGUFMetadata, to path: String,
                          protecting: [String], _ progress: Progress?) throws -> ([TensorInfo], Int) {
        var done = 0
        let tensors = try plan.map { p -> GGUFWriter.Tensor in
            guard let g = p.info.type.ggmlType else {
                throw SmolError(.unsupported, at: "tensor '\(p.info.name)'", "GGUF has no type for \(p.info.type.name)")
            }
            return GGUFWriter.Tensor(name: p.info.name, type: g, shape: p.info.shape, didWrite: {
                p.release()
                done += 1
                progress?(done, plan.count, p.info.name)
            }, bytes: p.produce)
        }
        try GGUFWriter.write(to: path, metadata: metadata, tensors: tensors, protecting: protecting)
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        return (plan.map(\.info), size)
    }

    /// Writes safetensors (one file, or a folder with shards as needed) and the side files
    /// (config.json, tokenizer files) into a temporary folder renamed into place when complete.
    static func writeHF(_ plan: [PlannedTensor], files: [(name: String, bytes: [UInt8])], kind: OutputKind,
                        to path: String, options: ConvertOptions, protecting: [String],
                        _ progress: Progress?) throws -> ([TensorInfo], Int) {
        var done = 0
        let tensors = plan.map { p in
            SafetensorsTensor(p.info, produce: {
                let b = try p.produce()
                done += 1
                progress?(done, plan.count, p.info.name)
                return b
            })
        }
        if kind == .safetensorsFile {
            try SafetensorsWriter.write(tensors, to: path, order: .safetensorsLibrary, protecting: protecting)
            plan.forEach { $0.release() }
            let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            return (plan.map(\.info), size)
        }
        let fm = FileManager.default
        let tmp = path + ".tmp-\(getpid())"
        try? fm.removeItem(atPath: tmp)
        do {
            try fm.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        } catch {
            throw SmolError(.io, file: path, "cannot create the output folder: \(error.localizedDescription)")
        }
        var committed = false
        defer { if !committed { try? fm.removeItem(atPath: tmp) } }
        let total = plan.reduce(0) { $0 + $1.info.byteCount }
        if total > options.maxShardBytes {
            _ = try SafetensorsWriter.writeSharded(tensors, to: tmp, maxShardSize: options.maxShardBytes,
                                                   order: .given, protecting: protecting)
        } else {
            try SafetensorsWriter.write(tensors, to: (tmp as NSString).appendingPathComponent("model.safetensors"),
                                        order: .safetensorsLibrary, protecting: protecting)
        }
        plan.forEach { $0.release() }
        for f in files {
            let out = try OutputFile(path: (tmp as NSString).appendingPathComponent(f.name))
            try out.write(f.bytes)
            try out.commit()
        }
        guard rename(tmp, path) == 0 else {
            throw SmolError(.io, file: path, "cannot move the finished folder into place: \(String(cString: strerror(errno)))")
        }
        committed = true
        var size = 0
        for name in (try? fm.contentsOfDirectory(atPath: path)) ?? [] {
            size += ((try? fm.attributesOfItem(atPath: (path as NSString).appendingPathComponent(name))[.size]) as? Int) ?? 0
        }
        return (plan.map(\.info), size)
    }

    // MARK: - Plans

    /// GGUF → GGUF: same names and metadata; float types changed as asked (dequantizing block types
    /// when a float type is asked for), `general.file_type` updated.
    static func planGGUFToGGUF(_ ckpt: Checkpoint, _ options: ConvertOptions, _ notes: inout [String])
        throws -> (tensors: [PlannedTensor], metadata: GGUFMetadata) {
        let g = ckpt.gguf!
        var plan: [PlannedTensor] = []
        for t in g.tensorInfos {
            var to = t
            if case .block = t.type, options.outType == .auto {
                to.type = t.type // auto keeps quantized tensors as they are
            } else {
                to.type = try targetType(t.type, shape: t.shape, outType: options.outType,
                                         keepF32: t.shape.count < 2 && t.type == .dense(.f32),
                                         name: t.name, file: ckpt.path)
            }
            plan.append(planned(g, from: t, to: to, transform: nil))
        }
        if g.tensorInfos.contains(where: { if case .block = $0.type { return true } else { return false } }) && options.outType != .auto {
            notes.append("dequantized block-quantized tensors exactly to \(options.outType.rawValue.uppercased())")
        }
        var meta = g.metadata
        meta["general.file_type"] = .uint32(UInt32(fileType(plan.map(\.info))))
        return (plan, meta)
    }

    /// llama.cpp's `llama_ftype` for a float output: ALL_F32 = 0, MOSTLY_F16 = 1, MOSTLY_BF16 = 32.
    static func fileType(_ infos: [TensorInfo]) -> Int {
        var counts: [TensorType: Int] = [:]
        for t in infos where t.shape.count >= 2 { counts[t.type, default: 0] += 1 }
        let main = counts.max { $0.value < $1.value }?.key ?? .dense(.f32)
        switch main {
        case .dense(.f16): return 1
        case .dense(.bf16): return 32
        case .block(.q4_0): return 2
        case .block(.q4_1): return 3
        case .block(.q8_0): return 7
        case .block(.q5_0): return 8
        case .block(.q5_1): return 9
        default: return 0
        }
    }
}
