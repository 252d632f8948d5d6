import Foundation

/// Phase timing for finding hot spots: SMOLCONV_PROFILE=1 in the environment accumulates wall and
/// process-CPU seconds per phase of `Engine.forward` and prints them at exit (stderr).
/// Off by default: one branch per phase.
final class EngineProfile: @unchecked Sendable {
    static let shared = EngineProfile()
    let enabled = ProcessInfo.processInfo.environment["SMOLCONV_PROFILE"] != nil
    private var totals: [String: (wall: Double, cpu: Double, calls: Int)] = [:]
    private var order: [String] = []
    private let lock = NSLock()

    private init() {
        if enabled { atexit { EngineProfile.shared.report() } }
    }

    static func now() -> (Double, Double) {
        var ts = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
        let cpu = Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
        return (Double(DispatchTime.now().uptimeNanoseconds) / 1e9, cpu)
    }

    @inline(__always)
    func measure<R>(_ phase: String, _ body: () throws -> R) rethrows -> R {
        guard enabled else { return try body() }
        let (w0, c0) = Self.now()
        let r = try body()
        let (w1, c1) = Self.now()
        lock.lock()
        if totals[phase] == nil { order.append(phase) }
        let t = totals[phase] ?? (0, 0, 0)
        totals[phase] = (t.wall + w1 - w0, t.cpu + c1 - c0, t.calls + 1)
        lock.unlock()
        return r
    }

    func report() {
        var s = "engine profile (wall s / cpu s / calls):\n"
        for p in order { let t = totals[p]!; s += "  \(p.padding(toLength: 12, withPad: " ", startingAt: 0)) \(String(format: "%8.3f %8.3f %7d", t.wall, t.cpu, t.calls))\n" }
        FileHandle.standardError.write(Data(s.utf8))
    }
}
