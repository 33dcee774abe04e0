/* glibc's allocator, tuned for a process that allocates large buffers again and again. */
#include "CSystemShims.h"
#include <stdlib.h> /* defines __GLIBC__ on glibc, which the test below needs */

#if defined(__GLIBC__)
#include <malloc.h>
#endif

/* Large buffers (a layer's activations, packed operands: tens of MiB each, allocated and
 * freed every step) come from the heap and are reused, instead of being mapped and unmapped
 * each time (every unmap costs milliseconds and every new mapping faults its pages in again).
 * glibc refuses an M_MMAP_THRESHOLD above 32 MiB, so mmap is turned off (M_MMAP_MAX = 0; a
 * thread arena that cannot grow falls back to the main one) and the heap is never trimmed. */
void tessera_keep_large_allocations_in_heap(void) {
#if defined(__GLIBC__)
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, 0x7fffffff);
#endif
}
