"""The GPU DVM. Everywhere: the GPU tiling (legal tiles, programs the CPU VM runs identically) and the clear
errors without a GPU. With a CUDA device and CuPy: the CUDA VM against the CPU VM on every cluster of the
bundled models, on random graphs and on random programs, and device arrays through InferenceSession."""
import dataclasses

import numpy as np
import pytest

import framework
import onnx_models
from dvm_runtime import cvm, encoder, gpu, isa, pyvm
from dvm_runtime.backend import DvmBackend, _trial
from dvm_runtime.gpu import backend as gb, vm as gvm
from framework.backends import NUMPY
from framework.compile import run_passes
from framework.errors import ContextError, InputTypeError
from framework.executor import GraphExecutor
from framework.onnx_frontend import import_model

HAS_GPU = gpu.available()
needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="no CUDA device / CuPy")
MODELS = ("tiny_gpt", "mobilenet", "mlp")
H100_SMEM = 227 * 1024


def _cpu_run(code, bufs):
    (cvm.run if cvm.available() else pyvm.run)(code, bufs)


@pytest.mark.parametrize("reduces", [False, True])
def test_gpu_tiling_is_legal_and_fits_shared_memory(reduces):
    for rows in (1, 3, 64, 1000, 1 << 20):
        for cols in (1, 5, 64, 1000, 4096, 40000):
            for n_regs in (1, 4, 9, 30):
                tr, tc = gb.gpu_tiling(rows, cols, n_regs, reduces)
                assert 1 <= tc <= cols and 1 <= tr <= rows and tr * tc <= isa.MAX_TILE_ELEMS
                assert tr == 1 or tc == cols
                assert not reduces or tc == cols
                if reduces and cols * n_regs * 4 > 200 * 1024:   # rows for the row kernel (vm.Prepared)
                    assert tr == 1
                    continue
                assert gvm.shared_bytes(200, 40, 8, tr, tc, n_regs, 4) <= H100_SMEM


@pytest.mark.parametrize("model", MODELS)
def test_gpu_tiled_programs_compute_what_cpu_tiled_ones_do(model):
    """The same cluster encoded with both tilings gives the same bytes on the CPU VM (results never depend
    on the tiling), so only the interpreter differs between the GPU and the CPU."""
    g = run_passes(import_model(onnx_models.build(model)), "O1")
    rng = np.random.default_rng(0)
    checked = 0
    for n in (n for n in g.nodes if n.op == "Fused"):
        body = n.attrs["body"]
        shapes, dtypes, values = _trial(body)
        ours = encoder.encode(body, shapes, dtypes, values, target="gpu")
        ref = encoder.encode(body, shapes, dtypes, values)
        assert ours.code[isa.H["n_instr"]] == ref.code[isa.H["n_instr"]]
        if ours.host:  # its cuBLAS host kernels need a GPU: run the CPU's, the VM programs are what differ
            ours = dataclasses.replace(ours, host=ref.host)
        ins = [rng.standard_normal(s).astype(d) if np.dtype(d).kind == "f" else np.zeros(s, d)
               for s, d in zip(shapes, dtypes)]
        for i, v in values.items():
            ins[i] = v
        a, b = ours.run(ins, _cpu_run), ref.run(ins, _cpu_run)
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
        checked += 1
    assert checked > 0


def test_transpose_programs_match_numpy_on_the_cpu_vm():
    """Transposes on the GPU are DVM programs; the CPU VM runs the very same bytes."""
    from dvm_runtime.gpu.device_ops import transpose_program
    rng = np.random.default_rng(5)
    for _ in range(40):
        rank = int(rng.integers(1, 5))
        shape = tuple(int(d) for d in rng.integers(1, 7, rank))
        perm = tuple(int(p) for p in rng.permutation(rank))
        x = rng.standard_normal(shape).astype(np.float32)
        code = transpose_program(shape, perm, x.dtype, gb.gpu_tiling)
        out = np.empty(x.size, np.float32)
        _cpu_run(code, [x.reshape(-1), out])
        np.testing.assert_array_equal(out.reshape([shape[p] for p in perm]), np.transpose(x, perm))
    assert transpose_program((2,) * 5, tuple(range(5)), np.float32, gb.gpu_tiling) is None


def test_kernel_source_embeds_the_isa_header():
    src = gvm.kernel_source()
    for op in (isa.Opcode.ADD, isa.Opcode.RSUM, isa.Opcode.SELECT):
        assert f"DVM_OP_{op.name} = {int(op)}" in src
    assert "static __constant__ const uint8_t DVM_OPCODE_WORDS" in src and "#include" not in src


def test_library_prefetch_asks_for_mapped_files_only():
    """Setup asks the OS to read cuBLAS's mapped libraries in; the scan is plain /proc reading, tested here
    on libraries this process has mapped (the VM extension and libc)."""
    asked = gb._prefetch_libraries(("_cvm", "libc.so"))
    assert any("_cvm" in p for p in asked) and any("libc.so" in p for p in asked)
    assert all(p.startswith("/") for p in asked)
    assert gb._prefetch_libraries(("no-library-is-called-this",)) == []


def test_unknown_device_is_a_context_error():
    with pytest.raises(ContextError, match="device must be one of"):
        framework.set_context(device="tpu")
    with pytest.raises(ContextError, match="device must be one of"):
        framework.InferenceSession(onnx_models.build("mlp"), device="npu")


@pytest.mark.skipif(HAS_GPU, reason="a GPU is present")
def test_gpu_without_a_device_says_why():
    with pytest.raises(ContextError, match="no CUDA device"):
        framework.set_context(device="gpu")
    with pytest.raises(ContextError, match="no CUDA device"):
        framework.InferenceSession(onnx_models.build("mlp"), jit_level="O1", device="gpu")
    assert framework.context.get_context("device") == "cpu"


# ---- on the GPU ----------------------------------------------------------------------------------------

def _assert_close(got, want, what):
    got = np.asarray(gb.to_host(got))
    assert got.shape == want.shape and got.dtype == want.dtype, what
    if want.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6, equal_nan=True, err_msg=what)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


def _feed(model, seq=7):
    rng = np.random.default_rng(1)
    if model == "tiny_gpt":
        return {"ids": rng.integers(0, 256, (2, seq), dtype=np.int64)}
    sess = framework.InferenceSession(onnx_models.build(model))
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 3 for d in inp.shape]
    return {inp.name: rng.standard_normal(shape).astype(np.float32)}


@needs_gpu
@pytest.mark.parametrize("model", MODELS)
def test_every_cluster_of_the_bundled_models_matches_the_cpu_vm(model):
    g = run_passes(import_model(onnx_models.build(model)), "O1")
    captured = []

    class Recording(DvmBackend):  # the CPU VM's arguments and results of every cluster
        def compile(self, node, run_graph=None):
            kernel = super().compile(node, run_graph)

            def run(*args):
                outs = kernel(*args)
                captured.append((node, list(args), outs))
                return outs
            return run
    ex = GraphExecutor(g, (Recording(), NUMPY))
    feed = _feed(model)
    ex.run([feed[v.name] for v in g.inputs])
    gpu_be = gb.GpuDvmBackend()
    fused = [n for n in g.nodes if n.op == "Fused"]
    assert len(captured) == len(fused) > 0
    for node, args, outs in captured:
        assert gpu_be.supports(node), node.name
        got = gpu_be.compile(node)(*args)
        for k, (a, b) in enumerate(zip(got, outs, strict=True)):
            _assert_close(a, np.asarray(b), f"{model} {node.name} output {k}")
    assert not gpu_be.shape_fallbacks


@needs_gpu
def test_random_graphs_match_the_cpu_vm():
    from tests.graph_kernel.test_fusion_property import STEPS, build, feeds
    rng = np.random.default_rng(7)
    for case in range(60):
        recipe = [(str(rng.choice(STEPS)), int(rng.integers(51)), int(rng.integers(51)))
                  for _ in range(int(rng.integers(1, 11)))]
        symbolic, outs = bool(case % 2), int(rng.integers(3))
        g1 = run_passes(build(recipe, symbolic, outs), "O1")
        cpu = GraphExecutor(g1, (DvmBackend(), NUMPY))
        dev = GraphExecutor(g1, gb.gpu_backends("O1"))
        for args in feeds(symbolic):
            for k, (a, b) in enumerate(zip(dev.run(args), cpu.run(args), strict=True)):
                _assert_close(a, np.asarray(b), f"recipe {recipe} output {k}")


def _aliases(code) -> bool:
    """Whether an instruction writes a register it reads (results unspecified by the ISA)."""
    for ins in pyvm.validate(code)["instrs"]:
        form = isa.OPCODE_FORMS[ins[0]]
        n_src = {isa.Form.UNARY: 1, isa.Form.CAST: 1, isa.Form.BINARY: 2, isa.Form.BINARY_IMM: 1,
                 isa.Form.REDUCE: 1}.get(form, 0)
        srcs = (ins[4], ins[5], ins[6]) if form == isa.Form.SELECT else ins[4:4 + n_src]
        if ins[3] in srcs:
            return True
    return False


@needs_gpu
@pytest.mark.parametrize("exact", [True, False])
def test_random_programs_match_the_numpy_vm(exact):
    """exact=True leaves out exp/log/tanh/sigmoid/pow/erf (libm differences): then results are bit-identical."""
    from tests.dvm_runtime.test_fuzz import buffers_for, random_program
    rng = np.random.default_rng(11 if exact else 12)
    vm, ran = gvm.get_vm(), 0
    while ran < 300:
        code = random_program(rng, exact=exact)
        if _aliases(code):
            continue
        matches_numpy_vm(vm, code, buffers_for(code, rng), exact)
        ran += 1


def matches_numpy_vm(vm, code, bufs, exact: bool) -> None:
    """Run `code` on the numpy VM and on the CUDA `vm` from the same buffers; assert the results agree: bit
    for bit where `exact` (or not float), else within float32 (float16) rounding."""
    import cupy

    ref = [b.copy() for b in bufs]
    pyvm.run(code, ref)
    dev = [cupy.asarray(b) for b in bufs]
    vm.run(code, dev)
    for k, (a, b) in enumerate(zip(dev, ref)):
        a = a.get()
        if exact or b.dtype.kind != "f":
            np.testing.assert_array_equal(a, b, err_msg=f"buffer {k}")
        else:
            np.testing.assert_allclose(a, b, rtol=1e-3 if b.dtype == np.float16 else 2e-5, atol=1e-6,
                                       equal_nan=True, err_msg=f"buffer {k}")


@needs_gpu
@pytest.mark.parametrize("dt", [isa.DType.F32, isa.DType.I32, isa.DType.I64])
@pytest.mark.parametrize("op", isa.REDUCE_OPS)
def test_reductions_over_long_rows_give_the_cpu_vms_bits(op, dt):
    """Rows of one chunk and of many (isa.REDUCE_CHUNK): the GPU spreads a long row's chunks over its threads
    and must still combine them in the ISA's order."""
    import cupy

    from tests.dvm_runtime.test_cvm import IN, OUT, Asm
    rng = np.random.default_rng(4)
    for cols in (1, 9, 128, 129, 300, 1000, 8192):
        rows = 5
        if dt == isa.DType.F32 and op == isa.Opcode.RPROD:   # near 1: products neither overflow nor vanish
            x = 1 + rng.standard_normal(rows * cols).astype(np.float32) / 64
        elif dt == isa.DType.F32:
            x = (rng.standard_normal(rows * cols) * 10.0 ** (np.arange(rows * cols) % 7)).astype(np.float32)
            if op in (isa.Opcode.RMAX, isa.Opcode.RMIN) and cols > 8:
                x[3], x[cols + 200 if cols > 200 else -1] = np.nan, -0.0
        else:
            x = rng.integers(-1000, 1000, rows * cols).astype(isa.NUMPY_DTYPE[dt])
        tr, tc = gb.gpu_tiling(rows, cols, 2, True)
        a = Asm([1, 1, rows, cols], (tr, tc), [(dt, IN, x.size), (dt, OUT, rows)])
        a.ins(isa.Opcode.LOAD, dt, 0, 0, 0).ins(op, dt, isa.F_ROW, 1, 0)
        code = a.ins(isa.Opcode.STORE_ROW, dt, 0, 1, 1, 0, 0, 0, 0, 1).code(n_regs=2)
        want = [x, np.zeros(rows, x.dtype)]
        _cpu_run(code, want)
        got = cupy.zeros(rows, x.dtype)
        gvm.get_vm().run(code, [cupy.asarray(x), got])
        np.testing.assert_array_equal(got.get(), want[1], err_msg=f"{cols} columns")


@needs_gpu
@pytest.mark.parametrize("dt", list(isa.DType))
def test_scalar_views_over_many_tiles_give_the_cpu_vms_bits(dt):
    """x + s over more tiles than the grid has blocks (each block runs several, the last tile is partial), s
    one element of an input read through a view with zero strides (a 0-d input, as Adam's hyper-parameters):
    the CPU VM's bits for every dtype."""
    import cupy

    from tests.dvm_runtime.test_cvm import Asm
    O, R = isa.Opcode, isa.Role
    n, cdt = 2048 * 1500 + 7, isa.COMPUTE[dt]
    a = Asm([1, 1, 1, n], (1, 2048), [(dt, R.OUTPUT, n), (dt, R.INPUT, n), (dt, R.INPUT, 5)])
    a.ins(O.LOAD, dt, 0, 0, 1, 0, 0).ins(O.LOAD_VIEW, dt, 0, 1, 2, 0, 3, 0, 0, 0, 0)
    if dt == isa.DType.BOOL:
        a.ins(O.STORE, dt, 0, 0, 1, 0, 0)   # the scalar broadcast
    else:
        a.ins(O.ADD, cdt, 0, 2, 0, 1).ins(O.STORE, dt, 0, 0, 2, 0, 0)
    code = a.code(n_regs=3)
    rng = np.random.default_rng(int(dt))
    x = (rng.standard_normal(n) * 100).astype(pyvm.NP[dt])
    s = (rng.standard_normal(5) * 100).astype(pyvm.NP[dt])
    s[3] = s[3] or 1
    want = np.zeros(n, pyvm.NP[dt])
    _cpu_run(code, [want, x, s])
    got = cupy.zeros(n, want.dtype)
    gvm.get_vm().run(code, [got, cupy.asarray(x), cupy.asarray(s)])
    np.testing.assert_array_equal(got.get(), want)
    assert gvm.get_vm().prepare(code).grid < n // 2048   # blocks run several tiles


@needs_gpu
def test_a_register_reused_at_another_element_size_is_not_raced():
    """Regression: cast.i64 r1 then const.bool r1 (8-byte then 4-byte elements in one register) needs a barrier
    between the two writers; without it some booleans came back False on an H100."""
    import cupy

    O, D, R = isa.Opcode, isa.DType, isa.Role
    n = 4096
    code = [isa.MAGIC, isa.VERSION, 0, 5, 2, 2, 1, 2048, 1, 1, 1, n, 0, 0, 0, 0,
            int(D.F32) | int(R.INPUT) << 8, n, int(D.BOOL) | int(R.OUTPUT) << 8, n,
            isa.word0(O.LOAD, D.F32, 0, 0, 0), 0, isa.word0(O.CAST, D.I64, 0, 1, 0, D.F32),
            isa.word0(O.CONST, D.BOOL, 0, 1), 1, isa.word0(O.STORE, D.BOOL, 0, 1, 1), 0, isa.word0(O.END)]
    code[isa.H["n_words"]] = len(code)
    code = np.array(code, np.uint64)
    pyvm.validate(code)
    for _ in range(20):
        out = cupy.zeros(n, cupy.bool_)
        gvm.get_vm().run(code, [cupy.arange(n, dtype=cupy.float32), out])
        assert bool(out.all())


@needs_gpu
def test_bad_programs_are_refused_before_launch():
    import cupy

    from tests.dvm_runtime.test_fuzz import buffers_for, mutate, random_program
    rng = np.random.default_rng(3)
    vm, refused = gvm.get_vm(), 0
    for _ in range(300):
        code = mutate(random_program(rng), rng)
        try:
            pyvm.validate(code)
            valid = True
        except pyvm.DvmError:
            valid = False
        bufs = [cupy.asarray(b) for b in buffers_for(code, rng)]
        if valid:
            continue
        with pytest.raises(pyvm.DvmError):
            vm.run(code, bufs)
        refused += 1
    assert refused > 100
    cupy.cuda.Device().synchronize()


@needs_gpu
def test_session_keeps_device_arrays_on_the_device():
    import cupy

    model = onnx_models.build("tiny_gpt")
    cpu = framework.InferenceSession(model, jit_level="O1")
    dev = framework.InferenceSession(model, jit_level="O1", device="gpu")
    assert dev.stats["device"] == "gpu" and dev.stats["backends"].get("gpu", 0) > 0
    feed = _feed("tiny_gpt")
    (want,) = cpu.run(None, feed)
    (got,) = dev.run(None, feed)
    assert isinstance(got, np.ndarray)
    _assert_close(got, want, "numpy feed")
    for _ in range(2):   # the second call takes the checked signature's fast path
        (got,) = dev.run(None, {"ids": cupy.asarray(feed["ids"])})
        assert isinstance(got, cupy.ndarray)
        _assert_close(got, want, "device feed")
    wrong = cupy.asarray(feed["ids"]).astype(cupy.float32)   # a checked shape, another dtype: checked again
    with pytest.raises(InputTypeError):
        dev.run(None, {"ids": wrong})
    with pytest.raises(ContextError, match="graph mode only"):
        framework.InferenceSession(model, mode="pynative", device="gpu")


@needs_gpu
def test_new_shapes_cost_an_encode_not_a_compile():
    sess = framework.InferenceSession(onnx_models.build("tiny_gpt"), jit_level="O1", device="gpu")
    vm = gvm.get_vm()
    kernels = dict(vm.kernels)
    be = next(b for b in sess._backends if b.name == "gpu")
    before = len(be.encode_times)
    for seq in (3, 9, 17):
        sess.run(None, _feed("tiny_gpt", seq))
    assert gvm.get_vm() is vm and vm.kernels == kernels
    assert len(be.encode_times) > before and max(be.encode_times) < 0.5


@needs_gpu
def test_programs_rerun_correctly_after_the_code_area_starts_over(monkeypatch):
    """Programs are uploaded into one ring of device memory; when it fills, earlier programs re-upload on
    their next launch (a stale address would run another program's words)."""
    import cupy

    from dvm_runtime.gpu.device_ops import transpose_program
    monkeypatch.setattr(gvm.CodeArena, "WORDS", 64)
    vm = gvm.CudaVM()  # a VM of its own, with the small code area
    rng = np.random.default_rng(2)
    shapes = [(3, 5), (4, 7), (6, 2), (5, 5)]
    dtypes = [np.float32, np.int32] * 2   # float32: the chain kernel's step tables; int32: tiled bytecode
    progs = [transpose_program(s, (1, 0), dt, gb.gpu_tiling) for s, dt in zip(shapes, dtypes)]
    assert [vm.prepare(code).chain is not None for code in progs] == [True, False] * 2
    for _ in range(3):
        for s, dt, code in zip(shapes, dtypes, progs):
            x = (rng.standard_normal(s) * 100).astype(dt)
            out = cupy.empty(s[::-1], dt)
            vm.run(code, [cupy.asarray(x), out])
            np.testing.assert_array_equal(out.get(), x.T)
    assert vm.arena.generation > 0


def _stand_in_h100(vm):
    """`vm` given what Prepared reads of a CudaVM on an H100 (its code area stands in too: uploads only
    return an address)."""
    from types import SimpleNamespace
    vm.arena = SimpleNamespace(put=lambda words: 0x7F00_0000_1000, generation=0)
    vm.n_sm, vm.max_smem, vm.chain_smem, vm.rows_smem = 132, 227 << 10, 110 << 10, 227 << 10
    vm.per_sm = lambda kernel, smem: 2
    return vm


def test_packed_launch_arguments_hold_each_arguments_bytes():
    """cuLaunchKernel reads argument i, by the kernel's own parameter size, from the address in cell i of
    `params`: each of the three kernels' leading arguments must lie there in its own type's bytes, and the
    buffer table and pointers after them (checked with a stand-in VM: no device needed)."""
    from types import SimpleNamespace

    from tests.dvm_runtime.test_fuzz import random_program
    from tests.dvm_runtime.test_gpu_chain import elementwise_program
    from tests.dvm_runtime.test_gpu_rows import row_program
    rng = np.random.default_rng(3)
    stand_in = _stand_in_h100(SimpleNamespace())
    arena = stand_in.arena
    progs = [elementwise_program(rng, True), row_program(rng, True, cols=20000), random_program(rng, True)]
    prepared = [gvm.Prepared(stand_in, code) for code in progs]
    assert [p.kernel for p in prepared] == ["chain", "rows", "tiled"]
    for p in prepared:
        assert len(p.params) == len(p.args) + 1 + gvm.INLINE_PTRS == len(p.argv)
        assert p.params_at == p.params.ctypes.data
        np.testing.assert_array_equal(p.params, p.argv.ctypes.data + 8 * np.arange(len(p.argv)))
        cells = p.argv.view(np.uint8).reshape(-1, 8)
        for a, cell in zip(p.args, cells):
            assert cell[:a.itemsize].view(a.dtype)[0] == a
        kept = p.argv.ctypes.data
        p.upload(arena)   # a re-upload rewrites the cells in place (a launch in flight may read them)
        assert p.argv.ctypes.data == kept


def test_a_launch_hands_the_driver_its_buffer_pointers():
    """What cuLaunchKernel would read at launch: following each address in `params`, the leading arguments,
    then the buffer table and the buffers' pointers (a stand-in VM and driver, no device needed)."""
    import ctypes
    import threading
    from types import SimpleNamespace

    from tests.dvm_runtime.test_gpu_chain import elementwise_program
    vm = _stand_in_h100(object.__new__(gvm.CudaVM))   # no device: only what prepare and _launch read
    vm._prepared, vm._launch_lock = {}, threading.Lock()
    seen = []

    def driver(kernel, grid, threads, smem, params):
        addrs = (ctypes.c_uint64 * n_params).from_address(params)
        seen.append((kernel, [ctypes.c_uint64.from_address(a).value for a in addrs]))
        return True
    vm.driver_launch = driver
    code = elementwise_program(np.random.default_rng(4), True)
    p = vm.prepare(code)
    n_params = len(p.argv)
    bufs = [SimpleNamespace(data=SimpleNamespace(ptr=0x7000_0000 + 0x1000 * i)) for i in range(len(p.bufs))]
    vm.launch(code, bufs)
    want_args = [int(c) for c in p.argv[:len(p.args)]]
    want_ptrs = [b.data.ptr for b in bufs]
    assert seen == [(p.kernel, want_args + [0] + want_ptrs + [0] * (gvm.INLINE_PTRS - len(bufs)))]


@needs_gpu
def test_driver_launches_match_cupys():
    """Launches go through cuLaunchKernel with arguments packed once per program; CuPy's own launch of the
    same programs on the same inputs gives the same bits, on all three kernels and from a new thread."""
    import threading

    import cupy

    from tests.dvm_runtime.test_fuzz import buffers_for, random_program
    from tests.dvm_runtime.test_gpu_chain import elementwise_program
    from tests.dvm_runtime.test_gpu_rows import row_program
    vm = gvm.CudaVM()   # a VM of its own: the launcher is switched off below
    assert vm.driver_launch is not None
    launched = []
    launch = vm.driver_launch
    vm.driver_launch = lambda *a: launched.append(launch(*a)) or launched[-1]
    rng = np.random.default_rng(21)
    progs = [elementwise_program(rng, True) for _ in range(20)] + [row_program(rng, True) for _ in range(10)]
    progs += [row_program(rng, True, cols=20000) for _ in range(10)]   # rows no tile holds: the row kernel
    progs += [c for c in (random_program(rng, exact=True) for _ in range(60)) if not _aliases(c)]
    cases = [(code, buffers_for(code, rng)) for code in progs]
    assert {vm.prepare(code).kernel for code in progs} == {"chain", "rows", "tiled"}

    def run_all(results):
        for code, bufs in cases:
            dev = [cupy.asarray(b) for b in bufs]
            vm.run(code, dev)
            results.append([d.get() for d in dev])
    driven, in_thread, by_cupy = [], [], []
    run_all(driven)
    worker = threading.Thread(target=run_all, args=(in_thread,))
    worker.start()
    worker.join()
    n_launches = sum(not (vm.prepare(code).empty or vm.prepare(code).grid == 0) for code in progs)
    assert len(launched) == 2 * n_launches and launched[:n_launches] == [True] * n_launches
    vm.driver_launch = None
    run_all(by_cupy)
    for k, (a, b, c) in enumerate(zip(driven, in_thread, by_cupy, strict=True)):
        for x, y, z in zip(a, b, c, strict=True):
            np.testing.assert_array_equal(x, z, err_msg=f"program {k}")
            np.testing.assert_array_equal(y, z, err_msg=f"program {k}, new thread")
