/* Shared by the translation units of framework._ckernels. */
#ifndef MSGX_CKERNELS_H
#define MSGX_CKERNELS_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef Py_ssize_t idx;

/* the activation a conv kernel applies before its store (nn_ckernels.ACT) */
enum { ACT_NONE = 0, ACT_RELU = 1, ACT_CLIP = 2 };

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))  /* float code only */
#else
#define CLONES
#endif

/* Window geometry of one 2-D conv or pool (sizes in elements; pads may be negative: a crop). */
typedef struct {
    idx n, c, h, w, m, cg, kh, kw, sh, sw, dh, dw, ph, pw, oh, ow;
} geo_t;

/* A geometry travels from Python as the bytes of 16 int64 (nn_ckernels.geometry()): "y#" parses it much
 * faster than a 16-tuple, and these kernels are called per node per run. */
#define GEO_FMT "y#"
#define GEO_ARGS(g) &g##_bytes, &g##_len
#define GEO_DECL(g) geo_t g; const char *g##_bytes; Py_ssize_t g##_len
/* Copies the parsed bytes into g: 0, or -1 with a ValueError set when their size is not a geometry's. */
int geo_from_bytes(geo_t *g, const char *bytes, Py_ssize_t len);
#define GEO_LOAD(g) geo_from_bytes(&g, g##_bytes, g##_len)

/* matmul(a, b, out, nthreads=None, isa=None): matmul.c */
PyObject *py_matmul(PyObject *self, PyObject *args, PyObject *kw);
PyObject *py_call_float32(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

/* 0, or -1 with a ValueError set, for a geometry whose sizes do not fit together */
int check_geo(const geo_t *g);

/* 1 when a pool's windows tile the input exactly (kernel == stride, no dilation, padding or overhang) */
int pool_tiles_exactly(const geo_t *g);

/* Borrow obj's buffer as float32, C-contiguous, holding at least `need` elements. */
int get_f32(PyObject *obj, Py_buffer *v, idx need, int writable, const char *what);

/* The s_h * s_w stride phases of channel plane xp, zero-padded by the geometry's pads with `fill`, each
 * [hq][wq]: phase (py, px)[qy][qx] = padded x[qy*sh + py][qx*sw + px]. Tap (ky, kx) of output (oy, ox) is
 * then phase (ky*dh % sh, kx*dw % sw) at [oy + ky*dh / sh][ox + kx*dw / sw]: contiguous along ox. */
void phase_planes(const geo_t *g, idx hq, idx wq, const float *xp, float *dst, float fill);

/* A phase's rows and columns: enough for every output's every tap (oh + (kh-1)*dh/sh, ow + (kw-1)*dw/sw) */
static inline void phase_dims(const geo_t *g, idx *hq, idx *wq) {
    *hq = g->oh + (g->kh - 1) * g->dh / g->sh;
    *wq = g->ow + (g->kw - 1) * g->dw / g->sw;
}

/* Where tap (ky, kx) of output (0, 0) lies in a channel's phases (`phase` floats each, [hq][wq]) */
static inline idx phase_tap_offset(const geo_t *g, idx ky, idx kx, idx phase, idx wq) {
    idx ty = ky * g->dh, tx = kx * g->dw;
    return (ty % g->sh * g->sw + tx % g->sw) * phase + ty / g->sh * wq + tx / g->sw;
}

/* convdirect.c: group-1 conv computed directly in register blocks; -1 when out of memory */
int conv_direct(const geo_t *g, const float *x, const float *w, const float *b, float *y, int act, float lo,
                float hi);

/* y[i][j] (n * m planes of `plane` floats) += b[i % m], then += z[i][j], then relu or clip to [lo, hi]; b and
 * z may be NULL; -0 stays -0 without them */
void bias_act(float *y, const float *b, const float *z, idx n, idx m, idx plane, int act, float lo, float hi);

/* convgemm.c: a group-1 conv as one GEMM over an implicit im2col on `nthreads` threads; -1 when out
 * of memory */
int conv_gemm(const geo_t *g, const float *x, const float *w, const float *b, float *y, int act, float lo,
              float hi, int nthreads);

/* rowops.c: LayerNorm / softmax rows and erf */
PyObject *py_layer_norm(PyObject *self, PyObject *args);
PyObject *py_softmax(PyObject *self, PyObject *args);
PyObject *py_erf(PyObject *self, PyObject *args);

/* gradops.c: the backward of 2-D conv (im2col / col2im in [C*KH*KW, N, OH*OW] layout) and max pooling */
PyObject *py_im2col_ck(PyObject *self, PyObject *args);
PyObject *py_col2im_ck(PyObject *self, PyObject *args);
PyObject *py_maxpool_grad(PyObject *self, PyObject *args);
#endif
