import Foundation
import SmolFormats
import SmolModels
import SmolTensor

/// Hyper-parameters of a LoRA run (defaults as transformers' `TrainingArguments`: AdamW with
/// β = (0.9, 0.999), eps 1e-8, no weight decay, linear decay, no warm-up, clipping at norm 1).
public struct TrainConfig: Sendable {
    public var learningRate: Double = 1e-4
    public var steps: Int = 100
    /// Tokens per optimizer step: sequences are taken in order until their tokens reach this
    /// (each sequence at most once per step); their gradients are accumulated and the loss is the
    /// mean over all labelled rows of the step.
    public var batchTokens: Int = 4096
    public var weightDecay: Double = 0
    public var beta1: Double = 0.9
    public var beta2: Double = 0.999
    public var eps: Double = 1e-8
    public var schedule: LRSchedule = .linear
    public var warmupSteps: Int = 0
    /// Global-norm gradient clipping; nil or ≤ 0: none.
    public var maxGradNorm: Double? = 1
    public init() {}
}

/// What one optimizer step did.
public struct StepReport: Sendable {
    public var step: Int            // 1-based
    public var loss: Double         // mean over the step's labelled rows
    public var learningRate: Double
    public var gradNorm: Double     // before clipping
    public var tokens: Int          // tokens run through the model
    public var labelled: Int
    public var seconds: Double
    public var tokensPerSecond: Double { seconds > 0 ? Double(tokens) / seconds : 0 }
}

/// The training loop: batches → forward/backward (accumulated) → clip → AdamW at the scheduled rate.
public final class LoRATrainer {
    public let model: LoRAModel
    public var adapter: LoRAAdapter
    public var optimizer: AdamW
    public let config: TrainConfig
    /// The gradients of the last step (before clipping).
    public private(set) var lastGradients: LoRAAdapter?
    private var cursor = 0

    public init(model: LoRAModel, adapter: LoRAAdapter, config: TrainConfig, optimizer: AdamW? = nil) throws {
        try model.checkAdapter(adapter)
        self.model = model
        self.adapter = adapter
        self.config = config
        self.optimizer = optimizer ?? AdamW(beta1: config.beta1, beta2: config.beta2, eps: config.eps, weightDecay: config.weightDecay)
    }

    /// The sequences of the next step: in order (wrapping around), until batchTokens is reached.
    func nextBatch(_ data: [TrainingSequence]) -> [TrainingSequence] {
        var batch: [TrainingSequence] = [], tokens = 0
        while batch.count < data.count && (batch.isEmpty || tokens + data[cursor % data.count].tokens.count <= config.batchTokens) {
            let s = data[cursor % data.count]
            batch.append(s); tokens += s.tokens.count
            cursor += 1
        }
        return batch
    }

    /// One optimizer step on `batch`. `step` is 0-based (the schedule's position).
    public func step(_ batch: [TrainingSequence], step: Int) throws -> StepReport {
        let start = Date()
        let total = batch.reduce(0) { $0 + $1.labelCount }
        guard total > 0 else { throw SmolError(.invalidArgument, "a training step without labelled tokens") }
        var grads = adapter.zeros()
        var nll = 0.0
        for s in batch {
            let r = try model.forwardBackward(tokens: s.tokens, labels: s.labels, adapter: adapter,
                                              gradScale: 1 / Float(total), into: &grads)
            nll += r.nll
        }
        lastGradients = grads
        let norm: Double
        if let maxNorm = config.maxGradNorm, maxNorm > 0 { norm = clipGradients(&grads, maxNorm: maxNorm) } else { norm = globalNorm(grads) }
        let lr = config.learningRate * config.schedule.factor(step: step, warmup: config.warmupSteps, total: config.steps)
        optimizer.update(&adapter, gradients: grads, lr: lr)
        let seconds = Date().timeIntervalSince(start)
        return StepReport(step: step + 1, loss: nll / Double(total), learningRate: lr, gradNorm: norm,
                          tokens: batch.reduce(0) { $0 + $1.tokens.count }, labelled: total, seconds: seconds)
    }

    /// Runs `config.steps` steps over `data` (cycled), starting at schedule position `firstStep`
    /// (a resumed run continues its schedule), calling `report` after each.
    public func run(_ data: [TrainingSequence], firstStep: Int = 0, report: (StepReport) throws -> Void) throws {
        guard !data.isEmpty else { throw SmolError(.invalidArgument, "no training sequences") }
        for s in firstStep..<config.steps {
            try report(try step(nextBatch(data), step: s))
        }
    }
}

// MARK: Files

/// Safetensors I/O of gradients and optimizer state next to a PEFT adapter.
public enum TrainingFiles {
    /// Optimizer state written into the adapter folder (smolconv's own file; PEFT ignores it).
    public static let optimizerFile = "optimizer.safetensors"

    /// Writes gradients under torch's parameter names (`grad.base_model.model.….lora_A.default.weight`,
    /// as `{n: p.grad for n, p in peft_model.named_parameters()}` names them) and the loss as `loss` [1].
    public static func writeGradients(_ g: LoRAAdapter, loss: Double, to path: String, protecting inputs: [String] = []) throws {
        var tensors = g.namedTensors(adapterName: "default").map { t in
            SafetensorsTensor(TensorInfo(name: "grad." + t.name, type: .dense(.f32), shape: t.shape)) { TensorBytes(elements: t.values) }
        }
        let l = [Float(loss)]
        tensors.append(SafetensorsTensor(TensorInfo(name: "loss", type: .dense(.f32), shape: [1])) { TensorBytes(elements: l) })
        try SafetensorsWriter.write(tensors, to: path, order: .safetensorsLibrary, protecting: inputs)
    }

    /// AdamW moments as `exp_avg.<name>` / `exp_avg_sq.<name>` (PEFT saved names), the step count in
    /// the metadata (`step`).
    public static func writeOptimizer(_ opt: AdamW, adapter: LoRAAdapter, to path: String) throws {
        var tensors: [SafetensorsTensor] = []
        for key in adapter.keys {
            guard let m = opt.m[key], let v = opt.v[key] else { continue }
            for (prefix, p) in [("exp_avg.", m), ("exp_avg_sq.", v)] {
                tensors.append(SafetensorsTensor(TensorInfo(name: prefix + adapter.peftName(key, .a), type: .dense(.f32), shape: [p.rank, p.inDim])) { TensorBytes(elements: p.a) })
                tensors.append(SafetensorsTensor(TensorInfo(name: prefix + adapter.peftName(key, .b), type: .dense(.f32), shape: [p.outDim, p.rank])) { TensorBytes(elements: p.b) })
            }
        }
        try SafetensorsWriter.write(tensors, metadata: [("format", "pt"), ("step", String(opt.step))], to: path, order: .safetensorsLibrary)
    }

    /// Reads what `writeOptimizer` wrote for `adapter` (nil when the file does not exist).
    public static func readOptimizer(_ path: String, adapter: LoRAAdapter, into opt: inout AdamW) throws -> Bool {
        guard FileManager.default.fileExists(atPath: path) else { return false }
        let file = try SafetensorsFile(path: path)
        guard let stepText = file.metadata["step"], let step = Int(stepText), step >= 0 else {
            throw SmolError.malformed(path, at: "__metadata__.step", "missing or not a step count")
        }
        for key in adapter.keys {
            let p = adapter.pairs[key]!
            func read(_ name: String, _ count: Int) throws -> [Float] {
                guard let info = file.info(name), info.type == .dense(.f32), info.elementCount == count else {
                    throw SmolError.malformed(path, at: "tensor '\(name)'", "missing or not F32 with \(count) elements")
                }
                return try loadFloat(file, name)
            }
            var m = p.zeros(), v = p.zeros()
            m.a = try read("exp_avg." + adapter.peftName(key, .a), p.a.count)
            m.b = try read("exp_avg." + adapter.peftName(key, .b), p.b.count)
            v.a = try read("exp_avg_sq." + adapter.peftName(key, .a), p.a.count)
            v.b = try read("exp_avg_sq." + adapter.peftName(key, .b), p.b.count)
            opt.m[key] = m; opt.v[key] = v
        }
        opt.setStep(step)
        return true
    }
}

extension AdamW {
    /// Restores the step count of a saved state.
    mutating func setStep(_ s: Int) { step = s }
}
