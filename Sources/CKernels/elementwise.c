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

static inline float round_bf16(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    uint32_t r = (b + 0x7fff + ((b >> 16) & 1)) & 0xffff0000u;
    r = (b & 0x7fffffffu) > 0x7f800000u ? (b | 0x00400000u) & 0xffff0000u : r; /* NaN stays a quiet NaN */
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
                                int rms, int round, float *out) {
    for (size_t r = 0; r < rows; r++) {
        const float *row = x + r * width;
        float *o = out + r * width;
        float mean = 0;
        if (!rms) {
            for (size_t i = 0; i < width; i++) mean += row[i];
            mean /= (float)width;
        }
        float var = 0;
        for (size_t i = 0; i < width; i++) { float d = row[i] - mean; var += d * d; }
        var /= (float)width;
        float inv = 1.0f / sqrtf(var + eps);
        for (size_t i = 0; i < width; i++) {
            float v = (row[i] - mean) * inv * gamma[i] + (beta ? beta[i] : 0.0f);
            o[i] = round ? round_bf16(v) : v;
        }
    }
}

static inline float gelu(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); }
static inline float silu(float v) { return v / (1.0f + expf(-v)); }

VECTOR_CLONES void tessera_activation(int kind, const float *y, size_t rows, size_t f, int gated, int round, float *out) {
    size_t width = gated ? 2 * f : f;
    for (size_t t = 0; t < rows; t++) {
        const float *in = y + t * width;
        float *o = out + t * f;
        for (size_t j = 0; j < f; j++) {
            float v = in[j], r;
            switch (kind) {
            case TESSERA_SQUARED_RELU: r = v > 0 ? v * v : 0; break;
            case TESSERA_RELU: r = v > 0 ? v : 0; break;
            case TESSERA_GELU: r = gelu(v); break;
            default: r = silu(v); break;
            }
            if (gated) r *= in[f + j];
            o[j] = round ? round_bf16(r) : r;
        }
    }
}

void tessera_causal_softmax(float *row, size_t visible, size_t total, int round) {
    float m = -INFINITY;
    for (size_t s = 0; s < visible; s++) m = row[s] > m ? row[s] : m;
    float sum = 0;
    for (size_t s = 0; s < visible; s++) { row[s] = expf(row[s] - m); sum += row[s]; }
    float inv = 1.0f / sum;
    for (size_t s = 0; s < visible; s++) row[s] = round ? round_bf16(row[s] * inv) : row[s] * inv;
    for (size_t s = visible; s < total; s++) row[s] = 0;
}
