import Foundation
import SmolFormats
import SmolTensor

/// Carries a tokenizer across formats: tokenizer.json (+ tokenizer_config.json) ↔ GGUF
/// `tokenizer.ggml.*` metadata.
enum TokenizerCarry {
    static func ggufMetadata(folder: String, notes: inout [String]) throws -> [(String, GGUFValue)] {
        if FileManager.default.fileExists(atPath: (folder as NSString).appendingPathComponent("tokenizer.json")) {
            notes.append("tokenizer.json not carried into GGUF yet")
        }
        return []
    }

    static func huggingFaceFiles(metadata: GGUFMetadata, notes: inout [String]) throws -> [(String, [UInt8])] {
        if metadata.contains("tokenizer.ggml.model") {
            notes.append("tokenizer metadata not written as tokenizer.json yet")
        }
        return []
    }
}
