/* The GEMM driver's stores (gemm.c): a piece of a product's results from its accumulators to the
 * output, right after the piece's last slice while the accumulators are in L1, rounded to BF16 or
 * through an MLP activation to BF16 bits. Compiled once per instruction-set class, as the
 * element-wise steps (isa_variants.h). */
#include "activation.h"
#include "bf16.h"
#include "gemm_internal.h"
#include "isa_variants.h"

/* C[t][0..cols] = (accumulate ? C : 0) + acc[t][0..cols] (acc rows NR apart), rounded to the
   nearest BF16 (kept in FP32) when `round`. */
BODY void store_body(const float *acc, size_t rows, float *C, size_t ldc, size_t cols, int accumulate, int round) {
    for (size_t t = 0; t < rows; t++)
        for (size_t j = 0; j < cols; j++) {
            float v = accumulate ? acc[t * NR + j] + C[t * ldc + j] : acc[t * NR + j];
            if (round) v = round_bf16(v);
            C[t * ldc + j] = v;
        }
}

ISA_VARIANTS(gemm_store, (const float *acc, size_t rows, float *C, size_t ldc, size_t cols, int accumulate, int round), store_body,
             (acc, rows, C, ldc, cols, accumulate, round))

/* bits[t][0..cols] = the BF16 bits of act(v), v = (accumulate ? C : 0) + acc rounded to BF16, as
   store_body then the element-wise activation step would give them (C is not written). */
#define STORE_ACTIVATION(expr)                                                          \
    for (size_t t = 0; t < rows; t++)                                                   \
        for (size_t j = 0; j < cols; j++) {                                             \
            float v = round_bf16(accumulate ? acc[t * NR + j] + C[t * ldc + j] : acc[t * NR + j]); \
            bits[t * ldb + j] = (uint16_t)(round_bf16_bits(expr) >> 16);                \
        }
BODY void store_activation_body(const float *acc, size_t rows, const float *C, size_t ldc, size_t cols, int accumulate, int kind,
                                uint16_t *bits, size_t ldb) {
    ACTIVATION_KINDS(kind, STORE_ACTIVATION)
}

ISA_VARIANTS(gemm_store_activation, (const float *acc, size_t rows, const float *C, size_t ldc, size_t cols, int accumulate, int kind,
                                     uint16_t *bits, size_t ldb), store_activation_body, (acc, rows, C, ldc, cols, accumulate, kind, bits, ldb))

