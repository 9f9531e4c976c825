"""_cvm.Program: a program validated and decoded once, then run many times on checked buffers (how the DVM
backend runs every kernel). Results equal cvm.run's; bad programs fail at construction, bad buffers per run."""
import threading

import numpy as np
import pytest

from dvm_runtime import cvm, encoder
from dvm_runtime.backend import DvmBackend
from framework.ir import Graph, Node, TensorType, Value

pytestmark = pytest.mark.skipif(not cvm.available(), reason=f"C VM unavailable: {cvm.why_unavailable()}")
F32 = np.dtype(np.float32)


def _softmax_body(rows: int, cols: int) -> Graph:
    x = Value(TensorType(F32, (rows, cols)), "x")
    vals = [Value(TensorType(F32, s), n) for s, n in
            (((rows, 1), "m"), ((rows, cols), "d"), ((rows, cols), "e"), ((rows, 1), "s"), ((rows, cols), "y"))]
    m, d, e, s, y = vals
    nodes = (Node("ReduceMax", (x,), (m,), {"axes": (1,), "keepdims": 1}, opset=13),
             Node("Sub", (x, m), (d,)), Node("Exp", (d,), (e,)),
             Node("ReduceSum", (e,), (s,), {"keepdims": 1, "axes": (1,)}, opset=11), Node("Div", (e, s), (y,)))
    return Graph((x,), (y,), nodes, {}, "softmax")


def _program_and_buffers(rows=37, cols=50, seed=0):
    prog = encoder.encode(_softmax_body(rows, cols), [(rows, cols)], [F32], {})
    x = np.random.default_rng(seed).standard_normal((rows, cols), dtype=np.float32)
    captured = []
    prog.run([x], lambda code, bufs: captured.append(bufs))  # the buffers the binding hands the VM
    return prog, captured[0], x


def test_program_runs_as_cvm_run_does():
    prog, bufs, x = _program_and_buffers()
    out = [i for i, b in enumerate(bufs) if b.base is None and b is not x and b.size == x.size]
    cvm.run(prog.code, bufs, 2)
    want = [b.copy() for b in bufs]
    for b in (bufs[i] for i in out):
        b.fill(np.nan)
    p = cvm.extension().Program(prog.code)
    for _ in range(3):  # decoded once, run many times
        p.run(bufs, nthreads=2)
        for a, b in zip(want, bufs):
            np.testing.assert_array_equal(a, b)
    e = np.exp(x - x.max(1, keepdims=True))
    np.testing.assert_allclose(want[out[0]].reshape(x.shape), e / e.sum(1, keepdims=True), rtol=1e-5)


def test_bad_program_fails_at_construction_and_bad_buffers_at_run():
    prog, bufs, _ = _program_and_buffers()
    ext = cvm.extension()
    with pytest.raises(ext.BytecodeError, match="header"):
        ext.Program(np.zeros(3, np.uint64))
    bad = prog.code.copy()
    bad[0] ^= 1  # the magic word
    with pytest.raises(ext.BytecodeError):
        ext.Program(bad)
    p = ext.Program(prog.code)
    with pytest.raises(ext.BytecodeError, match="buffer"):
        p.run(bufs[:-1])
    with pytest.raises(ext.BytecodeError, match="elements"):
        p.run([np.zeros(b.size + 1, b.dtype) for b in bufs])
    with pytest.raises(ValueError, match="nthreads"):
        p.run(bufs, 0)


def test_one_program_runs_from_several_threads_at_once():
    prog, bufs, x = _program_and_buffers(rows=300, cols=64)
    p = cvm.extension().Program(prog.code)
    ref = [b.copy() for b in bufs]
    cvm.run(prog.code, ref, 1)
    errors = []

    def worker():
        mine = [b.copy() for b in bufs]
        for _ in range(50):
            p.run(mine, 2)
            if not all(np.array_equal(a, b) for a, b in zip(ref, mine)):
                errors.append("differs")
                return
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_backend_kernels_run_decoded_programs():
    run = DvmBackend(vm="c")._run
    assert callable(getattr(run, "prepare", None))
    prog, bufs, _ = _program_and_buffers()
    ref = [b.copy() for b in bufs]
    cvm.run(prog.code, ref, 1)
    run.prepare(prog.code)(bufs)
    for a, b in zip(ref, bufs):
        np.testing.assert_array_equal(a, b)


def test_convert_replaces_only_inputs_the_vm_cannot_take():
    prog, bufs, x = _program_and_buffers(rows=8, cols=12)
    ext = cvm.extension()
    i = next(k for k, b in enumerate(bufs) if b is x or b.base is x)
    want = [b.copy() for b in bufs]
    cvm.run(prog.code, want, 1)
    calls = []

    def convert(a, slot):
        calls.append(slot)
        return np.ascontiguousarray(a, np.float32)
    p = ext.Program(prog.code, convert)
    wide = np.repeat(x, 2, axis=1)
    for given, converted in ((x, False), (x.astype(np.float64), True), (wide[:, ::2], True)):
        mine = [b.copy() for b in bufs]
        mine[i] = given
        p.run(mine, 1)
        assert calls == ([i] if converted else [])
        calls.clear()
        for k, (a, b) in enumerate(zip(want, mine)):
            if k != i:
                np.testing.assert_array_equal(a, b)
    with pytest.raises(ext.BytecodeError, match="C-contiguous"):  # without convert a view is an error
        ext.Program(prog.code).run(mine, 1)
    with pytest.raises(TypeError, match="callable"):
        ext.Program(prog.code, 3)
    with pytest.raises(ZeroDivisionError):  # convert's own error propagates
        ext.Program(prog.code, lambda a, slot: 1 / 0).run(mine, 1)
    with pytest.raises(ext.BytecodeError, match="float32"):  # a conversion that does not convert is an error
        ext.Program(prog.code, lambda a, slot: a).run([*bufs[:i], x.astype(np.float64), *bufs[i + 1:]], 1)


def test_calling_a_program_runs_it_on_its_threads_and_arrays_it_cannot_take_are_refused_or_converted():
    """Program(code, convert, nthreads)(buffers) is run() on the program's thread count. Arrays are read
    through numpy's fields where the VM takes them as they are; a byte-swapped input goes through convert, a
    misaligned one through the buffer protocol (the VM loads unaligned), and an output the VM cannot write
    (read-only) is an error, never a silent write."""
    prog, bufs, x = _program_and_buffers(rows=9, cols=40)
    ext = cvm.extension()
    want = [b.copy() for b in bufs]
    cvm.run(prog.code, want, 1)
    i = next(k for k, b in enumerate(bufs) if b is x or b.base is x)
    out = next(k for k, b in enumerate(bufs) if k != i and b.size == x.size and b.flags.writeable)
    mine = [b.copy() for b in bufs]
    ext.Program(prog.code, None, 2)(mine)
    np.testing.assert_array_equal(mine[out], want[out])
    calls = []
    p = ext.Program(prog.code, lambda a, slot: calls.append(slot) or np.ascontiguousarray(a, np.float32), 1)
    raw = np.zeros(x.size * 4 + 1, np.uint8)
    misaligned = raw[1:].view(np.float32).reshape(x.shape)
    misaligned[...] = x
    for given, converted in ((x.astype(x.dtype.newbyteorder()), True), (misaligned, False)):
        mine = [b.copy() for b in bufs]
        mine[i] = given
        p(mine)
        assert calls == ([i] if converted else [])
        calls.clear()
        np.testing.assert_array_equal(mine[out], want[out])
    frozen = [b.copy() for b in bufs]
    frozen[out].flags.writeable = False
    with pytest.raises(ext.BytecodeError, match="writable"):
        p(frozen)
    with pytest.raises(TypeError):
        p(bufs, 1)
