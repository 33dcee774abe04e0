/* HDF5's byte shuffle and its inverse, whole chunks or segment by segment. */
#include "CCodecs.h"
#include <string.h>

/* HDF5 byte shuffle: byte b of element i of a chunk of n elements goes to b*n + i. The
   kernels below move k elements that sit at element `at` of such a chunk, so a chunk can be
   shuffled (or unshuffled) segment by segment straight from (or into) a strided tensor. */

#if defined(__x86_64__) && defined(__clang__)
#include <immintrin.h>
#define TESSERA_VBMI __attribute__((target("avx512f,avx512bw,avx512vbmi")))

/* 2-byte elements, 64 per step: even bytes to lo, odd bytes to hi. */
TESSERA_VBMI static size_t shuffle2_vbmi(const uint8_t *src, uint8_t *lo, uint8_t *hi, size_t k) {
    uint8_t e[64], o[64];
    for (int j = 0; j < 64; j++) { e[j] = (uint8_t)(2 * j); o[j] = (uint8_t)(2 * j + 1); }
    const __m512i even = _mm512_loadu_si512(e), odd = _mm512_loadu_si512(o);
    size_t i = 0;
    for (; i + 64 <= k; i += 64) {
        __m512i a = _mm512_loadu_si512(src + 2 * i), b = _mm512_loadu_si512(src + 2 * i + 64);
        _mm512_storeu_si512(lo + i, _mm512_permutex2var_epi8(a, even, b));
        _mm512_storeu_si512(hi + i, _mm512_permutex2var_epi8(a, odd, b));
    }
    return i;
}

/* The inverse: lo and hi bytes interleaved back into 2-byte elements, 64 per step. */
TESSERA_VBMI static size_t unshuffle2_vbmi(const uint8_t *lo, const uint8_t *hi, uint8_t *dst, size_t k) {
    uint8_t a[64], b[64];
    for (int j = 0; j < 32; j++) {
        a[2 * j] = (uint8_t)j; a[2 * j + 1] = (uint8_t)(64 + j);
        b[2 * j] = (uint8_t)(32 + j); b[2 * j + 1] = (uint8_t)(96 + j);
    }
    const __m512i first = _mm512_loadu_si512(a), second = _mm512_loadu_si512(b);
    size_t i = 0;
    for (; i + 64 <= k; i += 64) {
        __m512i l = _mm512_loadu_si512(lo + i), h = _mm512_loadu_si512(hi + i);
        _mm512_storeu_si512(dst + 2 * i, _mm512_permutex2var_epi8(l, first, h));
        _mm512_storeu_si512(dst + 2 * i + 64, _mm512_permutex2var_epi8(l, second, h));
    }
    return i;
}

static int has_vbmi(void) {
    static int known = -1;   /* a benign race: every thread computes the same value */
    if (known < 0) known = __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512bw");
    return known;
}
#endif

void tessera_shuffle_into(const uint8_t *restrict src, size_t k, size_t es, uint8_t *restrict dst, size_t n, size_t at) {
    if (es == 2) {
        uint8_t *lo = dst + at, *hi = dst + n + at;
        size_t i = 0;
#if defined(__x86_64__) && defined(__clang__)
        if (has_vbmi()) i = shuffle2_vbmi(src, lo, hi, k);
#endif
        for (; i < k; i++) { lo[i] = src[2 * i]; hi[i] = src[2 * i + 1]; }
    } else {
        for (size_t b = 0; b < es; b++) {
            uint8_t *d = dst + b * n + at;
            for (size_t i = 0; i < k; i++) d[i] = src[i * es + b];
        }
    }
}

/* Part of an unshuffle: elements at..at+k of the n-element shuffled chunk src, as k whole
   elements at dst. */
static void unshuffle_from(const uint8_t *restrict src, size_t n, size_t at, size_t k, size_t es, uint8_t *restrict dst) {
    if (es == 2) {
        const uint8_t *lo = src + at, *hi = src + n + at;
        size_t i = 0;
#if defined(__x86_64__) && defined(__clang__)
        if (has_vbmi()) i = unshuffle2_vbmi(lo, hi, dst, k);
#endif
        for (; i < k; i++) { dst[2 * i] = lo[i]; dst[2 * i + 1] = hi[i]; }
    } else {
        for (size_t b = 0; b < es; b++) {
            const uint8_t *s = src + b * n + at;
            for (size_t i = 0; i < k; i++) dst[i * es + b] = s[i];
        }
    }
}

void tessera_unshuffle_rows(const uint8_t *src, size_t n, size_t at, size_t src_stride, size_t rows, size_t k,
                            size_t es, int shuffled, uint8_t *dst, size_t dst_stride) {
    for (size_t r = 0; r < rows; r++, at += src_stride, dst += dst_stride * es) {
        if (shuffled) unshuffle_from(src, n, at, k, es, dst);
        else memcpy(dst, src + at * es, k * es);
    }
}

void tessera_shuffle(const uint8_t *restrict src, uint8_t *restrict dst, size_t n, size_t es) {
    tessera_shuffle_into(src, n, es, dst, n, 0);
}

void tessera_unshuffle(const uint8_t *restrict src, uint8_t *restrict dst, size_t n, size_t es) {
    unshuffle_from(src, n, 0, n, es, dst);
}
