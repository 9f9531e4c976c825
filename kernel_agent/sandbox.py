"""The verifier's sandbox: a fork server (jobs on stdin, results on stdout) whose forked children load one
candidate, lock themselves down and run it on guard-paged, NaN-prefilled buffers."""
# Lock-down: rlimits (CPU seconds, address space, no file growth, no new file descriptors, so no files or
# sockets from C) plus an audit hook turning Python-level file writes, sockets, subprocesses and library
# loads into errors. Each buffer ends right before a PROT_NONE page: reading or writing past it is SIGSEGV.
from __future__ import annotations

import ctypes
import hashlib
import mmap
import os
import pickle
import resource
import sys
import time

BLOCKED = ("socket.", "subprocess.", "os.system", "os.exec", "os.fork", "os.posix_spawn", "os.spawn",
           "os.remove", "os.unlink", "os.rename", "os.rmdir", "os.mkdir", "os.kill", "shutil.",
           "ctypes.dlopen",
           "os.chmod", "os.truncate", "os.symlink", "os.link", "urllib.", "http.", "ftplib.", "smtplib.")
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


class SandboxViolation(Exception):
    """Raised inside the child by the audit hook."""


def _hook(event: str, args) -> None:
    if event == "open":
        path, mode, flags = (list(args) + [None, None])[:3]
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
            (isinstance(flags, int) and flags & WRITE_FLAGS)
        if writes:
            raise SandboxViolation(f"file write: open({path!r}, {mode!r})")
        return
    if event.startswith(BLOCKED):
        what = "network access" if event.startswith(("socket.", "urllib.", "http.", "ftplib.", "smtplib.")) \
            else "process or file-system call"
        raise SandboxViolation(f"{what}: {event}{tuple(str(a)[:60] for a in args)}")


_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
PAGE = mmap.PAGESIZE
_KEEP: list = []


def guarded(shape, dtype, fill=None):
    """An array whose last byte is followed by an inaccessible page (slack before it is NaN-patterned)."""
    import numpy as np
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    pages = (nbytes + PAGE - 1) // PAGE
    mm = mmap.mmap(-1, (pages + 1) * PAGE)
    mm.write(b"\xff" * (pages * PAGE))
    base = ctypes.addressof(ctypes.c_char.from_buffer(mm))
    if _LIBC.mprotect(base + pages * PAGE, PAGE, 0) != 0:
        raise OSError("mprotect failed")
    arr = np.frombuffer(mm, dtype, count=nbytes // dtype.itemsize, offset=pages * PAGE - nbytes)
    arr = arr.reshape(shape)
    if fill is not None:
        arr[...] = fill
    _KEEP.append(mm)
    return arr


def lock(cpu_s: int, mem_mb: int) -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    with open("/proc/self/status") as f:
        vm = next((int(ln.split()[1]) << 10 for ln in f if ln.startswith("VmSize:")), 0)
    limit = vm + (mem_mb << 20)  # on top of what the (forked) process already maps
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    import signal
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    lowest = os.dup(0)
    os.close(lowest)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest, lowest))
    sys.addaudithook(_hook)


def _nan_fill(dtype):
    import numpy as np
    kind = np.dtype(dtype).kind
    return np.nan if kind == "f" else np.iinfo(dtype).min if kind in "iu" else 0


def load(job):
    """The candidate as a callable taking arrays and returning a list of arrays."""
    if job["kind"] == "py":
        scope: dict = {}
        exec(compile(job["source"], "<candidate>", "exec"), scope)  # noqa: S102 - it runs inside the sandbox
        fn = scope.get("kernel")
        if fn is None:
            raise SandboxViolation("the candidate defines no function `kernel`")

        def call(*arrays):
            out = fn(*arrays)
            return list(out) if isinstance(out, (tuple, list)) else [out]
        return call
    from kernel_agent.kernel import Kernel
    return Kernel(job["spec"], job["so_path"], alloc=lambda s, d: guarded(s, d, _nan_fill(d)))


def run_job(job) -> dict:
    """Load the candidate, lock down, run every case, time, run again; the result as a dict."""
    import numpy as np
    try:
        cases = [[guarded(a.shape, a.dtype, a) for a in case] for case in job["cases"]]
        if job["kind"] == "py":  # Python source runs only after the lock-down, even at its top level
            lock(job.get("cpu_s", 20), job.get("mem_mb", 2048))
            kernel = load(job)
        else:  # a shared library is loaded first (dlopen needs a file descriptor), then locked in
            kernel = load(job)
            lock(job.get("cpu_s", 20), job.get("mem_mb", 2048))
        sums = [[hashlib.sha256(a.tobytes()).hexdigest() for a in case] for case in cases]
        first = [[np.array(o, copy=True) for o in kernel(*case)] for case in cases]
        times = []
        reps = job.get("reps", 0)
        alloc = getattr(kernel, "alloc", None)
        if alloc is not None:  # time the kernel, not the guard-page allocations
            kernel.alloc = lambda shape, dtype: np.empty(shape, dtype)
        for i in range(reps + 2 if reps else 0):
            t0 = time.perf_counter()
            kernel(*cases[0])
            if i >= 2:
                times.append(time.perf_counter() - t0)
        if alloc is not None:
            kernel.alloc = alloc
        again = [[np.array(o, copy=True) for o in kernel(*case)] for case in cases]
        changed = [(c, k) for c, case in enumerate(cases) for k, a in enumerate(case)
                   if hashlib.sha256(a.tobytes()).hexdigest() != sums[c][k]]
        return {"outputs": first, "again": again, "times": times, "changed": changed}
    except SandboxViolation as e:
        return {"error": str(e)}
    except MemoryError:
        return {"error": "memory limit exceeded"}
    except Exception as e:  # noqa: BLE001 - any failure of the candidate is a verdict, not a crash
        return {"error": f"{type(e).__name__}: {e}"[:500]}


def _read_msg(f):
    head = f.read(8)
    if len(head) < 8:
        return None
    n = int.from_bytes(head, "little")
    return pickle.loads(f.read(n))


def _write_msg(f, obj) -> None:
    data = pickle.dumps(obj)
    f.write(len(data).to_bytes(8, "little") + data)
    f.flush()


def _signal_reason(status: int) -> str:
    import signal
    sig = signal.Signals(os.WTERMSIG(status)).name
    why = {"SIGSEGV": "out-of-bounds memory access", "SIGBUS": "out-of-bounds memory access",
           "SIGXCPU": "CPU time limit exceeded (infinite loop?)", "SIGKILL": "killed (memory or time limit)"}
    return f"crashed with {sig}: {why.get(sig, 'signal')}"


def serve() -> None:
    """Fork server: imports once, then forks one child per job (milliseconds instead of a fresh Python)."""
    import select
    import signal
    import encodings.idna  # noqa: F401 - imported before lock-down so a candidate's use of sockets is
    import socket  # noqa: F401 - reported by the audit hook instead of failing on a lazy import (EMFILE)

    import kernel_agent.kernel  # noqa: F401 - warm imports inherited by every child
    import numpy  # noqa: F401
    inp, out = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints (from candidates too) never reach the result channel
    while True:
        job = _read_msg(inp)
        if job is None:
            return
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            f = os.fdopen(w, "wb")  # opened before the lock-down, which forbids it
            f.write(pickle.dumps(run_job(job)))
            f.flush()
            os._exit(0)
        os.close(w)
        chunks, deadline = [], time.monotonic() + job.get("timeout", 30)
        result = None
        while True:
            left = deadline - time.monotonic()
            ready = select.select([r], [], [], max(left, 0))[0] if left > 0 else []
            if not ready:
                os.kill(pid, signal.SIGKILL)
                result = {"error": f"timed out after {job.get('timeout', 30):g} s (infinite loop?)"}
                break
            data = os.read(r, 1 << 20)
            if not data:
                break
            chunks.append(data)
        os.close(r)
        _, status = os.waitpid(pid, 0)
        if result is None:
            if os.WIFSIGNALED(status):
                result = {"error": _signal_reason(status)}
            else:
                try:
                    result = pickle.loads(b"".join(chunks))
                except Exception:  # noqa: BLE001 - garbage on the channel is a verdict
                    result = {"error": f"sandbox protocol broken (exit status {status})"}
        _write_msg(out, result)


if __name__ == "__main__":
    serve()
