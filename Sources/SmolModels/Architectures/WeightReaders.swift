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
    /// The stored tensor as it is (type and bytes), for weights the model may keep encoded
    /// (block-quantized MoE experts); nil when the reader cannot hand it over unchanged.
    func raw(hf name: String) throws -> (info: TensorInfo, bytes: TensorBytes)?
}

extension HFWeightReader {
    public func normWeighting(for architecture: RMSNormWeighting) throws -> RMSNormWeighting { architecture }
    public func displayName(hf name: String) -> String { name }
    public func raw(hf name: String) throws -> (info: TensorInfo, bytes: TensorBytes)? { nil }
}

/// A checkpoint that already uses HF names (safetensors file or folder). Weights stored quantized
/// the way transformers + bitsandbytes (NF4) or mlx-lm (affine, `mlx` given) save them are
/// dequantized and reported with their original shape (QuantizedWeights.swift).
public struct DirectWeightReader: HFWeightReader {
    public let source: TensorSource
    /// config.json's MLX `"quantization"`, when the checkpoint has one.
    public let mlx: MLXQuantizationConfig?
    /// config.json's `"smolconv_expert_quantization"`: expert stacks stored NF4 or int4.
    public let experts: ExpertQuantization?
    public init(_ source: TensorSource, mlx: MLXQuantizationConfig? = nil, experts: ExpertQuantization? = nil) {
        self.source = source; self.mlx = mlx; self.experts = experts
    }
    public var path: String { source.path }
    public func shape(hf name: String) -> [Int]? {
        if let s = QuantizedWeights.nf4Shape(source, name) { return s }
        if let s = QuantizedWeights.mlxShape(source, name, mlx) { return s }
        if case .int4 = experts, let s = ExpertQuantization.int4Shape(source, name) { return s }
        return source.info(name)?.shape
    }
    public func floats(hf name: String) throws -> [Float] {
        if source.info(QuantizedWeights.nf4StateName(name)) != nil { return try QuantizedWeights.nf4Floats(source, name) }
        if let (module, p) = QuantizedWeights.mlxModule(source, name, mlx) {
            return try QuantizedWeights.mlxFloats(source, name, module, p)
        }
        if case .int4(let g) = experts, ExpertQuantization.int4Shape(source, name) != nil {
            return try ExpertQuantization.int4Floats(source, name, groupSize: g)
        }
        return try loadFloat(source, name)
    }
    public func raw(hf name: String) throws -> (info: TensorInfo, bytes: TensorBytes)? {
        // Stored NF4/MLX/int4 weights are not the tensor the name stands for: callers dequantize.
        guard let info = source.info(name), source.info(QuantizedWeights.nf4StateName(name)) == nil,
              QuantizedWeights.mlxModule(source, name, mlx) == nil, ExpertQuantization.int4Shape(source, name) == nil else { return nil }
        return (info, try source.tensorBytes(name))
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

    /// The stored tensor for `hf` when its bytes are the HF tensor as they are (no row permutation,
    /// no `1 + w` norm): what an engine may keep encoded and compute on directly. Nil otherwise.
    public func encoded(hf name: String) throws -> (info: TensorInfo, bytes: TensorBytes)? {
        guard let g = mapping.ggufName(hf: name), let info = file.tensor(g) else { return nil }
        guard case .none = mapping.transform(hf: name, config: config) else { return nil }
        return (info.tensorInfo, try file.tensorBytes(g))
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
    public static func load(checkpoint ckpt: Checkpoint) throws -> DenseDecoderModel {
        switch ckpt.format {
        case .gguf:
            let reader = try GGUFWeightReader(file: ckpt.gguf!)
            return try load(config: reader.config, weights: reader)
        case .huggingFace, .safetensors:
            guard let json = ckpt.config else {
                throw SmolError(.invalidArgument, file: ckpt.path, "no config.json next to the weights: cannot tell the architecture")
            }
            let configPath = ((ckpt.folder ?? ckpt.path) as NSString).appendingPathComponent("config.json")
            let mlx = try MLXQuantizationConfig(config: json, file: configPath)
            let experts = try ExpertQuantization(config: json, file: configPath)
            return try load(config: try ModelConfig(json: json, file: configPath),
                            weights: DirectWeightReader(ckpt.source, mlx: mlx, experts: experts))
        }
    }

    /// `Checkpoint.open(path)` then `load(checkpoint:)`.
    public static func load(path: String) throws -> DenseDecoderModel {
        try load(checkpoint: try Checkpoint.open(path))
    }
}
