import ArgumentParser
import Foundation
import SmolFormats
import SmolModels
import SmolMoE
import SmolTensor

extension MoELayout: ExpressibleByArgument {}

struct MoE: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "moe",
        abstract: "Mixture-of-Experts checkpoints: change how the experts are laid out.",
        subcommands: [MoERestructureCommand.self]
    )
}

struct MoERestructureCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restructure",
        abstract: "Rewrite an MoE checkpoint into the per-expert, trainable or GGUF expert layout.",
        discussion: """
        per-expert: one tensor per expert (as qwen2_moe, qwen3_moe, mixtral and olmoe ship). \
        trainable: transformers 5's in-memory layout (stacked experts.gate_up_proj [E, 2I, H] and \
        experts.down_proj [E, H, I]; gemma4 and gpt_oss as they ship), loadable by from_pretrained. \
        gguf: llama.cpp's names (ffn_{gate,up,down}_exps, gemma4 ffn_gate_up_exps) and expert_* keys.

        Bytes are moved, never decoded: every dtype comes out bit for bit. Before writing, the plan \
        proves that every element of every input tensor lands in exactly one output and stops, \
        naming the tensor, if not. A GGUF input needs the model's config.json (--config, or one \
        next to the file). formats/moe-trainable.md describes the layouts.

        --quantize-experts nf4|int4 (with --layout trainable) stores each expert stack quantized \
        per expert, as bitsandbytes' quantize_4bit (NF4) or mx.quantize (int4) would, and records \
        it in config.json; smolconv reads such folders (the engine dequantizes them exactly).
        """
    )

    @Argument(help: "Input: a Hugging Face folder, a .safetensors file or a .gguf file.")
    var input: String

    @Argument(help: "Output: a folder (per-expert, trainable) or a .gguf file.")
    var output: String

    @Option(help: "Target layout: per-expert, trainable or gguf.")
    var layout: MoELayout

    @Option(help: "config.json of the model (default: the input folder's, or the one next to the input file).")
    var config: String?

    @Option(help: "Quantize the expert stacks of the trainable layout: nf4 (bitsandbytes NF4, blocks of 64) or int4 (MLX affine 4-bit, groups of 64); everything else keeps its dtype.")
    var quantizeExperts: String?

    @Option(help: "NF4 block size or int4 group size for --quantize-experts (default 64).")
    var groupSize: Int?

    @Option(help: "Largest safetensors shard in bytes for folder output (default 50000000000).")
    var maxShardSize: Int?

    @Flag(help: "Print the plan (every output tensor, how it is made, and the accounting) without writing.")
    var dryRun = false

    @OptionGroup var outputOptions: OutputOptions

    func validate() throws {
        if let s = maxShardSize, s <= 0 { throw ValidationError("--max-shard-size must be positive") }
        if let g = groupSize, g <= 0 { throw ValidationError("--group-size must be positive") }
        if groupSize != nil && quantizeExperts == nil { throw ValidationError("--group-size needs --quantize-experts") }
        if let q = quantizeExperts, !["nf4", "int4"].contains(q) { throw ValidationError("--quantize-experts takes nf4 or int4") }
        if quantizeExperts != nil && layout != .trainable { throw ValidationError("--quantize-experts applies to --layout trainable only") }
    }

    func run() throws {
        try runReportingErrors {
            let quantization = try quantizeExperts.map { try ExpertQuantization(method: $0, size: groupSize) }
            let ckpt = try Checkpoint.open(input)
            let configURL = try configPath(ckpt)
            let modelConfig = try ModelConfig.load(folder: configURL.deletingLastPathComponent())
            let plan: MoEPlan
            do {
                plan = try MoERestructure.plan(ckpt.source.tensorInfos, config: modelConfig, to: layout)
            } catch let e as SmolError { throw e.inFile(input) }
            if let q = quantization {
                for t in plan.tensors where ExpertQuantization.isExpertStack(t.info) {
                    do { try q.validate(t.info) } catch let e as SmolError { throw e.inFile(input) }
                }
            }
            if dryRun {
                printPlan(plan, quantization)
                return
            }
            let progress = Console.Progress("moe restructure", total: 1)
            let written: [String]
            do {
                written = try MoERestructure.write(plan, source: ckpt.source, to: output,
                                                   inputFolder: ckpt.format == .gguf ? configURL.deletingLastPathComponent().path : ckpt.folder,
                                                   maxShardSize: maxShardSize ?? 50_000_000_000,
                                                   protecting: [input, configURL.path], quantizeExperts: quantization)
            } catch let e as SmolError { throw e.inFile(output) }
            let bytes = plan.tensors.reduce(0) { $0 + storedBytes($1.info, quantization) }
            progress.finish("\(plan.from.rawValue) → \(plan.to.rawValue), \(plan.tensors.count) tensors, \(Format.bytes(bytes))")
            if outputOptions.json {
                Console.out(summaryJSON(plan, written: written, quantization).serialized(indent: 2))
            } else {
                let q = quantization.map { q in
                    let stacks = plan.tensors.filter { ExpertQuantization.isExpertStack($0.info) }
                    let before = stacks.reduce(0) { $0 + $1.info.byteCount }, after = stacks.reduce(0) { $0 + q.byteCount($1.info) }
                    return "; \(stacks.count) expert stacks quantized to \(q.label): \(Format.bytes(before)) → \(Format.bytes(after))"
                } ?? ""
                Console.out("wrote \(output) (\(plan.to.rawValue), \(plan.tensors.count) tensors from \(plan.accounting.count) inputs, every input element accounted for\(q))")
            }
        }
    }

    func configPath(_ ckpt: Checkpoint) throws -> URL {
        if let config { return URL(fileURLWithPath: config) }
        if let folder = ckpt.folder { return URL(fileURLWithPath: folder).appendingPathComponent("config.json") }
        let beside = URL(fileURLWithPath: input).deletingLastPathComponent().appendingPathComponent("config.json")
        guard FileManager.default.fileExists(atPath: beside.path) else {
            throw SmolError(.invalidArgument, file: input, "no config.json next to the input: pass the model's with --config")
        }
        return beside
    }

    /// Bytes a planned tensor takes in the output.
    func storedBytes(_ info: TensorInfo, _ q: ExpertQuantization?) -> Int {
        guard let q, ExpertQuantization.isExpertStack(info) else { return info.byteCount }
        return q.byteCount(info)
    }

    func storedType(_ info: TensorInfo, _ q: ExpertQuantization?) -> String {
        guard let q, ExpertQuantization.isExpertStack(info) else { return info.type.name }
        return "\(info.type.name) → \(q.label)"
    }

    func printPlan(_ plan: MoEPlan, _ q: ExpertQuantization?) {
        if outputOptions.json {
            Console.out(summaryJSON(plan, written: nil, q).serialized(indent: 2))
            return
        }
        Console.out("\(plan.architecture.modelType): \(plan.from.rawValue) → \(plan.to.rawValue), \(plan.tensors.count) output tensors from \(plan.accounting.count) inputs")
        let rows = plan.tensors.map { t in
            [t.info.name, storedType(t.info, q), "[" + t.info.shape.map(String.init).joined(separator: ", ") + "]", t.recipe.summary,
             "\(t.recipe.inputs.count)"]
        }
        let header = ["tensor", "type", "shape", "made by", "inputs"]
        let widths = header.indices.map { c in max(header[c].count, rows.map { $0[c].count }.max() ?? 0) }
        func line(_ r: [String]) -> String {
            r.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: "  ")
        }
        Console.out(line(header))
        for r in rows { Console.out(line(r)) }
        let elements = plan.accounting.reduce(0) { $0 + $1.elements }
        Console.out("accounting: all \(Format.grouped(elements)) elements of the \(plan.accounting.count) input tensors land in exactly one output")
    }

    func summaryJSON(_ plan: MoEPlan, written: [String]?, _ q: ExpertQuantization?) -> JSONValue {
        var members: [(String, JSONValue)] = [
            ("model_type", .string(plan.architecture.modelType)),
            ("from", .string(plan.from.rawValue)),
            ("to", .string(plan.to.rawValue)),
            ("tensors", .array(plan.tensors.map { t in
                .object(JSONObject([
                    ("name", .string(t.info.name)), ("dtype", .string(t.info.type.name)),
                    ("stored_as", .string(q != nil && ExpertQuantization.isExpertStack(t.info) ? q!.label : t.info.type.name)),
                    ("stored_bytes", .int(storedBytes(t.info, q))),
                    ("shape", .array(t.info.shape.map { JSONValue.int($0) })),
                    ("made_by", .string(t.recipe.summary)),
                    ("inputs", .array(t.recipe.inputs.sorted().map(JSONValue.string))),
                ]))
            })),
            ("accounting", .array(plan.accounting.map { a in
                .object(JSONObject([("input", .string(a.input)), ("elements", .int(a.elements)),
                                    ("outputs", .array(a.outputs.map(JSONValue.string)))]))
            })),
        ]
        if let written { members.append(("written", .array(written.map(JSONValue.string)))) }
        return .object(JSONObject(members))
    }
}
