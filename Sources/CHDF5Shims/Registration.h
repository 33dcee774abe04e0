#pragma once
#include <hdf5.h>
/* From HDF5 1.14 on, file drivers and filters are declared in developer headers. */
#if __has_include(<H5FDdevelop.h>)
#include <H5FDdevelop.h>
#endif
#if __has_include(<H5Zdevelop.h>)
#include <H5Zdevelop.h>
#endif

/* What tessera_hdf5_setup registers, each called once from it. */

/* Registers the Zstandard filter (id 32015, cd_values[0] = level), compatible with
   hdf5plugin, unless a filter 32015 is already available. Returns 0 on success. */
int tessera_register_zstd_filter(void);

/* Registers the O_DIRECT file driver; its identifier, or a negative value on failure. */
hid_t tessera_register_direct_driver(void);
