import Foundation
import SmolTensor

/// The three ways a checkpoint arrives.
public enum CheckpointFormat: String, Sendable {
    /// A Hugging Face folder: config.json + model.safetensors or shards with an index.
    case huggingFace = "hf"
    /// A single .safetensors file (a config.json beside it is used when present).
    case safetensors
    case gguf
}

/// An opened checkpoint: its tensors, plus the configuration it carries (config.json for Hugging
/// Face inputs, the key–value metadata for GGUF). Opening maps files; it reads no tensor data.
public final class Checkpoint: @unchecked Sendable {
    public let path: String
    public let format: CheckpointFormat
    public let source: TensorSource
    /// For GGUF inputs.
    public let gguf: GGUFFile?
    /// config.json, for Hugging Face folders (or beside a .safetensors file).
    public let config: JSONValue?
    /// The folder holding config.json and tokenizer files, for Hugging Face inputs. For a packed
    /// folder, a temporary folder holding the pack's side files (removed with `packed`).
    public let folder: String?
    /// Set when the input is a packed checkpoint (smolpack): `format`, `source`, `gguf` and `config`
    /// then describe the checkpoint it holds, whose tensors are decompressed on demand.
    public let packed: PackedCheckpoint?

    init(path: String, format: CheckpointFormat, source: TensorSource, gguf: GGUFFile?, config: JSONValue?, folder: String?,
         packed: PackedCheckpoint? = nil) {
        self.path = path
        self.format = format
        self.source = source
        self.gguf = gguf
        self.config = config
        self.folder = folder
        self.packed = packed
    }

    /// Opens a folder, a .safetensors file, a .gguf file or a packed checkpoint of any of them,
    /// recognising files by their first bytes.
    public static func open(_ path: String) throws -> Checkpoint {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw SmolError(.io, file: path, "no such file or folder")
        }
        if isDir.boolValue {
            let st = try SafetensorsCheckpoint(path: path)
            let configPath = (path as NSString).appendingPathComponent("config.json")
            let config = FileManager.default.fileExists(atPath: configPath) ? try readConfig(configPath) : nil
            return Checkpoint(path: path, format: .huggingFace, source: st, gguf: nil, config: config, folder: path)
        }
        let magic = try MappedFile(path: path)
        if magic.size >= PackIndex.magic.count, Array(try magic.bytes(at: 0, count: PackIndex.magic.count)) == PackIndex.magic {
            return try openPacked(path)
        }
        let head = try magic.bytes(at: 0, count: min(4, magic.size))
        if head.count == 4 && Array(head) == Array("GGUF".utf8) {
            let g = try GGUFFile(path: path)
            return Checkpoint(path: path, format: .gguf, source: g, gguf: g, config: nil, folder: nil)
        }
        if path.hasSuffix(".gguf") {
            throw SmolError.malformed(path, at: "offset 0", "bad magic: expected 'GGUF', found \(head.map { String(format: "%02x", $0) }.joined(separator: " "))")
        }
        let st = try SafetensorsFile(path: path)
        let dir = (path as NSString).deletingLastPathComponent
        let configPath = ((dir.isEmpty ? "." : dir) as NSString).appendingPathComponent("config.json")
        let config = FileManager.default.fileExists(atPath: configPath) ? try? readConfig(configPath) : nil
        return Checkpoint(path: path, format: .safetensors, source: st, gguf: nil, config: config ?? nil,
                          folder: config == nil ? nil : dir)
    }

    static func openPacked(_ path: String) throws -> Checkpoint {
        let pack = try PackedCheckpoint(path: path)
        if pack.isFolder {
            let dir = try pack.extractedSideFiles()
            let configPath = (dir as NSString).appendingPathComponent("config.json")
            let config = FileManager.default.fileExists(atPath: configPath) ? try readConfig(configPath) : nil
            return Checkpoint(path: path, format: .huggingFace, source: pack, gguf: nil, config: config, folder: dir, packed: pack)
        }
        let member = pack.index.members[0]
        switch member.format {
        case .gguf:
            // The original header, parsed as a GGUF file whose tensors come from the pack; its
            // tensor table must agree with the pack's index.
            guard let (_, header) = try pack.modelHeader() else {
                throw SmolError.malformed(path, at: "index", "packed GGUF has no header segment")
            }
            let g = try header.withUnsafeBytes {
                try GGUFFile(path: path, header: $0, fileSize: member.size, tensors: pack)
            }
            var starts: [String: Int] = [:]
            for (si, s) in member.segments.enumerated() { if let t = s.tensor { starts[t.name] = pack.segmentOffsets[0][si] } }
            guard starts.count == g.tensors.count else {
                throw SmolError.malformed(path, at: "index", "the packed GGUF header lists \(g.tensors.count) tensors, the index \(starts.count)")
            }
            for t in g.tensors {
                guard let at = starts[t.name], at == g.dataOffset + t.relativeOffset, pack.info(t.name) == t.tensorInfo else {
                    throw SmolError.malformed(path, at: "tensor '\(t.name)'", "the packed GGUF header and the index disagree about this tensor")
                }
            }
            return Checkpoint(path: path, format: .gguf, source: g, gguf: g, config: nil, folder: nil, packed: pack)
        case .safetensors:
            let dir = (path as NSString).deletingLastPathComponent
            let configPath = ((dir.isEmpty ? "." : dir) as NSString).appendingPathComponent("config.json")
            let config = FileManager.default.fileExists(atPath: configPath) ? try? readConfig(configPath) : nil
            return Checkpoint(path: path, format: .safetensors, source: pack, gguf: nil, config: config ?? nil,
                              folder: config == nil ? nil : dir, packed: pack)
        case .other:
            throw SmolError(.unsupported, file: path, "the packed file is neither safetensors nor GGUF")
        }
    }

    static func readConfig(_ path: String) throws -> JSONValue {
        let v = try JSONParser.parse(contentsOf: path)
        guard v.objectValue != nil else {
            throw SmolError.malformed(path, "config.json is not a JSON object")
        }
        return v
    }

    /// `general.architecture` for GGUF; config.json's `model_type` otherwise.
    public var architecture: String? {
        if let gguf { return gguf.metadata.string("general.architecture") }
        return config?.objectValue?["model_type"]?.stringValue
    }
}
