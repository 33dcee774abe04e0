#pragma once
#include <stddef.h>
#include <stdint.h>

/* The codecs' C: HDF5's byte shuffle (AVX-512 VBMI for 2-byte elements when present), SHA-256
   (the x86 SHA extensions when present) and libzstd settings from its experimental API. */

/* HDF5's byte shuffle filter and its inverse over n elements of es bytes (trailing bytes untouched). */
void tessera_shuffle(const uint8_t *src, uint8_t *dst, size_t n, size_t es);
void tessera_unshuffle(const uint8_t *src, uint8_t *dst, size_t n, size_t es);

/* Part of a shuffle: the k elements at src become elements at..at+k of the n-element shuffled
   chunk dst (byte b of element i at b*n + i). AVX-512 VBMI for 2-byte elements when present. */
void tessera_shuffle_into(const uint8_t *src, size_t k, size_t es, uint8_t *dst, size_t n, size_t at);

/* `rows` runs of `k` elements, at `at`, `at + src_stride`, ... of a chunk of `n` elements
   (shuffled when `shuffled`, else plain), written `dst_stride` elements apart at `dst`. */
void tessera_unshuffle_rows(const uint8_t *src, size_t n, size_t at, size_t src_stride, size_t rows, size_t k,
                            size_t es, int shuffled, uint8_t *dst, size_t dst_stride);

/* Makes a zstd context parse every block as literals only (no match search): for weights,
   whose redundancy is all in the byte statistics. Returns 0 if this libzstd cannot (< 1.5.4). */
struct ZSTD_CCtx_s;
int tessera_zstd_literals_only(struct ZSTD_CCtx_s *ctx);

/* Makes a zstd decompression context skip (ignore != 0) or check frames' content checksums.
   Returns 0, or -1 when this libzstd cannot. */
struct ZSTD_DCtx_s;
int tessera_zstd_ignore_checksum(struct ZSTD_DCtx_s *ctx, int ignore);

/* SHA-256 (the x86 SHA extensions when present, portable C otherwise). update2 feeds two
   independent messages at once, interleaving their rounds on one core. */
typedef struct { uint32_t h[8]; uint8_t buffer[64]; size_t buffered; uint64_t total; } tessera_sha256;
void tessera_sha256_init(tessera_sha256 *s);
void tessera_sha256_update(tessera_sha256 *s, const void *data, size_t n);
void tessera_sha256_update2(tessera_sha256 *s, const void *data, size_t n, tessera_sha256 *r, const void *data2, size_t n2);
void tessera_sha256_final(tessera_sha256 *s, uint8_t out[32]);
