/* The GEMM driver's stores (gemm.c): a piece of a product's results from its accumulators to the
 * output, right after the piece's last slice while the accumulators are in L1: rounded to BF16,
 * or rounded and then through an epilogue (an MLP activation to BF16 bits, or the residual add).
 * Compiled once per instruction-set class, as the element-wise steps (isa_variants.h). */
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

/* v = (accumulate ? C : 0) + acc rounded to BF16, as store_body gives it; then, as the
   element-wise step after it would (C is not written): bits[t][0..cols] = the BF16 bits of act(v),
   or sum[t][0..cols] = residual + v rounded to BF16. */
#define RESULT round_bf16(accumulate ? acc[t * NR + j] + C[t * ldc + j] : acc[t * NR + j])
#define STORE_ACTIVATION(expr)                                                       \
    for (size_t t = 0; t < rows; t++)                                                \
        for (size_t j = 0; j < cols; j++) {                                          \
            float v = RESULT;                                                        \
            bits[t * ld + j] = (uint16_t)(round_bf16_bits(expr) >> 16);              \
        }
BODY void store_epilogue_body(const float *acc, size_t rows, const float *C, size_t ldc, size_t cols, int accumulate,
                              const tessera_gemm_epilogue *e, size_t t0, size_t n0) {
    size_t ld = e->ld;
    if (e->kind == TESSERA_EPILOGUE_RESIDUAL) {
        const float *residual = e->residual + t0 * ld + n0;
        float *sum = e->sum + t0 * ld + n0;
        for (size_t t = 0; t < rows; t++)
            for (size_t j = 0; j < cols; j++) sum[t * ld + j] = round_bf16(residual[t * ld + j] + RESULT);
        return;
    }
    uint16_t *bits = e->bits + t0 * ld + n0;
    ACTIVATION_KINDS(e->activation, STORE_ACTIVATION)
}

ISA_VARIANTS(gemm_store_epilogue, (const float *acc, size_t rows, const float *C, size_t ldc, size_t cols, int accumulate,
                                   const tessera_gemm_epilogue *e, size_t t, size_t n0), store_epilogue_body,
             (acc, rows, C, ldc, cols, accumulate, e, t, n0))
