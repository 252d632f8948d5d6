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

/// Runs `body` for 0..<count on all cores; each free core takes the next index, so uneven items
/// leave no core waiting until the last ones. After an error no further index starts; the error
/// of the lowest failing index is rethrown.
func parallelForEach(_ count: Int, _ body: (Int) throws -> Void) throws {
    if count == 0 { return }
    let failure = FirstFailure()
    withoutActuallyEscaping(body) { body in
        let box = UnsafeBody(body)
        DispatchQueue.concurrentPerform(iterations: count) { i in
            guard !failure.failed else { return }
            do { try box.body(i) } catch { failure.record(i, error) }
        }
    }
    if let e = failure.error { throw e }
}

/// The error of the lowest failing index, set from any thread.
private final class FirstFailure: @unchecked Sendable {
    // @unchecked: every access goes through `lock`.
    private let lock = NSLock()
    private var index = Int.max
    private var first: Error?
    var failed: Bool { lock.lock(); defer { lock.unlock() }; return first != nil }
    var error: Error? { lock.lock(); defer { lock.unlock() }; return first }
    func record(_ i: Int, _ e: Error) {
        lock.lock()
        if i < index { (index, first) = (i, e) }
        lock.unlock()
    }
}

private struct UnsafeBody: @unchecked Sendable {
    let body: (Int) throws -> Void
    init(_ b: @escaping (Int) throws -> Void) { body = b }
}

/// Hands a buffer whose elements each thread writes exactly once, and a closure that only reads
/// shared state, to concurrentPerform.
private struct UnsafeSendable<T>: @unchecked Sendable {
    let results: UnsafeMutableBufferPointer<Result<T, Error>?>
    let body: (Int) throws -> T
    init(_ r: UnsafeMutableBufferPointer<Result<T, Error>?>, _ b: @escaping (Int) throws -> T) { results = r; body = b }
}
