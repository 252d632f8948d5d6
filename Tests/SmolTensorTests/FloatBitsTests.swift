import Testing
@testable import SmolTensor

/// Expected bit patterns computed with numpy / torch semantics (round to nearest even).
@Suite struct FloatBitsTests {
    @Test func bf16RoundsToNearestEvenLikeTorch() {
        // 1 + 2^-8 is exactly halfway between two bf16 values: ties to even (1.0).
        #expect(FloatBits.f32ToBF16(Float(bitPattern: 0x3F80_8000)) == 0x3F80)
        // Just above halfway rounds up.
        #expect(FloatBits.f32ToBF16(Float(bitPattern: 0x3F80_8001)) == 0x3F81)
        // Halfway with odd lower bit rounds up to even.
        #expect(FloatBits.f32ToBF16(Float(bitPattern: 0x3F81_8000)) == 0x3F82)
        #expect(FloatBits.f32ToBF16(-2.0) == 0xC000)
        #expect(FloatBits.f32ToBF16(.infinity) == 0x7F80)
        // NaN stays NaN (quiet bit set), never becomes infinity.
        let nan = FloatBits.f32ToBF16(Float(bitPattern: 0x7F80_0001))
        #expect(nan & 0x7F80 == 0x7F80 && nan & 0x007F != 0)
    }

    @Test func bf16WidensExactly() {
        for bits: UInt16 in [0, 0x3F80, 0xC000, 0x0001, 0x7F7F, 0x8000] {
            #expect(FloatBits.f32ToBF16(FloatBits.bf16ToF32(bits)) == bits)
        }
    }

    @Test func f16MatchesIEEEHalf() {
        #expect(FloatBits.f16ToF32(0x3C00) == 1.0)
        #expect(FloatBits.f16ToF32(0x0001) == Float(bitPattern: 0x3380_0000)) // smallest subnormal 2^-24
        #expect(FloatBits.f16ToF32(0x7BFF) == 65504)
        #expect(FloatBits.f32ToF16(65520) == 0x7C00) // rounds to infinity, as numpy does
        #expect(FloatBits.f32ToF16(1.0 + 1.0 / 2048) == 0x3C00) // tie to even
    }

    @Test func fp8DecodesOCPFormats() {
        // E4M3FN: 0x7E = 448 (max), 0x08 = 2^-6 (min normal), 0x01 = 2^-9 (min subnormal), 0x7F NaN.
        #expect(FloatBits.f8e4m3ToF32(0x7E) == 448)
        #expect(FloatBits.f8e4m3ToF32(0x08) == Float(bitPattern: 0x3C80_0000))
        #expect(FloatBits.f8e4m3ToF32(0x01) == Float(bitPattern: 0x3B00_0000))
        #expect(FloatBits.f8e4m3ToF32(0x7F).isNaN)
        #expect(FloatBits.f8e4m3ToF32(0xB8) == -1.0)
        // E5M2: 0x3C = 1.0, 0x7B = 57344 (max), 0x7C = inf.
        #expect(FloatBits.f8e5m2ToF32(0x3C) == 1.0)
        #expect(FloatBits.f8e5m2ToF32(0x7B) == 57344)
        #expect(FloatBits.f8e5m2ToF32(0x7C) == .infinity)
    }
}

@Suite struct CheckedArithmeticTests {
    @Test func productOverflowIsNil() {
        #expect(Checked.product([2, 3, 4]) == 24)
        #expect(Checked.product([]) == 1)
        #expect(Checked.product([1 << 32, 1 << 32]) == nil)
        #expect(Checked.product([-1, 4]) == nil)
    }

    @Test func blockTypesNeedWholeBlocksPerRow() {
        #expect(TensorType.block(.q4_K).byteCount(shape: [2, 256]) == 288)
        #expect(TensorType.block(.q4_K).byteCount(shape: [2, 640]) == nil)
        #expect(TensorType.block(.q8_0).byteCount(shape: [640]) == 20 * 34)
        #expect(TensorType.dense(.bf16).byteCount(shape: [3, 5]) == 30)
        #expect(TensorType.dense(.f32).byteCount(shape: [Int.max, 2]) == nil)
    }

    @Test func alignUpRounds() {
        #expect(Checked.alignUp(0, 32) == 0)
        #expect(Checked.alignUp(33, 32) == 64)
        #expect(Checked.alignUp(Int.max, 32) == nil)
    }
}
