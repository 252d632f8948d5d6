import Foundation
import Testing
import SmolFormats
import SmolModels
import SmolEngine
import SmolQuant
import SmolTensor
import SmolTestSupport
@testable import SmolTrain

/// Our Float32 gradients against torch's float64 ones on the same (dequantized) weights: only our
/// Float32 rounding remains, ~1e-6 of a tensor's largest entry through two layers and a backward
/// (measured 1e-6 … 4e-6); a wrong base (NF4 code, nibble order, block scale) moves the gradients by
/// whole percents. 2e-5 leaves margin for BLAS summation order.
let nf4GradientTolerance: Float = 2e-5
/// The loss: a mean of logsumexp terms, Float32 against float64.
let nf4LossTolerance = 1e-6

@Suite struct QLoRANF4Tests {
    /// QLoRA on a bitsandbytes-NF4 base (Tests/Fixtures/qlora/llama_nf4, written by `smolconv
    /// quantize --format nf4` from the llama fixture): loss and LoRA gradients equal torch + PEFT in
    /// float64 on the weights numpy dequantized from that folder (tools/golden_qlora_nf4.py).
    /// The NF4 linears are dequantized to Float32 when the model loads (SmolModels' NF4 reader); the
    /// LoRA matrices, activations and gradients are Float32.
    @Test func nf4BaseGradientsMatchFloat64Torch() throws {
        let dir = Fixtures.root.appendingPathComponent("qlora")
        let nf4 = dir.appendingPathComponent("llama_nf4")
        let source = try SafetensorsCheckpoint(path: nf4.path)
        // The base really is NF4: every linear of every layer is stored as packed 4-bit codes.
        let stateTensors = source.tensorInfos.filter { $0.name.hasSuffix(".quant_state.bitsandbytes__nf4") }
        #expect(stateTensors.count == 2 * 7)
        let base = try ModelLoader.load(configDirectory: nf4, source: source)
        let model = try LoRAModel(model: base, options: .transformersSDPA)
        let (adapter, _) = try PEFTAdapter.read(directory: Fixtures.hf("llama").appendingPathComponent("lora").path, spec: base.spec)
        let reference = try SafetensorsFile(path: dir.appendingPathComponent("llama_nf4_lora_reference.safetensors").path)
        let ids = try SafetensorsFile(path: Fixtures.hf("llama").appendingPathComponent("reference.safetensors").path)
        let inputIDs = try ids.tensorBytes("input_ids").withUnsafeBytes { raw in
            (0..<(raw.count / 8)).map { Int(raw.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }
        }

        let (loss, grads) = try model.lossAndGradients(tokens: inputIDs, adapter: adapter)
        let refLoss = Double(try loadFloat(reference, "loss")[0])
        #expect(abs(loss - refLoss) / abs(refLoss) < nf4LossTolerance, "loss \(loss) vs torch float64 \(refLoss)")
        var worst: Float = 0, checked = 0
        for t in grads.namedTensors(adapterName: "default") {
            let err = relativeError(t.values, try loadFloat(reference, "grad." + t.name))
            worst = max(worst, err)
            checked += 1
            #expect(err < nf4GradientTolerance, "grad \(t.name): \(err)")
        }
        #expect(checked == 28)
        print("qlora nf4: loss \(loss) (torch float64 \(refLoss)), worst gradient error \(worst)")

        // And the NF4 base differs from the Float32 one by more than the tolerance, so the test
        // would notice a loader that silently read the original weights.
        let f32 = try LoRAModel(model: try ModelLoader.load(configDirectory: Fixtures.hf("llama"),
                                                           source: try SafetensorsCheckpoint(path: Fixtures.hf("llama").path)),
                                options: .transformersSDPA)
        let (_, f32Grads) = try f32.lossAndGradients(tokens: inputIDs, adapter: adapter)
        let apart = zip(f32Grads.namedTensors(adapterName: "default"), grads.namedTensors(adapterName: "default"))
            .map { relativeError($0.0.values, $0.1.values) }.max() ?? 0
        #expect(apart > 100 * nf4GradientTolerance, "NF4 and Float32 bases give gradients only \(apart) apart")
    }
}
