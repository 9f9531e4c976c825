/* Float32 GEMM: register micro-kernels (AVX-512, AVX2+FMA, portable vector C) chosen at run time, work split
 * over (batch, row block, column block) tiles on a thread pool (the DVM's vm_pool.c, compiled into
 * framework._ckernels too: tiles are claimed dynamically, so a worker that has not woken yet holds up
 * nothing; small products stay on the caller).
 *
 * A micro-kernel keeps an MR x NR block of c in registers over a k-range: per k it loads one row of a B
 * panel (NR columns) and multiplies it by MR broadcast elements of A, read in place (MR short streams along
 * k). Within a tile each panel is used by every row group in turn, so it stays in L1; B is read in place,
 * or packed into the pool's per-thread arena where its rows are far apart (PACK_MIN_LDB). Each c element is
 * one multiply-add chain over k in ascending order per k-block (FMA on x86, as BLAS rounds), so for a given
 * kernel family its bits do not depend on M, N, the tiling or the thread count. */
#include "gemm.h"

#include <string.h>

#include "vm_pool.h"

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define GEMM_X86 1
#endif

#define INLINE static inline __attribute__((always_inline))
#define MIN(x, y) ((x) < (y) ? (x) : (y))

/* Tiles: up to MC_MAX rows x NC_MAX columns, k in blocks of up to KC_MAX. A tile's A block (256 x 256 floats,
 * 256 KiB) stays in L2 while each column panel of B passes over it; KC 256 and 512 measured alike on
 * 512..1024 cubes. */
#define MC_MAX 256
#define NC_MAX 512
#define KC_MAX 256
/* Row counts of tiles stay multiples of every kernel's MR (8, 6, 4). */
#define ROW_QUANTUM 24
/* B is read in place unless its rows are 2 KiB or more apart (a panel's rows then share few L1 sets:
 * packing was ~10% faster on 1024^3 and 1024x64 @ 64x1024) and the tile has several row groups to reuse the
 * packed panel; on the transformer's shapes (b rows of 64 or 256 floats) the copy cost more than it saved. */
#define PACK_MIN_ROWS 48
#define PACK_MIN_LDB 512
/* Work below this many flops per thread runs on fewer threads. A worker that slept since the previous kernel
 * takes tens of microseconds to wake on this VM, so 8.4 MFLOP products once ran slower on 2 threads than on
 * 1; the pool's workers now poll for a while after each job (vm_pool.c), and kernels that follow each other
 * find them awake: a 256x64x256 product (8.4 MFLOP) between two DVM kernels took 42-55 us on 2 threads
 * against 75 on 1, while 2.1 MFLOP products gained nothing (19.5 against 22 us) and lost inside the model. */
#define MIN_FLOPS_PER_THREAD (1 << 22)

vm_parallel_for_fn gemm_parallel_for = vm_parallel_for;

/* One ISA's panel routine: c[0:m, 0:w] (+)= a[0:m, 0:kc] @ b[0:kc, 0:w] for w <= nr, looping over row
 * groups of MR; `add` accumulates into c (later k-blocks) instead of overwriting it. b rows are ldb apart;
 * loads of b past w are masked, so b may be the caller's matrix as well as a packed panel. */
typedef void (*panel_fn)(int64_t m, int w, int64_t kc, const float *a, int64_t lda, const float *b,
                         int64_t ldb, float *c, int64_t ldc, int add);

typedef struct {
    panel_fn panel;
    int nr;    /* widest panel the routine takes */
    int vec;   /* floats per vector: packed panel rows are padded to a multiple */
} isa_desc_t;

/* ---- portable: GCC vector extensions (SSE on any x86-64, NEON on arm64), 4 x 8 ------------------------ */

#define PMR 4
#define PNR 8

typedef float vf4 __attribute__((vector_size(16)));

INLINE vf4 load4(const float *p) {
    vf4 v;
    memcpy(&v, p, sizeof v);   /* unaligned */
    return v;
}

/* w is a constant (PNR) for full panels; an edge panel's b rows go through a zero-padded copy */
INLINE void micro_portable(const int mr, const int w, int64_t kc, const float *restrict a, int64_t lda,
                           const float *restrict b, int64_t ldb, float *restrict c, int64_t ldc, int add) {
    vf4 acc[PMR][2];
    for (int i = 0; i < mr; i++) acc[i][0] = acc[i][1] = (vf4){0, 0, 0, 0};
    for (int64_t k = 0; k < kc; k++) {
        const float *bk = b + k * ldb;
        float padded[PNR] = {0};
        if (w < PNR) {
            memcpy(padded, bk, (size_t)w * sizeof(float));
            bk = padded;
        }
        vf4 b0 = load4(bk), b1 = load4(bk + 4);
        for (int i = 0; i < mr; i++) {
            vf4 ai = (vf4){0, 0, 0, 0} + a[i * lda + k];
            acc[i][0] += ai * b0;
            acc[i][1] += ai * b1;
        }
    }
    for (int i = 0; i < mr; i++) {
        float row[PNR];
        memcpy(row, acc[i], sizeof row);
        for (int j = 0; j < w; j++) c[i * ldc + j] = add ? c[i * ldc + j] + row[j] : row[j];
    }
}

INLINE void rows_portable(int64_t m, const int w, int64_t kc, const float *a, int64_t lda, const float *b,
                          int64_t ldb, float *c, int64_t ldc, int add) {
    int64_t i = 0;
    for (; i + PMR <= m; i += PMR) micro_portable(PMR, w, kc, a + i * lda, lda, b, ldb, c + i * ldc, ldc, add);
    switch (m - i) {
        case 3: micro_portable(3, w, kc, a + i * lda, lda, b, ldb, c + i * ldc, ldc, add); break;
        case 2: micro_portable(2, w, kc, a + i * lda, lda, b, ldb, c + i * ldc, ldc, add); break;
        case 1: micro_portable(1, w, kc, a + i * lda, lda, b, ldb, c + i * ldc, ldc, add); break;
        default: break;
    }
}

static void panel_portable(int64_t m, int w, int64_t kc, const float *a, int64_t lda, const float *b,
                           int64_t ldb, float *c, int64_t ldc, int add) {
    if (w == PNR) rows_portable(m, PNR, kc, a, lda, b, ldb, c, ldc, add);
    else rows_portable(m, w, kc, a, lda, b, ldb, c, ldc, add);
}

#ifdef GEMM_X86
/* ---- AVX2 + FMA: 6 x 16 (12 accumulators of 8 lanes) ------------------------------------------------ */

#define AVX2 __attribute__((target("avx2,fma")))
#define A2MR 6

/* Masked loads and stores only for an edge panel (`full` 0): vmaskmovps stores are slow on AMD cores. */
INLINE AVX2 __m256 load8(const int full, const float *p, __m256i mask) {
    return full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask);
}

INLINE AVX2 void store8(const int full, float *p, __m256i mask, __m256 v) {
    if (full) _mm256_storeu_ps(p, v);
    else _mm256_maskstore_ps(p, mask, v);
}

INLINE AVX2 void micro_avx2(const int mr, const int full, int64_t kc, const float *restrict a, int64_t lda,
                            const float *restrict b, int64_t ldb, float *restrict c, int64_t ldc,
                            __m256i mask0, __m256i mask1, int add) {
    __m256 acc[A2MR][2];
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m256 b0 = load8(full, b + k * ldb, mask0), b1 = load8(full, b + k * ldb + 8, mask1);
#pragma GCC unroll 8
        for (int i = 0; i < mr; i++) {
            __m256 ai = _mm256_broadcast_ss(a + i * lda + k);
            acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++) {
        float *ci = c + i * ldc;
        if (add) {
            acc[i][0] = _mm256_add_ps(acc[i][0], load8(full, ci, mask0));
            acc[i][1] = _mm256_add_ps(acc[i][1], load8(full, ci + 8, mask1));
        }
        store8(full, ci, mask0, acc[i][0]);
        store8(full, ci + 8, mask1, acc[i][1]);
    }
}

INLINE AVX2 void rows_avx2(int64_t m, const int full, int64_t kc, const float *a, int64_t lda, const float *b,
                           int64_t ldb, float *c, int64_t ldc, __m256i mask0, __m256i mask1, int add) {
    int64_t i = 0;
    for (; i + A2MR <= m; i += A2MR)
        micro_avx2(A2MR, full, kc, a + i * lda, lda, b, ldb, c + i * ldc, ldc, mask0, mask1, add);
#define A2CASE(r) \
    case r: micro_avx2(r, full, kc, a + i * lda, lda, b, ldb, c + i * ldc, ldc, mask0, mask1, add); break;
    switch (m - i) { A2CASE(5) A2CASE(4) A2CASE(3) A2CASE(2) A2CASE(1) default: break; }
#undef A2CASE
}

AVX2 static void panel_avx2(int64_t m, int w, int64_t kc, const float *a, int64_t lda, const float *b,
                            int64_t ldb, float *c, int64_t ldc, int add) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i mask0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(w), lane);
    __m256i mask1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(w - 8), lane);
    if (w == 16) rows_avx2(m, 1, kc, a, lda, b, ldb, c, ldc, mask0, mask1, add);
    else rows_avx2(m, 0, kc, a, lda, b, ldb, c, ldc, mask0, mask1, add);
}

/* ---- AVX-512: 8 x 32 (16 accumulators), and 8 x 16 where at most 16 columns remain (attention's P @ V
 * with a head width of 16). Here (Zen 4) 6, 10 and 14 rows were no faster and 12 rows 5-10% slower on
 * Q @ K^T (K = 16, where a tile's stores weigh most). ------------------------------------------------- */

#define AVX512 __attribute__((target("avx512f")))
#define WMR 8

/* Masked loads and stores only for an edge panel (`full` 0), as in the AVX2 kernel. */
INLINE AVX512 __m512 load16(const int full, const float *p, __mmask16 mask) {
    return full ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(mask, p);
}

INLINE AVX512 void store16(const int full, float *p, __mmask16 mask, __m512 v) {
    if (full) _mm512_storeu_ps(p, v);
    else _mm512_mask_storeu_ps(p, mask, v);
}

/* nv vectors of 16 columns; the last one has the mask `tail` */
INLINE AVX512 void micro_avx512(const int mr, const int nv, const int full, int64_t kc, const float *restrict a,
                                int64_t lda, const float *restrict b, int64_t ldb, float *restrict c, int64_t ldc,
                                __mmask16 tail, int add) {
    __m512 acc[WMR][2];
#pragma GCC unroll 32
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < nv; v++) acc[i][v] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m512 bv[2];
        for (int v = 0; v < nv; v++) bv[v] = load16(full || v < nv - 1, b + k * ldb + 16 * v, tail);
#pragma GCC unroll 32
        for (int i = 0; i < mr; i++) {
            __m512 ai = _mm512_set1_ps(a[i * lda + k]);
            for (int v = 0; v < nv; v++) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
        }
    }
#pragma GCC unroll 32
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < nv; v++) {
            float *cv = c + i * ldc + 16 * v;
            int whole = full || v < nv - 1;
            __m512 r = add ? _mm512_add_ps(acc[i][v], load16(whole, cv, tail)) : acc[i][v];
            store16(whole, cv, tail, r);
        }
}

#define CASE512(r) \
    case r: micro_avx512(r, nv, full, kc, a + i * lda, lda, b, ldb, c + i * ldc, ldc, tail, add); break;

INLINE AVX512 void rows_avx512(int64_t m, const int nv, const int full, int64_t kc, const float *a, int64_t lda,
                               const float *b, int64_t ldb, float *c, int64_t ldc, __mmask16 tail, int add) {
    int64_t i = 0;
    for (; i + WMR <= m; i += WMR)
        micro_avx512(WMR, nv, full, kc, a + i * lda, lda, b, ldb, c + i * ldc, ldc, tail, add);
    switch (m - i) {
        CASE512(1) CASE512(2) CASE512(3) CASE512(4) CASE512(5) CASE512(6) CASE512(7) default: break;
    }
}
#undef CASE512


/* ---- one row of a (m == 1): a GEMV. The GEMM's tiles would run down all of b's rows one column panel at a
 * time, every row in a new page (1x4096 @ 4096x4096: 3.3 ms against OpenBLAS's 1.1), or pack a transposed b
 * element by element (5.5 against 1.0); here each tile sweeps its columns of b row after row, contiguous,
 * into partial sums in the thread's arena, or (transposed b) reads 16 rows at a time and transposes them in
 * registers. The same FMA chains as micro_avx512 (from zero per k-block of kc, then added to c in block
 * order), so the bits are those of the GEMM with more rows. */
#define GEMV_COLS 512   /* columns per tile: 2 KiB of partial sums */

typedef struct {
    const gemm_args_t *g;
    int64_t kc, tiles;   /* k-block, tiles per batch element */
} gemv_plan_t;

/* c[0:rows] (+)= b_t[0:rows, 0:kn] @ a[0:kn] for a transposed b (rows ldb apart, k contiguous), rows <= 16:
 * 16 k of each row loaded and transposed in registers, so each lane runs one output's FMA chain in k order
 * (the GEMM's bits again) while b is read row by row */
INLINE AVX512 void gemv16_t(int rows, int64_t kn, const float *restrict a, const float *restrict b, int64_t ldb,
                            float *restrict c, int add) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t k = 0; k < kn; k += 16) {
        int cnt = (int)MIN(16, kn - k);
        __mmask16 km = (__mmask16)(cnt == 16 ? 0xFFFF : (1u << cnt) - 1);
        __m512 v[16], t[16];
        for (int r = 0; r < 16; r++)
            v[r] = r < rows ? _mm512_maskz_loadu_ps(km, b + r * ldb + k) : _mm512_setzero_ps();
        /* 16x16 transpose: pairs of rows, then quads, then 128-bit lanes twice */
        for (int r = 0; r < 16; r += 2) {
            t[r] = _mm512_unpacklo_ps(v[r], v[r + 1]);
            t[r + 1] = _mm512_unpackhi_ps(v[r], v[r + 1]);
        }
        for (int r = 0; r < 16; r += 4) {
            v[r] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[r]), _mm512_castps_pd(t[r + 2])));
            v[r + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[r]), _mm512_castps_pd(t[r + 2])));
            v[r + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[r + 1]), _mm512_castps_pd(t[r + 3])));
            v[r + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[r + 1]), _mm512_castps_pd(t[r + 3])));
        }
        for (int r = 0; r < 4; r++) {
            t[r] = _mm512_shuffle_f32x4(v[r], v[r + 4], 0x88);
            t[r + 4] = _mm512_shuffle_f32x4(v[r], v[r + 4], 0xDD);
            t[r + 8] = _mm512_shuffle_f32x4(v[r + 8], v[r + 12], 0x88);
            t[r + 12] = _mm512_shuffle_f32x4(v[r + 8], v[r + 12], 0xDD);
        }
        for (int r = 0; r < 8; r++) {
            v[r] = _mm512_shuffle_f32x4(t[r], t[r + 8], 0x88);
            v[r + 8] = _mm512_shuffle_f32x4(t[r], t[r + 8], 0xDD);
        }
        /* v[j] now holds element k + j of rows 0..15 */
        for (int j = 0; j < cnt; j++) acc = _mm512_fmadd_ps(_mm512_set1_ps(a[k + j]), v[j], acc);
    }
    __mmask16 m = (__mmask16)(rows == 16 ? 0xFFFF : (1u << rows) - 1);
    if (add) acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(m, c));
    _mm512_mask_storeu_ps(c, m, acc);
}

AVX512 static void gemv_tile(void *ctx, int tid, void *arena, int64_t tile) {
    (void)tid;
    const gemv_plan_t *p = ctx;
    const gemm_args_t *g = p->g;
    int64_t bi = tile / p->tiles, c0 = tile % p->tiles * GEMV_COLS, cols = MIN(GEMV_COLS, g->n - c0);
    int64_t io = bi / g->batch_in, ii = bi % g->batch_in, whole = cols / 16 * 16;
    const float *a = g->a + io * g->stride_a + ii * g->stride_a_in;
    const float *b = g->b + io * g->stride_b + ii * g->stride_b_in + c0 * (g->trans_b ? g->ldb : 1);
    float *c = g->c + io * g->stride_c + ii * g->stride_c_in + c0, *acc = arena;
    if (g->trans_b) {   /* output n is row n of b_t against a: blocks of 16 rows */
        for (int64_t k0 = 0; k0 < g->k; k0 += p->kc)
            for (int64_t r = 0; r < cols; r += 16)
                gemv16_t((int)MIN(16, cols - r), MIN(p->kc, g->k - k0), a + k0, b + r * g->ldb + k0, g->ldb,
                         c + r, k0 > 0);
        return;
    }
    __mmask16 tail = (__mmask16)((1u << (cols - whole)) - 1);
    for (int64_t k0 = 0; k0 < g->k; k0 += p->kc) {
        int64_t kn = MIN(p->kc, g->k - k0);
        for (int64_t j = 0; j < cols; j += 16) _mm512_store_ps(acc + j, _mm512_setzero_ps());
        /* four rows of b per sweep, their FMAs in k order on the loaded partial sums: a quarter of the
         * partial sums' loads and stores */
        for (int64_t k = k0; k < k0 + kn; k += 4) {
            int rows = (int)MIN(4, k0 + kn - k);
            const float *r0 = b + k * g->ldb;
            __m512 ak[4];
            for (int r = 0; r < 4; r++) ak[r] = _mm512_set1_ps(r < rows ? a[k + r] : 0.f);
            for (int64_t j = 0; j < cols; j += 16) {
                __mmask16 m = j < whole ? (__mmask16)0xFFFF : tail;
                __m512 s = _mm512_load_ps(acc + j);
                for (int r = 0; r < rows; r++)
                    s = _mm512_fmadd_ps(ak[r], _mm512_maskz_loadu_ps(m, r0 + r * g->ldb + j), s);
                _mm512_store_ps(acc + j, s);
            }
        }
        for (int64_t j = 0; j < cols; j += 16) {
            __mmask16 m = j < whole ? (__mmask16)0xFFFF : tail;
            __m512 r = _mm512_load_ps(acc + j);
            if (k0 > 0) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, c + j));
            _mm512_mask_storeu_ps(c + j, m, r);
        }
    }
}

AVX512 static void panel_avx512(int64_t m, int w, int64_t kc, const float *a, int64_t lda, const float *b,
                                int64_t ldb, float *c, int64_t ldc, int add) {
    __mmask16 tail = (__mmask16)((1u << (w > 16 ? w - 16 : w)) - 1);
    if (w == 32) rows_avx512(m, 2, 1, kc, a, lda, b, ldb, c, ldc, tail, add);
    else if (w > 16) rows_avx512(m, 2, 0, kc, a, lda, b, ldb, c, ldc, tail, add);
    else if (w == 16) rows_avx512(m, 1, 1, kc, a, lda, b, ldb, c, ldc, tail, add);
    else rows_avx512(m, 1, 0, kc, a, lda, b, ldb, c, ldc, tail, add);
}
#endif

static const isa_desc_t ISA_PORTABLE = {panel_portable, PNR, PNR};
#ifdef GEMM_X86
static const isa_desc_t ISA_AVX2 = {panel_avx2, 16, 8};
static const isa_desc_t ISA_AVX512 = {panel_avx512, 32, 16};
#endif

int gemm_isa_supported(gemm_isa_t isa) {
    switch (isa) {
        case GEMM_ISA_AUTO:
        case GEMM_ISA_PORTABLE: return 1;
#ifdef GEMM_X86
        case GEMM_ISA_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        case GEMM_ISA_AVX512: return __builtin_cpu_supports("avx512f");
#endif
        default: return 0;
    }
}

static const isa_desc_t *isa_desc(gemm_isa_t isa) {
#ifdef GEMM_X86
    if (isa == GEMM_ISA_AUTO)
        isa = gemm_isa_supported(GEMM_ISA_AVX512) ? GEMM_ISA_AVX512
            : gemm_isa_supported(GEMM_ISA_AVX2) ? GEMM_ISA_AVX2 : GEMM_ISA_PORTABLE;
    if (isa == GEMM_ISA_AVX512) return &ISA_AVX512;
    if (isa == GEMM_ISA_AVX2) return &ISA_AVX2;
#endif
    return &ISA_PORTABLE;
}

/* ---- tiles and threads ------------------------------------------------------------------------------ */

typedef struct {
    gemm_args_t g;
    const isa_desc_t *isa;
    int64_t mc, nc, kc;            /* tile rows, tile columns, k-block */
    int64_t mtiles, ntiles;
    int pack;                      /* pack B panels (else the kernels read b in place) */
} plan_t;

/* Copies b[0:kc, 0:w] into dst as kc rows ldp floats apart (ldp: w rounded up to whole vectors, so rows of the
 * 64-byte aligned arena start aligned; the kernels mask what lies past w). */
static void pack_panel(const float *restrict b, int64_t ldb, int64_t kc, int w, int ldp, float *restrict dst) {
    if (w == 32) {   /* a full AVX-512 panel: a fixed-size copy the compiler inlines */
        for (int64_t k = 0; k < kc; k++, b += ldb, dst += ldp) memcpy(dst, b, 32 * sizeof(float));
        return;
    }
    if (w == 16) {
        for (int64_t k = 0; k < kc; k++, b += ldb, dst += ldp) memcpy(dst, b, 16 * sizeof(float));
        return;
    }
    for (int64_t k = 0; k < kc; k++, b += ldb, dst += ldp)
        for (int j = 0; j < w; j++) dst[j] = b[j];
}

/* pack_panel for an implicit im2col: rows k0 .. k0 + kc of b are channel k / taps's plane (ldb apart)
 * shifted by tap_off[k % taps] (b: column j of the panel on every plane) */
static void pack_panel_taps(const float *restrict b, int64_t ldb, const int64_t *tap_off, int64_t taps,
                            int64_t k0, int64_t kc, int w, int ldp, float *restrict dst) {
    int64_t ch = k0 / taps, t = k0 % taps;
    for (int64_t k = 0; k < kc; k++, dst += ldp) {
        const float *src = b + ch * ldb + tap_off[t];
        if (w == 32)
            memcpy(dst, src, 32 * sizeof(float));
        else
            memcpy(dst, src, (size_t)w * sizeof(float));
        if (++t == taps) { t = 0; ch++; }
    }
}

/* pack_panel for a transposed b: column j of the panel is b[j * ldb + 0:kc], contiguous */
static void pack_panel_t(const float *restrict b, int64_t ldb, int64_t kc, int w, int ldp, float *restrict dst) {
    for (int j = 0; j < w; j++, b += ldb)
        for (int64_t k = 0; k < kc; k++) dst[k * ldp + j] = b[k];
}

static void run_tile(void *ctx, int tid, void *arena, int64_t tile) {
    (void)tid;
    const plan_t *p = ctx;
    const gemm_args_t *g = &p->g;
    int64_t nt = tile % p->ntiles, mt = (tile / p->ntiles) % p->mtiles, bi = tile / p->ntiles / p->mtiles;
    int64_t r0 = mt * p->mc, c0 = nt * p->nc;
    int64_t rows = MIN(p->mc, g->m - r0), cols = MIN(p->nc, g->n - c0);
    int64_t io = bi / g->batch_in, ii = bi % g->batch_in;
    const float *a = g->a + io * g->stride_a + ii * g->stride_a_in + r0 * g->lda;
    /* b's columns are ldb apart when transposed, else one apart */
    int64_t col_step = g->trans_b ? g->ldb : 1, k_step = g->trans_b ? 1 : g->ldb;
    const float *b = g->b + io * g->stride_b + ii * g->stride_b_in + c0 * col_step;
    float *c = g->c + io * g->stride_c + ii * g->stride_c_in + r0 * g->ldc + c0;
    int nr = p->isa->nr, vec = p->isa->vec;
    for (int64_t k0 = 0; k0 < g->k; k0 += p->kc) {
        int64_t kc = MIN(p->kc, g->k - k0);
        for (int64_t j = 0; j < cols; j += nr) {
            int w = (int)MIN(nr, cols - j);
            const float *bp = b + k0 * k_step + j * col_step;
            int64_t ldbp = g->ldb;
            if (p->pack) {
                int ldp = (w + vec - 1) / vec * vec;
                if (g->taps > 0)
                    pack_panel_taps(b + j, g->ldb, g->tap_off, g->taps, k0, kc, w, ldp, arena);
                else if (g->trans_b)
                    pack_panel_t(bp, g->ldb, kc, w, ldp, arena);
                else
                    pack_panel(bp, g->ldb, kc, w, ldp, arena);
                bp = arena;
                ldbp = ldp;
            }
            p->isa->panel(rows, w, kc, a + k0, g->lda, bp, ldbp, c + j, g->ldc, k0 > 0);
        }
    }
}

static int64_t ceil_div(int64_t x, int64_t y) { return (x + y - 1) / y; }

int gemm_f32(const gemm_args_t *args, int nthreads, gemm_isa_t isa) {
    if (!gemm_isa_supported(isa)) return -1;
    gemm_args_t one = *args;
    if (one.batch_in < 1) one.batch_in = 1;
    const gemm_args_t *g = &one;
    if (g->batch <= 0 || g->m <= 0 || g->n <= 0) return 0;
    if (g->k <= 0) {
        for (int64_t bi = 0; bi < g->batch; bi++)
            for (int64_t r = 0; r < g->m; r++)
                memset(g->c + bi / g->batch_in * g->stride_c + bi % g->batch_in * g->stride_c_in + r * g->ldc, 0,
                       (size_t)g->n * sizeof(float));
        return 0;
    }
    plan_t p = {.g = *g, .isa = isa_desc(isa)};
    int nr = p.isa->nr;
    /* equal k-blocks of at most KC_MAX */
    p.kc = ceil_div(g->k, ceil_div(g->k, KC_MAX));
    double flops = 2.0 * (double)g->batch * (double)g->m * (double)g->n * (double)g->k;
    int64_t useful = (int64_t)(flops / MIN_FLOPS_PER_THREAD);
    if (nthreads > useful) nthreads = useful < 1 ? 1 : (int)useful;
#ifdef GEMM_X86
    if (g->m == 1 && g->taps == 0 && p.isa == &ISA_AVX512) {   /* one row: the GEMV tiles */
        gemv_plan_t v = {.g = g, .kc = p.kc, .tiles = ceil_div(g->n, GEMV_COLS)};
        return gemm_parallel_for(nthreads, g->batch * v.tiles, 1, GEMV_COLS * sizeof(float), gemv_tile, &v);
    }
#endif
    /* more tiles (halving rows, then columns) until each thread can claim several, for balance when a core
     * is busy */
    p.nc = MIN(ceil_div(g->n, nr) * nr, NC_MAX);
    p.mc = g->m <= MC_MAX ? g->m : MC_MAX / ROW_QUANTUM * ROW_QUANTUM;
    int64_t want = nthreads > 1 ? 4 * (int64_t)nthreads : 1;
    while (g->batch * ceil_div(g->m, p.mc) * ceil_div(g->n, p.nc) < want && p.mc > 4 * ROW_QUANTUM)
        p.mc = ceil_div(p.mc / 2, ROW_QUANTUM) * ROW_QUANTUM;
    while (g->batch * ceil_div(g->m, p.mc) * ceil_div(g->n, p.nc) < want && p.nc > 2 * nr)
        p.nc = ceil_div(p.nc / 2, nr) * nr;
    p.mtiles = ceil_div(g->m, p.mc);
    p.ntiles = ceil_div(g->n, p.nc);
    /* a panel is reused by every row group of the tile: packing pays once there are a few (a transposed b
     * is always packed: the kernels read panel rows) */
    p.pack = g->trans_b || g->taps > 0 || (p.mc >= PACK_MIN_ROWS && g->ldb >= PACK_MIN_LDB);
    size_t arena = p.pack ? (size_t)p.kc * (size_t)nr * sizeof(float) : 0;
    return gemm_parallel_for(nthreads, g->batch * p.mtiles * p.ntiles, 1, arena, run_tile, &p);
}
