"""The CUDA chain kernel's programs (dvm_runtime/gpu/chain.py). Everywhere: which programs qualify, and that
each step table means what its program means (a numpy reading of the table against the numpy VM). With a
CUDA device: the chain kernel runs them, bit for bit as the numpy VM where the ops are exact."""
import numpy as np
import pytest

from dvm_runtime import gpu, isa, pyvm
from dvm_runtime.gpu import chain
from dvm_runtime.isa import DType, Opcode as O, Role
from tests.dvm_runtime.test_fuzz import APPROX, M64

needs_gpu = pytest.mark.skipif(not gpu.available(), reason="no CUDA device / CuPy")
UNARY = sorted(chain.UNARY)
BINARY = sorted(chain.BINARY)


def elementwise_program(rng, exact: bool, n_regs: int = 6) -> np.ndarray:
    """A random float32 elementwise program: contiguous, broadcast (scalar or last-axis) and reversed loads,
    unary and binary ops (register or immediate operands, either side), CONST, one to three STOREs."""
    dims = [int(rng.integers(1, hi)) for hi in (3, 4, 5, 70)]
    rows, cols = dims[0] * dims[1] * dims[2], dims[3]
    n = rows * cols
    words, n_instr, bufs, written = [], 0, [], set()

    def emit(*w):
        nonlocal n_instr
        words.extend(int(x) & M64 for x in w)
        n_instr += 1

    for k in range(int(rng.integers(1, 4))):
        r = int(rng.integers(n_regs))
        kind = rng.integers(4)
        if kind == 0:
            bufs.append(n)
            emit(isa.word0(O.LOAD, DType.F32, 0, r, k), 0)
        elif kind == 1:   # one value for every element
            bufs.append(3)
            emit(isa.word0(O.LOAD_VIEW, DType.F32, 0, r, k), 2, 0, 0, 0, 0)
        elif kind == 2:   # one row for every row
            bufs.append(cols)
            emit(isa.word0(O.LOAD_VIEW, DType.F32, 0, r, k), 0, 0, 0, 0, 1)
        else:             # the last axis read backwards
            bufs.append(n)
            emit(isa.word0(O.LOAD_VIEW, DType.F32, 0, r, k), cols - 1, dims[1] * dims[2] * cols,
                 dims[2] * cols, cols, -1)
        written.add(r)
    for _ in range(int(rng.integers(1, 14))):
        d, src = int(rng.integers(n_regs)), int(rng.choice(sorted(written)))
        kind = rng.integers(5)
        if kind == 0:
            op = rng.choice([o for o in UNARY if not (exact and o in APPROX)])
            emit(isa.word0(op, DType.F32, 0, d, src))
        elif kind in (1, 2):
            op = rng.choice([o for o in BINARY if not (exact and o in APPROX)])
            emit(isa.word0(op, DType.F32, 0, d, src, int(rng.choice(sorted(written)))))
        elif kind == 3:
            op = rng.choice([o for o in BINARY if not (exact and o in APPROX)])
            imm = isa.imm_bits(rng.choice([0.0, 1.0, -1.0, 2.5, np.nan, np.inf, 1e30, -7.0]), DType.F32)
            emit(isa.word0(op + isa.IMM_DELTA, DType.F32, 0, d, src, int(rng.integers(2))), imm)
        else:
            emit(isa.word0(O.CONST, DType.F32, 0, d), isa.imm_bits(float(rng.choice([0.0, -3.5, 1.0])), DType.F32))
        written.add(d)
    n_in = len(bufs)
    for k, r in enumerate(rng.permutation(sorted(written))[: int(rng.integers(1, 4))]):
        emit(isa.word0(O.STORE, DType.F32, 0, n_in + k, int(r)), 0)
        bufs.append(-n)
    emit(isa.word0(O.END))
    return assemble(words, n_instr, bufs, n_regs, dims)


def assemble(words: list, n_instr: int, bufs: list, n_regs: int, dims: list) -> np.ndarray:
    """A float32 program of these instruction words (END included); bufs: element counts, < 0 for outputs."""
    table = [w for m in bufs for w in (int(DType.F32) | int(Role.OUTPUT if m < 0 else Role.INPUT) << 8, abs(m))]
    head = [0] * isa.HEADER_WORDS
    for key, v in {"magic": isa.MAGIC, "version": isa.VERSION, "n_instr": n_instr, "n_buffers": len(bufs),
                   "n_regs": n_regs, "tile_rows": 1, "tile_cols": dims[3], "d0": dims[0], "d1": dims[1],
                   "d2": dims[2], "d3": dims[3]}.items():
        head[isa.H[key]] = v
    head[isa.H["n_words"]] = len(head) + len(table) + len(words)
    return np.array(head + table + words, np.uint64)


def buffers(code, rng) -> list:
    nb = int(code[isa.H["n_buffers"]])
    sizes = [int(code[isa.CODE_START + 2 * i + 1]) for i in range(nb)]
    out = []
    for m in sizes:
        x = (rng.standard_normal(m) * 3).astype(np.float32)
        x[rng.random(m) < 0.05] = np.nan
        out.append(x)
    return out


def run_table(c: chain.Chain, bufs: list) -> None:
    """The step table read with numpy, all elements of the space at once (what the kernel does per group):
    uniform steps on one value each, then the loads into their slots, then the main steps."""
    w = c.words.astype(np.uint64).reshape(-1, chain.STEP_WORDS).tolist()
    assert len(w) == c.n_uni + c.n_loads + c.n_main
    e = np.arange(c.total)
    col, row = e % c.cols, e // c.cols
    d2, d1, d0 = row % c.d2, row // c.d2 % c.d1, row // c.d2 // c.d1
    uni, slots = {}, {}
    for k, (head, imm, off, *strides) in enumerate(w):
        kind, op, d, a, b, buf, flags = ((head >> (8 * i)) & 0xFF for i in range(7))
        off = off - (1 << 64) if off >= 1 << 63 else off
        s = [x - (1 << 64) if x >= 1 << 63 else x for x in strides]
        value = np.float32(np.uint32(imm).view(np.float32))
        part = "uni" if k < c.n_uni else "load" if k < c.n_uni + c.n_loads else "main"
        n = 1 if part == "uni" else c.total
        if part == "uni":
            assert d < chain.CHAIN_MAX_UNI and kind not in (chain.K_LOAD, chain.K_VIEW, chain.K_STORE)
        elif kind not in (chain.K_STORE,):
            assert d < c.n_slots <= chain.CHAIN_MAX_SLOTS
        if part == "load":
            assert kind in (chain.K_LOAD, chain.K_VIEW)
            slots[d] = bufs[buf][off + e] if kind == chain.K_LOAD else \
                bufs[buf][off + d0 * s[0] + d1 * s[1] + d2 * s[2] + col * s[3]]
            continue
        dest = uni if part == "uni" else slots

        def operand(r, is_uniform):
            return np.full(n, uni[r], np.float32) if is_uniform or part == "uni" else slots[r]

        if kind == chain.K_SCALAR:
            dest[d] = bufs[buf][off]
        elif kind == chain.K_CONST:
            dest[d] = value
        elif kind == chain.K_STORE:
            bufs[buf][off + e] = operand(a, flags & chain.A_UNI)
        else:   # compute: the numpy VM's own arithmetic, one instruction on the whole space
            x = operand(a, flags & chain.A_UNI)
            y = operand(b, flags & chain.B_UNI) if kind == chain.K_BINARY else np.full(n, value)
            if kind == chain.K_BINARY_IMM and flags & chain.REV:
                x, y = y, x
            out = _apply(op, x, y if kind != chain.K_UNARY else None)
            dest[d] = out[0] if part == "uni" else out


def _apply(op: int, x, y):
    """One instruction through pyvm on a one-row space: the numpy VM is the reference for every op."""
    n = len(x)
    words = [isa.word0(O.LOAD, DType.F32, 0, 0, 0), 0]
    if y is None:
        words += [isa.word0(op, DType.F32, 0, 2, 0)]
    else:
        words += [isa.word0(O.LOAD, DType.F32, 0, 1, 1), 0, isa.word0(op, DType.F32, 0, 2, 0, 1)]
    words += [isa.word0(O.STORE, DType.F32, 0, 2, 2), 0, isa.word0(O.END)]
    roles = [Role.INPUT, Role.INPUT, Role.OUTPUT]
    table = [w for r in roles for w in (int(DType.F32) | int(r) << 8, n)]
    head = [0] * isa.HEADER_WORDS
    for key, v in {"magic": isa.MAGIC, "version": isa.VERSION, "n_instr": (4 if y is None else 5),
                   "n_buffers": 3, "n_regs": 3, "tile_rows": 1, "tile_cols": n, "d0": 1, "d1": 1, "d2": 1,
                   "d3": n}.items():
        head[isa.H[key]] = v
    head[isa.H["n_words"]] = len(head) + len(table) + len(words)
    out = np.empty(n, np.float32)
    pyvm.run(np.array(head + table + words, np.uint64),
             [np.ascontiguousarray(x, np.float32), np.ascontiguousarray(x if y is None else y, np.float32), out])
    return out


def test_elementwise_float_programs_are_chains_and_others_are_not():
    from dvm_runtime import encoder
    from dvm_runtime.gpu import backend  # noqa: F401 - registers the GPU tiling
    from framework.ir import Graph, Node, TensorType, Value

    def body(op, shape=(64, 96)):
        x = Value(TensorType(np.float32, shape))
        y = Value(TensorType(np.float32, shape[:1] if op.startswith("Reduce") else shape))
        attrs = {"axes": [1], "keepdims": 0} if op.startswith("Reduce") else {}
        return Graph((x,), (y,), (Node(op, (x,), (y,), attrs, "", 13),)), shape

    for op, want in (("Tanh", True), ("Relu", True), ("ReduceMax", False), ("IsNaN", False)):
        g, shape = body(op)
        prog = encoder.encode(g, [shape], [np.float32], target="gpu")
        assert (chain.steps(prog.code) is not None) is want, op
    g, shape = body("Exp")
    prog = encoder.encode(g, [shape], [np.float16], target="gpu")   # float16 buffers: the tiled kernel
    assert chain.steps(prog.code) is None


@pytest.mark.parametrize("exact", [True, False])
def test_step_tables_compute_what_their_programs_do(exact):
    """exact=False adds exp, log, tanh, sigmoid, pow and erf, whose numpy results can differ in the last bit
    between array lengths (SIMD body or scalar tail): there within 2 ulps."""
    rng = np.random.default_rng(5 if exact else 7)
    for _ in range(150):
        code = elementwise_program(rng, exact=exact)
        c = chain.steps(code)
        assert c is not None
        table_matches_numpy_vm(code, lambda bufs: run_table(c, bufs), rng, exact, rtol=3e-7)


def table_matches_numpy_vm(code, read_table, rng, exact: bool, rtol: float, label: str = "") -> None:
    """Random buffers through the numpy VM and through `read_table(buffers)` (a numpy reading of a
    kernel's table); the results agree bit for bit where `exact`, else within `rtol`."""
    bufs = buffers(code, rng)
    want = [b.copy() for b in bufs]
    pyvm.run(code, want)
    read_table(bufs)
    for k, (got, ref) in enumerate(zip(bufs, want)):
        if exact:
            np.testing.assert_array_equal(got, ref, err_msg=f"{label}buffer {k}")
        else:
            np.testing.assert_allclose(got, ref, rtol=rtol, atol=1e-30, equal_nan=True,
                                       err_msg=f"{label}buffer {k}")


def test_chain_constants_match_the_kernel_source():
    """chain.py sizes step tables, register limits and launches by the constants cuda_chain.cu compiles with."""
    import re
    from pathlib import Path
    src = (Path(chain.__file__).parent / "cuda_chain.cu").read_text()
    for name in ("CHAIN_MAX_SLOTS", "CHAIN_MAX_UNI", "CHAIN_MAX_STEPS", "CHAIN_W", "CHAIN_NT"):
        (value,) = re.findall(rf"^#define {name} (\d+)$", src, re.M)
        assert int(value) == getattr(chain, name), name


def _loads_then_stores(n_live: int, stored: list[int] | None = None) -> np.ndarray:
    """n_live inputs loaded, then each stored (into buffer `stored[k]` where given, else a new output)."""
    n, words = 40, []
    for k in range(n_live):
        words += [isa.word0(O.LOAD, DType.F32, 0, k, k), 0]
    outs = stored or [n_live + k for k in range(n_live)]
    for k, b in enumerate(outs):
        words += [isa.word0(O.STORE, DType.F32, 0, b, k), 0]
    words.append(isa.word0(O.END))
    bufs = [n] * n_live + [-n] * (max(outs) + 1 - n_live)
    return assemble(words, 2 * n_live + 1, bufs, n_live, [1, 1, 1, n])


def test_programs_beyond_the_chain_limits_stay_tiled():
    """Slots are values live at once (loads are live from the start), not registers; a program storing into
    a buffer it reads cannot have its loads moved ahead and stays tiled."""
    c = chain.steps(_loads_then_stores(chain.CHAIN_MAX_SLOTS))
    assert c is not None and c.n_slots == chain.CHAIN_MAX_SLOTS and c.n_loads == chain.CHAIN_MAX_SLOTS
    assert chain.steps(_loads_then_stores(chain.CHAIN_MAX_SLOTS + 1)) is None
    assert chain.steps(_loads_then_stores(2, stored=[2, 0])) is None


def test_slots_are_reused_once_values_die():
    """A long chain of ops on one loaded value needs one slot however many registers the program names: a
    step reads its operands before it writes, so its result takes the slot of the operand that dies."""
    words, n = [isa.word0(O.LOAD, DType.F32, 0, 0, 0), 0], 16
    for k in range(1, 20):
        words.append(isa.word0(O.ADD, DType.F32, 0, k % 8, (k - 1) % 8, (k - 1) % 8))
    words += [isa.word0(O.STORE, DType.F32, 0, 1, 19 % 8), 0, isa.word0(O.END)]
    c = chain.steps(assemble(words, 22, [n, -n], 8, [1, 1, 1, n]))
    assert c is not None and c.n_slots == 1 and (c.n_uni, c.n_loads, c.n_main) == (0, 1, 20)
    x = np.arange(n, dtype=np.float32)
    bufs = [x, np.zeros(n, np.float32)]
    run_table(c, bufs)
    np.testing.assert_array_equal(bufs[1], x * 2.0 ** 19)


@needs_gpu
@pytest.mark.parametrize("exact", [True, False])
def test_chain_kernel_matches_the_numpy_vm(exact, monkeypatch):
    """Exact ops: bit for bit as the numpy VM. With exp, log, tanh, erf, pow...: bit for bit as the tiled
    kernel (the same device functions of cuda_ops.cuh, which test_gpu.py checks against the numpy VM); random
    chains of up to 13 such ops amplify one-ulp differences past any fixed tolerance against numpy."""
    import cupy
    from dvm_runtime.gpu import vm as gvm
    from tests.dvm_runtime.test_gpu import matches_numpy_vm
    rng = np.random.default_rng(21 if exact else 22)
    vm = gvm.get_vm()
    for i in range(200):
        code = elementwise_program(rng, exact=exact, n_regs=12 if i % 2 else 6)
        bufs = buffers(code, rng)
        assert vm.prepare(code).chain is not None
        if exact:
            matches_numpy_vm(vm, code, bufs, exact)
            continue
        tiled_code = code.copy()   # prepared apart: the cache is by array identity
        with monkeypatch.context() as m:   # the same program on the tiled kernel
            m.setattr(chain, "steps", lambda code: None)
            assert vm.prepare(tiled_code).chain is None
        on_chain, on_tiles = [cupy.asarray(b) for b in bufs], [cupy.asarray(b) for b in bufs]
        vm.run(code, on_chain)
        vm.run(tiled_code, on_tiles)
        for k, (a, b) in enumerate(zip(on_chain, on_tiles)):
            np.testing.assert_array_equal(a.get(), b.get(), err_msg=f"program {i}, buffer {k}")


def test_a_chain_beyond_the_gpus_shared_memory_runs_tiled():
    """Prepared (vm.py) sizes a chain block's shared memory from its steps and slots; where that exceeds what
    the GPU allows a block, the program goes to the tiled kernel instead (checked with a stand-in VM: no
    device needed)."""
    from types import SimpleNamespace

    from dvm_runtime.gpu import vm as gvm
    code = _loads_then_stores(8)
    c = chain.steps(code)
    need = gvm.chain_shared_bytes(c.n_steps, c.n_slots)
    arena = SimpleNamespace(put=lambda words: 0, generation=0)
    stand_in = dict(n_sm=2, arena=arena, max_smem=200 << 10, per_sm=lambda kernel, smem: 4)
    fits = gvm.Prepared(SimpleNamespace(chain_smem=need, **stand_in), code)
    assert fits.chain is not None and fits.kernel == "chain" and fits.smem == need and fits.grid == 1
    tight = gvm.Prepared(SimpleNamespace(chain_smem=need - 1, **stand_in), code)
    assert tight.chain is None and tight.kernel == "tiled" and tight.grid >= 1
