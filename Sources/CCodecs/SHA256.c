#include "CCodecs.h"
#include <string.h>

/* SHA-256 with the x86 SHA extensions, able to run two independent messages through one core
   at once (their rounds interleave: about 1.4x one message's throughput), and a portable
   version for other CPUs. */

static const uint32_t sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_blocks_portable(uint32_t h[8], const uint8_t *p, size_t blocks) {
    for (; blocks > 0; blocks--, p += 64) {
        uint32_t w[64];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
        for (int i = 16; i < 64; i++) {
            uint32_t s0 = ROTR(w[i - 15], 7) ^ ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3);
            uint32_t s1 = ROTR(w[i - 2], 17) ^ ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
        for (int i = 0; i < 64; i++) {
            uint32_t t1 = k + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) + ((e & f) ^ (~e & g)) + sha256_k[i] + w[i];
            uint32_t t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
            k = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
        }
        h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
    }
}

#if defined(__x86_64__) && defined(__clang__)
#include <immintrin.h>
#define TESSERA_SHANI __attribute__((target("sha,sse4.1,ssse3")))

/* The state as the SHA instructions keep it: ABEF and CDGH. */
TESSERA_SHANI static inline void shani_load(const uint32_t h[8], __m128i *abef, __m128i *cdgh) {
    __m128i t = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[0]), 0xB1);
    __m128i u = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[4]), 0x1B);
    *abef = _mm_alignr_epi8(t, u, 8);
    *cdgh = _mm_blend_epi16(u, t, 0xF0);
}

TESSERA_SHANI static inline void shani_store(uint32_t h[8], __m128i abef, __m128i cdgh) {
    __m128i t = _mm_shuffle_epi32(abef, 0x1B);
    __m128i u = _mm_shuffle_epi32(cdgh, 0xB1);
    _mm_storeu_si128((__m128i *)&h[0], _mm_blend_epi16(t, u, 0xF0));
    _mm_storeu_si128((__m128i *)&h[4], _mm_alignr_epi8(u, t, 8));
}

#define SHANI_ROUNDS(m, i, a, b) do { \
        __m128i msg_ = _mm_add_epi32(m, _mm_loadu_si128((const __m128i *)&sha256_k[4 * (i)])); \
        b = _mm_sha256rnds2_epu32(b, a, msg_); \
        a = _mm_sha256rnds2_epu32(a, b, _mm_shuffle_epi32(msg_, 0x0E)); \
    } while (0)
#define SHANI_SCHEDULE(x0, x1, x2, x3) \
    x0 = _mm_sha256msg2_epu32(_mm_add_epi32(_mm_sha256msg1_epu32(x0, x1), _mm_alignr_epi8(x3, x2, 4)), x3)

TESSERA_SHANI static inline void shani_block(__m128i *abef, __m128i *cdgh, const uint8_t *p) {
    const __m128i swap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i a = *abef, b = *cdgh;
    __m128i m0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 0)), swap);
    __m128i m1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16)), swap);
    __m128i m2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 32)), swap);
    __m128i m3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 48)), swap);
    SHANI_ROUNDS(m0, 0, a, b); SHANI_ROUNDS(m1, 1, a, b); SHANI_ROUNDS(m2, 2, a, b); SHANI_ROUNDS(m3, 3, a, b);
    for (int i = 4; i < 16; i += 4) {
        SHANI_SCHEDULE(m0, m1, m2, m3); SHANI_ROUNDS(m0, i, a, b);
        SHANI_SCHEDULE(m1, m2, m3, m0); SHANI_ROUNDS(m1, i + 1, a, b);
        SHANI_SCHEDULE(m2, m3, m0, m1); SHANI_ROUNDS(m2, i + 2, a, b);
        SHANI_SCHEDULE(m3, m0, m1, m2); SHANI_ROUNDS(m3, i + 3, a, b);
    }
    *abef = _mm_add_epi32(a, *abef);
    *cdgh = _mm_add_epi32(b, *cdgh);
}

TESSERA_SHANI static void sha256_blocks_shani(uint32_t h[8], const uint8_t *p, size_t blocks) {
    __m128i abef, cdgh;
    shani_load(h, &abef, &cdgh);
    for (; blocks > 0; blocks--, p += 64) shani_block(&abef, &cdgh, p);
    shani_store(h, abef, cdgh);
}

TESSERA_SHANI static void sha256_blocks2_shani(uint32_t h[8], const uint8_t *p, uint32_t g[8], const uint8_t *q, size_t blocks) {
    __m128i abef, cdgh, abef2, cdgh2;
    shani_load(h, &abef, &cdgh);
    shani_load(g, &abef2, &cdgh2);
    for (; blocks > 0; blocks--, p += 64, q += 64) {
        shani_block(&abef, &cdgh, p);
        shani_block(&abef2, &cdgh2, q);
    }
    shani_store(h, abef, cdgh);
    shani_store(g, abef2, cdgh2);
}

static int has_shani(void) {
    static int known = -1;   /* a benign race: every thread computes the same value */
    if (known < 0) known = __builtin_cpu_supports("sha") && __builtin_cpu_supports("sse4.1");
    return known;
}
#endif

static void sha256_blocks(uint32_t h[8], const uint8_t *p, size_t blocks) {
#if defined(__x86_64__) && defined(__clang__)
    if (has_shani()) { sha256_blocks_shani(h, p, blocks); return; }
#endif
    sha256_blocks_portable(h, p, blocks);
}

void tessera_sha256_init(tessera_sha256 *s) {
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, iv, sizeof iv);
    s->buffered = 0;
    s->total = 0;
}

/* Completes a partly filled block from *p; returns the bytes taken. */
static size_t sha256_fill(tessera_sha256 *s, const uint8_t *p, size_t n) {
    if (s->buffered == 0) return 0;
    size_t take = 64 - s->buffered < n ? 64 - s->buffered : n;
    memcpy(s->buffer + s->buffered, p, take);
    s->buffered += take;
    if (s->buffered == 64) { sha256_blocks(s->h, s->buffer, 1); s->buffered = 0; }
    return take;
}

static void sha256_keep(tessera_sha256 *s, const uint8_t *p, size_t n) {
    memcpy(s->buffer, p, n);
    s->buffered = n;
}

void tessera_sha256_update(tessera_sha256 *s, const void *data, size_t n) {
    const uint8_t *p = data;
    s->total += n;
    size_t t = sha256_fill(s, p, n);
    p += t; n -= t;
    if (n == 0) return;
    sha256_blocks(s->h, p, n / 64);
    sha256_keep(s, p + n / 64 * 64, n % 64);
}

void tessera_sha256_update2(tessera_sha256 *s, const void *data, size_t n, tessera_sha256 *r, const void *data2, size_t n2) {
    const uint8_t *p = data, *q = data2;
    s->total += n; r->total += n2;
    size_t t = sha256_fill(s, p, n), u = sha256_fill(r, q, n2);
    p += t; n -= t; q += u; n2 -= u;
    size_t both = (n < n2 ? n : n2) / 64;
#if defined(__x86_64__) && defined(__clang__)
    if (both > 0 && has_shani()) {
        sha256_blocks2_shani(s->h, p, r->h, q, both);
        p += both * 64; n -= both * 64; q += both * 64; n2 -= both * 64;
    }
#endif
    if (n > 0) { sha256_blocks(s->h, p, n / 64); sha256_keep(s, p + n / 64 * 64, n % 64); }
    if (n2 > 0) { sha256_blocks(r->h, q, n2 / 64); sha256_keep(r, q + n2 / 64 * 64, n2 % 64); }
}

void tessera_sha256_final(tessera_sha256 *s, uint8_t out[32]) {
    uint64_t bits = s->total * 8;
    uint8_t pad[72] = {0x80};
    size_t padding = (s->buffered < 56 ? 56 : 120) - s->buffered;
    for (int i = 0; i < 8; i++) pad[padding + i] = (uint8_t)(bits >> (56 - 8 * i));
    uint64_t total = s->total;
    tessera_sha256_update(s, pad, padding + 8);
    s->total = total;
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(s->h[i] >> 24); out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s->h[i] >> 8); out[4 * i + 3] = (uint8_t)s->h[i];
    }
}
