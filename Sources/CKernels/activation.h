/* The MLP activations, spelled once for the element-wise step (elementwise.c) and for the matrix
 * product's store that applies one to fc1's results (gemm.c), so both give the same bits. */
#ifndef TESSERA_ACTIVATION_H
#define TESSERA_ACTIVATION_H
#include "CKernels.h"
#include <math.h>

static inline float gelu(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); }
static inline float silu(float v) { return v / (1.0f + expf(-v)); }

/* LOOP(expr) once per activation kind, expr being the activation of a float `v`: one loop per
   kind, so each vectorises. */
#define ACTIVATION_KINDS(kind, LOOP)                      \
    switch (kind) {                                       \
    case TESSERA_SQUARED_RELU: LOOP(v > 0 ? v * v : 0.0f) break; \
    case TESSERA_RELU: LOOP(v > 0 ? v : 0.0f) break;      \
    case TESSERA_GELU: LOOP(gelu(v)) break;               \
    default: LOOP(silu(v)) break;                         \
    }
#endif
