import Foundation
import SmolFormats
import SmolQuant
import SmolTensor

// The quantized trainable layout (formats/moe-trainable.md, "Quantized trainable layout", version 1).
// Only the stacked expert parameters change; for a stack P = `….experts.gate_up_proj` [E, 2I, H]
// (gpt_oss [E, H, 2I]) or `….experts.down_proj` [E, H, I] (gpt_oss [E, I, H]):
//
// nf4 — P flattened row-major and quantized as `bitsandbytes.functional.quantize_4bit(P,
//   blocksize=B, quant_type="nf4")` (B = 64 by default), stored under bitsandbytes' names:
//     P                                   U8  [E·R·C/2, 1]   two codes per byte, first in the high nibble
//     P.absmax                            F32 [E·R·C/B]      per block
//     P.quant_map                         F32 [16]           the NF4 code
//     P.quant_state.bitsandbytes__nf4     U8  [json]         {"quant_type": "nf4", "blocksize": B,
//                                                             "dtype": …, "shape": [E, R, C]}
//   R·C must be a multiple of B, so that no block straddles two experts (each expert's blocks are its
//   own: expert e is bytes e·R·C/2 ..< (e+1)·R·C/2 of P and blocks e·R·C/B ..< (e+1)·R·C/B).
//
// int4 — MLX affine 4-bit along the last axis (`mx.quantize(P, group_size=G, bits=4)`; an [E, R, C]
//   stack quantizes as the [E·R, C] matrix), G = 64 by default:
//     P          U32 [E, R, C/8]   little-endian nibbles, element j of a row at bits 4j … 4j+3
//     P.scales   [E, R, C/G]       in P's original float dtype (as mx.quantize on that dtype)
//     P.biases   [E, R, C/G]       value = scale · q + bias
//
// config.json gains `"smolconv_expert_quantization": {"version": 1, "method": "nf4"|"int4",
// "bits": 4, "block_size"|"group_size": N, "tensors": [every P]}`; every other key and tensor is
// kept as it is.

/// How the expert stacks of the trainable layout are quantized.
public enum ExpertQuantization: Sendable, Equatable {
    /// bitsandbytes NF4, blocks of `blockSize` (64 as bitsandbytes' default) over the flattened stack.
    case nf4(blockSize: Int)
    /// MLX affine 4-bit, groups of `groupSize` along each row.
    case int4(groupSize: Int)

    public static let configKey = "smolconv_expert_quantization"
    public static let version = 1

    public var method: String {
        switch self {
        case .nf4: return "nf4"
        case .int4: return "int4"
        }
    }

    /// A short label for tables ("NF4 b64", "int4 g64").
    public var label: String {
        switch self {
        case .nf4(let b): return "NF4 b\(b)"
        case .int4(let g): return "int4 g\(g)"
        }
    }

    /// Reads `config["smolconv_expert_quantization"]`; nil when the configuration has none.
    public init?(config: JSONValue, file: String) throws {
        guard let q = config[Self.configKey]?.objectValue else { return nil }
        func fail(_ m: String) -> SmolError { .malformed(file, at: "key '\(Self.configKey)'", m) }
        guard let v = q["version"]?.intValue, v == Self.version else {
            throw SmolError(.unsupported, file: file, at: "key '\(Self.configKey).version'",
                            "quantized trainable layout version \(q["version"]?.intValue.map(String.init) ?? "missing") is not supported (this build reads version \(Self.version))")
        }
        switch q["method"]?.stringValue {
        case "nf4":
            guard let b = q["block_size"]?.intValue else { throw fail("nf4 needs an integer block_size") }
            self = .nf4(blockSize: b)
        case "int4":
            guard let g = q["group_size"]?.intValue else { throw fail("int4 needs an integer group_size") }
            self = .int4(groupSize: g)
        case let m:
            throw SmolError(.unsupported, file: file, at: "key '\(Self.configKey).method'", "method '\(m ?? "missing")' is not supported (nf4 or int4)")
        }
    }

    public init(method: String, size: Int?) throws {
        switch method {
        case "nf4": self = .nf4(blockSize: size ?? 64)
        case "int4": self = .int4(groupSize: size ?? 64)
        default: throw SmolError(.invalidArgument, "--quantize-experts takes nf4 or int4, not '\(method)'")
        }
    }

    /// The configuration block written into config.json.
    public func configValue(tensors: [String]) -> JSONValue {
        var m: [(String, JSONValue)] = [("version", .int(Self.version)), ("method", .string(method)), ("bits", .int(4))]
        switch self {
        case .nf4(let b): m.append(("block_size", .int(b)))
        case .int4(let g): m.append(("group_size", .int(g)))
        }
        m.append(("tensors", .array(tensors.map(JSONValue.string))))
        return .object(JSONObject(m))
    }

    /// Whether `info` is an expert stack this layout quantizes.
    public static func isExpertStack(_ info: TensorInfo) -> Bool {
        guard info.shape.count == 3, case .dense(let d) = info.type, [.f32, .f16, .bf16].contains(d) else { return false }
        return info.name.hasSuffix("experts.gate_up_proj") || info.name.hasSuffix("experts.down_proj")
    }

    /// Checks that a stack can be quantized this way; the message says what to change.
    public func validate(_ info: TensorInfo) throws {
        let s = info.shape, perExpert = s[1] * s[2]
        switch self {
        case .nf4(let b):
            guard [32, 64, 128, 256, 512, 1024, 2048, 4096].contains(b) else {
                throw SmolError(.invalidArgument, "NF4 block size \(b) is not supported (a power of two from 32 to 4096; bitsandbytes' default is 64)")
            }
            guard perExpert % b == 0 else {
                throw SmolError(.unsupported, at: "tensor '\(info.name)'",
                                "\(perExpert) elements per expert are not whole NF4 blocks of \(b): blocks would straddle experts (pass a smaller --group-size)")
            }
        case .int4(let g):
            guard MLXAffine.supportedGroupSizes.contains(g) else {
                throw SmolError(.invalidArgument, "int4 group size \(g) is not supported (32, 64 or 128, as MLX)")
            }
            guard s[2] % g == 0 else {
                throw SmolError(.unsupported, at: "tensor '\(info.name)'",
                                "rows of \(s[2]) elements are not whole groups of \(g) (pass --group-size 32 if it divides them, or use nf4)")
            }
        }
    }

    // MARK: reading

    /// The Float32 values of a stored int4 stack `name` ([E, R, C]), or nil when `name` is not one.
    public static func int4Shape(_ source: TensorSource, _ name: String) -> [Int]? {
        guard let i = source.info(name), i.type == .dense(.u32), i.shape.count == 3,
              source.info(name + ".scales") != nil, source.info(name + ".biases") != nil else { return nil }
        return [i.shape[0], i.shape[1], i.shape[2] * 8]
    }

    /// Dequantizes a stored int4 stack (MLX affine, 4 bits) exactly.
    public static func int4Floats(_ source: TensorSource, _ name: String, groupSize g: Int) throws -> [Float] {
        guard let shape = int4Shape(source, name) else {
            throw SmolError.malformed(source.path, at: "tensor '\(name)'", "not an int4 expert stack (U32 [E, R, C/8] with .scales and .biases)")
        }
        // The stack reads as the [E·R, C] matrix mx.quantize saw.
        return try QuantizedWeights.affineFloats(source, name, scalesOf: name, rows: shape[0] * shape[1], cols: shape[2],
                                                 bits: 4, groupSize: g)
    }
}
