import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// OpenBLAS's worker threads, set up once per process before any command runs.
///
/// An idle OpenBLAS worker spins on sched_yield for 2^28 cycles (its default thread timeout) after
/// every threaded call before it sleeps. Between two matrix products the engine runs its own
/// kernels on both cores (attention, norms, the perplexity log-sum-exp), and the spinning worker
/// takes CPU from them; commands that never call BLAS (pack, unpack) lose about 0.12 CPU s per
/// process to the pool started when the library loads. Measured here (quiet 2-core machine, F32
/// base perplexity on the GPL-3 text): 23.5–23.7 s wall and 4.5–5.1 s of system time with the
/// default, 22.4–22.7 s and 2.5 s with OPENBLAS_THREAD_TIMEOUT=4 (2^4 cycles: sleep at once).
///
/// OpenBLAS reads that variable when the library loads, before `main`: so this sets it (unless the
/// user did), has OpenBLAS read its environment again (`openblas_read_env`) and stops the workers
/// (`blas_thread_shutdown_`); OpenBLAS starts them again, with the new timeout, on its next
/// threaded call. Both are looked up at run time, as they are not CBLAS: with another BLAS they are
/// absent and nothing changes.
enum BLASThreads {
    static func configure() {
        #if os(Linux)
        setenv("OPENBLAS_THREAD_TIMEOUT", "4", 0)   // 0: keep a value the user set
        let all = UnsafeMutableRawPointer(bitPattern: 0)   // RTLD_DEFAULT
        if let readEnv = dlsym(all, "openblas_read_env") {
            unsafeBitCast(readEnv, to: (@convention(c) () -> Void).self)()
        }
        if let shutdown = dlsym(all, "blas_thread_shutdown_") {
            _ = unsafeBitCast(shutdown, to: (@convention(c) () -> Int32).self)()
        }
        #endif
    }
}
