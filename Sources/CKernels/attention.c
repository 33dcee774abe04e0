/* The data movement of attention around its two products: splitting qkv rows into rotated
 * queries and keys and the values (RoPE, rotate-half), and laying a query group's values out as
 * the second product's weights. Compiled once per instruction-set class (isa_variants.h), as the
 * other element-wise steps. Rotations are not contracted into FMAs, so every class gives the
 * same bits; a BF16 run's outputs are BF16 values, so their bit patterns are their high halves. */
#include "CKernels.h"
#include "bf16.h"
#include "isa_variants.h"

/* Stores of a rotated value v at index i: as a float, as BF16 bits, or both. */
#define STORE_FLOAT(i, v) dst[i] = (v)
#define STORE_BITS(i, v) dst_bits[i] = (uint16_t)(round_bf16_bits(v) >> 16)
#define STORE_BOTH(i, v) (STORE_FLOAT(i, v), STORE_BITS(i, v))
/* One loop per output form, so that no store is predicated on which outputs there are. */
#define ROTATE(STORE)                                                                                        \
    {                                                                                                        \
        for (size_t i = 0; i < half; i++) {                                                                  \
            float a = src[i], b = src[i + half];                                                             \
            float x = a * c[i] - b * s[i], y = b * c[i] + a * s[i];                                          \
            if (round) x = round_bf16(x), y = round_bf16(y);                                                 \
            STORE(i, x);                                                                                     \
            STORE(i + half, y);                                                                              \
        }                                                                                                    \
        for (size_t i = 2 * half; i < d; i++) STORE(i, src[i]);                                              \
    }

/* dst = src (d values) with RoPE on pairs (i, i + half) for i < half, rounded to BF16 when
   `round`; the values past 2 * half are copied. Either output may be NULL: dst gets floats,
   dst_bits the BF16 bits of the same values (a BF16 run's values are BF16 already, so exact). */
BODY void rotate_body(const float *src, size_t d, size_t half, const float *c, const float *s, int round, float *dst,
                      uint16_t *dst_bits) {
#if defined(__clang__)
#pragma clang fp contract(off) /* x = a c - b s as two roundings and a subtraction, on every class */
#endif
    if (dst && dst_bits) ROTATE(STORE_BOTH)
    else if (dst) ROTATE(STORE_FLOAT)
    else if (dst_bits) ROTATE(STORE_BITS)
}

BODY void split_body(tessera_attention_shape sh, const float *qkv, size_t t0, size_t t1, const float *cos_table,
                     const float *sin_table, float *q, uint16_t *q_bits, float *keys, uint16_t *key_bits, float *values) {
    size_t d = sh.head_dim, hpg = sh.heads_per_group, groups = sh.groups, half = sh.rotary_half, T = sh.tokens;
    size_t width = groups * (hpg + 2) * d;
    for (size_t t = t0; t < t1; t++) {
        const float *c = cos_table + t * half, *s = sin_table + t * half;
        for (size_t g = 0; g < groups; g++) {
            const float *base = qkv + t * width + g * (hpg + 2) * d;
            for (size_t j = 0; j < hpg; j++) {
                size_t at = ((g * T + t) * hpg + j) * d;
                rotate_body(base + j * d, d, half, c, s, sh.round, q ? q + at : NULL, q_bits ? q_bits + at : NULL);
            }
            size_t at = ((sh.start + t) * groups + g) * d;
            rotate_body(base + hpg * d, d, half, c, s, sh.round, keys + at, key_bits ? key_bits + at : NULL);
            for (size_t i = 0; i < d; i++) values[at + i] = base[(hpg + 1) * d + i];
        }
    }
}

ISA_VARIANTS(attention_split,
             (tessera_attention_shape sh, const float *qkv, size_t t0, size_t t1, const float *cos_table, const float *sin_table,
              float *q, uint16_t *q_bits, float *keys, uint16_t *key_bits, float *values),
             split_body, (sh, qkv, t0, t1, cos_table, sin_table, q, q_bits, keys, key_bits, values))

#define BLOCK 16
/* Positions in blocks of 16: a block's rows (16 x d values) stay in L1 while its columns are written. */
BODY void values_t_body(const float *values, size_t total, size_t groups, size_t d, size_t g, int bits, void *out) {
    const float *first = values + g * d;
    size_t stride = groups * d;
    for (size_t p0 = 0; p0 < total; p0 += BLOCK) {
        size_t n = total - p0 < BLOCK ? total - p0 : BLOCK;
        for (size_t i = 0; i < d; i++) {
            const float *col = first + p0 * stride + i;
            if (bits) {
                uint16_t *o = (uint16_t *)out + i * total + p0;
                for (size_t p = 0; p < n; p++) { uint32_t b; memcpy(&b, col + p * stride, 4); o[p] = (uint16_t)(b >> 16); }
            } else {
                float *o = (float *)out + i * total + p0;
                for (size_t p = 0; p < n; p++) o[p] = col[p * stride];
            }
        }
    }
}

ISA_VARIANTS(attention_values_t, (const float *values, size_t total, size_t groups, size_t d, size_t g, int bits, void *out),
             values_t_body, (values, total, groups, d, g, bits, out))
