/* Branch-free float32 math for the DVM VM: every function is straight-line code with selects, so a loop
 * calling it auto-vectorizes at -O3 (no -ffast-math: NaN/Inf/-0 must stay IEEE). Accuracy ~1e-7..3e-7
 * relative over the whole range, special values handled by explicit selects at the end. */
#ifndef DVM_VM_MATH_H
#define DVM_VM_MATH_H
#include <stdint.h>
#include <string.h>

#include "dvm_isa.h"

static inline uint32_t vm_f2u(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
static inline float vm_u2f(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }

/* rint without libm: adding 1.5*2^23 rounds to nearest-even for |x| < 2^22 (our callers clamp first). */
static inline float vm_rint_small(float x) { const float m = 12582912.0f; return (x + m) - m; }

static inline float vm_expf(float x) {
    float xc = x < -104.0f ? -104.0f : x;
    xc = xc > 89.0f ? 89.0f : xc;
    float n = vm_rint_small(xc * 1.44269504088896341f);
    /* Cody-Waite split of ln2 keeps r exact enough for a 1e-7 result. */
    float r = xc - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* 2^n as two normal factors so results down in the subnormal range (n >= -150) are exact. */
    int32_t ni = (int32_t)n;
    int32_t n1 = ni / 2, n2 = ni - n1;
    float s1 = vm_u2f((uint32_t)(n1 + 127) << 23), s2 = vm_u2f((uint32_t)(n2 + 127) << 23);
    float y = p * s1 * s2;
    y = x > 88.7228394f ? __builtin_inff() : y;
    y = x < -103.972084f ? 0.0f : y;
    return x != x ? x : y;
}

static inline float vm_logf(float x) {
    /* Scale subnormals into the normal range first; the exponent is corrected below. */
    int sub = x < 1.17549435e-38f;
    float xs = sub ? x * 8388608.0f : x;
    uint32_t u = vm_f2u(xs);
    int32_t e = (int32_t)((u >> 23) & 0xff) - 126 - (sub ? 23 : 0);
    float m = vm_u2f((u & 0x007fffffu) | 0x3f000000u);   /* m in [0.5, 1) */
    int small = m < 0.707106781186547524f;
    e = small ? e - 1 : e;
    float f = small ? m + m - 1.0f : m - 1.0f;
    float fe = (float)e;
    float z = f * f;
    float p = 7.0376836292e-2f;
    p = p * f - 1.1514610310e-1f;
    p = p * f + 1.1676998740e-1f;
    p = p * f - 1.2420140846e-1f;
    p = p * f + 1.4249322787e-1f;
    p = p * f - 1.6668057665e-1f;
    p = p * f + 2.0000714765e-1f;
    p = p * f - 2.4999993993e-1f;
    p = p * f + 3.3333331174e-1f;
    float y = f * z * p;
    y = y + fe * -2.12194440e-4f;
    y = y - 0.5f * z;
    y = f + y;
    y = y + fe * 0.693359375f;
    y = x == __builtin_inff() ? x : y;
    y = x == 0.0f ? -__builtin_inff() : y;
    y = x < 0.0f ? __builtin_nanf("") : y;
    return x != x ? x : y;
}

/* erf as the ISA defines it (isa.py ERF_P/ERF_Q): x clipped to [-4, 4], Horner in float32, then x*P/Q, each
 * step rounded as the numpy VM rounds it (the build disables FMA contraction); the AVX-512 kernels fuse the
 * steps (vm_kernels.c erf16). */
static inline float vm_erff(float x) {
    float xc = x < -4.0f ? -4.0f : x;
    xc = xc > 4.0f ? 4.0f : xc;
    float z = xc * xc;
    float p = DVM_ERF_P[0], q = DVM_ERF_Q[0];
    for (int k = 1; k < (int)(sizeof DVM_ERF_P / sizeof DVM_ERF_P[0]); k++) p = p * z + DVM_ERF_P[k];
    for (int k = 1; k < (int)(sizeof DVM_ERF_Q / sizeof DVM_ERF_Q[0]); k++) q = q * z + DVM_ERF_Q[k];
    return xc * p / q;
}

/* FMA versions of exp, tanh and sigmoid for the DVM's float32 kernels (about half the operations of the
 * forms above). fmaf is correctly rounded, so every machine gets the same bits: the kernels' x86-64-v3/v4
 * clones use the FMA instruction, other machines libm's fmaf (slower, same results). Measured over every
 * 8th float in [-110, 95]: at most 7.7e-8 relative error (exp), 3.0e-7 (tanh), 1.6e-7 (sigmoid). */
#define VM_EXP_HI 88.8f           /* clamps: exp overflows above 88.7228, is 0 below -103.972 */
#define VM_EXP_LO -104.0f
#define VM_EXP_SHIFTER 12582912.0f  /* 1.5 * 2^23: fma(x, 1/ln2, it) holds rint(x / ln2) in its low bits */

/* e^r = 1 + r + r^2 q(r) on |r| <= ln2/2, q of degree 4: a minimax fit of the relative error of e^r (3e-9
 * before rounding; Cephes' degree-5 q, which this replaced, has one FMA more for the same result: checked on
 * every 7th float whose exp is normal, both at most 0.89 ulp from float64's exp) */
#define VM_EXP_QN 5
static const float VM_EXP_Q[VM_EXP_QN] = {1.3814526610e-3f, 8.3687510341e-3f, 4.1668392718e-2f,
                                          1.6666519642e-1f, 4.9999994040e-1f};

/* e^x = 2^n e^r with n = rint(x / ln2), r = x - n ln2 (two-part ln2), e^r a degree-6 polynomial; the
 * result is p * 2^n correctly rounded (exact unless subnormal, inf past 88.7228). The kernels' AVX-512
 * version (vm_kernels.c) computes the same steps with scalef, so both give the same bits. */
/* The shared range reduction of e^z: t holds n = rint(z / ln2) in its low bits (n = t - SHIFTER), *r = z -
 * n ln2 (two-part ln2), and the result p(r) is the polynomial with e^r = 1 + r + r^2 p(r). */
static inline float vm_exp_reduce(float z, float *t, float *r) {
    *t = __builtin_fmaf(z, 1.44269504088896341f, VM_EXP_SHIFTER);
    float n = *t - VM_EXP_SHIFTER;
    float rr = __builtin_fmaf(n, -0.693359375f, z);
    rr = __builtin_fmaf(n, 2.12194440e-4f, rr);
    float p = VM_EXP_Q[0];
    for (int k = 1; k < VM_EXP_QN; k++) p = __builtin_fmaf(p, rr, VM_EXP_Q[k]);
    *r = rr;
    return p;
}

static inline float vm_exp_fma(float x) {
    float xc = VM_EXP_HI < x ? VM_EXP_HI : x;   /* comparisons with NaN are false: NaN stays */
    xc = VM_EXP_LO > xc ? VM_EXP_LO : xc;
    float t, r;
    float p = vm_exp_reduce(xc, &t, &r);
    float n = t - VM_EXP_SHIFTER;
    p = __builtin_fmaf(p, r, 1.0f);
    p = __builtin_fmaf(p, r, 1.0f);
    /* p in [0.70, 1.42]: adding n to its exponent is exact while the result is normal (n >= -125); below,
     * add n + 64 and scale by 2^-64 (one rounding, as scalef) */
    uint32_t ni = vm_f2u(t) - vm_f2u(VM_EXP_SHIFTER);
    int tiny = n < -125.0f;
    /* x <= VM_EXP_LO, where exp rounds to 0: 0 on the bits, so the scaling below does not underflow (an
     * underflowing multiply takes a microcode assist on Intel cores: masked softmax elements cost 10x) */
    uint32_t keep = xc > VM_EXP_LO ? ~0u : 0u;
    float y = vm_u2f((vm_f2u(p) + ((ni + (tiny ? 64u : 0u)) << 23)) & keep);
    y = tiny ? y * 5.42101086e-20f : y;
    y = xc >= 88.7228394f ? __builtin_inff() : y;   /* the first float whose exp overflows */
    return xc != xc ? xc : y;   /* a NaN's payload bits would have shifted into the exponent above */
}

/* tanh(x) = x P(x^2) / Q(x^2) for |x| <= 9, P and Q of degree 4 (our own rational fit, relative error 2.3e-8
 * before rounding), tanh(9) up to VM_TANH_ONE and 1 beyond; sign restored. Nine FMAs and one division: a
 * third cheaper than the former expm1 form m / (m + 2), which had the division too (24-step chains with six
 * TANH steps: 13.5 -> 10.8 cycles per step and 64 elements). */
#define VM_TANH_N 5
static const float VM_TANH_P[VM_TANH_N] = {1.3346772576e-8f, 2.0602721634e-5f, 3.4951705020e-3f,
                                           1.3380663097e-1f, 1.0f};
static const float VM_TANH_Q[VM_TANH_N] = {7.7731357351e-7f, 3.2849740819e-4f, 2.5875359774e-2f,
                                           4.6713978052e-1f, 1.0f};
/* Past VM_TANH_ONE, tanh(x) rounds to 1 in float32 (1 - tanh x < 2^-25 from x = 13 ln 2): the fit, clamped at
 * 9, gave 1 - 2^-24 there, and gelu's tanh form 0.5 x (1 + tanh(...)) of x = -1e4 came to -3e-4, not -0. */
#define VM_TANH_ONE 9.0109f
static inline float vm_tanh_fma(float x) {
    float ax = __builtin_fabsf(x), cx = ax > 9.0f ? 9.0f : ax;   /* a NaN stays NaN through the arithmetic */
    float z = cx * cx, p = VM_TANH_P[0], q = VM_TANH_Q[0];
    for (int k = 1; k < VM_TANH_N; k++) {
        p = __builtin_fmaf(p, z, VM_TANH_P[k]);
        q = __builtin_fmaf(q, z, VM_TANH_Q[k]);
    }
    float y = cx * p / q;   /* up to 2^-23 above 1 near 9 by its roundings: capped */
    return __builtin_copysignf(ax > VM_TANH_ONE || y > 1.0f ? 1.0f : y, x);   /* NaN compares false */
}

/* The ISA defines sigmoid as 1/(1+exp(-x)); -x large gives exp = inf and the result 0, as in numpy. */
static inline float vm_sigmoid_fma(float x) { return 1.0f / (1.0f + vm_exp_fma(-x)); }

/* float16 <-> float32 by bit manipulation with selects (vectorizable, exact, round to nearest even,
 * overflow to inf, NaN stays NaN); _Float16 would call libgcc per element on older x86. */
static inline float vm_h2f(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t o = (uint32_t)(h & 0x7fffu) << 13;
    uint32_t exp = o & 0x0f800000u;
    o += (uint32_t)(127 - 15) << 23;
    uint32_t inf_nan = o + ((uint32_t)(128 - 16) << 23);
    float sub = vm_u2f(o + (1u << 23)) - vm_u2f(113u << 23);   /* renormalize subnormals exactly */
    o = exp == 0x0f800000u ? inf_nan : o;
    o = exp == 0 ? vm_f2u(sub) : o;
    return vm_u2f(o | sign);
}

static inline uint16_t vm_f2h(float f) {
    uint32_t x = vm_f2u(f);
    uint32_t sign = x & 0x80000000u;
    x ^= sign;
    uint32_t big = x > 0x7f800000u ? 0x7e00u : 0x7c00u;
    /* below 2^-14 the float add rounds the mantissa into place (round to nearest even) */
    uint32_t sub = vm_f2u(vm_u2f(x) + 0.5f) - 0x3f000000u;
    uint32_t norm = (x + ((uint32_t)(15 - 127) << 23) + 0xfffu + ((x >> 13) & 1u)) >> 13;
    uint32_t o = x >= 0x47800000u ? big : (x < 0x38800000u ? sub : norm);
    return (uint16_t)(o | (sign >> 16));
}
#endif
