/* The Zstandard HDF5 filter: id 32015 and cd_values[0] = level, as hdf5plugin writes and
   reads it. */
#include "CHDF5Shims.h"
#include "Registration.h"
#include <stdlib.h>
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

int tessera_register_zstd_filter(void) {
    if (H5Zfilter_avail(TESSERA_ZSTD_FILTER) > 0) return 0;
    static const H5Z_class2_t cls = {
        .version = H5Z_CLASS_T_VERS,
        .id = TESSERA_ZSTD_FILTER,
        .encoder_present = 1,
        .decoder_present = 1,
        .name = "Zstandard compression (tessera)",
        .can_apply = NULL,
        .set_local = NULL,
        .filter = zstd_filter,
    };
    return H5Zregister(&cls) < 0 ? -1 : 0;
}
