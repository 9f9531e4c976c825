/* framework._ckernels: float32 NCHW kernels for depthwise conv, im2col and pooling (here) and row kernels
 * (rowops.c), where numpy's per-call overhead dominates. The callers (framework/ops/nn_ckernels.py,
 * row_ckernels.py) resolve geometry and allocate outputs; here every buffer is checked against the sizes its dims imply, then the loops run with the GIL released. */
#include "ckernels.h"
#include "gemm.h"

#include <math.h>
#include <string.h>


int get_f32(PyObject *obj, Py_buffer *v, idx need, int writable, const char *what) {
    if (PyObject_GetBuffer(obj, v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    if (v->itemsize != 4 || !v->format || strcmp(v->format, "f") != 0 || v->len < need * 4) {
        PyErr_Format(PyExc_ValueError, "%s: need a float32 buffer of %zd elements, got %zd bytes (%s)", what,
                     need, v->len, v->format ? v->format : "?");
        PyBuffer_Release(v);
        return -1;
    }
    return 0;
}

int geo_from_bytes(geo_t *g, const char *bytes, Py_ssize_t len) {
    if (len != (Py_ssize_t)sizeof(geo_t)) {
        PyErr_Format(PyExc_ValueError, "a window geometry is %zd bytes (16 int64), got %zd",
                     (Py_ssize_t)sizeof(geo_t), len);
        return -1;
    }
    memcpy(g, bytes, sizeof(geo_t));
    return check_geo(g);
}

int check_geo(const geo_t *g) {
    if (g->n < 1 || g->c < 1 || g->h < 1 || g->w < 1 || g->m < 1 || g->cg < 1 || g->kh < 1 || g->kw < 1 ||
        g->sh < 1 || g->sw < 1 || g->dh < 1 || g->dw < 1 || g->oh < 1 || g->ow < 1 || g->c % g->cg ||
        g->m % (g->c / g->cg)) {
        PyErr_SetString(PyExc_ValueError, "inconsistent window geometry");
        return -1;
    }
    return 0;
}

static inline void activate(float *y, idx n, int act, float lo, float hi) {
    if (act == ACT_RELU) {
        for (idx i = 0; i < n; i++) y[i] = y[i] < 0.f ? 0.f : y[i];   /* NaN stays NaN */
    } else if (act == ACT_CLIP) {
        for (idx i = 0; i < n; i++) y[i] = y[i] < lo ? lo : (y[i] > hi ? hi : y[i]);
    }
}

/* Rows and columns of the padded plane that the windows of a geometry read (from -ph, -pw on). */
static inline void padded_dims(const geo_t *g, idx *hp, idx *wp) {
    *hp = (g->oh - 1) * g->sh + (g->kh - 1) * g->dh + 1;
    *wp = (g->ow - 1) * g->sw + (g->kw - 1) * g->dw + 1;
}

/* Copy plane xp [h, w] into dst [hp, wp] shifted by the pads, `fill` where the windows read padding. */
static void pad_plane(const geo_t *g, const float *xp, float *dst, idx hp, idx wp, float fill) {
    idx a = g->pw > 0 ? g->pw : 0, e = g->w + g->pw < wp ? g->w + g->pw : wp;   /* dst columns from x */
    for (idx r = 0; r < hp; r++) {
        float *d = dst + r * wp;
        idx iy = r - g->ph;
        if (iy < 0 || iy >= g->h || e <= a) {
            for (idx j = 0; j < wp; j++) d[j] = fill;
            continue;
        }
        for (idx j = 0; j < a; j++) d[j] = fill;
        memcpy(d + a, xp + iy * g->w + (a - g->pw), (size_t)(e - a) * 4);
        for (idx j = e; j < wp; j++) d[j] = fill;
    }
}

typedef float v16f __attribute__((vector_size(64)));
typedef int v16i __attribute__((vector_size(64)));
#define EVEN16 ((v16i){0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30})

CLONES void phase_planes(const geo_t *g, idx hq, idx wq, const float *xp, float *dst, float fill) {
    for (idx py = 0; py < g->sh; py++)
        for (idx px = 0; px < g->sw; px++) {
            float *pl = dst + (py * g->sw + px) * hq * wq;
            /* columns qx whose input column ix = qx*sw + px - pw lies in [0, w): [a, e) */
            idx off = px - g->pw, s = g->sw;
            idx a = off < 0 ? (-off + s - 1) / s : 0, e = g->w - off <= 0 ? 0 : (g->w - off + s - 1) / s;
            a = a < wq ? a : wq;
            e = e < wq ? e : wq;
            e = e < a ? a : e;
            for (idx qy = 0; qy < hq; qy++) {
                float *restrict row = pl + qy * wq;
                idx iy = qy * g->sh + py - g->ph;
                if (iy < 0 || iy >= g->h) {
                    for (idx qx = 0; qx < wq; qx++) row[qx] = fill;
                    continue;
                }
                const float *restrict xr = xp + iy * g->w + off;
                for (idx qx = 0; qx < a; qx++) row[qx] = fill;
                idx qx = a;
                if (s == 2)   /* every other column: 16 at a time from two loads, while both lie in the row */
                    for (; 2 * (qx + 16) + off <= g->w; qx += 16) {
                        v16f lo, hi;
                        memcpy(&lo, xr + 2 * qx, sizeof lo);
                        memcpy(&hi, xr + 2 * qx + 16, sizeof hi);
                        v16f even = __builtin_shuffle(lo, hi, EVEN16);
                        memcpy(row + qx, &even, sizeof even);
                    }
                for (; qx < e; qx++) row[qx] = xr[qx * s];
                for (idx qx = e; qx < wq; qx++) row[qx] = fill;
            }
        }
}

/* Depthwise conv (one input channel per group, m/c outputs each): every input plane is copied once into a
 * zero-padded buffer `pad`, so each output row is a branch-free sum of taps (3x3 unrolled). */
CLONES static void conv_depthwise(const geo_t *g, const float *x, const float *wt, const float *b, float *y,
                                  int act, float lo, float hi, float *pad, float *wide) {
    idx mult = g->m / g->c, plane = g->oh * g->ow, hp, wp;
    padded_dims(g, &hp, &wp);
    idx s = g->sw, d = g->dw, rd = g->dh * wp;
    /* narrow planes, stride 1: one loop over the outputs on the padded grid (wide rows, cropped after),
     * since rows shorter than a vector would run scalar */
    int flat = g->kh == 3 && g->kw == 3 && g->sh == 1 && s == 1 && g->ow < 16;
    for (idx ni = 0; ni < g->n; ni++)
        for (idx ic = 0; ic < g->c; ic++) {
            pad_plane(g, x + (ni * g->c + ic) * g->h * g->w, pad, hp, wp, 0.f);
            for (idx oc = ic * mult; oc < (ic + 1) * mult; oc++) {
                float *yp = y + (ni * g->m + oc) * plane;
                const float *wk = wt + oc * g->kh * g->kw;
                float bias = b ? b[oc] : 0.f;
                if (flat) {
                    const float *r0 = pad, *r1 = r0 + rd, *r2 = r1 + rd;
                    float w0 = wk[0], w1 = wk[1], w2 = wk[2], w3 = wk[3], w4 = wk[4], w5 = wk[5];
                    float w6 = wk[6], w7 = wk[7], w8 = wk[8];
                    idx n = (g->oh - 1) * wp + g->ow;   /* the last read is the padded plane's last element */
                    for (idx q = 0; q < n; q++)
                        wide[q] = bias + w0 * r0[q] + w1 * r0[q + d] + w2 * r0[q + 2 * d] + w3 * r1[q] +
                                  w4 * r1[q + d] + w5 * r1[q + 2 * d] + w6 * r2[q] + w7 * r2[q + d] +
                                  w8 * r2[q + 2 * d];
                    for (idx oy = 0; oy < g->oh; oy++)
                        for (idx ox = 0; ox < g->ow; ox++) yp[oy * g->ow + ox] = wide[oy * wp + ox];
                    activate(yp, plane, act, lo, hi);
                    continue;
                }
                for (idx oy = 0; oy < g->oh; oy++) {
                    float *restrict yr = yp + oy * g->ow;
                    const float *r0 = pad + oy * g->sh * wp;
                    if (g->kh == 3 && g->kw == 3) {
                        const float *r1 = r0 + rd, *r2 = r1 + rd;
                        float w0 = wk[0], w1 = wk[1], w2 = wk[2], w3 = wk[3], w4 = wk[4], w5 = wk[5];
                        float w6 = wk[6], w7 = wk[7], w8 = wk[8];
                        for (idx ox = 0; ox < g->ow; ox++) {
                            idx i = ox * s;
                            yr[ox] = bias + w0 * r0[i] + w1 * r0[i + d] + w2 * r0[i + 2 * d] + w3 * r1[i] +
                                     w4 * r1[i + d] + w5 * r1[i + 2 * d] + w6 * r2[i] + w7 * r2[i + d] +
                                     w8 * r2[i + 2 * d];
                        }
                        continue;
                    }
                    for (idx ox = 0; ox < g->ow; ox++) yr[ox] = bias;
                    for (idx ky = 0; ky < g->kh; ky++)
                        for (idx kx = 0; kx < g->kw; kx++) {
                            const float *r = r0 + ky * rd + kx * d;
                            float v = wk[ky * g->kw + kx];
                            for (idx ox = 0; ox < g->ow; ox++) yr[ox] += v * r[ox * s];
                        }
                }
                activate(yp, plane, act, lo, hi);
            }
        }
}

/* im2col: cols[n][c*kh*kw][oh*ow], zeros where a tap falls in the padding. */
CLONES static void im2col(const geo_t *g, const float *x, float *cols) {
    idx plane = g->oh * g->ow, kk = g->kh * g->kw;
    idx s = g->sw;
    for (idx ni = 0; ni < g->n; ni++)
        for (idx ci = 0; ci < g->c; ci++) {
            const float *xp = x + (ni * g->c + ci) * g->h * g->w;
            for (idx kx = 0; kx < g->kw; kx++) {
                idx off = kx * g->dw - g->pw;   /* input column of output column ox: ox * s + off */
                idx a = off < 0 ? (-off + s - 1) / s : 0;
                idx e = g->w - 1 - off < 0 ? 0 : (g->w - 1 - off) / s + 1;
                a = a < g->ow ? a : g->ow;
                e = e < g->ow ? e : g->ow;
                e = e < a ? a : e;
                for (idx ky = 0; ky < g->kh; ky++) {
                    float *row = cols + ((ni * g->c + ci) * kk + ky * g->kw + kx) * plane;
                    for (idx oy = 0; oy < g->oh; oy++) {
                        float *restrict r = row + oy * g->ow;
                        idx iy = oy * g->sh - g->ph + ky * g->dh;
                        if (iy < 0 || iy >= g->h) { memset(r, 0, (size_t)g->ow * 4); continue; }
                        const float *xr = xp + iy * g->w + off;
                        for (idx ox = 0; ox < a; ox++) r[ox] = 0.f;
                        if (s == 1) memcpy(r + a, xr + a, (size_t)(e - a) * 4);
                        else for (idx ox = a; ox < e; ox++) r[ox] = xr[ox * s];
                        for (idx ox = e; ox < g->ow; ox++) r[ox] = 0.f;
                    }
                }
            }
        }
}

/* max without NaN handling (one maxss); planes holding a NaN take a flagged loop (numpy propagates NaN). */
static inline float max2(float a, float b) { return a > b ? a : b; }

/* Max or average pooling of n*c planes, each copied into a padded buffer `pad` (-inf or 0 fill). Averages
 * sum in double (row buffer `acc`) and divide by the taps inside [clo, chi) per axis (`rows`, `cols`). */
/* Windows that tile the plane exactly (kernel == stride, no dilation, padding or overhang: 2x2/2 pooling):
 * every window is inside, so no padded copy, and the rows of all planes form one sequence of window rows.
 * Max propagates NaN as numpy's does; averages sum in double, tap by tap in the order pool2d uses. */
CLONES static void pool_exact(const geo_t *g, const float *x, float *y, int avg) {
    idx rows = g->n * g->c * g->oh, ow = g->ow, w = g->w, kh = g->kh, kw = g->kw;
    double cnt = (double)(kh * kw);
    for (idx r = 0; r < rows; r++) {
        const float *xr = x + r * kh * w;
        float *restrict yr = y + r * ow;
        for (idx ox = 0; ox < ow; ox++) {
            const float *xw = xr + ox * kw;
            if (avg) {
                double acc = 0.0;
                for (idx ky = 0; ky < kh; ky++)
                    for (idx kx = 0; kx < kw; kx++) acc += xw[ky * w + kx];
                yr[ox] = (float)(acc / cnt);
            } else {   /* branch-free: which tap is largest is data, and mispredicted branches dominated */
                float m = -INFINITY;
                int nan = 0;
                for (idx ky = 0; ky < kh; ky++)
                    for (idx kx = 0; kx < kw; kx++) {
                        float v = xw[ky * w + kx];
                        m = max2(m, v);
                        nan |= v != v;
                    }
                yr[ox] = nan ? NAN : m;
            }
        }
    }
}

int pool_tiles_exactly(const geo_t *g) {
    return g->ph == 0 && g->pw == 0 && g->kh == g->sh && g->kw == g->sw && g->dh == 1 && g->dw == 1 &&
           g->oh * g->sh == g->h && g->ow * g->sw == g->w;
}

CLONES static void pool2d(const geo_t *g, const float *x, float *y, int avg, const idx *clo, const idx *chi,
                          float *pad, double *acc, idx *rows, idx *cols, float *counts) {
    idx planes = g->n * g->c, hp, wp;
    padded_dims(g, &hp, &wp);
    idx s = g->sw, d = g->dw;
    for (idx oy = 0; oy < g->oh; oy++) {
        rows[oy] = 0;
        for (idx ky = 0; ky < g->kh; ky++) {
            idx iy = oy * g->sh - g->ph + ky * g->dh;
            rows[oy] += iy >= clo[0] && iy < chi[0];
        }
    }
    for (idx ox = 0; ox < g->ow; ox++) {
        cols[ox] = 0;
        for (idx kx = 0; kx < g->kw; kx++) {
            idx ix = ox * g->sw - g->pw + kx * g->dw;
            cols[ox] += ix >= clo[1] && ix < chi[1];
        }
    }
    for (idx oy = 0; avg && oy < g->oh; oy++)
        for (idx ox = 0; ox < g->ow; ox++) {
            idx cnt = rows[oy] * cols[ox];
            counts[oy * g->ow + ox] = (float)(cnt > 0 ? cnt : 1);
        }
    for (idx p = 0; p < planes; p++) {
        const float *xp = x + p * g->h * g->w;
        int nan = 0;   /* max pooling takes the fast branch-free loops unless the plane holds a NaN */
        if (!avg)
            for (idx i = 0; i < g->h * g->w; i++) nan |= xp[i] != xp[i];
        pad_plane(g, xp, pad, hp, wp, avg ? 0.f : -INFINITY);
        float *yp = y + p * g->oh * g->ow;
        if (avg && g->sh == 1 && s == 1) {
            /* the whole plane at once on the wide grid [oh][wp] (output q reads q + the tap's offset): row by
             * row, a 3x3 average over 576 planes of 14x14 spent its time in 14-element loops (0.5 ms,
             * onnxruntime's 0.08) */
            idx nq = (g->oh - 1) * wp + g->ow;
            float *restrict sum = (float *)acc;   /* float sums, as onnxruntime's: 16 lanes, no conversions */
            for (idx q = 0; q < nq; q++) sum[q] = 0.f;
            for (idx ky = 0; ky < g->kh; ky++)
                for (idx kx = 0; kx < g->kw; kx++) {
                    const float *restrict r = pad + ky * g->dh * wp + kx * d;
                    for (idx q = 0; q < nq; q++) sum[q] += r[q];
                }
            for (idx oy = 0; oy < g->oh; oy++) {   /* divisions by the windows' tap counts, vectorised */
                const float *restrict sr = sum + oy * wp, *restrict den = counts + oy * g->ow;
                float *restrict yr = yp + oy * g->ow;
                for (idx ox = 0; ox < g->ow; ox++) yr[ox] = sr[ox] / den[ox];
            }
            continue;
        }
        for (idx oy = 0; oy < g->oh; oy++) {
            float *restrict yr = yp + oy * g->ow;
            const float *r0 = pad + oy * g->sh * wp;
            if (avg) {
                for (idx ox = 0; ox < g->ow; ox++) acc[ox] = 0.0;
                for (idx ky = 0; ky < g->kh; ky++)
                    for (idx kx = 0; kx < g->kw; kx++) {
                        const float *r = r0 + ky * g->dh * wp + kx * d;
                        for (idx ox = 0; ox < g->ow; ox++) acc[ox] += r[ox * s];
                    }
                for (idx ox = 0; ox < g->ow; ox++) {
                    idx cnt = rows[oy] * cols[ox];
                    yr[ox] = (float)(acc[ox] / (double)(cnt > 0 ? cnt : 1));
                }
                continue;
            }
            if (nan) {   /* rare: per pixel, a running max plus a NaN flag */
                for (idx ox = 0; ox < g->ow; ox++) {
                    const float *r = r0 + ox * s;
                    float m = -INFINITY;
                    int bad = 0;
                    for (idx ky = 0; ky < g->kh; ky++)
                        for (idx kx = 0; kx < g->kw; kx++) {
                            float v = r[ky * g->dh * wp + kx * d];
                            m = max2(m, v);
                            bad |= v != v;
                        }
                    yr[ox] = bad ? NAN : m;
                }
            } else if (g->kh == 3 && g->kw == 3) {   /* branch-free, vectorisable */
                const float *r1 = r0 + g->dh * wp, *r2 = r1 + g->dh * wp;
                for (idx ox = 0; ox < g->ow; ox++) {
                    idx i = ox * s;
                    float top = max2(max2(r0[i], r0[i + d]), r0[i + 2 * d]);
                    float mid = max2(max2(r1[i], r1[i + d]), r1[i + 2 * d]);
                    yr[ox] = max2(max2(top, mid), max2(max2(r2[i], r2[i + d]), r2[i + 2 * d]));
                }
            } else {
                for (idx ox = 0; ox < g->ow; ox++) yr[ox] = -INFINITY;
                for (idx ky = 0; ky < g->kh; ky++)
                    for (idx kx = 0; kx < g->kw; kx++) {
                        const float *r = r0 + ky * g->dh * wp + kx * d;
                        for (idx ox = 0; ox < g->ow; ox++) yr[ox] = max2(yr[ox], r[ox * s]);
                    }
            }
        }
    }
}


static PyObject *py_conv(PyObject *self, PyObject *args) {
    PyObject *xo, *wo, *bo, *yo;
    GEO_DECL(g);
    int act;
    float lo, hi;
    if (!PyArg_ParseTuple(args, "OOOO" GEO_FMT "iff", &xo, &wo, &bo, &yo, GEO_ARGS(g), &act, &lo, &hi))
        return NULL;
    if (GEO_LOAD(g) < 0) return NULL;
    if (g.cg != 1) {
        PyErr_SetString(PyExc_ValueError, "conv: only depthwise geometries (one input channel per group)");
        return NULL;
    }
    idx hp, wp;
    padded_dims(&g, &hp, &wp);
    float *pad = PyMem_RawMalloc((size_t)(2 * hp * wp) * sizeof(float));   /* padded plane, wide outputs */
    if (!pad) return PyErr_NoMemory();
    Py_buffer xv, wv, bv, yv;
    if (get_f32(xo, &xv, g.n * g.c * g.h * g.w, 0, "conv x") < 0) goto fail;
    if (get_f32(wo, &wv, g.m * g.cg * g.kh * g.kw, 0, "conv w") < 0) goto fail_x;
    if (bo != Py_None && get_f32(bo, &bv, g.m, 0, "conv b") < 0) goto fail_w;
    if (get_f32(yo, &yv, g.n * g.m * g.oh * g.ow, 1, "conv y") < 0) goto fail_b;
    Py_BEGIN_ALLOW_THREADS
    conv_depthwise(&g, xv.buf, wv.buf, bo != Py_None ? bv.buf : NULL, yv.buf, act, lo, hi, pad, pad + hp * wp);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&yv);
    if (bo != Py_None) PyBuffer_Release(&bv);
    PyBuffer_Release(&wv);
    PyBuffer_Release(&xv);
    PyMem_RawFree(pad);
    Py_RETURN_NONE;
fail_b:
    if (bo != Py_None) PyBuffer_Release(&bv);
fail_w:
    PyBuffer_Release(&wv);
fail_x:
    PyBuffer_Release(&xv);
fail:
    PyMem_RawFree(pad);
    return NULL;
}

static PyObject *py_im2col(PyObject *self, PyObject *args) {
    PyObject *xo, *co;
    GEO_DECL(g);
    if (!PyArg_ParseTuple(args, "OO" GEO_FMT, &xo, &co, GEO_ARGS(g))) return NULL;
    if (GEO_LOAD(g) < 0) return NULL;
    Py_buffer xv, cv;
    if (get_f32(xo, &xv, g.n * g.c * g.h * g.w, 0, "im2col x") < 0) return NULL;
    if (get_f32(co, &cv, g.n * g.c * g.kh * g.kw * g.oh * g.ow, 1, "im2col cols") < 0) {
        PyBuffer_Release(&xv);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    im2col(&g, xv.buf, cv.buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&cv);
    PyBuffer_Release(&xv);
    Py_RETURN_NONE;
}

/* y[n][m][plane] += b[m], then + z (a residual of y's shape, or NULL), then the activation, in place: one pass
 * over memory, one loop per case so each vectorises; the additions in the order of the ops they replace. */
CLONES void bias_act(float *y, const float *b, const float *z, idx n, idx m, idx plane, int act, float lo,
                     float hi) {
    for (idx i = 0; i < n * m; i++) {
        float *restrict p = y + i * plane;
        if (z) {   /* the plane is in cache for the activation's loop */
            const float *restrict r = z + i * plane;
            if (b) {
                float v = b[i % m];
                for (idx j = 0; j < plane; j++) p[j] = (p[j] + v) + r[j];
            } else {
                for (idx j = 0; j < plane; j++) p[j] += r[j];
            }
            activate(p, plane, act, lo, hi);
            continue;
        }
        if (!b) {   /* no "+ 0": it would turn -0 into +0 */
            activate(p, plane, act, lo, hi);
            continue;
        }
        float v = b[i % m];
        if (act == ACT_RELU) {
            for (idx j = 0; j < plane; j++) { float t = p[j] + v; p[j] = t < 0.f ? 0.f : t; }
        } else if (act == ACT_CLIP) {
            for (idx j = 0; j < plane; j++) { float t = p[j] + v; p[j] = t < lo ? lo : (t > hi ? hi : t); }
        } else {
            for (idx j = 0; j < plane; j++) p[j] += v;
        }
    }
}


static PyObject *py_bias_act(PyObject *self, PyObject *args) {
    PyObject *yo, *bo, *zo;
    idx n, m, plane;
    int act;
    float lo, hi;
    if (!PyArg_ParseTuple(args, "OOOnnniff", &yo, &bo, &zo, &n, &m, &plane, &act, &lo, &hi)) return NULL;
    if (n < 0 || m < 0 || plane < 0) { PyErr_SetString(PyExc_ValueError, "negative size"); return NULL; }
    Py_buffer yv, bv, zv;
    if (get_f32(yo, &yv, n * m * plane, 1, "bias_act y") < 0) return NULL;
    if (bo != Py_None && get_f32(bo, &bv, m, 0, "bias_act b") < 0) { PyBuffer_Release(&yv); return NULL; }
    if (zo != Py_None && get_f32(zo, &zv, n * m * plane, 0, "bias_act z") < 0) {
        if (bo != Py_None) PyBuffer_Release(&bv);
        PyBuffer_Release(&yv);
        return NULL;
    }
    float *y = yv.buf;
    const float *b = bo != Py_None ? bv.buf : NULL, *z = zo != Py_None ? zv.buf : NULL;
    Py_BEGIN_ALLOW_THREADS
    bias_act(y, b, z, n, m, plane, act, lo, hi);
    Py_END_ALLOW_THREADS
    if (z) PyBuffer_Release(&zv);
    if (b) PyBuffer_Release(&bv);
    PyBuffer_Release(&yv);
    Py_RETURN_NONE;
}

static PyObject *py_pool(PyObject *self, PyObject *args) {
    PyObject *xo, *yo;
    GEO_DECL(g);
    int avg;
    idx clo[2], chi[2];
    if (!PyArg_ParseTuple(args, "OO" GEO_FMT "i(nnnn)", &xo, &yo, GEO_ARGS(g), &avg, &clo[0], &chi[0],
                          &clo[1], &chi[1]))
        return NULL;
    if (GEO_LOAD(g) < 0) return NULL;
    idx hp, wp;
    padded_dims(&g, &hp, &wp);
    /* one block: double accumulator (a row, or the wide grid of a stride-1 average), per-row and per-column
     * tap counts, padded plane, the averages' tap counts per output */
    size_t bytes = (size_t)(hp * wp) * 4 + (size_t)(g.oh * wp > g.ow ? g.oh * wp : g.ow) * 8 +
                   (size_t)(g.oh + g.ow) * sizeof(idx) + (size_t)(g.oh * g.ow) * 4;
    char *mem = PyMem_RawMalloc(bytes + 16);
    if (!mem) return PyErr_NoMemory();
    double *acc = (double *)mem;
    idx *rows = (idx *)(acc + (g.oh * wp > g.ow ? g.oh * wp : g.ow)), *cols = rows + g.oh;
    float *pad = (float *)(cols + g.ow), *counts = pad + hp * wp;
    Py_buffer xv, yv;
    if (get_f32(xo, &xv, g.n * g.c * g.h * g.w, 0, "pool x") < 0) { PyMem_RawFree(mem); return NULL; }
    if (get_f32(yo, &yv, g.n * g.c * g.oh * g.ow, 1, "pool y") < 0) {
        PyMem_RawFree(mem);
        PyBuffer_Release(&xv);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    if (pool_tiles_exactly(&g))
        pool_exact(&g, xv.buf, yv.buf, avg);
    else
        pool2d(&g, xv.buf, yv.buf, avg, clo, chi, pad, acc, rows, cols, counts);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(mem);
    PyBuffer_Release(&yv);
    PyBuffer_Release(&xv);
    Py_RETURN_NONE;
}

typedef int (*conv_fn)(const geo_t *g, const float *x, const float *w, const float *b, float *y, int act,
                       float lo, float hi, int nthreads);

static int conv_direct_fn(const geo_t *g, const float *x, const float *w, const float *b, float *y, int act,
                          float lo, float hi, int nthreads) {
    (void)nthreads;   /* one thread */
    return conv_direct(g, x, w, b, y, act, lo, hi);
}

/* `name`(x, w, b|None, y, geo, act, lo, hi[, nthreads]): checks the buffers (what: their names in errors),
 * runs fn with the GIL released */
static PyObject *conv_entry(PyObject *args, const char *name, const char *const what[4], conv_fn fn,
                            int threaded) {
    PyObject *xo, *wo, *bo, *yo;
    GEO_DECL(g);
    int act, nthreads = 1, rc;
    float lo, hi;
    int parsed = threaded
        ? PyArg_ParseTuple(args, "OOOO" GEO_FMT "iffi", &xo, &wo, &bo, &yo, GEO_ARGS(g), &act, &lo, &hi,
                           &nthreads)
        : PyArg_ParseTuple(args, "OOOO" GEO_FMT "iff", &xo, &wo, &bo, &yo, GEO_ARGS(g), &act, &lo, &hi);
    if (!parsed)
        return NULL;
    if (GEO_LOAD(g) < 0) return NULL;
    if (threaded && (g.cg != g.c || nthreads < 1))
        return PyErr_Format(PyExc_ValueError, "%s: one group and nthreads >= 1 only", name);
    Py_buffer xv, wv, bv, yv;
    int have_b = bo != Py_None;
    if (get_f32(xo, &xv, g.n * g.c * g.h * g.w, 0, what[0]) < 0) return NULL;
    if (get_f32(wo, &wv, g.m * g.cg * g.kh * g.kw, 0, what[1]) < 0) goto fail_x;
    if (have_b && get_f32(bo, &bv, g.m, 0, what[2]) < 0) goto fail_w;
    if (get_f32(yo, &yv, g.n * g.m * g.oh * g.ow, 1, what[3]) < 0) goto fail_b;
    Py_BEGIN_ALLOW_THREADS
    rc = fn(&g, xv.buf, wv.buf, have_b ? bv.buf : NULL, yv.buf, act, lo, hi, nthreads);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&yv);
    if (have_b) PyBuffer_Release(&bv);
    PyBuffer_Release(&wv);
    PyBuffer_Release(&xv);
    if (rc < 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
fail_b:
    if (have_b) PyBuffer_Release(&bv);
fail_w:
    PyBuffer_Release(&wv);
fail_x:
    PyBuffer_Release(&xv);
    return NULL;
}

/* conv_direct(x, w, b|None, y, geo, act, lo, hi): grouped conv computed directly (convdirect.c) */
static PyObject *py_conv_direct(PyObject *self, PyObject *args) {
    static const char *const what[4] = {"conv_direct x", "conv_direct w", "conv_direct b", "conv_direct y"};
    return conv_entry(args, "conv_direct", what, conv_direct_fn, 0);
}

/* conv_gemm(x, w, b|None, y, geo, act, lo, hi, nthreads): a group-1 conv as one GEMM (convgemm.c) */
static PyObject *py_conv_gemm(PyObject *self, PyObject *args) {
    static const char *const what[4] = {"conv_gemm x", "conv_gemm w", "conv_gemm b", "conv_gemm y"};
    return conv_entry(args, "conv_gemm", what, conv_gemm, 1);
}

static PyMethodDef METHODS[] = {
    {"conv", py_conv, METH_VARARGS, "conv(x, w, b|None, y, geo, act, lo, hi): depthwise 2-D conv"},
    {"conv_direct", py_conv_direct, METH_VARARGS,
     "conv_direct(x, w, b|None, y, geo, act, lo, hi): grouped 2-D conv computed directly (small convs)"},
    {"im2col", py_im2col, METH_VARARGS, "im2col(x, cols, geo): columns [N, C*KH*KW, OH*OW]"},
    {"conv_gemm", py_conv_gemm, METH_VARARGS,
     "conv_gemm(x, w, b|None, y, geo, act, lo, hi, nthreads): group-1 conv, implicit-im2col GEMM"},
    {"bias_act", py_bias_act, METH_VARARGS,
     "bias_act(y, b|None, z|None, n, m, plane, act, lo, hi): y = act(y + b + z), in place"},
    {"pool", py_pool, METH_VARARGS, "pool(x, y, geo, avg, (lo_h, hi_h, lo_w, hi_w)): 2-D max/avg pool"},
    {"layer_norm", py_layer_norm, METH_VARARGS,
     "layer_norm(x, scale, bias|None, y, mean|None, inv_std|None, rows, cols, eps): rows of x normalized"},
    {"softmax", py_softmax, METH_VARARGS, "softmax(x, y, rows, cols, log): softmax or log-softmax of rows"},
    {"erf", py_erf, METH_VARARGS, "erf(x, y, n): the ISA's float32 erf, elementwise"},
    {"im2col_ck", py_im2col_ck, METH_VARARGS, "im2col_ck(x, cols, geo): columns [C*KH*KW, N, OH*OW]"},
    {"col2im_ck", py_col2im_ck, METH_VARARGS, "col2im_ck(cols, dx, geo): dx = sum of columns, the inverse"},
    {"matmul", (PyCFunction)(void (*)(void))py_matmul, METH_VARARGS | METH_KEYWORDS,
     "matmul(a, b, out, nthreads=None, isa=None): out = a @ b in float32 (a (..., M, K); b (K, N) or with a's "
     "batch shape; out (..., M, N), preallocated), GIL released; isa 'portable', 'avx2' or 'avx512' forces "
     "a micro-kernel family."},
    {"call_float32", (PyCFunction)(void (*)(void))py_call_float32, METH_FASTCALL,
     "call_float32(address, counts, *buffers) -> bool: void f(void *, ...) at address called with the buffers' "
     "data pointers (1 to 16 C-contiguous float32 buffers of their counts of elements), GIL released; False, "
     "calling nothing, where one is not; for compiled kernels the caller vouches for"},
    {"maxpool_grad", py_maxpool_grad, METH_VARARGS,
     "maxpool_grad(x, y, gy, dx, geo): gy to the first maximum of each window"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_ckernels", "float32 conv/pool/row/matmul kernels", -1,
                                    METHODS};

PyMODINIT_FUNC PyInit__ckernels(void) {
    /* PyCapsule_Import resolves attributes below the top package: the extension module is imported first */
    PyObject *cvm = PyImport_ImportModule("dvm_runtime._cvm");
    vm_parallel_for_fn shared = cvm ? (vm_parallel_for_fn)PyCapsule_Import(VM_POOL_CAPSULE, 0) : NULL;
    Py_XDECREF(cvm);
    if (shared)
        gemm_parallel_for = shared;
    else
        PyErr_Clear();   /* no DVM extension: this one's own pool */
    return PyModule_Create(&MODULE);
}
