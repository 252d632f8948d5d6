import ArgumentParser
import Foundation
import SmolCalibration
import SmolConvert
import SmolFormats
import SmolQuant
import SmolTensor

extension QuantizeOptions.Format: ExpressibleByArgument {}
extension CalibrationMethod: ExpressibleByArgument {}

struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Quantize a model: GGUF block and k-quant mixes (as llama-quantize), MLX affine, or bitsandbytes NF4.",
        discussion: """
        Defaults per output format:
          --format gguf (default)  --bits 4 → Q4_K_M; 2 → Q2_K, 3 → Q3_K_M, 5 → Q5_K_M, 6 → Q6_K, 8 → Q8_0.
                                   --type names a mix: \(QuantMix.allCases.map(\.rawValue).joined(separator: ", ")).
          --format mlx             affine, --bits (2, 3, 4, 5, 6, 8), --group-size 64 (32, 64, 128).
          --format nf4             bitsandbytes NF4, blocks of 64 (--group-size), --double-quant, as
                                   transformers saves it: every Linear weight but lm_head.

        GGUF mixes choose each tensor's type the way llama-quantize does: attn_v / ffn_down get more \
        bits in some layers, the output (or tied embedding) gets Q6_K, norms, biases and MoE routers \
        stay F32, and rows that are not a multiple of a k-quant block fall back (Q4_K → Q5_0, \
        Q6_K → Q8_0, Q2_K/Q3_K → Q4_0). The input is a Hugging Face folder or a GGUF file; an \
        already-quantized GGUF is dequantized exactly first (and the command says so).
        """
    )

    @Argument(help: "Input: a Hugging Face folder, a .safetensors file or a .gguf file.")
    var input: String

    @Argument(help: "Output: a .gguf file (GGUF) or a folder (MLX, NF4).")
    var output: String

    @Option(help: "Output format: gguf, mlx or nf4.")
    var format: QuantizeOptions.Format = .gguf

    @Option(help: "Target bits per weight (picks the default mix or MLX bits).")
    var bits: Int = 4

    @Option(name: .customLong("type"), help: "GGUF mix, e.g. Q4_K_M, Q8_0, Q4_0.")
    var mixName: String?

    @Option(help: "MLX group size or NF4 block size.")
    var groupSize: Int?

    @Option(name: .customLong("tensor-type"), parsing: .singleValue, help: "REGEX=TYPE: override the type of matching tensors (repeatable; the last match wins).")
    var tensorTypes: [String] = []

    @Option(help: "Type of output.weight.")
    var outputTensorType: String?

    @Option(help: "Type of token_embd.weight.")
    var tokenEmbeddingType: String?

    @Flag(help: "NF4: bitsandbytes' double quantization of the block absmax (bnb_4bit_use_double_quant).")
    var doubleQuant = false

    @Flag(help: "Give every quantized tensor the mix's default type (no per-tensor rules).")
    var pure = false

    @Option(help: "Calibration statistics from `smolconv calibrate` (or a llama.cpp imatrix GGUF), for --format gguf or mlx.")
    var calibration: String?

    @Option(help: "How layer matrices are rounded: rtn, imatrix, gptq, awq, awq+gptq (all but rtn need --calibration).")
    var method: CalibrationMethod = .rtn

    @Flag(help: "GPTQ: quantize columns in order of decreasing Hessian diagonal (static groups).")
    var actOrder = false

    @Option(help: "GPTQ dampening, as a fraction of the mean Hessian diagonal.")
    var damp: Double = 0.01

    @Option(help: "GGUF: make the layer matrices group-wise affine 4-bit with this group size (MLX's grid), stored dequantized as F32 for evaluation; bits per weight are counted as the packed layout with F16 scale and bias.")
    var int4Group: Int?

    @OptionGroup var outputOptions: OutputOptions

    func parseType(_ s: String, _ flag: String) throws -> GGMLType {
        guard let t = GGMLType(name: s) else { throw ValidationError("\(flag): unknown type '\(s)'") }
        return t
    }

    func validate() throws {
        if let m = mixName, QuantMix(name: m) == nil {
            throw ValidationError("--type: unknown mix '\(m)'; one of \(QuantMix.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if ![2, 3, 4, 5, 6, 8, 16, 32].contains(bits) { throw ValidationError("--bits must be 2, 3, 4, 5, 6, 8 (or 16, 32 for GGUF float)") }
        for tt in tensorTypes {
            let parts = tt.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { throw ValidationError("--tensor-type expects REGEX=TYPE, got '\(tt)'") }
            _ = try parseType(String(parts[1]), "--tensor-type")
            do { _ = try NSRegularExpression(pattern: String(parts[0])) } catch {
                throw ValidationError("--tensor-type: '\(parts[0])' is not a valid regular expression")
            }
        }
        if doubleQuant && format != .nf4 { throw ValidationError("--double-quant applies to --format nf4 only") }
        if format == .nf4 && bits != 4 { throw ValidationError("--format nf4 is 4-bit; leave --bits out (or 4)") }
        if format != .gguf && mixName != nil { throw ValidationError("--type names a GGUF mix; it does not apply to --format \(format.rawValue)") }
        if format == .mlx && ![2, 3, 4, 5, 6, 8].contains(bits) { throw ValidationError("--format mlx takes --bits 2, 3, 4, 5, 6 or 8") }
        if method != .rtn && calibration == nil { throw ValidationError("--method \(method.rawValue) needs --calibration STATS.h5") }
        if int4Group != nil && format != .gguf { throw ValidationError("--int4-group applies to --format gguf (with --format mlx the layer matrices are group-wise already: --bits, --group-size)") }
        if calibration != nil && format == .nf4 { throw ValidationError("--calibration applies to --format gguf and mlx") }
        if format == .mlx && (method == .awq || method == .awqGPTQ) { throw ValidationError("--format mlx takes --method rtn, imatrix or gptq") }
        if let g = int4Group, ![32, 64, 128].contains(g) { throw ValidationError("--int4-group takes 32, 64 or 128") }
        if let o = outputTensorType { _ = try parseType(o, "--output-tensor-type") }
        if let e = tokenEmbeddingType { _ = try parseType(e, "--token-embedding-type") }
    }

    func run() throws {
        try runReportingErrors {
            var options = QuantizeOptions()
            options.format = format
            options.bits = bits
            options.mix = mixName.flatMap(QuantMix.init(name:))
            options.groupSize = groupSize
            options.doubleQuant = doubleQuant
            options.overrides.pure = pure
            options.calibration = calibration
            options.method = method
            options.gptq.actOrder = actOrder
            options.gptq.dampening = damp
            options.affine = int4Group.map { AffineTarget(bits: 4, groupSize: $0) }
            options.overrides.tensorTypes = try tensorTypes.map { tt in
                let parts = tt.split(separator: "=", maxSplits: 1)
                return (String(parts[0]), try parseType(String(parts[1]), "--tensor-type"))
            }
            options.overrides.outputTensorType = try outputTensorType.map { try parseType($0, "--output-tensor-type") }
            options.overrides.tokenEmbeddingType = try tokenEmbeddingType.map { try parseType($0, "--token-embedding-type") }
            let progress = Console.Progress("quantize", total: 1)
            let s = try Quantizer.quantize(input: input, output: output, options: options) { done, total, name in
                progress.update(done, of: total, detail: name)
            }
            progress.finish("\(s.rows.count) tensors, \(Format.bytes(s.fileBytes)) in \(Format.fixed(s.seconds, 2)) s")
            for n in s.notes { Console.note(n) }
            if outputOptions.json {
                Console.out(json(s).serialized(indent: 2))
            } else {
                Console.out(table(s))
            }
        }
    }

    func histogram(_ s: QuantizeSummary) -> [(type: String, count: Int, bytes: Int)] {
        var h: [String: (Int, Int)] = [:]
        for r in s.rows { h[r.to, default: (0, 0)].0 += 1; h[r.to, default: (0, 0)].1 += r.bytes }
        return h.map { ($0.key, $0.value.0, $0.value.1) }.sorted { $0.bytes > $1.bytes }
    }

    func table(_ s: QuantizeSummary) -> String {
        var lines = ["wrote \(s.output): \(s.format.rawValue) \(s.mix), \(Format.grouped(s.fileBytes)) bytes",
                     "", "type      tensors          bytes"]
        for h in histogram(s) {
            lines.append("\(h.type.padding(toLength: 8, withPad: " ", startingAt: 0))  \(String(h.count).leftPad(7))  \(Format.grouped(h.bytes).leftPad(13))")
        }
        lines.append("")
        lines.append("bits per weight: \(Format.fixed(s.bitsPerWeight, 3)) overall, \(Format.fixed(s.bitsPerWeightQuantized, 3)) over the quantized tensors")
        if !s.expertFallbacks.isEmpty {
            let n = s.expertFallbacks.reduce(0) { $0 + $1.experts.count }
            lines.append("")
            lines.append("experts without calibration tokens, rounded to nearest (\(n) slices):")
            for f in s.expertFallbacks {
                lines.append("  \(f.tensor): expert\(f.experts.count == 1 ? "" : "s") \(f.experts.map(String.init).joined(separator: ", "))")
            }
        }
        return lines.joined(separator: "\n")
    }

    func json(_ s: QuantizeSummary) -> JSONValue {
        .object(JSONObject([
            ("input", .string(s.input)), ("output", .string(s.output)),
            ("format", .string(s.format.rawValue)), ("mix", .string(s.mix)),
            ("file_bytes", .int(s.fileBytes)), ("seconds", .double(s.seconds)),
            ("bits_per_weight", .double(s.bitsPerWeight)), ("bits_per_weight_quantized", .double(s.bitsPerWeightQuantized)),
            ("types", .object(JSONObject(histogram(s).map { ($0.type, JSONValue.object(JSONObject([("tensors", .int($0.count)), ("bytes", .int($0.bytes))]))) }))),
            ("tensors", .array(s.rows.map { r in
                .object(JSONObject([("name", .string(r.name)), ("shape", .array(r.shape.map { .int($0) })),
                                    ("from", .string(r.from)), ("to", .string(r.to)), ("bytes", .int(r.bytes)),
                                    ("fallback_from", r.fallbackFrom.map(JSONValue.string) ?? .null)]))
            })),
            ("rtn_fallback_experts", .array(s.expertFallbacks.map { f in
                .object(JSONObject([("tensor", .string(f.tensor)), ("experts", .array(f.experts.map { .int($0) }))]))
            })),
            ("notes", .array(s.notes.map(JSONValue.string))),
        ]))
    }
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}
