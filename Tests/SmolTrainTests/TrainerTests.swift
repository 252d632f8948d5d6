import Foundation
import Testing
import SmolFormats
import SmolModels
import SmolTensor
import SmolTestSupport
import SmolTokenizer
@testable import SmolTrain

@Suite struct ScheduleAndClippingTests {
    /// transformers' get_{constant,linear,cosine}_schedule_with_warmup, at points where the formulas
    /// give round values: warm-up 2 of 10 steps.
    @Test func schedulesFollowTransformers() {
        let w = 2, n = 10
        #expect(LRSchedule.constant.factor(step: 0, warmup: w, total: n) == 0)
        #expect(LRSchedule.constant.factor(step: 1, warmup: w, total: n) == 0.5)
        #expect(LRSchedule.constant.factor(step: 7, warmup: w, total: n) == 1)
        #expect(LRSchedule.linear.factor(step: 1, warmup: w, total: n) == 0.5)
        #expect(LRSchedule.linear.factor(step: 2, warmup: w, total: n) == 1)
        #expect(LRSchedule.linear.factor(step: 6, warmup: w, total: n) == 0.5)   // (10 − 6) / (10 − 2)
        #expect(LRSchedule.linear.factor(step: 10, warmup: w, total: n) == 0)
        #expect(LRSchedule.cosine.factor(step: 2, warmup: w, total: n) == 1)
        #expect(abs(LRSchedule.cosine.factor(step: 6, warmup: w, total: n) - 0.5) < 1e-15)  // half-way: cos(π/2)
        #expect(abs(LRSchedule.cosine.factor(step: 10, warmup: w, total: n)) < 1e-15)
    }

    /// torch.nn.utils.clip_grad_norm_: scale by max / (norm + 1e-6) only when that is below 1.
    @Test func clippingScalesToTheGlobalNorm() {
        let p = LoRAPair(a: [3, 0], b: [0, 4], rank: 1, inDim: 2, outDim: 2)   // norm 5 over both
        var g = LoRAAdapter(config: LoRAConfig(rank: 1, alpha: 1, targets: [.q]), pairs: [LoRAKey(layer: 0, module: .q): p])
        #expect(globalNorm(g) == 5)
        #expect(clipGradients(&g, maxNorm: 10) == 5)
        #expect(g.pairs.first!.value == p)
        clipGradients(&g, maxNorm: 1)
        #expect(abs(globalNorm(g) - 5 / (5 + 1e-6)) < 1e-6)
    }

    /// AdamW's decoupled weight decay: with g = 0 the moments stay 0 and p ← p · (1 − lr·wd) exactly
    /// as torch's `param.mul_(1 - lr * weight_decay)`.
    @Test func weightDecayIsDecoupled() {
        let p = LoRAPair(a: [1, -2], b: [0.5, 4], rank: 1, inDim: 2, outDim: 2)
        let key = LoRAKey(layer: 0, module: .v)
        var a = LoRAAdapter(config: LoRAConfig(rank: 1, alpha: 1, targets: [.v]), pairs: [key: p])
        var opt = AdamW(weightDecay: 0.1)
        opt.update(&a, gradients: a.zeros(), lr: 0.5)
        let f = Float(1 - 0.5 * 0.1)
        #expect(a.pairs[key]!.a == [1 * f, -2 * f])
        #expect(a.pairs[key]!.b == [0.5 * f, 4 * f])
    }
}

@Suite struct AccumulationTests {
    /// A step over two sequences is the gradient of the mean loss over both sequences' labelled rows:
    /// (n1·g1 + n2·g2) / (n1 + n2), where g1 and g2 are the single-sequence gradients (each checked
    /// against torch in LoRAFixtureTests).
    @Test func batchGradientIsTheTokenWeightedMean() throws {
        let f = try LoRAFixture("qwen3")
        let s1 = Array(f.inputIDs[0..<20]), s2 = Array(f.inputIDs[12..<32])
        let labels2 = LoRAModel.shiftedLabels(s2).enumerated().map { $0.offset < 5 ? -100 : $0.element }   // masked prompt
        let (l1, g1) = try f.model.lossAndGradients(tokens: s1, adapter: f.adapter)
        var g2 = f.adapter.zeros()
        let r2 = try f.model.forwardBackward(tokens: s2, labels: labels2, adapter: f.adapter, gradScale: 1 / 14, into: &g2)
        #expect(r2.count == 14)
        let trainer = try LoRATrainer(model: f.model, adapter: f.adapter, config: {
            var c = TrainConfig(); c.batchTokens = 40; c.maxGradNorm = nil; c.steps = 1; return c }())
        let report = try trainer.step(trainer.nextBatch([TrainingSequence(tokens: s1, labels: LoRAModel.shiftedLabels(s1)),
                                                         TrainingSequence(tokens: s2, labels: labels2)]), step: 0)
        #expect(report.labelled == 19 + 14 && report.tokens == 40)
        #expect(abs(report.loss - (l1 * 19 + r2.nll) / 33) < 1e-9)
        let batch = try #require(trainer.lastGradients)
        for key in batch.keys {
            let expectA = zip(g1.pairs[key]!.a, g2.pairs[key]!.a).map { ($0 * 19 + $1 * 14) / 33 }
            let expectB = zip(g1.pairs[key]!.b, g2.pairs[key]!.b).map { ($0 * 19 + $1 * 14) / 33 }
            #expect(relativeError(batch.pairs[key]!.a, expectA) < 1e-5)
            #expect(relativeError(batch.pairs[key]!.b, expectB) < 1e-5)
        }
    }

    /// A few steps on one sequence lower its loss (the optimizer moves downhill).
    @Test func trainingLowersTheLoss() throws {
        let f = try LoRAFixture("gemma3")
        var c = TrainConfig(); c.steps = 5; c.learningRate = 1e-2; c.schedule = .constant
        let trainer = try LoRATrainer(model: f.model, adapter: f.adapter, config: c)
        var losses: [Double] = []
        try trainer.run(TrainingData.windows(f.inputIDs, seqLen: 64)) { losses.append($0.loss) }
        #expect(losses.count == 5)
        #expect(losses.last! < losses.first! - 0.1, "\(losses)")
    }
}

@Suite struct TrainingDataTests {
    static func gemmaTokenizer() throws -> Tokenizer? {
        guard let url = Fixtures.realModel else { print("skipped: run tools/setup for the real model"); return nil }
        return try Tokenizer.fromGGUF(path: url.path)
    }

    /// Plain text: llama.cpp's tokenization of GPL-3 (BOS first), cut into windows.
    @Test func textIsTokenizedAndWindowed() throws {
        guard let tok = try Self.gemmaTokenizer() else { return }
        let doc = try JSONParser.parse(contentsOf: Fixtures.root.appendingPathComponent("gemma3-270m-gpl3-tokens.json").path)
        let expected = (doc["ids_with_bos"]?.arrayValue ?? []).compactMap(\.intValue)
        let (seqs, summary) = try TrainingData.load(path: Fixtures.root.appendingPathComponent("tokenizer/GPL-3").path,
                                                    tokenizer: tok, seqLen: 1000)
        #expect(seqs.count == (expected.count + 999) / 1000)
        #expect(seqs.flatMap(\.tokens) == expected)
        #expect(seqs[0].labels == Array(expected[1..<1000]) + [-100])
        #expect(summary.labelled == expected.count - seqs.count)
    }

    /// JSONL: {"text"} counts every next token (EOS appended); {"prompt","completion"} only the
    /// completion's. Ids from llama.cpp: "Hello world" = [2, 9259, 1902]; EOS of Gemma 3 is 1.
    @Test func jsonlRecordsAndCompletionMask() throws {
        guard let tok = try Self.gemmaTokenizer() else { return }
        #expect(tok.eosID == 1)
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("d.jsonl")
        try Data("{\"text\": \"Hello world\"}\n\n{\"prompt\": \"Hello\", \"completion\": \" world\"}\n".utf8).write(to: path)
        let (seqs, summary) = try TrainingData.load(path: path.path, tokenizer: tok, seqLen: 64)
        #expect(seqs.count == 2)
        #expect(seqs[0] == TrainingSequence(tokens: [2, 9259, 1902, 1], labels: [9259, 1902, 1, -100]))
        #expect(seqs[1] == TrainingSequence(tokens: [2, 9259, 1902, 1], labels: [-100, 1902, 1, -100]))
        #expect(summary.labelled == 5)
        // Bad records are errors naming the line.
        try Data("{\"text\": \"a\"}\n{\"prompt\": 3}\n".utf8).write(to: path)
        #expect(throws: SmolError.self) { try TrainingData.load(path: path.path, tokenizer: tok, seqLen: 64) }
    }
}
