// PNG layout written here (ISO/IEC 15948, RFC 1950/1951 for the zlib stream):
//
//   89 50 4E 47 0D 0A 1A 0A                       signature
//   chunk*: u32be length | 4-byte type | data | u32be CRC-32 (over type + data)
//     IHDR: u32be width, u32be height, u8 bit depth 8, u8 colour type 2 (RGB), u8 compression 0,
//           u8 filter 0, u8 interlace 0
//     IDAT: zlib stream: 0x78 0x01 | deflate blocks | u32be Adler-32 of the raw data
//           deflate "stored" blocks only: u8 BFINAL|BTYPE=00, u16le LEN, u16le ~LEN, LEN bytes
//           raw data = per row: filter byte 0, then width × RGB
//     IEND: empty
//
// Stored blocks make the file about as large as the raw pixels (a 900 × 700 plot ≈ 1.9 MB); a
// plot is written once, so simplicity wins over size.

/// An 8-bit RGB image and its PNG encoding.
public struct RGBImage: Sendable {
    public let width: Int
    public let height: Int
    /// Row-major, 3 bytes per pixel.
    public var pixels: [UInt8]

    public init(width: Int, height: Int, background: (UInt8, UInt8, UInt8) = (255, 255, 255)) {
        precondition(width > 0 && height > 0)
        self.width = width
        self.height = height
        pixels = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) {
            pixels[3 * i] = background.0; pixels[3 * i + 1] = background.1; pixels[3 * i + 2] = background.2
        }
    }

    /// Sets one pixel; coordinates outside the image are ignored.
    @inlinable
    public mutating func set(_ x: Int, _ y: Int, _ c: (UInt8, UInt8, UInt8)) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        let i = 3 * (y * width + x)
        pixels[i] = c.0; pixels[i + 1] = c.1; pixels[i + 2] = c.2
    }

    public func pixel(_ x: Int, _ y: Int) -> (UInt8, UInt8, UInt8) {
        let i = 3 * (y * width + x)
        return (pixels[i], pixels[i + 1], pixels[i + 2])
    }

    /// The PNG file bytes.
    public func pngData() -> [UInt8] {
        var raw: [UInt8] = []
        raw.reserveCapacity(height * (1 + 3 * width))
        for y in 0..<height {
            raw.append(0)  // filter type None
            raw.append(contentsOf: pixels[(3 * y * width)..<(3 * (y + 1) * width)])
        }
        var out: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        var ihdr: [UInt8] = []
        PNG.appendU32(&ihdr, UInt32(width))
        PNG.appendU32(&ihdr, UInt32(height))
        ihdr += [8, 2, 0, 0, 0]
        PNG.appendChunk(&out, "IHDR", ihdr)
        PNG.appendChunk(&out, "IDAT", PNG.zlibStored(raw))
        PNG.appendChunk(&out, "IEND", [])
        return out
    }
}

/// The checksums and framing PNG needs.
public enum PNG {
    static func appendU32(_ a: inout [UInt8], _ v: UInt32) {
        a += [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
    }

    static func appendChunk(_ out: inout [UInt8], _ type: String, _ data: [UInt8]) {
        appendU32(&out, UInt32(data.count))
        let typed = Array(type.utf8) + data
        out += typed
        appendU32(&out, crc32(typed))
    }

    /// CRC-32 as PNG and zlib define it (reflected polynomial 0xEDB88320, initial and final
    /// XOR 0xFFFFFFFF).
    public static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c = crcTable[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8)
        }
        return c ^ 0xFFFF_FFFF
    }

    static let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    /// Adler-32 (RFC 1950): two sums modulo 65521.
    public static func adler32(_ bytes: [UInt8]) -> UInt32 {
        var a: UInt32 = 1, b: UInt32 = 0
        var i = 0
        while i < bytes.count {
            // 5552 bytes keep the sums below 2^32 before the modulo (zlib's NMAX).
            let end = min(bytes.count, i + 5552)
            while i < end { a += UInt32(bytes[i]); b += a; i += 1 }
            a %= 65521; b %= 65521
        }
        return (b << 16) | a
    }

    /// A zlib stream of stored (uncompressed) deflate blocks.
    public static func zlibStored(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x78, 0x01]  // deflate, 32 KiB window; (0x78 << 8 | 0x01) % 31 == 0
        var i = 0
        repeat {
            let n = min(65535, data.count - i)
            let final: UInt8 = i + n == data.count ? 1 : 0
            out.append(final)  // BFINAL, BTYPE = 00 (stored)
            out += [UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
            out += data[i..<(i + n)]
            i += n
        } while i < data.count
        appendU32(&out, adler32(data))
        return out
    }
}
