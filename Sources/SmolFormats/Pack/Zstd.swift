import CZstd
import SmolTensor

/// The only place smolconv calls libzstd: one-shot compression and decompression of single frames,
/// with zstd's error codes turned into `SmolError`s. Each call uses its own context, so calls from
/// several threads at once are safe.
struct Zstd {
    /// zstd's own limits on the level (1…22; 20–22 are its "ultra" levels, which need more memory).
    static var maxLevel: Int { Int(ZSTD_maxCLevel()) }
    static let minLevel = 1

    /// Largest block a zstd frame holds (ZSTD_BLOCKSIZE_MAX); every block takes at least a 3-byte
    /// header, so a frame of `n` bytes can decompress to at most (n / 3 + 1) × this.
    static let blockSizeMax = 128 * 1024

    /// The most bytes `n` bytes of zstd frame can possibly decompress to: a bound computed from the
    /// format, used to refuse a lying index before anything is allocated.
    static func decompressedBound(compressedSize n: Int) -> Int {
        (Checked.multiply(n / 3 + 1, blockSizeMax)) ?? Int.max
    }

    /// One frame holding `src` (with its content size in the frame header).
    static func compress(_ src: UnsafeRawBufferPointer, level: Int) throws -> [UInt8] {
        let bound = ZSTD_compressBound(src.count)
        guard ZSTD_isError(bound) == 0 else {
            throw SmolError(.invalidArgument, "zstd: \(src.count) bytes is too large for one frame")
        }
        guard let cctx = ZSTD_createCCtx() else { throw SmolError(.io, "zstd: cannot allocate a compression context") }
        defer { ZSTD_freeCCtx(cctx) }
        var out = [UInt8](repeating: 0, count: Int(bound))
        let n = out.withUnsafeMutableBytes { dst in
            ZSTD_compressCCtx(cctx, dst.baseAddress, dst.count, src.baseAddress, src.count, Int32(level))
        }
        try check(n, "compress")
        out.removeLast(out.count - Int(n))
        return out
    }

    /// Decompresses one frame that must hold exactly `dst.count` bytes.
    static func decompress(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) throws {
        let declared = ZSTD_getFrameContentSize(src.baseAddress, src.count)
        // ZSTD_CONTENTSIZE_ERROR / _UNKNOWN are (0ULL - 2) / (0ULL - 1): macros Swift does not import.
        if declared == UInt64.max - 1 { throw SmolError(.malformed, "not a zstd frame") }
        if declared != UInt64.max && declared != UInt64(dst.count) {
            throw SmolError(.malformed, "zstd frame holds \(declared) bytes, the index says \(dst.count)")
        }
        guard let dctx = ZSTD_createDCtx() else { throw SmolError(.io, "zstd: cannot allocate a decompression context") }
        defer { ZSTD_freeDCtx(dctx) }
        let n = ZSTD_decompressDCtx(dctx, dst.baseAddress, dst.count, src.baseAddress, src.count)
        try check(n, "decompress")
        guard n == dst.count else {
            throw SmolError(.malformed, "zstd frame decompressed to \(n) bytes, the index says \(dst.count)")
        }
    }

    private static func check(_ code: Int, _ what: String) throws {
        guard ZSTD_isError(code) != 0 else { return }
        let name = String(cString: ZSTD_getErrorName(code))
        throw SmolError(.malformed, "zstd \(what) failed: \(name)")
    }

    /// libzstd's version, e.g. "1.5.4".
    static var version: String { String(cString: ZSTD_versionString()) }
}
