/* glibc's allocator, tuned for a process that allocates large buffers again and again. */
#include "CSystemShims.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

void tessera_keep_large_allocations_in_heap(void) {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 0x7fffffff);
#endif
}
