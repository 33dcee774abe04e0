/* Datasets listed and string attributes read and written, over the HDF5 1.10 and the 1.12+
   link and object-info APIs. */
#include "CHDF5Shims.h"
#include <stdlib.h>
#include <string.h>

#if H5_VERSION_GE(1, 12, 0)
typedef H5L_info2_t link_info;
typedef H5O_info2_t object_info;
#define visit_links(loc, op, data) H5Lvisit2(loc, H5_INDEX_NAME, H5_ITER_INC, op, data)
#define object_info_by_name(loc, name, info) H5Oget_info_by_name3(loc, name, info, H5O_INFO_BASIC, H5P_DEFAULT)
#else
typedef H5L_info_t link_info;
typedef H5O_info_t object_info;
#define visit_links(loc, op, data) H5Lvisit(loc, H5_INDEX_NAME, H5_ITER_INC, op, data)
#define object_info_by_name(loc, name, info) H5Oget_info_by_name2(loc, name, info, H5O_INFO_BASIC, H5P_DEFAULT)
#endif

typedef struct { char *buf; size_t len, cap; } path_list;

static herr_t visit(hid_t g, const char *name, const link_info *info, void *op) {
    (void)info;
    object_info oi;
    if (object_info_by_name(g, name, &oi) < 0) return -1;
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
    if (visit_links(loc, visit, &l) < 0) { free(l.buf); return NULL; }
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
