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
    int f32 = is_f32(v);
    const char *err = !f32 ? "must be a float32 array" : !PyBuffer_IsContiguous(v, 'C') ? "must be C-contiguous"
                      : v->ndim < 2 ? "must have at least 2 dimensions" : NULL;
    if (!err) return 0;
    PyErr_Format(f32 ? PyExc_ValueError : PyExc_TypeError, "matmul: %s %s", name, err);
    PyBuffer_Release(v);
    return -1;
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
    for (int i = 0; i < 2; i++)
        if ((char *)v[2].buf < (char *)v[i].buf + v[i].len && (char *)v[i].buf < (char *)v[2].buf + v[2].len) {
            PyErr_Format(PyExc_ValueError, "matmul: out overlaps %s", names[i]);
            goto out;
        }
    gemm_args_t g = {batch, as[nd - 2], bs[bd - 1], as[nd - 1], v[0].buf, v[1].buf, v[2].buf, as[nd - 1],
                     bs[bd - 1], bs[bd - 1], as[nd - 2] * as[nd - 1], bd == 2 ? 0 : bs[bd - 2] * bs[bd - 1],
                     os[nd - 2] * os[nd - 1]};
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
