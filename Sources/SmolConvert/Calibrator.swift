import Foundation
import SmolCalibration
import SmolEngine
import SmolFormats
import SmolModels
import SmolTensor

/// `smolconv calibrate`: runs a model over a calibration corpus and writes the activation
/// statistics of every linear (importance, mean |x|, Hessian) to an HDF5 file.
public enum Calibrator {
    /// Where the text comes from.
    public enum Corpus: Sendable {
        /// A named recipe of calibration/recipes.json (files relative to that folder).
        case recipe(name: String, directory: String)
        /// One UTF-8 text file.
        case textFile(String)
        /// Token ids (the model's BOS is not added), cut into windows as a text's would be.
        case tokens([Int])
    }

    public struct Options: Sendable {
        /// Tokens per window (each window starts from an empty cache, its first token set to BOS as
        /// llama-imatrix does).
        public var ctx = 512
        /// Collect Σ x·xᵀ (GPTQ; AWQ's error measure). Costs in² Doubles per distinct input.
        public var hessians = true
        /// Stop after this many windows (nil: the whole corpus).
        public var maxWindows: Int?
        public var smolconvVersion = "0.1.0"
        public init() {}
    }

    public struct Summary: Sendable {
        public var output: String
        public var windows: Int
        public var tokens: Int
        public var tensors: Int
        public var seconds: Double
    }

    /// The calibration folder: $SMOLCONV_CALIBRATION_DIR, ./calibration, or calibration/ next to an
    /// ancestor of the executable (the repository a development build runs from).
    public static func defaultDirectory() -> String? {
        let fm = FileManager.default
        var candidates: [String] = []
        if let env = ProcessInfo.processInfo.environment["SMOLCONV_CALIBRATION_DIR"] { candidates.append(env) }
        candidates.append((fm.currentDirectoryPath as NSString).appendingPathComponent("calibration"))
        var dir = (CommandLine.arguments.first.map { URL(fileURLWithPath: $0).resolvingSymlinksInPath().path } ?? "") as NSString
        for _ in 0..<6 {
            dir = dir.deletingLastPathComponent as NSString
            candidates.append(dir.appendingPathComponent("calibration"))
        }
        return candidates.first { fm.fileExists(atPath: ($0 as NSString).appendingPathComponent("recipes.json")) }
    }

    /// The corpus's files and the name recorded in the stats file.
    static func files(_ corpus: Corpus) throws -> (name: String, files: [String]) {
        switch corpus {
        case .textFile(let f):
            return ((f as NSString).lastPathComponent, [f])
        case .tokens:
            return ("token ids", [])
        case .recipe(let name, let dir):
            let path = (dir as NSString).appendingPathComponent("recipes.json")
            let json = try JSONParser.parse(contentsOf: path)
            guard let recipe = json[name] else {
                let known = json.objectValue?.members.map(\.key).joined(separator: ", ") ?? ""
                throw SmolError(.invalidArgument, file: path, "no calibration recipe '\(name)' (known: \(known))")
            }
            guard let list = recipe["files"]?.arrayValue else {
                throw SmolError(.malformed, file: path, at: "\(name).files", "expected an array of file names")
            }
            let files = try list.map { v -> String in
                guard let s = v.stringValue else { throw SmolError(.malformed, file: path, at: "\(name).files", "expected strings") }
                return (dir as NSString).appendingPathComponent(s)
            }
            return ("recipe:\(name)", files)
        }
    }

    /// Token windows: each file tokenized on its own (BOS first when the model adds one), cut into
    /// windows of `ctx`; a window's first token is set to BOS (llama-imatrix). A final window
    /// shorter than 2 tokens is dropped.
    static func windows(_ files: [String], codec: TextCodec, ctx: Int) throws -> [[Int]] {
        var out: [[Int]] = []
        for f in files {
            let ids = try codec.encode(try EvaluationInput.readText(f))
            var start = 0
            while start + 1 < ids.count {
                var w = Array(ids[start..<min(start + ctx, ids.count)])
                if let bos = codec.bos { w[0] = bos }
                out.append(w)
                start += ctx
            }
        }
        return out
    }

    /// XXH64 of the model file (a folder: of its config.json and safetensors files), hex.
    static func modelHash(_ ckpt: Checkpoint) throws -> String {
        var paths: [String] = []
        if let folder = ckpt.folder {
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).sorted()
            paths = names.filter { $0 == "config.json" || $0.hasSuffix(".safetensors") }.map { (folder as NSString).appendingPathComponent($0) }
        } else {
            paths = [ckpt.path]
        }
        var combined: [UInt8] = []
        for p in paths {
            let m = try MappedFile(path: p)
            let h = try m.bytes(at: 0, count: m.size).withUnsafeBytes { XXHash64.hash($0) }
            withUnsafeBytes(of: h.littleEndian) { combined += $0 }
        }
        let h = paths.count == 1 ? UInt64(littleEndian: combined.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }) : XXHash64.hash(combined)
        return String(h, radix: 16).leftPadded(16)
    }

    /// "model.layers.N.….experts.gate_up_proj" → the GGUF stack of layer N that reads that input
    /// (ffn_gate_exps, ffn_gate_up_exps or ffn_up_exps); "….experts.down_proj" → ffn_down_exps.
    static func ggufExpertStack(_ hf: String, in g: GGUFFile) -> String? {
        let parts = hf.split(separator: ".")
        guard parts.count >= 4, parts[0] == "model", parts[1] == "layers", let layer = Int(parts[2]) else { return nil }
        let candidates: [String]
        if hf.hasSuffix("experts.gate_up_proj") {
            candidates = ["ffn_gate_exps", "ffn_gate_up_exps", "ffn_up_exps"]
        } else if hf.hasSuffix("experts.down_proj") {
            candidates = ["ffn_down_exps"]
        } else {
            return nil
        }
        return candidates.map { "blk.\(layer).\($0).weight" }.first { g.info($0) != nil }
    }

    public typealias Progress = (_ done: Int, _ total: Int) -> Void

    public static func run(model: String, corpus: Corpus, output: String, options: Options,
                           progress: Progress? = nil) throws -> Summary {
        let start = Date()
        guard options.ctx >= 2 else { throw SmolError(.invalidArgument, "--ctx must be at least 2") }
        let ckpt = try Checkpoint.open(model)
        if FileManager.default.fileExists(atPath: output) && OutputFile.sameFile(model, output) {
            throw SmolError(.invalidArgument, file: output, "output would overwrite the model; choose another name")
        }
        let (corpusName, files) = try files(corpus)
        var windows: [[Int]]
        if case .tokens(let ids) = corpus {
            windows = stride(from: 0, to: max(ids.count - 1, 0), by: options.ctx).map { Array(ids[$0..<min($0 + options.ctx, ids.count)]) }
        } else {
            windows = try Self.windows(files, codec: try EvaluationInput.codec(for: ckpt), ctx: options.ctx)
        }
        if let m = options.maxWindows { windows = Array(windows.prefix(max(0, m))) }
        guard !windows.isEmpty else { throw SmolError(.invalidArgument, "the calibration text gives no window of 2 tokens or more") }
        // ModelLoader: MoE checkpoints in any expert layout (per-expert, fused, GGUF stacks) too.
        let loaded = try ModelLoader.load(checkpoint: ckpt)
        let engine = Engine(model: loaded)
        let collector = StatisticsCollector(hessians: options.hessians)
        var tokens = 0
        for (i, w) in windows.enumerated() {
            // Only the statistics matter: logits for the last row alone (the output layer is the
            // largest matmul of small models).
            _ = try engine.forward(w, logitsFrom: w.count - 1, observer: collector)
            tokens += w.count
            progress?(i + 1, windows.count)
        }
        // Stats are named as the checkpoint names its tensors.
        var naming = "hf"
        var rename: (String) -> String? = { $0 }
        if let g = ckpt.gguf {
            naming = "gguf"
            let arch = g.metadata.string("general.architecture") ?? ""
            // MoE architectures have their own name tables (GGUFWeightReader reads dense ones).
            guard let mapping = GGUFArchitectureMapping.forGGUFArchitecture(arch)
                    ?? GGUFArchitectureMapping.moeByModelType.values.first(where: { $0.ggufArchitecture == arch }) else {
                throw SmolError(.unsupported, file: g.path, at: "metadata key 'general.architecture'", "no tensor name table for '\(arch)'")
            }
            rename = { hf in
                if let name = mapping.ggufName(hf: hf).flatMap({ g.info($0) == nil ? nil : $0 }) { return name }
                // MoE experts: the engine's stacked names → llama.cpp's stacks (gate/up share an
                // input: the statistics go under the first stack present, found by layer).
                return Self.ggufExpertStack(hf, in: g)
            }
        }
        let info = CalibrationInfo(corpus: corpusName, ctx: options.ctx, windows: windows.count, tokens: tokens,
                                   model: model, modelHash: try modelHash(ckpt), naming: naming,
                                   smolconvVersion: options.smolconvVersion)
        let inputs = collector.inputs
        var experts: [Int: Int] = [:]
        for (i, l) in loaded.spec.layers.enumerated() { if let m = l.moe { experts[i] = m.experts } }
        try CalibrationWriter.write(inputs, info: info, to: output, naming: rename, expertsPerLayer: experts)
        let tensorCount = inputs.reduce(0) { $0 + $1.weights.compactMap(rename).count } 
        return Summary(output: output, windows: windows.count, tokens: tokens, tensors: tensorCount,
                       seconds: Date().timeIntervalSince(start))
    }
}

extension String {
    func leftPadded(_ n: Int, with c: Character = "0") -> String {
        count >= n ? self : String(repeating: c, count: n - count) + self
    }
}
