/* Matrix products C (+)= A W^T for a linear layer: A [T][K] activations, W [N][K] weights in
 * the checkpoint's row-major [out][in] layout (read in place), C [T][N] FP32.
 *
 * AVX-512 path (BLIS-style, one core per call): weights are packed on the fly into panels of
 * NR = 64 output columns x KP packed elements, stored [KP][64] so one 512-bit load gives 16
 * columns; a packed element is 32 bits: a pair of BF16 inputs (BF16 product, vdpbf16ps) or one
 * FP32 input (FP32 product, vfmadd231ps; BF16 weights are widened while packing). Activations
 * are copied into tiles of MR = 6 tokens, [6][KP], and broadcast. The 6 x 64 micro-kernel
 * keeps 24 accumulators in registers. A block of up to MC tokens' packed activations (all of
 * K) is reused by every weight panel; a panel's KP-slice (32 KiB) stays in L1 while the
 * block's tiles pass over it, and the next panel's weights are prefetched meanwhile (its rows
 * lie far apart, which hardware prefetchers do not follow). */
#include "CKernels.h"
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

static float bf16_to_f32(uint16_t v) { uint32_t b = (uint32_t)v << 16; float f; memcpy(&f, &b, 4); return f; }

void tessera_gemm_bf16_nt_portable(const uint16_t *A, size_t lda, const uint16_t *W, size_t ldw, float *C, size_t ldc,
                                   size_t T, size_t N, size_t K, int accumulate) {
    for (size_t t = 0; t < T; t++)
        for (size_t n = 0; n < N; n++) {
            float s = 0;
            for (size_t k = 0; k < K; k++) s += bf16_to_f32(A[t * lda + k]) * bf16_to_f32(W[n * ldw + k]);
            C[t * ldc + n] = accumulate ? C[t * ldc + n] + s : s;
        }
}

void tessera_gemm_f32_nt_portable(const float *A, size_t lda, const void *W, int w_is_bf16, size_t ldw, float *C, size_t ldc,
                                  size_t T, size_t N, size_t K, int accumulate) {
    for (size_t t = 0; t < T; t++)
        for (size_t n = 0; n < N; n++) {
            float s = 0;
            for (size_t k = 0; k < K; k++) {
                float w = w_is_bf16 ? bf16_to_f32(((const uint16_t *)W)[n * ldw + k]) : ((const float *)W)[n * ldw + k];
                s += A[t * lda + k] * w;
            }
            C[t * ldc + n] = accumulate ? C[t * ldc + n] + s : s;
        }
}

#if defined(__x86_64__)
#define NR 64               /* output columns per weight panel */
#define MR 6                /* tokens per activation tile */
#define KP 128              /* packed elements per panel slice: 64 x 128 x 4 bytes = 32 KiB */
#define MC_MAX 768          /* tokens per block of packed activations */
/* Bytes of packed activations per block (fewer tokens when K is large); each core packs its own
   copy, and two copies must share L3 with the weights streaming through. */
#define A_BUDGET_BF16 (4u << 20)
#define A_BUDGET_F32 (4u << 20)

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

/* The three forms of a product: what a packed 32-bit element holds and how it is loaded. */
enum kind { BF16_PAIRS, F32_FROM_F32, F32_FROM_BF16 };

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

/* Weight rows 0..rows (rows <= NR) of W (row stride ldw elements), packed elements e0..e0+kp
   -> panel [kp][NR], zero beyond `rows`. */
AVX512 static void
pack_weights(enum kind kind, const void *W, size_t ldw, size_t rows, size_t e0, size_t kp, uint32_t *panel) {
    size_t es = kind == F32_FROM_F32 ? 4 : 2;
    for (size_t p0 = 0; p0 < kp; p0 += 16) {
        size_t np = kp - p0 < 16 ? kp - p0 : 16;
        for (size_t j0 = 0; j0 < NR; j0 += 16) {
            __m512i r[16];
            for (size_t j = 0; j < 16; j++)
                r[j] = j0 + j < rows ? load_row(kind, (const char *)W + (j0 + j) * ldw * es, e0 + p0, np) : _mm512_setzero_si512();
            transpose16(r);
            for (size_t p = 0; p < np; p++) _mm512_store_si512(panel + (p0 + p) * NR + j0, r[p]);
        }
    }
}

/* Activation rows 0..rows (rows <= MR), packed elements e0..e0+kp -> tile [MR][KP] (each row
   copied whole, so the tile's rows never alias in cache as rows of a power-of-two width do),
   zero beyond `rows`. */
static void pack_activations(enum kind kind, const void *A, size_t lda, size_t rows, size_t e0, size_t kp, uint32_t *tile) {
    size_t es = kind == BF16_PAIRS ? 2 : 4; /* bytes per activation; a packed element is 4 bytes either way */
    for (size_t i = 0; i < MR; i++) {
        if (i < rows) memcpy(tile + i * KP, (const char *)A + i * lda * es + e0 * 4, kp * 4);
        else memset(tile + i * KP, 0, kp * 4);
    }
}

AVX512 __attribute__((always_inline)) static inline void
micro(int bf16, int mr, const uint32_t *a, const uint32_t *panel, size_t kp, float *C, size_t ldc, int load, const __mmask16 *masks) {
    __m512 acc[MR][4];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();
    for (size_t p = 0; p < kp; p++) {
        __m512 b[4];
        for (int j = 0; j < 4; j++) b[j] = _mm512_load_ps((const float *)panel + p * NR + 16 * j);
        for (int i = 0; i < mr; i++) {
            __m512 x = _mm512_castsi512_ps(_mm512_set1_epi32((int)a[i * KP + p]));
            for (int j = 0; j < 4; j++)
                acc[i][j] = bf16 ? _mm512_dpbf16_ps(acc[i][j], (__m512bh)x, (__m512bh)b[j]) : _mm512_fmadd_ps(x, b[j], acc[i][j]);
        }
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < 4; j++) {
            if (!masks[j]) continue;
            float *c = C + i * ldc + 16 * j;
            __m512 v = acc[i][j];
            if (load) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(masks[j], c));
            _mm512_mask_storeu_ps(c, masks[j], v);
        }
}

#define MICRO_CASES(bf16)                                                            \
    switch (mr) {                                                                    \
    case 6: micro(bf16, 6, a, panel, kp, C, ldc, load, m); break;                   \
    case 5: micro(bf16, 5, a, panel, kp, C, ldc, load, m); break;                   \
    case 4: micro(bf16, 4, a, panel, kp, C, ldc, load, m); break;                   \
    case 3: micro(bf16, 3, a, panel, kp, C, ldc, load, m); break;                   \
    case 2: micro(bf16, 2, a, panel, kp, C, ldc, load, m); break;                   \
    default: micro(bf16, 1, a, panel, kp, C, ldc, load, m); break;                  \
    }

/* acc[0..mr][0..NR] (+)= tile x panel, acc rows NR floats apart. */
AVX512 static void tile(int bf16, size_t mr, const uint32_t *a, const uint32_t *panel, size_t kp, float *C, int load) {
    static const __mmask16 m[4] = {0xffff, 0xffff, 0xffff, 0xffff};
    const size_t ldc = NR;
    if (bf16) { MICRO_CASES(1) } else { MICRO_CASES(0) }
}

/* C[t][0..cols] = (accumulate ? C[t][0..cols] : 0) + acc[t][0..cols] for `rows` rows, rounded to
   the nearest BF16 (kept in FP32) when `round`. */
AVX512 static void store_block(const float *acc, size_t rows, float *C, size_t ldc, size_t cols, int accumulate, int round) {
    __mmask16 m[4];
    for (int j = 0; j < 4; j++) {
        long r = (long)cols - 16 * j;
        m[j] = r >= 16 ? 0xffff : r <= 0 ? 0 : (__mmask16)((1u << r) - 1);
    }
    for (size_t t = 0; t < rows; t++)
        for (int j = 0; j < 4; j++) {
            if (!m[j]) continue;
            __m512 v = _mm512_load_ps(acc + t * NR + 16 * j);
            float *c = C + t * ldc + 16 * j;
            if (accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m[j], c));
            if (round) v = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(v)), 16));
            _mm512_mask_storeu_ps(c, m[j], v);
        }
}

/* Per-thread packing buffers, grown on demand and kept for the thread's life. */
static _Thread_local uint32_t *packed_a, *packed_w;
static _Thread_local float *block_acc; /* a block's results for one panel, [mc][NR]: C's own rows may alias in cache */
static _Thread_local size_t packed_a_size;

/* Tokens per block for `E` packed elements per row: a block's packed activations stay in cache
   while every weight panel passes over them. */
static size_t block_tokens(enum kind kind, size_t E) {
    size_t mc = (kind == BF16_PAIRS ? A_BUDGET_BF16 : A_BUDGET_F32) / (4 * (E + 1)) / MR * MR;
    return mc < MR ? MR : mc > MC_MAX ? MC_MAX : mc;
}

/* Tokens m0..m1 of C (+)= A W^T over `E` packed elements per row, their packed tiles at `a`
   (tile j of element block kb at a + (kb * kb_stride + j) * KP * MR). */
AVX512 static int block_product(enum kind kind, const uint32_t *a, size_t kb_stride, size_t m0, size_t m1, const void *W, size_t ldw,
                                float *C, size_t ldc, size_t N, size_t E, int accumulate, int round) {
    size_t w_es = kind == F32_FROM_F32 ? 4 : 2, kblocks = (E + KP - 1) / KP, tiles = (m1 - m0 + MR - 1) / MR;
    if (!packed_w) packed_w = aligned_alloc(64, KP * NR * 4);
    if (!block_acc) block_acc = aligned_alloc(64, (MC_MAX + MR) * NR * 4);
    if (!packed_w || !block_acc) return -1;
    for (size_t n0 = 0; n0 < N; n0 += NR) {
        size_t cols = N - n0 < NR ? N - n0 : NR;
        for (size_t kb = 0; kb < kblocks; kb++) {
            size_t e0 = kb * KP, kp = E - e0 < KP ? E - e0 : KP;
            pack_weights(kind, (const char *)W + n0 * ldw * w_es, ldw, cols, e0, kp, packed_w);
            /* Prefetch the next panel slice (same columns, next elements; or the next columns). */
            size_t ne0 = kb + 1 < kblocks ? e0 + KP : 0, nn0 = kb + 1 < kblocks ? n0 : n0 + NR;
            size_t ncols = nn0 < N ? (N - nn0 < NR ? N - nn0 : NR) : 0;
            size_t nkp = E - ne0 < KP ? E - ne0 : KP;
            size_t elem_bytes = kind == F32_FROM_BF16 ? 2 : 4, elems_per_line = 64 / elem_bytes;
            size_t row_lines = (nkp + elems_per_line - 1) / elems_per_line, lines = ncols * row_lines;
            size_t per_tile = (lines + tiles - 1) / tiles, next_line = 0;
            for (size_t j = 0; j < tiles; j++) {
                for (size_t l = 0; l < per_tile && next_line < lines; l++, next_line++)
                    _mm_prefetch((const char *)W + ((nn0 + next_line / row_lines) * ldw) * w_es + ne0 * elem_bytes +
                                     64 * (next_line % row_lines), _MM_HINT_T1);
                size_t t = m0 + j * MR;
                tile(kind == BF16_PAIRS, m1 - t < MR ? m1 - t : MR, a + (kb * kb_stride + j) * KP * MR, packed_w, kp,
                     block_acc + j * MR * NR, kb > 0);
            }
        }
        if (kblocks == 0) memset(block_acc, 0, (m1 - m0) * NR * sizeof(float));
        store_block(block_acc, m1 - m0, C + m0 * ldc + n0, ldc, cols, accumulate, round);
    }
    return 0;
}

/* Packs tiles tile0..tile1 of A's rows (all T of them) as [kb][tile][MR][KP], `tiles` tiles in all. */
static void pack_tiles(enum kind kind, const void *A, size_t lda, size_t T, size_t E, size_t tile0, size_t tile1, size_t tiles,
                       uint32_t *packed) {
    size_t a_es = kind == BF16_PAIRS ? 2 : 4;
    for (size_t kb = 0; kb * KP < E; kb++) {
        size_t e0 = kb * KP, kp = E - e0 < KP ? E - e0 : KP;
        for (size_t j = tile0; j < tile1; j++) {
            size_t t = j * MR;
            pack_activations(kind, (const char *)A + t * lda * a_es, lda, T - t < MR ? T - t : MR, e0, kp,
                             packed + (kb * tiles + j) * KP * MR);
        }
    }
}

/* C (+)= A W^T over `E` packed elements per row, activations packed a block at a time. */
AVX512 static int gemm_avx512(enum kind kind, const void *A, size_t lda, const void *W, size_t ldw, float *C, size_t ldc,
                              size_t T, size_t N, size_t E, int accumulate) {
    size_t mc = block_tokens(kind, E), tiles_max = (mc + MR - 1) / MR;
    size_t need = (E + KP - 1) / KP * tiles_max * KP * MR * 4 + 64;
    if (packed_a_size < need) {
        free(packed_a);
        packed_a = aligned_alloc(64, (need + 63) & ~(size_t)63);
        packed_a_size = packed_a ? need : 0;
    }
    if (!packed_a) return -1;
    size_t a_es = kind == BF16_PAIRS ? 2 : 4;
    for (size_t m0 = 0; m0 < T; m0 += mc) {
        size_t m1 = T - m0 < mc ? T : m0 + mc, tiles = (m1 - m0 + MR - 1) / MR;
        pack_tiles(kind, (const char *)A + m0 * lda * a_es, lda, m1 - m0, E, 0, tiles, tiles, packed_a);
        if (block_product(kind, packed_a, tiles, m0, m1, W, ldw, C, ldc, N, E, accumulate, 0) != 0) return -1;
    }
    return 0;
}

/* C (+)= A W^T with A packed beforehand for all T rows (`tessera_gemm_pack_activations`). */
AVX512 static int gemm_packed_avx512(enum kind kind, const uint32_t *packed, size_t T, const void *W, size_t ldw, float *C, size_t ldc,
                                     size_t N, size_t E, int accumulate, int round) {
    size_t mc = block_tokens(kind, E), tiles = (T + MR - 1) / MR;
    for (size_t m0 = 0; m0 < T; m0 += mc) {
        size_t m1 = T - m0 < mc ? T : m0 + mc;
        if (block_product(kind, packed + (m0 / MR) * KP * MR, tiles, m0, m1, W, ldw, C, ldc, N, E, accumulate, round) != 0) return -1;
    }
    return 0;
}
#endif

/* C += the products of the odd last input of BF16 rows, which no pair holds. */
static void add_odd_input(const void *A, size_t lda, const void *W, size_t ldw, float *C, size_t ldc, size_t T, size_t N, size_t K) {
    const uint16_t *a16 = A, *w16 = W;
    for (size_t t = 0; t < T; t++) {
        float a = bf16_to_f32(a16[t * lda + K - 1]);
        for (size_t n = 0; n < N; n++) C[t * ldc + n] += a * bf16_to_f32(w16[n * ldw + K - 1]);
    }
}

int tessera_gemm_bf16_nt(const uint16_t *A, size_t lda, const uint16_t *W, size_t ldw, float *C, size_t ldc,
                         size_t T, size_t N, size_t K, int accumulate) {
    if (T == 0 || N == 0) return 0;
#if defined(__x86_64__)
    if (tessera_has_avx512bf16()) {
        if (gemm_avx512(BF16_PAIRS, A, lda, W, ldw, C, ldc, T, N, K / 2, accumulate) != 0) return -1;
        if (K & 1) add_odd_input(A, lda, W, ldw, C, ldc, T, N, K);
        return 0;
    }
#endif
    tessera_gemm_bf16_nt_portable(A, lda, W, ldw, C, ldc, T, N, K, accumulate);
    return 0;
}

int tessera_gemm_f32_nt(const float *A, size_t lda, const void *W, int w_is_bf16, size_t ldw, float *C, size_t ldc,
                        size_t T, size_t N, size_t K, int accumulate) {
    if (T == 0 || N == 0) return 0;
#if defined(__x86_64__)
    if (tessera_has_avx512bf16())
        return gemm_avx512(w_is_bf16 ? F32_FROM_BF16 : F32_FROM_F32, A, lda, W, ldw, C, ldc, T, N, K, accumulate);
#endif
    tessera_gemm_f32_nt_portable(A, lda, W, w_is_bf16, ldw, C, ldc, T, N, K, accumulate);
    return 0;
}

size_t tessera_gemm_packed_bytes(size_t T, size_t K, int bf16) {
#if defined(__x86_64__)
    size_t E = bf16 ? K / 2 : K;
    return ((E + KP - 1) / KP) * ((T + MR - 1) / MR) * KP * MR * 4 + 64;
#else
    (void)T; (void)K; (void)bf16;
    return 64;
#endif
}

size_t tessera_gemm_pack_granule(void) {
#if defined(__x86_64__)
    return MR;
#else
    return 1;
#endif
}

void tessera_gemm_pack_activations(const void *A, size_t lda, size_t T, size_t K, int bf16, size_t t0, size_t t1, void *packed) {
#if defined(__x86_64__)
    if (!tessera_has_avx512bf16()) return;
    size_t tiles = (T + MR - 1) / MR;
    pack_tiles(bf16 ? BF16_PAIRS : F32_FROM_F32, A, lda, T, bf16 ? K / 2 : K, t0 / MR, (t1 + MR - 1) / MR, tiles, packed);
#else
    (void)A; (void)lda; (void)T; (void)K; (void)bf16; (void)t0; (void)t1; (void)packed;
#endif
}

int tessera_gemm_packed_nt(const void *A, size_t lda, int bf16, const void *packed, const void *W, int w_is_bf16, size_t ldw,
                           float *C, size_t ldc, size_t T, size_t N, size_t K, int accumulate, int round_output) {
    if (T == 0 || N == 0) return 0;
#if defined(__x86_64__)
    if (tessera_has_avx512bf16()) {
        enum kind kind = bf16 ? BF16_PAIRS : w_is_bf16 ? F32_FROM_BF16 : F32_FROM_F32;
        int odd = bf16 && (K & 1); /* the odd last input is added afterwards, and rounding after it */
        if (gemm_packed_avx512(kind, packed, T, W, ldw, C, ldc, N, bf16 ? K / 2 : K, accumulate, round_output && !odd) != 0) return -1;
        if (odd) add_odd_input(A, lda, W, ldw, C, ldc, T, N, K);
        if (odd && round_output) for (size_t t = 0; t < T; t++) tessera_round_bf16(C + t * ldc, N);
        return 0;
    }
#endif
    (void)packed;
    if (bf16) tessera_gemm_bf16_nt_portable(A, lda, W, ldw, C, ldc, T, N, K, accumulate);
    else tessera_gemm_f32_nt_portable(A, lda, W, w_is_bf16, ldw, C, ldc, T, N, K, accumulate);
    if (round_output) for (size_t t = 0; t < T; t++) tessera_round_bf16(C + t * ldc, N);
    return 0;
}
