// Few-row sgemm against a weight read in place, for one expert's token group (MoE training and
// grouped experts: n ≈ T·K/E rows, 10–80, against a [768 × 2048] weight).
//
// Why C and not OpenBLAS: sgemm re-packs the whole weight into its panel layout on every call, and
// with a few rows the packing is a large share of the product. Measured on this 2-core Zen 4
// (quiet, single file, one core, best of 20, weights cycled over 48 experts so they come from
// memory): n = 32, [1536 × 2048] · xᵀ: OpenBLAS 0.3.21 sgemm 3.5–3.6 ms (55–58 GFLOP/s), this
// kernel 2.7–3.0 ms (68–75 GFLOP/s); n = 32 · [2048 × 768]: 1.39 vs 1.22–1.39 ms. In the MoE LoRA
// training step (E 128, top-8, 512 tokens) sgemm's packing (incopy/itcopy) was 19 % of the CPU.
//
// Layout: x is transposed once into xt [k][np] (np = n rounded up to 8, zero padded) and the
// kernel computes 6 output columns × 16 (or 8) rows at a time: for each k, 6 weight values are
// broadcast and multiplied into two 8-row vectors of xt, 12 accumulators in registers over the
// whole reduction. The weight is addressed by strides, so the same kernel serves c = x · wᵀ
// (w [out, k], the forward) and c = x · w (w [k, out], the input gradient). Each output element is
// one fused multiply-add chain in k order (OpenBLAS sums in a different order: results differ in
// the last bits).
#include "csmolkernels.h"
#include <stdint.h>
#include <math.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma")))

// acc[i][·] = (load ? out[i·ldo + ·] : 0) + Σ_j w[i·si + j·sj] · v[j·ldv + ·], i < 6, 16 lanes;
// stored to out[i·ldo + ·]. The nt product broadcasts the weight (w = weight, v = xt); the nn
// product broadcasts x (w = x, si = ldx, sj = 1; v = a weight panel).
AVX2 static void tile6x16(const float *w, long si, long sj, const float *v, long ldv, long J, float *out, long ldo, int load) {
    __m256 a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51;
    if (load) {
        a00 = _mm256_loadu_ps(out); a01 = _mm256_loadu_ps(out + 8);
        a10 = _mm256_loadu_ps(out + ldo); a11 = _mm256_loadu_ps(out + ldo + 8);
        a20 = _mm256_loadu_ps(out + 2 * ldo); a21 = _mm256_loadu_ps(out + 2 * ldo + 8);
        a30 = _mm256_loadu_ps(out + 3 * ldo); a31 = _mm256_loadu_ps(out + 3 * ldo + 8);
        a40 = _mm256_loadu_ps(out + 4 * ldo); a41 = _mm256_loadu_ps(out + 4 * ldo + 8);
        a50 = _mm256_loadu_ps(out + 5 * ldo); a51 = _mm256_loadu_ps(out + 5 * ldo + 8);
    } else {
        a00 = a01 = a10 = a11 = a20 = a21 = a30 = a31 = a40 = a41 = a50 = a51 = _mm256_setzero_ps();
    }
    const float *w0 = w, *w1 = w + si, *w2 = w + 2 * si, *w3 = w + 3 * si, *w4 = w + 4 * si, *w5 = w + 5 * si;
    for (long j = 0; j < J; j++) {
        const __m256 v0 = _mm256_loadu_ps(v + j * ldv), v1 = _mm256_loadu_ps(v + j * ldv + 8);
        const long o = j * sj;
        __m256 b;
        b = _mm256_broadcast_ss(w0 + o); a00 = _mm256_fmadd_ps(b, v0, a00); a01 = _mm256_fmadd_ps(b, v1, a01);
        b = _mm256_broadcast_ss(w1 + o); a10 = _mm256_fmadd_ps(b, v0, a10); a11 = _mm256_fmadd_ps(b, v1, a11);
        b = _mm256_broadcast_ss(w2 + o); a20 = _mm256_fmadd_ps(b, v0, a20); a21 = _mm256_fmadd_ps(b, v1, a21);
        b = _mm256_broadcast_ss(w3 + o); a30 = _mm256_fmadd_ps(b, v0, a30); a31 = _mm256_fmadd_ps(b, v1, a31);
        b = _mm256_broadcast_ss(w4 + o); a40 = _mm256_fmadd_ps(b, v0, a40); a41 = _mm256_fmadd_ps(b, v1, a41);
        b = _mm256_broadcast_ss(w5 + o); a50 = _mm256_fmadd_ps(b, v0, a50); a51 = _mm256_fmadd_ps(b, v1, a51);
    }
    _mm256_storeu_ps(out, a00); _mm256_storeu_ps(out + 8, a01);
    _mm256_storeu_ps(out + ldo, a10); _mm256_storeu_ps(out + ldo + 8, a11);
    _mm256_storeu_ps(out + 2 * ldo, a20); _mm256_storeu_ps(out + 2 * ldo + 8, a21);
    _mm256_storeu_ps(out + 3 * ldo, a30); _mm256_storeu_ps(out + 3 * ldo + 8, a31);
    _mm256_storeu_ps(out + 4 * ldo, a40); _mm256_storeu_ps(out + 4 * ldo + 8, a41);
    _mm256_storeu_ps(out + 5 * ldo, a50); _mm256_storeu_ps(out + 5 * ldo + 8, a51);
}

// 6 output columns × 8 lanes (the 8-row tail), accumulators in registers.
AVX2 static void tile6x8(const float *w, long si, long sj, const float *v, long ldv, long J, float *out, long ldo) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
    const float *w0 = w, *w1 = w + si, *w2 = w + 2 * si, *w3 = w + 3 * si, *w4 = w + 4 * si, *w5 = w + 5 * si;
    for (long j = 0; j < J; j++) {
        const __m256 v0 = _mm256_loadu_ps(v + j * ldv);
        const long o = j * sj;
        a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(w0 + o), v0, a0);
        a1 = _mm256_fmadd_ps(_mm256_broadcast_ss(w1 + o), v0, a1);
        a2 = _mm256_fmadd_ps(_mm256_broadcast_ss(w2 + o), v0, a2);
        a3 = _mm256_fmadd_ps(_mm256_broadcast_ss(w3 + o), v0, a3);
        a4 = _mm256_fmadd_ps(_mm256_broadcast_ss(w4 + o), v0, a4);
        a5 = _mm256_fmadd_ps(_mm256_broadcast_ss(w5 + o), v0, a5);
    }
    _mm256_storeu_ps(out, a0); _mm256_storeu_ps(out + ldo, a1); _mm256_storeu_ps(out + 2 * ldo, a2);
    _mm256_storeu_ps(out + 3 * ldo, a3); _mm256_storeu_ps(out + 4 * ldo, a4); _mm256_storeu_ps(out + 5 * ldo, a5);
}

// `rows` (< 6) output columns × 8 lanes: the last columns when the output width is not a multiple of 6.
AVX2 static void tileRx8(int rows, const float *w, long si, long sj, const float *v, long ldv, long J, float *out, long ldo) {
    __m256 acc[6];
    for (int i = 0; i < rows; i++) acc[i] = _mm256_setzero_ps();
    for (long j = 0; j < J; j++) {
        const __m256 v0 = _mm256_loadu_ps(v + j * ldv);
        const float *wj = w + j * sj;
        for (int i = 0; i < rows; i++) acc[i] = _mm256_fmadd_ps(_mm256_broadcast_ss(wj + i * si), v0, acc[i]);
    }
    for (int i = 0; i < rows; i++) _mm256_storeu_ps(out + i * ldo, acc[i]);
}

AVX2 static void gemmRows(long n, long outDim, long k, const float *x, long ldx, const float *w, long si, long sj,
                          int accumulate, float *c, long ldc, float *work) {
    const long np = (n + 7) & ~7L;
    float *xt = work;                       // [k][np]
    float *tile = work + k * np;            // [12][np]: one column block's results, then scattered into c
    for (long t = 0; t < n; t++)
        for (long j = 0; j < k; j++) xt[j * np + t] = x[t * ldx + j];
    if (np > n)
        for (long j = 0; j < k; j++) memset(xt + j * np + n, 0, (size_t)(np - n) * sizeof(float));
    for (long o0 = 0; o0 < outDim; o0 += 6) {
        const int rows = outDim - o0 < 6 ? (int)(outDim - o0) : 6;
        const float *wo = w + o0 * si;
        long t0 = 0;
        if (rows == 6) {
            for (; t0 + 16 <= np; t0 += 16) tile6x16(wo, si, sj, xt + t0, np, k, tile + t0, np, 0);
            for (; t0 < np; t0 += 8) tile6x8(wo, si, sj, xt + t0, np, k, tile + t0, np);
        } else {
            for (; t0 < np; t0 += 8) tileRx8(rows, wo, si, sj, xt + t0, np, k, tile + t0, np);
        }
        for (long t = 0; t < n; t++) {
            float *ct = c + t * ldc + o0;
            if (accumulate) for (int i = 0; i < rows; i++) ct[i] += tile[i * np + t];
            else for (int i = 0; i < rows; i++) ct[i] = tile[i * np + t];
        }
    }
}

// c = x · w with w [k, out] read row by row: broadcast x[t, j] (R ≤ 6 rows), multiply into
// w[j, o0 ..< o0 + 16] (two vectors), accumulate in c. Reading w's columns (the nt kernel with
// strides) walks a 3 KB stride through memory and ran at 29 GFLOP/s with the weight coming from
// memory; reading rows in blocks of NN_KB keeps the weight stream sequential.
#define NN_KB 128
AVX2 static inline __attribute__((always_inline)) void nnTile(const int R, const float *x, long ldx, const float *w, long ldw,
                                                             long J, float *c, long ldc, int load) {
    __m256 a0[6], a1[6];
    for (int i = 0; i < R; i++) {
        a0[i] = load ? _mm256_loadu_ps(c + i * ldc) : _mm256_setzero_ps();
        a1[i] = load ? _mm256_loadu_ps(c + i * ldc + 8) : _mm256_setzero_ps();
    }
    for (long j = 0; j < J; j++) {
        const __m256 w0 = _mm256_loadu_ps(w + j * ldw), w1 = _mm256_loadu_ps(w + j * ldw + 8);
        for (int i = 0; i < R; i++) {
            const __m256 b = _mm256_broadcast_ss(x + i * ldx + j);
            a0[i] = _mm256_fmadd_ps(b, w0, a0[i]);
            a1[i] = _mm256_fmadd_ps(b, w1, a1[i]);
        }
    }
    for (int i = 0; i < R; i++) { _mm256_storeu_ps(c + i * ldc, a0[i]); _mm256_storeu_ps(c + i * ldc + 8, a1[i]); }
}

AVX2 static void nnRows(int R, const float *x, long ldx, const float *w, long ldw, long J, float *c, long ldc, int load) {
    switch (R) {
    case 6: tile6x16(x, ldx, 1, w, ldw, J, c, ldc, load); break;   // the generic form's arrays stayed on the stack at R = 6
    case 5: nnTile(5, x, ldx, w, ldw, J, c, ldc, load); break;
    case 4: nnTile(4, x, ldx, w, ldw, J, c, ldc, load); break;
    case 3: nnTile(3, x, ldx, w, ldw, J, c, ldc, load); break;
    case 2: nnTile(2, x, ldx, w, ldw, J, c, ldc, load); break;
    default: nnTile(1, x, ldx, w, ldw, J, c, ldc, load); break;
    }
}

AVX2 static void gemmRowsNN(long n, long outDim, long k, const float *x, long ldx, const float *w, long ldw,
                            int accumulate, float *c, long ldc, float *panel) {
    // Rows j0 ..< j0 + NN_KB of w are copied, in one sequential sweep, into `panel` as
    // [outDim / 16][NN_KB][16] (≤ 512 KB, stays in L2): each [NN_KB, 16] slice is then contiguous
    // and used from L1 by every group of 6 rows. Reading w's column blocks in place walked it at a
    // stride of ldw (33–47 against 70–75 GFLOP/s measured; at a power-of-two stride the block's
    // lines also all fall in the same L1 sets).
    const long o16 = outDim & ~15L, blocks = o16 / 16;
    for (long j0 = 0; j0 < k; j0 += NN_KB) {
        const long J = k - j0 < NN_KB ? k - j0 : NN_KB;
        const int load = accumulate || j0 > 0;
        const long bs = J * 16 + 16;   // a block's floats, padded off a power of two (writes 4 KB apart shared L1 sets)
        for (long j = 0; j < J; j++) {
            const float *src = w + (j0 + j) * ldw;
            for (long b = 0; b < blocks; b++) {
                _mm256_storeu_ps(panel + b * bs + j * 16, _mm256_loadu_ps(src + b * 16));
                _mm256_storeu_ps(panel + b * bs + j * 16 + 8, _mm256_loadu_ps(src + b * 16 + 8));
            }
        }
        for (long b = 0; b < blocks; b++)
            for (long t0 = 0; t0 < n; t0 += 6) {
                const int R = n - t0 < 6 ? (int)(n - t0) : 6;
                nnRows(R, x + t0 * ldx + j0, ldx, panel + b * bs, 16, J, c + t0 * ldc + b * 16, ldc, load);
            }
        for (long t = 0; t < n; t++)           // the last outDim % 16 columns
            for (long o = o16; o < outDim; o++) {
                float s = load ? c[t * ldc + o] : 0;
                for (long j = j0; j < j0 + J; j++) s = fmaf(x[t * ldx + j], w[j * ldw + o], s);
                c[t * ldc + o] = s;
            }
    }
}

void smolk_sgemm_rows_nt_avx2(long n, long outDim, long k, const float *x, long ldx, const float *w, long ldw,
                              int accumulate, float *c, long ldc, float *work) {
    gemmRows(n, outDim, k, x, ldx, w, ldw, 1, accumulate, c, ldc, work);
}

void smolk_sgemm_rows_nn_avx2(long n, long outDim, long k, const float *x, long ldx, const float *w, long ldw,
                              int accumulate, float *c, long ldc, float *work) {
    gemmRowsNN(n, outDim, k, x, ldx, w, ldw, accumulate, c, ldc, work);
}

#else
void smolk_sgemm_rows_nt_avx2(long n, long outDim, long k, const float *x, long ldx, const float *w, long ldw,
                              int accumulate, float *c, long ldc, float *work) {
    (void)n; (void)outDim; (void)k; (void)x; (void)ldx; (void)w; (void)ldw; (void)accumulate; (void)c; (void)ldc; (void)work;
}
void smolk_sgemm_rows_nn_avx2(long n, long outDim, long k, const float *x, long ldx, const float *w, long ldw,
                              int accumulate, float *c, long ldc, float *work) {
    (void)n; (void)outDim; (void)k; (void)x; (void)ldx; (void)w; (void)ldw; (void)accumulate; (void)c; (void)ldc; (void)work;
}
#endif
