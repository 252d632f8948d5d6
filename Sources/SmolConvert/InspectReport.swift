import SmolFormats
import SmolTensor

/// What `smolconv inspect` reports about a checkpoint, independent of how it is printed.
public struct InspectReport: Sendable {
    public var path: String
    public var format: CheckpointFormat
    /// "GGUF v3, alignment 32", "safetensors, 5 shards", …
    public var formatDetail: String
    public var architecture: String?
    /// In file order; shapes row-major for both formats.
    public var tensors: [TensorInfo]
    /// Bytes on disk (all shards).
    public var fileBytes: Int
    /// GGUF key–values, or config.json plus safetensors `__metadata__`, in file order.
    public var metadata: [(key: String, value: JSONValue)]

    public init(_ ckpt: Checkpoint) throws {
        path = ckpt.path
        format = ckpt.format
        architecture = ckpt.architecture
        tensors = ckpt.source.tensorInfos
        metadata = []
        switch ckpt.format {
        case .gguf:
            let g = ckpt.gguf!
            formatDetail = "GGUF v\(g.version), alignment \(g.alignment)"
            fileBytes = ckpt.packed?.file.size ?? g.fileSize
            for (k, v) in g.metadata { metadata.append((k, InspectReport.json(v))) }
        case .huggingFace, .safetensors:
            // (for a packed checkpoint: safetensors `__metadata__` is not listed)
            let files = InspectReport.safetensorsFiles(ckpt.source)
            formatDetail = files.count > 1 ? "safetensors, \(files.count) shards" : "safetensors"
            fileBytes = ckpt.packed?.file.size ?? files.reduce(0) { $0 + $1.file.size }
            if let p = ckpt.packed {
                let shards = p.index.members.filter(\.isModel).count
                formatDetail = shards > 1 ? "safetensors, \(shards) shards" : "safetensors"
            }
            if let cfg = ckpt.config?.objectValue {
                for m in cfg.members { metadata.append(("config.\(m.key)", m.value)) }
            }
            for f in files {
                for (k, v) in (f.metadataEntries ?? []) where !metadata.contains(where: { $0.key == "__metadata__.\(k)" }) {
                    metadata.append(("__metadata__.\(k)", .string(v)))
                }
            }
        }
        if let p = ckpt.packed { formatDetail = InspectReport.packedDetail(p) + formatDetail }
    }

    static func packedDetail(_ p: PackedCheckpoint) -> String {
        "smolpack v\(PackIndex.version) (zstd, \(Int((100 * Double(p.file.size) / Double(max(1, p.originalSize))).rounded())) % of \(p.originalSize) bytes) of "
    }

    static func safetensorsFiles(_ source: TensorSource) -> [SafetensorsFile] {
        if let f = source as? SafetensorsFile { return [f] }
        if let c = source as? SafetensorsCheckpoint { return c.shards }
        return []
    }

    public var parameterCount: Int { tensors.reduce(0) { $0 + $1.elementCount } }
    public var tensorBytes: Int { tensors.reduce(0) { $0 + $1.byteCount } }

    /// Bits per weight over all tensors.
    public var bitsPerWeight: Double {
        parameterCount == 0 ? 0 : Double(tensorBytes) * 8 / Double(parameterCount)
    }

    /// (type name, tensor count), most frequent first, ties by name.
    public var typeHistogram: [(type: String, count: Int)] {
        var counts: [String: Int] = [:]
        for t in tensors { counts[t.type.name, default: 0] += 1 }
        return counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    /// Tensors grouped by layer: "global" first (embeddings, final norm, output), then layer 0, 1, …
    public var layers: [(label: String, tensors: [TensorInfo])] {
        var global: [TensorInfo] = []
        var byLayer: [Int: [TensorInfo]] = [:]
        for t in tensors {
            if let n = InspectReport.layerIndex(t.name) { byLayer[n, default: []].append(t) } else { global.append(t) }
        }
        var out: [(String, [TensorInfo])] = []
        if !global.isEmpty { out.append(("global", global)) }
        for n in byLayer.keys.sorted() { out.append(("layer \(n)", byLayer[n]!)) }
        return out
    }

    /// The N of `blk.N.` (GGUF) or `.layers.N.` (Hugging Face).
    public static func layerIndex(_ name: String) -> Int? {
        let parts = name.split(separator: ".")
        for (i, p) in parts.enumerated() where (p == "blk" || p == "layers" || p == "h") && i + 1 < parts.count {
            if let n = Int(parts[i + 1]) { return n }
        }
        return nil
    }

    /// Arrays longer than this are summarised unless the full form is asked for.
    public static let arraySummaryLimit = 16

    /// `{"format", "architecture", "tensors": [{"name","dtype","shape","bytes"}], "metadata": {...}}`.
    public func json(fullArrays: Bool = false) -> JSONValue {
        var root = JSONObject()
        root.append("path", .string(path))
        root.append("format", .string(format == .gguf ? "gguf" : "safetensors"))
        root.append("layout", .string(format.rawValue))
        root.append("format_detail", .string(formatDetail))
        root.append("architecture", architecture.map(JSONValue.string) ?? .null)
        root.append("parameters", .number(JSONNumber(parameterCount)))
        root.append("file_bytes", .number(JSONNumber(fileBytes)))
        root.append("tensor_bytes", .number(JSONNumber(tensorBytes)))
        var hist = JSONObject()
        for (t, c) in typeHistogram { hist.append(t, .number(JSONNumber(c))) }
        root.append("types", .object(hist))
        root.append("tensors", .array(tensors.map { t in
            .object(JSONObject([
                ("name", .string(t.name)),
                ("dtype", .string(t.type.name)),
                ("shape", .array(t.shape.map { .number(JSONNumber($0)) })),
                ("bytes", .number(JSONNumber(t.byteCount))),
            ]))
        }))
        var meta = JSONObject()
        for (k, v) in metadata { meta.append(k, fullArrays ? v : InspectReport.summarised(v)) }
        root.append("metadata", .object(meta))
        return .object(root)
    }

    /// Long arrays as `{"array_of": type, "count": n, "head": [first 8]}`.
    public static func summarised(_ v: JSONValue) -> JSONValue {
        guard case .array(let a) = v, a.count > arraySummaryLimit else { return v }
        let elementKind: String
        switch a.first {
        case .string?: elementKind = "string"
        case .number(let n)?: elementKind = n.isInteger ? "integer" : "number"
        case .bool?: elementKind = "bool"
        case .array?: elementKind = "array"
        default: elementKind = "value"
        }
        return .object(JSONObject([
            ("array_of", .string(elementKind)),
            ("count", .number(JSONNumber(a.count))),
            ("head", .array(Array(a.prefix(8)))),
        ]))
    }

    /// GGUF values as JSON: integers exactly, floats by their shortest decimal, arrays element-wise.
    public static func json(_ v: GGUFValue) -> JSONValue {
        switch v {
        case .string(let s): return .string(s)
        case .bool(let b): return .bool(b)
        case .float32(let f): return JSONValue(float: f)
        case .float64(let d): return JSONValue(double: d)
        case .uint64(let u): return .number(JSONNumber(validatedDecimal: String(u)))
        case .array(let a): return .array((0..<a.count).map { json(a[$0]) })
        default: return .number(JSONNumber(v.intValue!))
        }
    }
}
