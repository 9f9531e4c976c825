"""Layout ops on CuPy arrays, so tensors between GPU clusters never visit the host.

Each builder takes the node and returns kernel(*arrays) -> list. A Transpose is a DVM program (one strided
load, one store) run by the CUDA VM: no CuPy kernel is compiled at run time for a new rank or shape. Shape
operands (Reshape targets, axes) are small and read on the host.
"""
from __future__ import annotations

import math

import numpy as np

from framework import ops
from framework.ir import Node


def _attrs(node: Node) -> dict:
    return {**ops.get(node.op, node.domain, node.opset, node.name).attrs, **node.attrs}


def _host_ints(x) -> list[int]:
    return [int(v) for v in np.asarray(x.get() if hasattr(x, "get") else x).reshape(-1)]


def _reshape(at):
    allowzero = int(at.get("allowzero", 0))

    def k(x, shape):
        tgt = [x.shape[i] if d == 0 and not allowzero else d for i, d in enumerate(_host_ints(shape))]
        return [x.reshape(tgt)]
    return k


def _axes(node, at, x, rest):
    if rest and rest[0] is not None:
        return _host_ints(rest[0])
    return list(at.get("axes") or ())


def transpose_program(shape: tuple, perm: tuple, dtype, tiling) -> np.ndarray | None:
    """A DVM program copying a contiguous `shape` array into its `perm` transpose (None: rank > 4, empty)."""
    from .. import isa
    rank, n = len(shape), math.prod(shape)
    dt = isa.DTYPE_OF.get(np.dtype(dtype))
    if not 1 <= rank <= 4 or n == 0 or dt is None:
        return None
    st = [math.prod(shape[k + 1:]) for k in range(rank)]
    D = [1] * (4 - rank) + [shape[p] for p in perm]
    S = [0] * (4 - rank) + [st[p] for p in perm]
    tr, tc = tiling(D[0] * D[1] * D[2], D[3], 1, False)
    O = isa.Opcode
    code = [isa.MAGIC, isa.VERSION, 0, 3, 2, 1, tr, tc, *D, 0, 0, 0, 0,
            int(dt) | int(isa.Role.INPUT) << 8, n, int(dt) | int(isa.Role.OUTPUT) << 8, n,
            isa.word0(O.LOAD_VIEW, dt, 0, 0, 0), 0, *S, isa.word0(O.STORE, dt, 0, 1, 0), 0, isa.word0(O.END)]
    code[isa.H["n_words"]] = len(code)
    return np.array(code, np.uint64)


def builders(cp, vm, tiling) -> dict:
    """op -> (node -> kernel) for the ops taken on the device."""
    def transpose(node):
        perm_attr = _attrs(node).get("perm")
        programs: dict = {}

        def k(x):
            perm = tuple(perm_attr) if perm_attr else tuple(range(x.ndim - 1, -1, -1))
            key = (x.shape, perm, x.dtype)
            code = programs.get(key)
            if code is None:
                if len(programs) > 256:
                    programs.clear()
                code = programs[key] = transpose_program(x.shape, perm, x.dtype, tiling)
            if code is None:
                return [cp.ascontiguousarray(cp.transpose(x, perm))]
            out = cp.empty(tuple(x.shape[p] for p in perm), x.dtype)
            vm.run(code, [cp.ascontiguousarray(x).reshape(-1), out.reshape(-1)])
            return [out]
        return k

    def reshape(node):
        return _reshape(_attrs(node))

    def unsqueeze(node):
        at = _attrs(node)

        def k(x, *rest):
            axes = _axes(node, at, x, rest)
            n = x.ndim + len(axes)
            for a in sorted(a % n for a in axes):
                x = cp.expand_dims(x, a)
            return [x]
        return k

    def squeeze(node):
        at = _attrs(node)

        def k(x, *rest):
            axes = _axes(node, at, x, rest)
            return [cp.squeeze(x, tuple(a % x.ndim for a in axes)) if axes else cp.squeeze(x)]
        return k

    def flatten(node):
        axis = int(_attrs(node).get("axis", 1))

        def k(x):
            a = axis % x.ndim if x.ndim else 0
            return [x.reshape(int(np.prod(x.shape[:a])), -1)]
        return k

    return {"Transpose": transpose, "Reshape": reshape, "Unsqueeze": unsqueeze, "Squeeze": squeeze,
            "Flatten": flatten, "Identity": lambda node: (lambda x: [x])}


def takes(node: Node) -> bool:
    """Float data only: integer tensors are shape computations, which stay on the host."""
    if node.domain not in ("", "ai.onnx") or node.op not in ("Transpose", "Reshape", "Unsqueeze", "Squeeze",
                                                           "Flatten", "Identity"):
        return False
    t = getattr(node.inputs[0], "type", None) if node.inputs else None
    dt = getattr(t, "dtype", None)
    if dt is None or getattr(t, "shape", None) is None:
        return False
    return np.dtype(dt).kind == "f"
