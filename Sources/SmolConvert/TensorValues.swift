import SmolFormats
import SmolQuant
import SmolTensor

/// Decoding any tensor to Float32 values and encoding them back, for conversions that must touch
/// values (dtype changes, Q/K permutation, Gemma's norm offset, quantization). Block types
/// dequantize exactly as ggml / gguf-py do.
enum TensorValues {
    /// The tensor's values as Float32, row-major (small tensors and whole-tensor transforms).
    static func decode(_ bytes: TensorBytes, _ info: TensorInfo) throws -> [Float] {
        let n = info.elementCount
        var out = [Float](repeating: 0, count: n)
        try bytes.withUnsafeBytes { src in
            try out.withUnsafeMutableBufferPointer { dst in
                guard let d = dst.baseAddress else { return }
                try decode(src, info.type, count: n, into: d)
            }
        }
        return out
    }

    static func decode(_ src: UnsafeRawBufferPointer, _ type: TensorType, count: Int, into d: UnsafeMutablePointer<Float>) throws {
        switch type {
        case .dense(let dt): try ElementCodec.decode(dt, src, count: count, into: d)
        case .block(let g): try GGUFQuant.dequantize(g, src, count: count, into: d)
        }
    }

    static func encode(_ values: [Float], as type: TensorType) throws -> TensorBytes {
        switch type {
        case .dense(let dt): return TensorBytes(try ElementCodec.encode(values, as: dt))
        case .block(let g):
            throw SmolError(.unsupported, "convert writes float types only; quantize to \(g.name) with `smolconv quantize`")
        }
    }

    /// Elements per chunk when streaming: 4 Mi floats (16 MiB) keeps memory small and both cores busy.
    static let chunkElements = 1 << 22

    /// Visits the tensor's values as F32 in chunks of whole rows (`rows` rows of `shape.last`
    /// values each), reading the source chunk by chunk (mapped sources drop pages as they go).
    static func forEachRowChunk(_ bytes: TensorBytes, _ info: TensorInfo,
                                _ body: (UnsafeBufferPointer<Float>, _ rows: Int) throws -> Void) throws {
        let rowLength = max(info.shape.last ?? 1, 1)
        let rows = info.elementCount / rowLength
        guard rows > 0 else { return }
        guard let rowBytes = info.type.byteCount(shape: [rowLength]) else {
            throw SmolError(.mismatch, at: "tensor '\(info.name)'", "rows of \(rowLength) do not fit \(info.type.name)")
        }
        let rowsPerChunk = max(1, chunkElements / rowLength)
        var floats: [Float] = []   // the decode buffer, made on first use (F32 sources need none)
        var pending: [UInt8] = []
        func process(_ raw: UnsafeRawBufferPointer) throws {
            let n = raw.count / rowBytes
            if info.type == .dense(.f32), let base = raw.baseAddress, Int(bitPattern: base) % MemoryLayout<Float>.alignment == 0 {
                // F32 rows are already the values (little-endian host): no decoding copy.
                try body(UnsafeBufferPointer(start: base.assumingMemoryBound(to: Float.self), count: n * rowLength), n)
                return
            }
            if floats.isEmpty { floats = [Float](repeating: 0, count: rowsPerChunk * rowLength) }
            try floats.withUnsafeMutableBufferPointer { f in
                try decode(raw, info.type, count: n * rowLength, into: f.baseAddress!)
            }
            try floats.withUnsafeBufferPointer { try body(UnsafeBufferPointer(rebasing: $0[0..<(n * rowLength)]), n) }
        }
        try bytes.forEachChunk(rowsPerChunk * rowBytes) { part in
            var p = part
            if !pending.isEmpty {
                let need = rowsPerChunk * rowBytes - pending.count
                let take = min(need, p.count)
                pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: p[0..<take]))
                p = UnsafeRawBufferPointer(rebasing: p[take...])
                if pending.count == rowsPerChunk * rowBytes {
                    try pending.withUnsafeBytes { try process($0) }
                    pending.removeAll(keepingCapacity: true)
                }
            }
            while p.count >= rowsPerChunk * rowBytes {
                try process(UnsafeRawBufferPointer(rebasing: p[0..<(rowsPerChunk * rowBytes)]))
                p = UnsafeRawBufferPointer(rebasing: p[(rowsPerChunk * rowBytes)...])
            }
            pending.append(contentsOf: p)
        }
        if !pending.isEmpty {
            guard pending.count % rowBytes == 0 else {
                throw SmolError(.mismatch, at: "tensor '\(info.name)'", "\(pending.count) trailing bytes are not whole rows")
            }
            try pending.withUnsafeBytes { try process($0) }
        }
    }

    /// The tensor re-encoded as `to`, produced chunk by chunk when written.
    static func streamedConversion(_ source: TensorSource, from: TensorInfo, to: TensorInfo) -> TensorBytes {
        TensorBytes(count: to.byteCount) { emit in
            let bytes = try source.tensorBytes(from.name)
            try forEachRowChunk(bytes, from) { values, _ in
                switch to.type {
                case .dense(let dt):
                    let encoded = try ElementCodec.encode(values, as: dt)
                    try encoded.withUnsafeBytes { try emit($0) }
                case .block(let g):
                    throw SmolError(.unsupported, at: "tensor '\(from.name)'", "convert does not quantize to \(g.name)")
                }
            }
            source.release(from.name)
        }
    }
}
