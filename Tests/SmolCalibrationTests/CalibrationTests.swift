import Foundation
import SmolEngine
import SmolFormats
import SmolModels
import SmolQuant
import SmolTensor
import SmolTestSupport
import Testing
@testable import SmolCalibration

/// Float32 sums of a few hundred products against Float64 loops: relative error well under 1e-5.
let hessianTolerance = 1e-4

/// Deterministic pseudo-random token ids (an LCG), so the tests need no tokenizer.
func tokenWindows(vocab: Int, windows: Int, length: Int) -> [[Int]] {
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    return (0..<windows).map { _ in
        (0..<length).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int((state >> 33) % UInt64(vocab))
        }
    }
}

/// Runs the llama fixture over token windows and returns the collector and the model.
func collectLlama(windows: Int = 4, length: Int = 48) throws -> (StatisticsCollector, DenseDecoderModel) {
    let model = try DenseDecoderModel.load(path: Fixtures.hf("llama").path)
    let engine = Engine(model: model)
    let collector = StatisticsCollector()
    for w in tokenWindows(vocab: model.spec.vocabSize, windows: windows, length: length) {
        _ = try engine.forward(w, logitsFrom: w.count - 1, observer: collector)
    }
    return (collector, model)
}

@Test func observerSeesEveryLinearInputAndChangesNothing() throws {
    let model = try DenseDecoderModel.load(path: Fixtures.hf("llama").path)
    let engine = Engine(model: model)
    let tokens = tokenWindows(vocab: model.spec.vocabSize, windows: 1, length: 20)[0]
    let collector = StatisticsCollector()
    let plain = try engine.forward(tokens).logits
    let observed = try engine.forward(tokens, observer: collector).logits
    #expect(plain == observed)
    let inputs = collector.inputs
    // Per layer: q/k/v, o, gate/up, down; then the output head.
    #expect(inputs.count == 4 * model.spec.layers.count + 1)
    #expect(inputs.last?.weights == ["lm_head.weight"])
    #expect(inputs[0].weights == ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight", "model.layers.0.self_attn.v_proj.weight"])
    #expect(inputs.allSatisfy { $0.tokens == tokens.count })
    // The first input is RMSNorm(embeddings) · attn-norm weight: recompute it independently.
    let D = model.spec.hiddenSize
    var x = [Double](repeating: 0, count: tokens.count * D)
    for (t, id) in tokens.enumerated() {
        let e = (0..<D).map { Double(model.weights.embed[id * D + $0]) }
        let rms = (e.reduce(0) { $0 + $1 * $1 } / Double(D) + Double(model.spec.normEps)).squareRoot()
        for d in 0..<D { x[t * D + d] = e[d] / rms * Double(model.weights.layers[0].attnNorm[d]) }
    }
    let imp = inputs[0].importance
    for d in 0..<D {
        let want = (0..<tokens.count).reduce(0.0) { $0 + x[$1 * D + d] * x[$1 * D + d] } / Double(tokens.count)
        #expect(abs(Double(imp[d]) - want) <= 1e-4 * max(want, 1e-6))
    }
}

@Test func hessianMatchesPlainLoops() throws {
    let n = 24, rows = 37
    var x = [Float](repeating: 0, count: rows * n)
    for i in x.indices { x[i] = Float(sin(Double(i) * 0.37)) * Float(1 + i % 5) }
    let s = InputStatistics(weights: ["w"], layer: 0, expert: nil, inDim: n, hessian: true)
    x.withUnsafeBufferPointer { s.add($0, rows: rows) }
    let ref = InputStatistics.referenceHessian(x, rows: rows, inDim: n)
    let h = try #require(s.hessian)
    for i in 0..<(n * n) {
        let want = ref[i] / Double(rows)
        #expect(abs(Double(h[i]) - want) <= hessianTolerance * max(abs(want), 1))
    }
}

@Test func choleskyMatchesReferenceAndInverts() throws {
    let n = 150   // more than two 64-column blocks
    var a = [Double](repeating: 0, count: n * n)
    for i in 0..<n { for j in 0..<n { a[i * n + j] = cos(Double(i * 7 + j * 3)) * 0.1 } }
    // A·Aᵀ + n·I: symmetric positive definite.
    var spd = [Double](repeating: 0, count: n * n)
    for i in 0..<n { for j in 0..<n { var s = 0.0; for k in 0..<n { s += a[i * n + k] * a[j * n + k] }; spd[i * n + j] = s + (i == j ? Double(n) : 0) } }
    var L = spd
    #expect(SPD.cholesky(&L, n: n))
    let ref = try #require(SPD.choleskyReference(spd, n: n))
    for i in 0..<(n * n) { #expect(abs(L[i] - ref[i]) < 1e-9) }
    let inv = SPD.inverse(fromCholesky: L, n: n)
    for i in 0..<n { for j in 0..<n {
        var s = 0.0; for k in 0..<n { s += spd[i * n + k] * inv[k * n + j] }
        #expect(abs(s - (i == j ? 1 : 0)) < 1e-9)
    } }
}

/// BlockGrid reads codes and scales that reproduce the reference dequantizer (bit-identical to
/// gguf-py) and writes codes back into the very same bytes.
@Test(arguments: BlockGrid.supportedTypes)
func blockGridRoundTrips(_ type: GGMLType) throws {
    let (width, blockBytes) = type.blockLayout
    let rows = 3
    var w = [Float](repeating: 0, count: rows * width)
    for i in w.indices { w[i] = Float(sin(Double(i) * 1.3) + 0.3 * cos(Double(i) * 0.11)) }
    let bytes = try GGUFQuant.quantize(type, w, rows: rows, rowLength: width)
    let deq = try GGUFQuant.dequantizeReference(type, bytes, count: rows * width)
    var codes = [Int32](repeating: 0, count: width), scale = [Float](repeating: 0, count: width), offset = scale
    for r in 0..<rows {
        var block = Array(bytes[(r * blockBytes)..<((r + 1) * blockBytes)])
        block.withUnsafeBytes { BlockGrid.decode(type, $0.baseAddress!, codes: &codes, scale: &scale, offset: &offset) }
        for k in 0..<width {
            #expect(codes[k] >= 0 && codes[k] <= BlockGrid.maxCode(type))
            let v = scale[k] * Float(codes[k]) + offset[k]
            #expect(abs(v - deq[r * width + k]) <= 1e-6 * max(1, abs(deq[r * width + k])))
        }
        let original = block
        codes.withUnsafeBufferPointer { c in block.withUnsafeMutableBytes { BlockGrid.encode(type, c.baseAddress!, into: $0.baseAddress!) } }
        #expect(block == original)
    }
}

/// GPTQ on every layer matrix of the llama fixture: the output error ‖(Ŵ − W)·X‖² on the collected
/// activations is lower than round-to-nearest's for the same type, and two runs give the same bytes.
@Test(arguments: ["Q4_0", "INT4G32"])
func gptqBeatsRoundToNearest(_ target: String) throws {
    let (collector, model) = try collectLlama()
    let byName = Dictionary(collector.inputs.flatMap { s in s.weights.map { ($0, s) } }, uniquingKeysWith: { a, _ in a })
    let reader = DirectWeightReader(try Checkpoint.open(Fixtures.hf("llama").path).source)
    var checked = 0
    for (name, stats) in byName.sorted(by: { $0.key < $1.key }) {
        let shape = try #require(reader.shape(hf: name))
        let rows = shape[0], cols = shape[1]
        let w = try reader.floats(hf: name)
        let h = try #require(stats.hessian)
        let rtn: [Float], gptq: [Float]
        if target == "Q4_0" {
            rtn = try GGUFQuant.dequantize(.q4_0, try GGUFQuant.quantize(.q4_0, w, rows: rows, rowLength: cols), count: w.count)
            let b1 = try CalibratedQuantizer.gptqGGUF(.q4_0, w, rows: rows, cols: cols, hessian: h, importance: stats.importance)
            let b2 = try CalibratedQuantizer.gptqGGUF(.q4_0, w, rows: rows, cols: cols, hessian: h, importance: stats.importance)
            #expect(b1 == b2)
            gptq = try GGUFQuant.dequantize(.q4_0, b1, count: w.count)
        } else {
            let t = AffineTarget(bits: 4, groupSize: 32)
            rtn = try MLXAffine.dequantize(try MLXAffine.quantize(w, rows: rows, cols: cols, bits: 4, groupSize: 32))
            gptq = try MLXAffine.dequantize(try CalibratedQuantizer.quantizeAffine(t, w, rows: rows, cols: cols, method: .gptq,
                                                                                    importance: stats.importance, hessian: h))
        }
        let eR = CalibratedQuantizer.outputError(w, rtn, rows: rows, cols: cols, hessian: h)
        let eG = CalibratedQuantizer.outputError(w, gptq, rows: rows, cols: cols, hessian: h)
        #expect(eG < eR, "\(name): GPTQ \(eG) vs RTN \(eR)")
        checked += 1
    }
    #expect(checked == 7 * model.spec.layers.count + 1)
}

@Test func statsFileRoundTrip() throws {
    let (collector, _) = try collectLlama(windows: 2, length: 16)
    let dir = Fixtures.temporaryDirectory("calib")
    let path = dir.appendingPathComponent("stats.h5").path
    let info = CalibrationInfo(corpus: "test", ctx: 16, windows: 2, tokens: 32, model: "llama", modelHash: "0", naming: "hf", smolconvVersion: "t")
    try CalibrationWriter.write(collector.inputs, info: info, to: path)
    let f = try CalibrationFile(path: path)
    #expect(f.info == info)
    #expect(f.tensorNames.count == 15)
    let q = collector.inputs[0]
    let k = try #require(try f.statistics("model.layers.0.self_attn.k_proj.weight"))
    #expect(k.importance == q.importance && k.meanAbs == q.meanAbs && k.counts == [32])
    #expect(k.sharesInputWith == "model.layers.0.self_attn.q_proj.weight")
    #expect(try f.hessian("model.layers.0.self_attn.v_proj.weight") == q.hessian)
    #expect(throws: SmolError.self) { try CalibrationFile(path: Fixtures.hf("llama").appendingPathComponent("config.json").path) }
}

/// GPTQ onto the k-quant grids (256-column super-blocks, wider than any fixture layer): on
/// correlated synthetic inputs, the output error ‖(Ŵ − W)·X‖² is below round-to-nearest's with the
/// type's own quantizer, the bytes dequantize through the reference dequantizer, and two runs agree.
@Test(arguments: [GGMLType.q2_K, .q3_K, .q4_K, .q5_K, .q6_K])
func gptqBeatsRoundToNearestOnKQuants(_ type: GGMLType) throws {
    let rows = 6, cols = 512, tokens = 600
    var state: UInt64 = 0x1234_5678_9ABC_DEF1
    func uniform() -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(state >> 40) / Float(1 << 24) - 0.5
    }
    let w = (0..<(rows * cols)).map { _ in uniform() }
    // Inputs with a shared low-rank component (correlated columns) and uneven column scales.
    let basis = (0..<(4 * cols)).map { _ in uniform() }
    var x = [Float](repeating: 0, count: tokens * cols)
    for t in 0..<tokens {
        let coef = (0..<4).map { _ in uniform() * 4 }
        for c in 0..<cols {
            var v = 0.3 * uniform()
            for k in 0..<4 { v += coef[k] * basis[k * cols + c] }
            x[t * cols + c] = v * (1 + Float(c % 7))
        }
    }
    let s = InputStatistics(weights: ["w"], layer: 0, expert: nil, inDim: cols, hessian: true)
    x.withUnsafeBufferPointer { s.add($0, rows: tokens) }
    let h = try #require(s.hessian)
    let rtn = try GGUFQuant.dequantizeReference(type, try GGUFQuant.quantize(type, w, rows: rows, rowLength: cols), count: w.count)
    let b1 = try CalibratedQuantizer.gptqGGUF(type, w, rows: rows, cols: cols, hessian: h, importance: s.importance)
    let b2 = try CalibratedQuantizer.gptqGGUF(type, w, rows: rows, cols: cols, hessian: h, importance: s.importance)
    #expect(b1 == b2)
    let gptq = try GGUFQuant.dequantizeReference(type, b1, count: w.count)
    let eR = CalibratedQuantizer.outputError(w, rtn, rows: rows, cols: cols, hessian: h)
    let eG = CalibratedQuantizer.outputError(w, gptq, rows: rows, cols: cols, hessian: h)
    #expect(eG < eR, "\(type.name): GPTQ \(eG) vs RTN \(eR)")
}
