import ArgumentParser
import Foundation
import SmolConvert
import SmolEngine
import SmolFormats
import SmolModels
import SmolTensor
import SmolTrain

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a LoRA adapter on a frozen dense model (CPU, Float32) and save it as a PEFT folder.",
        discussion: """
        MODEL is a Hugging Face folder, a .safetensors file with config.json, or a GGUF file, dense \
        or mixture-of-experts (any expert layout); its \
        weights stay frozen and only the LoRA matrices train. A GGUF's linears, embedding and \
        output layer stay in their stored blocks and are dequantized tile by tile inside each \
        product (QLoRA; --dequantize-base loads them as Float32 instead): \
        y = x·Wᵀ + (alpha/r)·(x·Aᵀ)·Bᵀ on every --targets linear of every layer.

        --data: a UTF-8 text (tokenized with the model's tokenizer, BOS first when the model adds \
        one, cut into --seq-len windows) or a .jsonl file of {"text": …} or {"prompt": …, \
        "completion": …} records (EOS appended; with prompt/completion the loss counts completion \
        tokens only; records cut to --seq-len). --tokens gives token ids instead (a JSON array, a \
        file holding one, or comma-separated ids).

        Each step takes sequences in order until --batch-tokens tokens (each sequence at most once \
        per step), accumulates their gradients (loss = mean over all their labelled tokens), clips \
        the global gradient norm (--max-grad-norm, 0 = off) and takes one AdamW step (PyTorch's \
        semantics: bias correction, decoupled weight decay) at the scheduled rate: linear warm-up \
        over --warmup-steps, then constant, linear decay to 0, or cosine decay to 0 at --steps.

        --resume ADAPTER_DIR starts from a PEFT adapter (its r, alpha and target modules; the \
        AdamW state too when the folder holds smolconv's optimizer.safetensors). Without it the \
        adapter starts as PEFT's default (A ~ U(±1/√in), B = 0, seeded by --seed).

        Progress (loss, tokens/s) goes to stderr; --log writes one JSON object per step \
        ({"step", "loss", "lr", "grad_norm", "tokens", "tokens_per_second", "seconds"}). \
        --save-gradients writes the last step's gradients (before clipping) as safetensors under \
        PyTorch's parameter names (grad.base_model.model.….lora_A.default.weight) plus `loss`.
        """
    )

    @Argument(help: "A Hugging Face folder, a .safetensors file or a .gguf file.")
    var model: String

    @Option(help: "Training data: a text file or a .jsonl file.")
    var data: String?

    @Option(help: "Token ids instead of --data: a JSON array (or a file holding one) or comma-separated ids.")
    var tokens: String?

    @Option(help: "Folder to write the adapter to (adapter_config.json, adapter_model.safetensors, optimizer.safetensors).")
    var output: String

    @Option(help: "LoRA rank r.")
    var rank: Int = 16

    @Option(help: "LoRA alpha (the branch is scaled by alpha / r).")
    var alpha: Double = 32

    @Option(help: "Comma-separated modules to adapt: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj and, on MoE models, experts.gate_up_proj,experts.down_proj (per-expert LoRA as PEFT's target_parameters).")
    var targets: String = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"

    @Option(help: "Peak learning rate.")
    var lr: Double = 1e-4

    @Option(help: "Optimizer steps.")
    var steps: Int = 100

    @Option(name: .customLong("batch-tokens"), help: "Tokens per optimizer step (gradient accumulation over sequences).")
    var batchTokens: Int = 4096

    @Option(name: .customLong("seq-len"), help: "Tokens per sequence at most.")
    var seqLen: Int = 256

    @Option(name: .customLong("weight-decay"), help: "AdamW decoupled weight decay.")
    var weightDecay: Double = 0

    @Option(name: .customLong("lr-schedule"), help: "constant, linear or cosine (after the warm-up).")
    var lrSchedule: String = "linear"

    @Option(name: .customLong("warmup-steps"), help: "Linear warm-up steps.")
    var warmupSteps: Int = 0

    @Option(name: .customLong("max-grad-norm"), help: "Clip the global gradient norm to this; 0 disables clipping.")
    var maxGradNorm: Double = 1

    @Option(help: "Start from this PEFT adapter folder.")
    var resume: String?

    @Option(help: "Seed of a fresh adapter's initialisation.")
    var seed: UInt64 = 0

    @Option(help: "Append one JSON line per step to this file.")
    var log: String?

    @Option(name: .customLong("save-gradients"), help: "Write the last step's gradients (safetensors) here.")
    var saveGradients: String?

    @Flag(name: .customLong("dequantize-base"), help: "GGUF models: dequantize the frozen weights to Float32 up front instead of keeping them encoded (QLoRA).")
    var dequantizeBase = false

    @Flag(name: .customLong("attention-softcap-off"), help: "Drop Gemma 2's attention soft-capping, as transformers' default SDPA attention does.")
    var attentionSoftcapOff = false

    func validate() throws {
        if (data == nil) == (tokens == nil) { throw ValidationError("give exactly one of --data and --tokens") }
        if rank < 1 { throw ValidationError("--rank must be at least 1") }
        if steps < 1 { throw ValidationError("--steps must be at least 1") }
        if seqLen < 2 { throw ValidationError("--seq-len must be at least 2") }
        if batchTokens < 1 { throw ValidationError("--batch-tokens must be at least 1") }
        if warmupSteps < 0 { throw ValidationError("--warmup-steps must not be negative") }
        if !(lr > 0) { throw ValidationError("--lr must be positive") }
        if LRSchedule(rawValue: lrSchedule) == nil { throw ValidationError("--lr-schedule must be constant, linear or cosine") }
    }

    func run() throws {
        try runReportingErrors {
            let ckpt = try Checkpoint.open(model)
            let loadStart = Date()
            let trainOptions = TrainOptions(attentionSoftcapping: !attentionSoftcapOff)
            // GGUF: keep the frozen linears, embedding and output layer in their stored blocks (QLoRA).
            // (Dense GGUFs only: MoE experts go through the engine's loader, dequantized.)
            var lora: LoRAModel? = nil
            if let g = ckpt.gguf, !dequantizeBase, try GGUFWeightReader(file: g).config.moe == nil {
                lora = try LoRAModel.quantized(gguf: g, options: trainOptions)
            }
            let loraModel = try lora ?? LoRAModel(model: try ModelLoader.load(checkpoint: ckpt), options: trainOptions)
            let base = loraModel.model
            let modelConfig: ModelConfig? = try? {
                if let g = ckpt.gguf { return try GGUFWeightReader(file: g).config }
                guard let json = ckpt.config else { return nil }
                return try ModelConfig(json: json, file: ckpt.folder ?? ckpt.path)
            }()
            let prefix = DenseArchitectures.table[base.spec.modelType]?.names.prefix ?? "model."
            let kept = loraModel.quantized.map { ", \(Format.bytes($0.byteCount)) of weights kept encoded" } ?? ""
            Console.note("loaded \(model) in \(Format.fixed(Date().timeIntervalSince(loadStart), 1)) s\(kept)")

            // The adapter (and the optimizer state when resuming).
            var adapter: LoRAAdapter
            var configJSON: JSONValue? = nil
            var cfg = TrainConfig()
            cfg.learningRate = lr; cfg.steps = steps; cfg.batchTokens = batchTokens; cfg.weightDecay = weightDecay
            cfg.schedule = LRSchedule(rawValue: lrSchedule)!; cfg.warmupSteps = warmupSteps
            cfg.maxGradNorm = maxGradNorm > 0 ? maxGradNorm : nil
            var optimizer = AdamW(beta1: cfg.beta1, beta2: cfg.beta2, eps: cfg.eps, weightDecay: cfg.weightDecay)
            var firstStep = 0
            if let resume {
                (adapter, configJSON) = try PEFTAdapter.read(directory: resume, spec: base.spec, namePrefix: prefix)
                let optPath = (resume as NSString).appendingPathComponent(TrainingFiles.optimizerFile)
                if try TrainingFiles.readOptimizer(optPath, adapter: adapter, into: &optimizer) {
                    firstStep = optimizer.step
                    Console.note("resumed optimizer state at step \(firstStep)")
                }
                Console.note("resumed adapter \(resume): r=\(adapter.config.rank) alpha=\(Format.fixed(adapter.config.alpha, 1)) on \(adapter.config.targets.map(\.rawValue).joined(separator: ","))")
            } else {
                var mods: [LoRAModule] = []
                for t in targets.split(separator: ",") {
                    let name = t.trimmingCharacters(in: .whitespaces)
                    guard let m = LoRAModule(rawValue: name) else {
                        throw SmolError(.invalidArgument, at: "--targets", "'\(name)' is not one of \(LoRAModule.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    mods.append(m)
                }
                let config = LoRAConfig(rank: rank, alpha: alpha, targets: Array(Set(mods)).sorted(), baseModel: model)
                adapter = LoRAAdapter.initialized(spec: base.spec, config: config, seed: seed, namePrefix: prefix)
            }
            if firstStep >= steps {
                throw SmolError(.invalidArgument, at: "--steps", "the resumed state is at step \(firstStep) already; ask for more steps")
            }

            // Data.
            let sequences: [TrainingSequence]
            if let tokens {
                sequences = TrainingData.windows(try EvaluationInput.parseIDs(tokens), seqLen: seqLen)
                guard !sequences.isEmpty else { throw SmolError(.invalidArgument, at: "--tokens", "need at least two tokens") }
            } else {
                let tokenizer = try EvaluationInput.tokenizer(for: ckpt)
                let (seqs, summary) = try TrainingData.load(path: data!, tokenizer: tokenizer, seqLen: seqLen)
                sequences = seqs
                Console.note("data: \(summary.sequences) sequences, \(Format.grouped(summary.tokens)) tokens, \(Format.grouped(summary.labelled)) in the loss\(summary.truncated > 0 ? ", \(summary.truncated) records cut to \(seqLen) tokens" : "")")
            }
            Console.note("training \(Format.grouped(adapter.parameterCount)) LoRA parameters (r=\(adapter.config.rank), \(adapter.pairs.count) matrix pairs), \(steps - firstStep) steps")

            let trainer = try LoRATrainer(model: loraModel, adapter: adapter, config: cfg, optimizer: optimizer)
            let logFile: FileHandle? = try log.map { path in
                guard FileManager.default.createFile(atPath: path, contents: nil), let h = FileHandle(forWritingAtPath: path) else {
                    throw SmolError(.invalidArgument, file: path, "cannot open the log for writing")
                }
                return h
            }
            defer { try? logFile?.close() }
            var lastLoss = 0.0
            let started = Date()
            var totalTokens = 0
            try trainer.run(sequences, firstStep: firstStep) { r in
                lastLoss = r.loss
                totalTokens += r.tokens
                Console.err("step \(r.step)/\(steps) loss \(Format.fixed(r.loss, 4)) lr \(String(format: "%.3g", r.learningRate)) grad_norm \(Format.fixed(r.gradNorm, 3)) \(Format.fixed(r.tokensPerSecond, 1)) tokens/s\n")
                if let logFile {
                    let line = JSONValue.object(JSONObject([
                        ("step", .int(r.step)), ("loss", .double(r.loss)), ("lr", .double(r.learningRate)),
                        ("grad_norm", .double(r.gradNorm)), ("tokens", .int(r.tokens)),
                        ("tokens_per_second", .double(r.tokensPerSecond)), ("seconds", .double(r.seconds)),
                    ])).serialized(indent: nil) + "\n"
                    logFile.write(Data(line.utf8))
                }
            }
            let seconds = Date().timeIntervalSince(started)
            if let saveGradients, let g = trainer.lastGradients {
                try TrainingFiles.writeGradients(g, loss: lastLoss, to: saveGradients, protecting: [model])
            }
            try PEFTAdapter.write(trainer.adapter, to: output, configJSON: configJSON,
                                  baseModelClass: modelConfig?.architectures.first, modelType: modelConfig?.modelType ?? base.spec.modelType,
                                  protecting: [model])
            try TrainingFiles.writeOptimizer(trainer.optimizer, adapter: trainer.adapter,
                                             to: (output as NSString).appendingPathComponent(TrainingFiles.optimizerFile))
            Console.note("trained \(steps - firstStep) steps in \(Format.fixed(seconds, 1)) s (\(Format.fixed(Double(totalTokens) / max(seconds, 1e-9), 1)) tokens/s); adapter written to \(output)")
        }
    }
}
