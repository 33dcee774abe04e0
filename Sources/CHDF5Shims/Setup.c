/* libhdf5 made ready once per process, whichever thread asks first. */
#include "CHDF5Shims.h"
#include "Registration.h"
#include <pthread.h>
#include <stdio.h>

static pthread_once_t setup_once = PTHREAD_ONCE_INIT;
static const char *setup_failure;   /* written once, inside setup_once */
static char version_message[256];
static hid_t direct_driver = -1;

static void setup(void) {
    unsigned major = 0, minor = 0, release = 0;
    if (H5get_libversion(&major, &minor, &release) < 0) {
        setup_failure = "libhdf5 does not report its version";
        return;
    }
    if (major < H5_VERS_MAJOR || (major == H5_VERS_MAJOR && minor < H5_VERS_MINOR)) {
        snprintf(version_message, sizeof version_message,
                 "libhdf5 %u.%u.%u is older than the HDF5 %d.%d headers Tessera was built with; "
                 "install libhdf5 %d.%d or newer, or rebuild Tessera against this one",
                 major, minor, release, H5_VERS_MAJOR, H5_VERS_MINOR, H5_VERS_MAJOR, H5_VERS_MINOR);
        setup_failure = version_message;
        return;
    }
    if (H5open() < 0) {
        setup_failure = "libhdf5 cannot be initialised";
        return;
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (tessera_register_zstd_filter() < 0) {
        setup_failure = "cannot register the zstd HDF5 filter (32015)";
        return;
    }
    /* A driver that cannot be registered fails only the writes that ask for it. */
    direct_driver = tessera_register_direct_driver();
}

const char *tessera_hdf5_setup(void) {
    pthread_once(&setup_once, setup);
    return setup_failure;
}

hid_t tessera_direct_fapl(void) {
    if (tessera_hdf5_setup() != NULL || direct_driver < 0) return -1;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return -1;
    if (H5Pset_driver(fapl, direct_driver, NULL) < 0) { H5Pclose(fapl); return -1; }
    return fapl;
}
