"""Checkpoints in MindSpore's naming: save_checkpoint, load_checkpoint, load_param_into_net.

A checkpoint is a numpy `.npz` archive of parameter name -> array, written atomically (temporary file, then
rename), so a job killed mid-write leaves the previous checkpoint intact. Data-parallel parameters are
replicated, so one file written by rank 0 loads into any number of ranks.
"""
from __future__ import annotations

import os
import tempfile
import zipfile

import numpy as np

from .errors import MsgxError


class CheckpointError(MsgxError):
    """A checkpoint is missing, unreadable, or does not fit the network it is loaded into."""


def _named_arrays(obj) -> dict[str, np.ndarray]:
    if isinstance(obj, dict):
        return {str(k): np.asarray(getattr(v, "asnumpy", lambda v=v: v)()) for k, v in obj.items()}
    if hasattr(obj, "parameters_and_names"):
        return {name: p.asnumpy() for name, p in obj.parameters_and_names()}
    raise CheckpointError(f"save_checkpoint takes a Cell or a dict of name -> array, not {type(obj).__name__}")


def save_checkpoint(obj, path: str | os.PathLike) -> None:
    """Write every parameter of a Cell (or a name -> array dict) to `path`."""
    arrays = _named_arrays(obj)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".ckpt-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The name -> array dict stored at `path`."""
    try:
        with np.load(os.fspath(path), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {os.fspath(path)!r} does not exist") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise CheckpointError(f"checkpoint {os.fspath(path)!r} is not a readable checkpoint: {e}") from None


def load_param_into_net(net, params: dict[str, np.ndarray], strict: bool = True) -> list[str]:
    """Copy `params` into the net's parameters by name; returns the names of the net's parameters not found.
    With strict=True a missing name, an unknown name or a shape/dtype mismatch is a CheckpointError."""
    own = dict(net.parameters_and_names())
    missing = [n for n in own if n not in params]
    unknown = [n for n in params if n not in own]
    if strict and (missing or unknown):
        raise CheckpointError(f"checkpoint does not fit {type(net).__name__}: missing {missing}, unknown {unknown}")
    for name, p in own.items():
        if name not in params:
            continue
        arr = np.asarray(params[name])
        if arr.shape != tuple(p.shape) or arr.dtype != p.dtype:
            raise CheckpointError(f"parameter {name!r}: checkpoint has {arr.dtype}{list(arr.shape)}, the net "
                                  f"has {p.dtype}{list(p.shape)}")
        p.set_data(arr.copy())
    return missing
