/* The GEMM driver's software prefetch of the next panel slice of weights (gemm.c): a slice's rows lie
 * ldw apart, which hardware prefetchers do not follow, so its lines are prefetched a few at a time
 * between the micro-kernel calls of the slice before. */
#ifndef TESSERA_GEMM_PREFETCH_H
#define TESSERA_GEMM_PREFETCH_H
#include "gemm_internal.h"

/* Prefetches the weights of the panel slice after (n0, kb), spread over the block's tiles: its
   lines one at a time, `line` of row `row` next (`rows` rows of `row_lines` lines each). */
struct prefetch { const char *base; size_t row_bytes, row_lines, rows, row, line; };

static inline struct prefetch next_slice(enum kind kind, size_t S, const void *W, size_t ldw, size_t N, size_t E, size_t n0, size_t kb) {
    size_t kblocks = (E + S - 1) / S, w_es = kind == F32_FROM_F32 ? 4 : 2, el = kind == F32_FROM_F32 || kind == BF16_PAIRS ? 4 : 2;
    size_t ne0 = kb + 1 < kblocks ? (kb + 1) * S : 0, nn0 = kb + 1 < kblocks ? n0 : n0 + NR;
    size_t ncols = nn0 < N ? (N - nn0 < NR ? N - nn0 : NR) : 0, nkp = E - ne0 < S ? E - ne0 : S;
    size_t row_lines = (nkp * el + 63) / 64;
    return (struct prefetch){(const char *)W + nn0 * ldw * w_es + ne0 * el, ldw * w_es, row_lines, ncols, 0, 0};
}

/* Lines of the slice, the most prefetch_lines issues. */
static inline size_t slice_lines(const struct prefetch *pf) { return pf->rows * pf->row_lines; }

/* Prefetches up to n more lines of the slice. */
static inline void prefetch_lines(struct prefetch *pf, size_t n) {
    for (; n > 0 && pf->row < pf->rows; n--) {
        __builtin_prefetch(pf->base + pf->row * pf->row_bytes + 64 * pf->line, 0, 2);
        if (++pf->line == pf->row_lines) pf->line = 0, pf->row++;
    }
}
#endif
