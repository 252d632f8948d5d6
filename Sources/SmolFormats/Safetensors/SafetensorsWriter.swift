// Writing safetensors files the way the `safetensors` crate (0.8, behind Python's `save_file`) and
// transformers' `save_pretrained` write them, so outputs can be compared byte for byte.
//
// What the crate does (checked by writing files with Python safetensors 0.8.0):
// - header JSON as serde_json `to_string`: no whitespace, `__metadata__` first (when given), then one
//   entry per tensor in data order, members in the order dtype, shape, data_offsets;
// - header padded with spaces (0x20) so its length N is a multiple of 8 (the data section then
//   starts 8-byte aligned);
// - tensors ordered by dtype, largest first in the crate's `Dtype` enum order (U64, I64, F64, C64, F32,
//   U32, I32, BF16, F16, U16, I16, F8_E5M2FNUZ, F8_E4M3FNUZ, F8_E8M0, F8_E4M3, F8_E5M2, I8, U8, F6_E3M2,
//   F6_E2M3, F4, BOOL), ties by name in byte order; no gaps between tensors.
// `Order.safetensorsLibrary` reproduces that order; `Order.given` keeps the caller's order (useful when
// the order is meaningful, e.g. to stream a source in its own file order). Readers accept both.
//
// Sharding follows huggingface_hub's `split_state_dict_into_shards_factory` (used by transformers):
// walk the tensors in order, start a new shard when adding the next tensor would push the current
// shard's data bytes above `maxShardSize` (a tensor larger than the limit gets a shard of its own);
// one shard is written as `model.safetensors` with no index; N > 1 shards as
// `model-00001-of-0000N.safetensors` plus `model.safetensors.index.json`, which is
// `json.dumps({"metadata": {"total_parameters": …, "total_size": …}, "weight_map": {…}}, indent=2,
// sort_keys=True) + "\n"` as transformers 5 writes it (total_size = sum of tensor data bytes,
// total_parameters = sum of element counts).
import SmolTensor

/// One tensor to write: what it is, and a closure that produces its bytes when the writer reaches
/// it, so only one tensor needs to be in memory at a time.
public struct SafetensorsTensor {
    public var info: TensorInfo
    public var produce: () throws -> TensorBytes

    public init(_ info: TensorInfo, produce: @escaping () throws -> TensorBytes) {
        self.info = info
        self.produce = produce
    }

    /// Copies a tensor of `source` under the same (or another) name.
    public static func from(_ source: any TensorSource, _ info: TensorInfo, as name: String? = nil) -> SafetensorsTensor {
        var i = info
        if let name { i.name = name }
        return SafetensorsTensor(i) { try source.tensorBytes(info.name) }
    }
}

public enum SafetensorsWriter {
    public enum Order: Sendable {
        /// The caller's order.
        case given
        /// Python `safetensors`' order: by dtype (crate enum order, descending), then by name.
        case safetensorsLibrary
    }

    /// transformers writes `{"format": "pt"}`, and some loaders check for it.
    public static let defaultMetadata: [(String, String)] = [("format", "pt")]

    /// The crate's `Dtype` enum order (ascending); `.safetensorsLibrary` sorts by it descending.
    static let crateDTypeRank: [String: Int] = {
        let order = ["BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
                     "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32",
                     "C64", "F64", "I64", "U64"]
        return Dictionary(uniqueKeysWithValues: order.enumerated().map { ($1, $0) })
    }()

    /// The tensors in the order they will be written.
    public static func ordered(_ infos: [TensorInfo], _ order: Order) -> [Int] {
        let idx = Array(infos.indices)
        switch order {
        case .given: return idx
        case .safetensorsLibrary:
            return idx.sorted { a, b in
                let ra = crateDTypeRank[infos[a].type.name] ?? -1, rb = crateDTypeRank[infos[b].type.name] ?? -1
                if ra != rb { return ra > rb }
                return infos[a].name.utf8.lexicographicallyPrecedes(infos[b].name.utf8)
            }
        }
    }

    /// Checks the tensors can be written and returns each one's byte count.
    static func validate(_ infos: [TensorInfo], file: String) throws -> [Int] {
        var seen = Set<String>()
        return try infos.map { info in
            let at = "tensor '\(info.name)'"
            guard case .dense(let dtype) = info.type else {
                throw SmolError(.unsupported, file: file, at: at,
                                "\(info.type.name) is a ggml block-quantized type; safetensors has no dtype for it (dequantize first, or write GGUF)")
            }
            guard info.name != "__metadata__" else {
                throw SmolError(.invalidArgument, file: file, at: at, "'__metadata__' is reserved in safetensors headers")
            }
            guard seen.insert(info.name).inserted else {
                throw SmolError(.invalidArgument, file: file, at: at, "duplicate tensor name")
            }
            guard let n = Checked.product(info.shape), let bytes = Checked.multiply(n, dtype.size) else {
                throw SmolError(.invalidArgument, file: file, at: at, "invalid shape \(info.shape) (negative or overflowing)")
            }
            return bytes
        }
    }

    /// The padded header (without the 8-byte length) for tensors written back to back in the
    /// order given.
    public static func header(_ infos: [TensorInfo], metadata: [(String, String)]?) throws -> [UInt8] {
        let sizes = try validate(infos, file: "<header>")
        var root = JSONObject()
        if let metadata {
            root.append("__metadata__", .object(JSONObject(metadata.map { ($0.0, JSONValue.string($0.1)) })))
        }
        var offset = 0
        for (info, size) in zip(infos, sizes) {
            let end = offset + size
            root.append(info.name, .object(JSONObject([
                ("dtype", .string(info.type.name)),
                ("shape", .array(info.shape.map { JSONValue($0) })),
                ("data_offsets", .array([JSONValue(offset), JSONValue(end)])),
            ])))
            offset = end
        }
        var bytes = Array(JSONWriter.compact(.object(root)).utf8)
        bytes.append(contentsOf: repeatElement(UInt8(ascii: " "), count: (8 - bytes.count % 8) % 8))
        return bytes
    }

    /// Writes one `.safetensors` file through a temporary file renamed into place at the end.
    /// - Parameter inputs: files the output must not overwrite.
    public static func write(_ tensors: [SafetensorsTensor], metadata: [(String, String)]? = defaultMetadata,
                             to path: String, order: Order = .given, protecting inputs: [String] = []) throws {
        let out = try writeUncommitted(tensors, metadata: metadata, to: path, order: order, protecting: inputs)
        try out.commit()
    }

    private static func writeUncommitted(_ tensors: [SafetensorsTensor], metadata: [(String, String)]?,
                                         to path: String, order: Order, protecting inputs: [String]) throws -> OutputFile {
        let infos = tensors.map(\.info)
        let sizes = try validate(infos, file: path)
        let sequence = ordered(infos, order)
        let head: [UInt8]
        do {
            head = try header(sequence.map { infos[$0] }, metadata: metadata)
        } catch let e as SmolError {
            throw e.inFile(path)
        }
        let out = try OutputFile(path: path, protecting: inputs)
        var n = UInt64(head.count).littleEndian
        try withUnsafeBytes(of: &n) { try out.write($0) }
        try out.write(head)
        for i in sequence {
            let bytes = try tensors[i].produce()
            guard bytes.count == sizes[i] else {
                throw SmolError(.mismatch, file: path, at: "tensor '\(infos[i].name)'",
                                "producer returned \(bytes.count) bytes but \(infos[i].type.name) \(infos[i].shape) needs \(sizes[i])")
            }
            try out.write(bytes)
        }
        return out
    }

    /// How huggingface_hub splits tensors (in the given order) into shards of at most
    /// `maxShardSize` data bytes; returns index lists into `infos`.
    public static func shardPlan(_ infos: [TensorInfo], maxShardSize: Int) -> [[Int]] {
        var shards: [[Int]] = []
        var current: [Int] = []
        var currentSize = 0
        for (i, info) in infos.enumerated() {
            let size = info.byteCount
            if size > maxShardSize {
                shards.append([i])
                continue
            }
            if currentSize + size > maxShardSize {
                shards.append(current)
                current = []
                currentSize = 0
            }
            current.append(i)
            currentSize += size
        }
        shards.append(current)
        return shards.filter { !$0.isEmpty }
    }

    public static func shardFileName(_ baseName: String, _ i: Int, of n: Int) -> String {
        func pad5(_ v: Int) -> String { let s = String(v); return String(repeating: "0", count: max(0, 5 - s.count)) + s }
        return "\(baseName)-\(pad5(i + 1))-of-\(pad5(n)).safetensors"
    }

    /// Writes a checkpoint into `directory` split at `maxShardSize` data bytes per shard (the
    /// partition uses the given order; `order` then orders tensors within each shard). Nothing is
    /// renamed into place until every shard and the index are complete.
    /// - Returns: the paths written (shards, then the index when there is one).
    @discardableResult
    public static func writeSharded(_ tensors: [SafetensorsTensor], metadata: [(String, String)]? = defaultMetadata,
                                    to directory: String, maxShardSize: Int, baseName: String = "model",
                                    order: Order = .given, protecting inputs: [String] = []) throws -> [String] {
        guard maxShardSize > 0 else {
            throw SmolError(.invalidArgument, file: directory, "maximum shard size must be positive, got \(maxShardSize)")
        }
        let infos = tensors.map(\.info)
        let sizes = try validate(infos, file: directory)
        let plan = shardPlan(infos, maxShardSize: maxShardSize)
        if plan.count <= 1 {
            let p = SafetensorsCheckpoint.join(directory, "\(baseName).safetensors")
            try write(tensors, metadata: metadata, to: p, order: order, protecting: inputs)
            return [p]
        }
        var outputs: [OutputFile] = []
        var weightMap = JSONObject()
        for (s, members) in plan.enumerated() {
            let name = shardFileName(baseName, s, of: plan.count)
            let p = SafetensorsCheckpoint.join(directory, name)
            outputs.append(try writeUncommitted(members.map { tensors[$0] }, metadata: metadata, to: p,
                                                order: order, protecting: inputs))
            for i in members { weightMap.append(infos[i].name, .string(name)) }
        }
        let totalSize = sizes.reduce(0, +)
        let totalParameters = infos.reduce(0) { $0 + $1.elementCount }
        let index = JSONValue.object(JSONObject([
            ("metadata", .object(JSONObject([
                ("total_parameters", JSONValue(totalParameters)),
                ("total_size", JSONValue(totalSize)),
            ]))),
            ("weight_map", .object(weightMap)),
        ]))
        let indexPath = SafetensorsCheckpoint.join(directory, "\(baseName).safetensors.index.json")
        let indexOut = try OutputFile(path: indexPath, protecting: inputs)
        try indexOut.write(Array((JSONWriter.python(index, indent: 2, sortKeys: true) + "\n").utf8))
        for o in outputs { try o.commit() }
        try indexOut.commit()
        return outputs.map(\.path) + [indexPath]
    }
}
