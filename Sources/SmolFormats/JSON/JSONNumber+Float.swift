extension JSONNumber {
    /// The shortest decimal that reads back as the same Double (Swift's `description`: "1.0",
    /// "1e-06", "1e+16", all valid JSON), as Python's `repr` writes floats. Finite values only.
    public init(_ d: Double) {
        precondition(d.isFinite, "JSON has no NaN or infinity")
        self.init(validatedText: "\(d)")
    }
}

extension JSONValue {
    /// A finite double as a number, NaN and infinities as null.
    public init(double d: Double) {
        self = d.isFinite ? .number(JSONNumber(d)) : .null
    }
}

extension JSONNumber {
    /// An unsigned decimal integer of any size (UINT64 metadata above Int.max).
    public init(validatedDecimal digits: String) {
        precondition(!digits.isEmpty && digits.allSatisfy(\.isASCII) && digits.allSatisfy(\.isNumber))
        self.init(validatedText: digits)
    }
}

extension JSONValue {
    /// A finite Float by its own shortest decimal ("1e-06", not the double expansion of the float).
    public init(float f: Float) {
        self = f.isFinite ? .number(JSONNumber(validatedText: "\(f)")) : .null
    }
}
