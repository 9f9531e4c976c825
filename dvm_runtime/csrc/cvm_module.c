/* dvm_runtime._cvm: the CPython face of the C VM. run() validates the program completely, checks the
 * caller's buffers against its buffer table, then executes with the GIL released. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>
#include <stdlib.h>
#include <string.h>

#include "vm.h"
#include "vm_kernels.h"
#include "vm_pool.h"

#ifndef DVM_ISA_DIGEST
#define DVM_ISA_DIGEST "unknown"
#endif

static PyObject *BytecodeError;

/* Borrows the program as uint64 words (copied when misaligned); fills *words, *owned (to free). */
static int get_program(PyObject *obj, Py_buffer *view, const uint64_t **words, uint64_t **owned,
                       int64_t *nw) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS) < 0) return -1;
    *owned = NULL;
    if (view->len % 8) {
        PyErr_Format(BytecodeError, "program is %zd bytes, not a whole number of 64-bit words", view->len);
        PyBuffer_Release(view);
        return -1;
    }
    *nw = view->len / 8;
    if ((uintptr_t)view->buf % 8) {
        *owned = malloc(view->len ? (size_t)view->len : 8);
        if (!*owned) { PyBuffer_Release(view); PyErr_NoMemory(); return -1; }
        memcpy(*owned, view->buf, (size_t)view->len);
    }
    *words = *owned ? *owned : (const uint64_t *)view->buf;
    return 0;
}

/* Validates and decodes a program object (uint64 words) into *p, which keeps no pointer into the words;
 * -1 with the error set (BytecodeError for a bad program). */
static int decode(PyObject *obj, vm_prog_t *p) {
    Py_buffer view;
    const uint64_t *words;
    uint64_t *owned;
    int64_t nw;
    if (get_program(obj, &view, &words, &owned, &nw) < 0) return -1;
    char err[256];
    int rc = vm_decode(words, nw, p, err, sizeof err);
    free(owned);
    PyBuffer_Release(&view);
    if (rc == VM_NOMEM) { PyErr_NoMemory(); return -1; }
    if (rc != VM_OK) { PyErr_SetString(BytecodeError, err); return -1; }
    return 0;
}

/* The buffer-protocol format letter's kind: 'f' float, 'i' signed int, 'u' unsigned, 'b' bool, 0 other. */
static char format_kind(const char *fmt) {
    if (!fmt) return 'u';
    while (*fmt == '@' || *fmt == '=' || *fmt == '<') fmt++;
    if (!fmt[0] || fmt[1]) return 0;
    if (strchr("efd", fmt[0])) return 'f';
    if (strchr("bhilq", fmt[0])) return 'i';
    if (strchr("BHILQ", fmt[0])) return 'u';
    return fmt[0] == '?' ? 'b' : 0;
}

static const char *const DT_NAME[] = {"?", "float32", "float16", "int32", "int64", "bool"};
static const char DT_KIND[] = {0, 'f', 'f', 'i', 'i', 'b'};

/* A buffer's view, the dtype checked against slot i. An input that is not a C-contiguous array of the slot's
 * dtype goes once through convert(obj, i) when the program has one (the caller's conversion to the slot's
 * dtype and layout); its result is kept in *converted until the views are released. */
static int get_buffer(PyObject *o, const vm_prog_t *p, int i, PyObject *convert, Py_buffer *view,
                      PyObject **converted) {
    int writable = p->buf_role[i] != DVM_ROLE_INPUT;
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    int dt = p->buf_dt[i];
    for (int attempt = 0;; attempt++) {
        int ok = PyObject_GetBuffer(o, view, flags) == 0;
        if (!ok) PyErr_Clear();
        int typed = ok && format_kind(view->format) == DT_KIND[dt] && view->itemsize == DVM_DTYPE_SIZE[dt];
        if (typed) return 0;
        if (writable || !convert || attempt) {
            if (!ok) {
                PyErr_Format(BytecodeError, "buffer %d must be a %sC-contiguous array", i,
                             writable ? "writable " : "");
                return -1;
            }
            PyErr_Format(BytecodeError, "buffer %d must be %s, got format '%s' with itemsize %zd", i,
                         DT_NAME[dt], view->format ? view->format : "B", view->itemsize);
            PyBuffer_Release(view);
            return -1;
        }
        if (ok) PyBuffer_Release(view);
        o = *converted = PyObject_CallFunction(convert, "Oi", o, i);
        if (!o) return -1;
    }
}

/* A numpy array that the VM takes as it is (C-contiguous, aligned, native byte order, writable where written,
 * of slot i's kind and size): its data and element count read from the array itself. Exporting a buffer
 * (format string included) cost about 0.1 µs per array, a real share of a small kernel's call. */
static int plain_array(PyObject *o, const vm_prog_t *p, int i, char **data, Py_ssize_t *n) {
    if (!PyArray_Check(o)) return 0;
    PyArrayObject *a = (PyArrayObject *)o;
    PyArray_Descr *d = PyArray_DESCR(a);
    int need = NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | (p->buf_role[i] != DVM_ROLE_INPUT ? NPY_ARRAY_WRITEABLE : 0);
    int dt = p->buf_dt[i];
    if (!PyArray_CHKFLAGS(a, need) || !PyArray_ISNBO(d->byteorder) || d->kind != DT_KIND[dt]
        || PyArray_ITEMSIZE(a) != DVM_DTYPE_SIZE[dt] || PyDataType_HASFIELDS(d))
        return 0;
    *data = PyArray_DATA(a);
    *n = PyArray_SIZE(a);
    return 1;
}

static int get_buffers(PyObject *seq, const vm_prog_t *p, PyObject *convert, Py_buffer *views, char **ptrs,
                       PyObject **converted, char *viewed) {
    if (PySequence_Fast_GET_SIZE(seq) != p->n_bufs) {
        PyErr_Format(BytecodeError, "program has %d buffer slots, %zd buffers given", p->n_bufs,
                     PySequence_Fast_GET_SIZE(seq));
        return -1;
    }
    for (int i = 0; i < p->n_bufs; i++) {
        PyObject *o = PySequence_Fast_GET_ITEM(seq, i);
        Py_ssize_t n;
        if (!plain_array(o, p, i, &ptrs[i], &n)) {
            if (get_buffer(o, p, i, convert, &views[i], &converted[i]) < 0) return -1;
            viewed[i] = 1;
            n = views[i].len / views[i].itemsize;
            ptrs[i] = views[i].buf;
        }
        if (n != p->buf_n[i]) {
            PyErr_Format(BytecodeError, "buffer %d must have %lld elements, got %zd", i,
                         (long long)p->buf_n[i], n);
            return -1;
        }
    }
    return 0;
}

/* nthreads: None means all CPUs; fills *n (clamped to VM_MAX_THREADS). */
static int thread_count(PyObject *nt_obj, int *n) {
    if (nt_obj == NULL || nt_obj == Py_None) {
        *n = vm_cpu_count();
        return 0;
    }
    long v = PyLong_AsLong(nt_obj);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v < 1) {
        PyErr_Format(PyExc_ValueError, "nthreads must be >= 1, got %ld", v);
        return -1;
    }
    *n = v > VM_MAX_THREADS ? VM_MAX_THREADS : (int)v;
    return 0;
}

/* Checks the buffers against a decoded program's table, then executes it with the GIL released. */
static PyObject *execute(const vm_prog_t *prog, PyObject *bufs_obj, int nthreads, PyObject *convert) {
    Py_buffer views[DVM_MAX_BUFFERS];
    char *ptrs[DVM_MAX_BUFFERS];
    PyObject *converted[DVM_MAX_BUFFERS];   /* the first n_bufs set to NULL: this runs on every call */
    char viewed[DVM_MAX_BUFFERS];           /* 1 where views[i] holds an exported buffer to release */
    for (int i = 0; i < prog->n_bufs; i++) converted[i] = NULL, viewed[i] = 0;
    PyObject *result = NULL;
    PyObject *seq = PySequence_Fast(bufs_obj, "buffers must be a list of arrays");
    if (!seq || get_buffers(seq, prog, convert, views, ptrs, converted, viewed) < 0) goto out;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = vm_execute(prog, ptrs, nthreads);
    Py_END_ALLOW_THREADS
    if (rc != VM_OK) { PyErr_NoMemory(); goto out; }
    result = Py_None;
    Py_INCREF(result);
out:
    for (int i = 0; i < prog->n_bufs; i++)
        if (viewed[i]) PyBuffer_Release(&views[i]);
    for (int i = 0; i < prog->n_bufs; i++) Py_XDECREF(converted[i]);
    Py_XDECREF(seq);
    return result;
}

static PyObject *py_run(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"program", "buffers", "nthreads", NULL};
    PyObject *prog_obj, *bufs_obj, *nt_obj = Py_None;
    int nthreads;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|O:run", kwlist, &prog_obj, &bufs_obj, &nt_obj)
        || thread_count(nt_obj, &nthreads) < 0)
        return NULL;
    vm_prog_t prog;
    if (decode(prog_obj, &prog) < 0) return NULL;
    PyObject *result = execute(&prog, bufs_obj, nthreads, NULL);
    vm_prog_free(&prog);
    return result;
}

/* ---- Program: a program validated and decoded once, run many times (a kernel's bytecode for one shape
 * signature runs on every call; decoding it took about a microsecond each time). */
typedef struct {
    PyObject_HEAD
    vm_prog_t prog;
    int decoded;
    int nthreads;      /* threads of a call: run()'s default, and what calling the program uses */
    PyObject *convert; /* None or convert(obj, i): an input made a C-contiguous array of slot i's dtype */
} ProgramObject;

static int program_init(ProgramObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"program", "convert", "nthreads", NULL};
    PyObject *obj, *convert = Py_None, *nt_obj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OO:Program", kwlist, &obj, &convert, &nt_obj)
        || thread_count(nt_obj, &self->nthreads) < 0)
        return -1;
    if (convert != Py_None && !PyCallable_Check(convert)) {
        PyErr_SetString(PyExc_TypeError, "convert must be callable or None");
        return -1;
    }
    Py_XSETREF(self->convert, convert == Py_None ? NULL : Py_NewRef(convert));
    if (self->decoded) {
        vm_prog_free(&self->prog);
        self->decoded = 0;
    }
    if (decode(obj, &self->prog) < 0) return -1;
    self->decoded = 1;
    return 0;
}

static void program_dealloc(ProgramObject *self) {
    if (self->decoded) vm_prog_free(&self->prog);
    Py_XDECREF(self->convert);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *program_run(ProgramObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"buffers", "nthreads", NULL};
    PyObject *bufs_obj, *nt_obj = NULL;
    int nthreads = self->nthreads;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O:run", kwlist, &bufs_obj, &nt_obj)
        || (nt_obj && thread_count(nt_obj, &nthreads) < 0))
        return NULL;
    if (!self->decoded) return PyErr_Format(BytecodeError, "Program was not initialised");
    return execute(&self->prog, bufs_obj, nthreads, self->convert);
}

/* program(buffers): run() on the program's own thread count, without keyword parsing (every kernel call). */
static PyObject *program_call(ProgramObject *self, PyObject *args, PyObject *kw) {
    PyObject *bufs_obj;
    if ((kw && PyDict_GET_SIZE(kw)) || !PyArg_UnpackTuple(args, "Program", 1, 1, &bufs_obj)) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "a Program is called with its buffers only");
        return NULL;
    }
    if (!self->decoded) return PyErr_Format(BytecodeError, "Program was not initialised");
    return execute(&self->prog, bufs_obj, self->nthreads, self->convert);
}

static PyMethodDef program_methods[] = {
    {"run", (PyCFunction)(void (*)(void))program_run, METH_VARARGS | METH_KEYWORDS,
     "run(buffers, nthreads=None): check the buffers against the program's table, then execute (on the "
     "program's nthreads where none is given)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ProgramType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dvm_runtime._cvm.Program",
    .tp_doc = "Program(words, convert=None, nthreads=None): a DVM program validated and decoded once "
              "(BytecodeError if it is bad); program(buffers) runs it on nthreads (None: all CPUs). An input "
              "buffer that is not a C-contiguous array of its slot's dtype is replaced by convert(buffer, slot) "
              "for the call, where convert is given.",
    .tp_basicsize = sizeof(ProgramObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)program_init,
    .tp_dealloc = (destructor)program_dealloc,
    .tp_call = (ternaryfunc)program_call,
    .tp_methods = program_methods,
};

static PyObject *py_validate(PyObject *self, PyObject *arg) {
    vm_prog_t prog;
    if (decode(arg, &prog) < 0) return NULL;
    int fused = 0, softmax = 0, expands = 0, streams = 0;
    for (int k = 0; k < prog.n_ins; k++) {
        fused += prog.ins[k].fused != 0;
        softmax += prog.ins[k].fused == VM_FUSE_SOFTMAX;
        expands += prog.ins[k].expand != 0 || prog.ins[k].expand_scalar != 0;
        streams += prog.ins[k].stream;
    }
    PyObject *result = Py_BuildValue("{s:L,s:n,s:i,s:i,s:i,s:i,s:i}", "ntiles", (long long)prog.ntiles,
                                     "arena_bytes", (Py_ssize_t)prog.arena_bytes, "n_instr", prog.n_ins,
                                     "fused", fused, "softmax", softmax, "expands", expands, "streams", streams);
    vm_prog_free(&prog);
    return result;
}

static PyObject *py_cpu_count(PyObject *self, PyObject *unused) { return PyLong_FromLong(vm_cpu_count()); }

static PyObject *py_stream_bytes(PyObject *self, PyObject *args) {
    long long bytes = 0;
    if (!PyArg_ParseTuple(args, "|L", &bytes)) return NULL;
    if (PyTuple_GET_SIZE(args) > 0) vm_set_stream_bytes((int64_t)bytes);
    return PyLong_FromLongLong((long long)vm_stream_bytes());
}

static PyMethodDef methods[] = {
    {"run", (PyCFunction)(void (*)(void))py_run, METH_VARARGS | METH_KEYWORDS,
     "run(program, buffers, nthreads=None): validate, then execute a DVM program on the buffers."},
    {"validate", py_validate, METH_O, "validate(program) -> dict: raises BytecodeError on a bad program."},
    {"cpu_count", py_cpu_count, METH_NOARGS, "Online CPUs (the default thread count)."},
    {"stream_bytes", py_stream_bytes, METH_VARARGS,
     "stream_bytes([n]) -> the data size (all of a program's buffers) from which its STOREs into buffers of "
     "at least 1/8 of it bypass the caches; n sets it for programs decoded later (<= 0: the default, half "
     "the last-level cache)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_cvm", "The DVM virtual machine in C.", -1,
    methods};

/* vm_parallel_for for framework._ckernels' GEMM: one pool of workers for the process. */
static int add_pool_capsule(PyObject *m) {
    PyObject *capsule = PyCapsule_New((void *)vm_parallel_for, VM_POOL_CAPSULE, NULL);
    int rc = capsule ? PyModule_AddObjectRef(m, "_parallel_for", capsule) : -1;
    Py_XDECREF(capsule);
    return rc;
}

PyMODINIT_FUNC PyInit__cvm(void) {
    import_array();
    int missing = vm_kernels_missing();
    if (missing >= 0)
        return PyErr_Format(PyExc_ImportError, "dvm_runtime._cvm lacks a kernel for opcode 0x%02x dtype %d",
                            missing / 16, missing % 16);
    if (PyType_Ready(&ProgramType) < 0) return NULL;
    PyObject *m = PyModule_Create(&moddef);
    if (!m) return NULL;
    BytecodeError = PyErr_NewExceptionWithDoc("dvm_runtime._cvm.BytecodeError",
                                              "A DVM program failed validation.", PyExc_ValueError, NULL);
    if (!BytecodeError || PyModule_AddObject(m, "BytecodeError", BytecodeError) < 0
        || PyModule_AddStringConstant(m, "ISA_DIGEST", DVM_ISA_DIGEST) < 0
        || PyModule_AddIntConstant(m, "MAX_THREADS", VM_MAX_THREADS) < 0
        || PyModule_AddObjectRef(m, "Program", (PyObject *)&ProgramType) < 0
        || add_pool_capsule(m) < 0) {
        Py_XDECREF(BytecodeError);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(BytecodeError);
    return m;
}
