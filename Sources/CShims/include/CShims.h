#pragma once
#include <hdf5.h>
#include <stdint.h>
#include <stddef.h>

/* HDF5 identifiers that are macros calling H5open(); Swift cannot import them. */
static inline hid_t tessera_h5t_native_uint16(void) { return H5T_NATIVE_UINT16; }
static inline hid_t tessera_h5t_native_uint8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t tessera_h5t_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t tessera_h5t_native_double(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t tessera_h5t_native_int64(void) { return H5T_NATIVE_INT64; }
static inline hid_t tessera_h5t_native_int32(void) { return H5T_NATIVE_INT32; }
static inline hid_t tessera_h5t_native_int16(void) { return H5T_NATIVE_INT16; }
static inline hid_t tessera_h5t_native_int8(void) { return H5T_NATIVE_INT8; }
static inline hid_t tessera_h5t_std_u16le(void) { return H5T_STD_U16LE; }
static inline hid_t tessera_h5t_c_s1(void) { return H5T_C_S1; }
static inline hid_t tessera_h5p_dataset_create(void) { return H5P_DATASET_CREATE; }
static inline hid_t tessera_h5p_dataset_access(void) { return H5P_DATASET_ACCESS; }
static inline hid_t tessera_h5p_dataset_xfer(void) { return H5P_DATASET_XFER; }
static inline hid_t tessera_h5p_link_create(void) { return H5P_LINK_CREATE; }
static inline hid_t tessera_h5p_file_access(void) { return H5P_FILE_ACCESS; }
static inline unsigned tessera_h5f_acc_trunc(void) { return H5F_ACC_TRUNC; }
static inline unsigned tessera_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline unsigned tessera_h5f_acc_rdwr(void) { return H5F_ACC_RDWR; }
static inline haddr_t tessera_haddr_undef(void) { return HADDR_UNDEF; }

/* Flushes the filesystem holding fd (glibc exports it; the declaration needs _GNU_SOURCE). */
extern int syncfs(int fd);

/* Registers the Zstandard filter (id 32015, cd_values[0] = level) in this process,
   compatible with hdf5plugin. Returns 0 on success. */
int tessera_register_zstd(void);

/* A file-access property list for creating an HDF5 file whose data reach the disk with
   O_DIRECT (ordinary writes where the filesystem has no O_DIRECT); the file is a plain HDF5
   file. The caller closes the list; -1 on failure. */
hid_t tessera_direct_fapl(void);

/* Newline-separated paths (relative to loc) of every dataset below loc; malloc'd, caller frees. */
char *tessera_list_datasets(hid_t loc);

/* A string attribute (variable- or fixed-length) as a malloc'd C string, or NULL. */
char *tessera_read_string_attr(hid_t obj, const char *name);

/* Writes a fixed-length, null-terminated UTF-8 string attribute (replacing one of the same name). */
int tessera_write_string_attr(hid_t obj, const char *name, const char *value);

/* Writes / reads a 64-bit integer attribute. */
int tessera_write_int_attr(hid_t obj, const char *name, int64_t value);
int tessera_read_int_attr(hid_t obj, const char *name, int64_t *value);

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

/* Makes glibc serve large blocks from the heap (not one mmap each) and keep freed memory for
   reuse, so buffers of tens of MB allocated again and again are not page-faulted in each time. */
void tessera_keep_large_allocations_in_heap(void);

/* Sends SIGINT, SIGTERM and SIGHUP to a pipe (one byte, the signal number, per signal) and
   ignores SIGPIPE and SIGXFSZ so failed writes return EPIPE / EFBIG. Returns the pipe's read
   end, or -1. */
int tessera_catch_termination(void);

/* Ends the process as a broken pipe ends a Unix tool: killed by SIGPIPE (never returns). */
void tessera_die_of_broken_pipe(void) __attribute__((noreturn));
