// AVX2 fused dequantize-and-dot. Why C: Swift has no per-function target attributes, so a default
// (baseline x86-64, SSE2) build of the Swift twins runs the int8 → float conversions 4 lanes at a
// time without pmovsx. Measured on this 2-core Zen 4 (shared, loaded machine; single-file
// micro-benchmark, one core, 640×1024 elements, best of 60): Swift fused Q8_0 dot 2.3 G elements/s
// baseline, 5.7 with -target-cpu haswell. In smolconv-bench (tools/bench_kernels.sh --quick, same
// session, wall ms): Q5_0 [1024, 640] T=1 0.436 ms portable Swift vs 0.109–0.129 ms here; the Q8_0
// [262144, 640] output layer T=1 200 ms vs 45–64 ms; a decode sweep (all layers + output) 169 ms
// vs 54–94 ms of wall and 169 vs 35–39 ms of CPU. Decode needs ~20 G elements/s over two cores to
// stream the 168 M-element Q8_0 output layer at memory bandwidth.
//
// Exactness: d·q is exact in float32 for every type here (an f16 times an integer of ≤ 8 bits), and
// Q4_K's (d·sc)·q − dmin·m is formed with one rounding as the dequantizer does (fmsub of an exact
// product rounds once, like mul-then-sub), so these differ from dequantize-then-dot only in the
// order (and FMA fusing) of the accumulation.
#include "csmolkernels.h"
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

int smolk_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

#define AVX2 __attribute__((target("avx2,fma,f16c")))

// Software prefetch this many bytes ahead of the weight pointer, one per 64-byte line consumed.
// Decode streams every weight once from memory; the hardware prefetcher alone kept one core at
// 8.6 GB/s and two at 16.6 GB/s on the Q8_0 output layer of the real model (262144 × 640), with
// this 11.6 and 21–22 GB/s (microbenchmark on this 2-core Zen 4, quiet; 2–8 KB ahead all alike).
// Prefetching past the end of a row is harmless: threads take consecutive rows.
#define AHEAD 2048
#define PREFETCH(p, off) _mm_prefetch((const char *)(p) + AHEAD + (off), _MM_HINT_T0)

AVX2 static inline float half(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

AVX2 static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// 8 signed bytes → 8 floats.
AVX2 static inline __m256 f8(__m128i bytes) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes)); }

// Σ q·x for 32 signed quants in a 256-bit vector and x[0..<32], as 8 partial sums.
AVX2 static inline __m256 dot32(__m256i q, const float *x) {
    __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    __m256 s = _mm256_mul_ps(f8(lo), _mm256_loadu_ps(x));
    s = _mm256_fmadd_ps(f8(_mm_srli_si128(lo, 8)), _mm256_loadu_ps(x + 8), s);
    s = _mm256_fmadd_ps(f8(hi), _mm256_loadu_ps(x + 16), s);
    return _mm256_fmadd_ps(f8(_mm_srli_si128(hi, 8)), _mm256_loadu_ps(x + 24), s);
}

AVX2 float smolk_q8_0_dot_avx2(const void *w, const float *x, long blocks) {
    const uint8_t *p = w;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    long b = 0;
    for (; b + 1 < blocks; b += 2, p += 68, x += 64) {
        PREFETCH(p, 0);
        PREFETCH(p, 64);
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(half(p)), dot32(_mm256_loadu_si256((const __m256i *)(p + 2)), x), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(half(p + 34)), dot32(_mm256_loadu_si256((const __m256i *)(p + 36)), x + 32), acc1);
    }
    if (b < blocks) {
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(half(p)), dot32(_mm256_loadu_si256((const __m256i *)(p + 2)), x), acc0);
    }
    return hsum(_mm256_add_ps(acc0, acc1));
}

// 16 bytes of packed nibbles → 32 bytes: low nibbles in bytes 0–15, high nibbles in 16–31 (the
// element order of Q4_0/Q5_0 and of each 32-byte Q4_K chunk's two sub-blocks).
AVX2 static inline __m256i nibbles(const uint8_t *q) {
    __m128i v = _mm_loadu_si128((const __m128i *)q), m = _mm_set1_epi8(15);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
}

AVX2 float smolk_q5_0_dot_avx2(const void *w, const float *x, long blocks) {
    const uint8_t *p = w;
    // Byte i of the result gets bit i of qh: broadcast byte i/8 to lane i, test bit i % 8.
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                            2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x(0x8040201008040201LL);
    const __m256i sixteen = _mm256_set1_epi8(16);
    __m256 acc = _mm256_setzero_ps();
    for (long b = 0; b < blocks; b++, p += 22, x += 32) {
        PREFETCH(p, 0);
        uint32_t qh;
        memcpy(&qh, p + 2, 4);
        __m256i h = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), spread);
        __m256i fifth = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(h, bit), bit), sixteen);
        __m256i q = _mm256_sub_epi8(_mm256_or_si256(nibbles(p + 6), fifth), sixteen);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(half(p)), dot32(q, x), acc);
    }
    return hsum(acc);
}

// ggml's 6-bit scale/min unpacking for Q4_K sub-block j (see q4KScaleMin in QuantBlocks.swift).
static inline void scale_min(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 15) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// Σ ((d·q − m)·x) over 8 quants (as bytes in the low half of `q8`).
AVX2 static inline __m256 affine8(__m128i q8, __m256 d, __m256 m, const float *x, __m256 acc) {
    __m256 wv = _mm256_fmsub_ps(d, f8(q8), m);
    return _mm256_fmadd_ps(wv, _mm256_loadu_ps(x), acc);
}

AVX2 float smolk_q4_K_dot_avx2(const void *w, const float *x, long blocks) {
    const uint8_t *p = w;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (long b = 0; b < blocks; b++, p += 144, x += 256) {
        PREFETCH(p, 0);
        PREFETCH(p, 64);
        PREFETCH(p, 128);
        float d = half(p), dmin = half(p + 2);
        for (int c = 0; c < 4; c++) {
            int sc1, m1, sc2, m2;
            scale_min(2 * c, p + 4, &sc1, &m1);
            scale_min(2 * c + 1, p + 4, &sc2, &m2);
            __m256 d1 = _mm256_set1_ps(d * (float)sc1), mm1 = _mm256_set1_ps(dmin * (float)m1);
            __m256 d2 = _mm256_set1_ps(d * (float)sc2), mm2 = _mm256_set1_ps(dmin * (float)m2);
            __m256i q = nibbles(p + 16 + 32 * c);
            __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
            // nibbles() spreads only 16 bytes: the chunk's 32 bytes are two such halves.
            __m256i q2 = nibbles(p + 16 + 32 * c + 16);
            __m128i lo2 = _mm256_castsi256_si128(q2), hi2 = _mm256_extracti128_si256(q2, 1);
            const float *xc = x + 64 * c;
            acc0 = affine8(lo, d1, mm1, xc, acc0);
            acc1 = affine8(_mm_srli_si128(lo, 8), d1, mm1, xc + 8, acc1);
            acc0 = affine8(lo2, d1, mm1, xc + 16, acc0);
            acc1 = affine8(_mm_srli_si128(lo2, 8), d1, mm1, xc + 24, acc1);
            acc0 = affine8(hi, d2, mm2, xc + 32, acc0);
            acc1 = affine8(_mm_srli_si128(hi, 8), d2, mm2, xc + 40, acc1);
            acc0 = affine8(hi2, d2, mm2, xc + 48, acc0);
            acc1 = affine8(_mm_srli_si128(hi2, 8), d2, mm2, xc + 56, acc1);
        }
    }
    return hsum(_mm256_add_ps(acc0, acc1));
}

// Σ q·x over 16 signed quants (bytes of `q`) and x[0..<16].
AVX2 static inline __m256 dot16(__m128i q, const float *x) {
    return _mm256_fmadd_ps(f8(_mm_srli_si128(q, 8)), _mm256_loadu_ps(x + 8), _mm256_mul_ps(f8(q), _mm256_loadu_ps(x)));
}

AVX2 float smolk_q6_K_dot_avx2(const void *w, const float *x, long blocks) {
    const uint8_t *p = w;
    const __m128i m15 = _mm_set1_epi8(15), m3 = _mm_set1_epi8(3), k32 = _mm_set1_epi8(32);
    __m256 acc = _mm256_setzero_ps();
    for (long b = 0; b < blocks; b++, p += 210, x += 256) {
        PREFETCH(p, 0);
        PREFETCH(p, 64);
        PREFETCH(p, 128);
        PREFETCH(p, 192);
        float d = half(p + 208);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = p + 64 * h, *qh = p + 128 + 32 * h;
            const int8_t *sc = (const int8_t *)(p + 192 + 8 * h);
            const float *xh = x + 128 * h;
            for (int s = 0; s < 2; s++) {
                __m128i a = _mm_loadu_si128((const __m128i *)(ql + 16 * s));
                __m128i c = _mm_loadu_si128((const __m128i *)(ql + 32 + 16 * s));
                __m128i hb = _mm_loadu_si128((const __m128i *)(qh + 16 * s));
                // Byte shifts via 16-bit shifts + masks (x86 has no 8-bit shift).
                __m128i q1 = _mm_or_si128(_mm_and_si128(a, m15), _mm_slli_epi16(_mm_and_si128(hb, m3), 4));
                __m128i q2 = _mm_or_si128(_mm_and_si128(c, m15), _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(hb, 2), m3), 4));
                __m128i q3 = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(a, 4), m15), _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(hb, 4), m3), 4));
                __m128i q4 = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(c, 4), m15), _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(hb, 6), m3), 4));
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d * (float)sc[s]), dot16(_mm_sub_epi8(q1, k32), xh + 16 * s), acc);
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d * (float)sc[s + 2]), dot16(_mm_sub_epi8(q2, k32), xh + 32 + 16 * s), acc);
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d * (float)sc[s + 4]), dot16(_mm_sub_epi8(q3, k32), xh + 64 + 16 * s), acc);
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d * (float)sc[s + 6]), dot16(_mm_sub_epi8(q4, k32), xh + 96 + 16 * s), acc);
            }
        }
    }
    return hsum(acc);
}

#else
int smolk_has_avx2(void) { return 0; }
float smolk_q8_0_dot_avx2(const void *w, const float *x, long blocks) { (void)w; (void)x; (void)blocks; return 0; }
float smolk_q5_0_dot_avx2(const void *w, const float *x, long blocks) { (void)w; (void)x; (void)blocks; return 0; }
float smolk_q4_K_dot_avx2(const void *w, const float *x, long blocks) { (void)w; (void)x; (void)blocks; return 0; }
float smolk_q6_K_dot_avx2(const void *w, const float *x, long blocks) { (void)w; (void)x; (void)blocks; return 0; }
#endif
