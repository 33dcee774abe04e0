/* The portable class: plain C over the driver's [kp][64] panels, for other architectures and as
 * the tests' reference path. Never BF16 pairs: its BF16 products widen both sides. */
#include "gemm_internal.h"
#include <math.h>
#include <string.h>

/* Packed element e of a row of W (or A), as the 32 bits the micro-kernel reads. */
static uint32_t element(enum kind kind, const void *row, size_t e) {
    uint32_t v;
    switch (kind) {
    case F32_FROM_F32: memcpy(&v, (const float *)row + e, 4); return v;
    case BF16_PAIRS: memcpy(&v, (const uint16_t *)row + 2 * e, 4); return v;
    default: return (uint32_t)((const uint16_t *)row)[e] << 16;
    }
}

static void pack_weights_portable(enum kind kind, const void *W, size_t ldw, size_t rows, size_t e0, size_t kp, uint32_t *panel) {
    size_t es = kind == F32_FROM_F32 ? 4 : 2;
    for (size_t p = 0; p < kp; p++)
        for (size_t j = 0; j < NR; j++) panel[p * NR + j] = j < rows ? element(kind, (const char *)W + j * ldw * es, e0 + p) : 0;
}

#define KP_PORTABLE 128
static void tile_portable(enum kind kind, size_t mr, const uint32_t *a, const uint32_t *panel, size_t kp, float *acc, int load) {
    (void)kind; /* the portable ops never see BF16_PAIRS */
    for (size_t i = 0; i < mr; i++)
        for (size_t j = 0; j < NR; j++) {
            float s = 0, x, w;
            for (size_t p = 0; p < kp; p++) {
                memcpy(&x, a + i * KP_PORTABLE + p, 4);
                memcpy(&w, panel + p * NR + j, 4);
                s = fmaf(x, w, s);
            }
            acc[i * NR + j] = load ? s + acc[i * NR + j] : s;
        }
}

const struct gemm_ops tessera_gemm_ops_portable = {KP_PORTABLE, 4u << 20, 768, pack_weights_portable, tile_portable, NULL, NULL};
