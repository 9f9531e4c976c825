/* Backward kernels of framework._ckernels for float32 NCHW 2-D convs and max pooling. numpy runs these as
 * one strided pass per window offset with temporaries (and max pooling's backward as five passes per
 * offset), which dominates a small CNN's training step.
 * Conv columns use the layout [C*KH*KW, N, OH*OW]: then dW = dy' @ cols^T and cols = W'^T @ dy' are single
 * GEMMs (numpy/BLAS) over dy' = dy as [M, N*OH*OW], and only the gathers and scatters live here. */
#include "ckernels.h"

#include <math.h>
#include <string.h>

/* The input column ix read by output column ox at kernel column kx, or -1 in the padding; rows alike. */
static inline idx src_x(const geo_t *g, idx ox, idx kx) {
    idx ix = ox * g->sw - g->pw + kx * g->dw;
    return ix >= 0 && ix < g->w ? ix : -1;
}

static inline idx src_y(const geo_t *g, idx oy, idx ky) {
    idx iy = oy * g->sh - g->ph + ky * g->dh;
    return iy >= 0 && iy < g->h ? iy : -1;
}

/* The output columns [lo, hi) whose input column at kernel column kx lies inside the row. */
static void valid_cols(const geo_t *g, idx kx, idx *lo, idx *hi) {
    idx off = kx * g->dw - g->pw;   /* ix = ox * sw + off */
    idx a = off >= 0 ? 0 : (-off + g->sw - 1) / g->sw;
    idx b = g->w - off <= 0 ? 0 : (g->w - off + g->sw - 1) / g->sw;
    *lo = a < g->ow ? a : g->ow;
    *hi = b < g->ow ? b : g->ow;
    if (*hi < *lo) *hi = *lo;
}

/* gather (im2col) or scatter-add (col2im) between x [N, C, H, W] and cols [C*KH*KW, N, OH*OW], for one
 * kernel offset (ky, kx) and one channel. Wide rows: row by row over the valid output columns (a memcpy at
 * stride 1). Narrow rows (a small CNN's late layers): row loops would be a few elements each, so a table
 * maps each output position to its input position (-1: padding) and one flat loop covers the plane. */
CLONES static void offset_columns(const geo_t *g, float *x, float *dst, idx c, idx ky, idx kx, int scatter,
                                  const idx *at) {
    idx plane = g->oh * g->ow, hw = g->h * g->w, sw = g->sw, lo, hi, off = kx * g->dw - g->pw;
    valid_cols(g, kx, &lo, &hi);
    for (idx n = 0; n < g->n; n++) {
        float *restrict xp = x + (n * g->c + c) * hw;
        float *restrict d = dst + n * plane;
        if (at && scatter) {
            for (idx p = 0; p < plane; p++)
                if (at[p] >= 0) xp[at[p]] += d[p];
            continue;
        }
        if (at) {
            for (idx p = 0; p < plane; p++) d[p] = at[p] >= 0 ? xp[at[p]] : 0.f;
            continue;
        }
        for (idx oy = 0; oy < g->oh; oy++, d += g->ow) {
            idx iy = src_y(g, oy, ky);
            if (iy < 0) {
                if (!scatter) memset(d, 0, (size_t)g->ow * sizeof(float));
                continue;
            }
            float *restrict row = xp + iy * g->w;
            if (scatter) {
                for (idx ox = lo; ox < hi; ox++) row[ox * sw + off] += d[ox];
                continue;
            }
            for (idx ox = 0; ox < lo; ox++) d[ox] = 0.f;
            if (sw == 1)
                memcpy(d + lo, row + lo + off, (size_t)(hi - lo) * sizeof(float));
            else
                for (idx ox = lo; ox < hi; ox++) d[ox] = row[ox * sw + off];
            for (idx ox = hi; ox < g->ow; ox++) d[ox] = 0.f;
        }
    }
}

enum { NARROW_ROW = 16 };

static void columns(const geo_t *g, float *x, float *cols, int scatter, idx *at) {
    idx np_ = g->n * g->oh * g->ow;
    int narrow = g->ow < NARROW_ROW;
    for (idx ky = 0; ky < g->kh; ky++)
        for (idx kx = 0; kx < g->kw; kx++) {
            if (narrow)
                for (idx oy = 0; oy < g->oh; oy++)
                    for (idx ox = 0; ox < g->ow; ox++) {
                        idx iy = src_y(g, oy, ky), ix = src_x(g, ox, kx);
                        at[oy * g->ow + ox] = iy < 0 || ix < 0 ? -1 : iy * g->w + ix;
                    }
            for (idx c = 0; c < g->c; c++)
                offset_columns(g, x, cols + ((c * g->kh + ky) * g->kw + kx) * np_, c, ky, kx, scatter,
                               narrow ? at : NULL);
        }
}

/* dx gets each window's gradient at the window's first maximum (row-major over the window; positions in the
 * padding count as -inf and drop what they take), as MaxPool's indices name it. NaN windows take nothing. */
CLONES static void maxpool_grad(const geo_t *g, const float *x, const float *y, const float *gy, float *dx) {
    idx planes = g->n * g->c, hw = g->h * g->w, ohw = g->oh * g->ow;
    memset(dx, 0, (size_t)(planes * hw) * sizeof(float));
    if (pool_tiles_exactly(g)) {   /* disjoint windows, all inside: one sequence of window rows */
        idx rows = planes * g->oh, kh = g->kh, kw = g->kw, w = g->w;
        for (idx r = 0; r < rows; r++)
            for (idx ox = 0; ox < g->ow; ox++) {
                idx base = r * kh * w + ox * kw;
                float target = y[r * g->ow + ox];
                idx hit = -1;   /* the first tap equal to the max, found without data-dependent branches */
                for (idx ky = kh - 1; ky >= 0; ky--)
                    for (idx kx = kw - 1; kx >= 0; kx--) {
                        idx at = base + ky * w + kx;
                        hit = x[at] == target ? at : hit;
                    }
                if (hit >= 0) dx[hit] = gy[r * g->ow + ox];
            }
        return;
    }
    for (idx p = 0; p < planes; p++) {
        const float *xp = x + p * hw, *yp = y + p * ohw, *gp = gy + p * ohw;
        float *dp = dx + p * hw;
        for (idx oy = 0; oy < g->oh; oy++)
            for (idx ox = 0; ox < g->ow; ox++) {
                float target = yp[oy * g->ow + ox];
                for (idx ky = 0; ky < g->kh; ky++) {
                    idx iy = src_y(g, oy, ky);
                    for (idx kx = 0; kx < g->kw; kx++) {
                        idx ix = iy < 0 ? -1 : src_x(g, ox, kx);
                        float v = ix < 0 ? -INFINITY : xp[iy * g->w + ix];
                        if (v == target) {
                            if (ix >= 0) dp[iy * g->w + ix] += gp[oy * g->ow + ox];
                            goto next;
                        }
                    }
                }
            next:;
            }
    }
}

static PyObject *run_columns(PyObject *args, int scatter) {
    PyObject *ao, *bo;
    GEO_DECL(g);
    if (!PyArg_ParseTuple(args, "OO" GEO_FMT, &ao, &bo, GEO_ARGS(g))) return NULL;
    if (GEO_LOAD(g) < 0) return NULL;
    idx nx = g.n * g.c * g.h * g.w, ncols = g.c * g.kh * g.kw * g.n * g.oh * g.ow;
    Py_buffer av, bv;   /* im2col: (x, cols); col2im: (cols, dx), dx written */
    if (get_f32(ao, &av, scatter ? ncols : nx, 0, scatter ? "col2im cols" : "im2col x") < 0) return NULL;
    if (get_f32(bo, &bv, scatter ? nx : ncols, 1, scatter ? "col2im dx" : "im2col cols") < 0) {
        PyBuffer_Release(&av);
        return NULL;
    }
    idx *at = PyMem_RawMalloc((size_t)(g.oh * g.ow) * sizeof(idx));
    if (!at) {
        PyBuffer_Release(&bv);
        PyBuffer_Release(&av);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    if (scatter) {
        memset(bv.buf, 0, (size_t)nx * sizeof(float));
        columns(&g, bv.buf, av.buf, 1, at);
    } else {
        columns(&g, av.buf, bv.buf, 0, at);
    }
    Py_END_ALLOW_THREADS
    PyMem_RawFree(at);
    PyBuffer_Release(&bv);
    PyBuffer_Release(&av);
    Py_RETURN_NONE;
}

PyObject *py_im2col_ck(PyObject *self, PyObject *args) { return run_columns(args, 0); }

PyObject *py_col2im_ck(PyObject *self, PyObject *args) { return run_columns(args, 1); }

PyObject *py_maxpool_grad(PyObject *self, PyObject *args) {
    PyObject *o[4];
    GEO_DECL(g);
    if (!PyArg_ParseTuple(args, "OOOO" GEO_FMT, &o[0], &o[1], &o[2], &o[3], GEO_ARGS(g))) return NULL;
    if (GEO_LOAD(g) < 0) return NULL;
    idx nx = g.n * g.c * g.h * g.w, ny = g.n * g.c * g.oh * g.ow;
    const idx need[4] = {nx, ny, ny, nx};
    const char *what[4] = {"maxpool_grad x", "maxpool_grad y", "maxpool_grad gy", "maxpool_grad dx"};
    Py_buffer v[4];
    int k = 0;
    for (; k < 4; k++)
        if (get_f32(o[k], &v[k], need[k], k == 3, what[k]) < 0) break;
    if (k == 4) {
        Py_BEGIN_ALLOW_THREADS
        maxpool_grad(&g, v[0].buf, v[1].buf, v[2].buf, v[3].buf);
        Py_END_ALLOW_THREADS
    }
    for (int j = 0; j < k; j++) PyBuffer_Release(&v[j]);
    if (k < 4) return NULL;
    Py_RETURN_NONE;
}
