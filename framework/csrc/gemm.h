/* Float32 GEMM on a thread pool (vm_pool.c): c[i] = a[i] @ b[i] for a batch of matrices whose rows (of a and
 * c) and rows or columns (of b) are unit-stride. */
#ifndef MSGX_GEMM_H
#define MSGX_GEMM_H
#include <stdint.h>

#include "vm_pool.h"

/* Micro-kernel families; GEMM_ISA_AUTO picks the widest the CPU supports. */
typedef enum { GEMM_ISA_AUTO = 0, GEMM_ISA_PORTABLE, GEMM_ISA_AVX2, GEMM_ISA_AVX512 } gemm_isa_t;

typedef struct {
    int64_t batch, m, n, k;
    /* batch index i = io * batch_in + ii (two levels, so the heads of a [b, h, s, d] view of a [b, s, h, d]
     * array need no copy); batch_in 0 or 1: one level */
    int64_t batch_in;
    const float *a;   /* a[io * stride_a + ii * stride_a_in + r * lda + kk], r < m, kk < k */
    const float *b;   /* b[io * stride_b + ii * stride_b_in + kk * ldb + col], or with trans_b
                       * b[... + col * ldb + kk] (b given as its transpose's view); strides 0 broadcast b */
    float *c;         /* c[io * stride_c + ii * stride_c_in + r * ldc + col], written (not accumulated) */
    int64_t lda, ldb, ldc, stride_a, stride_b, stride_c;
    int64_t stride_a_in, stride_b_in, stride_c_in;
    int trans_b;
    /* an implicit im2col (convgemm.c): with taps > 0, row kk of b is
     * b + (kk / taps) * ldb + tap_off[kk % taps] (trans_b 0): a conv's input channel planes, each shifted by
     * the tap's offset; such a b is always packed */
    int64_t taps;
    const int64_t *tap_off;
} gemm_args_t;

/* The pool GEMMs run on: this extension's copy of vm_pool.c, or the DVM's pool where dvm_runtime._cvm
 * imports (set at module init): one set of workers for both, as two would spin against each other. */
extern vm_parallel_for_fn gemm_parallel_for;

/* Whether this CPU can run `isa` (GEMM_ISA_AUTO: always). */
int gemm_isa_supported(gemm_isa_t isa);

/* Computes the batch on up to `nthreads` threads of vm_parallel_for (fewer for small problems, where
 * waking a worker costs more than it saves); c must not overlap a or b. Returns 0, or -1 when memory for
 * the pool's arenas or threads ran out, or `isa` is not supported. */
int gemm_f32(const gemm_args_t *args, int nthreads, gemm_isa_t isa);

#endif
