import Foundation
import SmolFormats
import SmolTensor
import SmolTokenizer

/// One training sequence: its tokens and, per row, the token that row must predict (−100: no loss
/// at that row). Row t's label is normally tokens[t + 1].
public struct TrainingSequence: Sendable, Equatable {
    public var tokens: [Int]
    public var labels: [Int]
    public init(tokens: [Int], labels: [Int]) { self.tokens = tokens; self.labels = labels }
    /// Rows that count in the loss.
    public var labelCount: Int { labels.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) } }
}

/// Training data: plain text (one token stream cut into windows) or JSON lines with either
/// {"text": …} (loss on every token) or {"prompt": …, "completion": …} (loss on the completion only,
/// as TRL's `completion_only_loss`).
public enum TrainingData {
    /// A token stream cut into consecutive windows of `seqLen` tokens (labels inside each window;
    /// the last, shorter window is kept when it has a label). Like transformers' `group_texts`.
    public static func windows(_ ids: [Int], seqLen: Int) -> [TrainingSequence] {
        precondition(seqLen >= 2, "seqLen must be at least 2")
        var out: [TrainingSequence] = []
        var start = 0
        while start + 1 < ids.count {
            let w = Array(ids[start..<min(ids.count, start + seqLen)])
            out.append(TrainingSequence(tokens: w, labels: LoRAModel.shiftedLabels(w)))
            start += seqLen
        }
        return out
    }

    /// What `load` found, for the progress line.
    public struct Summary: Sendable {
        public var sequences = 0
        public var tokens = 0
        public var labelled = 0
        /// JSONL records cut to seqLen.
        public var truncated = 0
    }

    /// Reads `path`: `.jsonl` files as JSON lines, anything else as UTF-8 text. Texts are encoded
    /// with the model's tokenizer (BOS first when the model adds one); JSONL records get EOS
    /// appended (when the tokenizer has one) and are cut to `seqLen` tokens.
    public static func load(path: String, tokenizer: Tokenizer, seqLen: Int) throws -> ([TrainingSequence], Summary) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SmolError(.invalidArgument, file: path, "cannot read the training data")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw SmolError(.invalidArgument, file: path, "not UTF-8 text")
        }
        var seqs: [TrainingSequence] = []
        var summary = Summary()
        let encode = { (s: String) in tokenizer.encode(s).map { Int($0) } }
        if path.lowercased().hasSuffix(".jsonl") {
            let eos = tokenizer.eosID.map { Int($0) }
            for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
                if trimmed.isEmpty { continue }
                let record = try JSONValue.parse(trimmed, file: path)
                var tokens: [Int], promptLength = 0
                if let prompt = record["prompt"]?.stringValue, let completion = record["completion"]?.stringValue {
                    // Tokenize the joined text (as TRL does) and mask the prompt's share of it.
                    tokens = encode(prompt + completion)
                    promptLength = encode(prompt).count
                } else if let t = record["text"]?.stringValue {
                    tokens = encode(t)
                } else {
                    throw SmolError(.malformed, file: path, at: "line \(n + 1)",
                                    "expected {\"text\": …} or {\"prompt\": …, \"completion\": …}")
                }
                if let eos { tokens.append(eos) }
                if tokens.count > seqLen { tokens = Array(tokens.prefix(seqLen)); summary.truncated += 1 }
                // Row t predicts token t + 1: it counts when token t + 1 belongs to the completion.
                let labels = tokens.indices.map { t in t + 1 < tokens.count && t + 1 >= promptLength ? tokens[t + 1] : -100 }
                let s = TrainingSequence(tokens: tokens, labels: labels)
                if s.labelCount > 0 { seqs.append(s) }
            }
        } else {
            seqs = windows(encode(text), seqLen: seqLen)
        }
        summary.sequences = seqs.count
        summary.tokens = seqs.reduce(0) { $0 + $1.tokens.count }
        summary.labelled = seqs.reduce(0) { $0 + $1.labelCount }
        guard summary.labelled > 0 else {
            throw SmolError(.invalidArgument, file: path, "no training tokens (the data needs at least two tokens per sequence)")
        }
        return (seqs, summary)
    }
}
