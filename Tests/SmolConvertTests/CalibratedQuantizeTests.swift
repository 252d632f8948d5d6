import Foundation
import SmolCalibration
import SmolEngine
import SmolFormats
@testable import SmolModels
import SmolQuant
import SmolTensor
import SmolTestSupport
import Testing
@testable import SmolConvert

// End to end: `calibrate` on a fixture, then `quantize --calibration … --method gptq`, checked
// against round-to-nearest of the same type and against the statistics themselves.

/// Deterministic token ids (an LCG): a short corpus, so the router leaves some experts of the tiny
/// random MoE fixtures without a token (the fallback these tests exercise).
private func corpusTokens(vocab: Int, count: Int, seed: UInt64 = 0x2545_F491_4F6C_DD1D) -> [Int] {
    var state = seed
    return (0..<count).map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Int((state >> 33) % UInt64(vocab))
    }
}

private func vocabSize(_ fixture: String) throws -> Int {
    let config = try ModelConfig.load(folder: Fixtures.hf(fixture))
    return config.vocabSize
}

private func calibrate(_ fixture: String, into dir: URL, tokens: Int = 12) throws -> String {
    let stats = dir.appendingPathComponent("stats.h5").path
    var options = Calibrator.Options()
    options.ctx = tokens
    _ = try Calibrator.run(model: Fixtures.hf(fixture).path, corpus: .tokens(corpusTokens(vocab: try vocabSize(fixture), count: tokens)),
                           output: stats, options: options)
    return stats
}

/// Statistics as `calibrate` writes them, but with no row for expert `expert` of layer 0 (as if
/// the router had never picked it): its count is 0 in the [E, …] datasets.
private func calibrateWithoutExpert(_ fixture: String, expert: Int, into dir: URL, tokens: Int = 12) throws -> String {
    let stats = dir.appendingPathComponent("stats-dropped.h5").path
    let model = try ModelLoader.load(checkpoint: try Checkpoint.open(Fixtures.hf(fixture).path))
    let collector = StatisticsCollector()
    let ids = corpusTokens(vocab: try vocabSize(fixture), count: tokens)
    _ = try Engine(model: model).forward(ids, logitsFrom: ids.count - 1, observer: collector)
    var experts: [Int: Int] = [:]
    for (i, l) in model.spec.layers.enumerated() { if let m = l.moe { experts[i] = m.experts } }
    let inputs = collector.inputs.filter { !($0.layer == 0 && $0.expert == expert) }
    #expect(inputs.count < collector.inputs.count, "layer 0 expert \(expert) had tokens to drop")
    let info = CalibrationInfo(corpus: "test", ctx: tokens, windows: 1, tokens: tokens, model: fixture, modelHash: "0",
                               naming: "hf", smolconvVersion: "test")
    try CalibrationWriter.write(inputs, info: info, to: stats, expertsPerLayer: experts)
    return stats
}

private func bytes(_ file: GGUFFile, _ name: String) throws -> [UInt8] {
    try file.tensorBytes(name).withUnsafeBytes { Array($0) }
}

/// GPTQ through the whole pipeline on the MoE fixtures (per-expert qwen3_moe → GGUF stacks
/// [E, I, H]; gemma4's fused gate_up stack [E, 2I, H]; gpt_oss's transposed, interleaved gate_up):
/// every expert that saw tokens has a lower output error ‖(Ŵ−W)X‖² on its own inputs than
/// round-to-nearest, every expert without tokens is byte-identical to round-to-nearest and listed,
/// and two runs write the same file.
@Test(arguments: ["qwen3_moe", "gemma4_moe", "gpt_oss"])
func moeGPTQIsExpertAware(_ fixture: String) throws {
    let dir = Fixtures.temporaryDirectory("calib-moe")
    defer { try? FileManager.default.removeItem(at: dir) }
    var stats = try calibrate(fixture, into: dir)
    if try CalibrationFile(path: stats).tensorNames.allSatisfy({ try CalibrationFile(path: stats).statistics($0)!.counts.allSatisfy { $0 > 0 } }) {
        // Every expert saw tokens: drop one so that the fallback is exercised.
        stats = try calibrateWithoutExpert(fixture, expert: 1, into: dir)
    }
    let file = try CalibrationFile(path: stats)
    let input = Fixtures.hf(fixture).path
    func run(_ name: String, _ mix: QuantMix, _ method: CalibrationMethod) throws -> (GGUFFile, QuantizeSummary) {
        var o = QuantizeOptions()
        o.mix = mix
        if method != .rtn { o.calibration = stats; o.method = method }
        let path = dir.appendingPathComponent(name).path
        let s = try Quantizer.quantize(input: input, output: path, options: o)
        return (try GGUFFile(path: path), s)
    }
    let (reference, _) = try run("f32.gguf", .f32, .rtn)
    let (rtn, _) = try run("rtn.gguf", .q4_0, .rtn)
    let (gptq, summary) = try run("gptq.gguf", .q4_0, .gptq)
    let (again, _) = try run("gptq2.gguf", .q4_0, .gptq)
    #expect(try Data(contentsOf: URL(fileURLWithPath: gptq.path)) == (try Data(contentsOf: URL(fileURLWithPath: again.path))))

    let index = ExpertStatisticsIndex(file)
    var calibrated = 0, fellBack = 0
    var expectedFallbacks: [QuantizeSummary.ExpertFallback] = []
    for t in gptq.tensorInfos where ExpertWeightName.ggufStack(t.name) != nil {
        let E = t.shape[0], rows = t.shape[1], cols = t.shape[2]
        let type = try #require(t.type.ggmlType)
        #expect(rtn.info(t.name)?.type == t.type)
        let sn = try #require(index.forStack(t.name), "\(t.name) has statistics")
        let st = try #require(try file.statistics(sn))
        #expect(st.experts == E && st.inFeatures == cols)
        let w = try loadFloat(reference, t.name)
        let qBytes = try bytes(gptq, t.name), rBytes = try bytes(rtn, t.name)
        let per = qBytes.count / E
        var zero: [Int] = []
        for e in 0..<E {
            let slice = (e * per)..<((e + 1) * per)
            if st.counts[e] == 0 {
                #expect(Array(qBytes[slice]) == Array(rBytes[slice]), "\(fixture) \(t.name) expert \(e): not RTN")
                zero.append(e)
                fellBack += 1
                continue
            }
            let we = Array(w[(e * rows * cols)..<((e + 1) * rows * cols)])
            let h = try #require(try file.hessian(sn, expert: e))
            let g = try GGUFQuant.dequantize(type, Array(qBytes[slice]), count: rows * cols)
            let r = try GGUFQuant.dequantize(type, Array(rBytes[slice]), count: rows * cols)
            let eG = CalibratedQuantizer.outputError(we, g, rows: rows, cols: cols, hessian: h)
            let eR = CalibratedQuantizer.outputError(we, r, rows: rows, cols: cols, hessian: h)
            #expect(eG < eR, "\(fixture) \(t.name) expert \(e) (\(st.counts[e]) tokens): GPTQ \(eG) vs RTN \(eR)")
            calibrated += 1
        }
        if !zero.isEmpty { expectedFallbacks.append(.init(tensor: t.name, experts: zero)) }
    }
    #expect(calibrated > 0)
    #expect(fellBack > 0, "\(fixture): the short corpus should leave some expert without tokens")
    let sortedListed = summary.expertFallbacks.sorted { $0.tensor < $1.tensor }
    #expect(sortedListed == expectedFallbacks.sorted { $0.tensor < $1.tensor })
}

/// Expert weight names of llama.cpp's stacks and of the per-expert checkpoints (gguf-py's
/// MODEL_TENSOR names; transformers' qwen/olmoe and Mixtral per-expert module names).
@Test func expertWeightNames() throws {
    let names = ["blk.3.ffn_gate_exps.weight", "blk.3.ffn_up_exps.weight", "blk.3.ffn_gate_up_exps.weight", "blk.3.ffn_down_exps.weight"]
    #expect(names.map { ExpertWeightName.ggufStack($0)?.kind } == [.gateUp, .gateUp, .gateUp, .down])
    #expect(ExpertWeightName.ggufStack("blk.03.ffn_down_exps.weight") == nil)
    #expect(ExpertWeightName.hfPerExpert("model.layers.2.block_sparse_moe.experts.5.w2.weight").map { [$0.layer, $0.expert] } == [2, 5])
    #expect(ExpertWeightName.hfPerExpert("model.layers.2.block_sparse_moe.experts.5.w2.weight")?.kind == .down)
    #expect(ExpertWeightName.hfPerExpert("model.layers.0.mlp.experts.7.up_proj.weight")?.kind == .gateUp)
    #expect(ExpertWeightName.hfPerExpert("model.layers.0.mlp.shared_expert.up_proj.weight") == nil)
}

/// `quantize --format mlx --bits 4 --group-size G --calibration … --method gptq` writes MLX's
/// affine layout (the same tensors, dtypes, shapes, config and index as the plain MLX output)
/// holding exactly the calibrated quantizer's integers, scales and biases: the folder read back by
/// the engine's MLX reader dequantizes to the quantizer's values, and every calibrated weight's
/// output error on the calibration inputs is below mx.quantize's rounding. On qwen3_moe (per-expert
/// weights) each expert uses its own slice of the stack statistics; experts without tokens are
/// mx.quantize's bytes and listed.
@Test(arguments: [("llama", 64), ("qwen3_moe", 32)])
func mlxGPTQWritesMLXLayout(_ fixture: String, _ groupSize: Int) throws {
    let dir = Fixtures.temporaryDirectory("calib-mlx")
    defer { try? FileManager.default.removeItem(at: dir) }
    let stats = try calibrate(fixture, into: dir, tokens: fixture == "llama" ? 48 : 12)
    let file = try CalibrationFile(path: stats)
    func run(_ name: String, _ method: CalibrationMethod) throws -> (SafetensorsFile, QuantizeSummary, String) {
        var o = QuantizeOptions()
        o.format = .mlx
        o.bits = 4
        o.groupSize = groupSize
        if method != .rtn { o.calibration = stats; o.method = method }
        let path = dir.appendingPathComponent(name).path
        let s = try Quantizer.quantize(input: Fixtures.hf(fixture).path, output: path, options: o)
        return (try SafetensorsFile(path: path + "/model.safetensors"), s, path)
    }
    let (rtn, _, rtnPath) = try run("rtn", .rtn)
    let (gptq, summary, gptqPath) = try run("gptq", .gptq)
    let source = try Checkpoint.open(Fixtures.hf(fixture).path).source
    // Same layout as the plain MLX output: names, dtypes, shapes, config.json, index.
    #expect(gptq.tensorInfos.map { "\($0.name) \($0.type) \($0.shape)" } == rtn.tensorInfos.map { "\($0.name) \($0.type) \($0.shape)" })
    for f in ["config.json", "model.safetensors.index.json"] {
        #expect(try Data(contentsOf: URL(fileURLWithPath: gptqPath + "/" + f)) == (try Data(contentsOf: URL(fileURLWithPath: rtnPath + "/" + f))))
    }
    let index = ExpertStatisticsIndex(file)
    let target = AffineTarget(bits: 4, groupSize: groupSize)
    var calibrated = 0
    var fallbacks: [QuantizeSummary.ExpertFallback] = []
    for t in gptq.tensorInfos where t.type == .dense(.u32) {
        let name = t.name, module = String(name.dropLast(".weight".count))
        let shape = try #require(source.info(name)?.shape)
        let rows = shape[0], cols = shape[1]
        let stored = try QuantizedWeights.affineFloats(gptq, name, scalesOf: module, rows: rows, cols: cols, bits: 4, groupSize: groupSize)
        let plain = try QuantizedWeights.affineFloats(rtn, name, scalesOf: module, rows: rows, cols: cols, bits: 4, groupSize: groupSize)
        let located: (String, Int?)? = file.has(name) ? (name, nil) : index.forPerExpert(name).map { ($0.name, $0.expert) }
        guard let (sn, expert) = located else {
            #expect(stored == plain, "\(name): no statistics, so mx.quantize's rounding")
            continue
        }
        let st = try #require(try file.statistics(sn))
        let i = expert ?? 0
        if st.counts[i] == 0 {
            #expect(try bytes(gptq, name) == (try bytes(rtn, name)), "\(name): expert without tokens is not mx.quantize's")
            fallbacks.append(.init(tensor: name, experts: [i]))
            continue
        }
        let w = try loadFloat(source, name)
        let h = try #require(try file.hessian(sn, expert: expert))
        let q = try CalibratedQuantizer.quantizeAffine(target, w, rows: rows, cols: cols, method: .gptq,
                                                       importance: Array(st.importance[(i * cols)..<((i + 1) * cols)]), hessian: h)
        #expect(try bytes(gptq, name) == q.weight.flatMap { withUnsafeBytes(of: $0.littleEndian) { Array($0) } }, "\(name): codes")
        #expect(stored == (try MLXAffine.dequantize(q)), "\(name): read back")
        let eG = CalibratedQuantizer.outputError(w, stored, rows: rows, cols: cols, hessian: h)
        let eR = CalibratedQuantizer.outputError(w, plain, rows: rows, cols: cols, hessian: h)
        #expect(eG < eR, "\(name): GPTQ \(eG) vs mx.quantize \(eR)")
        calibrated += 1
    }
    #expect(calibrated >= (fixture == "llama" ? 14 : 1))
    #expect(summary.expertFallbacks == fallbacks.sorted { $0.tensor < $1.tensor })
    if fixture == "qwen3_moe" { #expect(!fallbacks.isEmpty) }
}

private func bytes(_ file: SafetensorsFile, _ name: String) throws -> [UInt8] {
    try file.tensorBytes(name).withUnsafeBytes { Array($0) }
}
