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

    /// One frame holding `src` (with its content size in the frame header). `entropyOnly`: no
    /// match search at all — the bytes are coded as Huffman-compressed literals only (zstd's
    /// fastest level, -131072, with literal compression forced on; ZipNN codes exponents the same
    /// way). For the exponent plane of float weights (a few distinct bytes, no long repeats) that
    /// is both smaller than level 1–15 and about twice as fast to decode (formats/smolpack.md).
    static func compress(_ src: UnsafeRawBufferPointer, level: Int, entropyOnly: Bool = false) throws -> [UInt8] {
        let bound = ZSTD_compressBound(src.count)
        guard ZSTD_isError(bound) == 0 else {
            throw SmolError(.invalidArgument, "zstd: \(src.count) bytes is too large for one frame")
        }
        guard let cctx = ZSTD_createCCtx() else { throw SmolError(.io, "zstd: cannot allocate a compression context") }
        defer { ZSTD_freeCCtx(cctx) }
        if entropyOnly {
            try check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, ZSTD_minCLevel()), "set level")
            // ZSTD_c_literalCompressionMode (zstd.h's experimental section; same number since 1.4.5)
            // = ZSTD_ps_enable: negative levels otherwise store literals raw. Should a libzstd refuse
            // it, level 1 (the closest stable setting) still gives a valid frame.
            if ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_experimentalParam5, 1)) != 0 {
                try check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 1), "set level")
            }
        } else {
            try check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, Int32(level)), "set level")
        }
        var out = [UInt8](repeating: 0, count: Int(bound))
        let n = out.withUnsafeMutableBytes { dst in
            ZSTD_compress2(cctx, dst.baseAddress, dst.count, src.baseAddress, src.count)
        }
        try check(n, "compress")
        out.removeLast(out.count - Int(n))
        return out
    }

    /// Decompresses `src` (one frame, or several frames back to back) that must hold exactly
    /// `dst.count` bytes, with a context of its own.
    static func decompress(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) throws {
        try ZstdDecoder().decompress(src, into: dst, frames: 1)
    }

    /// Content size declared by the frames in `src` (back to back) and their number, checked frame
    /// by frame with zstd's stable API: each must be a zstd frame declaring its size (smolconv
    /// writes it).
    static func frames(_ src: UnsafeRawBufferPointer) throws -> (contentSize: Int, count: Int) {
        var at = 0, total = 0, frames = 0
        while at < src.count {
            let p = src.baseAddress! + at, left = src.count - at
            let declared = ZSTD_getFrameContentSize(p, left)
            // ZSTD_CONTENTSIZE_ERROR / _UNKNOWN are (0ULL - 2) / (0ULL - 1): macros Swift does not import.
            if declared == UInt64.max - 1 { throw SmolError(.malformed, "not a zstd frame at byte \(at) of the chunk") }
            if declared == UInt64.max { throw SmolError(.malformed, "zstd frame \(frames) does not declare its size") }
            let size = ZSTD_findFrameCompressedSize(p, left)
            try check(size, "frame size")
            guard let t = Checked.add(total, Checked.int(declared) ?? Int.max) else {
                throw SmolError(.malformed, "zstd frames declare more than \(Int.max) bytes")
            }
            total = t
            at += size
            frames += 1
        }
        return (total, frames)
    }

    static func check(_ code: Int, _ what: String) throws {
        guard ZSTD_isError(code) != 0 else { return }
        let name = String(cString: ZSTD_getErrorName(code))
        throw SmolError(.malformed, "zstd \(what) failed: \(name)")
    }

    /// libzstd's version, e.g. "1.5.4".
    static var version: String { String(cString: ZSTD_versionString()) }
}

/// A zstd decompression context kept for many chunks (creating one per 4 MiB chunk costs an
/// allocation and its initialisation each time). Used by one thread at a time.
final class ZstdDecoder: @unchecked Sendable {
    // @unchecked: the context is only used by the thread holding this decoder (PackedCheckpoint's
    // scratch pool hands each to one worker at a time).
    private let ctx: OpaquePointer

    init() throws {
        guard let c = ZSTD_createDCtx() else { throw SmolError(.io, "zstd: cannot allocate a decompression context") }
        ctx = c
    }

    deinit { ZSTD_freeDCtx(ctx) }

    /// Decompresses `src` (one frame, or several frames back to back: container version 3 writes
    /// a chunk's planes as separate frames) that must hold exactly `dst.count` bytes in `frames`
    /// frames (nil: any number).
    func decompress(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer, frames expected: Int? = nil) throws {
        let (declared, count) = try Zstd.frames(src)
        if let expected, count != expected {
            throw SmolError(.malformed, "\(count) zstd frames where the index says \(expected)")
        }
        guard declared == dst.count else {
            throw SmolError(.malformed, "zstd frames hold \(declared) bytes, the index says \(dst.count)")
        }
        // ZSTD_decompressDCtx decodes concatenated frames into one output.
        let n = ZSTD_decompressDCtx(ctx, dst.baseAddress, dst.count, src.baseAddress, src.count)
        try Zstd.check(n, "decompress")
        guard n == dst.count else {
            throw SmolError(.malformed, "zstd frames decompressed to \(n) bytes, the index says \(dst.count)")
        }
    }
}
