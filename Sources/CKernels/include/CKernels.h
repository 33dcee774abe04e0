#ifndef TESSERA_CKERNELS_H
#define TESSERA_CKERNELS_H
/* Numeric kernels of the engine: the BF16 and FP32 GEMMs, element-wise steps, BF16 conversion.
 *
 * Every kernel takes the kernel path (`isa`, one of TESSERA_ISA_*) it runs on; a path this CPU
 * lacks runs the portable code instead (callers refuse such paths first, so an instruction the
 * CPU lacks is never executed). Within one path every result is a function of its own inputs:
 * each output element's sums run in one fixed order, whatever the batch, blocking or threads. */
#include <stddef.h>
#include <stdint.h>

/* The kernel paths, from the plainest to the fastest. */
enum { TESSERA_ISA_PORTABLE = 0, TESSERA_ISA_AVX2 = 1, TESSERA_ISA_AVX512 = 2, TESSERA_ISA_AVX512BF16 = 3, TESSERA_ISA_AMX = 4 };
/* 1 when this CPU runs the path: avx2 needs AVX2 + FMA, avx512 AVX-512 F/BW/VL (and AVX2), avx512bf16 also AVX512-BF16,
   amx also AMX-TILE and AMX-BF16 with the kernel's permission for tile data (asked for once, for the process).
   TESSERA_ISA_LIMIT=NAME (read once) hides the paths above NAME, as on a smaller CPU. */
int tessera_isa_supported(int isa);
/* The fastest path this CPU runs. */
int tessera_isa_best(void);
/* "portable", "avx2", "avx512", "avx512bf16", "amx". */
const char *tessera_isa_name(int isa);
/* The CPU's model name (cpuid brand string, else /proc/cpuinfo), NUL-terminated in out[size]. */
void tessera_cpu_model(char *out, size_t size);

/* C[t*ldc + n] (+)= sum_k A[t*lda + k] * W[n*ldw + k] for t < T, n < N, k < K: A (activations)
   and W (weights, a linear layer's [out][in] layout) are BF16 bit patterns, C is FP32 and
   accumulation is FP32 (tdpbf16ps tiles on amx, vdpbf16ps on avx512bf16, FMAs of the widened values elsewhere);
   accumulate != 0 adds to C. Returns 0, or -1 when the per-thread buffers cannot be allocated.
   Safe to call from several threads on disjoint C. */
int tessera_gemm_bf16_nt(int isa, const uint16_t *A, size_t lda, const uint16_t *W, size_t ldw, float *C, size_t ldc,
                         size_t T, size_t N, size_t K, int accumulate);

/* The same in FP32: A FP32 activations, W FP32 weights or (w_is_bf16 != 0) BF16 weights widened
   exactly. FP32 products give the same bits on every path (one FMA per input, in the same order). */
int tessera_gemm_f32_nt(int isa, const float *A, size_t lda, const void *W, int w_is_bf16, size_t ldw, float *C, size_t ldc,
                        size_t T, size_t N, size_t K, int accumulate);

/* Several threads sharing one packing of the activations (each then computes its own output
   columns): bytes of the packed form of T rows of K inputs (BF16 when bf16 != 0, else FP32);
   rows t0..t1 packed by one call (t0 a multiple of tessera_gemm_pack_granule(), t1 too or T);
   then C (+)= A W^T from it, as tessera_gemm_bf16_nt (bf16 != 0) or tessera_gemm_f32_nt would,
   each result rounded to the nearest BF16 (kept in FP32) when round_output != 0. A is still
   passed: an odd K's last input of a BF16 pair product reads it. */
size_t tessera_gemm_packed_bytes(int isa, size_t T, size_t K, int bf16);
size_t tessera_gemm_pack_granule(void);
/* Output columns (a multiple of 64) of the widest piece of a product worth handing one thread:
   each block of packed activations passes over a group of this many columns before the next
   block, so a narrower piece reads the activations again for fewer columns. */
size_t tessera_gemm_piece_columns(int isa, size_t K, int bf16);
/* Packed elements per slice of a path's sums (part of its summation order: within a slice in
   input order from zero, slices then added in order). Paths with the same slice length give the
   same FP32 product bits. */
size_t tessera_gemm_slice_length(int isa);
void tessera_gemm_pack_activations(int isa, const void *A, size_t lda, size_t T, size_t K, int bf16, size_t t0, size_t t1, void *packed);
int tessera_gemm_packed_nt(int isa, const void *A, size_t lda, int bf16, const void *packed, const void *W, int w_is_bf16, size_t ldw,
                           float *C, size_t ldc, size_t T, size_t N, size_t K, int accumulate, int round_output);
/* What the store of tessera_gemm_packed_epilogue_nt makes of each result v, rounded to BF16, while
   a piece of results is in cache, instead of writing C: */
enum {
    TESSERA_EPILOGUE_ACTIVATION = 1, /* bits[t * ld + n] = BF16 bits of an MLP activation of v (tessera_activation's, round, out_bf16) */
    TESSERA_EPILOGUE_RESIDUAL = 2    /* sum[t * ld + n] = residual[t * ld + n] + v rounded to BF16 (tessera_add's, round) */
};
typedef struct {
    int kind;       /* TESSERA_EPILOGUE_* */
    int activation; /* TESSERA_SQUARED_RELU, .. (not gated), for TESSERA_EPILOGUE_ACTIVATION */
    uint16_t *bits;
    const float *residual;
    float *sum;
    size_t ld; /* the row stride of bits, or of residual and sum */
} tessera_gemm_epilogue;
/* tessera_gemm_packed_nt with round_output, then the epilogue. C is read when accumulate, and
   written only as scratch (an odd K of a BF16 pair product). */
int tessera_gemm_packed_epilogue_nt(int isa, const void *A, size_t lda, int bf16, const void *packed, const void *W, int w_is_bf16,
                                    size_t ldw, float *C, size_t ldc, size_t T, size_t N, size_t K, int accumulate,
                                    const tessera_gemm_epilogue *epilogue);

/* Weights packed once for several products (attention's keys and values, which every block of
   queries reads): the bytes of the packing of W's N rows of K inputs (BF16 products when bf16 != 0,
   else FP32 with w_is_bf16 as in tessera_gemm_f32_nt), and the packing itself. Then C (+)= A W^T
   for the first N rows and first K inputs of a packing of packed_k >= K inputs, with the bits of
   tessera_gemm_bf16_nt (bf16 != 0) or tessera_gemm_f32_nt, rounded to BF16 (kept in FP32) when
   round_output, as tessera_gemm_packed_nt rounds; W is still read for an odd K's last BF16 input.
   Returns 0, -1 when K > packed_k or the per-thread buffers cannot be allocated. */
size_t tessera_gemm_packed_weights_bytes(int isa, size_t N, size_t K, int bf16);
void tessera_gemm_pack_weights(int isa, const void *W, size_t ldw, int w_is_bf16, size_t N, size_t K, int bf16, void *packed);
int tessera_gemm_prepacked_nt(int isa, int bf16, const void *A, size_t lda, const void *W, int w_is_bf16, size_t ldw, const void *packed_w,
                              size_t packed_k, float *C, size_t ldc, size_t T, size_t N, size_t K, int accumulate, int round_output);

/* Widens n BF16 bit patterns to floats (exactly). */
void tessera_bf16_to_f32(const uint16_t *src, float *dst, size_t n);

/* Rounds n floats to BF16 (nearest, ties to even; NaN stays NaN) into dst: the same bits on every path. */
void tessera_f32_to_bf16(int isa, const float *src, uint16_t *dst, size_t n);

/* Element-wise steps over FP32 rows; `round` != 0 rounds each result to the nearest BF16 (kept
   in FP32), as a BF16 model stores its activations. */
void tessera_round_bf16(int isa, float *x, size_t n);
/* out = a + b. */
void tessera_add(int isa, const float *a, const float *b, float *out, size_t n, int round);
/* y[r][i] += bias[i]. */
void tessera_add_bias(int isa, float *y, size_t rows, size_t width, const float *bias);
/* LayerNorm (rms = 0: (x - mean) / sqrt(var + eps) * gamma + beta) or RMSNorm (rms != 0:
   x / sqrt(mean(x^2) + eps) * gamma + beta), statistics in FP32; beta may be NULL. With
   out_bf16 != NULL the results go there as BF16 bits (rounded) instead of to `out`. */
void tessera_norm(int isa, const float *x, size_t rows, size_t width, const float *gamma, const float *beta, float eps,
                  int rms, int round, float *out, uint16_t *out_bf16);

enum { TESSERA_SQUARED_RELU = 0, TESSERA_RELU = 1, TESSERA_GELU = 2, TESSERA_SILU = 3 };
/* out[t][j] = act(y[t][j]) (times y[t][f + j] when gated, y rows being [gate; up] of 2f); with
   out_bf16 != NULL the results go there as BF16 bits (rounded) instead. */
void tessera_activation(int isa, int kind, const float *y, size_t rows, size_t f, int gated, int round, float *out, uint16_t *out_bf16);
/* Softmax of scale * row[0..visible) in place; row[visible..total) set to 0. With out_bf16 !=
   NULL the results go there as BF16 bits (rounded; zeros up to total) instead, the row being
   left as scratch. */
void tessera_causal_softmax(int isa, float *row, size_t visible, size_t total, float scale, int round, uint16_t *out_bf16);

/* The geometry of one sequence's attention step: `tokens` new positions after `start` earlier
   ones, `groups` query groups of `heads_per_group` heads, `head_dim` values per head, RoPE on the
   pairs (i, i + rotary_half) of each query and key head (rotary_half 0: no RoPE), results
   rounded to BF16 when `round` (a BF16 run). */
typedef struct {
    size_t tokens, start, groups, heads_per_group, head_dim, rotary_half;
    int round;
} tessera_attention_shape;
/* qkv rows t0..t1 (each [group][q heads of the group, k, v][head_dim]) -> queries at
   [group][token][head of the group][head_dim], keys and values at [start + token][group][head_dim],
   RoPE applied to queries and keys: BF16 bits when shape.round (a BF16 run, whose qkv values are
   BF16 values), else floats. cos_table and sin_table are [token][rotary_half]. */
void tessera_attention_split(int isa, tessera_attention_shape shape, const float *qkv, size_t t0, size_t t1,
                             const float *cos_table, const float *sin_table, void *q, void *keys, void *values);
/* Group g's values of positions 0..total ([position][groups][d]) as [d][total]: BF16 bits in and
   out when bits != 0, else floats. */
void tessera_attention_values_t(int isa, const void *values, size_t total, size_t groups, size_t d, size_t g, int bits, void *out);
#endif
