/* framework._ckernels.matmul: the Python binding of gemm.c (float32 products on the thread pool of
 * dvm_runtime/csrc/vm_pool.c, compiled into this extension too). Called by framework/ops/gemm.py. */
#include "ckernels.h"

#include <string.h>

#include "gemm.h"
#include "vm_pool.h"

static int is_f32(const Py_buffer *v) {
    const char *f = v->format ? v->format : "B";
    while (*f == '@' || *f == '=' || *f == '<') f++;
    return f[0] == 'f' && f[1] == 0 && v->itemsize == 4;
}

static int matmul_operand(PyObject *o, const char *name, int writable, Py_buffer *v) {
    if (PyObject_GetBuffer(o, v, PyBUF_STRIDES | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0) return -1;
    int f32 = is_f32(v), aligned = 1;
    for (int d = 0; d < v->ndim; d++) aligned &= v->strides[d] >= 0 && v->strides[d] % 4 == 0;
    const char *err = !f32 ? "must be a float32 array" : v->ndim < 2 ? "must have at least 2 dimensions"
                      : !aligned ? "must have non-negative strides of whole elements" : NULL;
    if (!err) return 0;
    PyErr_Format(f32 ? PyExc_ValueError : PyExc_TypeError, "matmul: %s %s", name, err);
    PyBuffer_Release(v);
    return -1;
}

/* One past the last byte an operand touches (its first is buf: strides are non-negative). */
static char *span_end(const Py_buffer *v) {
    char *end = (char *)v->buf + v->itemsize;
    for (int d = 0; d < v->ndim; d++) {
        if (v->shape[d] == 0) return v->buf;
        end += (v->shape[d] - 1) * v->strides[d];
    }
    return end;
}

/* The batch dimensions (all but the last two) as at most two strided levels, in elements: adjacent
 * dimensions merge where every operand steps through them as through one (size-1 dimensions drop out).
 * b2d: b has no batch dimensions (stride 0). Returns 0, or -1 when more than two levels remain. */
static int batch_levels(const Py_buffer *v, int b2d, int64_t *size, int64_t stride[2][3]) {
    int64_t lv[2][4];
    int n = 0;
    for (int d = 0; d < v[0].ndim - 2; d++) {
        if (v[0].shape[d] == 1) continue;
        int64_t cur[4] = {v[0].shape[d], v[0].strides[d] / 4, b2d ? 0 : v[1].strides[d] / 4, v[2].strides[d] / 4};
        if (n > 0 && lv[n - 1][1] == cur[1] * cur[0] && lv[n - 1][2] == cur[2] * cur[0] &&
            lv[n - 1][3] == cur[3] * cur[0]) {
            lv[n - 1][0] *= cur[0];
            for (int k = 1; k < 4; k++) lv[n - 1][k] = cur[k];
            continue;
        }
        if (n == 2) return -1;
        memcpy(lv[n++], cur, sizeof cur);
    }
    size[0] = n > 0 ? lv[0][0] : 1;
    size[1] = n > 1 ? lv[1][0] : 1;
    for (int k = 0; k < 3; k++) {
        stride[0][k] = n > 0 ? lv[0][k + 1] : 0;
        stride[1][k] = n > 1 ? lv[1][k + 1] : 0;
    }
    return 0;
}

/* matmul(a, b, out, nthreads=None, isa=None): out[...] = a[...] @ b[...] in float32 (gemm.c). */
PyObject *py_matmul(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"a", "b", "out", "nthreads", "isa", NULL};
    static const char *const isa_names[] = {"auto", "portable", "avx2", "avx512"};
    PyObject *obj[3], *nt_obj = Py_None, *result = NULL;
    const char *isa_name = "auto", *names[3] = {"a", "b", "out"};
    int nthreads, isa = 0, got = 0;
    Py_buffer v[3];
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO|Oz:matmul", kwlist, &obj[0], &obj[1], &obj[2], &nt_obj,
                                     &isa_name))
        return NULL;
    if (nt_obj == Py_None) {
        nthreads = vm_cpu_count();
    } else {
        long n = PyLong_AsLong(nt_obj);
        if (n == -1 && PyErr_Occurred()) return NULL;
        if (n < 1) return PyErr_Format(PyExc_ValueError, "matmul: nthreads must be >= 1, got %ld", n);
        nthreads = n > 4096 ? 4096 : (int)n;
    }
    while (isa_name && isa < 4 && strcmp(isa_name, isa_names[isa])) isa++;
    if (isa == 4 || !gemm_isa_supported((gemm_isa_t)isa))
        return PyErr_Format(PyExc_ValueError, "matmul: isa %s is unknown or not supported here", isa_name);
    for (; got < 3; got++)
        if (matmul_operand(obj[got], names[got], got == 2, &v[got]) < 0) goto out;
    int nd = v[0].ndim, batch_ok = v[2].ndim == nd && (v[1].ndim == 2 || v[1].ndim == nd);
    Py_ssize_t *as = v[0].shape, *bs = v[1].shape, *os = v[2].shape, batch = 1;
    for (int d = 0; batch_ok && d < nd - 2; d++) {
        batch_ok = os[d] == as[d] && (v[1].ndim == 2 || bs[d] == as[d]);
        batch *= as[d];
    }
    int bd = v[1].ndim;
    if (!batch_ok || as[nd - 1] != bs[bd - 2] || os[nd - 2] != as[nd - 2] || os[nd - 1] != bs[bd - 1]) {
        PyErr_SetString(PyExc_ValueError, "matmul: shapes do not match: a (..., M, K), b (K, N) or (..., K, N) "
                                          "with a's batch shape, out (..., M, N)");
        goto out;
    }
    if (!PyBuffer_IsContiguous(&v[2], 'C')) {
        PyErr_SetString(PyExc_ValueError, "matmul: out must be C-contiguous");
        goto out;
    }
    /* a's rows and b's rows (or, transposed, its columns) must be unit-stride: the kernels read them as
     * vectors (b's transpose through a packed panel) */
    Py_ssize_t *sa = v[0].strides, *sb = v[1].strides;
    int trans_b = !(sb[bd - 1] == 4 || bs[bd - 1] == 1);
    if (!(sa[nd - 1] == 4 || as[nd - 1] == 1) || (trans_b && !(sb[bd - 2] == 4 || bs[bd - 2] == 1))) {
        PyErr_SetString(PyExc_ValueError, "matmul: a's rows and b's rows or columns must be unit-stride");
        goto out;
    }
    for (int i = 0; i < 2; i++)
        if ((char *)v[2].buf < span_end(&v[i]) && (char *)v[i].buf < span_end(&v[2])) {
            PyErr_Format(PyExc_ValueError, "matmul: out overlaps %s", names[i]);
            goto out;
        }
    int64_t levels[2], st[2][3];
    if (batch_levels(v, bd == 2, levels, st) < 0) {
        PyErr_SetString(PyExc_ValueError, "matmul: the batch dimensions' strides need more than two levels");
        goto out;
    }
    gemm_args_t g = {.batch = batch, .m = as[nd - 2], .n = bs[bd - 1], .k = as[nd - 1], .batch_in = levels[1],
                     .a = v[0].buf, .b = v[1].buf, .c = v[2].buf, .lda = sa[nd - 2] / 4,
                     .ldb = (trans_b ? sb[bd - 1] : sb[bd - 2]) / 4, .ldc = bs[bd - 1],
                     .stride_a = st[0][0], .stride_b = st[0][1], .stride_c = st[0][2],
                     .stride_a_in = st[1][0], .stride_b_in = st[1][1], .stride_c_in = st[1][2],
                     .trans_b = trans_b};
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = gemm_f32(&g, nthreads, (gemm_isa_t)isa);
    Py_END_ALLOW_THREADS
    if (rc != 0) { PyErr_NoMemory(); goto out; }
    result = Py_NewRef(Py_None);
out:
    for (int i = 0; i < got; i++) PyBuffer_Release(&v[i]);
    return result;
}
