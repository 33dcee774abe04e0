/* Element-wise steps of the decoder over FP32 rows, optionally rounding results to BF16 as a
 * BF16 model stores them. Plain loops the compiler vectorises; AVX-512 clones where the CPU
 * has it. Each call covers a range of rows, so the caller can split the work over cores. */
#include "CKernels.h"
#include <math.h>
#include <string.h>

#if defined(__x86_64__) && defined(__clang__)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "default")))
#else
#define VECTOR_CLONES
#endif

/* The nearest BF16 (ties to even) as the bits of an FP32; a NaN stays a quiet NaN. */
static inline uint32_t round_bf16_bits(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    uint32_t r = (b + 0x7fff + ((b >> 16) & 1)) & 0xffff0000u;
    return (b & 0x7fffffffu) > 0x7f800000u ? (b | 0x00400000u) & 0xffff0000u : r;
}

static inline float round_bf16(float f) {
    uint32_t r = round_bf16_bits(f);
    float out;
    memcpy(&out, &r, 4);
    return out;
}

VECTOR_CLONES void tessera_round_bf16(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = round_bf16(x[i]);
}

VECTOR_CLONES void tessera_add(const float *a, const float *b, float *out, size_t n, int round) {
    if (round)
        for (size_t i = 0; i < n; i++) out[i] = round_bf16(a[i] + b[i]);
    else
        for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

VECTOR_CLONES void tessera_add_bias(float *y, size_t rows, size_t width, const float *bias) {
    for (size_t r = 0; r < rows; r++)
        for (size_t i = 0; i < width; i++) y[r * width + i] += bias[i];
}

VECTOR_CLONES void tessera_norm(const float *x, size_t rows, size_t width, const float *gamma, const float *beta, float eps,
                                int rms, int round, float *out, uint16_t *out_bf16) {
#if defined(__clang__)
#pragma clang fp reassociate(on) /* vectorised sums */
#endif
    for (size_t r = 0; r < rows; r++) {
        const float *row = x + r * width;
        float mean = 0;
        if (!rms) {
            for (size_t i = 0; i < width; i++) mean += row[i];
            mean /= (float)width;
        }
        float var = 0;
        for (size_t i = 0; i < width; i++) { float d = row[i] - mean; var += d * d; }
        var /= (float)width;
        float inv = 1.0f / sqrtf(var + eps);
        if (out_bf16) {
            uint16_t *o = out_bf16 + r * width;
            for (size_t i = 0; i < width; i++)
                o[i] = (uint16_t)(round_bf16_bits((row[i] - mean) * inv * gamma[i] + (beta ? beta[i] : 0.0f)) >> 16);
        } else {
            float *o = out + r * width;
            for (size_t i = 0; i < width; i++) {
                float v = (row[i] - mean) * inv * gamma[i] + (beta ? beta[i] : 0.0f);
                o[i] = round ? round_bf16(v) : v;
            }
        }
    }
}

static inline float gelu(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); }
static inline float silu(float v) { return v / (1.0f + expf(-v)); }

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

VECTOR_CLONES void tessera_activation(int kind, const float *y, size_t rows, size_t f, int gated, int round, float *out,
                                      uint16_t *out_bf16) {
    size_t width = gated ? 2 * f : f;
    switch (kind) {
    case TESSERA_SQUARED_RELU: ACTIVATION(v > 0 ? v * v : 0.0f) break;
    case TESSERA_RELU: ACTIVATION(v > 0 ? v : 0.0f) break;
    case TESSERA_GELU: ACTIVATION(gelu(v)) break;
    default: ACTIVATION(silu(v)) break;
    }
}

#if defined(__x86_64__)
#include <immintrin.h>
/* e^x for x <= 0 (arguments of a max-subtracted softmax): 2^n * p(r), r = x - n ln 2, |r| <= ln2/2,
   p a degree-7 Taylor polynomial (relative error below 2e-7); underflows to 0. */
__attribute__((target("avx512f"))) static inline __m512 exp_nonpositive(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

__attribute__((target("avx512f"))) static void softmax_avx512(float *row, size_t visible, size_t total, float scale, int round) {
    size_t full = visible & ~(size_t)15;
    __mmask16 tail = (__mmask16)((1u << (visible - full)) - 1);
    __m512 vs = _mm512_set1_ps(scale), vmax = _mm512_set1_ps(-INFINITY);
    for (size_t s = 0; s < full; s += 16) vmax = _mm512_max_ps(vmax, _mm512_mul_ps(_mm512_loadu_ps(row + s), vs));
    if (tail) vmax = _mm512_mask_max_ps(vmax, tail, vmax, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, row + full), vs));
    __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(vmax)), vsum = _mm512_setzero_ps();
    for (size_t s = 0; s < full; s += 16) {
        __m512 e = exp_nonpositive(_mm512_fmsub_ps(_mm512_loadu_ps(row + s), vs, m));
        _mm512_storeu_ps(row + s, e);
        vsum = _mm512_add_ps(vsum, e);
    }
    if (tail) {
        __m512 e = exp_nonpositive(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(tail, row + full), vs, m));
        _mm512_mask_storeu_ps(row + full, tail, e);
        vsum = _mm512_mask_add_ps(vsum, tail, vsum, e);
    }
    float inv = 1.0f / _mm512_reduce_add_ps(vsum);
    for (size_t s = 0; s < visible; s++) row[s] = round ? round_bf16(row[s] * inv) : row[s] * inv;
    for (size_t s = visible; s < total; s++) row[s] = 0;
}
#endif

void tessera_causal_softmax(float *row, size_t visible, size_t total, float scale, int round) {
#if defined(__x86_64__)
    if (tessera_has_avx512bf16()) { softmax_avx512(row, visible, total, scale, round); return; }
#endif
    float m = -INFINITY;
    for (size_t s = 0; s < visible; s++) { row[s] *= scale; m = row[s] > m ? row[s] : m; }
    float sum = 0;
    for (size_t s = 0; s < visible; s++) { row[s] = expf(row[s] - m); sum += row[s]; }
    float inv = 1.0f / sum;
    for (size_t s = 0; s < visible; s++) row[s] = round ? round_bf16(row[s] * inv) : row[s] * inv;
    for (size_t s = visible; s < total; s++) row[s] = 0;
}

VECTOR_CLONES void tessera_attend_row(const float *q, const float *keys, const float *values, size_t ld, size_t visible, size_t d,
                                      float scale, int round, float *scores, float *out) {
#if defined(__clang__)
#pragma clang fp reassociate(on) /* vectorised dot products */
#endif
    for (size_t s = 0; s < visible; s++) {
        const float *k = keys + s * ld;
        float dot = 0;
        for (size_t i = 0; i < d; i++) dot += q[i] * k[i];
        scores[s] = dot;
    }
    tessera_causal_softmax(scores, visible, visible, scale, round);
    for (size_t i = 0; i < d; i++) out[i] = 0;
    for (size_t s = 0; s < visible; s++) {
        const float *v = values + s * ld;
        float p = scores[s];
        for (size_t i = 0; i < d; i++) out[i] += p * v[i];
    }
}
