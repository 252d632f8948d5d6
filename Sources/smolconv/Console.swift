import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The CLI's only door to the terminal: results on stdout, progress and errors on stderr.
enum Console {
    static func out(_ s: String) {
        print(s)
    }

    static func error(_ s: String) {
        err("smolconv: error: \(s)\n")
    }

    static func note(_ s: String) {
        err("smolconv: \(s)\n")
    }

    /// Unbuffered write to stderr.
    static func err(_ s: String) {
        var s = s
        s.withUTF8 { b in _ = write(2, b.baseAddress, b.count) }
    }

    /// Whether stderr is a terminal (progress bars only then).
    static var stderrIsTTY: Bool { isatty(2) != 0 }

    /// A one-line progress indicator on stderr, redrawn in place on a terminal and printed only at
    /// the end otherwise.
    final class Progress {
        let label: String
        let total: Int
        private var last = -1

        init(_ label: String, total: Int) {
            self.label = label
            self.total = max(total, 1)
        }

        func update(_ done: Int, detail: String = "") {
            update(done, of: total, detail: detail)
        }

        func update(_ done: Int, of total: Int, detail: String = "") {
            guard Console.stderrIsTTY else { return }
            let pct = done * 100 / max(total, 1)
            if pct == last { return }
            last = pct
            Console.err("\r\(label) \(pct)% \(detail)\u{1B}[K")
        }

        func finish(_ message: String) {
            if Console.stderrIsTTY { Console.err("\r\u{1B}[K") }
            Console.err("\(label): \(message)\n")
        }
    }
}

/// Human-readable numbers.
enum Format {
    static func grouped(_ n: Int) -> String {
        let s = String(n.magnitude)
        var out = ""
        for (i, c) in s.enumerated() {
            if i > 0 && (s.count - i) % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return n < 0 ? "-" + out : out
    }

    static func bytes(_ n: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n)
        var u = 0
        while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
        return u == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[u])
    }

    static func fixed(_ v: Double, _ digits: Int) -> String {
        String(format: "%.\(digits)f", v)
    }
}
