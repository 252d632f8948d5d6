import Foundation
import Testing
import SmolConvert
import SmolEngine
import SmolFormats
import SmolModels
import SmolQuant
import SmolTensor
import SmolTestSupport

func convertFixture(_ arch: String, to dir: URL, _ outType: ConvertOptions.OutType = .auto) throws -> String {
    var o = ConvertOptions()
    o.outType = outType
    let path = dir.appendingPathComponent("\(arch)-\(outType.rawValue).gguf").path
    _ = try Converter.convert(input: Fixtures.hf(arch).path, output: path, options: o)
    return path
}

@Suite struct TensorComparisonTests {
    /// An exact HF → GGUF conversion: every tensor pairs up through llama.cpp's names and is
    /// bit-identical once the HF side takes the converter's transforms (llama: Q/K permutation;
    /// gemma3: 1 + w norms).
    @Test(arguments: ["llama", "gemma3"])
    func exactConversionIsIdenticalEverywhere(arch: String) throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let gguf = try convertFixture(arch, to: dir)
        let r = try TensorComparison.compare(original: try Checkpoint.open(Fixtures.hf(arch).path),
                                             converted: try Checkpoint.open(gguf))
        let hf = try SafetensorsCheckpoint(path: Fixtures.hf(arch).path)
        #expect(r.tensors.count == hf.tensorInfos.count)
        #expect(r.onlyInOriginal.isEmpty && r.onlyInConverted.isEmpty)
        #expect(r.tensors.allSatisfy { $0.identical && $0.sqnrDB == .infinity })
        let layers = try ModelConfig.load(folder: Fixtures.hf(arch)).numHiddenLayers
        #expect(r.perLayerSQNR.count == layers && r.perLayerSQNR.allSatisfy { $0 == .infinity })
        // The other direction (GGUF as the original) pairs the same tensors.
        let back = try TensorComparison.compare(original: try Checkpoint.open(gguf),
                                                converted: try Checkpoint.open(Fixtures.hf(arch).path))
        #expect(back.tensors.count == r.tensors.count && back.tensors.allSatisfy(\.identical))
    }

    /// F16 GGUF: each 2-D tensor's SQNR is that of rounding it to F16 (computed here with the
    /// IEEE conversion); 1-D norms stay F32 and identical.
    @Test func f16ConversionSQNRIsTheRoundingError() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let gguf = try convertFixture("llama", to: dir, .f16)
        let r = try TensorComparison.compare(original: try Checkpoint.open(Fixtures.hf("llama").path),
                                             converted: try Checkpoint.open(gguf))
        let hf = try SafetensorsCheckpoint(path: Fixtures.hf("llama").path)
        for t in r.tensors {
            let x = try loadFloat(hf, t.name)
            var s = 0.0, n = 0.0
            for v in x {
                let d = Double(FloatBits.f16ToF32(FloatBits.f32ToF16(v))) - Double(v)
                s += Double(v) * Double(v); n += d * d
            }
            if t.shape.count == 1 {
                #expect(t.identical, "\(t.name)")
            } else {
                let expected = 10 * log10(s / n)
                #expect(abs(t.sqnrDB - expected) < 1e-9 * abs(expected), "\(t.name): \(t.sqnrDB) vs \(expected)")
                #expect(t.convertedType == .dense(.f16))
            }
        }
    }

    /// An MLX-quantized folder (`quantize --format mlx`, the layout mlx-lm writes) compares with its
    /// source weight by weight: each quantized weight's SQNR is that of MLXAffine's own
    /// quantize-dequantize of the source (mx.quantize's rounding), not a shape mismatch on the
    /// packed U32 words.
    @Test func mlxFolderComparesDequantized() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("mlx").path
        var o = QuantizeOptions()
        o.format = .mlx
        o.bits = 4
        o.groupSize = 32
        _ = try Quantizer.quantize(input: Fixtures.hf("llama").path, output: out, options: o)
        let r = try TensorComparison.compare(original: try Checkpoint.open(Fixtures.hf("llama").path), converted: try Checkpoint.open(out))
        let hf = try SafetensorsCheckpoint(path: Fixtures.hf("llama").path)
        var quantized = 0
        for t in r.tensors where t.convertedType == .dense(.u32) {
            let x = try loadFloat(hf, t.name)
            let y = try MLXAffine.dequantize(try MLXAffine.quantize(x, rows: t.shape[0], cols: t.shape[1], bits: 4, groupSize: 32))
            var s = 0.0, n = 0.0
            for i in x.indices { let d = Double(y[i]) - Double(x[i]); s += Double(x[i]) * Double(x[i]); n += d * d }
            let expected = 10 * log10(s / n)
            #expect(abs(t.sqnrDB - expected) < 1e-9 * abs(expected), "\(t.name): \(t.sqnrDB) vs \(expected)")
            quantized += 1
        }
        #expect(quantized >= 15)
        #expect(r.onlyInConverted.isEmpty, "\(r.onlyInConverted)")
    }

    @Test func layerIndexParsesBothNamingSchemes() {
        #expect(TensorComparison.layerIndex("model.layers.12.mlp.up_proj.weight") == 12)
        #expect(TensorComparison.layerIndex("blk.3.attn_q.weight") == 3)
        #expect(TensorComparison.layerIndex("token_embd.weight") == nil)
    }
}

@Suite struct VerifierTests {
    /// The engine as judge: an exact conversion gives KLD exactly 0 and the same PPL; an F16 one a
    /// small positive KLD and finite SQNRs.
    @Test func exactAndF16ConversionsOfGemma3() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let ids = try FixtureReference("gemma3").ints("input_ids")
        let p = PerplexityProtocol(context: 32, bos: 2)
        let exact = try Verifier.run(original: Fixtures.hf("gemma3").path, converted: try convertFixture("gemma3", to: dir),
                                     tokens: ids + ids, protocol: p)
        #expect(exact.divergence.meanKLD == 0 && exact.divergence.top1Agreement == 1)
        #expect(exact.pplOriginal == exact.pplConverted)
        let half = try Verifier.run(original: Fixtures.hf("gemma3").path, converted: try convertFixture("gemma3", to: dir, .f16),
                                    tokens: ids + ids, protocol: p)
        #expect(half.divergence.meanKLD > 0 && half.divergence.meanKLD < 1e-3)
        #expect(half.tensors.tensors.contains { $0.sqnrDB.isFinite && $0.sqnrDB > 50 })
        let json = half.json()
        for key in ["ppl_original", "ppl_converted", "kld_mean", "kld_p99", "top1_agreement", "tensors"] {
            #expect(json[key] != nil, "\(key)")
        }
        let png = half.plot().pngData()
        #expect(Array(png.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
    }
}

@Suite struct PNGTests {
    @Test func checksumsMatchPublishedValues() {
        // CRC-32 of the IEND chunk type, as every PNG file ends with it: AE 42 60 82.
        #expect(PNG.crc32(Array("IEND".utf8)) == 0xAE42_6082)
        // RFC 1950's Adler-32 of "Wikipedia" (the well-known worked example): 0x11E60398.
        #expect(PNG.adler32(Array("Wikipedia".utf8)) == 0x11E6_0398)
        #expect(PNG.crc32(Array("123456789".utf8)) == 0xCBF4_3926)  // the CRC-32 check value
    }

    @Test func storedZlibStreamFramesEveryBlock() {
        let data = (0..<150_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let z = PNG.zlibStored(data)
        #expect(z[0] == 0x78 && (Int(z[0]) << 8 | Int(z[1])) % 31 == 0)
        var i = 2, out: [UInt8] = [], final = false
        while !final {
            final = z[i] & 1 == 1
            #expect(z[i] >> 1 == 0)  // BTYPE 00
            let len = Int(z[i + 1]) | Int(z[i + 2]) << 8, nlen = Int(z[i + 3]) | Int(z[i + 4]) << 8
            #expect(len ^ nlen == 0xFFFF)
            out += z[(i + 5)..<(i + 5 + len)]
            i += 5 + len
        }
        #expect(out == data)
        #expect(z.count == i + 4)
    }

    @Test func plotDrawsBarsAndLines() {
        let panel = PlotPanel(title: "TEST", xLabel: "X", xTickLabels: ["0", "1", "2"], values: [10, .infinity, 30],
                              style: .bars, color: (10, 20, 30))
        let img = Plotter.render([panel], width: 400, panelHeight: 300)
        var bar = 0, capped = 0
        for y in 0..<img.height { for x in 0..<img.width {
            let p = img.pixel(x, y)
            if p == (10, 20, 30) { bar += 1 }
            if p == panel.cappedColor { capped += 1 }
        } }
        #expect(bar > 100 && capped > 100)
        let png = img.pngData()
        #expect(png.count > 400 * 300 * 3)
    }
}

@Suite struct StreamingTextTests {
    @Test func completeUTF8PrefixStopsBeforeACutCharacter() {
        let euro = Array("€".utf8)            // E2 82 AC
        let emoji = Array("😀".utf8)          // F0 9F 98 80
        #expect(TextCodec.completeUTF8Prefix(Array("ab".utf8)) == 2)
        #expect(TextCodec.completeUTF8Prefix([0x61] + euro.prefix(2)) == 1)
        #expect(TextCodec.completeUTF8Prefix([0x61] + euro) == 4)
        #expect(TextCodec.completeUTF8Prefix(Array(emoji.prefix(3))) == 0)
        #expect(TextCodec.completeUTF8Prefix(emoji) == 4)
        #expect(TextCodec.completeUTF8Prefix([]) == 0)
    }
}
