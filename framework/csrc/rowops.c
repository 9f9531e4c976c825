/* Row kernels of framework._ckernels: LayerNorm and (log-)softmax over the trailing axis, and erf, for
 * float32 tensors seen as [rows, cols]. numpy runs each of these as 5-10 passes with a temporary per pass,
 * which at the small sizes of a transformer block costs far more than the arithmetic.
 * Sums accumulate in double over 8 independent lanes: more accurate than numpy's float32 pairwise sums and
 * still vectorizable without -ffast-math. exp/log/erf are the DVM's branch-free float32 functions. */
#include "ckernels.h"

#include <math.h>

#include "vm_math.h"

#define LANES 8

/* inlined, so they take the ISA of the CLONES kernel that calls them */
#define ROW_INLINE static inline __attribute__((always_inline))

ROW_INLINE double sum_f(const float *x, idx n) {
    double acc[LANES] = {0};
    idx j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int k = 0; k < LANES; k++) acc[k] += x[j + k];
    double s = 0;
    for (; j < n; j++) s += x[j];
    for (int k = 0; k < LANES; k++) s += acc[k];
    return s;
}

/* sum of (x - m)^2, the variance's numerator */
ROW_INLINE double sum_sq_dev(const float *x, idx n, float m) {
    double acc[LANES] = {0};
    idx j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int k = 0; k < LANES; k++) { float d = x[j + k] - m; acc[k] += (double)(d * d); }
    double s = 0;
    for (; j < n; j++) { float d = x[j] - m; s += (double)(d * d); }
    for (int k = 0; k < LANES; k++) s += acc[k];
    return s;
}

/* max that propagates NaN, as numpy's does; over LANES independent lanes (one chain through every element
 * did not vectorize: 2 ns an element, most of softmax's time) */
ROW_INLINE float max_f(const float *x, idx n) {
    float acc[LANES];
    for (int k = 0; k < LANES; k++) acc[k] = x[0];
    idx j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int k = 0; k < LANES; k++) acc[k] = ((x[j + k] > acc[k]) | (x[j + k] != x[j + k])) ? x[j + k] : acc[k];
    float m = acc[0];
    for (; j < n; j++) m = (x[j] > m || x[j] != x[j]) ? x[j] : m;
    for (int k = 1; k < LANES; k++) m = (acc[k] > m || acc[k] != acc[k]) ? acc[k] : m;
    return m;
}

CLONES static void layer_norm(const float *x, const float *scale, const float *bias, float *y, float *mean_out,
                              float *inv_out, idx rows, idx cols, float eps) {
    for (idx r = 0; r < rows; r++) {
        const float *restrict xr = x + r * cols;
        float *restrict yr = y + r * cols;
        float mean = (float)(sum_f(xr, cols) / (double)cols);
        float var = (float)(sum_sq_dev(xr, cols, mean) / (double)cols);
        float inv = 1.0f / sqrtf(var + eps);
        if (bias) {
            for (idx j = 0; j < cols; j++) yr[j] = ((xr[j] - mean) * inv) * scale[j] + bias[j];
        } else {  /* no "+ 0": it would turn -0 into +0 */
            for (idx j = 0; j < cols; j++) yr[j] = ((xr[j] - mean) * inv) * scale[j];
        }
        if (mean_out) mean_out[r] = mean;
        if (inv_out) inv_out[r] = inv;
    }
}

CLONES static void softmax_rows(const float *x, float *y, idx rows, idx cols, int log) {
    for (idx r = 0; r < rows; r++) {
        const float *restrict xr = x + r * cols;
        float *restrict yr = y + r * cols;
        float m = max_f(xr, cols);
        for (idx j = 0; j < cols; j++) yr[j] = vm_expf(xr[j] - m);
        float s = (float)sum_f(yr, cols);
        if (log) {
            float ls = vm_logf(s);
            for (idx j = 0; j < cols; j++) yr[j] = (xr[j] - m) - ls;
        } else {
            for (idx j = 0; j < cols; j++) yr[j] = yr[j] / s;
        }
    }
}

CLONES static void erf_n(const float *x, float *y, idx n) {
    for (idx j = 0; j < n; j++) y[j] = vm_erff(x[j]);
}

static int check_rows(idx rows, idx cols) {
    if (rows < 0 || cols < 1) {
        PyErr_Format(PyExc_ValueError, "row kernel: bad size %zd x %zd", rows, cols);
        return -1;
    }
    return 0;
}

PyObject *py_layer_norm(PyObject *self, PyObject *args) {
    PyObject *xo, *so, *bo, *yo, *mo, *io;
    idx rows, cols;
    float eps;
    if (!PyArg_ParseTuple(args, "OOOOOOnnf", &xo, &so, &bo, &yo, &mo, &io, &rows, &cols, &eps)) return NULL;
    if (check_rows(rows, cols) < 0) return NULL;
    PyObject *objs[6] = {xo, so, bo, yo, mo, io};
    const idx need[6] = {rows * cols, cols, cols, rows * cols, rows, rows};
    const char *what[6] = {"layer_norm x", "layer_norm scale", "layer_norm bias", "layer_norm y",
                           "layer_norm mean", "layer_norm inv_std"};
    Py_buffer v[6];
    float *p[6] = {0};  /* NULL: an optional operand (bias, mean, inv_std) given as None */
    int ok = 1, k;
    for (k = 0; k < 6 && ok; k++) {
        if (objs[k] == Py_None && (k == 2 || k >= 4)) continue;
        ok = get_f32(objs[k], &v[k], need[k], k >= 3, what[k]) == 0;
        if (ok) p[k] = v[k].buf;
    }
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        layer_norm(p[0], p[1], p[2], p[3], p[4], p[5], rows, cols, eps);
        Py_END_ALLOW_THREADS
    }
    for (k = 0; k < 6; k++)
        if (p[k]) PyBuffer_Release(&v[k]);
    if (!ok) return NULL;
    Py_RETURN_NONE;
}

PyObject *py_softmax(PyObject *self, PyObject *args) {
    PyObject *xo, *yo;
    idx rows, cols;
    int log;
    if (!PyArg_ParseTuple(args, "OOnnp", &xo, &yo, &rows, &cols, &log)) return NULL;
    if (check_rows(rows, cols) < 0) return NULL;
    Py_buffer xv, yv;
    if (get_f32(xo, &xv, rows * cols, 0, "softmax x") < 0) return NULL;
    if (get_f32(yo, &yv, rows * cols, 1, "softmax y") < 0) { PyBuffer_Release(&xv); return NULL; }
    Py_BEGIN_ALLOW_THREADS
    softmax_rows(xv.buf, yv.buf, rows, cols, log);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&yv);
    PyBuffer_Release(&xv);
    Py_RETURN_NONE;
}

PyObject *py_erf(PyObject *self, PyObject *args) {
    PyObject *xo, *yo;
    idx n;
    if (!PyArg_ParseTuple(args, "OOn", &xo, &yo, &n)) return NULL;
    if (n < 0) { PyErr_SetString(PyExc_ValueError, "erf: negative size"); return NULL; }
    Py_buffer xv, yv;
    if (get_f32(xo, &xv, n, 0, "erf x") < 0) return NULL;
    if (get_f32(yo, &yv, n, 1, "erf y") < 0) { PyBuffer_Release(&xv); return NULL; }
    Py_BEGIN_ALLOW_THREADS
    erf_n(xv.buf, yv.buf, n);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&yv);
    PyBuffer_Release(&xv);
    Py_RETURN_NONE;
}
