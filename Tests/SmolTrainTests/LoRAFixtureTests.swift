import Foundation
import Testing
import SmolFormats
import SmolModels
import SmolEngine
import SmolTensor
import SmolTestSupport
@testable import SmolTrain

/// The loss is a mean of logsumexp terms; Float32 noise in the logits (~1e-6 relative) moves it by
/// ~1e-7 relative, so 1e-5 catches any wrong convention (shift, mask, scale: ≥ 1e-2) with margin.
let lossTolerance = 1e-5
/// Gradients: both sides are Float32 with different summation orders (BLAS vs torch kernels) through
/// a few layers and a backward; they agree to ~1e-6 of the tensor's largest entry, and a wrong
/// derivative anywhere (norm convention, mask, RoPE sign) is O(1). 1e-4 as the project sets it.
let gradientTolerance: Float = 1e-4
/// After one AdamW step: the update is lr · m̂ / (√v̂ + eps) ≈ lr · sign(g) at step 1, so the
/// parameters agree to Float32 rounding of p − 1e-2·(±1): 1e-5 relative of the tensor's largest entry.
let stepTolerance: Float = 1e-5

/// The fixture's base model, its PEFT adapter and torch's reference values.
struct LoRAFixture {
    let arch: String
    let model: LoRAModel
    let adapter: LoRAAdapter
    let configJSON: JSONValue
    let reference: SafetensorsFile
    let inputIDs: [Int]

    init(_ arch: String) throws {
        self.arch = arch
        let dir = Fixtures.hf(arch)
        // MoE checkpoints in per-expert layouts go through the engine's loader (restructured to
        // transformers' in-memory layout, which PEFT's target_parameters refer to).
        let base = try ModelLoader.load(configDirectory: dir, source: try SafetensorsCheckpoint(path: dir.path))
        // The fixtures ran transformers' default (SDPA) attention, which drops Gemma 2's attention soft-cap.
        model = try LoRAModel(model: base, options: .transformersSDPA)
        (adapter, configJSON) = try PEFTAdapter.read(directory: dir.appendingPathComponent("lora").path, spec: base.spec)
        reference = try SafetensorsFile(path: dir.appendingPathComponent("lora_reference.safetensors").path)
        let ref = try SafetensorsFile(path: dir.appendingPathComponent("reference.safetensors").path)
        let bytes = try ref.tensorBytes("input_ids")
        inputIDs = bytes.withUnsafeBytes { raw in
            (0..<(raw.count / 8)).map { Int(raw.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }
        }
    }

    func ref(_ name: String) throws -> [Float] { try loadFloat(reference, name) }
}

/// The output layer and loss over blocks of 3 rows (vs one block of the whole sequence): the same
/// loss and gradients as torch's, for a dense and a soft-capped (gemma2) fixture.
@Suite struct HeadBlockTests {
    @Test(arguments: ["llama", "gemma2"])
    func blockedOutputLayerMatchesTorch(arch: String) throws {
        let f = try LoRAFixture(arch)
        var options = f.model.options
        options.headBlockElements = 3 * f.model.spec.vocabSize
        let blocked = try LoRAModel(model: f.model.model, options: options)
        let (loss, grads) = try blocked.lossAndGradients(tokens: f.inputIDs, adapter: f.adapter)
        let refLoss = Double(try f.ref("loss")[0])
        #expect(abs(loss - refLoss) / abs(refLoss) < lossTolerance, "\(arch) loss \(loss) vs \(refLoss)")
        for t in grads.namedTensors(adapterName: "default") {
            #expect(relativeError(t.values, try f.ref("grad." + t.name)) < gradientTolerance, "\(arch) grad \(t.name)")
        }
        let forwardOnly = try blocked.loss(tokens: f.inputIDs, labels: LoRAModel.shiftedLabels(f.inputIDs), adapter: f.adapter)
        #expect(abs(forwardOnly.loss - refLoss) / abs(refLoss) < lossTolerance)
    }
}

/// `LoRAModel.logits` (what `smolconv perplexity --adapter` runs): the mean next-token NLL of its
/// logits equals torch + PEFT's loss with the adapter, and rows from `fromRow` on equal the tail of
/// the full logits.
@Suite struct AdapterLogitsTests {
    @Test(arguments: ["llama", "gemma2", "qwen3_moe"])
    func logitsWithAdapterGiveTorchsLoss(arch: String) throws {
        let f = try LoRAFixture(arch)
        let V = f.model.spec.vocabSize, T = f.inputIDs.count
        let logits = try f.model.logits(tokens: f.inputIDs, adapter: f.adapter)          // [T, V]
        var nll = 0.0
        for t in 0..<(T - 1) {
            let row = logits[(t * V)..<((t + 1) * V)].map(Double.init)
            let m = row.max()!
            nll += m + Foundation.log(row.reduce(0) { $0 + Foundation.exp($1 - m) }) - row[f.inputIDs[t + 1]]
        }
        let refLoss = Double(try f.ref("loss")[0])
        #expect(abs(nll / Double(T - 1) - refLoss) / abs(refLoss) < lossTolerance, "\(arch) \(nll / Double(T - 1)) vs \(refLoss)")
        let tail = try f.model.logits(tokens: f.inputIDs, adapter: f.adapter, fromRow: T / 2)
        #expect(relativeError(tail, Array(logits[((T / 2) * V)...])) < 1e-6)
    }
}

/// The MoE fixtures with a PEFT adapter (qwen3_moe_bf16_sharded has none).
let moeLoRAArchitectures = ["qwen3_moe", "qwen2_moe", "mixtral", "olmoe", "gemma4_moe", "gpt_oss"]

@Suite struct LoRAFixtureTests {
    @Test(arguments: Fixtures.denseArchitectures + moeLoRAArchitectures)
    func lossGradientsAndAdamWStepMatchTorch(arch: String) throws {
        let f = try LoRAFixture(arch)
        #expect(f.adapter.pairs.count * 2 == f.reference.tensorInfos.filter { $0.name.hasPrefix("grad.") }.count)
        let (loss, grads) = try f.model.lossAndGradients(tokens: f.inputIDs, adapter: f.adapter)
        let refLoss = Double(try f.ref("loss")[0])
        #expect(abs(loss - refLoss) / abs(refLoss) < lossTolerance, "\(arch) loss \(loss) vs \(refLoss)")
        // The forward-only loss is the same computation without the tape.
        let forwardOnly = try f.model.loss(tokens: f.inputIDs, labels: LoRAModel.shiftedLabels(f.inputIDs), adapter: f.adapter)
        #expect(abs(forwardOnly.loss - refLoss) / abs(refLoss) < lossTolerance, "\(arch) forward-only loss \(forwardOnly.loss)")

        var worst: Float = 0, worstName = ""
        for t in grads.namedTensors(adapterName: "default") {
            let err = relativeError(t.values, try f.ref("grad." + t.name))
            if err > worst { worst = err; worstName = t.name }
            #expect(err < gradientTolerance, "\(arch) grad \(t.name): \(err)")
        }
        print("\(arch): loss \(loss) (torch \(refLoss)), worst gradient error \(worst) at \(worstName)")

        for t in f.adapter.namedTensors(adapterName: "default") {
            #expect(t.values == (try f.ref("before_step." + t.name)), "\(arch) before_step \(t.name)")
        }
        // One AdamW step from our gradients, and from torch's (the optimizer alone).
        var stepped = f.adapter, fromTorch = f.adapter
        var opt = AdamW(weightDecay: 0), opt2 = AdamW(weightDecay: 0)
        opt.update(&stepped, gradients: grads, lr: 1e-2)
        var torchGrads = grads
        for key in grads.keys {
            torchGrads.pairs[key]!.a = try f.ref("grad." + grads.peftName(key, .a, adapterName: "default"))
            torchGrads.pairs[key]!.b = try f.ref("grad." + grads.peftName(key, .b, adapterName: "default"))
        }
        opt2.update(&fromTorch, gradients: torchGrads, lr: 1e-2)
        var worstStep: Float = 0, illConditioned = 0
        for (ours, torchOnly) in zip(stepped.namedTensors(adapterName: "default"), fromTorch.namedTensors(adapterName: "default")) {
            let after = try f.ref("after_step." + ours.name)
            let gRef = try f.ref("grad." + ours.name)
            let gOurs = grads.namedTensors(adapterName: "default").first { $0.name == ours.name }!.values
            // The optimizer alone: torch's gradients through our AdamW.
            let e2 = relativeError(torchOnly.values, after)
            #expect(e2 < stepTolerance, "\(arch) after_step (torch gradients) \(ours.name): \(e2)")
            // End to end. At step 1 the update is lr · g / (|g| + eps): for |g| near eps it swings with
            // g itself (d/dg = lr · eps / (|g| + eps)²), so an element may differ by what our gradient's
            // own difference (checked above against 1e-4) moves it, on top of the step tolerance.
            let scale = after.map(abs).max() ?? 0
            for i in after.indices {
                let dg = abs(gOurs[i] - gRef[i])
                let small = min(abs(gOurs[i]), abs(gRef[i])) + 1e-8
                let allowed = stepTolerance * scale + 1e-2 * 1e-8 * dg / (small * small)
                if 1e-2 * 1e-8 * dg / (small * small) > stepTolerance * scale { illConditioned += 1 }
                #expect(abs(ours.values[i] - after[i]) <= allowed * 1.001, "\(arch) after_step \(ours.name)[\(i)]: \(ours.values[i]) vs \(after[i]), grad \(gOurs[i]) vs \(gRef[i])")
            }
            worstStep = max(worstStep, relativeError(ours.values, after))
        }
        print("\(arch): worst after-step error \(worstStep), \(illConditioned) ill-conditioned elements (|g| ≈ eps)")
    }
}

/// The backward stops at the lowest layer with a LoRA pair (and skips that layer's input gradient,
/// for an MoE block the experts' dx, routing and shared-expert backward): the gradients must be
/// those of the full backward to the embeddings (`TrainOptions.fullBackward`, the twin). Run alone
/// they are bit-identical; compared at 1e-6 of each tensor's largest entry so that BLAS rounding
/// that depends on what runs beside (OpenBLAS's thread count is process-wide) cannot flake it, where
/// a wrongly skipped term is O(1) (or an all-zero gradient, checked too).
@Suite struct BackwardCutoffTests {
    @Test(arguments: [("qwen3_moe", [LoRAModule.expertsGateUp, .expertsDown]), ("qwen2_moe", [.expertsGateUp, .expertsDown]),
                      ("gpt_oss", [.expertsDown]), ("gemma4_moe", [.q, .o]), ("llama", [.gate, .up, .down]),
                      ("gemma3", [.o, .down])])
    func skippedInputGradientsChangeNoGradient(arch: String, modules: [LoRAModule]) throws {
        let f = try LoRAFixture(arch)
        var adapter = f.adapter
        // Pairs of the chosen modules only (above the first layer when the model has more than
        // one), so that the layers below and part of the lowest trained layer are cut off.
        for key in adapter.pairs.keys where !modules.contains(key.module) { adapter.pairs[key] = nil }
        let layers = Set(adapter.pairs.keys.map(\.layer))
        if layers.count > 1 { for key in adapter.pairs.keys where key.layer == layers.min()! { adapter.pairs[key] = nil } }
        #expect(!adapter.pairs.isEmpty, "\(arch): no pair left to train")
        var full = TrainOptions.transformersSDPA
        full.fullBackward = true
        let twin = try LoRAModel(model: f.model.model, options: full)
        let labels = LoRAModel.shiftedLabels(f.inputIDs)
        var gCut = adapter.zeros(), gFull = adapter.zeros()
        let a = try f.model.forwardBackward(tokens: f.inputIDs, labels: labels, adapter: adapter, gradScale: 1, into: &gCut)
        let b = try twin.forwardBackward(tokens: f.inputIDs, labels: labels, adapter: adapter, gradScale: 1, into: &gFull)
        #expect(abs(a.loss - b.loss) <= 1e-6 * abs(b.loss))
        for key in adapter.keys {
            for (cut, all, part) in [(gCut.pairs[key]!.a, gFull.pairs[key]!.a, "A"), (gCut.pairs[key]!.b, gFull.pairs[key]!.b, "B")] {
                #expect(relativeError(cut, all) <= 1e-6, "\(arch) \(key) \(part): \(relativeError(cut, all))")
            }
            #expect(gCut.pairs[key]!.a.contains { $0 != 0 } || gCut.pairs[key]!.b.contains { $0 != 0 }, "\(arch) \(key) all zero")
        }
    }
}
