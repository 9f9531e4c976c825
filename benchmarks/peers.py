"""Peers we compare against: onnxruntime (same threads, no spinning), numpy op by op, PyTorch if installed."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np


def ort_session(model, threads: int | None = None, optimize: bool = True):
    """onnxruntime CPU session with `threads` intra-op threads, 1 inter-op thread and spinning off.

    Spinning off matters: a spinning pool would steal the cores our interleaved rounds run on.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or os.cpu_count() or 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if isinstance(model, Path):
        model = str(model)
    elif not isinstance(model, (str, bytes)):
        model = model.SerializeToString()
    return ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])


def ort_runner(sess, feed: dict) -> Callable[[], list]:
    return lambda: sess.run(None, feed)


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz-Stegun 7.1.26 (|err| < 1.5e-7): numpy has no erf, and scipy is not a dependency.
    s, a = np.sign(x), np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return s * (1.0 - poly * np.exp(-a * a))


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


# Op-by-op numpy versions of the fused chains of the operator suite: each op a separate array pass.
NUMPY_CHAINS: dict[str, Callable[..., np.ndarray]] = {
    "gelu": lambda x: 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)).astype(x.dtype)),
    "softmax": _softmax,
    "layer_norm": _layer_norm,
    "bias_relu": lambda x, b: np.maximum(x + b, 0),
}


def numpy_runner(name: str, *arrays: np.ndarray) -> Callable[[], np.ndarray]:
    fn = NUMPY_CHAINS[name]
    return lambda: fn(*arrays)


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def torch_runner(fn: Callable, arrays: list[np.ndarray], threads: int | None = None,
                 compile: bool = False) -> Callable[[], object] | None:
    """`fn(*tensors)` under torch.inference_mode, eager or torch.compile'd; None when torch is missing."""
    try:
        import torch
    except ImportError:
        return None
    if threads:
        torch.set_num_threads(threads)
    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    f = torch.compile(fn) if compile else fn

    def run():
        with torch.inference_mode():
            return f(*tensors)

    return run


def torch_module():
    """The torch module, or None when it is not installed (every torch peer is then skipped)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_outputs(out) -> list[np.ndarray]:
    """A torch result (a tensor or a tuple of them) as a list of numpy arrays, to check against ours."""
    items = out if isinstance(out, (tuple, list)) else [out]
    return [t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t) for t in items]


def torch_compiled_runner(fn: Callable, arrays: list[np.ndarray], threads: int | None = None,
                          **compile_kw) -> tuple[Callable[[], object], float, object] | None:
    """torch.compile(fn, **compile_kw) as a runner, compiled now: (runner, compile_s, first output).

    torch._dynamo.reset() first, so every case compiles from scratch and none inherits another case's
    shapes (which would make dynamo recompile it as dynamic). compile_s is the first call's wall time
    (dynamo trace + inductor codegen + C++ build; inductor's on-disk cache may shorten repeat runs).
    None when torch is missing."""
    torch = torch_module()
    if torch is None:
        return None
    import time

    torch._dynamo.reset()
    run = torch_runner(torch.compile(fn, **compile_kw), arrays, threads)
    t0 = time.perf_counter()
    first = run()
    return run, time.perf_counter() - t0, first


def torch_inductor_cache(mode: str = "fresh"):
    """Context for the torch.compile peers' on-disk inductor cache (a compiled shape is cached across runs).

    'fresh': an empty temporary cache for the duration (removed after), so every compile time is a cold
    one, as in a first run; 'warm': the user's cache as it is (repeat runs then compile much faster).
    Yields the cache directory ('fresh') or None."""
    import contextlib
    import tempfile

    if mode not in ("fresh", "warm"):
        raise ValueError(f"torch cache mode must be 'fresh' or 'warm', not {mode!r}")

    @contextlib.contextmanager
    def ctx():
        torch = torch_module()
        if mode == "warm" or torch is None:
            yield None
            return
        from torch._inductor.runtime.cache_dir_utils import temporary_cache_dir

        with tempfile.TemporaryDirectory(prefix="msgx-bench-inductor-") as d, temporary_cache_dir(d):
            yield d
    return ctx()


def add_torch_args(p) -> None:
    """Options of the suites that run torch peers."""
    p.add_argument("--no-torch", action="store_true", help="skip the torch peers")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile (slow to compile)")
    p.add_argument("--torch-cache", default="fresh", choices=["fresh", "warm"],
                   help="torch.compile's on-disk inductor cache: fresh (empty, cold compile times; "
                        "default) or warm (the user's cache: repeat runs compile faster)")
