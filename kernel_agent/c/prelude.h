/* msgx kernel agent: helpers included at the top of every generated translation unit. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
/* exp: n = round(x / ln2), r = x - n ln2 (in two parts), exp(r) by a degree-6 polynomial (Cephes
   coefficients, doubled so that 2 * exp(r) * 2^(n-1) needs one multiply and 2^(n-1) stays a normal float for
   n in [-125, 128]); n is rounded by adding 1.5 * 2^23, which leaves it in the sum's low mantissa bits, so
   the scale's exponent field is those bits + 126 shifted up (no round or convert instructions). Branch-free,
   so loops over it vectorise; outside [-86.6, 88.72] the selects decide: overflow gives inf, x < -86.6 gives
   0 (the true value is below 2.5e-38), NaN propagates. Within 1.4 ulp of exp. */
static inline float msgx_expf(float x) {
    float t = x * 1.44269504088896341f + 0x1.8p23f;
    float fx = t - 0x1.8p23f;
    float r = x - fx * 0.693359375f + fx * 2.12194440e-4f;
    float p = (((((3.9751383000E-4f * r + 2.7963999014E-3f) * r + 1.6666690381E-2f) * r
               + 8.3331591788E-2f) * r + 3.3333330918E-1f) * r + 1.0000000240E0f) * r * r + 2.0f * r + 2.0f;
    uint32_t n; memcpy(&n, &t, 4);
    uint32_t e = (n + 126u) << 23;
    float s; memcpy(&s, &e, 4);
    float y = p * s;
    y = x > 88.7228391f ? INFINITY : y;
    y = x < -86.6f ? 0.0f : y;
    return x != x ? x : y;
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
/* log(1 + exp(x)) as max(x, 0) + log1p(exp(-|x|)): exp's argument is <= 0, so nothing overflows (numpy's
   float32 log(1 + exp(x)) is inf from x > 88.7, the float64 value is x), and log1p(t) on t in [0, 1] is
   2 atanh(s), s = t / (2 + t) in [0, 1/3]: an odd series in s whose first omitted term is below 2^-26
   relative. No log, no exponent split: about half the work of log(1 + exp(x)). NaN propagates through t. */
static inline float msgx_softplusf(float x) {
    float t = msgx_expf(-fabsf(x));
    float s = t / (2.0f + t);
    float z = s * s;
    float p = (((((0x1.3b13b2p-3f * z + 0x1.745d18p-3f) * z + 0x1.c71c72p-3f) * z + 0x1.24924ap-2f) * z
               + 0x1.99999ap-2f) * z + 0x1.555556p-1f) * z + 2.0f;
    return (x > 0.0f ? x : 0.0f) + s * p;
}
