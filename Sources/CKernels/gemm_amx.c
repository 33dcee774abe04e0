/* The AMX class (Sapphire Rapids and later): BF16 products as tdpbf16ps on tiles of 16 tokens x
 * 16 output columns, FP32 accumulators in tile registers. The weight panels hold the
 * avx512bf16 class's pairs of BF16 (the pair-interleaved layout tdpbf16ps reads), each slice as
 * four 16-column strips so that a weight tile is 1 KiB in one piece; the activations are packed
 * the same way (`pack_pairs`): per slice and 16 tokens, each step of 16 pairs one 1 KiB tile
 * (16 tokens x 64 bytes, read with a 64-byte stride). A block of
 * tokens goes through in chunks of 16 tokens x 64 columns: one activation tile, four weight
 * tiles (two loaded at a time) and four accumulator tiles. Whole groups of 32 tokens instead keep
 * their accumulators in tiles across a range of slices (`range`, 2 x 2 tiles), with the same bits.
 * A block's last tokens short of 16 are copied into a zero-padded tile, so every token's results
 * come from the same instructions whatever its place in the batch. Pairs of a slice beyond the
 * last whole 16 (a short last slice) run the avx512bf16 micro-kernel over the strips, FP32
 * products over its own layout. */
#include "gemm_internal.h"
#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#define AMX __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,amx-tile,amx-bf16")))
#define S KP_AVX512          /* pairs per slice: a token's share of a slice, 16 tokens' a 16 * S chunk of tiles */
#define ROW_BYTES (NR * 4)   /* bytes between accumulator rows */
#define STRIP (S * 16)       /* packed elements between a panel slice's 16-column strips */
#define TILE (16 * 16)       /* packed elements of a weight tile: 16 pairs x 16 columns of a strip */

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

/* Step s of a run's sequence of steps (16 pairs of a chunk of 16 tokens; ns steps per chunk, the
   chunks 16 * S elements apart): its activation tile. */
#define ACTIVATIONS(s) (a + (s) / ns * 16 * S + (s) % ns * TILE)

/* The accumulators of the chunk that ends at step s stored, and the next chunk's loaded (or
   zeroed) in their place, tile by tile so the next chunk's first products can start. */
#define NEXT_ACCUMULATORS(s, more)                                                                           \
    {                                                                                                        \
        float *c = acc + (s) / ns * 16 * NR, *n = c + 16 * NR;                                               \
        _tile_stored(0, c, ROW_BYTES);                                                                       \
        if (more) load ? _tile_loadd(0, n, ROW_BYTES) : _tile_zero(0);                                       \
        _tile_stored(1, c + 16, ROW_BYTES);                                                                  \
        if (more) load ? _tile_loadd(1, n + 16, ROW_BYTES) : _tile_zero(1);                                  \
        _tile_stored(2, c + 32, ROW_BYTES);                                                                  \
        if (more) load ? _tile_loadd(2, n + 32, ROW_BYTES) : _tile_zero(2);                                  \
        _tile_stored(3, c + 48, ROW_BYTES);                                                                  \
        if (more) load ? _tile_loadd(3, n + 48, ROW_BYTES) : _tile_zero(3);                                  \
    }

/* Step s's four products with activation tile AC, while the next step's tiles load: its
   activations into tile AN, its first two weight tiles into 6 and 7 as they come free (the next
   step may be the next chunk's first); the activations two steps on are prefetched into L1 (no
   hardware prefetcher follows a tile load). A chunk's last step then swaps the accumulators. */
#define STEP(AC, AN)                                                                                         \
    {                                                                                                        \
        size_t i = s % ns, next = s + 1, ni = next % ns;                                                     \
        int more = next < steps;                                                                             \
        if (s + 2 < steps)                                                                                   \
            for (int r = 0; r < 16; r++) _mm_prefetch((const char *)ACTIVATIONS(s + 2) + r * 64, _MM_HINT_T0);    \
        _tile_dpbf16ps(0, AC, 6);                                                                            \
        _tile_loadd(6, strip[2] + i * TILE, 64);                                                             \
        _tile_dpbf16ps(1, AC, 7);                                                                            \
        _tile_loadd(7, strip[3] + i * TILE, 64);                                                             \
        if (more) _tile_loadd(AN, ACTIVATIONS(next), 64);                                                    \
        _tile_dpbf16ps(2, AC, 6);                                                                            \
        if (more) _tile_loadd(6, strip[0] + ni * TILE, 64);                                                  \
        _tile_dpbf16ps(3, AC, 7);                                                                            \
        if (more) _tile_loadd(7, strip[1] + ni * TILE, 64);                                                  \
        if (ni == 0) NEXT_ACCUMULATORS(s, more)                                                              \
        s = next;                                                                                            \
    }

/* acc rows 0..16 * chunks (tiles 0..3: columns 0..16, .., 48..64) (+)= the activation rows x the
   panel's strips over kq pairs (a multiple of 16). One activation tile serves four weight tiles:
   the activations come from L2, the panel slice from L1. All the chunks' steps run as one
   pipelined sequence: a tile is loaded as soon as the product reading it has been issued, the
   activations alternating between tiles 4 and 5, and a chunk's last step loads the next chunk's
   first tiles before its accumulators are swapped. Measured on a Sapphire Rapids class Xeon, one
   core, interleaved: pipelined steps +10-20% over loading each step's tiles before its products;
   the chunks as one sequence +8% (fast phases of the host) to +20% (slow) over a chunk at a time. */
AMX static void chunks16(const uint32_t *a, const uint32_t *panel, size_t kq, float *acc, size_t chunks, int load) {
    const uint32_t *strip[4] = {panel, panel + STRIP, panel + 2 * STRIP, panel + 3 * STRIP};
    size_t ns = kq / 16, steps = chunks * ns, s = 0;
    if (load) {
        _tile_loadd(0, acc, ROW_BYTES);
        _tile_loadd(1, acc + 16, ROW_BYTES);
        _tile_loadd(2, acc + 32, ROW_BYTES);
        _tile_loadd(3, acc + 48, ROW_BYTES);
    } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    }
    if (steps > 1)
        for (int r = 0; r < 16; r++) _mm_prefetch((const char *)ACTIVATIONS(1) + r * 64, _MM_HINT_T0);
    _tile_loadd(4, a, 64);
    _tile_loadd(6, strip[0], 64);
    _tile_loadd(7, strip[1], 64);
    while (s + 2 <= steps) {
        STEP(4, 5)
        STEP(5, 4)
    }
    if (s < steps) STEP(4, 5)
}

/* The last r < 16 tokens of a block, their chunk's other rows (zeros, or later tokens) into
   scratch accumulators: a row's results depend on its own activations alone. */
AMX static void short_chunk(size_t r, const uint32_t *a, const uint32_t *panel, size_t kq, float *acc, int load) {
    _Alignas(64) float out[16][NR];
    memset(out, 0, sizeof out);
    for (size_t i = 0; load && i < r; i++) memcpy(out[i], acc + i * NR, sizeof out[i]);
    chunks16(a, panel, kq, &out[0][0], 1, load);
    for (size_t i = 0; i < r; i++) memcpy(acc + i * NR, out[i], sizeof out[i]);
}

AMX static void block(enum kind kind, size_t rows, const uint32_t *a, const uint32_t *panel, size_t kp, float *acc, int load) {
    size_t kq = kind == BF16_PAIRS ? kp / 16 * 16 : 0;
    if (kq > 0) {
        if (!configured) configure();
        size_t t = rows / 16 * 16;
        if (t > 0) chunks16(a, panel, kq, acc, rows / 16, load);
        if (t < rows) short_chunk(rows - t, a + t * S, panel, kq, acc + t * NR, load);
    }
    if (kind != BF16_PAIRS) {
        for (size_t t = 0; t < rows; t += MR)
            tessera_avx512bf16_tile(kind, rows - t < MR ? rows - t : MR, a + t * S, panel, kp, acc + t * NR, load);
    } else if (kq < kp) { /* the pairs after the last whole 16 (each token's row of its partial step), from the strips' rows kq.. */
        _Alignas(64) uint32_t part[MR][S];
        for (size_t t = 0; t < rows; t += MR) {
            size_t mr = rows - t < MR ? rows - t : MR;
            for (size_t i = 0; i < mr; i++) memcpy(part[i], a + (t + i) / 16 * 16 * S + kq / 16 * TILE + (t + i) % 16 * 16, (kp - kq) * 4);
            tessera_avx512bf16_tile_strips(mr, &part[0][0], panel + kq * 16, kp - kq, acc + t * NR, load || kq > 0);
        }
    }
}

/* Step s of a range (16 pairs; S / 16 steps per whole slice): the activation tile of its upper
   16 tokens (the lower 16's is 16 * S on), and its weight tile in the half's first strip. */
#define RANGE_A(s) (a + (s) / (S / 16) * a_slice + (s) % (S / 16) * TILE)
#define RANGE_B(s) (b + (s) / (S / 16) * S * NR + (s) % (S / 16) * TILE)

/* c rows 0..32, columns 0..32 (+)= 32 tokens' activations x two 16-column strips (from b) over
   `steps` steps, the accumulators staying in tiles 0-3 throughout: 2 x 2 tiles, the activations
   in 4 and 5, the weights in 6 and 7, each tile reloaded as soon as the last product reading it
   has been issued. The activations two steps on are prefetched into L1; the weights come from L2.
   tdpbf16ps adds into the tile as the slice-by-slice kernel adds into the accumulators it loaded,
   so the bits are the same, without their round trip through memory at every slice. */
AMX static void range32(const uint32_t *a, size_t a_slice, const uint32_t *b, size_t steps, float *c, int load) {
    if (load) {
        _tile_loadd(0, c, ROW_BYTES);
        _tile_loadd(1, c + 16, ROW_BYTES);
        _tile_loadd(2, c + 16 * NR, ROW_BYTES);
        _tile_loadd(3, c + 16 * NR + 16, ROW_BYTES);
    } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    }
    _tile_loadd(4, RANGE_A(0), 64);
    _tile_loadd(6, RANGE_B(0), 64);
    _tile_loadd(5, RANGE_A(0) + 16 * S, 64);
    _tile_loadd(7, RANGE_B(0) + STRIP, 64);
    for (size_t s = 0; s < steps; s++) {
        size_t n = s + 1;
        int more = n < steps;
        if (s + 2 < steps)
            for (int r = 0; r < 16; r++) {
                _mm_prefetch((const char *)RANGE_A(s + 2) + r * 64, _MM_HINT_T0);
                _mm_prefetch((const char *)(RANGE_A(s + 2) + 16 * S) + r * 64, _MM_HINT_T0);
            }
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        if (more) _tile_loadd(4, RANGE_A(n), 64);
        _tile_dpbf16ps(2, 5, 6);
        if (more) _tile_loadd(6, RANGE_B(n), 64);
        _tile_dpbf16ps(3, 5, 7);
        if (more) _tile_loadd(5, RANGE_A(n) + 16 * S, 64);
        if (more) _tile_loadd(7, RANGE_B(n) + STRIP, 64);
    }
    _tile_stored(0, c, ROW_BYTES);
    _tile_stored(1, c + 16, ROW_BYTES);
    _tile_stored(2, c + 16 * NR, ROW_BYTES);
    _tile_stored(3, c + 16 * NR + 16, ROW_BYTES);
}

/* gemm_ops.range: each 32 tokens x each half of the panel through range32. Measured on a
   Sapphire Rapids class Xeon, whole products on one core, old and new interleaved (the median
   of the runs' own ratios, 15 runs each, qkv, fc1 and fc2 shapes at 2048 tokens): +3% to +6% in six
   runs in one phase of the host, +2% to +13% in eight in another, against the slice-by-slice
   kernel (identical code on both sides read 0.79-1.05 in the same minutes). */
AMX static void range(size_t rows, const uint32_t *a, size_t a_slice, const uint32_t *panel, size_t slices, size_t last, float *acc,
                      int load) {
    if (!configured) configure();
    size_t steps = (slices - 1) * (S / 16) + last / 16;
    for (size_t t = 0; t < rows; t += 32)
        for (size_t half = 0; half < 2; half++)
            range32(a + t * S, a_slice, panel + 2 * half * STRIP, steps, acc + t * NR + 32 * half, load);
}

/* gemm_ops.pack_pairs: each slice's 16 tokens as steps of 16 pairs, each step a 1 KiB tile of 16
   rows of 64 bytes (the tile tdpbf16ps reads); tokens past T and pairs past E zero. */
static void pack_pairs(const uint16_t *A, size_t lda, size_t T, size_t E, size_t t0, size_t t1, size_t a_slice, uint32_t *packed) {
    size_t g1 = t1 == T ? (T + 15) / 16 : t1 / 16;
    for (size_t g = t0 / 16; g < g1; g++)
        for (size_t kb = 0; kb * S < E; kb++) {
            size_t kp = E - kb * S < S ? E - kb * S : S;
            for (size_t q = 0; q * 16 < kp; q++) {
                size_t n = kp - q * 16 < 16 ? kp - q * 16 : 16;
                uint32_t *tile = packed + kb * a_slice + g * 16 * S + q * TILE;
                for (size_t i = 0, t = g * 16; i < 16; i++, t++) {
                    uint32_t *row = tile + i * 16;
                    size_t have = t < T ? n : 0;
                    const uint16_t *src = have > 0 ? A + t * lda + 2 * (kb * S + q * 16) : NULL;
                    if (have == 16) memcpy(row, src, 64); /* a fixed-size copy, inlined */
                    else {
                        if (have > 0) memcpy(row, src, have * 4);
                        memset(row + have, 0, (16 - have) * 4);
                    }
                }
            }
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
const struct gemm_ops tessera_gemm_ops_amx = {KP_AVX512, SIZE_MAX, MC_MAX, pack_weights, tessera_avx512bf16_tile, block, range, pack_pairs};
#endif
