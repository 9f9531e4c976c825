/* framework._ckernels.call_float32: call a compiled C function void f(void *, ..., void *) with the data
 * pointers of C-contiguous float32 buffers, GIL released. For kernels the package generates and loads itself (the
 * polyhedral backend's), where ctypes' per-call argument conversion (an ndarray.ctypes object per array) cost
 * 4-5 us of a call. The caller vouches for the function: its address and its arity, the buffers' count. */
#include "ckernels.h"

#define MAX_POINTERS 16

/* an unprototyped pointer: a call with n void * arguments is defined for a definition with n void *
 * parameters (C17 6.5.2.2p6) */
typedef void (*kernel_fn)();

static void call_n(kernel_fn f, void **p, Py_ssize_t n) {
    switch (n) {
    case 1: f(p[0]); break;
    case 2: f(p[0], p[1]); break;
    case 3: f(p[0], p[1], p[2]); break;
    case 4: f(p[0], p[1], p[2], p[3]); break;
    case 5: f(p[0], p[1], p[2], p[3], p[4]); break;
    case 6: f(p[0], p[1], p[2], p[3], p[4], p[5]); break;
    case 7: f(p[0], p[1], p[2], p[3], p[4], p[5], p[6]); break;
    case 8: f(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]); break;
    case 9: f(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8]); break;
    case 10: f(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9]); break;
    case 11: f(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10]); break;
    case 12: f(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11]); break;
    case 13: f(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12]); break;
    case 14: f(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12], p[13]); break;
    case 15: f(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12], p[13], p[14]);
        break;
    case 16: f(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12], p[13], p[14],
               p[15]);
        break;
    }
}

/* a C-contiguous float32 buffer of `count` elements (struct format "f", native order) */
static int is_float32(const Py_buffer *v, Py_ssize_t count) {
    const char *f = v->format ? v->format : "B";
    if (*f == '@' || *f == '=' || *f == '<') f++;
    return v->itemsize == 4 && f[0] == 'f' && f[1] == '\0' && v->len == count * 4;
}

/* call_float32(address, counts, *buffers) -> bool: f at address called with the buffers' data pointers, where
 * every buffer is a C-contiguous float32 buffer of its count of elements (the kernel's arrays); False, calling
 * nothing, where one is not (the caller converts it and calls again). Checking here saved the polyhedral runner's per-input
 * ascontiguousarray and reshape (0.7 us each, measured). */
PyObject *py_call_float32(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t n = nargs - 2;
    if (n < 1 || n > MAX_POINTERS)
        return PyErr_Format(PyExc_ValueError, "call_float32: 1 to %d buffers, got %zd", MAX_POINTERS, n);
    if (!PyTuple_Check(args[1]) || PyTuple_GET_SIZE(args[1]) != n)
        return PyErr_Format(PyExc_ValueError, "call_float32: counts must be a tuple of %zd ints", n);
    void *fn = PyLong_AsVoidPtr(args[0]);
    if (fn == NULL) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "call_float32: null function address");
        return NULL;
    }
    Py_buffer v[MAX_POINTERS];
    void *p[MAX_POINTERS];
    Py_ssize_t got = 0;
    int fits = 1;
    for (; got < n && fits; got++) {
        Py_ssize_t count = PyLong_AsSsize_t(PyTuple_GET_ITEM(args[1], got));
        if (count < 0 && PyErr_Occurred()) break;
        if (PyObject_GetBuffer(args[got + 2], &v[got], PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
            if (!PyErr_ExceptionMatches(PyExc_BufferError) && !PyErr_ExceptionMatches(PyExc_ValueError)) break;
            PyErr_Clear();  /* not C-contiguous: the caller converts */
            fits = 0;
            got--;
            continue;
        }
        fits = is_float32(&v[got], count);
        p[got] = v[got].buf;
    }
    if (got == n && fits) {
        Py_BEGIN_ALLOW_THREADS
        call_n((kernel_fn)fn, p, n);
        Py_END_ALLOW_THREADS
    }
    for (Py_ssize_t k = 0; k < got; k++) PyBuffer_Release(&v[k]);
    if (PyErr_Occurred()) return NULL;
    return PyBool_FromLong(got == n && fits);
}
