import Foundation
import SmolEngine
import SmolFormats
import SmolTensor

/// `smolconv logits`: one forward pass written as safetensors, laid out for comparison with
/// transformers (`logits` [T, V] float32; with hidden states, `hidden_states.N` [T, D] numbered as
/// transformers' `output_hidden_states`).
public enum LogitsExport {
    public static func write(engine: Engine, tokens: [Int], to path: String, hiddenStates: Bool,
                             protecting inputs: [String]) throws -> ForwardOutput {
        let out = try engine.forward(tokens, captureHiddenStates: hiddenStates)
        let T = tokens.count, V = engine.vocabSize, D = engine.model.spec.hiddenSize
        var tensors = [SafetensorsTensor(TensorInfo(name: "logits", type: .dense(.f32), shape: [T, V])) {
            TensorBytes(elements: out.logits)
        }]
        for (i, h) in (out.hiddenStates ?? []).enumerated() {
            tensors.append(SafetensorsTensor(TensorInfo(name: "hidden_states.\(i)", type: .dense(.f32), shape: [T, D])) {
                TensorBytes(elements: h)
            })
        }
        try SafetensorsWriter.write(tensors, to: path, order: .given, protecting: inputs)
        return out
    }
}
