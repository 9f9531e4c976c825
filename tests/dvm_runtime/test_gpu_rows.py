"""The CUDA row kernel's programs (dvm_runtime/gpu/rows.py). Everywhere: which programs qualify, and that
each row table means what its program means (a numpy reading of the table against the numpy VM). With a
CUDA device: the row kernel runs them bit for bit as the numpy VM where the ops are exact, and as the tiled
kernel otherwise."""
import numpy as np
import pytest

from dvm_runtime import isa, pyvm
from dvm_runtime.gpu import chain, rows
from dvm_runtime.isa import DType, F_A_ROW, F_B_ROW, F_ROW, Opcode as O
from tests.dvm_runtime.test_fuzz import APPROX, M64
from tests.dvm_runtime.test_gpu_chain import (UNARY, BINARY, _apply, assemble, buffers, needs_gpu,
                                              table_matches_numpy_vm)

COLS = (1, 3, 8, 50, 128, 129, 300, 1000)


def row_program(rng, exact: bool, n_regs: int = 6, cols: int | None = None) -> np.ndarray:
    """A random float32 program with at least one reduction along rows: contiguous, last-axis, 0-d and
    per-row loads, FULL and ROW arithmetic (ROW operands broadcast along rows), BCAST_ROW, the four
    reductions, STOREs and STORE_ROWs."""
    dims = [int(rng.integers(1, 3)), int(rng.integers(1, 3)), int(rng.integers(1, 4)),
            int(cols if cols is not None else rng.choice(COLS))]
    n_rows, n_cols = dims[0] * dims[1] * dims[2], dims[3]
    n = n_rows * n_cols
    row_view = (dims[1] * dims[2], dims[2], 1, 0)
    words, n_instr, bufs, cls = [], 0, [], {}

    def emit(*w):
        nonlocal n_instr
        words.extend(int(x) & M64 for x in w)
        n_instr += 1

    def pick(want=None):
        regs = sorted(r for r, c in cls.items() if want is None or c == want)
        return int(rng.choice(regs)) if regs else None

    for k in range(int(rng.integers(1, 4))):
        r, kind = int(rng.integers(n_regs)), int(rng.integers(5))
        if kind == 0:
            bufs.append(n)
            emit(isa.word0(O.LOAD, DType.F32, 0, r, k), 0)
        elif kind == 1:   # a vector along the row, for every row (LayerNorm's scale)
            bufs.append(n_cols)
            emit(isa.word0(O.LOAD_VIEW, DType.F32, 0, r, k), 0, 0, 0, 0, 1)
        elif kind == 2:   # one value for every element
            bufs.append(3)
            emit(isa.word0(O.LOAD_VIEW, DType.F32, 0, r, k), 2, 0, 0, 0, 0)
        elif kind == 3:   # one value per row
            bufs.append(n_rows)
            emit(isa.word0(O.LOAD_ROW, DType.F32, 0, r, k), 0, *row_view)
            cls[r] = "R"
            continue
        else:   # the row read backwards
            bufs.append(n)
            emit(isa.word0(O.LOAD_VIEW, DType.F32, 0, r, k), n_cols - 1, dims[1] * dims[2] * n_cols,
                 dims[2] * n_cols, n_cols, -1)
        cls[r] = "F"
    ops = lambda group: [o for o in group if not (exact and o in APPROX)]   # noqa: E731
    n_ops = int(rng.integers(2, 16))
    must_reduce = int(rng.integers(n_ops))
    for i in range(n_ops):
        d = int(rng.integers(n_regs))
        kind = 0 if i == must_reduce else int(rng.integers(1, 7))
        if kind == 0 or (kind == 6 and pick("F") is None):
            src = pick("F")
            if src is None:
                src = pick("R")
                emit(isa.word0(O.BCAST_ROW, DType.F32, F_A_ROW, d, src))
                cls[d] = "F"
                src = d
            if d == src:   # a reduction into its own source register is unspecified
                d = (d + 1) % n_regs
            emit(isa.word0(rng.choice(isa.REDUCE_OPS), DType.F32, F_ROW, d, src))
            cls[d] = "R"
            continue
        if kind == 1:
            src = pick()
            row = cls[src] == "R"
            emit(isa.word0(rng.choice(ops(UNARY)), DType.F32, F_ROW | F_A_ROW if row else 0, d, src))
        elif kind in (2, 3):
            a, b = pick(), pick()
            ra, rb = cls[a] == "R", cls[b] == "R"
            row = ra and rb
            flags = F_ROW | F_A_ROW | F_B_ROW if row else (F_A_ROW if ra else 0) | (F_B_ROW if rb else 0)
            emit(isa.word0(rng.choice(ops(BINARY)), DType.F32, flags, d, a, b))
        elif kind == 4:
            src = pick()
            row = cls[src] == "R"
            imm = isa.imm_bits(rng.choice([0.0, 1.0, -1.0, 2.5, np.nan, np.inf, 1e30, -7.0]), DType.F32)
            emit(isa.word0(rng.choice(ops(BINARY)) + isa.IMM_DELTA, DType.F32, F_ROW | F_A_ROW if row else 0,
                           d, src, int(rng.integers(2))), imm)
        elif kind == 5:
            row = bool(rng.integers(2))
            emit(isa.word0(O.CONST, DType.F32, F_ROW if row else 0, d),
                 isa.imm_bits(float(rng.choice([0.0, -3.5, 1.0])), DType.F32))
        else:
            src = pick("R")
            if src is None:
                continue
            emit(isa.word0(O.BCAST_ROW, DType.F32, F_A_ROW, d, src))
            row = False
        cls[d] = "R" if row else "F"
    n_in = len(bufs)
    for k, r in enumerate(rng.permutation(sorted(cls))[: int(rng.integers(1, 4))]):
        if cls[int(r)] == "R":
            emit(isa.word0(O.STORE_ROW, DType.F32, 0, n_in + k, int(r)), 0, *row_view)
            bufs.append(-n_rows)
        else:
            emit(isa.word0(O.STORE, DType.F32, 0, n_in + k, int(r)), 0)
            bufs.append(-n)
    emit(isa.word0(O.END))
    return assemble(words, n_instr, bufs, n_regs, dims)


def run_table(r: rows.Rows, bufs: list) -> None:
    """The row table read with numpy, every row at once: row steps on one value per row, passes on the
    whole space (loads, then arithmetic and stores on slots), reductions in the ISA's order (pyvm's)."""
    w = r.words.astype(np.uint64).reshape(-1, chain.STEP_WORDS).tolist()
    assert len(w) == r.n_steps <= rows.ROWS_MAX_STEPS
    nr, nc = r.rows, r.cols
    row = np.arange(nr)
    d2, d1, d0 = row % r.d2, row // r.d2 % r.d1, row // r.d2 // r.d1
    col = np.arange(nc)
    rowv: dict = {}

    def fields(k):
        head, imm, off, *strides = w[k]
        kind, op, d, a, b, buf, flags = ((head >> (8 * i)) & 0xFF for i in range(7))
        s = [isa.s64(x) for x in strides]
        value = np.float32(np.uint32(imm).view(np.float32))
        return kind, op, d, a, b, buf, flags, value, isa.s64(off), s, imm

    k = 0
    while k < len(w):
        kind, op, dest, src, _b, _buf, hflags, _v, n_main, _s, n_loads = fields(k)
        if kind == rows.K_ROWS:
            for j in range(k + 1, k + 1 + n_loads):   # n_loads: the header's count of row steps
                kind, op, d, a, b, buf, flags, value, off, s, _ = fields(j)
                assert d < r.n_rowv <= rows.ROWS_MAX_ROWV
                at = off + d0 * s[0] + d1 * s[1] + d2 * s[2]
                if kind == rows.K_ROW_LOAD:
                    rowv[d] = bufs[buf][at]
                elif kind == rows.K_ROW_STORE:
                    bufs[buf][at] = rowv[a]
                elif kind == chain.K_CONST:
                    rowv[d] = np.full(nr, value, np.float32)
                else:
                    x, y = rowv[a], rowv[b] if kind == chain.K_BINARY else np.full(nr, value, np.float32)
                    if kind == chain.K_BINARY_IMM and flags & chain.REV:
                        x, y = y, x
                    rowv[d] = _apply(op, x, y if kind != chain.K_UNARY else None)
            k += 1 + n_loads
            continue
        assert kind == rows.K_PASS
        slots: dict = {}

        def operand(a, is_row):
            return np.repeat(rowv[a], nc) if is_row else slots[a]

        flat_row, flat_col = np.repeat(row, nc), np.tile(col, nr)
        for j in range(k + 1, k + 1 + n_loads + n_main):
            kind, op, d, a, b, buf, flags, value, off, s, _ = fields(j)
            if j <= k + n_loads:
                assert kind in (chain.K_LOAD, chain.K_VIEW) and d < r.n_slots <= rows.ROWS_MAX_SLOTS
                slots[d] = bufs[buf][off + flat_row * nc + flat_col] if kind == chain.K_LOAD else \
                    bufs[buf][off + np.repeat(d0 * s[0] + d1 * s[1] + d2 * s[2], nc) + flat_col * s[3]]
            elif kind == chain.K_STORE:
                bufs[buf][off + flat_row * nc + flat_col] = operand(a, flags & chain.A_UNI)
            else:
                x = operand(a, flags & chain.A_UNI)
                y = operand(b, flags & chain.B_UNI) if kind == chain.K_BINARY else np.full(nr * nc, value)
                if kind == chain.K_BINARY_IMM and flags & chain.REV:
                    x, y = y, x
                assert d < r.n_slots
                slots[d] = _apply(op, x, y if kind != chain.K_UNARY else None)
        if op := fields(k)[1]:
            with np.errstate(all="ignore"):   # products overflow to inf, as pyvm.run lets them
                rowv[dest] = pyvm._reduce(isa.Opcode(op), operand(src, hflags & chain.A_UNI).reshape(nr, nc),
                                          DType.F32)[:, 0]
        k += 1 + n_loads + n_main


@pytest.mark.parametrize("exact", [True, False])
def test_row_tables_compute_what_their_programs_do(exact):
    """exact=False adds exp, log, tanh, sigmoid, pow and erf (numpy's results can differ in the last bit
    between array lengths: there within a relative 1e-5)."""
    rng = np.random.default_rng(31 if exact else 32)
    for i in range(200):
        code = row_program(rng, exact=exact, n_regs=12 if i % 2 else 6)
        r = rows.steps(code)
        assert r is not None
        table_matches_numpy_vm(code, lambda bufs: run_table(r, bufs), rng, exact, rtol=1e-5,
                               label=f"program {i}, ")


def _encoded(op: str, shape: tuple) -> np.ndarray:
    """The GPU encoding of one LayerNormalization / Softmax / ReduceSum node over `shape` (float32)."""
    from dvm_runtime import encoder
    from dvm_runtime.gpu import backend  # noqa: F401 - registers the GPU tiling
    from framework.ir import Graph, Node, TensorType, Value
    from graph_kernel.expand import expand_composites
    x = Value(TensorType(np.float32, shape))
    if op == "LayerNormalization":
        g, b = Value(TensorType(np.float32, shape[-1:])), Value(TensorType(np.float32, shape[-1:]))
        y = Value(TensorType(np.float32, shape))
        body = Graph((x, g, b), (y,), (Node(op, (x, g, b), (y,), {"axis": -1, "epsilon": 1e-5}, "", 17),))
        shapes = [shape, shape[-1:], shape[-1:]]
    else:
        y = Value(TensorType(np.float32, shape[:-1] if op == "ReduceSum" else shape))
        attrs = {"axes": [len(shape) - 1], "keepdims": 0} if op == "ReduceSum" else {"axis": -1}
        body, shapes = Graph((x,), (y,), (Node(op, (x,), (y,), attrs, "", 13),)), [shape]
    return encoder.encode(expand_composites(body), shapes, [np.float32] * len(shapes), target="gpu").code


@pytest.mark.parametrize("op", ["LayerNormalization", "Softmax", "ReduceSum"])
def test_encoded_row_programs_qualify(op):
    """The encoder's LayerNorm, softmax and reduction programs run on the row kernel; their tables match the
    numpy VM (short rows, one chunk, many chunks, a partial last chunk)."""
    rng = np.random.default_rng(3)
    for shape in [(5, 1), (3, 7), (4, 128), (2, 3, 129), (3, 1000)]:
        code = _encoded(op, shape)
        r = rows.steps(code)
        assert r is not None, (op, shape)
        # a power of two of threads per row: enough for every half chunk (or all the block's), no more
        assert r.group & (r.group - 1) == 0 and r.group * r.rows_per_block == rows.ROWS_NT
        assert min(rows.ROWS_NT, 2 * r.nch) <= r.group < 4 * r.nch
        bufs = buffers(code, rng)
        want = [b.copy() for b in bufs]
        pyvm.run(code, want)
        run_table(r, bufs)
        for got, ref in zip(bufs, want):
            np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-30, equal_nan=True,
                                       err_msg=f"{op} {shape}")


def test_programs_without_reductions_or_with_other_ops_are_not_rows():
    """Programs without a reduction are the chain kernel's; programs reading a buffer they write, or with
    an op this kernel lacks (a compare), stay tiled."""
    from tests.dvm_runtime.test_gpu_chain import elementwise_program
    rng = np.random.default_rng(4)
    assert rows.steps(elementwise_program(rng, exact=True)) is None
    n = 16
    load_reduce = [isa.word0(O.LOAD, DType.F32, 0, 0, 0), 0, isa.word0(O.RSUM, DType.F32, F_ROW, 1, 0)]
    store_into_input = load_reduce + [isa.word0(O.BCAST_ROW, DType.F32, F_A_ROW, 2, 1),
                                      isa.word0(O.STORE, DType.F32, 0, 0, 2), 0, isa.word0(O.END)]
    assert rows.steps(assemble(store_into_input, 5, [-n], 3, [1, 1, 1, n])) is None
    assert rows.steps(_compare_program()) is None
    fine = load_reduce + [isa.word0(O.STORE_ROW, DType.F32, 0, 1, 1), 0, 0, 0, 0, 0, isa.word0(O.END)]
    assert rows.steps(assemble(fine, 4, [n, -1], 2, [1, 1, 1, n])) is not None


def test_row_constants_match_the_kernel_source():
    """rows.py launches blocks of the threads cuda_rows.cu compiles for, and writes its step kinds."""
    import re
    from pathlib import Path
    src = (Path(rows.__file__).parent / "cuda_rows.cu").read_text()
    (value,) = re.findall(r"^#define ROWS_NT (\d+)$", src, re.M)
    assert int(value) == rows.ROWS_NT
    kinds = re.search(r"enum \{ K_ROW_LOAD = (\d+), K_ROW_STORE, K_ROWS, K_PASS \};", src)
    assert kinds and int(kinds.group(1)) == rows.K_ROW_LOAD == rows.K_PASS - 3


def _on_rows(vm, code, monkeypatch):
    """Prepare `code` for the row kernel whatever its rows' length (the VM takes it only for rows the tiled
    kernel cannot hold: here that kernel is told it holds none)."""
    with monkeypatch.context() as m:
        m.setattr(vm, "max_smem", 0)
        p = vm.prepare(code)
    assert p.kernel == "rows"
    return p


@needs_gpu
@pytest.mark.parametrize("exact", [True, False])
def test_row_kernel_matches_the_numpy_vm(exact, monkeypatch):
    """Exact ops: bit for bit as the numpy VM. With exp, log, tanh, erf, pow...: bit for bit as the tiled
    kernel (the same device functions; test_gpu.py checks those against the numpy VM), and close to the
    numpy VM where the tiled kernel cannot hold the rows."""
    import cupy
    from dvm_runtime.gpu import vm as gvm
    from tests.dvm_runtime.test_gpu import matches_numpy_vm
    rng = np.random.default_rng(41 if exact else 42)
    vm = gvm.get_vm()
    for i in range(200):
        code = row_program(rng, exact=exact, n_regs=12 if i % 2 else 6,
                           cols=int(rng.choice(COLS + (4096, 8192, 20000))) if i % 10 == 0 else None)
        bufs = buffers(code, rng)
        _on_rows(vm, code, monkeypatch)
        tiled_code = code.copy()   # prepared apart: the cache is by array identity
        try:
            tiled = vm.prepare(tiled_code).kernel == "tiled"
        except gvm.GpuLimitError:
            tiled = False
        if exact or not tiled:
            matches_numpy_vm(vm, code, bufs, exact)
            continue
        on_rows, on_tiles = [cupy.asarray(b) for b in bufs], [cupy.asarray(b) for b in bufs]
        vm.run(code, on_rows)
        vm.run(tiled_code, on_tiles)
        for k, (a, b) in enumerate(zip(on_rows, on_tiles)):
            np.testing.assert_array_equal(a.get(), b.get(), err_msg=f"program {i}, buffer {k}")


@needs_gpu
@pytest.mark.parametrize("op", ["LayerNormalization", "Softmax", "ReduceSum"])
def test_row_kernel_runs_encoded_programs(op, monkeypatch):
    """The encoder's programs on the row kernel against the numpy VM, rows up to 40000 long (exp in softmax:
    the device's and numpy's can differ in the last bit)."""
    import cupy
    from dvm_runtime.gpu import vm as gvm
    rng = np.random.default_rng(6)
    vm = gvm.get_vm()
    for shape in [(5, 1), (3, 7), (33, 128), (2, 3, 129), (7, 1000), (4, 8192), (3, 40000)]:
        code = _encoded(op, shape)
        _on_rows(vm, code, monkeypatch)
        bufs = buffers(code, rng)
        want = [b.copy() for b in bufs]
        pyvm.run(code, want)
        got = [cupy.asarray(b) for b in bufs]
        vm.run(code, got)
        for k, (a, b) in enumerate(zip(got, want)):
            np.testing.assert_allclose(a.get(), b, rtol=2e-6, atol=1e-30, equal_nan=True,
                                       err_msg=f"{op} {shape} buffer {k}")


@needs_gpu
def test_a_vocabulary_softmax_runs_on_the_gpu():
    """Softmax and LayerNorm over rows of 32000 (more than a block's shared memory holds as tiles) run on the
    device, not on the host, and match the CPU session."""
    import cupy
    import framework
    from benchmarks import ops
    for name in ("softmax", "layer_norm"):
        chain_ = ops.CHAINS[name]
        feed = chain_.inputs(6, 32000, np.random.default_rng(0))
        model = ops.build_model(chain_, feed)
        gpu_sess = framework.InferenceSession(model, jit_level="O1", device="gpu")
        got = gpu_sess.run(None, {k: cupy.asarray(v) for k, v in feed.items()})
        assert not gpu_sess.stats["fallbacks"], gpu_sess.stats["fallbacks"]
        want = framework.InferenceSession(model, jit_level="O1").run(None, feed)
        for a, b in zip(got, want):
            np.testing.assert_allclose(cupy.asnumpy(a), b, rtol=1e-5, atol=1e-7)


def _compare_program() -> np.ndarray:
    """A valid program with a reduction and a compare (an op the row kernel lacks)."""
    n = 16
    words = [isa.word0(O.LOAD, DType.F32, 0, 0, 0), 0, isa.word0(O.RSUM, DType.F32, F_ROW, 1, 0),
             isa.word0(O.BCAST_ROW, DType.F32, F_A_ROW, 2, 1), isa.word0(O.LT, DType.F32, 0, 3, 0, 2),
             isa.word0(O.STORE_ROW, DType.F32, 0, 1, 1), 0, 0, 0, 0, 0, isa.word0(O.END)]
    return assemble(words, 6, [n, -1], 4, [1, 1, 1, n])


def test_rows_the_tiled_kernel_cannot_hold_go_to_the_row_kernel():
    """Prepared (vm.py) keeps programs on the tiled kernel while a block's shared memory holds their tiles;
    beyond that a row program runs on the row kernel, and anything else is refused (GpuLimitError: the
    backend runs that shape on the host). Checked with a stand-in VM: no device needed."""
    from types import SimpleNamespace

    from dvm_runtime.gpu import vm as gvm
    code = _encoded("LayerNormalization", (300, 1000))
    r = rows.steps(code)
    need = gvm.rows_shared_bytes(r)
    arena = SimpleNamespace(put=lambda words: 0, generation=0)
    stand_in = dict(n_sm=2, arena=arena, chain_smem=100 << 10, per_sm=lambda kernel, smem: 4)
    tiled = gvm.Prepared(SimpleNamespace(max_smem=200 << 10, rows_smem=need, **stand_in), code)
    assert tiled.kernel == "tiled" and tiled.rows is None and tiled.grid >= 1
    on_rows = gvm.Prepared(SimpleNamespace(max_smem=1 << 10, rows_smem=need, **stand_in), code)
    assert on_rows.kernel == "rows" and on_rows.smem == need
    assert on_rows.grid == min(-(-300 // r.rows_per_block), 2 * 4)
    with pytest.raises(gvm.GpuLimitError, match=f"the row kernel would need {need} bytes"):
        gvm.Prepared(SimpleNamespace(max_smem=1 << 10, rows_smem=need - 1, **stand_in), code)
    with pytest.raises(gvm.GpuLimitError, match="row kernel does not run all of its ops"):
        gvm.Prepared(SimpleNamespace(max_smem=16, rows_smem=need, **stand_in), _compare_program())
    long_rows = _encoded("Softmax", (2, 40000))   # the GPU tiling gives one 40000-element row per tile
    assert rows.steps(long_rows) is not None and int(long_rows[isa.H["tile_cols"]]) == 40000
