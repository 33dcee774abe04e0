/* libzstd settings the Swift wrappers cannot reach (experimental API). */
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>
#include "CCodecs.h"

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
