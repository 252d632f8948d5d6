/// Arithmetic on sizes read from files. Every size a file claims goes through these before it
/// is used to allocate or index, so a lying header produces an error instead of a trap.
public enum Checked {
    /// Product of non-negative dimensions, or nil on overflow or a negative dimension.
    public static func product(_ dims: [Int]) -> Int? {
        var n = 1
        for d in dims {
            guard d >= 0 else { return nil }
            let (r, o) = n.multipliedReportingOverflow(by: d)
            if o { return nil }
            n = r
        }
        return n
    }

    public static func multiply(_ a: Int, _ b: Int) -> Int? {
        let (r, o) = a.multipliedReportingOverflow(by: b)
        return o ? nil : r
    }

    public static func add(_ a: Int, _ b: Int) -> Int? {
        let (r, o) = a.addingReportingOverflow(b)
        return o ? nil : r
    }

    /// Converts a UInt64 read from a file to Int, or nil if it does not fit.
    public static func int(_ v: UInt64) -> Int? {
        v <= UInt64(Int.max) ? Int(v) : nil
    }

    /// Rounds `n` up to a multiple of `alignment` (> 0), or nil on overflow.
    public static func alignUp(_ n: Int, _ alignment: Int) -> Int? {
        guard alignment > 0, let s = add(n, alignment - 1) else { return nil }
        return s - s % alignment
    }
}
