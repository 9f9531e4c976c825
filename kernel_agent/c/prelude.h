/* msgx kernel agent: helpers included at the top of every generated translation unit. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
/* exp: n = round(x / ln2), r = x - n ln2 (in two parts), exp(r) by a degree-6 polynomial (Cephes
   coefficients, doubled so that 2 * exp(r) * 2^(n-1) needs one multiply and 2^(n-1) stays a normal float for
   n in [-125, 128]); branch-free, so loops over it vectorise. Overflow gives inf, x < -86.6 gives 0 (the true
   value is below 2.5e-38), NaN propagates. */
static inline float msgx_expf(float x) {
    float c = x > 88.7228391f ? 88.7228391f : x;
    c = c < -86.6f ? -86.6f : c;
    float fx = floorf(c * 1.44269504088896341f + 0.5f);
    float r = c - fx * 0.693359375f + fx * 2.12194440e-4f;
    float p = (((((3.9751383000E-4f * r + 2.7963999014E-3f) * r + 1.6666690381E-2f) * r
               + 8.3331591788E-2f) * r + 3.3333330918E-1f) * r + 1.0000000240E0f) * r * r + 2.0f * r + 2.0f;
    int32_t e = ((int32_t)fx + 126) << 23;
    float s; memcpy(&s, &e, 4);
    float y = p * s;
    y = x > 88.7228391f ? INFINITY : y;
    y = x < -86.6f ? 0.0f : y;
    return x != x ? x : y;
}
/* argmax of a float row in one pass: per-lane running maxima and their first indices (16 lanes), then the
   lanes and the tail; a NaN anywhere makes the first NaN's index the answer, as numpy. */
typedef float msgx_vf __attribute__((vector_size(64)));
typedef int32_t msgx_vi __attribute__((vector_size(64)));
static inline int64_t msgx_argmax_f32(const float *xr, long n) {
    long nv = n / 16 * 16;
    int64_t res = 0;
    float m = xr[0];
    if (nv) {
        msgx_vf best, v;
        msgx_vi bidx = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, cur = bidx, nan = {0};
        memcpy(&best, xr, 64);
        nan |= (best != best);
        for (long j = 16; j < nv; j += 16) {
            memcpy(&v, xr + j, 64);
            cur += 16;
            msgx_vi gt = v > best;
            nan |= (v != v);
            best = (msgx_vf)(((msgx_vi)v & gt) | ((msgx_vi)best & ~gt));
            bidx = (cur & gt) | (bidx & ~gt);
        }
        int anynan = 0;
        for (int l = 0; l < 16; l++) anynan |= nan[l];
        if (anynan) {
            for (long j = 0; j < nv; j++) if (xr[j] != xr[j]) return j;
        }
        m = best[0]; res = bidx[0];
        for (int l = 1; l < 16; l++)
            if (best[l] > m || (best[l] == m && bidx[l] < res)) { m = best[l]; res = bidx[l]; }
    }
    for (long j = nv; j < n; j++) {
        if (xr[j] != xr[j]) return j;
        if (xr[j] > m) { m = xr[j]; res = j; }
    }
    return res;
}
/* log: x = m * 2^e with m in [sqrt(1/2), sqrt(2)), a degree-8 polynomial in m - 1 (Cephes logf);
   zero, negative, NaN, Inf and denormal inputs by selects (denormals are scaled up first). */
static inline float msgx_logf(float x) {
    int den = x < 1.17549435e-38f;
    float xs = den ? x * 16777216.0f : x;
    int32_t i; memcpy(&i, &xs, 4);
    int32_t e = ((i >> 23) & 0xff) - 126;
    int32_t mi = (i & 0x007fffff) | 0x3f000000;
    float m; memcpy(&m, &mi, 4);
    int small = m < 0.707106781186547524f;
    e = small ? e - 1 : e;
    m = small ? m + m - 1.0f : m - 1.0f;
    float z = m * m;
    float y = ((((((((7.0376836292E-2f * m - 1.1514610310E-1f) * m + 1.1676998740E-1f) * m
               - 1.2420140846E-1f) * m + 1.4249322787E-1f) * m - 1.6668057665E-1f) * m
               + 2.0000714765E-1f) * m - 2.4999993993E-1f) * m + 3.3333331174E-1f) * m * z;
    float fe = (float)e - (den ? 24.0f : 0.0f);
    y += -2.12194440e-4f * fe - 0.5f * z;
    float r = m + y + 0.693359375f * fe;
    r = x == INFINITY ? x : r;
    r = x == 0.0f ? -INFINITY : r;
    return (x < 0.0f || x != x) ? NAN : r;
}
/* tanh as x * P(x^2) / Q(x^2) on |x| <= 7.905 (beyond it tanh rounds to +-1 in float): one division and
   a few FMAs, no exp; NaN passes through the clamp. Coefficients of the minimax fit used by Eigen. */
static inline float msgx_tanhf(float x) {
    const float lim = 7.90531110763549805f;
    float c = x > lim ? lim : (x < -lim ? -lim : x);
    float z = c * c;
    float p = ((((((-2.76076847742355e-16f * z + 2.00018790482477e-13f) * z - 8.60467152213735e-11f) * z
               + 5.12229709037114e-08f) * z + 1.48572235717979e-05f) * z + 6.37261928875436e-04f) * z
               + 4.89352455891786e-03f) * c;
    float q = ((1.19825839466702e-06f * z + 1.18534705686654e-04f) * z + 2.26843463243900e-03f) * z
              + 4.89352518554385e-03f;
    float t = p / q;
    return fabsf(x) < 0.0004f ? x : t;
}
