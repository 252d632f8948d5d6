// Fused dequantize-and-dot kernels for x86-64 AVX2 + FMA + F16C, chosen at run time (see
// SmolKernels/QuantDot.swift for why they exist and for the portable Swift twins).
#ifndef CSMOLKERNELS_H
#define CSMOLKERNELS_H

/// 1 when this CPU runs the *_avx2 functions (AVX2, FMA and F16C), else 0. Always 0 off x86-64.
int smolk_has_avx2(void);

/// Σ w·x over `blocks` blocks of one encoded row (Q8_0/Q5_0: 32 elements a block, Q4_K/Q6_K: 256).
float smolk_q8_0_dot_avx2(const void *w, const float *x, long blocks);
float smolk_q5_0_dot_avx2(const void *w, const float *x, long blocks);
float smolk_q4_K_dot_avx2(const void *w, const float *x, long blocks);
float smolk_q6_K_dot_avx2(const void *w, const float *x, long blocks);

/// Few-row sgemm with the weight read in place (gemm_rows.c), for one expert's token group:
///   nt: c[n, out] (+)= x[n, k] · wᵀ, w [out, k] (row stride ldw)
///   nn: c[n, out] (+)= x[n, k] · w,  w [k, out] (row stride ldw)
/// accumulate: 0 overwrites c, 1 adds to it. work: at least smolk_sgemm_rows_work(n, out, k) floats.
void smolk_sgemm_rows_nt_avx2(long n, long outDim, long k, const float *x, long ldx, const float *w, long ldw,
                              int accumulate, float *c, long ldc, float *work);
void smolk_sgemm_rows_nn_avx2(long n, long outDim, long k, const float *x, long ldx, const float *w, long ldw,
                              int accumulate, float *c, long ldc, float *work);
static inline long smolk_sgemm_rows_work(long n, long outDim, long k) {
    long np = (n + 7) & ~7L, nt = k * np + 12 * np, nn = (128 * 16 + 16) * (outDim / 16);   // gemm_rows.c's NN_KB, padded blocks
    return nt > nn ? nt : nn;
}

#endif
