"""Control flow: If, Loop, Scan (opset 8 batched form and 9+ axes form), SequenceMap. Bodies run through
ctx.run_graph(graph, inputs); the executor supplies values the bodies capture from outer scopes."""
from __future__ import annotations

import numpy as np

from ..errors import KernelError
from ..ir import TensorType
from .registry import op


def _empty_scan(value_type):
    """A zero-iteration scan output: shape (0, *element shape) when the body declares it, else (0,)."""
    if isinstance(value_type, TensorType) and value_type.shape is not None and value_type.is_static:
        return np.zeros((0, *value_type.shape), dtype=value_type.dtype or np.float32)
    known = isinstance(value_type, TensorType) and value_type.dtype is not None
    return np.zeros((0,), dtype=value_type.dtype if known else np.float32)


def _truth(cond) -> bool:
    return bool(np.asarray(cond).reshape(-1)[0]) if np.size(cond) else False


@op("If")
def _if(ctx, cond):
    graph = ctx["then_branch"] if _truth(cond) else ctx["else_branch"]
    return tuple(ctx.run_graph(graph, []))


@op("Loop")
def _loop(ctx, max_trip=None, cond=None, *carried):
    body = ctx["body"]
    n_carried = len(carried)
    n_scan = len(body.outputs) - 1 - n_carried
    limit = None if max_trip is None or np.size(max_trip) == 0 else int(np.ravel(max_trip)[0])
    keep_going = True if cond is None or np.size(cond) == 0 else _truth(cond)
    state = list(carried)
    scans: list[list] = [[] for _ in range(n_scan)]
    i = 0
    while keep_going and (limit is None or i < limit):
        outs = ctx.run_graph(body, [np.array(i, dtype=np.int64), np.array(keep_going)] + state)
        keep_going = _truth(outs[0])
        state = list(outs[1:1 + n_carried])
        for s, v in zip(scans, outs[1 + n_carried:]):
            s.append(v)
        i += 1
    stacked = [np.stack(s) if s else _empty_scan(body.outputs[1 + n_carried + k].type)
               for k, s in enumerate(scans)]
    return tuple(state + stacked)


def _scan_core(ctx, body, states, xs, in_axes, in_dirs, out_axes, out_dirs):
    """One scan over the inputs `xs` (each sliced along its axis): final states and stacked outputs."""
    n_state = len(states)
    n_out = len(body.outputs) - n_state
    lengths = {x.shape[a] for x, a in zip(xs, in_axes)}
    if len(lengths) > 1:
        raise KernelError(f"Scan inputs disagree on the sequence length: {sorted(lengths)}")
    steps = lengths.pop() if lengths else 0
    outs: list[list] = [[] for _ in range(n_out)]
    state = list(states)
    for t in range(steps):
        slices = [np.take(x, steps - 1 - t if d else t, axis=a) for x, a, d in zip(xs, in_axes, in_dirs)]
        res = ctx.run_graph(body, state + slices)
        state = list(res[:n_state])
        for o, v in zip(outs, res[n_state:]):
            o.append(np.asarray(v))
    stacked = []
    for k, o in enumerate(outs):
        if not o:
            stacked.append(_empty_scan(body.outputs[n_state + k].type))
            continue
        if out_dirs[k]:
            o = o[::-1]
        stacked.append(np.stack(o, axis=out_axes[k] % (o[0].ndim + 1)))
    return state, stacked


def _axes(ctx, name, n):
    vals = list(ctx.get(name) or [0] * n)
    if len(vals) != n:
        raise KernelError(f"Scan attribute {name} has {len(vals)} entries, expected {n}")
    return vals


@op("Scan", since=9)
def _scan(ctx, *inputs):
    body = ctx["body"]
    n_in = ctx["num_scan_inputs"]
    states, xs = list(inputs[:len(inputs) - n_in]), list(inputs[len(inputs) - n_in:])
    n_out = len(body.outputs) - len(states)
    in_axes = [a % x.ndim for a, x in zip(_axes(ctx, "scan_input_axes", n_in), xs)]
    in_dirs = _axes(ctx, "scan_input_directions", n_in)
    out_axes = _axes(ctx, "scan_output_axes", n_out)
    out_dirs = _axes(ctx, "scan_output_directions", n_out)
    state, stacked = _scan_core(ctx, body, states, xs, in_axes, in_dirs, out_axes, out_dirs)
    return tuple(state + stacked)


@op("Scan", since=8)
def _scan8(ctx, seq_lens, *inputs):
    body = ctx["body"]
    n_in = ctx["num_scan_inputs"]
    states, xs = list(inputs[:len(inputs) - n_in]), list(inputs[len(inputs) - n_in:])
    n_out = len(body.outputs) - len(states)
    dirs = _axes(ctx, "directions", n_in)
    batch = (states or xs)[0].shape[0]
    finals: list[list] = [[] for _ in states]
    outs: list[list] = [[] for _ in range(n_out)]
    for b in range(batch):
        steps = None if seq_lens is None else int(seq_lens[b])
        seq = [x[b] if steps is None else x[b][:steps] for x in xs]
        state, stacked = _scan_core(ctx, body, [s[b] for s in states], seq, [0] * n_in, dirs,
                                    [0] * n_out, [0] * n_out)
        for f, v in zip(finals, state):
            f.append(np.asarray(v))
        for o, v in zip(outs, stacked):
            o.append(v)
    return tuple([np.stack(f) for f in finals] + [np.stack(o) for o in outs])


# Scan-8's first input (sequence_lens) is optional; the loop over batch starts with it.
_scan8.__doc__ = "Scan, opset 8: inputs carry a leading batch axis; scan runs per batch entry."


@op("SequenceMap", since=17)
def _sequence_map(ctx, seq, *extra):
    body = ctx["body"]
    n_out = len(body.outputs)
    results: list[list] = [[] for _ in range(n_out)]
    for i in range(len(seq)):
        args = [seq[i]] + [e[i] if isinstance(e, list) else e for e in extra]
        for r, v in zip(results, ctx.run_graph(body, args)):
            r.append(v)
    return tuple(results)
