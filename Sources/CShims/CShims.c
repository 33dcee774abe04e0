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

int tessera_start_writeback(hid_t file) {
    int *fd = NULL;
    if (H5Fget_vfd_handle(file, H5P_DEFAULT, (void **)&fd) < 0 || !fd) return -1;
    return sync_file_range(*fd, 0, 0, SYNC_FILE_RANGE_WRITE);
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

int tessera_write_string_attr(hid_t obj, const char *name, const char *value) {
    if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a < 0 ? -1 : (H5Awrite(a, t, &value) < 0 ? -1 : 0);
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

void tessera_unshuffle_from(const uint8_t *restrict src, size_t n, size_t at, size_t k, size_t es, uint8_t *restrict dst) {
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

void tessera_shuffle(const uint8_t *restrict src, uint8_t *restrict dst, size_t n, size_t es) {
    tessera_shuffle_into(src, n, es, dst, n, 0);
}

void tessera_unshuffle(const uint8_t *restrict src, uint8_t *restrict dst, size_t n, size_t es) {
    tessera_unshuffle_from(src, n, 0, n, es, dst);
}

/* Level 1 for weights: every block parsed as literals only (no match search). */
static size_t literals_only(void *state, ZSTD_Sequence *out, size_t capacity, const void *src, size_t size,
                            const void *dict, size_t dictSize, int level, size_t windowSize) {
    (void)state; (void)src; (void)dict; (void)dictSize; (void)level; (void)windowSize;
    if (capacity < 1) return ZSTD_SEQUENCE_PRODUCER_ERROR;
    out[0].offset = 0; out[0].litLength = (unsigned)size; out[0].matchLength = 0; out[0].rep = 0;
    return 1;
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
