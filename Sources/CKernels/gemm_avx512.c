/* The AVX-512 classes: 16-wide FP32 FMAs (AVX-512 F/BW/VL), and with AVX512-BF16 the BF16
 * product as vdpbf16ps over pairs of BF16 inputs. Weights are packed with 16 x 16 transposes;
 * BF16 weights of an FP32 product are widened while packing (a shift per lane). The 6 x 64
 * micro-kernel keeps 24 accumulators in registers; every output element's sum has the driver's
 * fixed order (gemm_internal.h). */
#include "gemm_internal.h"
#if defined(__x86_64__)
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))
#define AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

/* 16 x 16 transpose of 32-bit elements (rows in, columns out). */
AVX512 static inline void transpose16(__m512i r[16]) {
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    /* Now r[4g + c], 128-bit lane L, holds rows 4g..4g+3 of column 4L + c. */
    for (int g = 0; g < 16; g += 8)
        for (int c = 0; c < 4; c++) {
            t[g + c] = _mm512_shuffle_i32x4(r[g + c], r[g + 4 + c], 0x88);     /* lanes 0, 2 */
            t[g + 4 + c] = _mm512_shuffle_i32x4(r[g + c], r[g + 4 + c], 0xdd); /* lanes 1, 3 */
        }
    for (int c = 0; c < 4; c++) {
        r[c] = _mm512_shuffle_i32x4(t[c], t[8 + c], 0x88);
        r[c + 8] = _mm512_shuffle_i32x4(t[c], t[8 + c], 0xdd);
        r[c + 4] = _mm512_shuffle_i32x4(t[4 + c], t[12 + c], 0x88);
        r[c + 12] = _mm512_shuffle_i32x4(t[4 + c], t[12 + c], 0xdd);
    }
}

/* Packed elements e0..e0+n (n <= 16) of a row, zero beyond n. */
AVX512 static inline __m512i load_row(enum kind kind, const void *row, size_t e0, size_t n) {
    __mmask16 m = (__mmask16)((1u << n) - 1);
    switch (kind) {
    case BF16_PAIRS: return _mm512_maskz_loadu_epi32(m, (const uint16_t *)row + 2 * e0);
    case F32_FROM_F32: return _mm512_maskz_loadu_epi32(m, (const float *)row + e0);
    default: return _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, (const uint16_t *)row + e0)), 16);
    }
}

AVX512 void tessera_avx512_pack_weights(enum kind kind, const void *W, size_t ldw, size_t rows, size_t e0, size_t kp, uint32_t *panel) {
    PACK_WEIGHTS_BODY(16, __m512i, load_row, _mm512_setzero_si512(), transpose16, _mm512_store_si512, NR, 16)
}

AVX512 void tessera_avx512_pack_weight_strips(enum kind kind, const void *W, size_t ldw, size_t rows, size_t e0, size_t kp, uint32_t *panel) {
    PACK_WEIGHTS_BODY(16, __m512i, load_row, _mm512_setzero_si512(), transpose16, _mm512_store_si512, 16, KP_AVX512 * 16)
}

/* The 6 x 64 micro-kernel body; STEP(acc, x, b) is one multiply-accumulate of 16 lanes; packed
   element p of the panel's 16-column strip j at panel + p * ROW + j * STRIP (PACK_WEIGHTS_BODY's). */
#define MICRO(mr, STEP, ROW, STRIP)                                                                       \
    do {                                                                                                  \
        __m512 c[MR][4];                                                                                  \
        for (int i = 0; i < MR; i++)                                                                      \
            for (int j = 0; j < 4; j++) c[i][j] = _mm512_setzero_ps();                                    \
        for (size_t p = 0; p < kp; p++) {                                                                 \
            __m512 b[4];                                                                                  \
            for (int j = 0; j < 4; j++) b[j] = _mm512_load_ps((const float *)panel + p * (ROW) + (STRIP) * j); \
            for (int i = 0; i < (mr); i++) {                                                              \
                __m512 x = _mm512_castsi512_ps(_mm512_set1_epi32((int)a[i * KP_AVX512 + p]));                    \
                for (int j = 0; j < 4; j++) c[i][j] = STEP(c[i][j], x, b[j]);                             \
            }                                                                                             \
        }                                                                                                 \
        for (int i = 0; i < (mr); i++)                                                                    \
            for (int j = 0; j < 4; j++) {                                                                 \
                float *o = acc + i * NR + 16 * j;                                                         \
                _mm512_store_ps(o, load ? _mm512_add_ps(c[i][j], _mm512_load_ps(o)) : c[i][j]);           \
            }                                                                                             \
    } while (0)

#define FMA_STEP(c, x, b) _mm512_fmadd_ps(x, b, c)
#define DPBF16_STEP(c, x, b) _mm512_dpbf16_ps(c, (__m512bh)(x), (__m512bh)(b))

#define MR_CASES(call)                                                                                    \
    switch (mr) {                                                                                         \
    case 6: call(6); break;                                                                               \
    case 5: call(5); break;                                                                               \
    case 4: call(4); break;                                                                               \
    case 3: call(3); break;                                                                               \
    case 2: call(2); break;                                                                               \
    default: call(1); break;                                                                              \
    }

AVX512 static void tile_fma(enum kind kind, size_t mr, const uint32_t *a, const uint32_t *panel, size_t kp, float *acc, int load) {
    (void)kind;
#define FMA_CASE(n) MICRO(n, FMA_STEP, NR, 16)
    MR_CASES(FMA_CASE)
}

AVX512BF16 void tessera_avx512bf16_tile(enum kind kind, size_t mr, const uint32_t *a, const uint32_t *panel, size_t kp, float *acc, int load) {
    if (kind != BF16_PAIRS) { tile_fma(kind, mr, a, panel, kp, acc, load); return; }
#define DP_CASE(n) MICRO(n, DPBF16_STEP, NR, 16)
    MR_CASES(DP_CASE)
}

AVX512BF16 void tessera_avx512bf16_tile_strips(size_t mr, const uint32_t *a, const uint32_t *panel, size_t kp, float *acc, int load) {
#define DP_STRIPS_CASE(n) MICRO(n, DPBF16_STEP, 16, KP_AVX512 * 16)
    MR_CASES(DP_STRIPS_CASE)
}

/* Slices of 128 packed elements (a 32 KiB panel slice, which Zen 5's 48 KiB L1 holds with a tile),
   blocks of at most 768 tokens within 4 MiB of packed activations (measured on Zen 5). */
const struct gemm_ops tessera_gemm_ops_avx512 = {KP_AVX512, 4u << 20, 768, tessera_avx512_pack_weights, tile_fma, NULL, NULL};
const struct gemm_ops tessera_gemm_ops_avx512bf16 = {KP_AVX512, 4u << 20, 768, tessera_avx512_pack_weights, tessera_avx512bf16_tile, NULL, NULL};
#endif
