#include "CShims.h"
#include <stdlib.h>
#include <string.h>
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

/* HDF5 byte shuffle of n elements of size es: byte b of element i goes to b*n + i. */
void tessera_shuffle(const uint8_t *restrict src, uint8_t *restrict dst, size_t n, size_t es) {
    if (es == 2) {
        for (size_t i = 0; i < n; i++) { dst[i] = src[2 * i]; dst[n + i] = src[2 * i + 1]; }
    } else if (es == 4) {
        for (size_t i = 0; i < n; i++) {
            dst[i] = src[4 * i]; dst[n + i] = src[4 * i + 1];
            dst[2 * n + i] = src[4 * i + 2]; dst[3 * n + i] = src[4 * i + 3];
        }
    } else {
        for (size_t b = 0; b < es; b++)
            for (size_t i = 0; i < n; i++) dst[b * n + i] = src[i * es + b];
    }
}

void tessera_unshuffle(const uint8_t *restrict src, uint8_t *restrict dst, size_t n, size_t es) {
    if (es == 2) {
        for (size_t i = 0; i < n; i++) { dst[2 * i] = src[i]; dst[2 * i + 1] = src[n + i]; }
    } else if (es == 4) {
        for (size_t i = 0; i < n; i++) {
            dst[4 * i] = src[i]; dst[4 * i + 1] = src[n + i];
            dst[4 * i + 2] = src[2 * n + i]; dst[4 * i + 3] = src[3 * n + i];
        }
    } else {
        for (size_t b = 0; b < es; b++)
            for (size_t i = 0; i < n; i++) dst[i * es + b] = src[b * n + i];
    }
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
