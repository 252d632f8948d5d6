import Foundation
import SmolFormats
import SmolKernels
import SmolTensor

/// Weights by their Hugging Face name, as Float32 in HF layout ([out, in] matrices, HF row order),
/// whatever the checkpoint's format. The loader asks for names and shapes only through this.
public protocol HFWeightReader: Sendable {
    /// For error messages.
    var path: String { get }
    /// The row-major shape of the tensor that holds `hf`, or nil when the checkpoint has none.
    func shape(hf name: String) -> [Int]?
    /// The values, decoded (and dequantized) to Float32 and brought to HF layout.
    func floats(hf name: String) throws -> [Float]
    /// How the model must apply RMSNorm weights read through this reader, given the
    /// architecture's own convention. A reader that hands norms over in another form (GGUF's
    /// stored `1 + w`) says so here.
    func normWeighting(for architecture: RMSNormWeighting) throws -> RMSNormWeighting
    /// The name as the file spells it (GGUF name for GGUF files), for messages.
    func displayName(hf name: String) -> String
    /// A 2-D weight [rows, cols] in HF layout as a linear layer, kept in the checkpoint's encoding
    /// where `QuantizedLinear` has a kernel for it (no F32 copy), else dequantized to F32.
    func linear(hf name: String) throws -> QuantizedLinear
}

extension HFWeightReader {
    public func normWeighting(for architecture: RMSNormWeighting) throws -> RMSNormWeighting { architecture }
    public func displayName(hf name: String) -> String { name }
    public func linear(hf name: String) throws -> QuantizedLinear { try float32Linear(hf: name) }

    /// The weight dequantized to F32 (encodings without a matmul kernel, permuted layouts).
    func float32Linear(hf name: String) throws -> QuantizedLinear {
        guard let shape = shape(hf: name), shape.count == 2 else {
            throw SmolError(.malformed, file: path, at: "tensor '\(displayName(hf: name))'", "not a matrix")
        }
        return QuantizedLinear(f32: try floats(hf: name), rows: shape[0], cols: shape[1])
    }
}

/// A tensor of `source` as a linear weight over its (mapped) bytes, or nil when no kernel takes
/// its encoding or it is not a whole number of blocks per row.
func storedLinear(_ source: TensorSource, _ name: String, displayName: String) throws -> QuantizedLinear? {
    guard let info = source.info(name), info.shape.count == 2, let ggml = info.type.ggmlType,
          QuantKernelTypes.supported.contains(ggml), info.shape[1] % ggml.blockLayout.elements == 0 else { return nil }
    do {
        return try QuantizedLinear(info, bytes: try source.tensorBytes(name))
    } catch let e as SmolError where e.file == nil {
        throw SmolError(e.kind, file: source.path, at: "tensor '\(displayName)'", e.message)
    }
}

/// A checkpoint that already uses HF names (safetensors file or folder).
public struct DirectWeightReader: HFWeightReader {
    public let source: TensorSource
    public init(_ source: TensorSource) { self.source = source }
    public var path: String { source.path }
    public func shape(hf name: String) -> [Int]? { source.info(name)?.shape }
    public func floats(hf name: String) throws -> [Float] { try loadFloat(source, name) }
    public func linear(hf name: String) throws -> QuantizedLinear {
        try storedLinear(source, name, displayName: name) ?? float32Linear(hf: name)
    }
}

/// A GGUF file read through an architecture's `GGUFArchitectureMapping`: llama.cpp names become HF
/// names, block-quantized tensors are dequantized exactly, and llama-style Q/K rows are permuted
/// back (an exact row shuffle).
///
/// Gemma norms: the file stores `1 + w` (computed by the converter in Float32). Subtracting 1 here
/// and adding it back in the kernel would lose the low bits of small `w`, so this reader hands the
/// stored values over unchanged and tells the model to use them as plain `x̂ · w` weights: the
/// result is bit-identical to running the HF checkpoint the file was converted from (the kernel's
/// `1 + w` is the same Float32 sum the converter stored).
public struct GGUFWeightReader: HFWeightReader {
    public let file: GGUFFile
    public let mapping: GGUFArchitectureMapping
    public let config: ModelConfig

    public init(file: GGUFFile, mapping: GGUFArchitectureMapping, config: ModelConfig) {
        self.file = file
        self.mapping = mapping
        self.config = config
    }

    /// Opens the file's architecture mapping and configuration from its metadata.
    public init(file: GGUFFile) throws {
        let config = try ModelConfig(gguf: file)
        guard let arch = file.metadata.string("general.architecture"),
              let mapping = GGUFArchitectureMapping.forGGUFArchitecture(arch) else {
            throw SmolError(.unsupported, file: file.path, at: "metadata key 'general.architecture'", "no tensor name map for this architecture")
        }
        self.init(file: file, mapping: mapping, config: config)
    }

    public var path: String { file.path }

    public func displayName(hf name: String) -> String { mapping.ggufName(hf: name) ?? name }

    public func shape(hf name: String) -> [Int]? {
        guard let g = mapping.ggufName(hf: name) else { return nil }
        return file.tensor(g)?.shape
    }

    public func normWeighting(for architecture: RMSNormWeighting) throws -> RMSNormWeighting {
        // Every RMSNorm weight of a gemma2/3 GGUF is stored as 1 + w (the converter adds 1 to every
        // "*norm.weight"), and those are all the RMSNorm weights these models have.
        guard mapping.storesNormsPlusOne else { return architecture }
        guard architecture == .onePlus else {
            throw SmolError(.unsupported, file: file.path, "\(mapping.ggufArchitecture): norms stored as 1 + w for an x·w architecture")
        }
        return .multiply
    }

    public func linear(hf name: String) throws -> QuantizedLinear {
        guard let g = mapping.ggufName(hf: name), file.tensor(g) != nil else {
            throw SmolError(.malformed, file: file.path, at: "tensor '\(displayName(hf: name))'", "tensor not found")
        }
        guard let stored = try storedLinear(file, g, displayName: g) else { return try float32Linear(hf: name) }
        switch mapping.transform(hf: name, config: config) {
        case .none, .addOne:
            return stored
        case .ropePermute:
            // The permutation moves whole rows: apply it to the encoded rows (exact, same bytes
            // per row) rather than to an F32 copy. Row r of the HF weight is GGUF row perm[r].
            var perm = (0..<stored.rows).map(Float.init)
            try mapping.fromGGUF(gguf: g, values: &perm, shape: [stored.rows], config: config)
            let rowBytes = stored.rowBytes
            var out = [UInt8](repeating: 0, count: stored.bytes.count)
            stored.bytes.withUnsafeBytes { src in
                out.withUnsafeMutableBytes { dst in
                    for (r, p) in perm.enumerated() {
                        dst.baseAddress!.advanced(by: r * rowBytes)
                            .copyMemory(from: src.baseAddress!.advanced(by: Int(p) * rowBytes), byteCount: rowBytes)
                    }
                }
            }
            return try QuantizedLinear(type: stored.type, rows: stored.rows, cols: stored.cols, bytes: TensorBytes(out), name: g)
        }
    }

    public func floats(hf name: String) throws -> [Float] {
        guard let g = mapping.ggufName(hf: name), let info = file.tensor(g) else {
            throw SmolError(.malformed, file: file.path, at: "tensor '\(displayName(hf: name))'", "tensor not found")
        }
        var values = try loadFloat(file, g)
        switch mapping.transform(hf: name, config: config) {
        case .none:
            break
        case .ropePermute:
            try mapping.fromGGUF(gguf: g, values: &values, shape: info.shape, config: config)
        case .addOne:
            break  // kept as stored: the model applies them as x̂ · w (see `normWeighting`)
        }
        return values
    }
}

extension DenseDecoderModel {
    /// Loads any dense checkpoint `Checkpoint.open` accepts: a Hugging Face folder or a
    /// .safetensors file with config.json beside it (HF names), or a GGUF file (configuration
    /// from its metadata, tensors through the architecture's name map, dequantized exactly).
    public static func load(checkpoint ckpt: Checkpoint, storage: LinearStorage = .stored) throws -> DenseDecoderModel {
        switch ckpt.format {
        case .gguf:
            let reader = try GGUFWeightReader(file: ckpt.gguf!)
            return try load(config: reader.config, weights: reader, storage: storage)
        case .huggingFace, .safetensors:
            guard let json = ckpt.config else {
                throw SmolError(.invalidArgument, file: ckpt.path, "no config.json next to the weights: cannot tell the architecture")
            }
            let configPath = ((ckpt.folder ?? ckpt.path) as NSString).appendingPathComponent("config.json")
            return try load(config: try ModelConfig(json: json, file: configPath), source: ckpt.source, storage: storage)
        }
    }

    /// `Checkpoint.open(path)` then `load(checkpoint:)`.
    public static func load(path: String, storage: LinearStorage = .stored) throws -> DenseDecoderModel {
        try load(checkpoint: try Checkpoint.open(path), storage: storage)
    }
}
