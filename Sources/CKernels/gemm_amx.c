/* The AMX class (Sapphire Rapids and later): BF16 products as tdpbf16ps on tiles of 16 tokens x
 * 16 output columns, FP32 accumulators in tile registers. The weight panels are the avx512bf16
 * class's ([kp][64] pairs of BF16: the pair-interleaved layout tdpbf16ps reads, cut into 16-column
 * strips), the activations the driver's packed rows (kp pairs each, read 16 rows at a time with
 * the row stride). A block of tokens goes through in chunks of 16 tokens x 64 columns: one
 * activation tile, four weight tiles (two loaded at a time) and four accumulator tiles. A
 * block's last tokens short of 16 are copied into a zero-padded tile, so every token's results come from the same instructions
 * whatever its place in the batch. Pairs of a slice beyond the last whole 16 (a short last slice)
 * and FP32 products run the avx512bf16 micro-kernel. */
#include "gemm_internal.h"
#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#define AMX __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,amx-tile,amx-bf16")))
#define S KP_AVX512          /* packed elements between activation rows */
#define A_STRIDE (S * 4)     /* bytes between activation rows */
#define ROW_BYTES (NR * 4)   /* bytes between panel rows and between accumulator rows */

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

/* acc rows 0..16 (a_stride and acc_stride bytes apart; tiles 0..3: columns 0..16, .., 48..64)
   (+)= 16 activation rows x the panel over kq pairs (a multiple of 16). One activation tile
   serves four weight tiles: the activations come from L2, the panel slice from L1. */
AMX static inline void chunk16(const uint32_t *a, size_t a_stride, const uint32_t *panel, size_t kq, float *acc, size_t acc_stride,
                               int load) {
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
    for (size_t p = 0; p < kq; p += 16) {
        /* The next step's activation lines (16 rows 512 bytes apart; no hardware prefetcher
           follows a tile load), into L1 while this step's four products run. */
        for (int i = 0; i < 16; i++) _mm_prefetch((const char *)(a + p + 16) + i * a_stride, _MM_HINT_T0);
        _tile_loadd(4, a + p, a_stride);
        _tile_loadd(6, panel + p * NR, ROW_BYTES);
        _tile_loadd(7, panel + p * NR + 16, ROW_BYTES);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(6, panel + p * NR + 32, ROW_BYTES);
        _tile_loadd(7, panel + p * NR + 48, ROW_BYTES);
        _tile_dpbf16ps(2, 4, 6);
        _tile_dpbf16ps(3, 4, 7);
    }
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
    if (kq == kp) return;
    for (size_t t = 0; t < rows; t += MR)
        tessera_avx512bf16_tile(kind, rows - t < MR ? rows - t : MR, a + t * S + kq, panel + kq * NR, kp - kq, acc + t * NR, load || kq > 0);
}

/* The avx512bf16 class's slices (128 pairs: a 32 KiB panel slice), and blocks of MC_MAX (2064)
   tokens at every K: a slice is packed once per block, and the tiles run several times faster
   than vdpbf16ps, so packing needs many tokens to pay for itself (at 4 x 512 tokens it is then
   packed once per product: 1-2% of the time, measured with perf on a Sapphire Rapids class Xeon). */
const struct gemm_ops tessera_gemm_ops_amx = {KP_AVX512, SIZE_MAX, MC_MAX, tessera_avx512_pack_weights, tessera_avx512bf16_tile, block};
#endif
