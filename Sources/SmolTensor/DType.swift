/// Element types of dense tensors, named as safetensors names them.
public enum DType: String, CaseIterable, Sendable, Hashable, Codable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case f8e4m3 = "F8_E4M3", f8e5m2 = "F8_E5M2"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8"
    case u64 = "U64", u32 = "U32", u16 = "U16", u8 = "U8"
    case bool = "BOOL"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .f64, .i64, .u64: return 8
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16, .u16: return 2
        case .f8e4m3, .f8e5m2, .i8, .u8, .bool: return 1
        }
    }

    public var isFloatingPoint: Bool {
        switch self {
        case .f64, .f32, .f16, .bf16, .f8e4m3, .f8e5m2: return true
        default: return false
        }
    }

    /// The GGUF (ggml) type that stores this element type, if GGUF has one.
    public var ggmlType: GGMLType? {
        switch self {
        case .f64: return .f64
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        case .i64: return .i64
        case .i32: return .i32
        case .i16: return .i16
        case .i8: return .i8
        default: return nil
        }
    }
}

/// Every ggml tensor type, with its id in GGUF files, elements per block and bytes per block.
/// The table is ggml's (ggml.c `type_traits`); `Tests/SmolTensorTests` checks it against gguf-py.
/// Types smolconv cannot compute still have a row, so errors can name them.
public enum GGMLType: UInt32, CaseIterable, Sendable, Hashable {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3
    // 4 and 5 were Q4_2 and Q4_3, removed from ggml long ago.
    case q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9
    case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15
    case iq2_XXS = 16, iq2_XS = 17, iq3_XXS = 18, iq1_S = 19, iq4_NL = 20, iq3_S = 21, iq2_S = 22, iq4_XS = 23
    case i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_M = 29, bf16 = 30
    // 31–33 were the Q4_0_4_4 / Q4_0_4_8 / Q4_0_8_8 repacked types, removed.
    case tq1_0 = 34, tq2_0 = 35
    // 36–38 were IQ4_NL_4_4 / _4_8 / _8_8, removed.
    case mxfp4 = 39, nvfp4 = 40, q1_0 = 41

    /// Elements per block, and bytes per block.
    public var blockLayout: (elements: Int, bytes: Int) {
        switch self {
        case .f32: return (1, 4)
        case .f16, .bf16: return (1, 2)
        case .f64, .i64: return (1, 8)
        case .i32: return (1, 4)
        case .i16: return (1, 2)
        case .i8: return (1, 1)
        case .q4_0: return (32, 18)      // f16 d; u8 qs[16]
        case .q4_1: return (32, 20)      // f16 d, m; u8 qs[16]
        case .q5_0: return (32, 22)      // f16 d; u8 qh[4]; u8 qs[16]
        case .q5_1: return (32, 24)      // f16 d, m; u8 qh[4]; u8 qs[16]
        case .q8_0: return (32, 34)      // f16 d; i8 qs[32]
        case .q8_1: return (32, 36)      // f16 d, s; i8 qs[32] (gguf-py still says 40: the old float d, s)
        case .q2_K: return (256, 84)     // u8 scales[16]; u8 qs[64]; f16 d, dmin
        case .q3_K: return (256, 110)    // u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d
        case .q4_K: return (256, 144)    // f16 d, dmin; u8 scales[12]; u8 qs[128]
        case .q5_K: return (256, 176)    // f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]
        case .q6_K: return (256, 210)    // u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d
        case .q8_K: return (256, 292)    // f32 d; i8 qs[256]; i16 bsums[16]
        case .iq2_XXS: return (256, 66)
        case .iq2_XS: return (256, 74)
        case .iq3_XXS: return (256, 98)
        case .iq1_S: return (256, 50)
        case .iq4_NL: return (32, 18)    // f16 d; u8 qs[16]
        case .iq3_S: return (256, 110)
        case .iq2_S: return (256, 82)
        case .iq4_XS: return (256, 136)  // f16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128]
        case .iq1_M: return (256, 56)
        case .tq1_0: return (256, 54)
        case .tq2_0: return (256, 66)
        case .mxfp4: return (32, 17)     // u8 e (E8M0); u8 qs[16]
        case .nvfp4: return (64, 36)
        case .q1_0: return (128, 18)
        }
    }

    /// ggml's name: "F32", "Q4_K", "IQ4_XS", …
    public var name: String {
        switch self {
        case .f32: return "F32"
        case .f16: return "F16"
        case .bf16: return "BF16"
        case .f64: return "F64"
        case .i8: return "I8"
        case .i16: return "I16"
        case .i32: return "I32"
        case .i64: return "I64"
        case .q4_0: return "Q4_0"
        case .q4_1: return "Q4_1"
        case .q5_0: return "Q5_0"
        case .q5_1: return "Q5_1"
        case .q8_0: return "Q8_0"
        case .q8_1: return "Q8_1"
        case .q2_K: return "Q2_K"
        case .q3_K: return "Q3_K"
        case .q4_K: return "Q4_K"
        case .q5_K: return "Q5_K"
        case .q6_K: return "Q6_K"
        case .q8_K: return "Q8_K"
        case .iq2_XXS: return "IQ2_XXS"
        case .iq2_XS: return "IQ2_XS"
        case .iq3_XXS: return "IQ3_XXS"
        case .iq1_S: return "IQ1_S"
        case .iq4_NL: return "IQ4_NL"
        case .iq3_S: return "IQ3_S"
        case .iq2_S: return "IQ2_S"
        case .iq4_XS: return "IQ4_XS"
        case .iq1_M: return "IQ1_M"
        case .tq1_0: return "TQ1_0"
        case .tq2_0: return "TQ2_0"
        case .mxfp4: return "MXFP4"
        case .nvfp4: return "NVFP4"
        case .q1_0: return "Q1_0"
        }
    }

    public init?(name: String) {
        guard let t = GGMLType.allCases.first(where: { $0.name == name.uppercased() }) else { return nil }
        self = t
    }

    /// The dense element type when this is not a block-quantized type.
    public var denseType: DType? {
        switch self {
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        case .f64: return .f64
        case .i8: return .i8
        case .i16: return .i16
        case .i32: return .i32
        case .i64: return .i64
        default: return nil
        }
    }

    public var isQuantized: Bool { denseType == nil }
}

/// How a tensor's bytes encode its values: dense elements, or ggml quantization blocks.
public enum TensorType: Hashable, Sendable, CustomStringConvertible {
    case dense(DType)
    case block(GGMLType)

    /// Normalises a ggml type: F32, F16, BF16, F64 and the integer types are dense.
    public init(ggml: GGMLType) {
        if let d = ggml.denseType { self = .dense(d) } else { self = .block(ggml) }
    }

    /// "F32", "BF16", "Q4_K", …: safetensors' names for dense types, ggml's for blocks.
    public var name: String {
        switch self {
        case .dense(let d): return d.rawValue
        case .block(let g): return g.name
        }
    }

    public var description: String { name }

    public var ggmlType: GGMLType? {
        switch self {
        case .dense(let d): return d.ggmlType
        case .block(let g): return g
        }
    }

    /// The element type of a dense tensor; nil for block types.
    public var denseDType: DType? {
        if case .dense(let d) = self { return d }
        return nil
    }

    /// Elements per block and bytes per block (1 and the element size for dense types).
    public var blockLayout: (elements: Int, bytes: Int) {
        switch self {
        case .dense(let d): return (1, d.size)
        case .block(let g): return g.blockLayout
        }
    }

    /// Bytes a tensor of this type and row-major `shape` occupies; nil when a dimension is negative,
    /// the size overflows, or the last (contiguous) dimension is not a whole number of blocks.
    public func byteCount(shape: [Int]) -> Int? {
        guard let n = Checked.product(shape) else { return nil }
        let (elements, bytes) = blockLayout
        if elements > 1 {
            let row = shape.last ?? 1
            guard row % elements == 0 else { return nil }
        }
        return Checked.multiply(n / elements, bytes)
    }
}

extension DType {
    /// PyTorch's name of a float dtype ("bfloat16", "float16", "float64", else "float32"), as
    /// bitsandbytes writes it in an NF4 quant state.
    public var torchFloatName: String {
        switch self {
        case .bf16: return "bfloat16"
        case .f16: return "float16"
        case .f64: return "float64"
        default: return "float32"
        }
    }
}
