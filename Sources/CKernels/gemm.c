/* Matrix products C (+)= A W^T for a linear layer: A [T][K] activations, W [N][K] weights in the checkpoint's
 * row-major [out][in] layout (read in place), C [T][N] FP32.
 *
 * One BLIS-style driver for every instruction-set class (one core per call): weights are packed on the fly into
 * panels of NR = 64 output columns x kp packed elements ([kp][64], kp the class's slice length); activations are
 * packed into tiles of MR = 6 tokens ([6][kp]), or as the class packs BF16 pairs (amx: the 16 x 16-pair tiles its
 * tdpbf16ps reads), once per product and reused by every panel; a panel's kp-slice stays
 * in L1 while a block's tiles pass over it, and the next panel's weights are prefetched meanwhile (its rows lie far
 * apart, which hardware prefetchers do not follow). The class only supplies the packing of weights and the
 * micro-kernel, or kernels for a whole block of tokens and for a range of slices (`struct gemm_ops`: amx's tiles
 * take 16 tokens at a time, or 32 with their accumulators kept across the slices); the portable ops
 * (gemm_portable.c) serve other architectures and tests. Results are stored a piece at a time right after their
 * last slice (gemm_store.c), optionally through an epilogue (an MLP activation, the residual add). Weights may also
 * come packed beforehand (attention's keys and values, read by every query block).
 * The summation order of each output element is fixed (gemm_internal.h). */
#include "CKernels.h"
#include "bf16.h"
#include "gemm_internal.h"
#include "gemm_prefetch.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The one dispatch point: the ops of an instruction-set class, the portable ones for a class
   this CPU lacks (callers refuse those first; an illegal instruction is never reached). */
static const struct gemm_ops *ops_for(int isa) {
    switch (tessera_isa_supported(isa) ? isa : TESSERA_ISA_PORTABLE) {
#if defined(__x86_64__)
    case TESSERA_ISA_AVX2: return &tessera_gemm_ops_avx2;
    case TESSERA_ISA_AVX512: return &tessera_gemm_ops_avx512;
    case TESSERA_ISA_AVX512BF16: return &tessera_gemm_ops_avx512bf16;
    case TESSERA_ISA_AMX: return &tessera_gemm_ops_amx;
#endif
    default: return &tessera_gemm_ops_portable;
    }
}

/* The product form of a call: BF16 products use pairs only where vdpbf16ps (or tdpbf16ps) exists. */
static enum kind kind_for(int isa, int bf16, int w_is_bf16) {
    if (bf16) return isa >= TESSERA_ISA_AVX512BF16 && tessera_isa_supported(isa) ? BF16_PAIRS : BF16_WIDENED;
    return w_is_bf16 ? F32_FROM_BF16 : F32_FROM_F32;
}

/* Activation rows 0..rows (rows <= MR), packed elements e0..e0+kp -> tile [MR][S], zero beyond `rows`. */
static void pack_activations(enum kind kind, size_t S, const void *A, size_t lda, size_t rows, size_t e0, size_t kp, uint32_t *tile) {
    size_t es = kind == F32_FROM_F32 || kind == F32_FROM_BF16 ? 4 : 2;
    for (size_t i = 0; i < MR; i++) {
        uint32_t *out = tile + i * S;
        const char *row = (const char *)A + i * lda * es;
        if (i >= rows) memset(out, 0, kp * 4);
        else if (kind == BF16_WIDENED) for (size_t p = 0; p < kp; p++) out[p] = (uint32_t)((const uint16_t *)row)[e0 + p] << 16;
        else memcpy(out, row + e0 * 4, kp * 4); /* FP32 values or BF16 pairs: 4 bytes each */
    }
}

/* Packs tiles tile0..tile1 of A's T rows as [kb][tile][MR][S], `tiles` tiles in all. */
static void pack_tiles(enum kind kind, size_t S, const void *A, size_t lda, size_t T, size_t E, size_t tile0, size_t tile1, size_t tiles,
                       uint32_t *packed) {
    size_t a_es = kind == F32_FROM_F32 || kind == F32_FROM_BF16 ? 4 : 2;
    for (size_t kb = 0; kb * S < E; kb++) {
        size_t e0 = kb * S, kp = E - e0 < S ? E - e0 : S;
        for (size_t j = tile0; j < tile1; j++) {
            size_t t = j * MR;
            pack_activations(kind, S, (const char *)A + t * lda * a_es, lda, T - t < MR ? T - t : MR, e0, kp,
                             packed + (kb * tiles + j) * S * MR);
        }
    }
}

/* Where a product's results go: C (+)= the accumulators, as tessera_gemm_store with the class's
   vectors, or through an epilogue. */
struct destination { int isa; float *C; size_t ldc; int accumulate, round; const tessera_gemm_epilogue *epilogue; };

/* Where a product's weights come from: W itself, packed panel by panel as the product goes, or
   W's panels packed beforehand (tessera_gemm_pack_weights), panel n at packed + n * panel_elements. */
struct weights { const void *W; size_t ldw; const uint32_t *packed; size_t panel_elements; };

static void store(const struct destination *d, const float *acc, size_t t, size_t rows, size_t n0, size_t cols) {
    if (d->epilogue)
        tessera_gemm_store_epilogue(d->isa, acc, rows, d->C + t * d->ldc + n0, d->ldc, cols, d->accumulate, d->epilogue, t, n0);
    else
        tessera_gemm_store(d->isa, acc, rows, d->C + t * d->ldc + n0, d->ldc, cols, d->accumulate, d->round);
}

/* Per-thread buffers, grown on demand and kept for the thread's life. */
static _Thread_local uint32_t *packed_a, *packed_w;
static _Thread_local float *block_acc; /* a block's results for one panel, [mc][NR]: C's own rows may alias in cache */
static _Thread_local size_t packed_a_size;

/* Grows a per-thread buffer of *size bytes to at least `need` (its contents are not kept): 0, or -1
   when it cannot be allocated. */
static int reserve(uint32_t **buffer, size_t *size, size_t need) {
    if (*size >= need && *buffer) return 0;
    free(*buffer);
    *buffer = aligned_alloc(64, (need + 63) & ~(size_t)63);
    *size = *buffer ? need : 0;
    return *buffer ? 0 : -1;
}

/* Packed elements per row. */
static size_t elements(enum kind kind, size_t K) { return kind == BF16_PAIRS ? K / 2 : K; }

/* Tokens per block: within the class's budget of packed activations and its most tokens, and a
   whole number of tiles (a block starts on a tile of the packed activations). */
static size_t block_tokens(const struct gemm_ops *ops, size_t E) {
    size_t mc = ops->block_bytes / (4 * (E + 1));
    mc = (mc > ops->block_max ? ops->block_max : mc) / MR * MR;
    return mc < MR ? MR : mc;
}

/* Tokens per call of a class's block kernel: the next slice's prefetches go between the calls. */
#define BLOCK_PIECE 64

/* For a class with a block kernel (amx, avx2), the work is cut so the activations and the
   accumulators come from L2, not L3: sub-blocks of tokens whose packed activations over a range of
   slices take SUB_BLOCK_BYTES (Sapphire Rapids has 2 MiB of L2 per core), passed over by groups of
   whole packed panels of PANEL_GROUP_BYTES (at least one panel). Measured against one panel at a
   time, one core, same run: amx on a Sapphire Rapids class Xeon +12-17% at K 2048, +32% at K 8192
   (its tiles read activations several times faster than L3 delivers them); avx2 on Zen 3 (512 KiB
   of L2) +3-10%, smaller sub-blocks no better. */
#define SUB_BLOCK_BYTES (1u << 20)
#define RANGE_ELEMENTS 1024
#define PANEL_GROUP_BYTES (4u << 20)
/* Tokens of a sub-block at E packed elements per row: whole BLOCK_PIECEs, at least one. */
static size_t sub_block_tokens(size_t E) {
    size_t sub = SUB_BLOCK_BYTES / (4 * ((E < RANGE_ELEMENTS ? E : RANGE_ELEMENTS) + 1)) / BLOCK_PIECE * BLOCK_PIECE;
    return sub < BLOCK_PIECE ? BLOCK_PIECE : sub;
}
/* Columns of a group of panels (slices of S of E packed elements): all N's when the weights came
   packed (N > 0), else the whole panels that take PANEL_GROUP_BYTES; with several ranges of
   slices no more panels than block_acc holds a sub-block's accumulators for; at least one. */
static size_t group_columns(size_t S, size_t E, size_t packed_N) {
    size_t kblocks = (E + S - 1) / S, panel_bytes = kblocks * S * NR * 4, sub = sub_block_tokens(E);
    size_t group = packed_N ? (packed_N + NR - 1) / NR * NR : panel_bytes >= PANEL_GROUP_BYTES ? NR : PANEL_GROUP_BYTES / panel_bytes * NR;
    if (kblocks > RANGE_ELEMENTS / S && group / NR * sub > MC_MAX) group = MC_MAX / sub * NR;
    return group < NR ? NR : group;
}
static _Thread_local uint32_t *packed_group; /* every slice of a group of panels */
static _Thread_local size_t packed_group_size;

/* What every pass of one product shares. */
struct product {
    const struct gemm_ops *ops;
    enum kind kind;
    const uint32_t *a; /* the block's packed activations: slice kb's rows at a + kb * kb_stride * kp * MR */
    size_t kb_stride, m0, N, E;
    const struct weights *w;
    const struct destination *out;
};

/* A panel's pass over tokens s0..s1 of a block (acc holding their results, rows NR apart) for
   slices kb0..kb1, with the class's range kernel: each piece's whole groups of 32 tokens keep their
   accumulators in registers across the slices, its last tokens go slice by slice through the
   block kernel (the same bits either way). The first sub-block packs the slices (own: the
   panel's packing, else the weights came packed) before its tokens pass, without prefetching the
   next panel's rows (the range kernel gained 3-13% on one core without it). BF16 pairs only, so
   the weights are BF16 (2 bytes). */
static void range_pass(const struct product *p, uint32_t *own, size_t n0, size_t kb0, size_t kb1, size_t s0, size_t s1, float *acc) {
    const struct gemm_ops *ops = p->ops;
    const struct weights *w = p->w;
    size_t S = ops->kp, kblocks = (p->E + S - 1) / S, cols = p->N - n0 < NR ? p->N - n0 : NR, a_slice = p->kb_stride * S * MR;
    const uint32_t *panel = own ? own : w->packed + n0 / NR * w->panel_elements;
    for (size_t kb = kb0; own && s0 == 0 && kb < kb1; kb++)
        ops->pack_weights(p->kind, (const char *)w->W + n0 * w->ldw * 2, w->ldw, cols, kb * S, p->E - kb * S < S ? p->E - kb * S : S,
                          own + kb * S * NR);
    size_t last = p->E - (kb1 - 1) * S < S ? p->E - (kb1 - 1) * S : S;
    for (size_t r = s0; r < s1; r += BLOCK_PIECE) {
        size_t n = s1 - r < BLOCK_PIECE ? s1 - r : BLOCK_PIECE, whole = n / 32 * 32;
        const uint32_t *a = p->a + kb0 * a_slice + r * S;
        float *c = acc + (r - s0) * NR;
        if (whole > 0) ops->range(whole, a, a_slice, panel + kb0 * S * NR, kb1 - kb0, last, c, kb0 > 0);
        for (size_t kb = kb0; whole < n && kb < kb1; kb++)
            ops->block(p->kind, n - whole, a + (kb - kb0) * a_slice + whole * S, panel + kb * S * NR, kb + 1 < kb1 ? S : last,
                       c + whole * NR, kb > 0);
        if (kb1 == kblocks) store(p->out, c, p->m0 + r, n, n0, cols);
    }
}

/* block_product for a class with a block kernel. A group's panels are packed slice by slice while
   the first sub-block passes over them, then kept for the others; with several ranges, each panel
   of the group keeps its own accumulators in block_acc. The kernel takes BLOCK_PIECE tokens per
   call, the next slice's prefetches going between the calls, and a piece's results are stored
   right after its last slice. Every output element has the driver's order (slices in order, each
   from the same kernel), so the bits are those of one panel at a time. */
static int block_product_groups(const struct gemm_ops *ops, enum kind kind, const uint32_t *a, size_t kb_stride, size_t m0, size_t m1,
                                const struct weights *w, size_t N, size_t E, const struct destination *out) {
    const void *W = w->W;
    size_t ldw = w->ldw, S = ops->kp, w_es = kind == F32_FROM_F32 ? 4 : 2, kblocks = (E + S - 1) / S, rows = m1 - m0;
    size_t panel_bytes = kblocks * S * NR * 4, range = RANGE_ELEMENTS / S, ranges = kblocks > range ? (kblocks + range - 1) / range : 1;
    size_t sub = sub_block_tokens(E), group = group_columns(S, E, w->packed ? N : 0), need = w->packed ? 0 : group / NR * panel_bytes;
    if (need > 0 && reserve(&packed_group, &packed_group_size, need) != 0) return -1;
    struct product p = {ops, kind, a, kb_stride, m0, N, E, w, out};
    int resident = ops->range && kind == BF16_PAIRS && E % 16 == 0;
    for (size_t g0 = 0; g0 < N; g0 += group)
        for (size_t s0 = 0; s0 < rows; s0 += sub) {
            size_t s1 = rows - s0 < sub ? rows : s0 + sub, pieces = (s1 - s0 + BLOCK_PIECE - 1) / BLOCK_PIECE;
            for (size_t r0 = 0; r0 < ranges; r0++) {
                size_t kb1 = (r0 + 1) * range < kblocks ? (r0 + 1) * range : kblocks;
                for (size_t n0 = g0; n0 < N && n0 < g0 + group; n0 += NR) {
                    size_t cols = N - n0 < NR ? N - n0 : NR;
                    float *acc = block_acc + (ranges > 1 ? (n0 - g0) / NR * sub * NR : 0);
                    if (resident) {
                        range_pass(&p, w->packed ? NULL : packed_group + (n0 - g0) / NR * (panel_bytes / 4), n0, r0 * range, kb1, s0, s1, acc);
                        continue;
                    }
                    for (size_t kb = r0 * range; kb < kb1; kb++) {
                        size_t e0 = kb * S, kp = E - e0 < S ? E - e0 : S;
                        uint32_t *own = w->packed ? NULL : packed_group + (n0 - g0) / NR * (panel_bytes / 4) + kb * S * NR;
                        const uint32_t *panel = own ? own : w->packed + n0 / NR * w->panel_elements + kb * S * NR;
                        if (own && s0 == 0) ops->pack_weights(kind, (const char *)W + n0 * ldw * w_es, ldw, cols, e0, kp, own);
                        /* The next slice while the first sub-block packs this one; the next group's
                           first slice during the last sub-block (earlier, the caches would lose it). */
                        int group_end = kb + 1 == kblocks && (n0 + NR >= N || n0 + NR >= g0 + group);
                        struct prefetch pf = {0};
                        if (own && (group_end ? s1 == rows : s0 == 0)) pf = next_slice(kind, S, W, ldw, N, E, n0, kb);
                        for (size_t r = s0; r < s1; r += BLOCK_PIECE) {
                            size_t n = s1 - r < BLOCK_PIECE ? s1 - r : BLOCK_PIECE;
                            prefetch_lines(&pf, (slice_lines(&pf) + pieces - 1) / pieces);
                            ops->block(kind, n, a + kb * kb_stride * S * MR + r * S, panel, kp, acc + (r - s0) * NR, kb > 0);
                            if (kb + 1 == kblocks) store(out, acc + (r - s0) * NR, m0 + r, n, n0, cols);
                        }
                    }
                }
            }
        }
    return 0;
}

/* Tokens m0..m1 of C (+)= A W^T over E packed elements per row, their tiles at `a`
   (tile j of slice kb at a + (kb * kb_stride + j) * kp * MR, kp the class's slice length). A
   tile's results are stored right after its last slice. */
static int block_product(const struct gemm_ops *ops, enum kind kind, const uint32_t *a, size_t kb_stride, size_t m0, size_t m1,
                         const struct weights *w, size_t N, size_t E, const struct destination *out) {
    size_t ldw = w->ldw, S = ops->kp, w_es = kind == F32_FROM_F32 ? 4 : 2, kblocks = (E + S - 1) / S, tiles = (m1 - m0 + MR - 1) / MR;
    if (!block_acc) block_acc = aligned_alloc(64, (MC_MAX + MR) * NR * 4);
    if (!block_acc) return -1;
    if (kblocks == 0) { /* no inputs: C = (accumulate ? C : 0) */
        memset(block_acc, 0, (m1 - m0) * NR * sizeof(float));
        for (size_t n0 = 0; n0 < N; n0 += NR) store(out, block_acc, m0, m1 - m0, n0, N - n0 < NR ? N - n0 : NR);
        return 0;
    }
    if (ops->block) return block_product_groups(ops, kind, a, kb_stride, m0, m1, w, N, E, out);
    if (!packed_w) packed_w = aligned_alloc(64, KP_MAX * NR * 4);
    if (!packed_w) return -1;
    for (size_t n0 = 0; n0 < N; n0 += NR) {
        size_t cols = N - n0 < NR ? N - n0 : NR;
        for (size_t kb = 0; kb < kblocks; kb++) {
            size_t e0 = kb * S, kp = E - e0 < S ? E - e0 : S;
            const uint32_t *panel = w->packed ? w->packed + n0 / NR * w->panel_elements + kb * S * NR : packed_w;
            if (!w->packed) ops->pack_weights(kind, (const char *)w->W + n0 * ldw * w_es, ldw, cols, e0, kp, packed_w);
            struct prefetch pf = w->packed ? (struct prefetch){0} : next_slice(kind, S, w->W, ldw, N, E, n0, kb);
            size_t per_tile = (slice_lines(&pf) + tiles - 1) / tiles;
            for (size_t j = 0; j < tiles; j++) {
                prefetch_lines(&pf, per_tile);
                size_t t = m0 + j * MR, mr = m1 - t < MR ? m1 - t : MR;
                ops->tile(kind, mr, a + (kb * kb_stride + j) * S * MR, panel, kp, block_acc + j * MR * NR, kb > 0);
                if (kb + 1 == kblocks) store(out, block_acc + j * MR * NR, t, mr, n0, cols);
            }
        }
    }
    return 0;
}

/* C += the products of the odd last input of BF16 rows, which no pair holds. */
static void add_odd_input(const void *A, size_t lda, const void *W, size_t ldw, float *C, size_t ldc, size_t T, size_t N, size_t K) {
    const uint16_t *a16 = A, *w16 = W;
    for (size_t t = 0; t < T; t++) {
        float a = widen_bf16(a16[t * lda + K - 1]);
        for (size_t n = 0; n < N; n++) C[t * ldc + n] = fmaf(a, widen_bf16(w16[n * ldw + K - 1]), C[t * ldc + n]);
    }
}

size_t tessera_gemm_pack_granule(void) { return PACK_ROWS; }

/* Tiles of MR rows a packing of T rows holds per slice: T padded to whole PACK_ROWS. */
static size_t packed_tiles(size_t T) { return (T + PACK_ROWS - 1) / PACK_ROWS * PACK_ROWS / MR; }

size_t tessera_gemm_slice_length(int isa) { return ops_for(isa)->kp; }

size_t tessera_gemm_packed_bytes(int isa, size_t T, size_t K, int bf16) {
    size_t E = elements(kind_for(isa, bf16, 1), K), S = ops_for(isa)->kp;
    return ((E + S - 1) / S) * packed_tiles(T) * S * MR * 4 + 64;
}

void tessera_gemm_pack_activations(int isa, const void *A, size_t lda, size_t T, size_t K, int bf16, size_t t0, size_t t1, void *packed) {
    enum kind kind = kind_for(isa, bf16, 1);
    const struct gemm_ops *ops = ops_for(isa);
    if (ops->pack_pairs && kind == BF16_PAIRS) ops->pack_pairs(A, lda, T, elements(kind, K), t0, t1, packed_tiles(T) * MR * ops->kp, packed);
    else pack_tiles(kind, ops->kp, A, lda, T, elements(kind, K), t0 / MR, (t1 + MR - 1) / MR, packed_tiles(T), packed);
}

/* C (+)= A W^T from A's packing, the weights as `w` gives them. */
static int packed_product(int isa, const void *A, size_t lda, int bf16, const void *packed, const struct weights *w, int w_is_bf16,
                          float *C, size_t ldc, size_t T, size_t N, size_t K, int accumulate, int round_output,
                          const tessera_gemm_epilogue *e) {
    if (T == 0 || N == 0) return 0;
    const struct gemm_ops *ops = ops_for(isa);
    enum kind kind = kind_for(isa, bf16, w_is_bf16);
    size_t E = elements(kind, K), mc = block_tokens(ops, E), tiles = packed_tiles(T);
    int odd = kind == BF16_PAIRS && (K & 1); /* the odd last input is added afterwards, and rounding after it */
    struct destination out = {isa, C, ldc, accumulate, round_output && !odd, odd ? NULL : e};
    for (size_t m0 = 0; m0 < T; m0 += mc) {
        size_t m1 = T - m0 < mc ? T : m0 + mc;
        if (block_product(ops, kind, (const uint32_t *)packed + (m0 / MR) * ops->kp * MR, tiles, m0, m1, w, N, E, &out) != 0) return -1;
    }
    if (odd) add_odd_input(A, lda, w->W, w->ldw, C, ldc, T, N, K);
    if (odd && round_output) for (size_t t = 0; t < T; t++) tessera_round_bf16(isa, C + t * ldc, N);
    for (size_t t = 0; odd && e && t < T; t++) {
        if (e->kind == TESSERA_EPILOGUE_RESIDUAL) tessera_add(isa, e->residual + t * e->ld, C + t * ldc, e->sum + t * e->ld, N, 1);
        else tessera_activation(isa, e->activation, C + t * ldc, 1, N, 0, 1, NULL, e->bits + t * e->ld);
    }
    return 0;
}

int tessera_gemm_packed_nt(int isa, const void *A, size_t lda, int bf16, const void *packed, const void *W, int w_is_bf16, size_t ldw,
                           float *C, size_t ldc, size_t T, size_t N, size_t K, int accumulate, int round_output) {
    struct weights w = {W, ldw, NULL, 0};
    return packed_product(isa, A, lda, bf16, packed, &w, w_is_bf16, C, ldc, T, N, K, accumulate, round_output, NULL);
}

int tessera_gemm_packed_epilogue_nt(int isa, const void *A, size_t lda, int bf16, const void *packed, const void *W, int w_is_bf16,
                                    size_t ldw, float *C, size_t ldc, size_t T, size_t N, size_t K, int accumulate,
                                    const tessera_gemm_epilogue *epilogue) {
    struct weights w = {W, ldw, NULL, 0};
    return packed_product(isa, A, lda, bf16, packed, &w, w_is_bf16, C, ldc, T, N, K, accumulate, 1, epilogue);
}

/* C (+)= A W^T (rounded to BF16 when round_output), activations packed a block of tokens at a time
   into this thread's buffer. */
static int gemm(int isa, int bf16, const void *A, size_t lda, const struct weights *w, int w_is_bf16, float *C, size_t ldc,
                size_t T, size_t N, size_t K, int accumulate, int round_output) {
    if (T == 0 || N == 0) return 0;
    enum kind kind = kind_for(isa, bf16, w_is_bf16);
    size_t E = elements(kind, K), mc = block_tokens(ops_for(isa), E), a_es = bf16 ? 2 : 4;
    size_t need = tessera_gemm_packed_bytes(isa, mc, K, bf16);
    if (reserve(&packed_a, &packed_a_size, need) != 0) return -1;
    for (size_t m0 = 0; m0 < T; m0 += mc) {
        size_t m1 = T - m0 < mc ? T : m0 + mc, rows = m1 - m0;
        const char *a = (const char *)A + m0 * lda * a_es;
        tessera_gemm_pack_activations(isa, a, lda, rows, K, bf16, 0, rows, packed_a);
        if (packed_product(isa, a, lda, bf16, packed_a, w, w_is_bf16, C + m0 * ldc, ldc, rows, N, K, accumulate, round_output, NULL) != 0) return -1;
    }
    return 0;
}

int tessera_gemm_bf16_nt(int isa, const uint16_t *A, size_t lda, const uint16_t *W, size_t ldw, float *C, size_t ldc,
                         size_t T, size_t N, size_t K, int accumulate) {
    struct weights w = {W, ldw, NULL, 0};
    return gemm(isa, 1, A, lda, &w, 1, C, ldc, T, N, K, accumulate, 0);
}

int tessera_gemm_f32_nt(int isa, const float *A, size_t lda, const void *W, int w_is_bf16, size_t ldw, float *C, size_t ldc,
                        size_t T, size_t N, size_t K, int accumulate) {
    struct weights w = {W, ldw, NULL, 0};
    return gemm(isa, 0, A, lda, &w, w_is_bf16, C, ldc, T, N, K, accumulate, 0);
}

/* Packed elements of one panel of W's packing: every slice of K inputs, each a whole slice long. */
static size_t panel_elements(int isa, size_t K, int bf16) {
    size_t E = elements(kind_for(isa, bf16, 1), K), S = ops_for(isa)->kp;
    return (E + S - 1) / S * S * NR;
}

size_t tessera_gemm_piece_columns(int isa, size_t K, int bf16) {
    size_t E = elements(kind_for(isa, bf16, 1), K);
    return E == 0 ? NR : group_columns(ops_for(isa)->kp, E, 0);
}

size_t tessera_gemm_packed_weights_bytes(int isa, size_t N, size_t K, int bf16) {
    return (N + NR - 1) / NR * panel_elements(isa, K, bf16) * 4;
}

void tessera_gemm_pack_weights(int isa, const void *W, size_t ldw, int w_is_bf16, size_t N, size_t K, int bf16, void *packed) {
    const struct gemm_ops *ops = ops_for(isa);
    enum kind kind = kind_for(isa, bf16, w_is_bf16);
    size_t E = elements(kind, K), S = ops->kp, w_es = kind == F32_FROM_F32 ? 4 : 2, stride = panel_elements(isa, K, bf16);
    for (size_t n0 = 0; n0 < N; n0 += NR)
        for (size_t e0 = 0; e0 < E; e0 += S)
            ops->pack_weights(kind, (const char *)W + n0 * ldw * w_es, ldw, N - n0 < NR ? N - n0 : NR, e0, E - e0 < S ? E - e0 : S,
                              (uint32_t *)packed + n0 / NR * stride + e0 * NR);
}

int tessera_gemm_prepacked_nt(int isa, int bf16, const void *A, size_t lda, const void *W, int w_is_bf16, size_t ldw, const void *packed_w,
                              size_t packed_k, float *C, size_t ldc, size_t T, size_t N, size_t K, int accumulate, int round_output) {
    if (K > packed_k) return -1;
    struct weights w = {W, ldw, packed_w, panel_elements(isa, packed_k, bf16)};
    return gemm(isa, bf16, A, lda, &w, w_is_bf16, C, ldc, T, N, K, accumulate, round_output);
}
