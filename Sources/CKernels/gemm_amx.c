/* The AMX class (Sapphire Rapids and later): BF16 products as tdpbf16ps on tiles of 16 tokens x
 * 16 output columns, FP32 accumulators in tile registers. The weight panels hold the
 * avx512bf16 class's pairs of BF16 (the pair-interleaved layout tdpbf16ps reads), each slice as
 * four 16-column strips so that a weight tile is 1 KiB in one piece; the activations are the
 * driver's packed rows (kp pairs each, read 16 rows at a time with the row stride). A block of
 * tokens goes through in chunks of 16 tokens x 64 columns: one activation tile, four weight
 * tiles (two loaded at a time) and four accumulator tiles. A block's last tokens short of 16
 * are copied into a zero-padded tile, so every token's results come from the same instructions
 * whatever its place in the batch. Pairs of a slice beyond the last whole 16 (a short last
 * slice) run the avx512bf16 micro-kernel over the strips, FP32 products over its own layout. */
#include "gemm_internal.h"
#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#define AMX __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,amx-tile,amx-bf16")))
#define S KP_AVX512          /* packed elements between activation rows */
#define A_STRIDE (S * 4)     /* bytes between activation rows */
#define ROW_BYTES (NR * 4)   /* bytes between accumulator rows */
#define STRIP (S * 16)       /* packed elements between a panel slice's 16-column strips */

/* The tile configuration (palette 1): every one of the 8 tiles 16 rows x 64 bytes. */
struct tile_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

static _Thread_local int configured;

AMX static void configure(void) {
    struct tile_config c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int i = 0; i < 8; i++) c.colsb[i] = 64, c.rows[i] = 16;
    _tile_loadconfig(&c);
    configured = 1;
}

/* Prefetches step q's activation lines (16 rows a_stride bytes apart; no hardware prefetcher
   follows a tile load) into L1, if the chunk has that step. */
#define PREFETCH_STEP(q)                                                                                     \
    if ((q) < kq)                                                                                            \
        for (int i = 0; i < 16; i++) _mm_prefetch((const char *)(a + (q)) + i * a_stride, _MM_HINT_T0);

/* Step p's four products with activation tile AC, while the next step's tiles load: its
   activations into tile AN, its first two weight tiles into 6 and 7 as they come free. */
#define STEP(AC, AN, p)                                                                                      \
    {                                                                                                        \
        int more = (p) + 16 < kq;                                                                            \
        PREFETCH_STEP((p) + 32)                                                                              \
        _tile_dpbf16ps(0, AC, 6);                                                                            \
        _tile_loadd(6, strip[2] + (p) * 16, 64);                                                             \
        _tile_dpbf16ps(1, AC, 7);                                                                            \
        _tile_loadd(7, strip[3] + (p) * 16, 64);                                                             \
        if (more) _tile_loadd(AN, a + (p) + 16, a_stride);                                                   \
        _tile_dpbf16ps(2, AC, 6);                                                                            \
        if (more) _tile_loadd(6, strip[0] + ((p) + 16) * 16, 64);                                            \
        _tile_dpbf16ps(3, AC, 7);                                                                            \
        if (more) _tile_loadd(7, strip[1] + ((p) + 16) * 16, 64);                                            \
    }

/* acc rows 0..16 (a_stride and acc_stride bytes apart; tiles 0..3: columns 0..16, .., 48..64)
   (+)= 16 activation rows x the panel's strips over kq pairs (a multiple of 16). One activation
   tile serves four weight tiles: the activations come from L2, the panel slice from L1. The
   steps are pipelined: a tile is loaded as soon as the product reading it has been issued, the
   activations alternating between tiles 4 and 5 (measured against loading each step's tiles
   before its products, on a Sapphire Rapids class Xeon, one core, interleaved: +10-20%). */
AMX static inline void chunk16(const uint32_t *a, size_t a_stride, const uint32_t *panel, size_t kq, float *acc, size_t acc_stride,
                               int load) {
    const uint32_t *strip[4] = {panel, panel + STRIP, panel + 2 * STRIP, panel + 3 * STRIP};
    if (load) {
        _tile_loadd(0, acc, acc_stride);
        _tile_loadd(1, acc + 16, acc_stride);
        _tile_loadd(2, acc + 32, acc_stride);
        _tile_loadd(3, acc + 48, acc_stride);
    } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    }
    PREFETCH_STEP(16)
    _tile_loadd(4, a, a_stride);
    _tile_loadd(6, strip[0], 64);
    _tile_loadd(7, strip[1], 64);
    size_t p = 0;
    for (; p + 32 <= kq; p += 32) {
        STEP(4, 5, p)
        STEP(5, 4, p + 16)
    }
    if (p < kq) STEP(4, 5, p)
    _tile_stored(0, acc, acc_stride);
    _tile_stored(1, acc + 16, acc_stride);
    _tile_stored(2, acc + 32, acc_stride);
    _tile_stored(3, acc + 48, acc_stride);
}

/* The last r < 16 tokens of a block through a zero-padded copy of their rows. */
AMX static void short_chunk(size_t r, const uint32_t *a, const uint32_t *panel, size_t kq, float *acc, int load) {
    _Alignas(64) uint32_t rows[16][S];
    _Alignas(64) float out[16][NR];
    memset(rows, 0, sizeof rows);
    memset(out, 0, sizeof out);
    for (size_t i = 0; i < r; i++) {
        memcpy(rows[i], a + i * S, kq * 4);
        if (load) memcpy(out[i], acc + i * NR, sizeof out[i]);
    }
    chunk16(&rows[0][0], sizeof rows[0], panel, kq, &out[0][0], sizeof out[0], load);
    for (size_t i = 0; i < r; i++) memcpy(acc + i * NR, out[i], sizeof out[i]);
}

AMX static void block(enum kind kind, size_t rows, const uint32_t *a, const uint32_t *panel, size_t kp, float *acc, int load) {
    size_t kq = kind == BF16_PAIRS ? kp / 16 * 16 : 0;
    if (kq > 0) {
        if (!configured) configure();
        size_t t = 0;
        for (; t + 16 <= rows; t += 16) chunk16(a + t * S, A_STRIDE, panel, kq, acc + t * NR, ROW_BYTES, load);
        if (t < rows) short_chunk(rows - t, a + t * S, panel, kq, acc + t * NR, load);
    }
    if (kind != BF16_PAIRS) {
        for (size_t t = 0; t < rows; t += MR)
            tessera_avx512bf16_tile(kind, rows - t < MR ? rows - t : MR, a + t * S, panel, kp, acc + t * NR, load);
    } else if (kq < kp) { /* the pairs after the last whole 16, from the strips' rows kq.. */
        for (size_t t = 0; t < rows; t += MR)
            tessera_avx512bf16_tile_strips(rows - t < MR ? rows - t : MR, a + t * S + kq, panel + kq * 16, kp - kq, acc + t * NR, load || kq > 0);
    }
}

/* A panel slice of BF16 pairs as four 16-column strips (rows of 64 bytes, STRIP apart, so a
   weight tile is 1 KiB in one piece, and a product may read any first pairs of a slice packed
   longer); FP32 products' elements in the avx512bf16 class's [kp][64] layout, for its kernel. */
static void pack_weights(enum kind kind, const void *W, size_t ldw, size_t rows, size_t e0, size_t kp, uint32_t *panel) {
    if (kind == BF16_PAIRS) tessera_avx512_pack_weight_strips(kind, W, ldw, rows, e0, kp, panel);
    else tessera_avx512_pack_weights(kind, W, ldw, rows, e0, kp, panel);
}

/* The avx512bf16 class's slices (128 pairs: a 32 KiB panel slice), and blocks of MC_MAX (2064)
   tokens at every K: a slice is packed once per block, and the tiles run several times faster
   than vdpbf16ps, so packing needs many tokens to pay for itself (at 4 x 512 tokens it is then
   packed once per product: 1-2% of the time, measured with perf on a Sapphire Rapids class Xeon). */
const struct gemm_ops tessera_gemm_ops_amx = {KP_AVX512, SIZE_MAX, MC_MAX, pack_weights, tessera_avx512bf16_tile, block};
#endif
