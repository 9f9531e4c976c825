/* Kernels: each is one simple loop over packed elements that GCC vectorizes at -O3 (SSE2, and AVX2 via
 * target_clones). Integer arithmetic goes through unsigned types so wrap-around is defined; integer
 * division and modulo never divide by 0 or compute MIN / -1. */
#include "vm_kernels.h"

#include <math.h>
#include <string.h>

#include "vm_math.h"

/* No avx512f clone: GCC 12 -O3 -mavx512f miscompiles the 8-lane integer sum below (wrong sums for rows of
 * 16+ elements; reproduced standalone). The bit-exact tests against the numpy VM would catch a regression. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define VM_CLONES __attribute__((target_clones("avx2", "default")))
/* float32 transcendental kernels only (no integer code): 16 lanes halve their time where AVX-512 exists;
 * IEEE float ops without contraction give the same bits at any width (the bit-exact tests check it). */
#define VM_CLONES_WIDE __attribute__((target_clones("avx512f", "avx2", "default")))
/* kernels calling fmaf: the "avx2" clone has no FMA instruction (it would call libm per element); the
 * x86-64-v3 level (AVX2 + FMA) and v4 (AVX-512) have it */
#define VM_CLONES_FMA __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VM_CLONES
#define VM_CLONES_WIDE
#define VM_CLONES_FMA
#endif

typedef float f32;
typedef int32_t i32;
typedef int64_t i64;
typedef uint8_t b8;

/* ---- expressions (x, y operands; T the type, U its unsigned twin) ---- */
#define F_MAX(x, y) ((((x) >= (y)) | ((x) != (x))) ? (x) : (y))   /* '|' not '||': no branch */
#define F_MIN(x, y) ((((x) <= (y)) | ((x) != (x))) ? (x) : (y))
#define I_MAX(x, y) ((x) >= (y) ? (x) : (y))
#define I_MIN(x, y) ((x) <= (y) ? (x) : (y))
#define W_ADD(T, U, x, y) ((T)((U)(x) + (U)(y)))
#define W_SUB(T, U, x, y) ((T)((U)(x) - (U)(y)))
#define W_MUL(T, U, x, y) ((T)((U)(x) * (U)(y)))

static inline f32 f_mod(f32 x, f32 y) {   /* numpy float remainder: sign of the divisor */
    f32 r = fmodf(x, y);
    return r != 0.0f ? (((r < 0.0f) != (y < 0.0f)) ? r + y : r) : copysignf(0.0f, y);
}
#define I_DIV_MOD(T, U)                                                                         \
    static inline T T##_div(T x, T y) {                                                       \
        T ys = (y == 0 || y == -1) ? 1 : y, q = x / ys;                                          \
        return y == 0 ? 0 : (y == -1 ? (T)(0 - (U)x) : q);                                     \
    }                                                                                           \
    static inline T T##_mod(T x, T y) {                                                       \
        T ys = (y == 0 || y == -1) ? 1 : y, r = x % ys;                                          \
        r = (r != 0 && ((r < 0) != (y < 0))) ? (T)((U)r + (U)y) : r;                            \
        return (y == 0 || y == -1) ? 0 : r;                                                     \
    }
I_DIV_MOD(i32, uint32_t)
I_DIV_MOD(i64, uint64_t)

/* ---- binary kernels ---- */
#define BIN(name, TD, T, expr)                                                                  \
    static VM_CLONES void name##_vv(void *dv, const void *av, const void *bv, int64_t n) {      \
        TD *d = dv; const T *a = av, *b = bv;                                                   \
        for (int64_t i = 0; i < n; i++) { T x = a[i], y = b[i]; d[i] = (expr); }                \
    }                                                                                           \
    static VM_CLONES void name##_vs(void *dv, const void *av, const void *bv, int64_t n) {      \
        TD *d = dv; const T *a = av; const T y = *(const T *)bv;                                \
        for (int64_t i = 0; i < n; i++) { T x = a[i]; d[i] = (expr); }                          \
    }                                                                                           \
    static VM_CLONES void name##_sv(void *dv, const void *av, const void *bv, int64_t n) {      \
        TD *d = dv; const T x = *(const T *)av; const T *b = bv;                                \
        for (int64_t i = 0; i < n; i++) { T y = b[i]; d[i] = (expr); }                          \
    }
#define SET(name) {name##_vv, name##_vs, name##_sv}

#define NUM_BINS(T, U)                                                                          \
    BIN(add_##T, T, T, W_ADD(T, U, x, y)) BIN(sub_##T, T, T, W_SUB(T, U, x, y))                 \
    BIN(mul_##T, T, T, W_MUL(T, U, x, y)) BIN(div_##T, T, T, T##_div(x, y))                     \
    BIN(max_##T, T, T, I_MAX(x, y)) BIN(min_##T, T, T, I_MIN(x, y)) BIN(mod_##T, T, T, T##_mod(x, y))
NUM_BINS(i32, uint32_t)
NUM_BINS(i64, uint64_t)
BIN(add_f32, f32, f32, x + y) BIN(sub_f32, f32, f32, x - y) BIN(mul_f32, f32, f32, x * y)
BIN(div_f32, f32, f32, x / y) BIN(pow_f32, f32, f32, powf(x, y)) BIN(max_f32, f32, f32, F_MAX(x, y))
BIN(min_f32, f32, f32, F_MIN(x, y)) BIN(mod_f32, f32, f32, f_mod(x, y)) BIN(fmod_f32, f32, f32, fmodf(x, y))
BIN(and_b8, b8, b8, x & y) BIN(or_b8, b8, b8, x | y) BIN(xor_b8, b8, b8, x ^ y)

#define CMPS(T)                                                                                 \
    BIN(eq_##T, b8, T, x == y) BIN(ne_##T, b8, T, x != y) BIN(lt_##T, b8, T, x < y)             \
    BIN(le_##T, b8, T, x <= y) BIN(gt_##T, b8, T, x > y) BIN(ge_##T, b8, T, x >= y)
CMPS(f32)
CMPS(i32)
CMPS(i64)
BIN(eq_b8, b8, b8, x == y) BIN(ne_b8, b8, b8, x != y)

#define F DVM_DT_F32
#define I4 DVM_DT_I32
#define I8 DVM_DT_I64
#define B DVM_DT_BOOL
#define NUMROW(OP, n) \
    [DVM_OP_##OP][F] = SET(n##_f32), [DVM_OP_##OP][I4] = SET(n##_i32), [DVM_OP_##OP][I8] = SET(n##_i64)
vm_bin_set_t vm_binary[DVM_N_OPCODES][VM_NDT] = {
    NUMROW(ADD, add), NUMROW(SUB, sub), NUMROW(MUL, mul), NUMROW(DIV, div), NUMROW(MAX, max),
    NUMROW(MIN, min),
    NUMROW(MOD, mod), [DVM_OP_POW][F] = SET(pow_f32), [DVM_OP_FMOD][F] = SET(fmod_f32),
    [DVM_OP_AND][B] = SET(and_b8), [DVM_OP_OR][B] = SET(or_b8), [DVM_OP_XOR][B] = SET(xor_b8),
    NUMROW(EQ, eq), NUMROW(NE, ne), NUMROW(LT, lt), NUMROW(LE, le), NUMROW(GT, gt), NUMROW(GE, ge),
    [DVM_OP_EQ][B] = SET(eq_b8), [DVM_OP_NE][B] = SET(ne_b8),
};

/* ---- unary kernels and casts ---- */
#define UN(name, TD, T, expr)                                                                   \
    static VM_CLONES void name(void *dv, const void *av, int64_t n) {                           \
        TD *d = dv; const T *a = av;                                                            \
        for (int64_t i = 0; i < n; i++) { T x = a[i]; d[i] = (expr); }                          \
    }
UN(mov_f32, f32, f32, x) UN(mov_i32, i32, i32, x) UN(mov_i64, i64, i64, x) UN(mov_b8, b8, b8, x)
#define UNW(name, clones, expr)                                                                 \
    static clones void name(void *dv, const void *av, int64_t n) {                              \
        f32 *d = dv; const f32 *a = av;                                                         \
        for (int64_t i = 0; i < n; i++) { f32 x = a[i]; d[i] = (expr); }                        \
    }
UNW(exp_f32_any, VM_CLONES_FMA, vm_exp_fma(x)) UNW(log_f32, VM_CLONES_WIDE, vm_logf(x))
UN(sqrt_f32, f32, f32, sqrtf(x)) UN(rsqrt_f32, f32, f32, 1.0f / sqrtf(x))
UNW(tanh_f32, VM_CLONES_FMA, vm_tanh_fma(x)) UNW(erf_f32_any, VM_CLONES_WIDE, vm_erff(x))
UNW(sigmoid_f32_any, VM_CLONES_FMA, vm_sigmoid_fma(x)) UN(abs_f32, f32, f32, fabsf(x))
UN(neg_f32, f32, f32, -x)

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
/* exp and sigmoid with AVX-512 intrinsics: vm_exp_fma's steps, with scalef for p * 2^n (one instruction,
 * correctly rounded like vm_exp_fma's integer path, inf on overflow), so every path gives the same bits
 * (NaN payloads aside); compilers do not emit scalef from C. */
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f")))
/* exp of x from xc, x clamped to [VM_EXP_LO, VM_EXP_HI] or x itself where the clamps change nothing that is
 * used: below VM_EXP_LO the mask gives 0 whatever xc is */
static inline AVX512 __m512 exp16_of(__m512 x, __m512 xc) {
    __m512 n = _mm512_sub_ps(_mm512_fmadd_ps(xc, _mm512_set1_ps(1.44269504088896341f),
                                             _mm512_set1_ps(VM_EXP_SHIFTER)), _mm512_set1_ps(VM_EXP_SHIFTER));
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693359375f), xc);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(VM_EXP_Q[0]);
    for (int k = 1; k < VM_EXP_QN; k++) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(VM_EXP_Q[k]));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    /* x <= VM_EXP_LO (softmax's masked -inf and -1e9 among them) gives 0 by the mask, not by scalef: a scalef
     * that underflows takes a microcode assist on Intel cores, and a causal softmax (half its elements
     * masked) ran 6x slower (512x1024: 1.3 ms, 0.22 unmasked). NaN compares unordered: it stays computed. */
    __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(VM_EXP_LO), _CMP_NLE_UQ);
    return _mm512_maskz_scalef_ps(live, p, n);
}
static inline AVX512 __m512 exp16(__m512 x) {
    /* min/max return their second operand when one is NaN: a NaN x stays NaN through the clamps */
    return exp16_of(x, _mm512_max_ps(_mm512_set1_ps(VM_EXP_LO), _mm512_min_ps(_mm512_set1_ps(VM_EXP_HI), x)));
}
/* d = FN(a) over n elements, 16 lanes at a time, the tail masked */
#define UNARY16(name, FN)                                                                       \
    static AVX512 void name(void *dv, const void *av, int64_t n) {                              \
        f32 *d = dv; const f32 *a = av;                                                         \
        int64_t i = 0;                                                                          \
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(d + i, FN(_mm512_loadu_ps(a + i)));       \
        if (i < n) {                                                                            \
            __mmask16 m = (__mmask16)((1u << (n - i)) - 1);                                     \
            _mm512_mask_storeu_ps(d + i, m, FN(_mm512_maskz_loadu_ps(m, a + i)));               \
        }                                                                                       \
    }
UNARY16(exp_f32_avx512, exp16)
static AVX512 void sigmoid_f32_avx512(void *dv, const void *av, int64_t n) {
    f32 *d = dv; const f32 *a = av;
    const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 e = exp16(_mm512_sub_ps(zero, _mm512_loadu_ps(a + i)));
        _mm512_storeu_ps(d + i, _mm512_div_ps(one, _mm512_add_ps(one, e)));
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 e = exp16(_mm512_sub_ps(zero, _mm512_maskz_loadu_ps(m, a + i)));
        _mm512_mask_storeu_ps(d + i, m, _mm512_div_ps(one, _mm512_add_ps(one, e)));
    }
}
/* m / d for finite nonzero d: the reciprocal estimate (relative error below 2^-14) times m, then one Newton
 * step on the quotient (m - y*d exact in an FMA): within an ulp of the division at a fraction of a 512-bit
 * division's cost, which would take its port for about ten cycles */
static inline AVX512 __m512 quotient16(__m512 m, __m512 d) {
    __m512 r = _mm512_rcp14_ps(d);
    __m512 y = _mm512_mul_ps(m, r);
    return _mm512_fmadd_ps(_mm512_fnmadd_ps(y, d, m), r, y);
}
/* ERF's rational fit (isa.py) with FMA steps and quotient16 for (x*P)/Q (Q <= -0.014 on the clipped range):
 * half the instructions of vm_erff's Horner steps and division, 3.3e-7 relative error of erf at most (vm_erff:
 * 4.2e-7); the ISA lets each VM round ERF's steps its own way */
static inline AVX512 __m512 erf16(__m512 x) {
    __m512 xc = _mm512_min_ps(_mm512_set1_ps(4.0f), _mm512_max_ps(_mm512_set1_ps(-4.0f), x));
    __m512 z = _mm512_mul_ps(xc, xc);
    __m512 p = _mm512_set1_ps(DVM_ERF_P[0]), q = _mm512_set1_ps(DVM_ERF_Q[0]);
    for (int k = 1; k < (int)(sizeof DVM_ERF_P / sizeof DVM_ERF_P[0]); k++)
        p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(DVM_ERF_P[k]));
    for (int k = 1; k < (int)(sizeof DVM_ERF_Q / sizeof DVM_ERF_Q[0]); k++)
        q = _mm512_fmadd_ps(q, z, _mm512_set1_ps(DVM_ERF_Q[k]));
    return quotient16(_mm512_mul_ps(xc, p), q);
}
UNARY16(erf_f32_avx512, erf16)
static void exp_f32(void *d, const void *a, int64_t n) {
    (__builtin_cpu_supports("avx512f") ? exp_f32_avx512 : exp_f32_any)(d, a, n);
}
static void erf_f32(void *d, const void *a, int64_t n) {
    (__builtin_cpu_supports("avx512f") ? erf_f32_avx512 : erf_f32_any)(d, a, n);
}
static void sigmoid_f32(void *d, const void *a, int64_t n) {
    (__builtin_cpu_supports("avx512f") ? sigmoid_f32_avx512 : sigmoid_f32_any)(d, a, n);
}
#else
#define exp_f32 exp_f32_any
#define erf_f32 erf_f32_any
#define sigmoid_f32 sigmoid_f32_any
#endif
UN(recip_f32, f32, f32, 1.0f / x) UN(floor_f32, f32, f32, floorf(x)) UN(ceil_f32, f32, f32, ceilf(x))
UN(round_f32, f32, f32, rintf(x)) UN(isnan_f32, b8, f32, x != x) UN(isinf_f32, b8, f32, fabsf(x) == INFINITY)
UN(abs_i32, i32, i32, x < 0 ? (i32)(0u - (uint32_t)x) : x) UN(neg_i32, i32, i32, (i32)(0u - (uint32_t)x))
UN(abs_i64, i64, i64, x < 0 ? (i64)(0u - (uint64_t)x) : x) UN(neg_i64, i64, i64, (i64)(0u - (uint64_t)x))
UN(not_b8, b8, b8, x ^ 1)

vm_un_fn vm_unary[DVM_N_OPCODES][VM_NDT] = {
    [DVM_OP_MOV][F] = mov_f32, [DVM_OP_MOV][I4] = mov_i32, [DVM_OP_MOV][I8] = mov_i64,
        [DVM_OP_MOV][B] = mov_b8,
    [DVM_OP_EXP][F] = exp_f32, [DVM_OP_LOG][F] = log_f32, [DVM_OP_SQRT][F] = sqrt_f32,
    [DVM_OP_RSQRT][F] = rsqrt_f32, [DVM_OP_TANH][F] = tanh_f32, [DVM_OP_ERF][F] = erf_f32,
    [DVM_OP_SIGMOID][F] = sigmoid_f32, [DVM_OP_ABS][F] = abs_f32, [DVM_OP_ABS][I4] = abs_i32,
    [DVM_OP_ABS][I8] = abs_i64, [DVM_OP_NEG][F] = neg_f32, [DVM_OP_NEG][I4] = neg_i32,
        [DVM_OP_NEG][I8] = neg_i64,
    [DVM_OP_RECIP][F] = recip_f32, [DVM_OP_FLOOR][F] = floor_f32, [DVM_OP_CEIL][F] = ceil_f32,
    [DVM_OP_ROUND][F] = round_f32, [DVM_OP_NOT][B] = not_b8, [DVM_OP_ISNAN][F] = isnan_f32,
    [DVM_OP_ISINF][F] = isinf_f32,
    /* BCAST_ROW is done by the executor (a fill per row); MOV stands in so the coverage check passes */
    [DVM_OP_BCAST_ROW][F] = mov_f32, [DVM_OP_BCAST_ROW][I4] = mov_i32, [DVM_OP_BCAST_ROW][I8] = mov_i64,
    [DVM_OP_BCAST_ROW][B] = mov_b8,
};

/* float -> int: truncation toward zero in range, the integer minimum for NaN and out of range (as x86). */
static inline i32 f2i32(f32 x) {
    int ok = x >= -2147483648.0f && x < 2147483648.0f;
    i32 v = (i32)(ok ? x : 0.0f);
    return ok ? v : INT32_MIN;
}
static inline i64 f2i64(f32 x) {
    int ok = x >= -9223372036854775808.0f && x < 9223372036854775808.0f;
    i64 v = (i64)(ok ? x : 0.0f);
    return ok ? v : INT64_MIN;
}
static inline f32 to_half(f32 x) { return vm_h2f(vm_f2h(x)); }
UN(c_f32_i32, f32, i32, (f32)x) UN(c_f32_i64, f32, i64, (f32)x) UN(c_f32_b8, f32, b8, (f32)x)
UN(c_f16_f32, f32, f32, to_half(x)) UN(c_f16_i32, f32, i32, to_half((f32)x))
UN(c_f16_i64, f32, i64, to_half((f32)x))
UN(c_i32_f32, i32, f32, f2i32(x)) UN(c_i32_i64, i32, i64, (i32)(uint32_t)x)
UN(c_i32_b8, i32, b8, x)
UN(c_i64_f32, i64, f32, f2i64(x)) UN(c_i64_i32, i64, i32, x)
UN(c_i64_b8, i64, b8, x)
UN(c_b8_f32, b8, f32, x != 0.0f) UN(c_b8_i32, b8, i32, x != 0) UN(c_b8_i64, b8, i64, x != 0)

vm_un_fn vm_cast[VM_NDT][VM_NDT] = {
    [F][F] = mov_f32, [F][I4] = c_f32_i32, [F][I8] = c_f32_i64, [F][B] = c_f32_b8,
    [DVM_DT_F16][F] = c_f16_f32, [DVM_DT_F16][I4] = c_f16_i32, [DVM_DT_F16][I8] = c_f16_i64,
    [DVM_DT_F16][B] = c_f32_b8,   /* 0 and 1 are exact in float16 */
    [I4][F] = c_i32_f32, [I4][I4] = mov_i32, [I4][I8] = c_i32_i64, [I4][B] = c_i32_b8,
    [I8][F] = c_i64_f32, [I8][I4] = c_i64_i32, [I8][I8] = mov_i64, [I8][B] = c_i64_b8,
    [B][F] = c_b8_f32, [B][I4] = c_b8_i32, [B][I8] = c_b8_i64, [B][B] = mov_b8,
};

/* ---- reductions: 8 lanes, element j into lane j % 8, then a fixed pairwise tree (isa.py). Integer ops are
 * associative, so their rows need not be cut into isa.py's chunks; float rows are (RED_F32 below). ---- */
#define TREE(name, T, OP)                                                                       \
    static inline T name##_tree(const T *l) {                                                   \
        return OP(OP(OP(l[0], l[4]), OP(l[2], l[6])), OP(OP(l[1], l[5]), OP(l[3], l[7])));      \
    }
#define RED(name, T, ID, OP)                                                                    \
    TREE(name, T, OP)                                                                           \
    static inline void name##_row(T *d, const T *x, int64_t nc) {                               \
        T l[8] = {ID, ID, ID, ID, ID, ID, ID, ID};                                              \
        int64_t j = 0;                                                                          \
        for (; j + 8 <= nc; j += 8)                                                             \
            for (int k = 0; k < 8; k++) l[k] = OP(l[k], x[j + k]);                              \
        for (int k = 0; j + k < nc; k++) l[k] = OP(l[k], x[j + k]);                             \
        *d = name##_tree(l);                                                                    \
    }
#define RED_ROWS(name, T)                                                                       \
    static VM_CLONES void name(void *dv, const void *av, int64_t nr, int64_t nc) {             \
        for (int64_t i = 0; i < nr; i++) name##_row((T *)dv + i, (const T *)av + i * nc, nc);   \
    }
#define F_ADD(x, y) ((x) + (y))
#define F_MUL(x, y) ((x) * (y))
#define ADD32(x, y) W_ADD(i32, uint32_t, x, y)
#define MUL32(x, y) W_MUL(i32, uint32_t, x, y)
#define ADD64(x, y) W_ADD(i64, uint64_t, x, y)
#define MUL64(x, y) W_MUL(i64, uint64_t, x, y)
TREE(rsum_f32, f32, F_ADD) TREE(rprod_f32, f32, F_MUL) TREE(rmax_f32, f32, F_MAX) TREE(rmin_f32, f32, F_MIN)
RED(rsum_i32, i32, 0, ADD32) RED(rprod_i32, i32, 1, MUL32) RED(rmax_i32, i32, INT32_MIN, I_MAX)
RED(rmin_i32, i32, INT32_MAX, I_MIN)
RED(rsum_i64, i64, 0, ADD64) RED(rprod_i64, i64, 1, MUL64) RED(rmax_i64, i64, INT64_MIN, I_MAX)
RED(rmin_i64, i64, INT64_MAX, I_MIN)
RED_ROWS(rsum_i32, i32) RED_ROWS(rprod_i32, i32) RED_ROWS(rmax_i32, i32) RED_ROWS(rmin_i32, i32)
RED_ROWS(rsum_i64, i64) RED_ROWS(rprod_i64, i64) RED_ROWS(rmax_i64, i64) RED_ROWS(rmin_i64, i64)

/* float32 rows (softmax, LayerNorm) four at a time with GCC vector types: the 8 lanes of each row are one
 * vector, so the four rows are four independent dependency chains where one row's chain would wait on the
 * latency of OP; each row keeps its own lanes and order (the same bits as a row at a time). The last rows
 * of a tile go one at a time, still as one vector each (a scalar loop took 3x as long on 1-row tiles). */
typedef f32 vf8 __attribute__((vector_size(32)));
typedef i32 vi8 __attribute__((vector_size(32)));
/* macros, not functions: a function passing 32-byte vectors would draw GCC's -Wpsabi note in SSE builds */
#define vf8_load(p) ({ vf8 v_; memcpy(&v_, (p), sizeof v_); v_; })
#define VF8_PICK(m, x, y) ((vf8)(((m) & (vi8)(x)) | (~(m) & (vi8)(y))))
#define V_ADD(x, y) ((x) + (y))
#define V_MUL(x, y) ((x) * (y))
#define V_MAX(x, y) VF8_PICK(((x) >= (y)) | ((x) != (x)), x, y)
#define V_MIN(x, y) VF8_PICK(((x) <= (y)) | ((x) != (x)), x, y)
/* The end of the reduction chunk that starts at c0 (isa.py: each chunk's lanes start at the identity and
 * are combined into the row's lanes in chunk order). */
#define CHUNK_END(c0, nc) ((nc) - (c0) < DVM_REDUCE_CHUNK ? (nc) : (c0) + DVM_REDUCE_CHUNK)
/* v[r] (r < g) = the lanes of row r: each chunk's lanes from id (CHUNK(p, x, nc, c0, end, g) adds a chunk
 * to p), combined in chunk order by COMBINE (of v[r] and p[r]); the first chunk goes into v directly */
#define FOLD_CHUNKS(CHUNK, COMBINE)                                                             \
    for (int r = 0; r < g; r++) v[r] = id;                                                      \
    CHUNK(v, x, nc, 0, CHUNK_END(0, nc), g);   /* OP(id, p) is p */                              \
    for (int64_t c0 = DVM_REDUCE_CHUNK; c0 < nc; c0 += DVM_REDUCE_CHUNK) {                      \
        for (int r = 0; r < g; r++) p[r] = id;                                                  \
        CHUNK(p, x, nc, c0, CHUNK_END(c0, nc), g);                                              \
        for (int r = 0; r < g; r++) v[r] = COMBINE;                                             \
    }
#define RED_F32(name, ID, OP, VOP)                                                              \
    /* p[r] op= row r's elements c0 .. end - 1 (one chunk), the tail's element j + k into lane k */     \
    static inline __attribute__((always_inline)) void name##_chunk(vf8 *p, const f32 *x, int64_t nc,   \
                                                                   int64_t c0, int64_t end, const int g) { \
        int64_t j = c0;                                                                         \
        for (; j + 8 <= end; j += 8)                                                            \
            for (int r = 0; r < g; r++) p[r] = VOP(p[r], vf8_load(x + r * nc + j));            \
        if (j < end)                                                                            \
            for (int r = 0; r < g; r++) {                                                       \
                f32 l[8];                                                                       \
                memcpy(l, &p[r], sizeof l);                                                     \
                for (int k = 0; j + k < end; k++) l[k] = OP(l[k], x[r * nc + j + k]);           \
                memcpy(&p[r], l, sizeof l);                                                     \
            }                                                                                   \
    }                                                                                           \
    static inline __attribute__((always_inline)) void name##_group(f32 *d, const f32 *x, int64_t nc, \
                                                                   const int g) {               \
        const vf8 id = {ID, ID, ID, ID, ID, ID, ID, ID};                                        \
        vf8 v[4], p[4];                                                                         \
        FOLD_CHUNKS(name##_chunk, VOP(v[r], p[r]))                                              \
        for (int r = 0; r < g; r++) {                                                           \
            f32 l[8];                                                                           \
            memcpy(l, &v[r], sizeof l);                                                         \
            d[r] = name##_tree(l);                                                              \
        }                                                                                       \
    }                                                                                           \
    static VM_CLONES void name(void *dv, const void *av, int64_t nr, int64_t nc) {             \
        f32 *d = dv; const f32 *a = av;                                                         \
        int64_t i = 0;                                                                          \
        for (; i + 4 <= nr; i += 4) name##_group(d + i, a + i * nc, nc, 4);                     \
        for (; i < nr; i++) name##_group(d + i, a + i * nc, nc, 1);                             \
    }
RED_F32(rsum_f32, -0.0f, F_ADD, V_ADD) RED_F32(rprod_f32, 1.0f, F_MUL, V_MUL)
#define rmax_f32_any_tree rmax_f32_tree
#define rmin_f32_any_tree rmin_f32_tree
RED_F32(rmax_f32_any, -INFINITY, F_MAX, V_MAX) RED_F32(rmin_f32_any, INFINITY, F_MIN, V_MIN)
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
/* Float max/min rows with the max/min instructions: vmaxps(y, acc) is F_MAX(acc, y) except for a NaN y,
 * which the blend puts in; three cycles of latency per step where the compare-or-blend form took five,
 * the same bits (lanes and order as rsum_f32). */
#define AVX2 __attribute__((target("avx2")))
/* OP(x, y) of the scalar form (F_MAX/F_MIN: x where x wins or is NaN, else y) on 4 lanes, for the tree */
#define MINMAX4(CMP, x, y) \
    _mm_blendv_ps((y), (x), _mm_or_ps(_mm_cmp_ps((x), (y), CMP), _mm_cmp_ps((x), (x), _CMP_UNORD_Q)))
/* OP(acc, y) on 8 lanes: vmaxps(y, acc) is F_MAX(acc, y) except for a NaN y, which the blend puts in */
#define MINMAX_STEP(INTR, acc, y) _mm256_blendv_ps(INTR((y), (acc)), (y), _mm256_cmp_ps((y), (y), _CMP_UNORD_Q))
#define MINMAX_ROWS(name, INTR, ID, CMP)                                                        \
    /* p[r] = OP(p[r], row r's elements c0 .. end - 1), the tail's element j + k into lane k (ID elsewhere: \
     * OP(l, ID) is l) */                                                                       \
    static inline AVX2 __attribute__((always_inline)) void name##_chunk(__m256 *p, const f32 *x, int64_t nc, \
                                                                        int64_t c0, int64_t end, const int g) { \
        int64_t j = c0;                                                                         \
        for (; j + 8 <= end; j += 8)                                                            \
            for (int r = 0; r < g; r++) {                                                       \
                __m256 y = _mm256_loadu_ps(x + r * nc + j);                                     \
                p[r] = MINMAX_STEP(INTR, p[r], y);                                              \
            }                                                                                   \
        if (j < end) {                                                                          \
            const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);                      \
            const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(end - j)), lane);    \
            for (int r = 0; r < g; r++) {                                                       \
                __m256 y = _mm256_blendv_ps(_mm256_set1_ps(ID), _mm256_maskload_ps(x + r * nc + j, tail), \
                                            _mm256_castsi256_ps(tail));                         \
                p[r] = MINMAX_STEP(INTR, p[r], y);                                              \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
    static inline AVX2 __attribute__((always_inline)) void name##_group(f32 *d, const f32 *x, int64_t nc, \
                                                                        const int g) {          \
        const __m256 id = _mm256_set1_ps(ID);                                                   \
        __m256 v[4], p[4];                                                                      \
        FOLD_CHUNKS(name##_chunk, MINMAX_STEP(INTR, v[r], p[r]))                                \
        /* the fixed tree OP(OP(OP(l0, l4), OP(l2, l6)), OP(OP(l1, l5), OP(l3, l7))) on vectors: a scalar \
         * tree per row was most of softmax's time on rows of 16 */                             \
        for (int r = 0; r < g; r++) {                                                           \
            __m128 h = MINMAX4(CMP, _mm256_castps256_ps128(v[r]), _mm256_extractf128_ps(v[r], 1)); \
            h = MINMAX4(CMP, h, _mm_movehl_ps(h, h));                                           \
            h = MINMAX4(CMP, h, _mm_shuffle_ps(h, h, 1));                                       \
            d[r] = _mm_cvtss_f32(h);                                                            \
        }                                                                                       \
    }                                                                                           \
    static AVX2 void name##_avx2(void *dv, const void *av, int64_t nr, int64_t nc) {            \
        f32 *d = dv; const f32 *a = av;                                                         \
        int64_t i = 0;                                                                          \
        for (; i + 4 <= nr; i += 4) name##_group(d + i, a + i * nc, nc, 4);                     \
        for (; i < nr; i++) name##_group(d + i, a + i * nc, nc, 1);                             \
    }                                                                                           \
    static void name(void *d, const void *a, int64_t nr, int64_t nc) {                          \
        (__builtin_cpu_supports("avx2") ? name##_avx2 : name##_any)(d, a, nr, nc);              \
    }
MINMAX_ROWS(rmax_f32, _mm256_max_ps, -INFINITY, _CMP_GE_OQ)
MINMAX_ROWS(rmin_f32, _mm256_min_ps, INFINITY, _CMP_LE_OQ)
#else
#define rmax_f32 rmax_f32_any
#define rmin_f32 rmin_f32_any
#endif
#define REDROW(OP, n) [DVM_OP_##OP][F] = n##_f32, [DVM_OP_##OP][I4] = n##_i32, [DVM_OP_##OP][I8] = n##_i64
vm_red_fn vm_reduce[DVM_N_OPCODES][VM_NDT] = {
    REDROW(RSUM, rsum), REDROW(RPROD, rprod), REDROW(RMAX, rmax), REDROW(RMIN, rmin),
};

/* ---- row passes: SUB of a ROW, then EXP or a square, then RSUM, in one pass (vm_validate.c fuses them) ---- */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
/* Rows go last to first: row i writes elements i*nc.. of d, past every row value still to read when d is
 * also the ROW register (EXP in place over the row maxima). Each row's sum adds the summed values to lane
 * j % 8 in element order, as rsum_f32 does, so the bits equal the three instructions'. While it computes,
 * the pass prefetches into L2 the same place nr rows on: the next tile's input when a is an input read in
 * place, the tile this thread most likely runs next (claims are runs of consecutive tiles). Otherwise the
 * first pass of the next tile (the row max) waits on memory with nothing to overlap: softmax over
 * 8192x1024 on one thread took 4.8 ms instead of 6.5. */
static inline AVX512 __m256 add_lanes(__m256 acc, __m512 y) {   /* elements j and j + 8 into lane j */
    acc = _mm256_add_ps(acc, _mm512_castps512_ps256(y));
    return _mm256_add_ps(acc, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(y), 1)));
}
/* One step of a row pass: elements J .. J + 15 of the row, their values to e, their sums into ACC's lanes */
#define ROW_STEP(ACC, J, KEPT, SUMMED)                                                          \
    {                                                                                           \
        __m512 v = _mm512_sub_ps(_mm512_loadu_ps(x + (J)), b), y = KEPT;                        \
        __builtin_prefetch(x + ahead + (J), 0, 2);   /* the next tile's row i: see above */   \
        _mm512_storeu_ps(e + (J), y);                                                           \
        ACC = add_lanes(ACC, SUMMED);                                                           \
    }
/* Elements j .. end - 1 of a row (in one of rsum_f32's chunks) */
#define ROW_CHUNK(ACC, KEPT, SUMMED)                                                            \
    for (; j + 16 <= end; j += 16) ROW_STEP(ACC, j, KEPT, SUMMED)                               \
    if (j < end) {   /* the tail, -0.0 (which adds nothing) past its end */                     \
        __mmask16 m = (__mmask16)((1u << (end - j)) - 1);                                       \
        __m512 v = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), b), y = KEPT;                 \
        _mm512_mask_storeu_ps(e + j, m, y);                                                     \
        ACC = add_lanes(ACC, _mm512_mask_mov_ps(_mm512_set1_ps(-0.0f), m, SUMMED));             \
        j = end;                                                                                \
    }
/* rsum_f32_tree's pairs on the 8 lanes as vectors (a scalar tree per row dominated rows of 16) */
static inline AVX512 float tree_sum8(__m256 acc) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ps(h, _mm_shuffle_ps(h, h, 1));
    return _mm_cvtss_f32(h);
}
/* One row of a pass: e = KEPT of (x - b), returns the RSUM of SUMMED. Rows of one chunk and longer rows go
 * in loops of their own (ROW_PASS): with the chunk loop in it, the loop over softmax's rows of 16 no longer
 * kept exp16's constants in registers and took 10% longer. `ahead` elements on is what to prefetch. */
#define ROW_FNS(name, KEPT, SUMMED)                                                             \
    static inline __attribute__((always_inline)) AVX512 f32 name##_short(f32 *e, const f32 *x, __m512 b, \
                                                                         int64_t nc, int64_t ahead) { \
        __m256 acc = _mm256_set1_ps(-0.0f);                                                     \
        int64_t j = 0, end = nc;                                                                \
        ROW_CHUNK(acc, KEPT, SUMMED)                                                            \
        return tree_sum8(acc);                                                                  \
    }                                                                                           \
    static inline __attribute__((always_inline)) AVX512 f32 name##_long(f32 *e, const f32 *x, __m512 b, \
                                                                        int64_t nc, int64_t ahead) { \
        __m256 acc = _mm256_set1_ps(-0.0f);                                                     \
        int64_t j = 0, end;                                                                     \
        /* two full chunks at a time: independent chains (one alone waits on each add) */       \
        for (; j + 2 * DVM_REDUCE_CHUNK <= nc; j += 2 * DVM_REDUCE_CHUNK) {                     \
            __m256 p0 = _mm256_set1_ps(-0.0f), p1 = p0;                                         \
            for (int64_t s = j; s < j + DVM_REDUCE_CHUNK; s += 16) {                            \
                ROW_STEP(p0, s, KEPT, SUMMED)                                                   \
                ROW_STEP(p1, s + DVM_REDUCE_CHUNK, KEPT, SUMMED)                                \
            }                                                                                   \
            acc = _mm256_add_ps(_mm256_add_ps(acc, p0), p1);   /* in chunk order */              \
        }                                                                                       \
        while (j < nc) {   /* the rest chunk by chunk */                                        \
            __m256 part = _mm256_set1_ps(-0.0f);                                                \
            end = CHUNK_END(j, nc);                                                             \
            ROW_CHUNK(part, KEPT, SUMMED)                                                       \
            acc = _mm256_add_ps(acc, part);                                                     \
        }                                                                                       \
        return tree_sum8(acc);                                                                  \
    }
#define ROW_PASS(name)                                                                          \
    static AVX512 void name(f32 *d, f32 *sums, const f32 *a, const f32 *row, int64_t nr, int64_t nc) { \
        for (int64_t i = nr - 1; i >= 0 && nc <= DVM_REDUCE_CHUNK; i--)                         \
            sums[i] = name##_short(d + i * nc, a + i * nc, _mm512_set1_ps(row[i]), nc, nr * nc); \
        for (int64_t i = nr - 1; i >= 0 && nc > DVM_REDUCE_CHUNK; i--)                          \
            sums[i] = name##_long(d + i * nc, a + i * nc, _mm512_set1_ps(row[i]), nc, nr * nc); \
    }
/* softmax: d = exp(a - row), sums of d */
ROW_FNS(sub_exp_rsum, exp16(v), y)
ROW_PASS(sub_exp_rsum)
/* softmax's own, a - row <= 0 (row is the max) or NaN: exp16 without its clamps, which change no such value
 * (below VM_EXP_LO the mask gives 0; the steps stay finite or NaN there, no denormal, no assist) */
ROW_FNS(softmax_exp_rsum, exp16_of(v, v), y)
/* LayerNorm's variance: d = a - row, sums of d * d */
ROW_FNS(sub_square_rsum, v, _mm512_mul_ps(y, y))
ROW_PASS(sub_square_rsum)

/* The largest element of a row by four independent vmaxps chains (rmax_f32's one chain per row waits on each
 * step). It can differ from rmax_f32's only where softmax's values cannot tell: in the sign of a zero max
 * (x - 0 and x - -0 are equal for x != 0, exp(0) = exp(-0)) and for rows holding a NaN, which vmaxps passes
 * over: such a row still sums to NaN, and every value of it is NaN, as with the ISA's max. */
static inline AVX512 f32 max_any_order(const f32 *x, int64_t nc) {
    const __m512 lo = _mm512_set1_ps(-INFINITY);
    __m512 a0 = lo, a1 = lo, a2 = lo, a3 = lo;
    int64_t j = 0;
    for (; j + 64 <= nc; j += 64) {
        a0 = _mm512_max_ps(_mm512_loadu_ps(x + j), a0);
        a1 = _mm512_max_ps(_mm512_loadu_ps(x + j + 16), a1);
        a2 = _mm512_max_ps(_mm512_loadu_ps(x + j + 32), a2);
        a3 = _mm512_max_ps(_mm512_loadu_ps(x + j + 48), a3);
    }
    for (; j + 16 <= nc; j += 16) a0 = _mm512_max_ps(_mm512_loadu_ps(x + j), a0);
    if (j < nc) a1 = _mm512_max_ps(_mm512_mask_loadu_ps(lo, (__mmask16)((1u << (nc - j)) - 1), x + j), a1);
    return _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(a0, a1), _mm512_max_ps(a2, a3)));
}
/* softmax a row at a time (vm_validate.c's VM_FUSE_SOFTMAX: RMAX, the SUB-EXP-RSUM pass, RECIP of the sums,
 * MUL by them), so the row stays in L1 from its max to its scaled values: the three passes over a tile went
 * to L2 and back (1024x1024 on one thread: 0.42 -> 0.28 ms). y may not overlap x; with `stream` (y's rows
 * 64-byte aligned, whole vectors) the values wait in tmp (nc elements) and go out with non-temporal stores.
 * Every value is rounded as by the instructions one by one: the same bits (NaN payloads aside). */
static AVX512 void softmax_rows(f32 *y, f32 *tmp, const f32 *x, int64_t nr, int64_t nc, int stream) {
    for (int64_t i = 0; i < nr; i++) {
        const f32 *xi = x + i * nc;
        f32 *yi = y + i * nc, *e = stream ? tmp : yi;
        __m512 b = _mm512_set1_ps(max_any_order(xi, nc));
        f32 s = nc <= DVM_REDUCE_CHUNK ? softmax_exp_rsum_short(e, xi, b, nc, nr * nc)
                                       : softmax_exp_rsum_long(e, xi, b, nc, nr * nc);
        const __m512 r = _mm512_set1_ps(1.0f / s);
        int64_t j = 0;
        if (stream)
            for (; j + 16 <= nc; j += 16) _mm512_stream_ps(yi + j, _mm512_mul_ps(_mm512_loadu_ps(e + j), r));
        for (; j + 16 <= nc; j += 16) _mm512_storeu_ps(yi + j, _mm512_mul_ps(_mm512_loadu_ps(e + j), r));
        if (j < nc) {
            __mmask16 t = (__mmask16)((1u << (nc - j)) - 1);
            _mm512_mask_storeu_ps(yi + j, t, _mm512_mul_ps(_mm512_maskz_loadu_ps(t, e + j), r));
        }
    }
}
vm_softmax_fn vm_softmax_kernel(void) { return __builtin_cpu_supports("avx512f") ? softmax_rows : 0; }
vm_row_pass_fn vm_row_pass(int kind) {
    if (!__builtin_cpu_supports("avx512f")) return 0;
    return kind == VM_FUSE_SUB_EXP_RSUM ? sub_exp_rsum : kind == VM_FUSE_SUB_SQUARE_RSUM ? sub_square_rsum : 0;
}
#else
vm_row_pass_fn vm_row_pass(int kind) { (void)kind; return 0; }
vm_softmax_fn vm_softmax_kernel(void) { return 0; }
#endif

/* ---- elementwise chains: one pass over 128-element strips (vm_validate.c forms them) ---- */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
/* vm_tanh_fma's steps on 16 lanes (min(9, |x|) keeps a NaN as the select does; a NaN compares false with
 * VM_TANH_ONE), the same bits as the unfused TANH kernel's vectorised loop */
static inline AVX512 __m512 tanh16(__m512 x) {
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    __m512 ax = _mm512_castsi512_ps(_mm512_andnot_si512(sign, _mm512_castps_si512(x)));
    __m512 cx = _mm512_min_ps(_mm512_set1_ps(9.0f), ax);
    __m512 z = _mm512_mul_ps(cx, cx);
    __m512 p = _mm512_set1_ps(VM_TANH_P[0]), q = _mm512_set1_ps(VM_TANH_Q[0]);
    for (int k = 1; k < VM_TANH_N; k++) {
        p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(VM_TANH_P[k]));
        q = _mm512_fmadd_ps(q, z, _mm512_set1_ps(VM_TANH_Q[k]));
    }
    __m512 y = _mm512_div_ps(_mm512_mul_ps(cx, p), q);   /* >= 0: the sign bit is x's */
    y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ax, _mm512_set1_ps(VM_TANH_ONE), _CMP_GT_OQ),
                             _mm512_min_ps(_mm512_set1_ps(1.0f), y), _mm512_set1_ps(1.0f));   /* NaN: y */
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(y),
                                               _mm512_and_si512(sign, _mm512_castps_si512(x))));
}
/* F_MAX / F_MIN: x where x >= y (x <= y) or x is NaN, else y */
static inline AVX512 __m512 pick16(__m512 x, __m512 y, int cmp) {
    __mmask16 m = _mm512_cmp_ps_mask(x, y, cmp) | _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    return _mm512_mask_blend_ps(m, y, x);
}
/* Eight vectors (128 elements) per step: one dispatch per step for all eight keeps the switch's cost per
 * element low while the step's results stay in registers for the next step, and eight independent
 * operations cover an add's latency on both vector ports (with four, each step of a chain waited on the one
 * before: a 24-step ADD/MUL chain over 16x1024 tiles took 7.2 cycles per step and 64 elements, 5.5 with
 * eight, 5.2 with sixteen; bias+GELU 1024x1024 on 2 threads 260 -> 190 us, SiLU-gated 8192x1024 2.47 ->
 * 1.98 ms). */
#define VM_CHAIN_W 8
typedef struct { __m512 v[VM_CHAIN_W]; } vq_t;
#define FOR_W(j) for (int j = 0; j < VM_CHAIN_W; j++)
#define APPLY(expr) do { FOR_W(j) { __m512 x = a.v[j], y = b.v[j]; (void)y; r.v[j] = (expr); } } while (0)
static inline __attribute__((always_inline)) AVX512 vq_t chain_apply(int op, vq_t a, vq_t b) {
    const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    vq_t r;
    switch (op) {
    case DVM_OP_ADD: APPLY(_mm512_add_ps(x, y)); break;
    case DVM_OP_SUB: APPLY(_mm512_sub_ps(x, y)); break;
    case DVM_OP_MUL: APPLY(_mm512_mul_ps(x, y)); break;
    case DVM_OP_DIV: APPLY(_mm512_div_ps(x, y)); break;
    case DVM_OP_MAX: APPLY(pick16(x, y, _CMP_GE_OQ)); break;
    case DVM_OP_MIN: APPLY(pick16(x, y, _CMP_LE_OQ)); break;
    case DVM_OP_EXP: APPLY(exp16(x)); break;
    case DVM_OP_TANH: APPLY(tanh16(x)); break;
    case DVM_OP_ERF: APPLY(erf16(x)); break;
    case DVM_OP_SIGMOID: APPLY(_mm512_div_ps(one, _mm512_add_ps(one, exp16(_mm512_sub_ps(zero, x))))); break;
    case DVM_OP_SQRT: APPLY(_mm512_sqrt_ps(x)); break;
    case DVM_OP_RSQRT: APPLY(_mm512_div_ps(one, _mm512_sqrt_ps(x))); break;
    case DVM_OP_RECIP: APPLY(_mm512_div_ps(one, x)); break;
    case DVM_OP_NEG: APPLY(_mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(x), sign))); break;
    case DVM_OP_ABS: APPLY(_mm512_castsi512_ps(_mm512_andnot_si512(sign, _mm512_castps_si512(x)))); break;
    default: r = a; break;   /* STORE */
    }
    return r;
}
int vm_chain_op(int op) {
    switch (op) {
    case DVM_OP_ADD: case DVM_OP_SUB: case DVM_OP_MUL: case DVM_OP_DIV: case DVM_OP_MAX: case DVM_OP_MIN:
    case DVM_OP_EXP: case DVM_OP_TANH: case DVM_OP_ERF: case DVM_OP_SIGMOID: case DVM_OP_SQRT:
    case DVM_OP_RSQRT: case DVM_OP_RECIP: case DVM_OP_NEG: case DVM_OP_ABS:
        return 1;
    default:
        return 0;
    }
}
/* full: every lane of the strip is in the row, and loads and stores go unmasked (with a mask per vector,
 * eight of them, whole strips ran 3-8% slower: bias+GELU over 8192x1024 on one thread 2.80 -> 2.61 ms,
 * the SiLU-gated product 3.62 -> 3.54, Adam 8.3-8.4 -> 8.0-8.2) */
static inline __attribute__((always_inline)) AVX512 vq_t chain_src(const vm_chain_step_t *s, int j, vq_t acc,
                                                                   const vq_t *slot, int64_t off, int64_t c,
                                                                   const __mmask16 *m, int full) {
    vq_t r;
    switch (s->src[j]) {
    case VM_SRC_ACC: return acc;
    case VM_SRC_SLOT: return slot[s->slot[j]];
    case VM_SRC_PACKED:
        if (full) FOR_W(q) r.v[q] = _mm512_loadu_ps(s->p[j] + off + c + 16 * q);
        else FOR_W(q) r.v[q] = _mm512_maskz_loadu_ps(m[q], s->p[j] + off + c + 16 * q);
        return r;
    case VM_SRC_ROWREP:
        if (full) FOR_W(q) r.v[q] = _mm512_loadu_ps(s->p[j] + c + 16 * q);
        else FOR_W(q) r.v[q] = _mm512_maskz_loadu_ps(m[q], s->p[j] + c + 16 * q);
        return r;
    default: FOR_W(q) r.v[q] = _mm512_set1_ps(*s->p[j]); return r;
    }
}
/* One strip of 16 * VM_CHAIN_W elements from column c of the row at off through the n steps */
static inline __attribute__((always_inline)) AVX512 void chain_strip(const vm_chain_step_t *s, int n, vq_t *slot,
                                                                     int64_t off, int64_t c, const __mmask16 *m,
                                                                     int full) {
    vq_t acc;
    FOR_W(q) acc.v[q] = _mm512_setzero_ps();
    for (int k = 0; k < n; k++) {
        const vm_chain_step_t *st = &s[k];
        vq_t a = chain_src(st, 0, acc, slot, off, c, m, full);
        acc = chain_apply(st->op, a, st->nsrc > 1 ? chain_src(st, 1, acc, slot, off, c, m, full) : a);
        if (st->to_slot) slot[k] = acc;
        if (st->out == VM_OUT_STREAM && full) {
            FOR_W(q) _mm512_stream_ps(st->d + off + c + 16 * q, acc.v[q]);
        } else if (st->out != VM_OUT_NONE && full) {
            FOR_W(q) _mm512_storeu_ps(st->d + off + c + 16 * q, acc.v[q]);
        } else if (st->out != VM_OUT_NONE) {
            FOR_W(q) _mm512_mask_storeu_ps(st->d + off + c + 16 * q, m[q], acc.v[q]);
        }
    }
}
static AVX512 void chain_f32(const vm_chain_step_t *s, int n, int64_t nr, int64_t nc) {
    vq_t slot[VM_CHAIN_MAX];
    for (int64_t i = 0; i < nr; i++) {
        int64_t off = i * nc, c = 0;
        for (; c + 16 * VM_CHAIN_W <= nc; c += 16 * VM_CHAIN_W) chain_strip(s, n, slot, off, c, 0, 1);
        if (c < nc) {   /* the row's last, partial strip */
            __mmask16 m[VM_CHAIN_W];
            FOR_W(q) {
                int64_t left = nc - c - 16 * q;
                m[q] = left >= 16 ? (__mmask16)0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
            }
            chain_strip(s, n, slot, off, c, m, 0);
        }
    }
}
vm_chain_fn vm_chain_kernel(void) { return __builtin_cpu_supports("avx512f") ? chain_f32 : 0; }
#else
int vm_chain_op(int op) { (void)op; return 0; }
vm_chain_fn vm_chain_kernel(void) { return 0; }
#endif

/* ---- LayerNorm's affine end in one pass: d = ((a * row[i]) * scale[j]) + shift[j], three roundings as the
 * MUL, MUL, ADD it replaces; rows last to first so d may overwrite the ROW register ---- */
static VM_CLONES void scale_shift_rows(f32 *d, const f32 *a, const f32 *row, const f32 *scale, const f32 *shift,
                                       int64_t nr, int64_t nc) {
    for (int64_t i = nr - 1; i >= 0; i--) {
        const f32 r = row[i], *x = a + i * nc;
        f32 *y = d + i * nc;
        for (int64_t j = 0; j < nc; j++) y[j] = x[j] * r * scale[j] + shift[j];
    }
}
vm_scale_shift_fn vm_scale_shift = scale_shift_rows;

/* ---- select, by element size ---- */
#define SEL(name, T)                                                                            \
    static VM_CLONES void name(void *dv, const void *cv, const void *av, const void *bv, int64_t n) { \
        T *d = dv; const b8 *c = cv; const T *a = av, *b = bv;                                  \
        for (int64_t i = 0; i < n; i++) d[i] = c[i] ? a[i] : b[i];                              \
    }
SEL(sel1, uint8_t) SEL(sel4, uint32_t) SEL(sel8, uint64_t)
vm_sel_fn vm_select[9] = {[1] = sel1, [4] = sel4, [8] = sel8};
/* one of the values a row's scalar (a ROW register: attention's mask value), the other a full row */
#define SEL_SCALAR(name, T)                                                                     \
    static VM_CLONES void name(void *dv, const void *cv, const void *av, const void *bv, int64_t n,      \
                               int a_scalar) {                                                  \
        T *d = dv; const b8 *c = cv; const T *a = av, *b = bv;                                  \
        if (a_scalar) {                                                                         \
            const T s = *a;                                                                     \
            for (int64_t i = 0; i < n; i++) d[i] = c[i] ? s : b[i];                             \
        } else {                                                                                \
            const T s = *b;                                                                     \
            for (int64_t i = 0; i < n; i++) d[i] = c[i] ? a[i] : s;                             \
        }                                                                                       \
    }
SEL_SCALAR(sel1_scalar, uint8_t) SEL_SCALAR(sel4_scalar, uint32_t) SEL_SCALAR(sel8_scalar, uint64_t)
vm_sel_scalar_fn vm_select_scalar[9] = {[1] = sel1_scalar, [4] = sel4_scalar, [8] = sel8_scalar};

/* ---- buffer <-> register; stride 1 and 0 get their own loops so the common case vectorizes ---- */
#define MEM(name, TR, TB, LOADX, STOREX)                                                        \
    static VM_CLONES void ld_##name(void *rv, void *bv, int64_t s, int64_t n) {                 \
        TR *r = rv; const TB *b = bv;                                                           \
        if (s == 1) { for (int64_t i = 0; i < n; i++) { TB x = b[i]; r[i] = (LOADX); } }        \
        else if (s == 0) { TB x = b[0]; TR v = (LOADX); for (int64_t i = 0; i < n; i++) r[i] = v; } \
        else { for (int64_t i = 0; i < n; i++) { TB x = b[i * s]; r[i] = (LOADX); } }           \
    }                                                                                           \
    static VM_CLONES void st_##name(void *rv, void *bv, int64_t s, int64_t n) {                 \
        const TR *r = rv; TB *b = bv;                                                           \
        if (s == 1) { for (int64_t i = 0; i < n; i++) { TR x = r[i]; b[i] = (STOREX); } }       \
        else { for (int64_t i = 0; i < n; i++) { TR x = r[i]; b[i * s] = (STOREX); } }          \
    }
MEM(f32, f32, f32, x, x) MEM(f16, f32, uint16_t, vm_h2f(x), vm_f2h(x)) MEM(i32, i32, i32, x, x)
MEM(i64, i64, i64, x, x) MEM(b8, b8, b8, x != 0, x)
vm_mem_fn vm_load[VM_NDT] = {[F] = ld_f32, [DVM_DT_F16] = ld_f16, [I4] = ld_i32, [I8] = ld_i64, [B] = ld_b8};
vm_mem_fn vm_store[VM_NDT] = {[F] = st_f32, [DVM_DT_F16] = st_f16, [I4] = st_i32, [I8] = st_i64, [B] = st_b8};

int vm_kernels_missing(void) {
    for (int op = 0; op < DVM_N_OPCODES; op++) {
        int form = DVM_OPCODE_FORM[op];
        for (int dt = 0; dt < VM_NDT; dt++) {
            if (!(DVM_OPCODE_DTYPES[op] >> dt & 1)) continue;
            int ok = 1;
            if (form == DVM_FORM_UNARY) ok = vm_unary[op][dt] != 0;
            else if (form == DVM_FORM_BINARY) ok = vm_binary[op][dt].vv != 0;
            else if (form == DVM_FORM_BINARY_IMM) ok = vm_binary[op - DVM_IMM_DELTA][dt].vv != 0;
            else if (form == DVM_FORM_REDUCE) ok = vm_reduce[op][dt] != 0;
            else if (form == DVM_FORM_CAST)
                for (int src = 1; src < VM_NDT; src++)
                    ok &= src == DVM_DT_F16 || vm_cast[dt][src] != 0;
            else if (form == DVM_FORM_LOAD || form == DVM_FORM_STORE || form == DVM_FORM_VIEW)
                ok = vm_load[dt] != 0 && vm_store[dt] != 0;
            if (!ok) return op * 16 + dt;
        }
    }
    return -1;
}
