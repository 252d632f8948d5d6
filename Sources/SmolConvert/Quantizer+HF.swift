import Foundation
import SmolFormats
import SmolCalibration
import SmolModels
import SmolQuant
import SmolTensor

// `quantize --format nf4` and `--format mlx`: Hugging Face folders laid out as the libraries that
// define the formats save them (formats/nf4.md, formats/gguf-quants.md "MLX affine").
//
// Streaming as for GGUF: the safetensors header (names, dtypes, shapes) is planned up front, then
// each output tensor's bytes are produced when the writer reaches it. One quantized weight gives
// several output tensors that the library order scatters (F32 parts before U32/U8 ones), so the
// last quantized weight is kept (a one-entry cache) and a weight is quantized at most twice.
//
// NF4 (transformers + bitsandbytes `load_in_4bit`, then `save_pretrained`), for each quantized
// weight `N` of shape [rows, cols] and float dtype D:
//   N                                      U8  [rows·cols/2, 1]   packed codes (high nibble first)
//   N.absmax                               F32 [blocks]           (U8 [blocks] with double quant)
//   N.quant_map                            F32 [16]               the NF4 code
//   N.nested_absmax, N.nested_quant_map    F32 [⌈blocks/256⌉], F32 [256]   (double quant only)
//   N.quant_state.bitsandbytes__nf4        U8  JSON bytes: json.dumps({"quant_type": "nf4",
//       "blocksize": B, "dtype": "<torch dtype of D>", "shape": [rows, cols]} + with double quant
//       "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": <float>)
// Quantized: transformers replaces every nn.Linear except the output head (lm_head) — here every
// 2-D "*.weight" of a float dtype except lm_head and embeddings (names containing "embed").
// Other tensors are copied unchanged; config.json gains `quantization_config`.
//
// MLX (mlx-lm `convert -q`: load_model, quantize_model, save_model, save_config), for each
// quantized module `M` (weight [rows, cols], cols divisible by the group size; Linear and
// Embedding, so every 2-D "*.weight" of a float dtype):
//   M.weight  U32 [rows, cols·bits/32],  M.scales, M.biases  D [rows, cols/groupSize]
// Other tensors unchanged (mlx-lm's llama sanitize drops `rotary_emb.inv_freq` and a tied
// lm_head; so does this). model.safetensors has metadata {"format": "mlx"}; beside it
// model.safetensors.index.json (json.dump indent 4: total_size, total_parameters, weight_map) and
// config.json (top-level keys sorted, indent 4, "quantization" and "quantization_config" =
// {"group_size", "bits", "mode": "affine"}, eos_token_id from generation_config.json).
extension Quantizer {
    /// transformers' `BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")` as
    /// `to_dict()` serializes it into config.json (transformers 5.24), with the defaults.
    static func nf4QuantizationConfig(doubleQuant: Bool) -> JSONValue {
        .object(JSONObject([
            ("_load_in_4bit", .bool(true)), ("_load_in_8bit", .bool(false)),
            ("bnb_4bit_compute_dtype", .string("float32")), ("bnb_4bit_quant_storage", .string("uint8")),
            ("bnb_4bit_quant_type", .string("nf4")), ("bnb_4bit_use_double_quant", .bool(doubleQuant)),
            ("llm_int8_enable_fp32_cpu_offload", .bool(false)), ("llm_int8_has_fp16_weight", .bool(false)),
            ("llm_int8_skip_modules", .null), ("llm_int8_threshold", .double(6.0)),
            ("load_in_4bit", .bool(true)), ("load_in_8bit", .bool(false)), ("quant_method", .string("bitsandbytes")),
        ]))
    }


    /// Whether transformers + bitsandbytes quantizes this tensor (a Linear weight other than the head).
    static func nf4Quantizes(_ t: TensorInfo) -> Bool {
        guard t.shape.count == 2, t.name.hasSuffix(".weight"), let d = t.type.denseDType, d.isFloatingPoint,
              (Checked.product(t.shape) ?? 1) % 2 == 0 else { return false }
        let module = t.name.dropLast(".weight".count)
        return !(module == "lm_head" || module.hasSuffix(".lm_head") || module.contains("embed"))
    }

    /// Whether mlx-lm's `quantize_model` quantizes this tensor (a Linear or Embedding weight whose
    /// last dimension is a multiple of the group size).
    static func mlxQuantizes(_ t: TensorInfo, groupSize: Int) -> Bool {
        guard t.shape.count == 2, t.name.hasSuffix(".weight"), let d = t.type.denseDType, d.isFloatingPoint else { return false }
        return t.shape[1] % groupSize == 0
    }

    static func f32Bytes(_ v: [Float]) -> TensorBytes {
        var b = [UInt8](repeating: 0, count: v.count * 4)
        b.withUnsafeMutableBytes { r in for (i, x) in v.enumerated() { r.storeBytes(of: x.bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self) } }
        return TensorBytes(b)
    }

    /// Opens a Hugging Face input for the folder formats.
    static func openHF(_ input: String, _ output: String) throws -> (Checkpoint, JSONValue) {
        let ckpt = try Checkpoint.open(input)
        guard ckpt.format == .huggingFace || ckpt.format == .safetensors else {
            throw SmolError(.unsupported, file: input, "this output format is made from a Hugging Face folder (safetensors + config.json); convert the GGUF file to one first")
        }
        guard let config = ckpt.config else {
            throw SmolError(.invalidArgument, file: input, "no config.json next to the weights")
        }
        if FileManager.default.fileExists(atPath: output) && OutputFile.sameFile(input, output) {
            throw SmolError(.invalidArgument, file: output, "output would overwrite the input; choose another name")
        }
        if config["quantization_config"] != nil || config["quantization"] != nil {
            throw SmolError(.unsupported, file: input, "the input is already quantized (config.json has a quantization block)")
        }
        return (ckpt, config)
    }

    /// The input folder's side files (tokenizer, generation config, …: *.json, *.model, *.txt,
    /// *.jinja other than config.json and the safetensors index), copied unchanged.
    static func sideFiles(_ ckpt: Checkpoint) -> [(name: String, bytes: [UInt8])] {
        guard let folder = ckpt.folder else { return [] }
        let fm = FileManager.default
        var files: [(String, [UInt8])] = []
        for name in (try? fm.contentsOfDirectory(atPath: folder).sorted()) ?? [] {
            guard name != SafetensorsCheckpoint.indexFileName, name != "config.json", !name.hasSuffix(".safetensors") else { continue }
            guard [".json", ".model", ".txt", ".jinja"].contains(where: name.hasSuffix) else { continue }
            let path = (folder as NSString).appendingPathComponent(name)
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue,
                  let data = fm.contents(atPath: path) else { continue }
            files.append((name, Array(data)))
        }
        return files
    }

    /// Writes model.safetensors (library order) and the side files into a temporary folder, renamed
    /// to `output` when complete. Returns the folder's total size.
    static func writeFolder(_ tensors: [SafetensorsTensor], metadata: [(String, String)], files: [(name: String, bytes: [UInt8])],
                            to output: String, protecting: [String]) throws -> Int {
        let fm = FileManager.default
        let tmp = output + ".tmp-\(getpid())"
        try? fm.removeItem(atPath: tmp)
        do { try fm.createDirectory(atPath: tmp, withIntermediateDirectories: true) } catch {
            throw SmolError(.io, file: output, "cannot create the output folder: \(error.localizedDescription)")
        }
        var committed = false
        defer { if !committed { try? fm.removeItem(atPath: tmp) } }
        try SafetensorsWriter.write(tensors, metadata: metadata, to: (tmp as NSString).appendingPathComponent("model.safetensors"),
                                    order: .safetensorsLibrary, protecting: protecting)
        for f in files {
            let out = try OutputFile(path: (tmp as NSString).appendingPathComponent(f.name))
            try out.write(f.bytes)
            try out.commit()
        }
        if fm.fileExists(atPath: output) {
            var isDir: ObjCBool = false
            _ = fm.fileExists(atPath: output, isDirectory: &isDir)
            guard isDir.boolValue, ((try? fm.contentsOfDirectory(atPath: output)) ?? ["x"]).isEmpty else {
                throw SmolError(.invalidArgument, file: output, "the output exists; choose a new folder name")
            }
            try? fm.removeItem(atPath: output)
        }
        guard rename(tmp, output) == 0 else {
            throw SmolError(.io, file: output, "cannot move the finished folder into place: \(String(cString: strerror(errno)))")
        }
        committed = true
        var size = 0
        for name in (try? fm.contentsOfDirectory(atPath: output)) ?? [] {
            size += ((try? fm.attributesOfItem(atPath: (output as NSString).appendingPathComponent(name))[.size]) as? Int) ?? 0
        }
        return size
    }

    /// Holds the last quantized weight: the writer asks for its parts at different times.
    final class LastQuantized<Q>: @unchecked Sendable {
        var name: String?
        var value: Q?
        func get(_ name: String, _ make: () throws -> Q) rethrows -> Q {
            if self.name == name, let v = value { return v }
            value = nil
            let v = try make()
            self.name = name
            value = v
            return v
        }
    }

    // MARK: NF4

    static func quantizeToNF4(input: String, output: String, options: QuantizeOptions,
                              progress: Converter.Progress?) throws -> QuantizeSummary {
        let start = Date()
        let (ckpt, config) = try openHF(input, output)
        let src = ckpt.source
        let blockSize = options.groupSize ?? 64
        guard [32, 64, 128, 256, 512, 1024, 2048, 4096].contains(blockSize) else {
            throw SmolError(.invalidArgument, "NF4 block size \(blockSize) is not supported (a power of two from 32 to 4096; bitsandbytes' default is 64)")
        }
        let dq = options.doubleQuant
        let cache = LastQuantized<NF4.Quantized>()
        var tensors: [SafetensorsTensor] = []
        var rows: [QuantizeSummary.Row] = []
        var done = 0
        let selected = src.tensorInfos.filter(nf4Quantizes)
        let total = src.tensorInfos.count
        for t in src.tensorInfos {
            guard nf4Quantizes(t) else {
                tensors.append(SafetensorsTensor(t) {
                    defer { done += 1; progress?(done, total, t.name) }
                    return try src.tensorBytes(t.name)
                })
                rows.append(.init(name: t.name, shape: t.shape, from: t.type.name, to: t.type.name, bytes: t.byteCount))
                continue
            }
            let name = t.name, r = t.shape[0], c = t.shape[1], n = r * c
            let blocks = (n + blockSize - 1) / blockSize
            let nested = (blocks + NF4.nestedBlockSize - 1) / NF4.nestedBlockSize
            let quantized = { () throws -> NF4.Quantized in
                try cache.get(name) {
                    let w = try loadFloat(src, name)
                    return try NF4.quantize(w, rows: r, cols: c, blockSize: blockSize, doubleQuant: dq)
                }
            }
            // The JSON state's length goes in the header, so double quantization's offset (a mean
            // over the whole weight's absmax) is computed in a first pass.
            var state = "{\"quant_type\": \"nf4\", \"blocksize\": \(blockSize), \"dtype\": \"\(t.type.denseDType!.torchFloatName)\", \"shape\": [\(r), \(c)]"
            if dq {
                let offset = NF4.doubleQuantOffset(try loadFloat(src, name), blockSize: blockSize)
                // Python's repr of the float32 widened to a double (`offset.item()`).
                state += ", \"nested_blocksize\": \(NF4.nestedBlockSize), \"nested_dtype\": \"float32\", \"nested_offset\": \(Double(offset).description)"
            }
            let stateBytes = Array((state + "}").utf8)
            tensors.append(SafetensorsTensor(TensorInfo(name: name, type: .dense(.u8), shape: [n / 2, 1])) {
                defer { done += 1; progress?(done, total, name) }
                return TensorBytes(try quantized().packed)
            })
            if dq {
                tensors.append(SafetensorsTensor(TensorInfo(name: name + ".absmax", type: .dense(.u8), shape: [blocks])) {
                    TensorBytes(try quantized().double!.quantizedAbsmax)
                })
                tensors.append(SafetensorsTensor(TensorInfo(name: name + ".nested_absmax", type: .dense(.f32), shape: [nested])) {
                    f32Bytes(try quantized().double!.nestedAbsmax)
                })
                tensors.append(SafetensorsTensor(TensorInfo(name: name + ".nested_quant_map", type: .dense(.f32), shape: [256])) {
                    f32Bytes(NF4.dynamicCode)
                })
            } else {
                tensors.append(SafetensorsTensor(TensorInfo(name: name + ".absmax", type: .dense(.f32), shape: [blocks])) {
                    f32Bytes(try quantized().absmax)
                })
            }
            tensors.append(SafetensorsTensor(TensorInfo(name: name + ".quant_map", type: .dense(.f32), shape: [16])) { f32Bytes(NF4.code) })
            tensors.append(SafetensorsTensor(TensorInfo(name: name + ".quant_state.bitsandbytes__nf4", type: .dense(.u8), shape: [stateBytes.count])) {
                TensorBytes(stateBytes)
            })
            let bytes = n / 2 + (dq ? blocks + 4 * nested + 1024 : 4 * blocks) + 64 + stateBytes.count
            rows.append(.init(name: name, shape: t.shape, from: t.type.name, to: dq ? "NF4+DQ" : "NF4", bytes: bytes))
        }
        // transformers writes config.json with sorted keys, indent 2 and a final newline.
        let cfg = config.setting("quantization_config", nf4QuantizationConfig(doubleQuant: dq))
        let files = [("config.json", Array((cfg.serialized(indent: 2, sortKeys: true) + "\n").utf8))] + sideFiles(ckpt)
        let size = try writeFolder(tensors, metadata: SafetensorsWriter.defaultMetadata, files: files, to: output, protecting: [input])
        let notes = ["\(selected.count) Linear weights quantized to NF4 in blocks of \(blockSize)\(dq ? " with double quantization" : ""); lm_head and embeddings kept as they are (bitsandbytes' default)"]
        return QuantizeSummary(input: input, output: output, format: .nf4, mix: dq ? "NF4 (double quant)" : "NF4", rows: rows,
                               fileBytes: size, seconds: Date().timeIntervalSince(start), notes: notes)
    }

    // MARK: MLX

    static func quantizeToMLX(input: String, output: String, options: QuantizeOptions,
                              progress: Converter.Progress?) throws -> QuantizeSummary {
        let start = Date()
        let (ckpt, config) = try openHF(input, output)
        let src = ckpt.source
        let bits = options.bits, groupSize = options.groupSize ?? 64
        guard MLXAffine.supportedBits.contains(bits) else {
            throw SmolError(.invalidArgument, "MLX affine quantization takes --bits 2, 3, 4, 5, 6 or 8, not \(bits)")
        }
        guard MLXAffine.supportedGroupSizes.contains(groupSize) else {
            throw SmolError(.invalidArgument, "MLX affine quantization takes --group-size 32, 64 or 128, not \(groupSize)")
        }
        let tied = config["tie_word_embeddings"]?.boolValue ?? false
        let cache = LastQuantized<MLXAffine.Quantized>()
        let calibration = try options.calibration.map {
            try AffineCalibration(path: $0, method: options.method, gptq: options.gptq,
                                  modelType: config["model_type"]?.stringValue ?? "")
        }
        if calibration == nil && options.method != .rtn {
            throw SmolError(.invalidArgument, "--method \(options.method.rawValue) needs --calibration STATS.h5 (from smolconv calibrate)")
        }
        let target = AffineTarget(bits: bits, groupSize: groupSize)
        var tensors: [SafetensorsTensor] = []
        var rows: [QuantizeSummary.Row] = []
        var notes: [String] = []
        var totalParameters = 0
        var done = 0
        let kept = src.tensorInfos.filter { t in
            // mlx-lm's sanitize: rotary tables are recomputed, a tied head is the embedding.
            !(t.name.hasSuffix("rotary_emb.inv_freq") || (tied && t.name == "lm_head.weight"))
        }
        if kept.count < src.tensorInfos.count {
            notes.append("dropped as mlx-lm does: " + src.tensorInfos.filter { t in !kept.contains { $0.name == t.name } }.map(\.name).joined(separator: ", "))
        }
        let total = kept.count
        for t in kept {
            totalParameters += t.elementCount
            guard mlxQuantizes(t, groupSize: groupSize) else {
                tensors.append(SafetensorsTensor(t) {
                    defer { done += 1; progress?(done, total, t.name) }
                    return try src.tensorBytes(t.name)
                })
                rows.append(.init(name: t.name, shape: t.shape, from: t.type.name, to: t.type.name, bytes: t.byteCount))
                continue
            }
            let name = t.name, r = t.shape[0], c = t.shape[1]
            let module = String(name.dropLast(".weight".count))
            let dtype = t.type.denseDType!
            let quantized = { () throws -> MLXAffine.Quantized in
                try cache.get(name) {
                    let w = try loadFloat(src, name)
                    if let calibration {
                        return try calibration.quantize(name, w, rows: r, cols: c, target: target, dtype: dtype)
                    }
                    return try MLXAffine.quantize(w, rows: r, cols: c, bits: bits, groupSize: groupSize)
                }
            }
            // mx.quantize on F16/BF16 weights gives the Float32 result with scales and biases
            // rounded to the weight's dtype (tools/crosscheck/check_mlx_quantize.py: BF16 llama vs mlx-lm).
            let encode = { (v: [Float]) throws -> TensorBytes in
                dtype == .f32 ? f32Bytes(v) : TensorBytes(try ElementCodec.encode(v, as: dtype))
            }
            let groups = [r, c / groupSize]
            tensors.append(SafetensorsTensor(TensorInfo(name: name, type: .dense(.u32), shape: [r, c * bits / 32])) {
                defer { done += 1; progress?(done, total, name) }
                let w = try quantized().weight
                var b = [UInt8](repeating: 0, count: w.count * 4)
                b.withUnsafeMutableBytes { p in for (i, x) in w.enumerated() { p.storeBytes(of: x.littleEndian, toByteOffset: 4 * i, as: UInt32.self) } }
                return TensorBytes(b)
            })
            tensors.append(SafetensorsTensor(TensorInfo(name: module + ".scales", type: .dense(dtype), shape: groups)) { try encode(try quantized().scales) })
            tensors.append(SafetensorsTensor(TensorInfo(name: module + ".biases", type: .dense(dtype), shape: groups)) { try encode(try quantized().biases) })
            rows.append(.init(name: name, shape: t.shape, from: t.type.name, to: "MLX\(bits)g\(groupSize)",
                              bytes: r * c * bits / 8 + 2 * r * (c / groupSize) * dtype.size))
        }
        let totalSize = tensors.reduce(0) { $0 + $1.info.byteCount }
        guard totalSize <= 5 << 30 else {
            throw SmolError(.unsupported, file: output, "MLX output over 5 GiB needs shards (mlx-lm's make_shards), which are not written yet")
        }

        // config.json as mlx-lm's save_config writes it.
        var cfg = config.removing("_name_or_path")
        if let folder = ckpt.folder,
           let gen = FileManager.default.contents(atPath: (folder as NSString).appendingPathComponent("generation_config.json")),
           let g = try? JSONValue.parse(Array(gen), file: "generation_config.json"), let eos = g["eos_token_id"],
           !(eos.isNull || eos.boolValue == false || eos.intValue == 0 || eos.arrayValue?.isEmpty == true) {
            cfg = cfg.setting("eos_token_id", eos)  // load_config's eos_token_id from the generation config
        }
        let quant = JSONValue.object(JSONObject([("group_size", .int(groupSize)), ("bits", .int(bits)), ("mode", .string("affine"))]))
        cfg = cfg.setting("quantization", quant).setting("quantization_config", quant)
        if let o = cfg.objectValue {
            cfg = .object(JSONObject(o.members.sorted { $0.key.unicodeScalars.lexicographicallyPrecedes($1.key.unicodeScalars) }))
        }
        let index = JSONValue.object(JSONObject([
            ("metadata", .object(JSONObject([("total_size", .int(totalSize)), ("total_parameters", .int(totalParameters))]))),
            ("weight_map", .object(JSONObject(tensors.map(\.info.name).sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }
                .map { ($0, JSONValue.string("model.safetensors")) }))),
        ]))
        let files = [("config.json", Array(cfg.serialized(indent: 4, sortKeys: false).utf8)),
                     (SafetensorsCheckpoint.indexFileName, Array(index.serialized(indent: 4, sortKeys: false).utf8))]
            + sideFiles(ckpt).filter { $0.name == "generation_config.json" || $0.name.hasPrefix("tokenizer") || $0.name == "special_tokens_map.json" || $0.name.hasSuffix(".jinja") }
        let size = try writeFolder(tensors, metadata: [("format", "mlx")], files: files, to: output, protecting: [input])
        if let calibration { notes += calibration.summaryNotes() }
        return QuantizeSummary(input: input, output: output, format: .mlx,
                               mix: "affine \(bits)-bit, groups of \(groupSize)" + (calibration == nil ? "" : " (\(options.method.rawValue))"), rows: rows,
                               fileBytes: size, seconds: Date().timeIntervalSince(start), notes: notes,
                               expertFallbacks: calibration?.expertFallbacks ?? [])
    }
}
