/* One loop body compiled for each instruction-set class, and the public entry point that picks
 * the variant of a kernel path (the portable one for a class this CPU lacks). */
#ifndef TESSERA_ISA_VARIANTS_H
#define TESSERA_ISA_VARIANTS_H
#include "CKernels.h"

/* A body inlined into each variant, so it is vectorised for that class. */
#define BODY static inline __attribute__((always_inline))
#define UNPAREN(...) __VA_ARGS__

#if defined(__x86_64__)
#define TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma")))
#define TARGET_AVX2 __attribute__((target("avx2,fma")))
/* The variant class of a kernel path: 2 AVX-512, 1 AVX2, 0 portable. */
static inline int isa_variant(int isa) {
    if (!tessera_isa_supported(isa)) return 0;
    return isa >= TESSERA_ISA_AVX512 ? 2 : isa == TESSERA_ISA_AVX2 ? 1 : 0;
}
/* void tessera_NAME(int isa, PARAMS): BODY(ARGS) compiled for AVX-512, AVX2 and the baseline. */
#define ISA_VARIANTS(name, params, body, args)                                         \
    TARGET_AVX512 static void name##_avx512 params { body args; }                      \
    TARGET_AVX2 static void name##_avx2 params { body args; }                          \
    static void name##_portable params { body args; }                                  \
    void tessera_##name(int isa, UNPAREN params) {                                     \
        switch (isa_variant(isa)) {                                                    \
        case 2: name##_avx512 args; break;                                             \
        case 1: name##_avx2 args; break;                                               \
        default: name##_portable args; break;                                          \
        }                                                                              \
    }
#else
#define ISA_VARIANTS(name, params, body, args)                                         \
    void tessera_##name(int isa, UNPAREN params) { (void)isa; body args; }
#endif
#endif
