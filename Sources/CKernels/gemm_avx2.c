/* The AVX2 + FMA class: 8-wide FP32 FMAs. BF16 weights (and BF16 activations) are widened
 * while packing, a shift per lane, so they are read at half the bytes of FP32 with no separate
 * widening pass. The micro-kernel computes a 6 x 64 tile as four 6 x 16 strips (12 accumulators
 * each); every output element's sum has the driver's fixed order (gemm_internal.h). */
#include "gemm_internal.h"
#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#define AVX2 __attribute__((target("avx2,fma")))
#define KP_AVX2 64

/* Packed elements e0..e0+n (n <= 8) of a row as 32-bit lanes, zero beyond n. */
AVX2 static inline __m256 load8(enum kind kind, const void *row, size_t e0, size_t n) {
    if (n == 8) {
        if (kind == F32_FROM_F32) return _mm256_loadu_ps((const float *)row + e0);
        __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + e0)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
    }
    uint32_t v[8] = {0};
    for (size_t i = 0; i < n; i++) {
        if (kind == F32_FROM_F32) memcpy(&v[i], (const float *)row + e0 + i, 4);
        else v[i] = (uint32_t)((const uint16_t *)row)[e0 + i] << 16;
    }
    return _mm256_loadu_ps((const float *)v);
}

/* 8 x 8 transpose: r[i] lane j -> r[j] lane i. */
AVX2 static inline void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

#define STORE8(address, v) _mm256_store_ps((float *)(address), v)

AVX2 static void pack_weights(enum kind kind, const void *W, size_t ldw, size_t rows, size_t e0, size_t kp, uint32_t *panel) {
    PACK_WEIGHTS_BODY(8, __m256, load8, _mm256_setzero_ps(), transpose8, STORE8, NR, 8)
}

/* One 6 x 16 strip of the tile (columns j0..j0+16), mr rows. */
AVX2 __attribute__((always_inline)) static inline void
strip(int mr, const uint32_t *a, const uint32_t *panel, size_t kp, float *acc, int load, size_t j0) {
    __m256 c[MR][2];
    for (int i = 0; i < MR; i++) c[i][0] = c[i][1] = _mm256_setzero_ps();
    /* Unrolled by 4: the loop's own increments and branch cost Zen 3 about a fifth of the FMA
       rate (measured in L1: 70 -> 83 GFLOP/s on one core). Each accumulator's order is unchanged. */
#pragma clang loop unroll_count(4)
    for (size_t p = 0; p < kp; p++) {
        __m256 b0 = _mm256_load_ps((const float *)panel + p * NR + j0), b1 = _mm256_load_ps((const float *)panel + p * NR + j0 + 8);
        for (int i = 0; i < mr; i++) {
            __m256 x = _mm256_broadcast_ss((const float *)a + i * KP_AVX2 + p);
            c[i][0] = _mm256_fmadd_ps(x, b0, c[i][0]);
            c[i][1] = _mm256_fmadd_ps(x, b1, c[i][1]);
        }
    }
    for (int i = 0; i < mr; i++)
        for (int h = 0; h < 2; h++) {
            float *o = acc + i * NR + j0 + 8 * h;
            _mm256_store_ps(o, load ? _mm256_add_ps(c[i][h], _mm256_load_ps(o)) : c[i][h]);
        }
}

AVX2 __attribute__((always_inline)) static inline void micro(int mr, const uint32_t *a, const uint32_t *panel, size_t kp, float *acc, int load) {
    for (size_t j0 = 0; j0 < NR; j0 += 16) strip(mr, a, panel, kp, acc, load, j0);
}

AVX2 static void tile(enum kind kind, size_t mr, const uint32_t *a, const uint32_t *panel, size_t kp, float *acc, int load) {
    (void)kind; /* every AVX2 product is FP32 FMAs */
    switch (mr) {
    case 6: micro(6, a, panel, kp, acc, load); break;
    case 5: micro(5, a, panel, kp, acc, load); break;
    case 4: micro(4, a, panel, kp, acc, load); break;
    case 3: micro(3, a, panel, kp, acc, load); break;
    case 2: micro(2, a, panel, kp, acc, load); break;
    default: micro(1, a, panel, kp, acc, load); break;
    }
}

/* A block's rows (tiles back to back, `kp` apart) through the tile kernel, for the driver's
   passes of token sub-blocks over groups of packed panels (gemm.c). */
AVX2 static void block(enum kind kind, size_t rows, const uint32_t *a, const uint32_t *panel, size_t kp, float *acc, int load) {
    for (size_t i = 0; i < rows; i += MR) tile(kind, rows - i < MR ? rows - i : MR, a + i * KP_AVX2, panel, kp, acc + i * NR, load);
}

/* Slices of 64 elements (a 16 KiB panel slice: Zen 3's 32 KiB L1 holds it with the tiles passing
   over it; 128 filled L1 and ran a quarter slower), and blocks of up to MC_MAX tokens with no
   byte budget: a block's panels are packed once, a group at a time, and its token sub-blocks
   pass over them (gemm.c), so the accumulators stay in L2. Measured on Zen 3 with
   Tools/gemm_peak.c's shapes: 95-104 -> 121-128 GFLOP/s with the slice length, then 116-121 ->
   125-133 without the 8 MiB budget (which had allowed 252 tokens at K = 8192, where packing took
   13% of the product); then one core +3-10% with the sub-blocks over packed groups (2,048-token
   products, old and new interleaved: the kernel had run at 87 GFLOP/s in products against 97
   with its data in cache). */
const struct gemm_ops tessera_gemm_ops_avx2 = {KP_AVX2, SIZE_MAX, MC_MAX, pack_weights, tile, block, NULL};
#endif
