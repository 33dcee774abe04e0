/* The machine's GEMM peak on given shapes with Tessera's own kernels (Sources/CKernels),
 * on every core: each thread takes a contiguous share of the output columns, as the engine
 * splits them. Built and run by bench_forward.py:
 *   clang -O3 -ISources/CKernels/include (the .c files of Sources/CKernels) Tools/gemm_peak.c -lpthread -lm
 *   ./gemm_peak THREADS T N K [N K ...]   -> one line per precision: seconds and GFLOP/s */
#include "CKernels.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct { int bf16; const void *a; const void *w; float *c; size_t t, n, k, n0, n1; } job;

static void *run(void *p) {
    job *j = p;
    if (j->bf16)
        tessera_gemm_bf16_nt((const uint16_t *)j->a, j->k, (const uint16_t *)j->w + j->n0 * j->k, j->k, j->c + j->n0, j->n,
                             j->t, j->n1 - j->n0, j->k, 0);
    else
        tessera_gemm_f32_nt((const float *)j->a, j->k, (const uint16_t *)j->w + j->n0 * j->k, 1, j->k, j->c + j->n0, j->n,
                            j->t, j->n1 - j->n0, j->k, 0);
    return NULL;
}

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

int main(int argc, char **argv) {
    if (argc < 5 || (argc - 3) % 2) { fprintf(stderr, "usage: gemm_peak THREADS T N K [N K ...]\n"); return 2; }
    int threads = atoi(argv[1]);
    size_t T = strtoul(argv[2], NULL, 10);
    for (int bf16 = 1; bf16 >= 0; bf16--) {
        double seconds = 0, flops = 0;
        for (int s = 3; s < argc; s += 2) {
            size_t N = strtoul(argv[s], NULL, 10), K = strtoul(argv[s + 1], NULL, 10);
            uint16_t *w = malloc(N * K * 2), *a16 = malloc(T * K * 2);
            float *a32 = malloc(T * K * 4), *c = malloc(T * N * 4);
            for (size_t i = 0; i < N * K; i++) w[i] = (uint16_t)(0x3c00 + (i * 2654435761u >> 20) % 512);
            for (size_t i = 0; i < T * K; i++) { a16[i] = (uint16_t)(0x3f00 + i % 256); a32[i] = 1.0f + (float)(i % 256) / 256; }
            job jobs[64];
            pthread_t tid[64];
            double best = 1e30;
            for (int rep = 0; rep < 3; rep++) {
                double t0 = now();
                for (int i = 0; i < threads; i++) {
                    size_t panels = (N + 63) / 64;
                    jobs[i] = (job){bf16, bf16 ? (const void *)a16 : (const void *)a32, w, c, T, N, K,
                                    panels * i / threads * 64, panels * (i + 1) / threads * 64};
                    if (jobs[i].n1 > N) jobs[i].n1 = N;
                    pthread_create(&tid[i], NULL, run, &jobs[i]);
                }
                for (int i = 0; i < threads; i++) pthread_join(tid[i], NULL);
                double dt = now() - t0;
                if (dt < best) best = dt;
            }
            seconds += best;
            flops += 2.0 * T * N * K;
            free(w); free(a16); free(a32); free(c);
        }
        printf("%s %.4f %.1f\n", bf16 ? "bf16" : "fp32", seconds, flops / seconds / 1e9);
    }
    return 0;
}
