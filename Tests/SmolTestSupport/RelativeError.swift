/// max |a − b| / max |ref| (max |a − b| when ref is all zeros): the error measure every fixture
/// comparison states its tolerance in.
public func relativeError(_ a: [Float], _ ref: [Float]) -> Float {
    precondition(a.count == ref.count, "relativeError: \(a.count) vs \(ref.count) values")
    var num: Float = 0, den: Float = 0
    for i in a.indices { num = max(num, abs(a[i] - ref[i])); den = max(den, abs(ref[i])) }
    return den == 0 ? num : num / den
}
