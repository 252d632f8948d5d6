import ArgumentParser
import SmolTensor

@main
struct Smolconv: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "smolconv",
        abstract: "Read, convert, quantize and verify small and Mixture-of-Experts language-model checkpoints.",
        discussion: """
        Inputs are Hugging Face folders (config.json + safetensors, single or sharded), single \
        .safetensors files and GGUF files. Outputs are written under a temporary name and renamed \
        when complete; inputs are never modified.
        """,
        version: "0.1.0",
        subcommands: [Inspect.self, Convert.self, Quantize.self, Verify.self, PerplexityCommand.self,
                      Generate.self, Logits.self, Tokenize.self, Detokenize.self, MoE.self, Pack.self, Unpack.self,
                      Train.self, Bench.self, Calibrate.self]
    )

    static func main() {
        BLASThreads.configure()
        main(nil)
    }
}

/// Options every reporting command shares.
struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print machine-readable JSON on stdout instead of a table.")
    var json = false
}

/// Runs a command body and turns library errors into one clear line on stderr and exit status 1
/// (ArgumentParser would otherwise print the error's debug form for non-validation errors).
func runReportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as SmolError {
        Console.error(e.description)
        throw ExitCode.failure
    }
}
