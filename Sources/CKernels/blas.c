/* OpenBLAS's SGEMM, loaded on first use: the products of CPUs without AVX512-BF16 go through
   it. Linking OpenBLAS would start its thread pool in every command, before main, spinning on
   sched_yield against Tessera's own workers for the same cores. Loaded here, it is told to run
   single-threaded before its constructor runs. */
#include "CKernels.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>

typedef void (*sgemm_fn)(int order, int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                         const float *b, int ldb, float beta, float *c, int ldc);

static sgemm_fn sgemm;
static pthread_once_t loaded = PTHREAD_ONCE_INIT;

static void load(void) {
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    static const char *const names[] = {"libopenblas.so.0", "libopenblas.so"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        void *lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!lib) continue;
        void (*threads)(int) = (void (*)(int))dlsym(lib, "openblas_set_num_threads");
        if (threads) threads(1);
        sgemm = (sgemm_fn)dlsym(lib, "cblas_sgemm");
        if (sgemm) return;
    }
}

static int blas_available(void) {
    pthread_once(&loaded, load);
    return sgemm != NULL;
}

void tessera_blas_sgemm_nt(const float *A, size_t lda, const float *W, size_t ldw, float *C, size_t ldc,
                           size_t T, size_t N, size_t K, int accumulate) {
    if (!blas_available()) {
        tessera_gemm_f32_nt_portable(A, lda, W, 0, ldw, C, ldc, T, N, K, accumulate);
        return;
    }
    /* Row-major (101), A as is (111), W transposed (112). */
    sgemm(101, 111, 112, (int)T, (int)N, (int)K, 1.0f, A, (int)lda, W, (int)ldw, accumulate ? 1.0f : 0.0f, C, (int)ldc);
}
