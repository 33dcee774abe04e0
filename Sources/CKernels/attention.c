/* The data movement of attention around its two products: splitting qkv rows into rotated
 * queries and keys and the values (RoPE, rotate-half), and laying a query group's values out as
 * the second product's weights. Compiled once per instruction-set class (isa_variants.h), as the
 * other element-wise steps. Rotations are not contracted into FMAs, so every class gives the
 * same bits; a BF16 run's outputs are BF16 values, so their bit patterns are their high halves. */
#include "CKernels.h"
#include "bf16.h"
#include "isa_variants.h"

/* Stores of a rotated value v at index i of dst: as a float, or as BF16 bits. */
#define STORE_FLOAT(i, v) ((float *)dst)[i] = (v)
#define STORE_BITS(i, v) ((uint16_t *)dst)[i] = (uint16_t)(round_bf16_bits(v) >> 16)
/* One loop per output form, so that no store is predicated on the form. */
#define ROTATE(STORE)                                                                                        \
    {                                                                                                        \
        for (size_t i = 0; i < half; i++) {                                                                  \
            float a = src[i], b = src[i + half];                                                             \
            float x = a * c[i] - b * s[i], y = b * c[i] + a * s[i];                                          \
            STORE(i, x);                                                                                     \
            STORE(i + half, y);                                                                              \
        }                                                                                                    \
        for (size_t i = 2 * half; i < d; i++) STORE(i, src[i]);                                              \
    }

/* dst = src (d values) with RoPE on pairs (i, i + half) for i < half, the values past 2 * half
   copied: as the BF16 bits of the nearest BF16 when `bits` (a BF16 run), else as floats. */
BODY void rotate_body(const float *src, size_t d, size_t half, const float *c, const float *s, int bits, void *dst) {
#if defined(__clang__)
#pragma clang fp contract(off) /* x = a c - b s as two roundings and a subtraction, on every class */
#endif
    if (bits) ROTATE(STORE_BITS)
    else ROTATE(STORE_FLOAT)
}

/* q, keys and values hold BF16 bits when sh.round (a BF16 run), else floats. A BF16 run's qkv
   values are BF16 values already, so a value's bits are the high half of its float. */
BODY void split_body(tessera_attention_shape sh, const float *qkv, size_t t0, size_t t1, const float *cos_table,
                     const float *sin_table, void *q, void *keys, void *values) {
    size_t d = sh.head_dim, hpg = sh.heads_per_group, groups = sh.groups, half = sh.rotary_half, T = sh.tokens;
    size_t width = groups * (hpg + 2) * d, es = sh.round ? 2 : 4;
    for (size_t t = t0; t < t1; t++) {
        const float *c = cos_table + t * half, *s = sin_table + t * half;
        for (size_t g = 0; g < groups; g++) {
            const float *base = qkv + t * width + g * (hpg + 2) * d;
            for (size_t j = 0; j < hpg; j++)
                rotate_body(base + j * d, d, half, c, s, sh.round, (char *)q + ((g * T + t) * hpg + j) * d * es);
            size_t at = ((sh.start + t) * groups + g) * d;
            rotate_body(base + hpg * d, d, half, c, s, sh.round, (char *)keys + at * es);
            const float *v = base + (hpg + 1) * d;
            if (sh.round) {
                uint16_t *out = (uint16_t *)values + at;
                for (size_t i = 0; i < d; i++) { uint32_t b; memcpy(&b, v + i, 4); out[i] = (uint16_t)(b >> 16); }
            } else {
                memcpy((float *)values + at, v, d * sizeof(float));
            }
        }
    }
}

ISA_VARIANTS(attention_split,
             (tessera_attention_shape sh, const float *qkv, size_t t0, size_t t1, const float *cos_table, const float *sin_table,
              void *q, void *keys, void *values),
             split_body, (sh, qkv, t0, t1, cos_table, sin_table, q, keys, values))

#define BLOCK 16
/* Positions in blocks of 16: a block's rows (16 x d values) stay in L1 while its columns are
   written. Values and out are BF16 bits when `bits`, else floats. */
BODY void values_t_body(const void *values, size_t total, size_t groups, size_t d, size_t g, int bits, void *out) {
    size_t stride = groups * d;
    for (size_t p0 = 0; p0 < total; p0 += BLOCK) {
        size_t n = total - p0 < BLOCK ? total - p0 : BLOCK;
        for (size_t i = 0; i < d; i++) {
            size_t first = p0 * stride + g * d + i;
            if (bits) {
                const uint16_t *col = (const uint16_t *)values + first;
                uint16_t *o = (uint16_t *)out + i * total + p0;
                for (size_t p = 0; p < n; p++) o[p] = col[p * stride];
            } else {
                const float *col = (const float *)values + first;
                float *o = (float *)out + i * total + p0;
                for (size_t p = 0; p < n; p++) o[p] = col[p * stride];
            }
        }
    }
}

ISA_VARIANTS(attention_values_t, (const void *values, size_t total, size_t groups, size_t d, size_t g, int bits, void *out),
             values_t_body, (values, total, groups, d, g, bits, out))
