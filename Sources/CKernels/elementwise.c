/* Element-wise steps of the decoder over FP32 rows, optionally rounding results to BF16 as a
 * BF16 model stores them. Each is one plain loop body the compiler vectorises, compiled once per
 * instruction-set class (isa_variants.h); the kernel path chosen for the GEMMs picks the variant,
 * so a path gives the same bits on every x86 CPU that runs it. Each call covers a range of rows,
 * so the caller can split the work over cores; a row's result never depends on the others. */
#include "CKernels.h"
#include "activation.h"
#include "bf16.h"
#include "isa_variants.h"
#include <math.h>
#include <string.h>

BODY void round_body(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = round_bf16(x[i]);
}

BODY void to_bf16_body(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = (uint16_t)(round_bf16_bits(src[i]) >> 16);
}

ISA_VARIANTS(f32_to_bf16, (const float *src, uint16_t *dst, size_t n), to_bf16_body, (src, dst, n))

BODY void add_body(const float *a, const float *b, float *out, size_t n, int round) {
    if (round)
        for (size_t i = 0; i < n; i++) out[i] = round_bf16(a[i] + b[i]);
    else
        for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

BODY void add_bias_body(float *y, size_t rows, size_t width, const float *bias) {
    for (size_t r = 0; r < rows; r++)
        for (size_t i = 0; i < width; i++) y[r * width + i] += bias[i];
}

/* A normalised row's stores: as BF16 bits, rounded floats or floats, with or without beta, one
   loop each (a condition inside the loop would be turned into predicated loads and stores).
   Without beta the sum still adds 0, as with a zero beta, so -0 becomes +0 the same way. */
#define NORM_LOOP(BETA, store) for (size_t i = 0; i < width; i++) { float v = (row[i] - mean) * inv * gamma[i] + (BETA); store; }
#define NORM_STORES(BETA)                                                                          \
    if (out_bf16) NORM_LOOP(BETA, out_bf16[r * width + i] = (uint16_t)(round_bf16_bits(v) >> 16))  \
    else if (round) NORM_LOOP(BETA, out[r * width + i] = round_bf16(v))                             \
    else NORM_LOOP(BETA, out[r * width + i] = v)

/* The mean (0 for RMS) and the mean square deviation of a row, summed in vector lanes (the only
   reassociation: the normalisation itself is evaluated as written). */
BODY void moments_body(const float *row, size_t width, int rms, float *mean_out, float *var_out) {
#if defined(__clang__)
#pragma clang fp reassociate(on)
#endif
    float mean = 0;
    if (!rms) {
        for (size_t i = 0; i < width; i++) mean += row[i];
        mean /= (float)width;
    }
    float var = 0;
    for (size_t i = 0; i < width; i++) { float d = row[i] - mean; var += d * d; }
    *mean_out = mean;
    *var_out = var / (float)width;
}

BODY void norm_body(const float *x, size_t rows, size_t width, const float *gamma, const float *beta, float eps, int rms, int round,
                    float *out, uint16_t *out_bf16) {
    for (size_t r = 0; r < rows; r++) {
        const float *row = x + r * width;
        float mean, var;
        moments_body(row, width, rms, &mean, &var);
        float inv = 1.0f / sqrtf(var + eps);
        if (beta) NORM_STORES(beta[i])
        else NORM_STORES(0.0f)
    }
}

/* One loop per activation, gating and output form, so each vectorises. */
#define ACTIVATION_LOOP(expr, gate, store)                                        \
    for (size_t t = 0; t < rows; t++) {                                           \
        const float *in = y + t * width;                                          \
        for (size_t j = 0; j < f; j++) {                                          \
            float v = in[j];                                                      \
            float r = (expr) gate;                                                \
            store;                                                                \
        }                                                                         \
    }
#define ACTIVATION_STORES(expr, gate)                                                                          \
    if (out_bf16) ACTIVATION_LOOP(expr, gate, out_bf16[t * f + j] = (uint16_t)(round_bf16_bits(r) >> 16))        \
    else if (round) ACTIVATION_LOOP(expr, gate, out[t * f + j] = round_bf16(r))                                  \
    else ACTIVATION_LOOP(expr, gate, out[t * f + j] = r)
#define ACTIVATION(expr)                                                                                       \
    if (gated) ACTIVATION_STORES(expr, * in[f + j])                                                           \
    else ACTIVATION_STORES(expr, )

BODY void activation_body(int kind, const float *y, size_t rows, size_t f, int gated, int round, float *out, uint16_t *out_bf16) {
    size_t width = gated ? 2 * f : f;
    ACTIVATION_KINDS(kind, ACTIVATION)
}


ISA_VARIANTS(round_bf16, (float *x, size_t n), round_body, (x, n))
ISA_VARIANTS(add, (const float *a, const float *b, float *out, size_t n, int round), add_body, (a, b, out, n, round))
ISA_VARIANTS(add_bias, (float *y, size_t rows, size_t width, const float *bias), add_bias_body, (y, rows, width, bias))
ISA_VARIANTS(norm, (const float *x, size_t rows, size_t width, const float *gamma, const float *beta, float eps, int rms, int round,
                    float *out, uint16_t *out_bf16), norm_body, (x, rows, width, gamma, beta, eps, rms, round, out, out_bf16))
ISA_VARIANTS(activation, (int kind, const float *y, size_t rows, size_t f, int gated, int round, float *out, uint16_t *out_bf16),
             activation_body, (kind, y, rows, f, gated, round, out, out_bf16))

#define LANES 16
/* Vectors of 16 lanes, split by the compiler into the class's registers. Their helpers are
   inlined into each class's variant, so no vector crosses a call (-Wpsabi warns about calls
   between classes with different vector registers). */
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpsabi"
#endif
typedef float lanes_f32 __attribute__((ext_vector_type(LANES)));
typedef int32_t lanes_i32 __attribute__((ext_vector_type(LANES)));

BODY lanes_f32 load_lanes(const float *p) {
    lanes_f32 v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* The first n (< LANES) values at p in lanes 0..n, `fill` in the others. */
BODY lanes_f32 load_first(const float *p, size_t n, float fill) {
    float v[LANES];
    for (size_t j = 0; j < LANES; j++) v[j] = j < n ? p[j] : fill;
    return load_lanes(v);
}

/* e^x for x <= 0 (arguments of a max-subtracted softmax), lane by lane: 2^n * p(r),
   r = x - n ln 2, |r| <= ln2/2, p a degree-7 Taylor polynomial (relative error below 2e-7);
   0 below -87 (and for -infinity). */
BODY lanes_f32 exp_nonpositive(lanes_f32 x) {
    lanes_f32 c = x < -87.0f ? (lanes_f32)-87.0f : x;
    lanes_f32 n = __builtin_elementwise_rint(c * 1.44269504088896341f);
    lanes_f32 r = c - n * 0.693145751953125f;
    r = r - n * 1.428606765330187045e-06f;
    lanes_f32 p = 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    lanes_f32 scale = (lanes_f32)((__builtin_convertvector(n, lanes_i32) + 127) << 23);
    return x < -87.0f ? (lanes_f32)0.0f : p * scale;
}

/* Softmax of scale * row[0..visible) in place, row[visible..total) set to 0 (or, with out_bf16,
   as BF16 bits there, the row left holding scratch). Maximum and sum run in 16 fixed lanes
   (position mod 16; a short last group padded with -infinity, whose e^x is 0) summed in lane
   order, so the result depends on the row alone. The lanes are a vector of the class's width. */
BODY void softmax_body(float *row, size_t visible, size_t total, float scale, int round, uint16_t *out_bf16) {
    size_t full = visible / LANES * LANES, rest = visible - full;
    lanes_f32 mx = -INFINITY, sum = 0;
    for (size_t s = 0; s < full; s += LANES) {
        lanes_f32 v = load_lanes(row + s) * scale;
        mx = v > mx ? v : mx;
    }
    if (rest > 0) {
        lanes_f32 v = load_first(row + full, rest, -INFINITY) * scale;
        mx = v > mx ? v : mx;
    }
    float m = mx[0];
    for (size_t j = 1; j < LANES; j++) m = mx[j] > m ? mx[j] : m;
    for (size_t s = 0; s < full; s += LANES) {
        lanes_f32 e = exp_nonpositive(load_lanes(row + s) * scale - m);
        memcpy(row + s, &e, sizeof e);
        sum += e;
    }
    if (rest > 0) {
        lanes_f32 e = exp_nonpositive(load_first(row + full, rest, -INFINITY) * scale - m);
        memcpy(row + full, &e, rest * sizeof(float));
        sum += e;
    }
    float total_sum = 0;
    for (size_t j = 0; j < LANES; j++) total_sum += sum[j];
    float inv = 1.0f / total_sum;
    if (out_bf16) {
        for (size_t s = 0; s < visible; s++) out_bf16[s] = (uint16_t)(round_bf16_bits(row[s] * inv) >> 16);
        for (size_t s = visible; s < total; s++) out_bf16[s] = 0;
        return;
    }
    if (round) for (size_t s = 0; s < visible; s++) row[s] = round_bf16(row[s] * inv);
    else for (size_t s = 0; s < visible; s++) row[s] = row[s] * inv;
    for (size_t s = visible; s < total; s++) row[s] = 0;
}

ISA_VARIANTS(causal_softmax, (float *row, size_t visible, size_t total, float scale, int round, uint16_t *out_bf16), softmax_body,
             (row, visible, total, scale, round, out_bf16))
