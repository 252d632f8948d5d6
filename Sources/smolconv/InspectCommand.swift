import ArgumentParser
import SmolConvert
import SmolFormats
import SmolTensor

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what a checkpoint holds: architecture, parameters, size, tensors by layer, types, metadata.",
        discussion: """
        PATH is a .gguf file, a .safetensors file, or a Hugging Face folder (config.json with \
        model.safetensors or sharded model-*.safetensors and model.safetensors.index.json). Shapes are \
        printed row-major (PyTorch order) for both formats. Long metadata arrays (token lists) are \
        summarised unless --full is given.

        --json prints {"format", "architecture", "tensors": [{"name", "dtype", "shape", "bytes"}], \
        "metadata": {...}} plus parameter and byte counts.
        """
    )

    @Argument(help: "A .gguf file, a .safetensors file or a Hugging Face folder.")
    var path: String

    @OptionGroup var output: OutputOptions

    @Flag(help: "Print metadata arrays in full.")
    var full = false

    @Flag(help: "Leave out the per-tensor listing in the table.")
    var summary = false

    func run() throws {
        try runReportingErrors {
            let report = try InspectReport(Checkpoint.open(path))
            if output.json {
                Console.out(JSONWriter.python(report.json(fullArrays: full), indent: 2, sortKeys: false))
            } else {
                Console.out(render(report))
            }
        }
    }

    func render(_ r: InspectReport) -> String {
        var lines: [String] = []
        lines.append("path          \(r.path)")
        lines.append("format        \(r.formatDetail)")
        lines.append("architecture  \(r.architecture ?? "(unknown)")")
        lines.append("parameters    \(Format.grouped(r.parameterCount))")
        lines.append("size          \(Format.grouped(r.fileBytes)) bytes (\(Format.bytes(r.fileBytes))), \(Format.fixed(r.bitsPerWeight, 2)) bits per weight")
        lines.append("tensors       \(r.tensors.count): " + r.typeHistogram.map { "\($0.type) ×\($0.count)" }.joined(separator: ", "))
        lines.append("")
        lines.append("metadata (\(r.metadata.count) keys)")
        for (k, v) in r.metadata {
            lines.append("  \(k) = \(describe(full ? v : InspectReport.summarised(v)))")
        }
        if !summary {
            let nameWidth = min(60, r.tensors.map(\.name.count).max() ?? 10)
            for (label, ts) in r.layers {
                lines.append("")
                let bytes = ts.reduce(0) { $0 + $1.byteCount }
                lines.append("\(label) (\(ts.count) tensors, \(Format.bytes(bytes)))")
                for t in ts {
                    let name = t.name.padding(toLength: max(nameWidth, t.name.count), withPad: " ", startingAt: 0)
                    let type = t.type.name.padding(toLength: 8, withPad: " ", startingAt: 0)
                    let shape = "[" + t.shape.map(String.init).joined(separator: ", ") + "]"
                    lines.append("  \(name)  \(type) \(shape.padding(toLength: max(18, shape.count), withPad: " ", startingAt: 0))  \(Format.grouped(t.byteCount))")
                }
            }
        }
        return lines.joined(separator: "\n")
    }

    func describe(_ v: JSONValue) -> String {
        if case .object(let o) = v, let n = o["count"]?.intValue, let kind = o["array_of"]?.stringValue {
            let head = o["head"]?.arrayValue?.map { JSONWriter.compact($0) }.joined(separator: ", ") ?? ""
            return "[\(Format.grouped(n)) × \(kind): \(head), …]"
        }
        let s = JSONWriter.compact(v)
        return s.count > 200 ? String(s.prefix(200)) + "…" : s
    }
}
