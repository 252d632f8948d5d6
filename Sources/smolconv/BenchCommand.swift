import ArgumentParser
import Foundation
import SmolEngine
import SmolFormats
import SmolModels

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Engine speed: prefill and decode tokens/s, as llama-bench -p N -n M measures them.",
        discussion: """
        Prefill runs a --prompt-token prompt from an empty cache (logits for the last row only); \
        decode runs --gen-tokens single-token steps from an empty cache (full output layer each \
        step). Each test runs once untimed, then --reps times; the table shows mean ± standard \
        deviation of tokens/s, as llama-bench does. Weights are held in Float32 (exactly dequantized \
        at load); decode steps of a GGUF model read its block-quantized linears in their stored \
        encoding (exact: activations stay Float32), unless --f32-weights. --json prints {"model", "prompt_tokens", "gen_tokens", "prefill_tps": [...], \
        "decode_tps": [...]}.
        """
    )

    @Argument(help: "A .gguf file, a Hugging Face folder or a .safetensors file.")
    var model: String

    @Option(name: [.customShort("p"), .customLong("prompt-tokens")], help: "Prompt length of the prefill test (0: skip).")
    var promptTokens: Int = 128

    @Option(name: [.customShort("n"), .customLong("gen-tokens")], help: "Tokens of the decode test (0: skip).")
    var genTokens: Int = 32

    @Option(help: "Timed repetitions of each test.")
    var reps: Int = 3

    @Flag(help: "Decode on the Float32 copy of every weight too (the path before stored-encoding kernels).")
    var f32Weights = false

    @OptionGroup var output: OutputOptions

    func validate() throws {
        if promptTokens < 0 || genTokens < 0 || promptTokens + genTokens == 0 { throw ValidationError("give a positive -p or -n") }
        if reps < 1 { throw ValidationError("--reps must be at least 1") }
    }

    func run() throws {
        try runReportingErrors {
            let loadStart = Date()
            let engine = try Engine.load(checkpoint: try Checkpoint.open(model), options: EngineOptions(storedWeights: !f32Weights))
            Console.note("loaded \(model) in \(Format.fixed(Date().timeIntervalSince(loadStart), 1)) s")
            let r = try EngineBenchmark(promptTokens: promptTokens, generateTokens: genTokens, repetitions: reps).run(engine)
            if output.json {
                Console.out(JSONValue.object(JSONObject([
                    ("model", .string(model)),
                    ("prompt_tokens", .int(promptTokens)),
                    ("gen_tokens", .int(genTokens)),
                    ("prefill_tps", .array(r.prefill.map { .double($0) })),
                    ("decode_tps", .array(r.decode.map { .double($0) })),
                ])).serialized(indent: 2))
            } else {
                func line(_ name: String, _ v: [Double]) {
                    guard !v.isEmpty else { return }
                    let mean = v.reduce(0, +) / Double(v.count)
                    let sd = v.count > 1 ? (v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(v.count - 1)).squareRoot() : 0
                    Console.out("\(name.padding(toLength: 8, withPad: " ", startingAt: 0)) \(Format.fixed(mean, 1)) ± \(Format.fixed(sd, 1)) tokens/s")
                }
                line("pp\(promptTokens)", r.prefill)
                line("tg\(genTokens)", r.decode)
            }
        }
    }
}
