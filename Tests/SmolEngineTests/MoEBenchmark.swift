import Foundation
import Testing
import SmolTestSupport
import SmolTensor
import SmolKernels
import SmolQuant
import SmolModels

// One MoE layer with Qwen3-30B-A3B's expert shapes (E 128, top-8, D 2048, I 768), random weights:
// the grouped expert kernel against the per-token reference loop, Float32 and Q4_0 experts.
// Run by tools/bench_moe.sh (release build); skipped unless SMOLCONV_BENCH_MOE=1.
// SMOLCONV_BENCH_MOE_TOKENS (default 512) sets T; SMOLCONV_BENCH_MOE_REF_TOKENS runs the (slow)
// reference on the first that many tokens only and scales its time linearly (it is per token).

private let env = ProcessInfo.processInfo.environment

/// Resident set size in bytes (/proc/self/statm).
private func rss() -> Int {
    guard let s = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let f = s.split(separator: " ")
    return f.count > 1 ? (Int(f[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE))) : 0
}

private func cpuSeconds() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_utime.tv_sec) + Double(u.ru_utime.tv_usec) / 1e6 + Double(u.ru_stime.tv_sec) + Double(u.ru_stime.tv_usec) / 1e6
}

private final class PeakSampler: @unchecked Sendable { var value = 0; var stop = false; let lock = NSLock() }

/// Runs `body`, sampling RSS every millisecond: (result, wall seconds, CPU seconds, peak RSS above
/// the RSS at the start).
private func measure<R>(_ body: () throws -> R) rethrows -> (R, Double, Double, Int) {
    let peak = PeakSampler()
    let base = rss()
    let sampler = Thread {
        while true {
            peak.lock.lock(); let stop = peak.stop; peak.lock.unlock()
            if stop { break }
            let r = rss()
            peak.lock.lock(); peak.value = max(peak.value, r); peak.lock.unlock()
            usleep(1000)
        }
    }
    sampler.start()
    let c0 = cpuSeconds(), t0 = Date()
    let r = try body()
    let wall = Date().timeIntervalSince(t0), cpu = cpuSeconds() - c0
    peak.lock.lock(); peak.stop = true; let p = max(peak.value, rss()); peak.lock.unlock()
    return (r, wall, cpu, max(0, p - base))
}

/// Fast deterministic fill (xorshift), values in ±scale.
private func randomFloats(_ n: Int, seed: UInt64, scale: Float) -> [Float] {
    var out = [Float](repeating: 0, count: n)
    let chunks = 16, per = (n + chunks - 1) / chunks
    out.withUnsafeMutableBufferPointer { p in
        nonisolated(unsafe) let base = p.baseAddress!
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            var s = seed &+ UInt64(c) &* 0x9E37_79B9_7F4A_7C15 | 1
            for i in (c * per)..<min(n, (c + 1) * per) {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17
                base[i] = (Float(s >> 40) / Float(1 << 24) * 2 - 1) * scale
            }
        }
    }
    return out
}

@Suite struct MoEBenchmark {
    @Test(.enabled(if: env["SMOLCONV_BENCH_MOE"] == "1"))
    func qwen3_30B_A3B_layer() throws {
        let E = 128, K = 8, D = 2048, I = 768
        let T = Int(env["SMOLCONV_BENCH_MOE_TOKENS"] ?? "") ?? 512
        let refT = min(T, Int(env["SMOLCONV_BENCH_MOE_REF_TOKENS"] ?? "") ?? T)
        let x = randomFloats(T * D, seed: 1, scale: 1)
        let router = randomFloats(E * D, seed: 2, scale: 0.05)
        let logits = Kernels.matmul(x, rows: T, inDim: D, weight: router, outDim: E)
        let routing = Kernels.route(logits: logits, tokens: T, experts: E, topK: K, scoring: .softmaxThenTopK(renormalize: true))
        let refRouting = ExpertRouting(tokens: refT, topK: K, experts: Array(routing.experts.prefix(refT * K)),
                                       weights: Array(routing.weights.prefix(refT * K)))
        let refX = Array(x.prefix(refT * D))
        let active = Set(routing.experts).count

        let m = E * I * D
        let f32 = DenseExpertStore(experts: E, hidden: D, intermediate: I,
                                   gate: randomFloats(m, seed: 3, scale: 0.03), up: randomFloats(m, seed: 4, scale: 0.03),
                                   down: randomFloats(m, seed: 5, scale: 0.03))
        func q4(_ v: [Float], rows: Int, cols: Int) throws -> QuantizedExpertStore.Stack {
            let bytes = try GGUFQuant.quantize(.q4_0, v, rows: rows, rowLength: cols)
            return try QuantizedExpertStore.Stack(type: .q4_0, bytes: TensorBytes(bytes), experts: E,
                                                  expertStride: bytes.count / E, offset: 0, elements: I * D)
        }
        let q = try QuantizedExpertStore(experts: E, hidden: D, intermediate: I,
                                         gate: try q4(f32.gate, rows: E * I, cols: D), up: try q4(f32.up, rows: E * I, cols: D),
                                         down: try q4(f32.down, rows: E * D, cols: I))
        print("MoE layer E=\(E) top-\(K) D=\(D) I=\(I), T=\(T) tokens (\(active) experts active), reference on \(refT) tokens, \(ProcessInfo.processInfo.activeProcessorCount) cores")
        for (name, store) in [("F32 ", f32 as any ExpertStore), ("Q4_0", q as any ExpertStore)] {
            let (fast, gw, gc, gm) = try measure { try Kernels.moeExperts(x, routing: routing, store: store, activation: .gated(.silu)) }
            let (slow, rw, rc, rm) = try measure { try ReferenceKernels.moeExperts(refX, routing: refRouting, store: store, activation: .gated(.silu)) }
            let rwFull = rw * Double(T) / Double(refT)
            let err = relativeError(Array(fast.prefix(refT * D)), slow)
            print(String(format: "%@ experts: grouped %.3f s (cpu/wall %.2f, peak +%.1f MB) | reference %.3f s%@ (cpu/wall %.2f, peak +%.1f MB) | speed-up %.1fx | max rel diff %.1e",
                         name, gw, gc / gw, Double(gm) / 1e6, rwFull, refT < T ? " (scaled from \(refT) tokens)" : "",
                         rc / rw, Double(rm) / 1e6, rwFull / gw, err))
            #expect(err < 1e-4, "\(name): grouped vs reference")
        }
    }
}
