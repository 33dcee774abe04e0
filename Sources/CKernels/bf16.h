/* BF16 <-> FP32 bit conversions shared by the kernels. */
#ifndef TESSERA_BF16_H
#define TESSERA_BF16_H
#include <stdint.h>
#include <string.h>

/* The nearest BF16 (ties to even) as the bits of an FP32; a NaN stays a quiet NaN. */
static inline uint32_t round_bf16_bits(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    uint32_t r = (b + 0x7fff + ((b >> 16) & 1)) & 0xffff0000u;
    return (b & 0x7fffffffu) > 0x7f800000u ? (b | 0x00400000u) & 0xffff0000u : r;
}

/* f rounded to the nearest BF16, kept in FP32. */
static inline float round_bf16(float f) {
    uint32_t r = round_bf16_bits(f);
    float out;
    memcpy(&out, &r, 4);
    return out;
}

/* A BF16 bit pattern as FP32 (exact). */
static inline float widen_bf16(uint16_t v) {
    uint32_t b = (uint32_t)v << 16;
    float f;
    memcpy(&f, &b, 4);
    return f;
}
#endif
