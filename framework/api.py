"""MindSpore-style autograd and graph compilation: `grad`, `value_and_grad`, `jit`.

PyNative: the function runs on an eager tape; the backward graph (from the registry's grad rules) then runs
op by op. Graph mode (`jit`): the whole step is traced once into IR, compiled by the O0/O1 pipeline and run
by the GraphExecutor; parameters are graph inputs and their assigned values graph outputs.
"""

from __future__ import annotations

import functools
import inspect
import time
from typing import Sequence

import numpy as np

from .autodiff import differentiable, grad_graph
from .context import normalize_jit_level
from .errors import GradError, InputShapeError, InputTypeError
from .graph_builder import Builder
from .ir import Graph, TensorType, Value
from .nn.cell import train_mode_changes
from .tensor import Parameter, Tensor, Trace, apply, current_trace, kernel_for, wrap


def _positions(grad_position):
    if grad_position is None:
        return ()
    return (grad_position,) if isinstance(grad_position, int) else tuple(grad_position)


def _run_backward(tape: Trace, nodes, constants) -> dict:
    """Run backward nodes op by op (PyNative): the arrays of every value, forward ones included."""
    env = dict(tape.env)
    env.update(constants)
    for n in nodes:
        k = kernel_for(n.op, n.domain, n.opset, n.attrs, len(n.outputs))
        env.update(zip(n.outputs, k(*(None if v is None else env[v] for v in n.inputs))))
    return env


def _differentiate(fn, args, positions, weights, has_aux, sens):
    outer = current_trace()
    graph_mode = outer is not None and not outer.eager
    if outer is not None and outer.eager:
        # the inner backward would run outside the outer tape, which would then see its result as a constant
        # (a gradient of zero): refused rather than wrong
        raise GradError("a gradient of a gradient is not supported in PyNative mode: run the outer function "
                        "under framework.jit (graph mode differentiates the inner backward)")
    tape = outer if graph_mode else Trace(eager=True, name="tape")
    bad = [i for i in positions if not -len(args) <= i < len(args)]
    if bad:
        raise GradError(f"grad_position {bad[0]} is out of range for {len(args)} argument(s)")
    args = [a if isinstance(a, Tensor) else wrap(a) for a in args]
    for i in positions:  # a tensor passed at several positions: each differentiated one is its own leaf
        if any(args[i] is args[j] for j in range(len(args)) if j != i):
            args[i] = apply("Identity", args[i]) if graph_mode else Tensor(args[i]._data)
    if graph_mode:
        out = fn(*args)
    else:
        with tape:
            for i in positions:
                tape.leaf(args[i], as_input=True)
            out = fn(*args)
    loss, aux = (out[0], tuple(out[1:])) if has_aux else (out, ())
    if not isinstance(loss, Tensor):
        raise GradError(f"the function must return a Tensor to differentiate, not {type(loss).__name__}")
    with tape:
        y = tape.value_of(loss)
        seed = None if sens is None else tape.value_of(wrap(sens))
    if not differentiable(y):
        raise GradError(f"cannot differentiate an output of dtype {y.type.dtype}")
    if seed is not None and not _same_shape(seed.type.shape, y.type.shape):
        raise GradError(f"the sensitivity's shape {tuple(seed.type.shape)} is not the output's "
                        f"{tuple(y.type.shape)}")
    size = np.prod([int(d) if isinstance(d, (int, np.integer)) else 2 for d in y.type.shape])
    if sens is None and size != 1:
        raise GradError(
            f"gradient of a non-scalar output (shape {tuple(y.type.shape)}) needs a sensitivity: "
            "reduce it to a scalar or pass sens_param=True and the sensitivity as the last argument"
        )
    xs = []
    for i in positions:
        if not isinstance(args[i], Tensor):
            raise GradError(f"argument {i} is not a Tensor")
        xs.append(tape.value_of(args[i]))
    for w in weights:
        hit = tape.leaves.get(id(w))
        if hit is None:
            name = getattr(w, "name", repr(w))
            raise GradError(f"parameter {name!r} is not in the graph: the function never reads it")
        xs.append(hit[0])
    forward = Graph((), (y,), tuple(tape.b.nodes), tape.b.constants)
    if graph_mode:
        _, _, grads = grad_graph(forward, [y], xs, [seed], builder=tape.b)
        tape.b.needed = None
        wrapped = [Tensor(None, _value=g, _trace=tape) for g in grads]
    else:
        bb = Builder(tape.b.known, name="bwd")
        nodes, consts, grads = grad_graph(forward, [y], xs, [seed], builder=bb)
        env = _run_backward(tape, nodes, consts)
        wrapped = [Tensor(env[g]) for g in grads]
    pos, wts = wrapped[: len(positions)], tuple(wrapped[len(positions) :])
    return out, pos, wts


def _same_shape(a, b) -> bool:
    """Shapes equal where both dims are known (a symbolic dim matches any)."""
    return a is None or b is None or (len(a) == len(b) and all(
        not isinstance(x, (int, np.integer)) or not isinstance(y, (int, np.integer)) or x == y
        for x, y in zip(a, b)))


def _format(pos, wts, grad_position, weights):
    pos_part = pos[0] if isinstance(grad_position, int) else tuple(pos)
    if weights is None:
        return pos_part
    return wts if grad_position is None else (pos_part, wts)


def _weights(weights) -> list:
    if weights is None:
        return []
    if isinstance(weights, Tensor):
        return [weights]
    return list(weights)


def value_and_grad(fn, grad_position=0, weights=None, has_aux: bool = False, sens_param: bool = False):
    """fn -> f(*args) = (fn(*args), gradients): of args at grad_position and/or of `weights` (a tuple)."""
    positions, ws = _positions(grad_position), _weights(weights)
    if not positions and not ws:
        raise GradError("value_and_grad needs grad_position or weights")

    @functools.wraps(fn)
    def wrapper(*args):
        sens = None
        if sens_param:
            *args, sens = args
        out, pos, wts = _differentiate(fn, args, positions, ws, has_aux, sens)
        return out, _format(pos, wts, grad_position, weights)

    return wrapper


def grad(fn, grad_position=0, weights=None, has_aux: bool = False, sens_param: bool = False):
    """Like value_and_grad, returning only the gradients (and fn's auxiliary outputs when has_aux)."""
    vg = value_and_grad(fn, grad_position, weights, has_aux, sens_param)

    @functools.wraps(fn)
    def wrapper(*args):
        out, g = vg(*args)
        return (g, tuple(out[1:])) if has_aux else g

    return wrapper


# ---------------------------------------------------------------- jit


def _flatten(out, leaves: list):
    """Tensors of a nested tuple/list structure, in order; returns the structure with indices in place."""
    if isinstance(out, (tuple, list)):
        return type(out)(_flatten(o, leaves) for o in out)
    leaves.append(out)
    return len(leaves) - 1


def _unflatten(struct, values):
    if isinstance(struct, (tuple, list)):
        return type(struct)(_unflatten(s, values) for s in struct)
    return values[struct]


class _Compiled:
    __slots__ = ("executor", "leaves", "n_out", "updates", "kind", "graph", "compile_seconds")


class JitFunction:
    """A function compiled into one graph per input signature (dynamic dims from `input_signature`)."""

    def __init__(
        self,
        fn,
        jit_level: str = "O1",
        input_signature: Sequence[Tensor] | None = None,
        graph_kernel_flags: str = "",
    ):
        self.fn, self.jit_level, self.flags = fn, jit_level, graph_kernel_flags
        self.input_signature = input_signature
        self.cache: dict = {}
        self._last: tuple = (None, None)  # (shapes and dtypes of the last call's arrays, its compiled graph)
        functools.update_wrapper(self, fn)
        self.__name__ = getattr(fn, "__name__", type(fn).__name__)  # a Cell has no __name__

    def _specs(self, args):
        sig = self.input_signature
        if sig is None:
            sig = getattr(getattr(self.fn, "__self__", self.fn), "_input_signature", None)
        if sig is None:
            return [TensorType(a.dtype, a.shape) for a in args]
        if len(sig) != len(args):
            raise InputShapeError(
                f"{self.__name__}: input_signature has {len(sig)} tensors, called with " f"{len(args)}"
            )
        specs = []
        for i, (s, a) in enumerate(zip(sig, args)):
            t = s._type
            if a.dtype != t.dtype:
                raise InputTypeError(f"{self.__name__}: argument {i} has dtype {a.dtype}, expected {t.dtype}")
            if len(a.shape) != len(t.shape) or any(
                isinstance(d, int) and d != g for d, g in zip(t.shape, a.shape)
            ):
                raise InputShapeError(
                    f"{self.__name__}: argument {i} has shape {a.shape}, expected "
                    f"{tuple(str(d) if not isinstance(d, int) else d for d in t.shape)}"
                )
            specs.append(t)
        return specs

    def _compile(self, args, specs) -> _Compiled:
        from .backends import backends_for
        from .compile import run_passes
        from .executor import GraphExecutor

        t0 = time.perf_counter()
        tr = Trace(eager=False, name="jit")
        arg_values = [Value(t, f"arg{i}") for i, t in enumerate(specs)]
        with tr:
            out = self.fn(*(Tensor(None, _value=v, _trace=tr) for v in arg_values))
            flat = []
            kind = _flatten(out, flat)
            out_values = [tr.value_of(wrap(o)) for o in flat]
        updates = list(tr.updates.values())
        leaves = [t for _, t in tr.inputs]
        g = Graph(
            tuple(arg_values) + tuple(v for v, _ in tr.inputs),
            tuple(out_values) + tuple(v for _, v in updates),
            tuple(tr.b.nodes),
            dict(tr.b.constants),
            name=getattr(self.fn, "__name__", "jit"),
        )
        c = _Compiled()
        c.graph = run_passes(g, self.jit_level, graph_kernel_flags=self.flags)
        c.executor = GraphExecutor(c.graph, backends_for(self.jit_level, self.flags))
        c.leaves, c.n_out, c.updates, c.kind = leaves, len(out_values), [p for p, _ in updates], kind
        c.compile_seconds = time.perf_counter() - t0
        return c

    def __call__(self, *args, **kwargs):
        if kwargs:  # keywords bound to their positions: the graph's inputs are positional
            args = inspect.signature(self.fn).bind(*args, **kwargs).args
        if current_trace() is not None:
            # inside grad's tape or another jit's trace: the function's ops join that recording (recorded for
            # the gradient, or inlined into the outer graph); a compiled call would cut the tape
            return self.fn(*args)
        args = [wrap(a) for a in args]
        feeds = [a._data for a in args]
        # a cell's training mode is traced into the graph (Dropout, BatchNorm): set_train recompiles
        raw = (train_mode_changes(),) + tuple((a.dtype, a.shape) for a in feeds if a is not None)
        c = self._last[1] if len(raw) == len(feeds) + 1 and self._last[0] == raw else None
        if c is None:  # a new argument signature: check it against input_signature, compile if new
            specs = self._specs(args)
            key = (raw[0],) + tuple((t.dtype.str, tuple(d if isinstance(d, int) else None for d in t.shape))
                                    for t in specs)
            c = self.cache.get(key)
            if c is None:
                c = self.cache[key] = self._compile(args, specs)
            self._last = (raw, c)
        outs = c.executor.run(feeds + [t._data for t in c.leaves])
        for p, arr in zip(c.updates, outs[c.n_out :]):
            p._data = arr
        return _unflatten(c.kind, [Tensor(a) for a in outs[: c.n_out]])

    @property
    def compiled(self) -> list:
        return list(self.cache.values())


def jit(fn=None, *, jit_level: str = "O1", input_signature=None, graph_kernel_flags: str = ""):
    """Decorator: compile fn (a whole train step: forward, backward, optimizer) into one graph. Called
    inside grad/value_and_grad or inside another jit function, fn runs as part of that (recorded or
    inlined), as MindSpore inlines nested graphs."""
    normalize_jit_level(jit_level)
    if fn is None:
        return lambda f: JitFunction(f, jit_level, input_signature, graph_kernel_flags)
    return JitFunction(fn, jit_level, input_signature, graph_kernel_flags)


__all__ = ["JitFunction", "Parameter", "grad", "jit", "value_and_grad"]
