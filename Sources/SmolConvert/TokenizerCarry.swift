import Foundation
import SmolFormats
import SmolTensor
import SmolTokenizer

/// Carries a tokenizer across formats: tokenizer.json (+ tokenizer_config.json) ↔ GGUF
/// `tokenizer.ggml.*` metadata, through SmolTokenizer's vocabulary (the same model both ways, so
/// an HF folder tokenizes like its GGUF conversion).
enum TokenizerCarry {
    /// The GGUF tokenizer keys for a Hugging Face folder's tokenizer.json; none when it has none.
    static func ggufMetadata(folder: String, notes: inout [String]) throws -> [(String, GGUFValue)] {
        let tj = (folder as NSString).appendingPathComponent("tokenizer.json")
        guard FileManager.default.fileExists(atPath: tj) else {
            notes.append("no tokenizer.json in \(folder): the GGUF carries no tokenizer")
            return []
        }
        let t = try Tokenizer.fromHuggingFace(folder: URL(fileURLWithPath: folder))
        return t.vocabulary.ggufEntries
    }

    /// tokenizer.json and tokenizer_config.json for a GGUF's tokenizer metadata; none when it has none.
    static func huggingFaceFiles(metadata: GGUFMetadata, notes: inout [String]) throws -> [(String, [UInt8])] {
        guard metadata.contains("tokenizer.ggml.model") else { return [] }
        let v = try TokenizerVocabulary(gguf: metadata)
        let (tokenizer, config) = try v.huggingFaceJSON()
        return [("tokenizer.json", Array((tokenizer.serialized(indent: 2, sortKeys: false) + "\n").utf8)),
                ("tokenizer_config.json", Array((config.serialized(indent: 2, sortKeys: false) + "\n").utf8))]
    }
}
