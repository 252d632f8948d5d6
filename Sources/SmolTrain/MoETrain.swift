import Foundation
import SmolKernels
import SmolModels
import SmolTensor

// The mixture-of-experts block of the training forward (same semantics and kernels as
// SmolEngine's `moeBlock`: routing by `Kernels.route`, experts grouped per expert and multiplied by
// sgemm) with its backward: gradients flow into the block's inputs through the experts, through
// the routing weights (softmax / top-k / renormalisation; the chosen set is piecewise constant),
// the qwen2_moe shared expert and gemma4's router / pre- and post-norms. The experts' stacked
// weights stay frozen; PEFT's `target_parameters` LoRA on them is applied per expert:
//   [gate | up]_e += s · (x · A_eᵀ) · B_eᵀ      A_e = rows e·r ..< (e+1)·r of A [E·r, D]
//   y_e            += s · (h · A'_eᵀ) · B'_eᵀ    B_e[o, j] = B[o, j·E + e] of B [2I, E·r]
// (PEFT reshapes A to [E, r, in] and B to [out, r, E]; checked against the fixtures' torch loss.)
// gpt_oss keeps gate_up as [E, D, 2I] with gate and up in alternating columns: B's output 2c feeds
// gate unit c and 2c + 1 up unit c.

/// What the MoE backward needs from its forward.
struct MoETape {
    var logits: [Float] = []          // [T, E] router logits (+ bias)
    var routing = ExpertRouting(tokens: 0, topK: 1, experts: [], weights: [])   // weights before per_expert_scale
    var expertIn: [Float] = []        // [T, D]
    var groups: [ExpertGroup] = []
    var yOfSlot: [Float] = []         // [T·K, D] each slot's expert output (bias and LoRA included)
    var shared: SharedTape? = nil
    var denseRaw: [Float]? = nil      // gemma4: dense MLP output before post_feedforward_layernorm_1
    var expertsRaw: [Float] = []      // gemma4: Σ experts before post_feedforward_layernorm_2
}

struct ExpertGroup {
    var expert: Int
    var slots: [Int]                  // slot t·K + k of each row
    var gate: [Float] = []            // [n, I] pre-activation (bias and LoRA included)
    var up: [Float] = []              // [n, I]
    var act: [Float] = []             // [n, I] activation output (down input)
    var uGateUp: [Float] = []         // [n, r] x · A_eᵀ
    var uDown: [Float] = []           // [n, r] act · A'_eᵀ
}

struct SharedTape {
    var g: [Float], u: [Float], out: [Float], sigma: [Float]   // [T, S], [T, S], [T, D], [T]
}

/// A stacked PEFT pair seen per expert: A_e is rows e·r ..< (e+1)·r of A [E·r, in]; B_e [out, r] is
/// gathered once from B [out, E·r] (column j·E + e) into expert-major order, so that each expert's
/// slice is contiguous (gathering it per expert touched a cache line per element: 7 % of the MoE step).
struct ExpertLoRA {
    let pair: LoRAPair
    let experts: Int
    let bByExpert: [Float]   // [E, out, r]
    var r: Int { pair.rank / experts }

    init(_ p: LoRAPair, experts E: Int) {
        pair = p; experts = E
        let r = p.rank / E, out = p.outDim
        bByExpert = [Float](unsafeUninitializedCapacity: out * p.rank) { be, count in
            p.b.withUnsafeBufferPointer { bp in
                for o in 0..<out {
                    let row = bp.baseAddress! + o * p.rank   // one row of B, read from L1 by every expert
                    for e in 0..<E { for j in 0..<r { be[(e * out + o) * r + j] = row[j * E + e] } }
                }
            }
            count = out * p.rank
        }
    }

    /// Expert e's A_e [r, in] and B_e [out, r].
    func matrices(_ e: Int) -> (a: [Float], b: [Float]) {
        let na = r * pair.inDim, nb = pair.outDim * r
        return (Array(pair.a[(e * na)..<((e + 1) * na)]), Array(bByExpert[(e * nb)..<((e + 1) * nb)]))
    }
}

/// The gradient of a stacked pair while experts add to it concurrently: A's rows go straight into
/// the stacked gradient (each expert owns its rows), B's into an expert-major buffer folded back
/// into [out, E·r] once at the end.
struct ExpertLoRAGradient: @unchecked Sendable {   // experts write disjoint ranges
    let a: UnsafeMutablePointer<Float>      // [E·r, in]
    let b: UnsafeMutablePointer<Float>      // [E, out, r]
    let r: Int, inDim: Int, outDim: Int

    func add(expert e: Int, gradA: [Float], gradB: [Float]) {
        let na = r * inDim, nb = outDim * r
        for j in 0..<na { a[e * na + j] += gradA[j] }
        for j in 0..<nb { b[e * nb + j] += gradB[j] }
    }
}

extension LoRAModel {
    /// out = MoE(residual, normed, dense) as `Engine.moeBlock`. residual: the stream after attention
    /// [T, D]; normed: its pre-MLP norm [T, D]; dense: gemma4's dense MLP output [T, D].
    func moeForward(layer i: Int, residual: [Float], normed x: [Float], dense: [Float]?, tokens T: Int,
                    adapter: LoRAAdapter, keep: Bool, tape: inout MoETape) throws -> [Float] {
        let spec = self.spec.layers[i].moe!, w = model.weights.layers[i].moe!
        let D = self.spec.hiddenSize, E = spec.experts, K = spec.topK, I = spec.intermediateSize
        let eps = self.spec.normEps, weighting = self.spec.normWeighting
        let store = w.experts

        let logits = model.routerLogits(spec, w, residual: residual, normed: x, tokens: T)   // [T, E]
        let routing = Kernels.route(logits: logits, tokens: T, experts: E, topK: K, scoring: spec.scoring)
        var weights = routing.weights
        if let pes = w.perExpertScale { for s in weights.indices { weights[s] *= pes[routing.experts[s]] } }

        var expertIn = x
        if spec.gemma4Style, let n = w.preNorm2 {
            expertIn = residual
            Kernels.rmsNorm(&expertIn, rows: T, dim: D, weight: n, eps: eps, weighting: weighting)
        }

        // Group the T·K slots by expert (token order within an expert, as the engine).
        var slotsOf = [[Int]](repeating: [], count: E)
        for s in 0..<(T * K) { slotsOf[routing.experts[s]].append(s) }
        let gu = adapter.pairs[LoRAKey(layer: i, module: .expertsGateUp)].map { ExpertLoRA($0, experts: E) }
        let dn = adapter.pairs[LoRAKey(layer: i, module: .expertsDown)].map { ExpertLoRA($0, experts: E) }
        let ls = adapter.config.scale
        var yOfSlot = [Float](repeating: 0, count: T * K * D)
        // Experts spread over the cores (largest groups first); each writes only its own slots of
        // yOfSlot and its own entry of groupOf.
        let order = (0..<E).filter { !slotsOf[$0].isEmpty }.sorted { slotsOf[$0].count > slotsOf[$1].count }
        var groupOf = [ExpertGroup?](repeating: nil, count: E)
        try yOfSlot.withUnsafeMutableBufferPointer { yop in try groupOf.withUnsafeMutableBufferPointer { gop in
            nonisolated(unsafe) let yOut = yop.baseAddress!, groupOut = gop.baseAddress!
            try forEachExpert(order, largestGroup: order.first.map { slotsOf[$0].count } ?? 0, store: store) { e, scratch, work in
                var g = ExpertGroup(expert: e, slots: slotsOf[e])
                let n = g.slots.count
                var xs = [Float](repeating: 0, count: n * D)
                for (j, s) in g.slots.enumerated() { for d in 0..<D { xs[j * D + d] = expertIn[(s / K) * D + d] } }
                try store.withExpert(e, scratch: scratch, reference: false) { m in
                    var gate = [Float](repeating: 0, count: n * I), up = gate
                    xs.withUnsafeBufferPointer { xp in gate.withUnsafeMutableBufferPointer { gp in up.withUnsafeMutableBufferPointer { upp in
                        Kernels.gemmRows(transposedWeight: true, n: n, outDim: I, k: D, xp.baseAddress!, ldx: D, m.gate, ldw: D, accumulate: false, gp.baseAddress!, ldc: I, work: work)
                        Kernels.gemmRows(transposedWeight: true, n: n, outDim: I, k: D, xp.baseAddress!, ldx: D, m.up, ldw: D, accumulate: false, upp.baseAddress!, ldc: I, work: work)
                    } } }
                    if let bg = store.gateBias, let bu = store.upBias {
                        for j in 0..<n { for c in 0..<I { gate[j * I + c] += bg[e * I + c]; up[j * I + c] += bu[e * I + c] } }
                    }
                    if let gu {
                        // [gate | up] += s · (x · A_eᵀ) · B_eᵀ: B_e's first I rows feed gate, the next I up.
                        let (a, b) = gu.matrices(e), r = gu.r
                        let u = Kernels.matmul(xs, rows: n, inDim: D, weight: a, outDim: r)      // [n, r]
                        let delta = Kernels.matmul(u, rows: n, inDim: r, weight: b, outDim: 2 * I) // [n, 2I]
                        // gpt_oss interleaves the 2I outputs (2c gate, 2c + 1 up); the others stack them.
                        let (go, uo, st) = spec.interleavedGateUp ? (0, 1, 2) : (0, I, 1)
                        for j in 0..<n { for c in 0..<I {
                            gate[j * I + c] += ls * delta[j * 2 * I + go + st * c]
                            up[j * I + c] += ls * delta[j * 2 * I + uo + st * c]
                        } }
                        if keep { g.uGateUp = u }
                    }
                    var act = gate
                    for c in act.indices { act[c] = expertActivation(gate[c], up[c], spec.activation) }
                    var y = [Float](repeating: 0, count: n * D)
                    act.withUnsafeBufferPointer { ap in y.withUnsafeMutableBufferPointer { yp in
                        Kernels.gemmRows(transposedWeight: true, n: n, outDim: D, k: I, ap.baseAddress!, ldx: I, m.down, ldw: I, accumulate: false, yp.baseAddress!, ldc: D, work: work)
                    } }
                    if let bd = store.downBias { for j in 0..<n { for d in 0..<D { y[j * D + d] += bd[e * D + d] } } }
                    if let dn {
                        let (a, b) = dn.matrices(e), r = dn.r
                        let u = Kernels.matmul(act, rows: n, inDim: I, weight: a, outDim: r)     // [n, r]
                        let delta = Kernels.matmul(u, rows: n, inDim: r, weight: b, outDim: D)   // [n, D]
                        for c in y.indices { y[c] += ls * delta[c] }
                        if keep { g.uDown = u }
                    }
                    y.withUnsafeBufferPointer { yp in
                        for (j, s) in g.slots.enumerated() { (yOut + s * D).update(from: yp.baseAddress! + j * D, count: D) }
                    }
                    if keep { g.gate = gate; g.up = up; g.act = act }
                }
                (groupOut + e).pointee = g
            }
        } }
        let groups = groupOf.compactMap { $0 }   // expert order, as the backward expects
        // out[t] = Σ_k w[t,k] · y[t,k] in slot order (as the engine sums).
        var y = [Float](repeating: 0, count: T * D)
        for t in 0..<T { for k in 0..<K {
            let s = t * K + k, wt = weights[s]
            for d in 0..<D { y[t * D + d] += wt * yOfSlot[s * D + d] }
        } }

        if let S = spec.sharedExpertSize, let sg = w.sharedGate, let su = w.sharedUp, let sd = w.sharedDown, let gateW = w.sharedExpertGate {
            var g = Kernels.matmul(x, rows: T, inDim: D, weight: sg, outDim: S)
            let u = Kernels.matmul(x, rows: T, inDim: D, weight: su, outDim: S)
            let gPre = g
            Kernels.gatedActivation(gate: &g, up: u, self.spec.activation)
            let shared = Kernels.matmul(g, rows: T, inDim: S, weight: sd, outDim: D)            // [T, D]
            let gl = Kernels.matmul(x, rows: T, inDim: D, weight: gateW, outDim: 1)              // [T, 1]
            var sigma = [Float](repeating: 0, count: T)
            for t in 0..<T {
                let s = 1 / (1 + Foundation.exp(-gl[t]))
                sigma[t] = s
                for d in 0..<D { y[t * D + d] += s * shared[t * D + d] }
            }
            if keep { tape.shared = SharedTape(g: gPre, u: u, out: shared, sigma: sigma) }
        }
        if keep {
            tape.logits = logits; tape.routing = routing; tape.expertIn = expertIn
            tape.groups = groups; tape.yOfSlot = yOfSlot
        }
        if spec.gemma4Style, let dense, let n1 = w.postNorm1, let n2 = w.postNorm2 {
            if keep { tape.denseRaw = dense; tape.expertsRaw = y }
            var m1 = dense
            Kernels.rmsNorm(&m1, rows: T, dim: D, weight: n1, eps: eps, weighting: weighting)
            Kernels.rmsNorm(&y, rows: T, dim: D, weight: n2, eps: eps, weighting: weighting)
            Kernels.add(&m1, y)
            return m1
        }
        return y
    }

    /// Backward of `moeForward`: d(out) → (d residual, d normed, d dense), LoRA gradients added.
    /// needInput: whether anything upstream trains (false: d residual and d normed come back zero).
    func moeBackward(layer i: Int, tape: MoETape, dout: [Float], residual: [Float], tokens T: Int,
                     adapter: LoRAAdapter, needInput: Bool = true, gradients: inout LoRAAdapter) throws
        -> (dResidual: [Float], dNormed: [Float], dDense: [Float]?) {
        let spec = self.spec.layers[i].moe!, w = model.weights.layers[i].moe!
        let D = self.spec.hiddenSize, E = spec.experts, K = spec.topK, I = spec.intermediateSize
        let eps = self.spec.normEps, weighting = self.spec.normWeighting
        let store = w.experts
        var dResidual = [Float](repeating: 0, count: T * D)
        var dNormed = [Float](repeating: 0, count: T * D)
        var dDense: [Float]? = nil
        var dy = dout                                                          // d(Σ experts + shared)
        if spec.gemma4Style, let n1 = w.postNorm1, let n2 = w.postNorm2, let denseRaw = tape.denseRaw {
            dDense = TrainOps.rmsNormBackward(dout, input: denseRaw, rows: T, dim: D, weight: n1, eps: eps, weighting: weighting)
            dy = TrainOps.rmsNormBackward(dout, input: tape.expertsRaw, rows: T, dim: D, weight: n2, eps: eps, weighting: weighting)
        }

        // Shared expert: y += σ(x · gᵀ) · down(act(x · Gᵀ) · (x · Uᵀ)).
        if needInput, let sh = tape.shared, let S = spec.sharedExpertSize, let sg = w.sharedGate, let su = w.sharedUp,
           let sd = w.sharedDown, let gateW = w.sharedExpertGate {
            var dShared = dy, dgl = [Float](repeating: 0, count: T)
            for t in 0..<T {
                var dot: Float = 0
                for d in 0..<D { dot += dy[t * D + d] * sh.out[t * D + d]; dShared[t * D + d] = dy[t * D + d] * sh.sigma[t] }
                dgl[t] = dot * sh.sigma[t] * (1 - sh.sigma[t])
            }
            TrainOps.linearBackward(dgl, rows: T, outDim: 1, weight: gateW, inDim: D, into: &dNormed)
            var da = [Float](repeating: 0, count: T * S)
            TrainOps.linearBackward(dShared, rows: T, outDim: D, weight: sd, inDim: S, into: &da)
            let (dg, du) = TrainOps.gatedActivationBackward(da, gate: sh.g, up: sh.u, self.spec.activation)
            TrainOps.linearBackward(dg, rows: T, outDim: S, weight: sg, inDim: D, into: &dNormed)
            TrainOps.linearBackward(du, rows: T, outDim: S, weight: su, inDim: D, into: &dNormed)
        }

        // Experts, per group, spread over the cores. Without `needInput` nothing upstream of the
        // block trains, so the block's input gradient (the gate/up products' dx, the routing and
        // shared-expert backward) is skipped, as autograd skips it for an input that needs no grad.
        var weights = tape.routing.weights
        if let pes = w.perExpertScale { for s in weights.indices { weights[s] *= pes[tape.routing.experts[s]] } }
        let guKey = LoRAKey(layer: i, module: .expertsGateUp), dnKey = LoRAKey(layer: i, module: .expertsDown)
        let gu = adapter.pairs[guKey].map { ExpertLoRA($0, experts: E) }, dn = adapter.pairs[dnKey].map { ExpertLoRA($0, experts: E) }
        let ls = adapter.config.scale
        var dxOfSlot = [Float](repeating: 0, count: needInput ? T * K * D : 0)   // [T·K, D] each slot's dx
        var guGrad = gradients.pairs.removeValue(forKey: guKey), dnGrad = gradients.pairs.removeValue(forKey: dnKey)
        let byExpert = tape.groups.sorted { $0.slots.count > $1.slots.count }
        var groupAt = [Int](repeating: -1, count: E)
        for (j, g) in tape.groups.enumerated() { groupAt[g.expert] = j }
        try withExpertGradients(&guGrad, experts: E) { guG in try withExpertGradients(&dnGrad, experts: E) { dnG in
            try dxOfSlot.withUnsafeMutableBufferPointer { dxp in
                nonisolated(unsafe) let dxOut = needInput ? dxp.baseAddress : nil, guOut = guG, dnOut = dnG
                try forEachExpert(byExpert.map(\.expert), largestGroup: byExpert.first?.slots.count ?? 0, store: store) { e, scratch, work in
                    let g = tape.groups[groupAt[e]], n = g.slots.count
                    var dyg = [Float](repeating: 0, count: n * D)
                    var xs = [Float](repeating: 0, count: n * D)
                    for (j, s) in g.slots.enumerated() {
                        let t = s / K, wt = weights[s]
                        for d in 0..<D { dyg[j * D + d] = wt * dy[t * D + d]; xs[j * D + d] = tape.expertIn[t * D + d] }
                    }
                    // Without `needInput` the backward reads only down (gate/up's dx is not formed).
                    try store.withExpert(e, scratch: scratch, reference: false, parts: needInput ? .all : .down) { m in
                        // down: y = act · Downᵀ (+ LoRA)
                        var dact = [Float](repeating: 0, count: n * I)
                        dyg.withUnsafeBufferPointer { dp in dact.withUnsafeMutableBufferPointer { ap in
                            Kernels.gemmRows(transposedWeight: false, n: n, outDim: I, k: D, dp.baseAddress!, ldx: D, m.down, ldw: I, accumulate: false, ap.baseAddress!, ldc: I, work: work)
                        } }
                        if let dn, let dnOut {
                            let (a, b) = dn.matrices(e), r = dn.r
                            var gA = [Float](repeating: 0, count: a.count), gB = [Float](repeating: 0, count: b.count)
                            TrainOps.loraBackward(dyg, x: g.act, u: g.uDown, rows: n, inDim: I, outDim: D, rank: r, scale: ls,
                                                  a: a, b: b, gradA: &gA, gradB: &gB, dx: &dact)
                            dnOut.add(expert: e, gradA: gA, gradB: gB)
                        }
                        var dgate = [Float](repeating: 0, count: n * I), dup = dgate
                        for c in 0..<(n * I) {
                            let (dg, du) = expertActivationDerivatives(g.gate[c], g.up[c], spec.activation)
                            dgate[c] = dact[c] * dg; dup[c] = dact[c] * du
                        }
                        var dx = [Float](repeating: 0, count: needInput ? n * D : 0)
                        if needInput {
                            dgate.withUnsafeBufferPointer { gp in dup.withUnsafeBufferPointer { upp in dx.withUnsafeMutableBufferPointer { xp in
                                Kernels.gemmRows(transposedWeight: false, n: n, outDim: D, k: I, gp.baseAddress!, ldx: I, m.gate, ldw: D, accumulate: false, xp.baseAddress!, ldc: D, work: work)
                                Kernels.gemmRows(transposedWeight: false, n: n, outDim: D, k: I, upp.baseAddress!, ldx: I, m.up, ldw: D, accumulate: true, xp.baseAddress!, ldc: D, work: work)
                            } } }
                        }
                        if let gu, let guOut {
                            let (a, b) = gu.matrices(e), r = gu.r
                            var dgu = [Float](repeating: 0, count: n * 2 * I)                    // [n, 2I] = [dgate | dup]
                            let (go, uo, st) = spec.interleavedGateUp ? (0, 1, 2) : (0, I, 1)
                            for j in 0..<n { for c in 0..<I {
                                dgu[j * 2 * I + go + st * c] = dgate[j * I + c]; dgu[j * 2 * I + uo + st * c] = dup[j * I + c]
                            } }
                            var gA = [Float](repeating: 0, count: a.count), gB = [Float](repeating: 0, count: b.count)
                            TrainOps.loraBackward(dgu, x: xs, u: g.uGateUp, rows: n, inDim: D, outDim: 2 * I, rank: r, scale: ls,
                                                  a: a, b: b, gradA: &gA, gradB: &gB, dx: &dx, inputGradient: needInput)
                            guOut.add(expert: e, gradA: gA, gradB: gB)
                        }
                        if let dxOut {
                            dx.withUnsafeBufferPointer { xp in
                                for (j, s) in g.slots.enumerated() { (dxOut + s * D).update(from: xp.baseAddress! + j * D, count: D) }
                            }
                        }
                    }
                }
            }
        } }
        if let guGrad { gradients.pairs[guKey] = guGrad }
        if let dnGrad { gradients.pairs[dnKey] = dnGrad }
        if !needInput { return (dResidual, dNormed, dDense) }

        // Σ over each token's slots in expert order (the order a sequential loop over the groups adds).
        var dExpertIn = [Float](repeating: 0, count: T * D)
        for t in 0..<T {
            let slots = (0..<K).map { t * K + $0 }.sorted { tape.routing.experts[$0] < tape.routing.experts[$1] }
            for s in slots { for d in 0..<D { dExpertIn[t * D + d] += dxOfSlot[s * D + d] } }
        }
        // dw of each slot = dy[t] · y[t,k].
        var dWeights = [Float](repeating: 0, count: T * K)
        for s in 0..<(T * K) {
            let t = s / K
            var dot: Float = 0
            for d in 0..<D { dot += dy[t * D + d] * tape.yOfSlot[s * D + d] }
            dWeights[s] = dot
        }
        if spec.gemma4Style, let n = w.preNorm2 {
            Kernels.add(&dResidual, TrainOps.rmsNormBackward(dExpertIn, input: residual, rows: T, dim: D, weight: n, eps: eps, weighting: weighting))
        } else {
            Kernels.add(&dNormed, dExpertIn)
        }

        // Routing weights → router logits → router input.
        if let pes = w.perExpertScale { for s in dWeights.indices { dWeights[s] *= pes[tape.routing.experts[s]] } }
        let dLogits = routingBackward(dWeights, logits: tape.logits, routing: tape.routing, experts: E, scoring: spec.scoring)
        var dRouterIn = [Float](repeating: 0, count: T * D)
        TrainOps.linearBackward(dLogits, rows: T, outDim: E, weight: w.router, inDim: D, into: &dRouterIn)
        if spec.gemma4Style, let scale = w.routerScale {
            let rootSize = Float(pow(Double(D), -0.5))
            for t in 0..<T { for d in 0..<D { dRouterIn[t * D + d] *= scale[d] * rootSize } }
            Kernels.add(&dResidual, TrainOps.rmsNormBackward(dRouterIn, input: residual, rows: T, dim: D, weight: nil, eps: eps))
        } else {
            Kernels.add(&dNormed, dRouterIn)
        }
        return (dResidual, dNormed, dDense)
    }

    /// `Kernels.forEachExpert` for this block's experts, with a `gemmRows` work buffer for groups
    /// of up to `largestGroup` rows in both shapes ([n, D] · [I, D]ᵀ and [n, I] · [D, I]ᵀ, and
    /// their transposes). Experts of at least `narrowBLASWeights` weights a matrix run with
    /// OpenBLAS narrowed to one thread.
    func forEachExpert(_ order: [Int], largestGroup n: Int, store: any ExpertStore,
                       _ body: (_ expert: Int, _ scratch: UnsafeMutablePointer<Float>, _ work: UnsafeMutablePointer<Float>) throws -> Void) throws {
        let D = store.hiddenSize, I = store.intermediateSize
        let workCount = max(Kernels.gemmRowsWork(n: n, outDim: I, k: D), Kernels.gemmRowsWork(n: n, outDim: D, k: I))
        try Kernels.forEachExpert(order, scratchCount: store.scratchCount, workCount: workCount,
                                  narrowBLAS: D * I >= Self.narrowBLASWeights, body)
    }

    /// Both workers calling threaded BLAS at once made a Qwen3-30B-A3B block step 1.4 s instead of
    /// 0.8. The count is process-wide, and narrowing it moves concurrent callers' results in the
    /// last bits; the test fixtures' tiny experts stay below, so tests running side by side never see it.
    static let narrowBLASWeights = 1 << 20

    /// `body` with the stacked pair's gradient open for concurrent per-expert adds (nil without
    /// the pair); B's expert-major buffer is folded into [out, E·r] afterwards.
    func withExpertGradients(_ p: inout LoRAPair?, experts E: Int, _ body: (ExpertLoRAGradient?) throws -> Void) rethrows {
        guard var q = p else { return try body(nil) }
        p = nil   // moved out, so the arrays are uniquely referenced and change in place
        let r = q.rank / E, out = q.outDim
        var gb = [Float](repeating: 0, count: out * q.rank)   // [E, out, r]
        try q.a.withUnsafeMutableBufferPointer { ap in try gb.withUnsafeMutableBufferPointer { bp in
            try body(ExpertLoRAGradient(a: ap.baseAddress!, b: bp.baseAddress!, r: r, inDim: q.inDim, outDim: out))
        } }
        q.b.withUnsafeMutableBufferPointer { bp in
            for o in 0..<out {
                let row = bp.baseAddress! + o * q.rank
                for e in 0..<E { for j in 0..<r { row[j * E + e] += gb[(e * out + o) * r + j] } }
            }
        }
        p = q
    }
}

/// One expert activation value as the engine computes it.
@inlinable
func expertActivation(_ gate: Float, _ up: Float, _ act: ExpertActivation) -> Float {
    switch act {
    case .gated(let a): return Kernels.activation(gate, a) * up
    case .clampedSwiGLU(let alpha, let limit): return Kernels.clampedSwiGLU(gate, up, alpha: alpha, limit: limit)
    }
}

/// (∂/∂gate, ∂/∂up) of `expertActivation`. gpt_oss: g = min(gate, limit), u = clamp(up, ±limit),
/// out = (u + 1) · g · σ(αg) (the clamps pass no gradient where they bind).
@inlinable
func expertActivationDerivatives(_ gate: Float, _ up: Float, _ act: ExpertActivation) -> (Float, Float) {
    switch act {
    case .gated(let a):
        let (v, dv) = TrainOps.activationAndDerivative(gate, a)
        return (dv * up, v)
    case .clampedSwiGLU(let alpha, let limit):
        let g = min(gate, limit), u = max(min(up, limit), -limit)
        let s = 1 / (1 + Foundation.exp(-(g * alpha)))
        let dg: Float = gate > limit ? 0 : (u + 1) * (s + g * alpha * s * (1 - s))
        let du: Float = (up > limit || up < -limit) ? 0 : g * s
        return (dg, du)
    }
}

/// d(router logits) [T, E] from d(routing weights) [T, K] (before any per-expert scale), for the
/// chosen experts held fixed: softmax → top-k (→ ÷ sum), or top-k → softmax.
func routingBackward(_ dw: [Float], logits: [Float], routing r: ExpertRouting, experts E: Int, scoring: RouterScoring) -> [Float] {
    let T = r.tokens, K = r.topK
    var d = [Float](repeating: 0, count: T * E)
    for t in 0..<T {
        let w = Array(r.weights[(t * K)..<((t + 1) * K)]), g = Array(dw[(t * K)..<((t + 1) * K)])
        let chosen = Array(r.experts[(t * K)..<((t + 1) * K)])
        switch scoring {
        case .topKThenSoftmax:
            var dot: Float = 0
            for k in 0..<K { dot += w[k] * g[k] }
            for k in 0..<K { d[t * E + chosen[k]] += w[k] * (g[k] - dot) }
        case .softmaxThenTopK(let renormalize):
            // p = softmax(logits row), recomputed as the router did.
            var p = Array(logits[(t * E)..<((t + 1) * E)])
            let m = p.max()!
            var sum: Float = 0
            for e in 0..<E { p[e] = Foundation.exp(p[e] - m); sum += p[e] }
            for e in 0..<E { p[e] /= sum }
            var dp = [Float](repeating: 0, count: E)
            if renormalize {
                // w_k = p_k / S: dp_k = (g_k − Σ_m g_m w_m) / S.
                var S: Float = 0, dot: Float = 0
                for k in 0..<K { S += p[chosen[k]]; dot += g[k] * w[k] }
                for k in 0..<K { dp[chosen[k]] += (g[k] - dot) / S }
            } else {
                for k in 0..<K { dp[chosen[k]] += g[k] }
            }
            var dot: Float = 0
            for e in 0..<E { dot += p[e] * dp[e] }
            for e in 0..<E { d[t * E + e] = p[e] * (dp[e] - dot) }
        }
    }
    return d
}
