/* Shared by the translation units of framework._ckernels. */
#ifndef MSGX_CKERNELS_H
#define MSGX_CKERNELS_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef Py_ssize_t idx;

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CLONES
#endif

/* Borrow obj's buffer as float32, C-contiguous, holding at least `need` elements. */
int get_f32(PyObject *obj, Py_buffer *v, idx need, int writable, const char *what);

/* rowops.c: LayerNorm / softmax rows and erf */
PyObject *py_layer_norm(PyObject *self, PyObject *args);
PyObject *py_softmax(PyObject *self, PyObject *args);
PyObject *py_erf(PyObject *self, PyObject *args);
#endif
