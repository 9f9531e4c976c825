"""The CUDA VM's host side: build the interpreter once per process (NVRTC through CuPy, cubin kept in the
shared DiskCache), validate each program with the CPU VM's checks, size shared memory and launch.

A program is prepared once (validated, uploaded, launch geometry, its kernel arguments packed) and launched
many times; per launch only the buffers are checked (count, dtype, size, contiguity), their pointers written
into the packed arguments, and the kernel launched with cuLaunchKernel (CuPy's own launch converts each of
some thirty arguments per call; it remains the fallback where CuPy's driver binding is missing). Uploads
go through a pinned staging area with stream-ordered copies, so a new program (a new shape) never waits for
the GPU to drain.
"""
from __future__ import annotations

import math
import os
import threading

import numpy as np

from .. import isa
from ..pyvm import DvmError
from . import chain as chain_mod, rows as rows_mod

NT = 256                 # threads per block (cuda_vm.cu's NT)
INLINE_PTRS = 16         # buffer pointers passed as kernel arguments; more go through a device table
INS_BYTES = 64           # sizeof(Ins) in cuda_vm.cu (static_assert there)
OPTIONS = ("-std=c++17", "--fmad=false")  # no FMA contraction: the ISA's arithmetic is op by op
_SRCS = [os.path.join(os.path.dirname(__file__), f) for f in ("cuda_ops.cuh", "cuda_vm.cu", "cuda_chain.cu",
                                                                       "cuda_rows.cu")]


class GpuLimitError(DvmError):
    """A valid program that this GPU cannot run as tiled (too much shared memory); the caller falls back."""


def kernel_source() -> str:
    """The CUDA source: typedefs, isa.py's generated header (tables in constant memory), then the VM."""
    head = isa.c_header().replace("#include <stdint.h>", "")
    head = head.replace("static const ", "static __constant__ const ")  # tables the device code reads
    # NVRTC has no <stdint.h>; the header needs only these (glibc's types too, so nvcc takes them)
    types = "typedef unsigned char uint8_t; typedef signed char int8_t; typedef unsigned int uint32_t;\n"
    body = []
    for path in _SRCS:
        with open(path, encoding="utf-8") as f:
            body.append(f.read())
    return types + head + "\n" + "\n".join(body)


def _align16(x: int) -> int:
    return (x + 15) & ~15


def shared_bytes(n_words: int, n_instr: int, n_bufs: int, tr: int, tc: int, n_regs: int,
                 reg_bytes: int) -> int:
    """Dynamic shared memory of one block; the same layout as the kernel's (code, instructions, buffer
    pointers, row indices, registers, then the chunk results of reductions over rows longer than a chunk)."""
    o_ins = _align16(n_words * 8)
    o_idx = _align16(o_ins + n_instr * INS_BYTES + n_bufs * 8)
    o_regs = _align16(o_idx + 3 * tr * 8)
    chunks = -(-tc // isa.REDUCE_CHUNK)
    scratch = tr * chunks * isa.REDUCE_LANES * reg_bytes if chunks > 1 else 0
    return o_regs + n_regs * _align16(tr * tc * reg_bytes) + scratch


def chain_shared_bytes(n_steps: int, n_slots: int) -> int:
    """Dynamic shared memory of one chain-kernel block: its step table, then its slots (cuda_chain.cu)."""
    slot_bytes = chain_mod.CHAIN_W * chain_mod.CHAIN_NT * 16   # CHAIN_W float4s per thread
    return _align16(n_steps * chain_mod.STEP_WORDS * 8) + n_slots * slot_bytes


def rows_shared_bytes(r: "rows_mod.Rows") -> int:
    """Dynamic shared memory of one row-kernel block: its table, its slots, then per row its row values,
    chunk results and lane results (cuda_rows.cu)."""
    slot_bytes = chain_mod.CHAIN_W * rows_mod.ROWS_NT * 16
    per_row = 4 * (r.n_rowv + r.nch * isa.REDUCE_LANES + isa.REDUCE_LANES)
    table = _align16(r.n_steps * chain_mod.STEP_WORDS * 8)
    return table + r.n_slots * slot_bytes + r.rows_per_block * per_row


def _validate(code: np.ndarray) -> None:
    """The CPU VM's validation (the C one when built, else the numpy one): a DvmError when invalid."""
    from .. import cvm, pyvm
    if cvm.available():
        cvm.validate(code)
    else:
        pyvm.validate(code)


_WORDS = [isa.FORM_WORDS[isa.OPCODE_FORMS[isa.Opcode(op)]] if op in isa.Opcode._value2member_map_ else 1
          for op in range(256)]


def _uses_i64(code: np.ndarray, start: int) -> bool:
    """Whether any instruction has I64 registers (then registers take 8 bytes per element, else 4)."""
    w, pc, i64, cast = code[start:].tolist(), 0, int(isa.DType.I64), int(isa.Opcode.CAST)
    while pc < len(w):
        x = w[pc]
        if (x >> 8) & 0xF == i64 or ((x & 0xFF) == cast and (x >> 48) & 0xFFFF == i64):
            return True
        pc += _WORDS[x & 0xFF]
    return False


class Prepared:
    """A validated program on the device: which kernel runs it (`kernel`: "tiled", "chain" or "rows"), its
    launch geometry, buffer table and the kernel's leading arguments (`args`)."""

    __slots__ = ("code", "args", "n_words", "reg_bytes", "smem", "grid", "threads", "bufs", "empty",
                 "generation", "chain", "rows", "kernel", "argv", "params", "params_at")

    def __init__(self, vm: "CudaVM", code: np.ndarray):
        _validate(code)
        h = {n: int(code[i]) for i, n in enumerate(isa.header_fields)}
        nb, n_regs, tr, tc = h["n_buffers"], h["n_regs"], h["tile_rows"], h["tile_cols"]
        self.bufs = [(isa.NUMPY_DTYPE[isa.DType(int(code[isa.CODE_START + 2 * i]) & 0xFF)],
                      int(code[isa.CODE_START + 2 * i + 1])) for i in range(nb)]
        rows, cols = h["d0"] * h["d1"] * h["d2"], h["d3"]
        self.empty = rows * cols == 0
        self.code, self.n_words = code, len(code)
        self.grid, self.argv = 0, None
        # an elementwise float32 program runs on the chain kernel, a thread per element group (chain.py)
        c = chain_mod.steps(code) if not self.empty else None
        if c is not None and chain_shared_bytes(c.n_steps, c.n_slots) > vm.chain_smem:
            c = None   # more slots than this GPU's shared memory holds: the tiled kernel
        self.chain, self.rows = c, None
        if c is not None:
            self.kernel, self.threads = "chain", chain_mod.CHAIN_NT
            self.smem = chain_shared_bytes(c.n_steps, c.n_slots)
            per_sm = vm.per_sm(self.kernel, self.smem)
            self.grid = min(-(-c.total // (chain_mod.CHAIN_NT * 4 * chain_mod.CHAIN_W)), vm.n_sm * per_sm)
        else:
            self.kernel, self.threads = "tiled", NT
            self.reg_bytes = 8 if _uses_i64(code, isa.CODE_START + isa.BUF_WORDS * nb) else 4
            self.smem = shared_bytes(len(code), h["n_instr"], nb, tr, tc, n_regs, self.reg_bytes)
            if self.smem > vm.max_smem:   # rows too long to hold: the row kernel keeps none of them (rows.py)
                r = rows_mod.steps(code)
                if r is None or rows_shared_bytes(r) > vm.rows_smem:
                    why = "does not run all of its ops" if r is None else \
                        f"would need {rows_shared_bytes(r)} bytes for its table"
                    raise GpuLimitError(f"tiles of {tr}x{tc} elements with {n_regs} registers need "
                                        f"{self.smem} bytes of shared memory per block; this GPU allows "
                                        f"{vm.max_smem}, and the row kernel {why}")
                self.rows, self.kernel, self.threads = r, "rows", rows_mod.ROWS_NT
                self.smem = rows_shared_bytes(r)
                self.grid = min(-(-r.rows // r.rows_per_block), vm.n_sm * vm.per_sm(self.kernel, self.smem))
            else:
                ntiles = math.ceil(rows / tr) * math.ceil(cols / tc) if not self.empty else 0
                self.grid = min(ntiles, vm.n_sm * vm.per_sm(self.kernel, self.smem))
        self.upload(vm.arena)

    def upload(self, arena: "CodeArena") -> None:
        """Queue the program's upload (its table, for the chain and row kernels) and set `args`: the kernel's
        arguments before the buffer table and pointers."""
        if self.rows is not None:
            r = self.rows
            self.args = (np.uint64(arena.put(r.words)), np.int32(r.n_steps), np.int32(r.n_slots),
                         np.int32(r.n_rowv), np.int32(len(self.bufs)), np.int64(r.rows), np.int64(r.cols),
                         np.int64(r.d1), np.int64(r.d2), np.int32(r.per), np.int32(r.nch), np.int32(r.group))
        elif self.chain is not None:
            c = self.chain
            self.args = (np.uint64(arena.put(c.words)), np.int32(c.n_uni), np.int32(c.n_loads),
                         np.int32(c.n_main), np.int32(c.n_slots), np.int32(len(self.bufs)),
                         np.int64(c.total), np.int64(c.cols), np.int64(c.d1), np.int64(c.d2),
                         np.int32(c.views))
        else:
            self.args = (np.uint64(arena.put(self.code)), np.int32(self.n_words), np.int32(self.reg_bytes))
        self.generation = arena.generation
        # cuLaunchKernel's form of all the arguments: one 8-byte cell each (a 4-byte argument in its low
        # half, little-endian), the buffer table and pointers written per launch, and the cells' addresses.
        # Allocated once and rewritten in place: a launch in flight on another thread reads these cells.
        if self.argv is None:
            n = len(self.args) + 1 + INLINE_PTRS
            self.argv = np.zeros(n, np.uint64)
            self.params = np.uint64(self.argv.ctypes.data) + np.arange(n, dtype=np.uint64) * np.uint64(8)
            self.params_at = self.params.ctypes.data
        self.argv[:len(self.args)] = [int(a) & ((1 << (8 * a.itemsize)) - 1) for a in self.args]


class CodeArena:
    """Device copies of programs: words are packed into one pinned host buffer and copied to one device buffer
    by async copies on the current stream (cupy.asarray of pageable memory would block the host until the
    device is idle, once per new program). When full it starts over; programs then re-upload (generation)."""

    WORDS = 1 << 19   # 4 MiB of programs

    def __init__(self, cupy):
        self._cupy = cupy
        self._host_mem = cupy.cuda.alloc_pinned_memory(self.WORDS * 8)
        self._host = np.frombuffer(self._host_mem, np.uint64, self.WORDS)
        self._dev = cupy.empty(self.WORDS, np.uint64)
        self.used, self.generation = 0, 0

    def put(self, code: np.ndarray) -> int:
        """Queue the upload of `code`; its device address (valid while `generation` is unchanged)."""
        n = len(code)
        if n > self.WORDS:
            raise GpuLimitError(f"a program of {n} words exceeds the {self.WORDS}-word code area")
        stream = self._cupy.cuda.get_current_stream()
        if self.used + n > self.WORDS:
            stream.synchronize()  # queued copies may still read the staging words about to be rewritten
            self.used, self.generation = 0, self.generation + 1
        off = self.used
        self._host[off:off + n] = code
        rt = self._cupy.cuda.runtime
        rt.memcpyAsync(self._dev.data.ptr + 8 * off, self._host_mem.ptr + 8 * off, 8 * n,
                       rt.memcpyHostToDevice, stream.ptr)
        self.used = off + n + (n & 1)  # 16-byte aligned starts
        return self._dev.data.ptr + 8 * off


class CudaVM:
    """The compiled interpreter on the current device; `run(code, buffers)` validates, then launches."""

    def __init__(self):
        import cupy

        dev = cupy.cuda.Device()
        attrs = dev.attributes
        self.n_sm = attrs["MultiProcessorCount"]
        self.max_smem = attrs["MaxSharedMemoryPerBlockOptin"]
        self.smem_per_sm = attrs["MaxSharedMemoryPerMultiprocessor"]
        self.arch = dev.compute_capability
        self.compile_s, self.from_cache = 0.0, False
        tiled, chain, rows = self._build(cupy)
        self.kernels = {"tiled": tiled, "chain": chain, "rows": rows}
        self.max_smem -= tiled.shared_size_bytes  # the opt-in limit counts static shared memory too
        # the largest chain table needs 110 KiB: more than some GPUs' opt-in limit (those run it tiled)
        self.chain_smem = min(chain_shared_bytes(chain_mod.CHAIN_MAX_STEPS, chain_mod.CHAIN_MAX_SLOTS),
                              attrs["MaxSharedMemoryPerBlockOptin"] - chain.shared_size_bytes)
        self.rows_smem = attrs["MaxSharedMemoryPerBlockOptin"] - rows.shared_size_bytes
        for k, limit in ((tiled, self.max_smem), (chain, self.chain_smem), (rows, self.rows_smem)):
            k.max_dynamic_shared_size_bytes = limit
        # resident blocks per SM the kernels' registers allow, and their static shared memory
        self._fit = {name: (self._blocks_per_sm(k, threads), k.shared_size_bytes) for (name, k), threads
                     in zip(self.kernels.items(), (NT, chain_mod.CHAIN_NT, rows_mod.ROWS_NT))}
        self.arena = CodeArena(cupy)
        self._prepared: dict[int, Prepared] = {}
        self.driver_launch = _driver_launcher(cupy, self.kernels)
        self._launch_lock = threading.Lock()  # a program's packed arguments are written, then launched

    def per_sm(self, kernel: str, smem: int) -> int:
        """Blocks of `kernel` with `smem` bytes of dynamic shared memory that one SM holds at once."""
        by_regs, static = self._fit[kernel]
        return max(1, min(by_regs, self.smem_per_sm // (smem + static + 1024)))

    @staticmethod
    def _blocks_per_sm(kernel, threads: int) -> int:
        """Resident blocks of `threads` per SM the kernel's registers allow (register file: 64K 32-bit
        registers per SM, at most 2048 threads)."""
        return max(1, min(2048 // threads, 65536 // (max(kernel.num_regs, 1) * threads)))

    def _build(self, cupy):
        """(tiled kernel, chain kernel, row kernel), from the shared cache's cubin or NVRTC."""
        import time

        from framework.disk_cache import DiskCache, cache_key

        src = kernel_source()
        t0 = time.perf_counter()
        try:  # a cubin per (source, arch, NVRTC, CuPy) in the shared cache: later processes skip NVRTC
            from cupy.cuda import compiler
            key = cache_key("dvm-cuda-vm", src, self.arch, OPTIONS, compiler._get_nvrtc_version(),
                            cupy.__version__)
            cache = DiskCache("dvm_gpu")
            path = cache.get_path(key, ".cubin")
            self.from_cache = path is not None
            if path is None:
                obj, _ = compiler.compile_using_nvrtc(src, options=OPTIONS, arch=self.arch,
                                                      filename="cuda_vm.cu")
                path = cache.put(key, bytes(obj), ".cubin")
            module = cupy.RawModule(path=str(path))
        except (ImportError, AttributeError, TypeError):  # a CuPy without these internals: its own cache
            module = cupy.RawModule(code=src, options=OPTIONS)
        kernels = tuple(module.get_function(name) for name in ("dvm_vm", "dvm_chain", "dvm_rows"))
        self.compile_s = time.perf_counter() - t0
        return kernels

    def prepare(self, code: np.ndarray) -> Prepared:
        """The prepared form of `code`, validated and uploaded on first sight (cached by identity)."""
        hit = self._prepared.get(id(code))
        if hit is not None and hit.code is code:
            if hit.generation != self.arena.generation:
                with self._launch_lock:   # not while another thread launches from its packed arguments
                    hit.upload(self.arena)
            return hit
        if len(self._prepared) > 4096:
            self._prepared.clear()
        p = self._prepared[id(code)] = Prepared(self, code)
        return p

    def run(self, code: np.ndarray, buffers: list) -> None:
        """Validate `code` (once) and the CuPy `buffers` (each launch), then run it on the current stream."""
        import cupy

        p = self.prepare(code)
        if len(buffers) != len(p.bufs):
            raise DvmError(f"bad DVM program: {len(buffers)} buffers given, program has {len(p.bufs)}")
        for i, (b, (dt, n)) in enumerate(zip(buffers, p.bufs)):
            if not isinstance(b, cupy.ndarray) or b.dtype != dt or b.size != n or not b.flags.c_contiguous:
                raise DvmError(f"bad DVM program: buffer {i} must be a contiguous CuPy {dt} array of {n} "
                               f"elements")
        self._launch(p, code, buffers)

    def launch(self, code: np.ndarray, buffers: list) -> None:
        """run() without its per-buffer checks, for buffers bound by the program's own encoder (the backend's:
        inputs made contiguous in the slot's dtype, outputs allocated from the slots' shapes)."""
        self._launch(self.prepare(code), code, buffers)

    def _launch(self, p: Prepared, code: np.ndarray, buffers: list) -> None:
        if p.empty or p.grid == 0:
            return
        table = 0
        if len(buffers) > INLINE_PTRS:
            table = self.arena.put(np.array([b.data.ptr for b in buffers[INLINE_PTRS:]], np.uint64))
            p = self.prepare(code)  # re-uploaded when the table's upload started the code area over
        ptrs = [b.data.ptr for b in buffers[:INLINE_PTRS]]
        if self.driver_launch is not None:
            base = len(p.args)
            with self._launch_lock:
                p.argv[base] = table
                p.argv[base + 1:base + 1 + len(ptrs)] = ptrs
                if self.driver_launch(p.kernel, p.grid, p.threads, p.smem, p.params_at):
                    return
        ptrs = [np.uint64(x) for x in ptrs] + [np.uint64(0)] * (INLINE_PTRS - len(ptrs))
        self.kernels[p.kernel]((p.grid,), (p.threads,), (*p.args, np.uint64(table), *ptrs), shared_mem=p.smem)


def _driver_launcher(cupy, kernels: dict):
    """launch(kernel name, grid, threads, smem, params address) -> whether it launched, through
    cuLaunchKernel on the current stream; None where this CuPy has no driver binding or CUfunction handles.
    A launch the driver refuses (no context current on this thread, say) returns False: the caller then
    launches through CuPy, which sets the context up, or raises the driver's error itself."""
    try:
        driver = cupy.cuda.driver
        launch, error = driver.launchKernel, driver.CUDADriverError
        funcs = {name: int(k.kernel.ptr) for name, k in kernels.items()}   # CuPy 14: RawKernel -> Function
    except AttributeError:
        return None
    current_stream = cupy.cuda.get_current_stream

    def run(kernel: str, grid: int, threads: int, smem: int, params: int) -> bool:
        try:
            launch(funcs[kernel], grid, 1, 1, threads, 1, 1, smem, current_stream().ptr, params, 0)
        except error:
            return False
        return True
    return run


_VM: list = []
_LOCK = threading.Lock()


def get_vm() -> CudaVM:
    """The process's one CudaVM (built on first use)."""
    with _LOCK:
        if not _VM:
            _VM.append(CudaVM())
        return _VM[0]
