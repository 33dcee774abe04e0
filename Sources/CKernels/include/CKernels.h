#ifndef TESSERA_CKERNELS_H
#define TESSERA_CKERNELS_H
/* Numeric kernels of the engine: the BF16 and FP32 GEMMs and BF16 conversions. */
#include <stddef.h>
#include <stdint.h>

/* 1 when this CPU executes AVX-512 BF16 (vdpbf16ps, vcvtneps2bf16). */
int tessera_has_avx512bf16(void);

/* C[t*ldc + n] (+)= sum_k A[t*lda + k] * W[n*ldw + k] for t < T, n < N, k < K: A (activations)
   and W (weights, a linear layer's [out][in] layout) are BF16 bit patterns, C is FP32 and
   accumulation is FP32; accumulate != 0 adds to C instead of overwriting it. Uses the
   AVX-512 BF16 kernel when the CPU has it. Returns 0, or -1 when the per-thread packing
   buffers cannot be allocated. Safe to call from several threads on disjoint C. */
int tessera_gemm_bf16_nt(const uint16_t *A, size_t lda, const uint16_t *W, size_t ldw, float *C, size_t ldc,
                         size_t T, size_t N, size_t K, int accumulate);

/* The same product in plain C (sums in K order), used where AVX-512 BF16 is missing. */
void tessera_gemm_bf16_nt_portable(const uint16_t *A, size_t lda, const uint16_t *W, size_t ldw, float *C, size_t ldc,
                                   size_t T, size_t N, size_t K, int accumulate);

/* C[t*ldc + n] (+)= sum_k A[t*lda + k] * W[n*ldw + k] in FP32: A FP32 activations, W FP32
   weights or (w_is_bf16 != 0) BF16 weights widened exactly. Uses the AVX-512 kernel when the
   CPU has it. Returns 0, or -1 when the packing buffers cannot be allocated. */
int tessera_gemm_f32_nt(const float *A, size_t lda, const void *W, int w_is_bf16, size_t ldw, float *C, size_t ldc,
                        size_t T, size_t N, size_t K, int accumulate);

/* The same FP32 product in plain C (sums in K order). */
void tessera_gemm_f32_nt_portable(const float *A, size_t lda, const void *W, int w_is_bf16, size_t ldw, float *C, size_t ldc,
                                  size_t T, size_t N, size_t K, int accumulate);

/* C[t*ldc + n] (+)= sum_k A[t*lda + k] * W[n*ldw + k] in FP32 through OpenBLAS's SGEMM,
   single-threaded, loaded on first use (the portable product when OpenBLAS is missing). */
void tessera_blas_sgemm_nt(const float *A, size_t lda, const float *W, size_t ldw, float *C, size_t ldc,
                           size_t T, size_t N, size_t K, int accumulate);

/* Several threads sharing one packing of the activations (each then computes its own output
   columns): bytes of the packed form of T rows of K inputs (BF16 when bf16 != 0, else FP32);
   rows t0..t1 packed by one call (t0 a multiple of tessera_gemm_pack_granule(), t1 too or T);
   then C (+)= A W^T from it, as tessera_gemm_bf16_nt (bf16 != 0) or tessera_gemm_f32_nt would,
   each result rounded to the nearest BF16 (kept in FP32) when round_output != 0. A is still
   passed: the portable path and an odd K's last input read it. */
size_t tessera_gemm_packed_bytes(size_t T, size_t K, int bf16);
size_t tessera_gemm_pack_granule(void);
void tessera_gemm_pack_activations(const void *A, size_t lda, size_t T, size_t K, int bf16, size_t t0, size_t t1, void *packed);
int tessera_gemm_packed_nt(const void *A, size_t lda, int bf16, const void *packed, const void *W, int w_is_bf16, size_t ldw,
                           float *C, size_t ldc, size_t T, size_t N, size_t K, int accumulate, int round_output);

/* Widens n BF16 bit patterns to floats (exactly). */
void tessera_bf16_to_f32(const uint16_t *src, float *dst, size_t n);

/* Rounds n floats to BF16 (nearest, ties to even; NaN stays NaN) into dst. */
void tessera_f32_to_bf16(const float *src, uint16_t *dst, size_t n);

/* Element-wise steps over FP32 rows; `round` != 0 rounds each result to the nearest BF16 (kept
   in FP32), as a BF16 model stores its activations. */
void tessera_round_bf16(float *x, size_t n);
/* out = a + b. */
void tessera_add(const float *a, const float *b, float *out, size_t n, int round);
/* y[r][i] += bias[i]. */
void tessera_add_bias(float *y, size_t rows, size_t width, const float *bias);
/* LayerNorm (rms = 0: (x - mean) / sqrt(var + eps) * gamma + beta) or RMSNorm (rms != 0:
   x / sqrt(mean(x^2) + eps) * gamma + beta), statistics in FP32; beta may be NULL. With
   out_bf16 != NULL the results go there as BF16 bits (rounded) instead of to `out`. */
void tessera_norm(const float *x, size_t rows, size_t width, const float *gamma, const float *beta, float eps,
                  int rms, int round, float *out, uint16_t *out_bf16);

enum { TESSERA_SQUARED_RELU = 0, TESSERA_RELU = 1, TESSERA_GELU = 2, TESSERA_SILU = 3 };
/* out[t][j] = act(y[t][j]) (times y[t][f + j] when gated, y rows being [gate; up] of 2f); with
   out_bf16 != NULL the results go there as BF16 bits (rounded) instead. */
void tessera_activation(int kind, const float *y, size_t rows, size_t f, int gated, int round, float *out, uint16_t *out_bf16);
/* Attention of one query row: out[0..d) = softmax(scale * q . keys[s]) . values over the first
   `visible` positions (keys and values rows `ld` floats apart); `scores` is scratch of `visible`. */
void tessera_attend_row(const float *q, const float *keys, const float *values, size_t ld, size_t visible, size_t d,
                        float scale, int round, float *scores, float *out);
/* Softmax of scale * row[0..visible) in place; row[visible..total) set to 0. */
void tessera_causal_softmax(float *row, size_t visible, size_t total, float scale, int round);
#endif
