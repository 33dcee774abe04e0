/* Shared by the GEMM driver (gemm.c) and the per-ISA micro-kernels (gemm_avx2.c, gemm_avx512.c).
 *
 * Every product runs through one driver: weights packed into panels of NR output columns x kp
 * packed elements ([kp][NR], 32 bits per element), activations into tiles of MR tokens
 * ([MR][kp]) or the class's own layout of BF16 pairs (amx: 16 x 16-pair tiles); kp is the class's
 * own (struct gemm_ops). For every output element the sum runs
 * over its inputs in one fixed order: within each kp-slice in input order from zero, the slices
 * then added in order. Token blocking, thread splits and cache tiling choose which elements are
 * computed together, never that order, so a row's results do not depend on the other rows of the
 * batch. */
#ifndef TESSERA_GEMM_INTERNAL_H
#define TESSERA_GEMM_INTERNAL_H
#include "CKernels.h"
#include <stddef.h>
#include <stdint.h>

#define NR 64      /* output columns per weight panel */
#define MR 6       /* tokens per activation tile */
#define KP_MAX 128 /* the longest panel slice of any class, in packed elements (64 x 128 x 4 bytes = 32 KiB) */
#define MC_MAX 2064 /* the most tokens per block of packed activations of any class (43 x 48: whole tiles of 6 and of 16) */
#define PACK_ROWS 48 /* a packing's rows are padded to a multiple of this, and packed by threads in such shares: whole tiles of 6 and of 16 */

/* The forms of a product: what a packed 32-bit element holds on each side. */
enum kind {
    F32_FROM_F32,  /* FP32 activations, FP32 weights */
    F32_FROM_BF16, /* FP32 activations, BF16 weights widened while packing (a shift per lane) */
    BF16_WIDENED,  /* BF16 activations and weights, both widened: a BF16 product with FP32 FMAs */
    BF16_PAIRS     /* pairs of BF16 on both sides (vdpbf16ps; AVX512-BF16 only) */
};

/* What one instruction-set class provides to the driver. */
struct gemm_ops {
    /* Packed elements per panel slice (at most KP_MAX): the length of the sums that are then
       added in order, so part of the class's summation order; also a tile row's stride. */
    size_t kp;
    /* Bytes of packed activations per block of tokens (SIZE_MAX: no budget), and the most tokens
       per block (at most MC_MAX). Each panel slice is packed once per block and used by all its
       tiles; the budget keeps a block's activations in cache while every panel passes over them. */
    size_t block_bytes, block_max;
    /* Weight rows 0..rows (rows <= NR) of W (row stride ldw elements), packed elements
       e0..e0+kp -> a panel of kp x NR elements, zero beyond `rows` (the layout is the class's own:
       only its tile reads it). */
    void (*pack_weights)(enum kind kind, const void *W, size_t ldw, size_t rows, size_t e0, size_t kp, uint32_t *panel);
    /* acc[0..mr][0..NR] = (load ? acc : 0) + tile x panel over kp elements (acc rows NR apart;
       tile rows `kp` of the struct apart). */
    void (*tile)(enum kind kind, size_t mr, const uint32_t *a, const uint32_t *panel, size_t kp, float *acc, int load);
    /* NULL, or what replaces the driver's loop of `tile` over a block: acc[0..rows][0..NR] =
       (load ? acc : 0) + the block's activations x panel over kp elements, the activations being
       rows `kp` of the struct apart (the block's tiles lie back to back) and zero up to a whole
       tile. Each row's results must not depend on the block's other rows or their number. */
    void (*block)(enum kind kind, size_t rows, const uint32_t *a, const uint32_t *panel, size_t kp, float *acc, int load);
    /* NULL, or a kernel that keeps the accumulators in registers across several slices of one panel
       (BF16 pairs only): acc[0..rows][0..NR] = (load ? acc : 0) + the activations x the panel over
       `slices` slices, each kp packed elements but the last, `last` (kp and last multiples of 16),
       rows a multiple of 32. Activation rows are kp apart within a slice and slices `a_slice`
       elements apart; the panel's slices kp x NR elements apart. Each result must have the bits
       that `block` gives slice by slice. */
    void (*range)(size_t rows, const uint32_t *a, size_t a_slice, const uint32_t *panel, size_t slices, size_t last, float *acc, int load);
    /* NULL, or the class's own packing of BF16 pair activations (which its block and range kernels
       then read instead of [MR][kp] tiles): rows t0..t1 (t0 a multiple of PACK_ROWS, t1 too or T)
       of A's T rows of E pairs (row stride lda BF16 values), slice kb at packed + kb * a_slice. A
       token's rows keep the driver's offsets: a multiple of 16 tokens t of slice kb starts at
       kb * a_slice + t * kp. */
    void (*pack_pairs)(const uint16_t *A, size_t lda, size_t T, size_t E, size_t t0, size_t t1, size_t a_slice, uint32_t *packed);
};

/* The body of a class's pack_weights with LANES-wide vectors of type VEC: blocks of LANES rows
   x LANES packed elements are loaded (LOAD(kind, row, e0, n); ZERO for rows beyond `rows`),
   transposed in registers (TRANSPOSE(r)) and stored as LANES-column pieces of panel rows
   (STORE(address, vector)): packed element p of strip j0 / LANES (columns j0..j0+LANES) at
   panel + p * ROW + j0 / LANES * STRIP (ROW = NR, STRIP = LANES: the [kp][NR] panel). A group of
   rows is read along its whole slice before the next group: the rows lie a page or more apart,
   so their lines share cache sets, and reading every row for each LANES elements made the
   caches thrash (packing ran at half this speed on Zen 3). */
#define PACK_WEIGHTS_BODY(LANES, VEC, LOAD, ZERO, TRANSPOSE, STORE, ROW, STRIP)                              \
    size_t es = kind == F32_FROM_F32 ? 4 : 2;                                                                \
    for (size_t j0 = 0; j0 < NR; j0 += LANES) {                                                              \
        for (size_t p0 = 0; p0 < kp; p0 += LANES) {                                                          \
            size_t np = kp - p0 < LANES ? kp - p0 : LANES;                                                   \
            VEC r[LANES];                                                                                    \
            for (size_t j = 0; j < LANES; j++)                                                               \
                r[j] = j0 + j < rows ? LOAD(kind, (const char *)W + (j0 + j) * ldw * es, e0 + p0, np) : ZERO; \
            TRANSPOSE(r);                                                                                    \
            for (size_t p = 0; p < np; p++) STORE(panel + (p0 + p) * (ROW) + j0 / LANES * (STRIP), r[p]);      \
        }                                                                                                    \
    }

/* C[t][0..cols] = (accumulate ? C : 0) + acc[t][0..cols] for t < rows (acc rows NR apart),
   rounded to the nearest BF16 (kept in FP32) when `round`: the driver's store, compiled per class. */
void tessera_gemm_store(int isa, const float *acc, size_t rows, float *C, size_t ldc, size_t cols, int accumulate, int round);
/* The same results rounded to BF16 through an epilogue (rows t..t+rows, columns n0..n0+cols of
   its outputs), C only read (when accumulate). */
void tessera_gemm_store_epilogue(int isa, const float *acc, size_t rows, const float *C, size_t ldc, size_t cols, int accumulate,
                                 const tessera_gemm_epilogue *e, size_t t, size_t n0);

extern const struct gemm_ops tessera_gemm_ops_portable;
#if defined(__x86_64__)
extern const struct gemm_ops tessera_gemm_ops_avx2, tessera_gemm_ops_avx512, tessera_gemm_ops_avx512bf16, tessera_gemm_ops_amx;
/* The AVX-512 classes' packing and avx512bf16 micro-kernel, which the amx class shares. */
#define KP_AVX512 128
void tessera_avx512_pack_weights(enum kind kind, const void *W, size_t ldw, size_t rows, size_t e0, size_t kp, uint32_t *panel);
/* The same elements as four strips of 16 columns, rows of 64 bytes (strip s at panel + s *
   KP_AVX512 * 16, whatever kp): the 1 KiB tiles amx's tdpbf16ps reads. */
void tessera_avx512_pack_weight_strips(enum kind kind, const void *W, size_t ldw, size_t rows, size_t e0, size_t kp, uint32_t *panel);
void tessera_avx512bf16_tile(enum kind kind, size_t mr, const uint32_t *a, const uint32_t *panel, size_t kp, float *acc, int load);
/* Its BF16 pair product over a panel of tessera_avx512_pack_weight_strips's layout. */
void tessera_avx512bf16_tile_strips(size_t mr, const uint32_t *a, const uint32_t *panel, size_t kp, float *acc, int load);
#endif
#endif
