#include "CKernels.h"
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

int tessera_has_avx512bf16(void) {
#if defined(__x86_64__)
    static int has = -1;
    if (has < 0) {
        __builtin_cpu_init();
        has = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512f");
    }
    return has;
#else
    return 0;
#endif
}

static uint16_t round_bf16(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    if ((b & 0x7fffffff) > 0x7f800000) return (uint16_t)((b >> 16) | 0x40); /* NaN stays a quiet NaN */
    b += 0x7fff + ((b >> 16) & 1);
    return (uint16_t)(b >> 16);
}

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bf16"))) static void f32_to_bf16_avx512(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm256_storeu_si256((__m256i *)(dst + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i)));
    for (; i < n; i++) dst[i] = round_bf16(src[i]);
}
#endif

void tessera_bf16_to_f32(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t b = (uint32_t)src[i] << 16;
        memcpy(&dst[i], &b, 4);
    }
}

void tessera_f32_to_bf16(const float *src, uint16_t *dst, size_t n) {
#if defined(__x86_64__)
    if (tessera_has_avx512bf16()) { f32_to_bf16_avx512(src, dst, n); return; }
#endif
    for (size_t i = 0; i < n; i++) dst[i] = round_bf16(src[i]);
}
