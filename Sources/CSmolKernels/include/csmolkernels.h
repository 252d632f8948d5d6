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

#endif
