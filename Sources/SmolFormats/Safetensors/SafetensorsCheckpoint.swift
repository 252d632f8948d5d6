// A Hugging Face checkpoint stored as safetensors: one file, or shards plus an index.
//
// model.safetensors.index.json (transformers / huggingface_hub):
//   {
//     "metadata": {"total_size": <sum of tensor data bytes>, ...},   optional here, as in transformers
//     "weight_map": {"<tensor name>": "<shard file name>", ...}
//   }
// Shards are named model-00001-of-0000N.safetensors by convention; the reader trusts the index,
// not the names. Checks: the index is strict JSON (no duplicate keys); weight_map is an object of
// strings; every shard name is a plain file name in the same folder (no '/', no '..': an index must
// not point outside its folder); every shard exists and is a valid safetensors file; every tensor the
// index lists is in the shard it names, every tensor a shard holds is listed for that shard, and no
// tensor name appears in two shards.
import SmolTensor

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A safetensors checkpoint: a single `.safetensors` file, a folder holding `model.safetensors`,
/// or a folder (or index path) with `model.safetensors.index.json` and its shards.
public final class SafetensorsCheckpoint: TensorSource {
    public static let singleFileName = "model.safetensors"
    public static let indexFileName = "model.safetensors.index.json"

    /// The path given to `init`.
    public let path: String
    /// The index file, when sharded.
    public let indexPath: String?
    /// The shards in the order of their file names (one element for a single file).
    public let shards: [SafetensorsFile]
    /// The index's `metadata` object (empty for a single file).
    public let indexMetadata: JSONObject
    /// Shard by shard, each in data-offset order.
    public let tensorInfos: [TensorInfo]
    private let location: [String: Int]   // tensor name → index into `shards`

    /// `__metadata__` of the first shard (transformers writes the same {"format": "pt"} into each).
    public var metadata: [String: String] { shards.first?.metadata ?? [:] }

    public init(path: String) throws {
        self.path = path
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw SmolError(.io, file: path, "cannot open: \(String(cString: strerror(errno)))")
        }
        let isDirectory = (st.st_mode & S_IFMT) == S_IFDIR
        let single: String?
        let index: String?
        if isDirectory {
            // transformers looks for the single file first, then the index.
            let s = Self.join(path, Self.singleFileName), i = Self.join(path, Self.indexFileName)
            if Self.isFile(s) { single = s; index = nil }
            else if Self.isFile(i) { single = nil; index = i }
            else {
                throw SmolError(.invalidArgument, file: path,
                                "folder has neither \(Self.singleFileName) nor \(Self.indexFileName)")
            }
        } else if path.hasSuffix(".index.json") {
            single = nil; index = path
        } else {
            single = path; index = nil
        }

        if let single {
            let f = try SafetensorsFile(path: single)
            indexPath = nil
            shards = [f]
            indexMetadata = JSONObject()
            tensorInfos = f.tensorInfos
            location = Dictionary(uniqueKeysWithValues: f.tensorInfos.map { ($0.name, 0) })
            return
        }

        let indexFile = index!
        indexPath = indexFile
        let json = try JSONParser.parse(contentsOf: indexFile, duplicateKeys: .reject)
        guard let root = json.objectValue else {
            throw SmolError.malformed(indexFile, at: "index", "index is not a JSON object (found \(json.kindName))")
        }
        if let m = root["metadata"], !m.isNull {
            guard let o = m.objectValue else {
                throw SmolError.malformed(indexFile, at: "metadata", "'metadata' must be an object, found \(m.kindName)")
            }
            indexMetadata = o
        } else {
            indexMetadata = JSONObject()
        }
        guard let mapValue = root["weight_map"] else {
            throw SmolError.malformed(indexFile, at: "index", "missing 'weight_map'")
        }
        guard let weightMap = mapValue.objectValue else {
            throw SmolError.malformed(indexFile, at: "weight_map", "'weight_map' must be an object, found \(mapValue.kindName)")
        }

        // Shard names, validated, in sorted order.
        var shardOf: [String: String] = [:]
        for m in weightMap.members {
            guard let shard = m.value.stringValue else {
                throw SmolError.malformed(indexFile, at: "weight_map key '\(m.key)'",
                                          "shard file name must be a string, found \(m.value.kindName)")
            }
            guard !shard.isEmpty, !shard.contains("/"), shard != ".", shard != ".." else {
                throw SmolError.malformed(indexFile, at: "weight_map key '\(m.key)'",
                                          "shard '\(shard)' is not a plain file name in the index's folder")
            }
            shardOf[m.key] = shard
        }
        let folder = Self.dirname(indexFile)
        let shardNames = Set(shardOf.values).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        var files: [SafetensorsFile] = []
        var shardIndex: [String: Int] = [:]
        for name in shardNames {
            let p = Self.join(folder, name)
            guard Self.isFile(p) else {
                throw SmolError(.invalidArgument, file: indexFile, at: "weight_map",
                                "shard file '\(name)' is listed in the index but missing (\(p))")
            }
            shardIndex[name] = files.count
            files.append(try SafetensorsFile(path: p))
        }

        // A name in two shards is reported as such before the weight_map comparison (which would
        // otherwise call it "in the wrong shard").
        var firstShard: [String: Int] = [:]
        for (i, f) in files.enumerated() {
            for info in f.tensorInfos {
                if let other = firstShard[info.name] {
                    throw SmolError.malformed(f.path, at: "tensor '\(info.name)'",
                                              "tensor is in two shards: \(shardNames[other]) and \(shardNames[i])")
                }
                firstShard[info.name] = i
            }
        }
        var loc: [String: Int] = [:]
        var infos: [TensorInfo] = []
        for (i, f) in files.enumerated() {
            let shardName = shardNames[i]
            for info in f.tensorInfos {
                guard let listed = shardOf[info.name] else {
                    throw SmolError.malformed(f.path, at: "tensor '\(info.name)'",
                                              "tensor is in shard \(shardName) but not listed in the index's weight_map")
                }
                guard listed == shardName else {
                    throw SmolError.malformed(f.path, at: "tensor '\(info.name)'",
                                              "tensor is in shard \(shardName) but the index's weight_map says \(listed)")
                }
                loc[info.name] = i
                infos.append(info)
            }
        }
        for m in weightMap.members where loc[m.key] == nil {
            let shard = shardOf[m.key]!
            throw SmolError.malformed(Self.join(folder, shard), at: "tensor '\(m.key)'",
                                      "tensor is listed in the index's weight_map for shard \(shard) but the shard does not contain it")
        }
        shards = files
        tensorInfos = infos
        location = loc
    }

    public var isSharded: Bool { indexPath != nil }

    /// The shard holding `name`.
    public func shard(of name: String) throws -> SafetensorsFile {
        guard let i = location[name] else {
            throw SmolError(.invalidArgument, file: path, at: "tensor '\(name)'", "no such tensor in this checkpoint")
        }
        return shards[i]
    }

    public func tensorBytes(_ name: String) throws -> TensorBytes {
        try shard(of: name).tensorBytes(name)
    }

    public func release(_ name: String) {
        guard let i = location[name] else { return }
        shards[i].release(name)
    }

    // MARK: - Paths

    static func join(_ a: String, _ b: String) -> String {
        a.isEmpty ? b : (a.hasSuffix("/") ? a + b : a + "/" + b)
    }

    static func dirname(_ p: String) -> String {
        guard let slash = p.lastIndex(of: "/") else { return "." }
        return slash == p.startIndex ? "/" : String(p[..<slash])
    }

    static func isFile(_ p: String) -> Bool {
        var st = stat()
        return stat(p, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }
}
