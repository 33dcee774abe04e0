/* What this CPU can run: the instruction-set classes of the kernels, checked once with
 * __builtin_cpu_supports (the only place that asks), the CPU's model name, and BF16 conversion. */
#include "CKernels.h"
#include "bf16.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#define PATHS (TESSERA_ISA_AMX + 1)

#if defined(__x86_64__)
/* AMX-TILE and AMX-BF16 (CPUID leaf 7, EDX bits 24 and 22), and Linux's permission for this
   process to use the tile data registers (arch_prctl ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA):
   without it the first tile instruction would fault. */
static int amx_usable(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 24)) || !(d & (1u << 22))) return 0;
    return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0;
}
#endif

int tessera_isa_supported(int isa) {
#if defined(__x86_64__)
    static int has[PATHS] = {-1, -1, -1, -1, -1};
    if (isa < 0 || isa >= PATHS) return 0;
    if (has[isa] < 0) {
        __builtin_cpu_init();
        int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        int avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
        int bf16 = avx512 && __builtin_cpu_supports("avx512bf16");
        int v[PATHS] = {1, avx2, avx512, bf16, bf16 && amx_usable()};
        /* TESSERA_ISA_LIMIT=NAME makes this CPU look like one that stops at NAME (tests of refusal). */
        const char *limit = getenv("TESSERA_ISA_LIMIT");
        for (int i = 0; limit && i < PATHS; i++)
            if (strcmp(limit, tessera_isa_name(i)) == 0)
                for (int j = i + 1; j < PATHS; j++) v[j] = 0;
        for (int i = 0; i < PATHS; i++) has[i] = v[i]; /* every thread computes the same values */
    }
    return has[isa];
#else
    return isa == TESSERA_ISA_PORTABLE;
#endif
}

int tessera_isa_best(void) {
    for (int isa = PATHS - 1; isa > TESSERA_ISA_PORTABLE; isa--)
        if (tessera_isa_supported(isa)) return isa;
    return TESSERA_ISA_PORTABLE;
}

const char *tessera_isa_name(int isa) {
    static const char *const names[PATHS] = {"portable", "avx2", "avx512", "avx512bf16", "amx"};
    return isa >= 0 && isa < PATHS ? names[isa] : "unknown";
}

void tessera_cpu_model(char *out, size_t size) {
    if (size == 0) return;
    out[0] = 0;
#if defined(__x86_64__)
    unsigned regs[12], max = __get_cpuid_max(0x80000000u, NULL);
    if (max >= 0x80000004u && size > 1) {
        for (unsigned i = 0; i < 3; i++) __get_cpuid(0x80000002u + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2], &regs[4 * i + 3]);
        char brand[49];
        memcpy(brand, regs, 48);
        brand[48] = 0;
        const char *b = brand;
        while (*b == ' ') b++;
        snprintf(out, size, "%s", b);
        for (size_t n = strlen(out); n > 0 && out[n - 1] == ' '; n--) out[n - 1] = 0;
    }
#endif
    if (!out[0]) {
        FILE *f = fopen("/proc/cpuinfo", "r");
        char line[256];
        while (f && fgets(line, sizeof line, f)) {
            char *colon = strchr(line, ':');
            if (!colon || (strncmp(line, "model name", 10) != 0 && strncmp(line, "CPU part", 8) != 0)) continue;
            snprintf(out, size, "%s", colon + 2);
            out[strcspn(out, "\n")] = 0;
            break;
        }
        if (f) fclose(f);
    }
    if (!out[0]) snprintf(out, size, "unknown");
}

void tessera_bf16_to_f32(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = widen_bf16(src[i]);
}
