/* Float32 GEMM on a thread pool (vm_pool.c): c[b] = a[b] @ b[b] for a batch of row-major matrices. */
#ifndef MSGX_GEMM_H
#define MSGX_GEMM_H
#include <stdint.h>

/* Micro-kernel families; GEMM_ISA_AUTO picks the widest the CPU supports. */
typedef enum { GEMM_ISA_AUTO = 0, GEMM_ISA_PORTABLE, GEMM_ISA_AVX2, GEMM_ISA_AVX512 } gemm_isa_t;

typedef struct {
    int64_t batch, m, n, k;
    const float *a;   /* a[i * stride_a + r * lda + kk], r < m, kk < k */
    const float *b;   /* b[i * stride_b + kk * ldb + col]; stride_b 0 broadcasts one b over the batch */
    float *c;         /* c[i * stride_c + r * ldc + col], written (not accumulated) */
    int64_t lda, ldb, ldc, stride_a, stride_b, stride_c;
} gemm_args_t;

/* Whether this CPU can run `isa` (GEMM_ISA_AUTO: always). */
int gemm_isa_supported(gemm_isa_t isa);

/* Computes the batch on up to `nthreads` threads of vm_parallel_for (fewer for small problems, where
 * waking a worker costs more than it saves); c must not overlap a or b. Returns 0, or -1 when memory for
 * the pool's arenas or threads ran out, or `isa` is not supported. */
int gemm_f32(const gemm_args_t *args, int nthreads, gemm_isa_t isa);

#endif
