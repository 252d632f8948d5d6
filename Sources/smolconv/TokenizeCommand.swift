import ArgumentParser
import Foundation
import SmolConvert
import SmolFormats
import SmolTensor
import SmolTokenizer

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Turn text into token ids with a model's own tokenizer (GGUF metadata or tokenizer.json).",
        discussion: """
        Special tokens written in the text (e.g. <start_of_turn>) are parsed as special tokens, as \
        llama.cpp does. BOS is added when the model's tokenizer says so, unless --no-bos. \
        --json prints {"ids": [...]}; otherwise the ids are printed comma-separated.
        """
    )

    @Argument(help: "A .gguf file, or a Hugging Face folder with tokenizer.json.")
    var model: String

    @Option(help: "The text to tokenize.")
    var text: String?

    @Option(help: "A UTF-8 file to tokenize.")
    var textFile: String?

    @Flag(help: "Do not add BOS (nor EOS) even if the tokenizer adds them.")
    var noBos = false

    @Flag(help: "Treat special-token text as plain text.")
    var noParseSpecial = false

    @OptionGroup var output: OutputOptions

    func validate() throws {
        if (text == nil) == (textFile == nil) { throw ValidationError("give exactly one of --text and --text-file") }
    }

    func run() throws {
        try runReportingErrors {
            let tokenizer = try EvaluationInput.tokenizer(for: Checkpoint.open(model))
            let input = try text ?? EvaluationInput.readText(textFile!)
            let ids = tokenizer.encode(input, addBOS: noBos ? false : nil, parseSpecial: !noParseSpecial)
            if output.json {
                Console.out(JSONValue.object(JSONObject([("ids", .array(ids.map { .int(Int($0)) }))])).serialized(indent: nil))
            } else {
                Console.out(ids.map(String.init).joined(separator: ","))
            }
        }
    }
}

struct Detokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Turn token ids back into text with a model's own tokenizer.",
        discussion: "IDS: comma-separated ids, a JSON array, or a file holding either (or {\"ids\": [...]})."
    )

    @Argument(help: "A .gguf file, or a Hugging Face folder with tokenizer.json.")
    var model: String

    @Argument(help: "Token ids: \"2,651,1234\", a JSON array, or a file.")
    var ids: String

    @Flag(help: "Show special tokens (BOS, EOS, control tokens) as text.")
    var renderSpecial = false

    func run() throws {
        try runReportingErrors {
            let tokenizer = try EvaluationInput.tokenizer(for: Checkpoint.open(model))
            let list = try EvaluationInput.parseIDs(ids)
            if let bad = list.first(where: { $0 >= tokenizer.vocabSize }) {
                throw SmolError(.invalidArgument, file: model, "token id \(bad) is outside the vocabulary of \(tokenizer.vocabSize)")
            }
            let bytes = tokenizer.decodeBytes(list.map { Int32($0) }, removeSpecial: !renderSpecial, renderSpecial: renderSpecial)
            Console.out(String(decoding: bytes, as: UTF8.self))
        }
    }
}
