import SmolTensor

/// How one output tensor's bytes are made from input tensors' bytes, without decoding a value.
///
/// Every MoE layout change is a byte layout change: stacking experts is concatenation, unstacking
/// is slicing, gpt_oss's interleaved `[E, H, 2I]` gate/up becomes GGUF's `[E, I, H]` stacks by a
/// strided transpose of whole elements. Because no value is decoded, any dtype (F32, BF16, F16,
/// F8, and byte slices of ggml block types along rows) comes out bit for bit.
///
/// A recipe is symbolic, so a rewrite can be planned for a 30 GB model without reading it, printed
/// (`--dry-run`), composed with another rewrite (`substituting`), simplified (a round trip collapses
/// to `.input`), and accounted for (which input bytes land in which output).
public indirect enum TensorRecipe: Sendable, Hashable {
    /// All bytes of the input tensor with this name.
    case input(String)
    /// The pieces' bytes back to back.
    case concat([TensorRecipe])
    /// `count` bytes starting `offset` bytes into the piece.
    case slice(TensorRecipe, offset: Int, count: Int)
    /// Selected columns, transposed: the piece is `[batch, rows, columns]` elements of
    /// `elementSize` bytes; the result is `[batch, n, rows]` with
    /// `out[b][j][r] = in[b][r][start + j * stride]`, n = `selected` columns.
    case transposeColumns(TensorRecipe, TransposeSpec)
    /// The inverse of taking every part's columns with `transposeColumns` (start p, stride k):
    /// each of the k parts is `[batch, n, rows]`; the result is `[batch, rows, n * k]` with
    /// `out[b][r][j * k + p] = part_p[b][j][r]`. The spec's `columns` is n * k (start and stride
    /// unused).
    case interleaveTransposed([TensorRecipe], TransposeSpec)

    /// Geometry of a strided transpose (see the cases).
    public struct TransposeSpec: Sendable, Hashable {
        public var batch: Int
        public var rows: Int
        /// Columns of the strided (untransposed) side.
        public var columns: Int
        public var elementSize: Int
        public var start: Int
        public var stride: Int

        public init(batch: Int, rows: Int, columns: Int, elementSize: Int, start: Int, stride: Int) {
            self.batch = batch
            self.rows = rows
            self.columns = columns
            self.elementSize = elementSize
            self.start = start
            self.stride = stride
        }

        /// Columns taken: start, start + stride, … below `columns`.
        public var selected: Int { start >= columns ? 0 : (columns - start + stride - 1) / stride }
        var fullBytes: Int { batch * rows * columns * elementSize }
        var selectedBytes: Int { batch * rows * selected * elementSize }
    }

    // MARK: Sizes

    /// The recipe's byte count given the inputs' byte counts (nil if an input is unknown).
    public func byteCount(_ inputSizes: [String: Int]) -> Int? {
        switch self {
        case .input(let n): return inputSizes[n]
        case .concat(let parts):
            var total = 0
            for p in parts { guard let s = p.byteCount(inputSizes) else { return nil }; total += s }
            return total
        case .slice(_, _, let count): return count
        case .transposeColumns(_, let t): return t.selectedBytes
        case .interleaveTransposed(_, let t): return t.fullBytes
        }
    }

    /// Input names the recipe reads.
    public var inputs: Set<String> {
        switch self {
        case .input(let n): return [n]
        case .concat(let parts), .interleaveTransposed(let parts, _): return parts.reduce(into: Set()) { $0.formUnion($1.inputs) }
        case .slice(let p, _, _), .transposeColumns(let p, _): return p.inputs
        }
    }

    // MARK: Composition

    /// The recipe with every `.input(n)` replaced by `recipes[n]` (an earlier rewrite's output),
    /// so two rewrites become one recipe over the original inputs.
    public func substituting(_ recipes: [String: TensorRecipe]) throws -> TensorRecipe {
        switch self {
        case .input(let n):
            guard let r = recipes[n] else {
                throw SmolError(.invalidArgument, at: "tensor '\(n)'", "recipe refers to a tensor the previous step did not produce")
            }
            return r
        case .concat(let parts): return .concat(try parts.map { try $0.substituting(recipes) })
        case .slice(let p, let o, let c): return .slice(try p.substituting(recipes), offset: o, count: c)
        case .transposeColumns(let p, let t): return .transposeColumns(try p.substituting(recipes), t)
        case .interleaveTransposed(let parts, let t): return .interleaveTransposed(try parts.map { try $0.substituting(recipes) }, t)
        }
    }

    // MARK: Simplification

    /// An equivalent recipe with slices pushed into concatenations, nested slices merged, adjacent
    /// slices of one tensor joined, and a strided transpose undone by its inverse removed. A round
    /// trip (A → B → A) simplifies to `.input` for every tensor, and a plan that stacks and then
    /// splits never materialises the stack.
    public func simplified(_ inputSizes: [String: Int]) -> TensorRecipe {
        switch self {
        case .input: return self
        case .concat(let parts):
            var flat: [TensorRecipe] = []
            for p in parts {
                let s = p.simplified(inputSizes)
                if case .concat(let inner) = s { flat.append(contentsOf: inner) } else { flat.append(s) }
            }
            // Join neighbours that are consecutive byte ranges of the same tensor.
            var joined: [TensorRecipe] = []
            for p in flat {
                if let last = joined.last, let merged = TensorRecipe.join(last, p, inputSizes) {
                    joined[joined.count - 1] = merged
                } else {
                    joined.append(p)
                }
            }
            joined = joined.map { TensorRecipe.wholeIfComplete($0, inputSizes) }
            if joined.count == 1 { return joined[0] }
            return .concat(joined)
        case .slice(let p, let offset, let count):
            let inner = p.simplified(inputSizes)
            switch inner {
            case .slice(let q, let o2, _):
                return TensorRecipe.wholeIfComplete(.slice(q, offset: o2 + offset, count: count), inputSizes)
            case .concat(let parts):
                var pieces: [TensorRecipe] = []
                var at = 0
                for part in parts {
                    guard let size = part.byteCount(inputSizes) else { return .slice(inner, offset: offset, count: count) }
                    let lo = max(at, offset), hi = min(at + size, offset + count)
                    if lo < hi {
                        pieces.append(TensorRecipe.slice(part, offset: lo - at, count: hi - lo).simplified(inputSizes))
                    }
                    at += size
                }
                return TensorRecipe.concat(pieces).simplified(inputSizes)
            default:
                return TensorRecipe.wholeIfComplete(.slice(inner, offset: offset, count: count), inputSizes)
            }
        case .transposeColumns(let p, let t):
            let inner = p.simplified(inputSizes)
            // Taking part k's columns back out of an interleave of parts returns part k.
            if case .interleaveTransposed(let parts, let u) = inner, t.stride == parts.count, t.start < parts.count,
               u.batch == t.batch, u.rows == t.rows, u.elementSize == t.elementSize, u.columns == t.columns {
                return parts[t.start]
            }
            return .transposeColumns(inner, t)
        case .interleaveTransposed(let parts, let t):
            let inner = parts.map { $0.simplified(inputSizes) }
            // Interleaving every strided selection of one tensor gives the tensor back.
            var source: TensorRecipe?
            var undone = true
            for (k, part) in inner.enumerated() {
                guard case .transposeColumns(let q, let u) = part, u.start == k, u.stride == inner.count,
                      u.batch == t.batch, u.rows == t.rows, u.elementSize == t.elementSize,
                      u.columns == t.columns, source == nil || source == q else { undone = false; break }
                source = q
            }
            if undone, let source { return source }
            return .interleaveTransposed(inner, t)
        }
    }

    /// `.slice(x, 0, all of x)` → x.
    static func wholeIfComplete(_ r: TensorRecipe, _ sizes: [String: Int]) -> TensorRecipe {
        if case .slice(let p, 0, let count) = r, p.byteCount(sizes) == count { return p }
        return r
    }

    /// Two consecutive ranges of one tensor as one slice.
    static func join(_ a: TensorRecipe, _ b: TensorRecipe, _ sizes: [String: Int]) -> TensorRecipe? {
        func range(_ r: TensorRecipe) -> (TensorRecipe, Int, Int)? {
            switch r {
            case .slice(let p, let o, let c): return (p, o, c)
            default:
                guard let s = r.byteCount(sizes) else { return nil }
                return (r, 0, s)
            }
        }
        guard let (pa, oa, ca) = range(a), let (pb, ob, cb) = range(b), pa == pb, oa + ca == ob else { return nil }
        return wholeIfComplete(.slice(pa, offset: oa, count: ca + cb), sizes)
    }

    // MARK: Accounting

    /// How many bytes of each input this recipe places in its output. Exact for the simplified
    /// recipes SmolMoE's rewrites produce; throws for a shape it cannot attribute (a slice of a
    /// transposed view), which no rewrite here produces.
    public func contributions(_ inputSizes: [String: Int]) throws -> [String: Int] {
        switch self {
        case .input(let n):
            guard let s = inputSizes[n] else { throw SmolError(.invalidArgument, at: "tensor '\(n)'", "no such input tensor") }
            return [n: s]
        case .concat(let parts), .interleaveTransposed(let parts, _):
            var out: [String: Int] = [:]
            for p in parts { for (k, v) in try p.contributions(inputSizes) { out[k, default: 0] += v } }
            return out
        case .slice(let p, let offset, let count):
            guard case .input(let n) = p else {
                throw SmolError(.unsupported, "cannot attribute the bytes of a slice of \(p.summary) to inputs")
            }
            guard let s = inputSizes[n], offset >= 0, count >= 0, offset + count <= s else {
                throw SmolError(.mismatch, at: "tensor '\(n)'", "slice \(offset)..<\(offset + count) outside the tensor")
            }
            return [n: count]
        case .transposeColumns(let p, let t):
            guard case .input(let n) = p else {
                throw SmolError(.unsupported, "cannot attribute the bytes of a transposed \(p.summary) to inputs")
            }
            guard inputSizes[n] == t.fullBytes else {
                throw SmolError(.mismatch, at: "tensor '\(n)'", "transpose geometry \(t.batch)×\(t.rows)×\(t.columns) does not match the tensor's size")
            }
            return [n: t.selectedBytes]
        }
    }

    /// One line for plans: "concat(16 × slice)", "input", "transpose(cols 0:2)".
    public var summary: String {
        switch self {
        case .input: return "copy"
        case .concat(let parts):
            let kinds = Dictionary(grouping: parts.map(\.kind), by: { $0 }).map { "\($0.value.count) × \($0.key)" }.sorted()
            return "concat(\(kinds.joined(separator: ", ")))"
        case .slice: return "slice"
        case .transposeColumns(_, let t): return t.stride == 1 ? "transpose" : "transpose(columns \(t.start)::\(t.stride))"
        case .interleaveTransposed(let parts, _): return "interleave(\(parts.count) × transpose)"
        }
    }

    var kind: String {
        switch self {
        case .input: return "tensor"
        case .concat: return "concat"
        case .slice: return "slice"
        case .transposeColumns: return "transpose"
        case .interleaveTransposed: return "interleave"
        }
    }

    // MARK: Evaluation

    /// The bytes, reading inputs through `read`. A whole input comes back as the reader's own
    /// (mapped) view; everything else is one new buffer.
    public func evaluate(_ read: (String) throws -> TensorBytes) throws -> TensorBytes {
        switch self {
        case .input(let n): return try read(n)
        default:
            var out: [UInt8] = []
            try append(to: &out, read)
            return TensorBytes(out)
        }
    }

    func append(to out: inout [UInt8], _ read: (String) throws -> TensorBytes) throws {
        switch self {
        case .input(let n):
            try read(n).withUnsafeBytes { out.append(contentsOf: $0) }
        case .concat(let parts):
            for p in parts { try p.append(to: &out, read) }
        case .slice(let p, let offset, let count):
            let whole = try p.evaluate(read)
            try whole.withUnsafeBytes { raw in
                guard offset >= 0, count >= 0, offset + count <= raw.count else {
                    throw SmolError(.mismatch, "slice \(offset)..<\(offset + count) outside a \(raw.count)-byte tensor")
                }
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + count)]))
            }
        case .transposeColumns(let p, let t):
            let whole = try p.evaluate(read)
            try whole.withUnsafeBytes { src in
                guard src.count == t.fullBytes else {
                    throw SmolError(.mismatch, "transpose of \(t.batch)×\(t.rows)×\(t.columns) elements needs \(t.fullBytes) bytes, got \(src.count)")
                }
                let n = t.selected, es = t.elementSize
                let base = out.count
                out.append(contentsOf: repeatElement(0, count: t.selectedBytes))
                out.withUnsafeMutableBytes { dst in
                    for b in 0..<t.batch {
                        for j in 0..<n {
                            let c = t.start + j * t.stride
                            for r in 0..<t.rows {
                                let from = ((b * t.rows + r) * t.columns + c) * es
                                let to = base + ((b * n + j) * t.rows + r) * es
                                (dst.baseAddress! + to).copyMemory(from: src.baseAddress! + from, byteCount: es)
                            }
                        }
                    }
                }
            }
        case .interleaveTransposed(let parts, let t):
            let k = parts.count, es = t.elementSize
            guard k > 0, t.columns % k == 0 else {
                throw SmolError(.mismatch, "cannot interleave \(k) parts into \(t.columns) columns")
            }
            let n = t.columns / k
            let partBytes = t.batch * n * t.rows * es
            let base = out.count
            out.append(contentsOf: repeatElement(0, count: partBytes * k))
            for (p, part) in parts.enumerated() {
                let bytes = try part.evaluate(read)
                try bytes.withUnsafeBytes { src in
                    guard src.count == partBytes else {
                        throw SmolError(.mismatch, "interleave part \(p) needs \(partBytes) bytes, got \(src.count)")
                    }
                    out.withUnsafeMutableBytes { dst in
                        for b in 0..<t.batch {
                            for j in 0..<n {
                                for r in 0..<t.rows {
                                    let from = ((b * n + j) * t.rows + r) * es
                                    let to = base + ((b * t.rows + r) * (n * k) + j * k + p) * es
                                    (dst.baseAddress! + to).copyMemory(from: src.baseAddress! + from, byteCount: es)
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
