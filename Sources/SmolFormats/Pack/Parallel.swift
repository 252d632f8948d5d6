import Foundation
import SmolTensor

/// Runs `body` for 0..<count on all cores (DispatchQueue.concurrentPerform) and returns the results
/// in order; the first error thrown (by index) is rethrown after all have finished.
func parallelMap<T>(_ count: Int, _ body: (Int) throws -> T) throws -> [T] {
    if count == 0 { return [] }
    if count == 1 { return [try body(0)] }
    let results = UnsafeMutableBufferPointer<Result<T, Error>?>.allocate(capacity: count)
    results.initialize(repeating: nil)
    defer { results.deinitialize(); results.deallocate() }
    withoutActuallyEscaping(body) { body in
        let box = UnsafeSendable(results, body)
        DispatchQueue.concurrentPerform(iterations: count) { i in
            box.results[i] = Result { try box.body(i) }
        }
    }
    return try results.map { try $0!.get() }
}

/// Hands a buffer whose elements each thread writes exactly once, and a closure that only reads
/// shared state, to concurrentPerform.
private struct UnsafeSendable<T>: @unchecked Sendable {
    let results: UnsafeMutableBufferPointer<Result<T, Error>?>
    let body: (Int) throws -> T
    init(_ r: UnsafeMutableBufferPointer<Result<T, Error>?>, _ b: @escaping (Int) throws -> T) { results = r; body = b }
}
