#define _GNU_SOURCE
#include "CShims.h"
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#define TESSERA_ZSTD_FILTER 32015

static size_t zstd_filter(unsigned int flags, size_t cd_nelmts, const unsigned int cd_values[],
                          size_t nbytes, size_t *buf_size, void **buf) {
    if (flags & H5Z_FLAG_REVERSE) {
        unsigned long long n = ZSTD_getFrameContentSize(*buf, nbytes);
        if (n == ZSTD_CONTENTSIZE_UNKNOWN || n == ZSTD_CONTENTSIZE_ERROR) return 0;
        void *out = malloc(n ? (size_t)n : 1);
        if (!out) return 0;
        size_t r = ZSTD_decompress(out, (size_t)n, *buf, nbytes);
        if (ZSTD_isError(r) || r != n) { free(out); return 0; }
        free(*buf); *buf = out; *buf_size = (size_t)n;
        return r;
    } else {
        int level = cd_nelmts > 0 ? (int)cd_values[0] : 3;
        if (level < ZSTD_minCLevel()) level = ZSTD_minCLevel();
        if (level > ZSTD_maxCLevel()) level = ZSTD_maxCLevel();
        size_t bound = ZSTD_compressBound(nbytes);
        void *out = malloc(bound);
        if (!out) return 0;
        size_t r = ZSTD_compress(out, bound, *buf, nbytes, level);
        if (ZSTD_isError(r)) { free(out); return 0; }
        free(*buf); *buf = out; *buf_size = bound;
        return r;
    }
}

int tessera_register_zstd(void) {
    if (H5Zfilter_avail(TESSERA_ZSTD_FILTER) > 0) return 0;
    static const H5Z_class2_t cls = {
        H5Z_CLASS_T_VERS, TESSERA_ZSTD_FILTER, 1, 1, "Zstandard compression (tessera)", NULL, NULL, zstd_filter,
    };
    return H5Zregister(&cls) < 0 ? -1 : 0;
}

typedef struct { char *buf; size_t len, cap; } path_list;

static herr_t visit(hid_t g, const char *name, const H5L_info_t *info, void *op) {
    (void)info;
    H5O_info_t oi;
    if (H5Oget_info_by_name(g, name, &oi, H5P_DEFAULT) < 0) return -1;
    if (oi.type != H5O_TYPE_DATASET) return 0;
    path_list *l = op;
    size_t n = strlen(name);
    if (l->len + n + 2 > l->cap) {
        size_t cap = (l->cap + n + 2) * 2;
        char *b = realloc(l->buf, cap);
        if (!b) return -1;
        l->buf = b; l->cap = cap;
    }
    memcpy(l->buf + l->len, name, n);
    l->len += n;
    l->buf[l->len++] = '\n';
    l->buf[l->len] = 0;
    return 0;
}

char *tessera_list_datasets(hid_t loc) {
    path_list l = { calloc(1, 1), 0, 1 };
    if (!l.buf) return NULL;
    if (H5Lvisit(loc, H5_INDEX_NAME, H5_ITER_INC, visit, &l) < 0) { free(l.buf); return NULL; }
    return l.buf;
}

char *tessera_read_string_attr(hid_t obj, const char *name) {
    if (H5Aexists(obj, name) <= 0) return NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return NULL;
    hid_t t = H5Aget_type(a);
    char *result = NULL;
    if (H5Tget_class(t) == H5T_STRING) {
        if (H5Tis_variable_str(t) > 0) {
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, H5T_VARIABLE);
            H5Tset_cset(mt, H5Tget_cset(t));
            char *s = NULL;
            if (H5Aread(a, mt, &s) >= 0 && s) { result = strdup(s); H5free_memory(s); }
            H5Tclose(mt);
        } else {
            size_t n = H5Tget_size(t);
            char *s = calloc(n + 1, 1);
            if (s && H5Aread(a, t, s) >= 0) result = s; else free(s);
        }
    }
    H5Tclose(t);
    H5Aclose(a);
    return result;
}

/* Fixed-length (null-terminated UTF-8), so the text lives in the object header, which the
   1.10 format checksums; variable-length strings live in the global heap, which it does not
   (and libhdf5 1.10 crashes on some damage there). */
int tessera_write_string_attr(hid_t obj, const char *name, const char *value) {
    if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(value) + 1);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a < 0 ? -1 : (H5Awrite(a, t, value) < 0 ? -1 : 0);
    if (a >= 0) H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
    return rc;
}

int tessera_write_int_attr(hid_t obj, const char *name, int64_t value) {
    if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a < 0 ? -1 : (H5Awrite(a, H5T_NATIVE_INT64, &value) < 0 ? -1 : 0);
    if (a >= 0) H5Aclose(a);
    H5Sclose(s);
    return rc;
}

int tessera_read_int_attr(hid_t obj, const char *name, int64_t *value) {
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    int rc = H5Aread(a, H5T_NATIVE_INT64, value) < 0 ? -1 : 0;
    H5Aclose(a);
    return rc;
}

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

/* Level 1 for weights: every block parsed as literals only (no match search). */
static size_t literals_only(void *state, ZSTD_Sequence *out, size_t capacity, const void *src, size_t size,
                            const void *dict, size_t dictSize, int level, size_t windowSize) {
    (void)state; (void)src; (void)dict; (void)dictSize; (void)level; (void)windowSize;
    if (capacity < 1) return ZSTD_SEQUENCE_PRODUCER_ERROR;
    out[0].offset = 0; out[0].litLength = (unsigned)size; out[0].matchLength = 0; out[0].rep = 0;
    return 1;
}

int tessera_zstd_ignore_checksum(ZSTD_DCtx *ctx, int ignore) {
    size_t r = ZSTD_DCtx_setParameter(ctx, ZSTD_d_forceIgnoreChecksum, ignore ? ZSTD_d_ignoreChecksum : ZSTD_d_validateChecksum);
    return ZSTD_isError(r) ? -1 : 0;
}

int tessera_zstd_literals_only(ZSTD_CCtx *ctx) {
#if ZSTD_VERSION_NUMBER >= 10504
    ZSTD_registerSequenceProducer(ctx, NULL, literals_only);
    return 1;
#else
    (void)ctx;
    return 0;
#endif
}

#if defined(__GLIBC__)
#include <malloc.h>
#endif

void tessera_keep_large_allocations_in_heap(void) {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 0x7fffffff);
#endif
}

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

/* An HDF5 file driver for writing stores: data reach the file with O_DIRECT (no page-cache
   copy; on virtual machines, filling fresh page-cache pages costs more than the compression
   around it). Writes at or after the staged window's start are gathered in an aligned
   buffer and written out in whole 4 KiB pages; the few metadata writes HDF5 makes below it
   go through an ordinary descriptor (the two never touch the same page). Reads see both.
   Files are plain HDF5 files: any driver opens them. Without O_DIRECT support (tmpfs) every
   write goes through the ordinary descriptor. */

#include <sys/stat.h>
#include <unistd.h>
#include <errno.h>

#define DIRECT_PAGE ((size_t)4096)
#define DIRECT_STAGE ((size_t)16 << 20)

typedef struct {
    H5FD_t pub;
    int fd;          /* O_DIRECT, or -1 */
    int bfd;         /* ordinary */
    haddr_t eoa, eof;
    uint8_t *stage;  /* DIRECT_STAGE bytes, page aligned: the file from s0 on */
    haddr_t s0;      /* a page boundary */
    size_t slen;     /* staged bytes (gaps zero) */
    dev_t dev;
    ino_t ino;
} direct_file;

static int write_all(int fd, const uint8_t *p, size_t n, off_t at) {
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, at);
        if (w < 0) { if (errno == EINTR) continue; return -1; }
        p += w; n -= (size_t)w; at += w;
    }
    return 0;
}

/* Writes the staged whole pages before `upto` (everything, the last page padded, if upto is
   HADDR_UNDEF) and slides the window past them. */
static int direct_flush_stage(direct_file *f, haddr_t upto) {
    size_t n;
    if (upto == HADDR_UNDEF) n = (f->slen + DIRECT_PAGE - 1) / DIRECT_PAGE * DIRECT_PAGE;
    else n = upto <= f->s0 ? 0 : ((size_t)(upto - f->s0) < f->slen ? (size_t)(upto - f->s0) : f->slen) / DIRECT_PAGE * DIRECT_PAGE;
    if (n == 0) return 0;
    if (n > f->slen) memset(f->stage + f->slen, 0, n - f->slen);
    if (write_all(f->fd, f->stage, n, (off_t)f->s0) < 0) return -1;
    if (upto == HADDR_UNDEF) return 0;   /* the window stays: later writes may extend its last page */
    memmove(f->stage, f->stage + n, f->slen - n);
    f->s0 += n;
    f->slen -= n;
    return 0;
}

static H5FD_t *direct_open(const char *name, unsigned flags, hid_t fapl, haddr_t maxaddr) {
    (void)fapl;
    int o = (flags & H5F_ACC_RDWR) ? O_RDWR : O_RDONLY;
    if (flags & H5F_ACC_TRUNC) o |= O_TRUNC;
    if (flags & H5F_ACC_CREAT) o |= O_CREAT;
    int bfd = open(name, o | O_CLOEXEC, 0666);
    if (bfd < 0) return NULL;
    direct_file *f = calloc(1, sizeof *f);
    if (!f) { close(bfd); return NULL; }
    f->bfd = bfd;
    f->fd = (flags & H5F_ACC_RDWR) ? open(name, (o & ~(O_TRUNC | O_CREAT)) | O_DIRECT | O_CLOEXEC) : -1;
    if (f->fd >= 0 && posix_memalign((void **)&f->stage, DIRECT_PAGE, DIRECT_STAGE) != 0) {
        close(f->fd); f->fd = -1; f->stage = NULL;
    }
    struct stat st;
    if (fstat(bfd, &st) < 0) { if (f->fd >= 0) close(f->fd); free(f->stage); close(bfd); free(f); return NULL; }
    f->eof = (haddr_t)st.st_size;
    f->s0 = (f->eof + DIRECT_PAGE - 1) / DIRECT_PAGE * DIRECT_PAGE;
    if (f->s0 > f->eof && f->fd >= 0) {
        /* An existing file's last partial page is staged, so that page is written by one path only. */
        f->s0 -= DIRECT_PAGE;
        f->slen = (size_t)(f->eof - f->s0);
        if (pread(bfd, f->stage, f->slen, (off_t)f->s0) != (ssize_t)f->slen) {
            close(f->fd); free(f->stage); close(bfd); free(f); return NULL;
        }
    }
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    (void)maxaddr;
    return (H5FD_t *)f;
}

static herr_t direct_close(H5FD_t *file) {
    direct_file *f = (direct_file *)file;
    int rc = 0;
    if (f->fd >= 0) {
        if (direct_flush_stage(f, HADDR_UNDEF) < 0) rc = -1;
        if (ftruncate(f->bfd, (off_t)f->eof) < 0) rc = -1;
        close(f->fd);
    }
    if (close(f->bfd) < 0) rc = -1;
    free(f->stage);
    free(f);
    return rc;
}

static int direct_cmp(const H5FD_t *a, const H5FD_t *b) {
    const direct_file *f = (const direct_file *)a, *g = (const direct_file *)b;
    if (f->dev != g->dev) return f->dev < g->dev ? -1 : 1;
    if (f->ino != g->ino) return f->ino < g->ino ? -1 : 1;
    return 0;
}

static herr_t direct_query(const H5FD_t *file, unsigned long *flags) {
    (void)file;
    *flags = H5FD_FEAT_AGGREGATE_METADATA | H5FD_FEAT_ACCUMULATE_METADATA | H5FD_FEAT_DATA_SIEVE |
             H5FD_FEAT_AGGREGATE_SMALLDATA | H5FD_FEAT_DEFAULT_VFD_COMPATIBLE;
    return 0;
}

static haddr_t direct_get_eoa(const H5FD_t *file, H5FD_mem_t type) { (void)type; return ((const direct_file *)file)->eoa; }
static herr_t direct_set_eoa(H5FD_t *file, H5FD_mem_t type, haddr_t addr) { (void)type; ((direct_file *)file)->eoa = addr; return 0; }
static haddr_t direct_get_eof(const H5FD_t *file, H5FD_mem_t type) { (void)type; return ((const direct_file *)file)->eof; }

static herr_t direct_get_handle(H5FD_t *file, hid_t fapl, void **handle) {
    (void)fapl;
    *handle = &((direct_file *)file)->bfd;
    return 0;
}

static herr_t direct_read(H5FD_t *file, H5FD_mem_t type, hid_t dxpl, haddr_t addr, size_t size, void *buf) {
    (void)type; (void)dxpl;
    direct_file *f = (direct_file *)file;
    uint8_t *p = buf;
    haddr_t split = f->fd >= 0 ? f->s0 : HADDR_MAX;
    while (size > 0 && addr < split) {   /* below the window: the file */
        size_t n = split - addr < size ? (size_t)(split - addr) : size;
        ssize_t r = pread(f->bfd, p, n, (off_t)addr);
        if (r < 0) { if (errno == EINTR) continue; return -1; }
        if (r == 0) { memset(p, 0, n); r = (ssize_t)n; }   /* beyond the end: zeros */
        p += r; addr += (haddr_t)r; size -= (size_t)r;
    }
    if (size > 0) {   /* in or after the window */
        size_t off = (size_t)(addr - f->s0);
        size_t have = off < f->slen ? f->slen - off : 0;
        if (have > size) have = size;
        memcpy(p, f->stage + off, have);
        memset(p + have, 0, size - have);
    }
    return 0;
}

static herr_t direct_write(H5FD_t *file, H5FD_mem_t type, hid_t dxpl, haddr_t addr, size_t size, const void *buf) {
    (void)type; (void)dxpl;
    direct_file *f = (direct_file *)file;
    const uint8_t *p = buf;
    if (addr + size > f->eof) f->eof = addr + size;
    if (f->fd < 0) return write_all(f->bfd, p, size, (off_t)addr);
    if (addr < f->s0) {   /* below the window: the ordinary descriptor */
        size_t n = f->s0 - addr < size ? (size_t)(f->s0 - addr) : size;
        if (write_all(f->bfd, p, n, (off_t)addr) < 0) return -1;
        p += n; addr += n; size -= n;
    }
    while (size > 0) {
        if (addr - f->s0 >= DIRECT_STAGE || addr - f->s0 + (size < DIRECT_PAGE ? size : DIRECT_PAGE) > DIRECT_STAGE) {
            /* No room: write out the whole pages before this write (or everything staged). */
            haddr_t before = f->s0;
            if (direct_flush_stage(f, addr) < 0) return -1;
            if (f->s0 == before || addr - f->s0 >= DIRECT_STAGE) {
                /* Far beyond what is staged: the window restarts at this write's page. */
                if (direct_flush_stage(f, HADDR_UNDEF) < 0) return -1;
                f->s0 = addr / DIRECT_PAGE * DIRECT_PAGE;
                memset(f->stage, 0, (size_t)(addr - f->s0));
                f->slen = (size_t)(addr - f->s0);
            }
        }
        size_t off = (size_t)(addr - f->s0);
        size_t n = DIRECT_STAGE - off < size ? DIRECT_STAGE - off : size;
        if (off > f->slen) memset(f->stage + f->slen, 0, off - f->slen);
        memcpy(f->stage + off, p, n);
        if (off + n > f->slen) f->slen = off + n;
        p += n; addr += n; size -= n;
    }
    return 0;
}

static herr_t direct_flush(H5FD_t *file, hid_t dxpl, hbool_t closing) {
    (void)dxpl; (void)closing;
    direct_file *f = (direct_file *)file;
    return f->fd >= 0 ? direct_flush_stage(f, HADDR_UNDEF) : 0;
}

static herr_t direct_truncate(H5FD_t *file, hid_t dxpl, hbool_t closing) {
    (void)dxpl; (void)closing;
    direct_file *f = (direct_file *)file;
    if (f->eoa == f->eof) return 0;
    if (f->fd >= 0 && direct_flush_stage(f, HADDR_UNDEF) < 0) return -1;
    if (ftruncate(f->bfd, (off_t)f->eoa) < 0) return -1;
    f->eof = f->eoa;
    if (f->fd >= 0 && f->s0 + f->slen > f->eoa) f->slen = f->eoa > f->s0 ? (size_t)(f->eoa - f->s0) : 0;
    return 0;
}

hid_t tessera_direct_fapl(void) {
    static hid_t driver = -1;
    static const H5FD_class_t cls = {
        "tessera-direct", HADDR_MAX, H5F_CLOSE_WEAK, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL, 0, NULL, NULL,
        direct_open, direct_close, direct_cmp, direct_query, NULL, NULL, NULL,
        direct_get_eoa, direct_set_eoa, direct_get_eof, direct_get_handle, direct_read, direct_write,
        direct_flush, direct_truncate, NULL, NULL, H5FD_FLMAP_DICHOTOMY,
    };
    if (driver < 0) driver = H5FDregister(&cls);
    if (driver < 0) return -1;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return -1;
    if (H5Pset_driver(fapl, driver, NULL) < 0) { H5Pclose(fapl); return -1; }
    return fapl;
}
