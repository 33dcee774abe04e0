#define _GNU_SOURCE
#include "CHDF5Shims.h"
#include "Registration.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* An HDF5 file driver for writing stores: data reach the file with O_DIRECT (no page-cache
   copy; on virtual machines, filling fresh page-cache pages costs more than the compression
   around it). Writes at or after the staged window's start are gathered in an aligned
   buffer and written out in whole 4 KiB pages; the few metadata writes HDF5 makes below it
   go through an ordinary descriptor (the two never touch the same page). Reads see both.
   Files are plain HDF5 files: any driver opens them. Without O_DIRECT support (tmpfs) every
   write goes through the ordinary descriptor. */

#define DIRECT_PAGE ((size_t)4096)
#define DIRECT_STAGE ((size_t)16 << 20)

typedef struct {
    H5FD_t pub;
    int fd;          /* O_DIRECT, or -1 */
    int bfd;         /* ordinary */
    haddr_t eoa, eof;
    uint8_t *stage;  /* DIRECT_STAGE bytes, page aligned: the file from s0 on */
    haddr_t s0;      /* a page boundary */
    size_t slen;     /* staged bytes (gaps zero) */
    dev_t dev;
    ino_t ino;
} direct_file;

static int write_all(int fd, const uint8_t *p, size_t n, off_t at) {
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, at);
        if (w < 0) { if (errno == EINTR) continue; return -1; }
        p += w; n -= (size_t)w; at += w;
    }
    return 0;
}

/* Writes the staged whole pages before `upto` (everything, the last page padded, if upto is
   HADDR_UNDEF) and slides the window past them. */
static int direct_flush_stage(direct_file *f, haddr_t upto) {
    size_t n;
    if (upto == HADDR_UNDEF) n = (f->slen + DIRECT_PAGE - 1) / DIRECT_PAGE * DIRECT_PAGE;
    else n = upto <= f->s0 ? 0 : ((size_t)(upto - f->s0) < f->slen ? (size_t)(upto - f->s0) : f->slen) / DIRECT_PAGE * DIRECT_PAGE;
    if (n == 0) return 0;
    if (n > f->slen) memset(f->stage + f->slen, 0, n - f->slen);
    if (write_all(f->fd, f->stage, n, (off_t)f->s0) < 0) return -1;
    if (upto == HADDR_UNDEF) return 0;   /* the window stays: later writes may extend its last page */
    memmove(f->stage, f->stage + n, f->slen - n);
    f->s0 += n;
    f->slen -= n;
    return 0;
}

static H5FD_t *direct_open(const char *name, unsigned flags, hid_t fapl, haddr_t maxaddr) {
    (void)fapl;
    int o = (flags & H5F_ACC_RDWR) ? O_RDWR : O_RDONLY;
    if (flags & H5F_ACC_TRUNC) o |= O_TRUNC;
    if (flags & H5F_ACC_CREAT) o |= O_CREAT;
    int bfd = open(name, o | O_CLOEXEC, 0666);
    if (bfd < 0) return NULL;
    direct_file *f = calloc(1, sizeof *f);
    if (!f) { close(bfd); return NULL; }
    f->bfd = bfd;
    f->fd = (flags & H5F_ACC_RDWR) ? open(name, (o & ~(O_TRUNC | O_CREAT)) | O_DIRECT | O_CLOEXEC) : -1;
    if (f->fd >= 0 && posix_memalign((void **)&f->stage, DIRECT_PAGE, DIRECT_STAGE) != 0) {
        close(f->fd); f->fd = -1; f->stage = NULL;
    }
    struct stat st;
    if (fstat(bfd, &st) < 0) { if (f->fd >= 0) close(f->fd); free(f->stage); close(bfd); free(f); return NULL; }
    f->eof = (haddr_t)st.st_size;
    f->s0 = (f->eof + DIRECT_PAGE - 1) / DIRECT_PAGE * DIRECT_PAGE;
    if (f->s0 > f->eof && f->fd >= 0) {
        /* An existing file's last partial page is staged, so that page is written by one path only. */
        f->s0 -= DIRECT_PAGE;
        f->slen = (size_t)(f->eof - f->s0);
        if (pread(bfd, f->stage, f->slen, (off_t)f->s0) != (ssize_t)f->slen) {
            close(f->fd); free(f->stage); close(bfd); free(f); return NULL;
        }
    }
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    (void)maxaddr;
    return (H5FD_t *)f;
}

static herr_t direct_close(H5FD_t *file) {
    direct_file *f = (direct_file *)file;
    int rc = 0;
    if (f->fd >= 0) {
        if (direct_flush_stage(f, HADDR_UNDEF) < 0) rc = -1;
        if (ftruncate(f->bfd, (off_t)f->eof) < 0) rc = -1;
        close(f->fd);
    }
    if (close(f->bfd) < 0) rc = -1;
    free(f->stage);
    free(f);
    return rc;
}

static int direct_cmp(const H5FD_t *a, const H5FD_t *b) {
    const direct_file *f = (const direct_file *)a, *g = (const direct_file *)b;
    if (f->dev != g->dev) return f->dev < g->dev ? -1 : 1;
    if (f->ino != g->ino) return f->ino < g->ino ? -1 : 1;
    return 0;
}

static herr_t direct_query(const H5FD_t *file, unsigned long *flags) {
    (void)file;
    *flags = H5FD_FEAT_AGGREGATE_METADATA | H5FD_FEAT_ACCUMULATE_METADATA | H5FD_FEAT_DATA_SIEVE |
             H5FD_FEAT_AGGREGATE_SMALLDATA;
#ifdef H5FD_FEAT_DEFAULT_VFD_COMPATIBLE
    *flags |= H5FD_FEAT_DEFAULT_VFD_COMPATIBLE;
#endif
    return 0;
}

static haddr_t direct_get_eoa(const H5FD_t *file, H5FD_mem_t type) { (void)type; return ((const direct_file *)file)->eoa; }
static herr_t direct_set_eoa(H5FD_t *file, H5FD_mem_t type, haddr_t addr) { (void)type; ((direct_file *)file)->eoa = addr; return 0; }
static haddr_t direct_get_eof(const H5FD_t *file, H5FD_mem_t type) { (void)type; return ((const direct_file *)file)->eof; }

static herr_t direct_get_handle(H5FD_t *file, hid_t fapl, void **handle) {
    (void)fapl;
    *handle = &((direct_file *)file)->bfd;
    return 0;
}

static herr_t direct_read(H5FD_t *file, H5FD_mem_t type, hid_t dxpl, haddr_t addr, size_t size, void *buf) {
    (void)type; (void)dxpl;
    direct_file *f = (direct_file *)file;
    uint8_t *p = buf;
    haddr_t split = f->fd >= 0 ? f->s0 : HADDR_MAX;
    while (size > 0 && addr < split) {   /* below the window: the file */
        size_t n = split - addr < size ? (size_t)(split - addr) : size;
        ssize_t r = pread(f->bfd, p, n, (off_t)addr);
        if (r < 0) { if (errno == EINTR) continue; return -1; }
        if (r == 0) { memset(p, 0, n); r = (ssize_t)n; }   /* beyond the end: zeros */
        p += r; addr += (haddr_t)r; size -= (size_t)r;
    }
    if (size > 0) {   /* in or after the window */
        size_t off = (size_t)(addr - f->s0);
        size_t have = off < f->slen ? f->slen - off : 0;
        if (have > size) have = size;
        memcpy(p, f->stage + off, have);
        memset(p + have, 0, size - have);
    }
    return 0;
}

static herr_t direct_write(H5FD_t *file, H5FD_mem_t type, hid_t dxpl, haddr_t addr, size_t size, const void *buf) {
    (void)type; (void)dxpl;
    direct_file *f = (direct_file *)file;
    const uint8_t *p = buf;
    if (addr + size > f->eof) f->eof = addr + size;
    if (f->fd < 0) return write_all(f->bfd, p, size, (off_t)addr);
    if (addr < f->s0) {   /* below the window: the ordinary descriptor */
        size_t n = f->s0 - addr < size ? (size_t)(f->s0 - addr) : size;
        if (write_all(f->bfd, p, n, (off_t)addr) < 0) return -1;
        p += n; addr += n; size -= n;
    }
    while (size > 0) {
        if (addr - f->s0 >= DIRECT_STAGE || addr - f->s0 + (size < DIRECT_PAGE ? size : DIRECT_PAGE) > DIRECT_STAGE) {
            /* No room: write out the whole pages before this write (or everything staged). */
            haddr_t before = f->s0;
            if (direct_flush_stage(f, addr) < 0) return -1;
            if (f->s0 == before || addr - f->s0 >= DIRECT_STAGE) {
                /* Far beyond what is staged: the window restarts at this write's page. */
                if (direct_flush_stage(f, HADDR_UNDEF) < 0) return -1;
                f->s0 = addr / DIRECT_PAGE * DIRECT_PAGE;
                memset(f->stage, 0, (size_t)(addr - f->s0));
                f->slen = (size_t)(addr - f->s0);
            }
        }
        size_t off = (size_t)(addr - f->s0);
        size_t n = DIRECT_STAGE - off < size ? DIRECT_STAGE - off : size;
        if (off > f->slen) memset(f->stage + f->slen, 0, off - f->slen);
        memcpy(f->stage + off, p, n);
        if (off + n > f->slen) f->slen = off + n;
        p += n; addr += n; size -= n;
    }
    return 0;
}

static herr_t direct_flush(H5FD_t *file, hid_t dxpl, hbool_t closing) {
    (void)dxpl; (void)closing;
    direct_file *f = (direct_file *)file;
    return f->fd >= 0 ? direct_flush_stage(f, HADDR_UNDEF) : 0;
}

static herr_t direct_truncate(H5FD_t *file, hid_t dxpl, hbool_t closing) {
    (void)dxpl; (void)closing;
    direct_file *f = (direct_file *)file;
    if (f->eoa == f->eof) return 0;
    if (f->fd >= 0 && direct_flush_stage(f, HADDR_UNDEF) < 0) return -1;
    if (ftruncate(f->bfd, (off_t)f->eoa) < 0) return -1;
    f->eof = f->eoa;
    if (f->fd >= 0 && f->s0 + f->slen > f->eoa) f->slen = f->eoa > f->s0 ? (size_t)(f->eoa - f->s0) : 0;
    return 0;
}

/* The driver's class, by field name (its layout differs between HDF5 versions). Registered
   once, by tessera_hdf5_setup. */
hid_t tessera_register_direct_driver(void) {
    static const H5FD_class_t cls = {
#if H5_VERSION_GE(1, 14, 0)
        .version = H5FD_CLASS_VERSION,
        .value = H5_VFD_RESERVED + 209,   /* above the values HDF5 keeps for its own drivers; never stored in files */
#endif
        .name = "tessera-direct",
        .maxaddr = HADDR_MAX,
        .fc_degree = H5F_CLOSE_WEAK,
        .open = direct_open,
        .close = direct_close,
        .cmp = direct_cmp,
        .query = direct_query,
        .get_eoa = direct_get_eoa,
        .set_eoa = direct_set_eoa,
        .get_eof = direct_get_eof,
        .get_handle = direct_get_handle,
        .read = direct_read,
        .write = direct_write,
        .flush = direct_flush,
        .truncate = direct_truncate,
        .fl_map = H5FD_FLMAP_DICHOTOMY,
    };
    return H5FDregister(&cls);
}
