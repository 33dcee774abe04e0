#pragma once

/* The C the OS layer (Platform) needs and Swift cannot declare: signals turned into bytes on a
   pipe, glibc's allocator tuning, syncfs. */

/* Flushes the filesystem holding fd (glibc exports it; the declaration needs _GNU_SOURCE). */
extern int syncfs(int fd);

/* Makes glibc serve large blocks from the heap (not one mmap each) and keep freed memory for
   reuse, so buffers of tens of MB allocated again and again are not page-faulted in each time. */
void tessera_keep_large_allocations_in_heap(void);

/* Sends SIGINT, SIGTERM and SIGHUP to a pipe (one byte, the signal number, per signal) and
   ignores SIGPIPE and SIGXFSZ so failed writes return EPIPE / EFBIG. Returns the pipe's read
   end, or -1. */
int tessera_catch_termination(void);

/* Ends the process as a broken pipe ends a Unix tool: killed by SIGPIPE (never returns). */
void tessera_die_of_broken_pipe(void) __attribute__((noreturn));
