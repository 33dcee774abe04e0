/* The machine's GEMM peak on given shapes with Tessera's own kernels (Sources/CKernels), on
 * every kernel path this CPU supports, on every core: the activations are packed once, then
 * the threads take pieces of the output columns as the engine hands them out. Built and run by
 * bench_forward.py:
 *   clang -O3 -ISources/CKernels/include (the .c files of Sources/CKernels) Tools/gemm_peak.c -lpthread -lm
 *   ./gemm_peak THREADS T N K [N K ...]   -> one line per path and precision: path, precision, seconds, GFLOP/s,
 *   and per x86 path its hardware limit: path, "fma-peak", seconds, GFLOP/s of independent register-only
 *   FMAs (vdpbf16ps for avx512bf16, which does two products per lane; tdpbf16ps on tiles for amx) on every thread at once
 * (the portable path only for T <= 64: it is there for correctness, not speed). */
#include "CKernels.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct { int isa, bf16; const void *a; const void *w; float *c; void *packed; size_t t, n, k, lo, hi; } job;

/* As the engine runs a product: the activations packed once (rows split over the threads),
   then each thread multiplies them by its share of the output columns. */
static void *pack(void *p) {
    job *j = p;
    tessera_gemm_pack_activations(j->isa, j->a, j->k, j->t, j->k, j->bf16, j->lo, j->hi, j->packed);
    return NULL;
}

/* As the engine hands out the output columns (Kernels.parallel(_:granule:largest:)): each thread
   takes the next piece of whole 64-column panels when it is done, the kernel's group of panels
   (tessera_gemm_piece_columns) or a 2 x threads-th of the panels left when that is less, down to one. */
static atomic_size_t next_panel;
static int workers;

static void *run(void *p) {
    job *j = p;
    size_t panels = (j->n + 63) / 64, largest = tessera_gemm_piece_columns(j->isa, j->k, j->bf16) / 64;
    for (size_t lo = atomic_load(&next_panel); lo < panels;) {
        size_t take = (panels - lo) / (2 * (size_t)workers);
        take = take > largest ? largest : take < 1 ? 1 : take;
        if (!atomic_compare_exchange_weak(&next_panel, &lo, lo + take)) continue; /* lo now holds the current start */
        size_t hi = (lo + take) * 64 < j->n ? (lo + take) * 64 : j->n;
        tessera_gemm_packed_nt(j->isa, j->a, j->k, j->bf16, j->packed, (const uint16_t *)j->w + lo * 64 * j->k, 1, j->k, j->c + lo * 64,
                               j->n, j->t, hi - lo * 64, j->k, 0, 0);
        lo = atomic_load(&next_panel);
    }
    return NULL;
}

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

/* The class's multiply-add limit: 12 independent accumulators (more than latency x ports on
   every x86 core), nothing read from memory. Each thread writes its FLOP count to *arg. */
#define PEAK_ITERATIONS 150000000L
#if defined(__x86_64__)
#include <immintrin.h>
/* One body per class: VEC accumulators updated by STEP(c, x), LANES floats and FLOPS_PER_LANE per step. */
#define PEAK_BODY(VEC, INIT, X, STEP, CONSTRAINT, LANES, FLOPS_PER_LANE)                   \
    VEC c[12];                                                                            \
    X;                                                                                    \
    for (int i = 0; i < 12; i++) c[i] = INIT((float)i);                                   \
    for (long n = 0; n < PEAK_ITERATIONS; n++) {                                          \
        for (int i = 0; i < 12; i++) c[i] = STEP(c[i]);                                   \
        __asm__ volatile("" : CONSTRAINT(c[0]), CONSTRAINT(c[6]));                        \
    }                                                                                     \
    float s = 0;                                                                          \
    for (int i = 0; i < 12; i++) s += c[i][0];                                            \
    *(double *)arg = s == 12345 ? 0 : 12.0 * (LANES) * (FLOPS_PER_LANE) * PEAK_ITERATIONS; \
    return NULL;

#define FMA256(c) _mm256_fmadd_ps(c, x, y)
#define FMA512(c) _mm512_fmadd_ps(c, x, y)
#define DP512(c) _mm512_dpbf16_ps(c, x, x)
__attribute__((target("avx2,fma"))) static void *peak_avx2(void *arg) {
    PEAK_BODY(__m256, _mm256_set1_ps, __m256 x = _mm256_set1_ps(1.0000001f); __m256 y = _mm256_set1_ps(0.9999999f), FMA256, "+x", 8, 2)
}
__attribute__((target("avx512f"))) static void *peak_avx512(void *arg) {
    PEAK_BODY(__m512, _mm512_set1_ps, __m512 x = _mm512_set1_ps(1.0000001f); __m512 y = _mm512_set1_ps(0.9999999f), FMA512, "+v", 16, 2)
}
__attribute__((target("avx512f,avx512bf16"))) static void *peak_avx512bf16(void *arg) {
    PEAK_BODY(__m512, _mm512_set1_ps, __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80), DP512, "+v", 32, 2)
}

/* AMX: tdpbf16ps on four independent 16 x 16 accumulator tiles (16 x 16 x 32 x 2 FLOPs each). */
#define AMX_ITERATIONS 25000000L
__attribute__((target("amx-tile,amx-bf16"))) static void *peak_amx(void *arg) {
    struct { uint8_t palette, start_row, reserved[14]; uint16_t colsb[16]; uint8_t rows[16]; } cfg = {0};
    cfg.palette = 1;
    for (int i = 0; i < 6; i++) cfg.colsb[i] = 64, cfg.rows[i] = 16;
    _tile_loadconfig(&cfg);
    static const uint16_t zeros[16 * 32] = {0}; /* tile timing does not depend on the values */
    _tile_loadd(4, zeros, 64);
    _tile_loadd(5, zeros, 64);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (long n = 0; n < AMX_ITERATIONS; n++) {
        _tile_dpbf16ps(0, 4, 5);
        _tile_dpbf16ps(1, 4, 5);
        _tile_dpbf16ps(2, 4, 5);
        _tile_dpbf16ps(3, 4, 5);
    }
    _tile_release();
    *(double *)arg = 4.0 * 16 * 16 * 32 * 2 * AMX_ITERATIONS;
    return NULL;
}
#endif

/* The path's FMA peak on `threads` threads, GFLOP/s (0 for the portable path): the fastest of 3
   runs, as the products are timed (one run on a shared host once came out at half the peak). */
static void fma_peak(int isa, int threads) {
#if defined(__x86_64__)
    void *(*body)(void *) = isa == TESSERA_ISA_AVX2 ? peak_avx2 : isa == TESSERA_ISA_AVX512 ? peak_avx512
                          : isa == TESSERA_ISA_AVX512BF16 ? peak_avx512bf16 : isa == TESSERA_ISA_AMX ? peak_amx : NULL;
    if (!body) return;
    pthread_t tid[64];
    double flops[64], total = 0, best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now();
        for (int i = 0; i < threads; i++) pthread_create(&tid[i], NULL, body, &flops[i]);
        for (int i = 0; i < threads; i++) pthread_join(tid[i], NULL);
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    for (int i = 0; i < threads; i++) total += flops[i];
    printf("%s fma-peak %.4f %.1f\n", tessera_isa_name(isa), best, total / best / 1e9);
#else
    (void)isa; (void)threads;
#endif
}

int main(int argc, char **argv) {
    if (argc < 5 || (argc - 3) % 2) { fprintf(stderr, "usage: gemm_peak THREADS T N K [N K ...]\n"); return 2; }
    int threads = atoi(argv[1]);
    if (threads < 1 || threads > 64) { fprintf(stderr, "gemm_peak: THREADS must be 1..64\n"); return 2; }
    size_t T = strtoul(argv[2], NULL, 10);
    for (int isa = TESSERA_ISA_AVX2; isa <= TESSERA_ISA_AMX; isa++)
        if (tessera_isa_supported(isa)) fma_peak(isa, threads);
    for (int isa = TESSERA_ISA_PORTABLE; isa <= TESSERA_ISA_AMX; isa++)
    for (int bf16 = 1; bf16 >= 0; bf16--) {
        if (!tessera_isa_supported(isa) || (isa == TESSERA_ISA_PORTABLE && T > 64)) continue;
        double seconds = 0, flops = 0;
        for (int s = 3; s < argc; s += 2) {
            size_t N = strtoul(argv[s], NULL, 10), K = strtoul(argv[s + 1], NULL, 10);
            uint16_t *w = malloc(N * K * 2), *a16 = malloc(T * K * 2);
            float *a32 = malloc(T * K * 4), *c = malloc(T * N * 4);
            for (size_t i = 0; i < N * K; i++) w[i] = (uint16_t)(0x3c00 + (i * 2654435761u >> 20) % 512);
            for (size_t i = 0; i < T * K; i++) { a16[i] = (uint16_t)(0x3f00 + i % 256); a32[i] = 1.0f + (float)(i % 256) / 256; }
            job jobs[64];
            pthread_t tid[64];
            void *packed = aligned_alloc(64, (tessera_gemm_packed_bytes(isa, T, K, bf16) + 63) & ~(size_t)63);
            size_t g = tessera_gemm_pack_granule();
            double best = 1e30;
            for (int rep = 0; rep < 3; rep++) {
                double t0 = now();
                for (int i = 0; i < threads; i++) {
                    size_t units = (T + g - 1) / g, lo = units * i / threads * g, hi = units * (i + 1) / threads * g;
                    jobs[i] = (job){isa, bf16, bf16 ? (const void *)a16 : (const void *)a32, w, c, packed, T, N, K, lo, hi < T ? hi : T};
                    pthread_create(&tid[i], NULL, pack, &jobs[i]);
                }
                for (int i = 0; i < threads; i++) pthread_join(tid[i], NULL);
                size_t panels = (N + 63) / 64;
                workers = panels < (size_t)threads ? (int)panels : threads;
                atomic_store(&next_panel, 0);
                for (int i = 0; i < threads; i++) pthread_create(&tid[i], NULL, run, &jobs[i]);
                for (int i = 0; i < threads; i++) pthread_join(tid[i], NULL);
                double dt = now() - t0;
                if (dt < best) best = dt;
            }
            free(packed);
            seconds += best;
            flops += 2.0 * T * N * K;
            free(w); free(a16); free(a32); free(c);
        }
        printf("%s %s %.4f %.1f\n", tessera_isa_name(isa), bf16 ? "bf16" : "fp32", seconds, flops / seconds / 1e9);
    }
    return 0;
}
