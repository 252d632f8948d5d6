// smolconv-bench: throughput of the quantized matmul kernels (SmolKernels.QuantizedLinear) on the
// real Gemma 3 270M Q4_K_M tensors, next to OpenBLAS sgemm on the same weight in F32.
//   swift run -c release smolconv-bench [--quick] [model.gguf]   (or SMOLCONV_REAL_MODEL=path)
import Foundation
import SmolFormats
import SmolKernels
import SmolTensor

let args = CommandLine.arguments.dropFirst()
let quick = args.contains("--quick")
let modelPath = args.first { !$0.hasPrefix("--") }
    ?? ProcessInfo.processInfo.environment["SMOLCONV_REAL_MODEL"]
    ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent(".cache/models/gemma-3-270m-q4_k_m.gguf").path
let gguf = try GGUFFile(path: modelPath)

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
func cpuNow() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// CPU seconds per call of the last `time` (all threads; the median sample's ratio).
nonisolated(unsafe) var lastCPU = 0.0

/// Median wall seconds of `body` over repetitions filling about `budget` seconds (at least 3).
/// The machine is shared: `lastCPU` (process CPU time of the same samples) shows how much of the
/// two cores a call really got; wall ≈ CPU / 2 means it had both.
func time(budget: Double = quick ? 0.3 : 1.0, _ body: () -> Void) -> Double {
    body()  // warm-up (page faults, BLAS threads)
    var samples: [(Double, Double)] = []
    let start = now()
    while samples.count < 3 || (now() - start < budget && samples.count < 200) {
        let t0 = now(), c0 = cpuNow(); body(); samples.append((now() - t0, cpuNow() - c0))
    }
    samples.sort { $0.0 < $1.0 }
    lastCPU = samples[samples.count / 2].1
    return samples[samples.count / 2].0
}

func weight(_ name: String) throws -> QuantizedLinear {
    let info = gguf.tensor(name)!
    return try QuantizedLinear(info.tensorInfo, bytes: try gguf.tensorBytes(name))
}

func randomFloats(_ n: Int) -> [Float] {
    var s: UInt64 = 0x1234_5678
    return (0..<n).map { _ in
        s = s &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int64(bitPattern: s) >> 40) / Float(1 << 23)
    }
}

func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
func f(_ x: Double, _ d: Int = 1) -> String { String(format: "%.\(d)f", x) }

print("model: \(modelPath)")
print("cores: \(ProcessInfo.processInfo.activeProcessorCount)")
print("")
print("== per-tensor kernels (QuantizedLinear.apply vs OpenBLAS sgemm on the F32-dequantized weight)")
print("(wall ms, median; cpu = process CPU ms of that call over both cores; OpenBLAS's spinning threads inflate its cpu)")
print("tensor                     type   [rows, cols]     T   quant ms  cpu ms   GFLOP/s  wGB/s |  f32 ms  cpu ms   GFLOP/s  wGB/s")
let tensors = ["blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_output.weight", "blk.0.attn_v.weight",
               "blk.2.attn_v.weight", "blk.0.ffn_gate.weight", "blk.0.ffn_down.weight", "blk.2.ffn_down.weight",
               "token_embd.weight"]
for name in tensors {
    let w = try weight(name)
    let dense = QuantizedLinear(f32: w.dequantized(), rows: w.rows, cols: w.cols)
    for tokens in [1, 4, 16, 128, 512] {
        if name == "token_embd.weight" && tokens > 128 && quick { continue }
        let x = randomFloats(tokens * w.cols)
        var y = [Float](repeating: 0, count: tokens * w.rows)
        let tq = time { x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { w.apply(xp.baseAddress!, tokens: tokens, into: $0.baseAddress!) } } }
        let cq = lastCPU
        let tf = time { x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { dense.apply(xp.baseAddress!, tokens: tokens, into: $0.baseAddress!) } } }
        let cf = lastCPU
        let flop = 2.0 * Double(tokens * w.rows * w.cols)
        print("\(pad(name, 26)) \(pad(w.type.name, 5)) \(pad("[\(w.rows), \(w.cols)]", 15)) \(pad(String(tokens), 4))"
              + " \(pad(f(tq * 1e3, 3), 9)) \(pad(f(cq * 1e3, 3), 8)) \(pad(f(flop / tq / 1e9), 8)) \(pad(f(Double(w.bytes.count) / tq / 1e9), 5)) |"
              + " \(pad(f(tf * 1e3, 3), 8)) \(pad(f(cf * 1e3, 3), 8)) \(pad(f(flop / tf / 1e9), 8)) \(f(Double(dense.bytes.count) / tf / 1e9))")
    }
}

// Whole-model sweeps: every matmul weight of the 18 layers (+ the tied output layer), as the engine
// would call them. They bound the engine's speed from the matmul side (attention, norms excluded).
let layerNames = gguf.tensors.map(\.name).filter {
    $0.hasPrefix("blk.") && ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
        .contains($0.split(separator: ".")[2])
}
let layers = try layerNames.map(weight)
let output = try weight("token_embd.weight")
let layerBytes = layers.reduce(0) { $0 + $1.bytes.count }
print("")
print("== whole-model matmul sweeps (\(layers.count) layer weights, \(f(Double(layerBytes) / 1e6)) MB + output \(f(Double(output.bytes.count) / 1e6)) MB)")
func sweep(_ ws: [QuantizedLinear], tokens: Int) -> Double {
    let maxCols = ws.map(\.cols).max()!, maxRows = ws.map(\.rows).max()!
    let x = randomFloats(tokens * maxCols)
    var y = [Float](repeating: 0, count: tokens * maxRows)
    return time(budget: 2) {
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                for w in ws { w.apply(xp.baseAddress!, tokens: tokens, into: yp.baseAddress!) }
            }
        }
    }
}
let decode = sweep(layers + [output], tokens: 1)
print("decode  (T=1, layers + output): \(f(decode * 1e3, 2)) ms/token (cpu \(f(lastCPU * 1e3, 2)) ms) → \(f(1 / decode)) tok/s, \(f(Double(layerBytes + output.bytes.count) / decode / 1e9)) GB/s")
let prefill = sweep(layers, tokens: 128)
print("prefill (T=128, layers only; llama-bench scores the last token): \(f(prefill * 1e3, 1)) ms (cpu \(f(lastCPU * 1e3, 1)) ms) → \(f(128 / prefill)) tok/s")
if !quick {
    // Perplexity on the F32 base: every weight F32, 512 tokens per chunk, logits for all 512.
    let denseLayers = layers.map { QuantizedLinear(f32: $0.dequantized(), rows: $0.rows, cols: $0.cols) }
    let denseOut = QuantizedLinear(f32: output.dequantized(), rows: output.rows, cols: output.cols)
    let chunk = sweep(denseLayers, tokens: 512) + sweep([denseOut], tokens: 512)
    print("F32 base, T=512 chunk (layers + output for 512 rows): \(f(chunk, 2)) s → 14 chunks \(f(14 * chunk, 1)) s")
    let chunkHalf = sweep(denseLayers, tokens: 512) + sweep([denseOut], tokens: 256)
    print("  … with output logits only for the 256 scored rows: 14 chunks \(f(14 * chunkHalf, 1)) s")
}
