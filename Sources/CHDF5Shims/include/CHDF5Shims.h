#pragma once
#include <hdf5.h>
#include <stdint.h>
#include <stddef.h>

/* The C that Tessera's HDF5 module needs: HDF5 identifiers that are macros, the Zstandard
   filter, the O_DIRECT file driver, dataset listing and string attributes. Built against the
   HDF5 1.10, 1.12 and 1.14 (and later) APIs. Every function here is called through the HDF5
   module's serial executor: none may run concurrently with another libhdf5 call. */

#if !H5_VERSION_GE(1, 10, 5)
#error "Tessera needs HDF5 1.10.5 or newer (H5Dget_chunk_info)"
#endif
#if H5_VERSION_GE(1, 13, 0) && !H5_VERSION_GE(1, 14, 0)
#error "HDF5 1.13 is a development series: build against HDF5 1.10, 1.12 or 1.14 and later"
#endif

/* Prepares libhdf5 once per process (thread-safe; later calls return the first outcome):
   refuses a library older than the headers Tessera was built with (major.minor), initialises
   it, turns off its printing of error stacks on this thread, registers the Zstandard filter
   (32015) and Tessera's O_DIRECT driver. Returns NULL when ready, else why not. */
const char *tessera_hdf5_setup(void);

/* HDF5 identifiers that are macros calling H5open(); Swift cannot import them. */
static inline hid_t tessera_h5t_native_uint8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t tessera_h5t_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t tessera_h5t_native_double(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t tessera_h5t_native_int64(void) { return H5T_NATIVE_INT64; }
static inline hid_t tessera_h5t_native_int32(void) { return H5T_NATIVE_INT32; }
static inline hid_t tessera_h5t_native_int16(void) { return H5T_NATIVE_INT16; }
static inline hid_t tessera_h5t_native_int8(void) { return H5T_NATIVE_INT8; }
static inline hid_t tessera_h5t_std_u16le(void) { return H5T_STD_U16LE; }
static inline hid_t tessera_h5p_dataset_create(void) { return H5P_DATASET_CREATE; }
static inline hid_t tessera_h5p_link_create(void) { return H5P_LINK_CREATE; }
static inline hid_t tessera_h5p_file_access(void) { return H5P_FILE_ACCESS; }
static inline unsigned tessera_h5f_acc_trunc(void) { return H5F_ACC_TRUNC; }
static inline unsigned tessera_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline unsigned tessera_h5f_acc_rdwr(void) { return H5F_ACC_RDWR; }
static inline haddr_t tessera_haddr_undef(void) { return HADDR_UNDEF; }

/* A file-access property list for creating an HDF5 file whose data reach the disk with
   O_DIRECT (ordinary writes where the filesystem has no O_DIRECT); the file is a plain HDF5
   file. The caller closes the list; -1 on failure (or when tessera_hdf5_setup failed). */
hid_t tessera_direct_fapl(void);

/* Newline-separated paths (relative to loc) of every dataset below loc; malloc'd, caller frees. */
char *tessera_list_datasets(hid_t loc);

/* A string attribute (variable- or fixed-length) as a malloc'd C string, or NULL. */
char *tessera_read_string_attr(hid_t obj, const char *name);

/* Writes a fixed-length, null-terminated UTF-8 string attribute (replacing one of the same name). */
int tessera_write_string_attr(hid_t obj, const char *name, const char *value);
