"""Encoder: a Fused body + concrete input shapes -> a DVM Program (bytecode + buffer roles); O(#ops).

Steps: concrete shapes; host nodes (MatMul/Gemm/Conv of an epilogue) and shape-only reshapes of buffers; one
iteration space P (the widest elementwise shape, reduced axes moved last and adjacent dims merged); then one
pass emitting loads (broadcast folded into view strides), ops (scalars as immediates), stores, registers
allocated by liveness. Layout in isa.py's docstring. The shapes step always runs; the rest runs once per
signature (dtypes, and which dims of each value are 0, 1 or more) and is kept as a template.Template whose
size-dependent words later shapes refill.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from framework import ops
from framework.dtypes import f32_reciprocal
from framework.errors import MsgxError
from framework.ir import Graph, Node, TensorType
from framework.ops import gemm
from framework.ops.math import matmul_shape

from . import isa, recycle
from .isa import DType, Opcode as O
from .template import Template

ARENA_BYTES = 256 * 1024  # per-thread register arena of an elementwise program's tiles, about one L2
# A reduction's tile registers stay in L1 together: each of its passes (row sums, differences, their squares,
# the scaling) then reads what the one before wrote there, not in L2. LayerNorm over 8192x1024 on 2 threads
# took 2.14 ms with 20-row tiles (80 KiB registers), 2.09 with 4 rows, 1.67 with these 2.
REDUCE_TILE_BYTES = 32 * 1024
# An elementwise tile's registers and the pieces of the buffers it streams through fit L1 together (each
# instruction is a pass over the tile; measured on the 6-op chain: 1x512 tiles took 2/3 the time of 1x1024),
# unless that leaves fewer than L1_MIN_PER_INSTR elements per instruction: then dispatch costs more than
# L1 saves (a 30-instruction Adam step ran 25% slower on 256-element tiles) and the arena budget applies
L1_TILE_BYTES = 16 * 1024
L1_MIN_PER_INSTR = 32
TEMPLATES_KEPT = 64  # per body: signatures (dtypes, which dims are 0 or 1) whose bytecode layout is cached
HOST_OPS = frozenset({"MatMul", "Gemm", "Conv", "FusedConv"})
RESHAPES = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})
SHAPE_OPERAND_OPS = frozenset({"Reshape", "Squeeze", "Unsqueeze", "Expand"})  # input 1 gives the output shape
UNARY = {"Exp": O.EXP, "Log": O.LOG, "Sqrt": O.SQRT, "Tanh": O.TANH, "Erf": O.ERF, "Sigmoid": O.SIGMOID,
         "Abs": O.ABS, "Neg": O.NEG, "Reciprocal": O.RECIP, "Floor": O.FLOOR, "Ceil": O.CEIL,
         "Round": O.ROUND,
         "Not": O.NOT, "IsNaN": O.ISNAN, "IsInf": O.ISINF}
BINARY = {"Add": O.ADD, "Sub": O.SUB, "Mul": O.MUL, "Div": O.DIV, "Pow": O.POW, "Max": O.MAX, "Min": O.MIN,
          "And": O.AND, "Or": O.OR, "Xor": O.XOR, "Mod": O.MOD, "Equal": O.EQ, "Less": O.LT,
          "LessOrEqual": O.LE, "Greater": O.GT, "GreaterOrEqual": O.GE}
COMMUTATIVE = frozenset({O.ADD, O.MUL, O.MAX, O.MIN, O.AND, O.OR, O.XOR, O.EQ})
REDUCE = {"ReduceSum": O.RSUM, "ReduceMax": O.RMAX, "ReduceMin": O.RMIN, "ReduceProd": O.RPROD,
          "GlobalAveragePool": O.RSUM, "GlobalMaxPool": O.RMAX}
SUPPORTED_OPS = HOST_OPS | RESHAPES | set(UNARY) | set(BINARY) | set(REDUCE) | {"Where", "Cast", "Relu", "Expand"}


class UnsupportedError(MsgxError):
    """The encoder cannot express this fused body; the DVM backend declines the node."""


@dataclass(slots=True)
class Program:
    """Bytecode plus how to bind it. A source is ("in", k) (body input), ("host", k) (host node output),
    ("const", array) or ("slot", i). slots[i] = (role, source or None, shape, dtype); outputs[j] = (source,
    shape); host[k] = (kernel, input sources, n_outputs), run before the VM (an epilogue's MatMul/Conv).
    An encoded program's tables are tuples of ints, strings, arrays and dtypes where they can be, which the
    garbage collector stops tracking (its collections walk every tracked object younger than they are; they
    came to a millisecond inside a new shape's encodes). The CPU backend keeps only a program's bound runner
    and code; the GPU backend keeps the program."""

    code: np.ndarray
    slots: list | tuple = field(default_factory=list)
    host: list | tuple = field(default_factory=list)
    outputs: list | tuple = field(default_factory=list)

    def final(self) -> "Program":
        """The program with its tables made tuples (encoding is done)."""
        self.slots, self.host, self.outputs = tuple(self.slots), tuple(self.host), tuple(self.outputs)
        return self

    def run(self, arrays, vm_run) -> list:
        """Run host nodes, bind buffers, call vm_run(code, buffers), return the body's outputs. A vm_run
        with a `prepare(code) -> run(buffers)` attribute gets the code once (the C VM decodes it once)."""
        return self.runner(vm_run)(*arrays)

    def runner(self, vm_run):
        """run(*arrays) -> outputs, bound to vm_run (the backend keeps it per shape)."""
        return _bind(self, vm_run)


def _bind(prog: Program, vm_run):
    """prog.run as straight-line code for this program's sources, slots and outputs: each kernel call runs
    many times, and resolving sources generically cost more than a small program takes to execute."""
    prepare = getattr(vm_run, "prepare", None)
    # a VM that converts inputs itself does so only for those that are not C-contiguous arrays of their slot's
    # dtype (most are): asc here cost 0.2 µs per input and call
    converts = getattr(vm_run, "converts", False)
    dtypes = tuple(dtype for _, _, _, dtype in prog.slots)
    vm = prepare(prog.code, _slot_converter(dtypes)) if converts else \
        prepare(prog.code) if prepare is not None else functools.partial(vm_run, prog.code)
    env = {"np": np, "asc": np.ascontiguousarray, "empty": np.empty, "take": recycle.take,
           "give": recycle.give, "VM": vm}
    lines, host, recycled = [], [], []  # host: expression of each host output, in order
    # a returned slot is allocated in the shape it is returned in (a reshape per output cost 0.3 µs)
    shaped = {}
    for src, shape in prog.outputs:
        if src[0] == "slot":
            shaped.setdefault(src[1], tuple(shape))

    def ref(src) -> str:
        if src is None:
            return "None"
        kind, v = src
        if kind == "in":
            return f"arrays[{v}]"
        if kind == "host":
            return host[v]
        if kind == "slot":
            return f"b{v}"
        name = f"K{len(env)}"  # a constant
        env[name] = v
        return name

    for j, (kernel, refs, n_out) in enumerate(prog.host):
        direct = getattr(kernel, "direct", None) if n_out == 1 else None  # its one result, no list
        env[f"H{j}"] = direct or kernel
        lines.append(f"h{j} = H{j}({', '.join(ref(r) for r in refs)})")
        host += [f"h{j}"] if direct else [f"h{j}[{m}]" for m in range(n_out)]
    for i, (role, src, shape, dtype) in enumerate(prog.slots):
        env[f"D{i}"] = dtype
        n = math.prod(shape)
        if role == isa.Role.INPUT and src is not None and src[0] == "const":  # converted once, here
            lines.append(f"b{i} = {ref(('const', np.ascontiguousarray(src[1], dtype)))}")
        elif role == isa.Role.INPUT:  # the VMs take any C-contiguous array with the slot's element count
            lines.append(f"b{i} = {ref(src)}" if converts else f"b{i} = asc({ref(src)}, D{i})")
        elif n * dtype.itemsize >= recycle.MIN_BYTES:
            env[f"N{i}"] = n
            lines.append(f"b{i} = take(N{i}, D{i})")
            recycled.append(i)
        elif i in shaped:
            env[f"E{i}"] = shaped[i]
            lines.append(f"b{i} = empty(E{i}, D{i})")
        else:
            env[f"N{i}"] = n
            lines.append(f"b{i} = empty(N{i}, D{i})")
    lines.append(f"VM([{', '.join(f'b{i}' for i in range(len(prog.slots)))}])")
    lines += [f"give(b{i})" for i in recycled]
    outs = []
    for k, (src, shape) in enumerate(prog.outputs):
        env[f"S{k}"] = tuple(shape)
        if src[0] == "slot" and src[1] not in recycled and shaped[src[1]] == tuple(shape):
            outs.append(f"b{src[1]}")
            continue
        wrap = "np.array" if src[0] == "const" else "" if src[0] == "slot" else "np.asarray"
        outs.append(f"{wrap}({ref(src)}).reshape(S{k})")
    lines.append(f"return [{', '.join(outs)}]")
    exec(_compiled("def run(*arrays):\n" + "\n".join("    " + line for line in lines)), env)
    return env["run"]


@functools.lru_cache(maxsize=1024)
def _compiled(source: str):
    """The binding's code: sizes and constants are names in its globals, so the programs of one body at every
    shape share one source, compiled once (compiling took ~100 µs per kernel, more than its encode)."""
    return compile(source, "<dvm program binding>", "exec")


@functools.lru_cache(maxsize=256)
def _slot_converter(dtypes: tuple):
    """convert(array, slot) for programs with these slot dtypes: shared, not one more object per program."""
    return lambda a, slot: np.ascontiguousarray(a, dtypes[slot])


@functools.lru_cache(maxsize=None)
def _flat_dot(k: int):
    """A host MatMul of [..., k] by a [k, n] matrix on our GEMM (framework.ops.gemm), or where it declines as
    one 2-D numpy GEMM with its result left [rows, n]: the VM reads buffers flat and the binding reshapes what
    the body returns, so the reshapes around np.matmul (half of a small matmul's time) are skipped."""
    def direct(a, b):
        out = gemm.matmul(a, b)
        return np.dot(a.reshape(-1, k), b) if out is None else out
    return _with_direct(direct)


@functools.lru_cache(maxsize=1024)
def _small_dot(rows: int, k: int):
    """_flat_dot for a product our GEMM leaves to numpy (gemm.BLAS_ONE_THREAD_MACS): np.dot straight away
    (a program is encoded for one shape, so the choice is made once; at sequence length 1 the transformer's
    12 host products each saved the call into gemm.matmul)."""
    shape = (rows, k)
    return _with_direct(lambda a, b: np.dot(a.reshape(shape), b))


def _with_direct(direct):
    def kernel(a, b):
        return [direct(a, b)]
    kernel.direct = direct
    return kernel


@functools.lru_cache(maxsize=256)
def _reciprocal_product(c: float) -> tuple:
    """(opcode, immediate) for x / c: x * (1 / c) where dtypes.f32_reciprocal allows it, else the division."""
    r = f32_reciprocal(c)
    return (O.DIV, float(np.float32(c))) if r is None else (O.MUL, r)


_NO_CODE = np.zeros(0, np.uint64)  # a Program's code until it is encoded


def _chain_order(compute: list) -> list:
    """An elementwise body's compute nodes in an order whose instructions mostly read the one just before.

    The VMs run a run of elementwise instructions as one chain over vector registers: an operand written by
    the previous step stays in registers, any other computed operand goes through a spilled slot (on an
    AVX-512 machine 8 vector stores and loads per 128 elements, and the chain kernels fuse at most
    VM_CHAIN_MAX steps). Body order interleaves independent subexpressions (Adam's update spilled 6 of its 14
    results). Depth first from the results, the operand with the larger subtree first (Sethi-Ullman), puts
    each node right after one of its operands; one-element results (hyper-parameter arithmetic, which a chain
    cannot hold) go first. Any topological order computes the same values, so results do not change."""
    producer = {id(nv): k for k, (_, _, nv) in enumerate(compute)}
    deps = [[producer[id(x)] for x in ins if x is not None and id(x) in producer] for _, ins, _ in compute]
    size = [1] * len(compute)  # nodes below, counted along each path (an estimate where subtrees share)
    used = set()
    for k, ds in enumerate(deps):  # compute is topological
        size[k] += sum(size[d] for d in set(ds))
        used.update(ds)
    small = [k for k, (_, _, nv) in enumerate(compute) if math.prod(nv.pshape) == 1]
    sinks = [k for k in range(len(compute)) if k not in used]
    order, seen = [], set()
    for root in small + sinks:
        stack = [(root, False)]
        while stack:  # iterative depth first: bodies can be deeper than Python's recursion limit
            k, expanded = stack.pop()
            if expanded:
                order.append(k)
            elif k not in seen:
                seen.add(k)
                stack.append((k, True))
                # pushed smallest first, so the largest is popped (emitted) first and the smallest last
                stack += [(d, False) for d in sorted(set(deps[k]), key=size.__getitem__) if d not in seen]
    return [compute[k] for k in order]


class _V:
    """Encoder-side state of one body value."""

    __slots__ = ("kind", "shape", "dtype", "src", "imm", "reg", "cls", "pshape", "base")

    def __init__(self, kind, shape, dtype, src=None, imm=None, base=None):
        self.kind, self.shape, self.dtype, self.src, self.imm = kind, shape, dtype, src, imm
        self.reg, self.cls, self.pshape, self.base = None, None, shape, base


def _dt(np_dtype) -> DType:
    d = _DTYPE_OF.get(np_dtype)
    if d is not None:
        return d
    d = isa.DTYPE_OF.get(np.dtype(np_dtype))
    if d is None:
        raise UnsupportedError(f"dtype {np.dtype(np_dtype)} is not a DVM dtype")
    return d


_DTYPE_OF = isa.DTYPE_OF


def _memo(cache: dict, fn, *key):
    """fn(*key) through `cache`: shapes repeat across encodes; cleared past 4096 entries (long-lived
    processes)."""
    hit = cache.get(key)
    if hit is None:
        if len(cache) > 4096:
            cache.clear()
        hit = cache[key] = fn(*key)
    return hit


def _pattern(shape) -> tuple:
    """A shape's rank and which dims are 0, 1 or more (2)."""
    return _memo(_PATTERN, _pattern1, shape)


def _pattern1(shape) -> tuple:
    return tuple(d if d < 2 else 2 for d in shape)


_PATTERN: dict = {}


def _bcast(a, b):
    if a == b or not b:
        return a
    if not a:
        return b
    return _memo(_BCAST, _bcast1, a, b)


_BCAST: dict = {}


def _bcast1(a, b):
    if a == b or not b:
        return a
    if not a:
        return b
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    out = []
    for x, y in zip(a, b):
        if x != y and x != 1 and y != 1:
            raise UnsupportedError(f"shapes {a} and {b} do not broadcast")
        out.append(y if x == 1 else x)
    return tuple(out)


def _matmul_shape(a, b):
    return _memo(_MATMUL, matmul_shape, a, b)


_MATMUL: dict = {}


def _contig(shape):
    st, acc = [0] * len(shape), 1
    for i in range(len(shape) - 1, -1, -1):
        st[i] = acc
        acc *= shape[i]
    return st


def _aligned(shape, P):
    """Strides (elements) of a contiguous tensor of `shape` broadcast (right-aligned) to P."""
    return _memo(_ALIGNED, _aligned1, shape, P)


_ALIGNED: dict = {}


def _aligned1(shape, P):
    if len(shape) > len(P):
        raise UnsupportedError(f"shape {shape} has more dims than the kernel space {P}")
    pad = len(P) - len(shape)
    st = _contig(shape)
    out = [0] * len(P)
    for i, d in enumerate(shape):
        if d == P[pad + i]:
            out[pad + i] = st[i] if d != 1 else 0
        elif d != 1:
            raise UnsupportedError(f"shape {shape} does not broadcast to the kernel space {P}")
    return out


def _mean_scale(shape, cdt) -> int:
    """The immediate word of 1/count for GlobalAveragePool of an input of `shape`."""
    count = math.prod(shape[2:])
    if count == 0:  # the mean of nothing is NaN; the reference computes it
        raise UnsupportedError(f"GlobalAveragePool over an empty extent {shape}")
    return isa.imm_bits(1.0 / count, cdt)


def _operand_values(node: Node, vals) -> tuple | None:
    """The integers of a shape/axes operand (input 1), or None where it is omitted; a constant is needed."""
    arg = vals[node.inputs[1]] if len(node.inputs) > 1 and node.inputs[1] is not None else None
    if arg is not None and arg.kind not in ("const", "imm"):
        raise UnsupportedError(f"{node.op} with a computed shape operand")
    return None if arg is None else tuple(map(int, np.asarray(arg.src[1]).reshape(-1).tolist()))


def _reshape_target(node: Node, x: _V, vals) -> tuple:
    s, op = x.shape, node.op
    if op == "Identity":
        return s
    if op == "Flatten":
        ax = node.attrs.get("axis", 1) % (len(s) or 1) if s else 0
        return (math.prod(s[:ax]), math.prod(s[ax:]))
    arg = _operand_values(node, vals)
    if op == "Reshape":
        tgt = [s[i] if d == 0 and not node.attrs.get("allowzero", 0) else d for i, d in enumerate(arg)]
        if -1 in tgt:
            known = math.prod(d for d in tgt if d != -1)
            tgt[tgt.index(-1)] = math.prod(s) // known if known else 0
        return tuple(tgt)
    axes = arg if arg is not None else list(node.attrs.get("axes", ()))
    if op == "Squeeze":
        axes = {a % len(s) for a in axes} if axes else {i for i, d in enumerate(s) if d == 1}
        return tuple(d for i, d in enumerate(s) if i not in axes)
    n = len(s) + len(axes)
    axes = {a % n for a in axes}
    it = iter(s)
    return tuple(1 if i in axes else next(it) for i in range(n))


# Targets besides the CPU: name -> (tiling(rows, cols, n_regs, reduces) -> (tr, tc), host_kernel(node))
TARGETS: dict = {}


def encode(body: Graph, input_shapes, input_dtypes=None, input_values=None, target: str = "cpu") -> Program:
    """Encode `body` for concrete input shapes; input_values maps input index -> array for inputs used as
    shape operands (Reshape targets). Raises UnsupportedError for bodies the ISA cannot express."""
    st = _STATIC.get(id(body))
    if st is None or st.body is not body:
        if len(_STATIC) >= 512:
            _STATIC.clear()
        st = _STATIC[id(body)] = _Static(body)
    enc = _Encoder(body, st, input_shapes, input_dtypes, input_values or {})
    enc.target = TARGETS[target] if target != "cpu" else None  # a KeyError names an unregistered target
    return enc.run()


_STATIC: dict = {}  # id(body) -> _Static


class _Static:
    """What no shape changes: users of each value, constants, per-node facts (memo: host kernels and output
    types, reduce axes), result dtypes, templates by signature, and the inputs whose values key a template."""

    __slots__ = ("body", "users", "consts", "memo", "templates", "data_inputs", "result_dtype")

    def __init__(self, body):
        self.body, self.users = body, {}
        for n in body.nodes:
            if n.op not in SUPPORTED_OPS or n.domain not in ("", "ai.onnx"):
                raise UnsupportedError(f"op {n.op} is not in the DVM op set")
            for v in n.inputs:
                self.users.setdefault(v, []).append(n)
        self.consts = consts = {}
        for v, arr in body.constants.items():
            arr = np.asarray(arr)
            if arr.size == 1 and arr.dtype != object:
                consts[v] = _V("imm", arr.shape, arr.dtype, ("const", arr), imm=arr.reshape(-1)[0].item())
            else:
                consts[v] = _V("const", arr.shape, arr.dtype, ("const", arr))
        self.memo, self.templates = {}, {}
        # inputs whose values (when given) matter beyond the shapes they set (reduce axes, data): a template
        # is keyed by their values; a Reshape target only sets shapes, which the signature holds
        self.data_inputs = [k for k, v in enumerate(body.inputs) if any(v is o for o in body.outputs) or
                            any(_data_use(v, n) for n in self.users.get(v, ()))]
        # compute node -> its result dtype, or the index of the input whose dtype it has
        self.result_dtype = {n: _result_dtype(n) for n in body.nodes}


def _data_use(v, n) -> bool:
    return n.op not in SHAPE_OPERAND_OPS or any(x is v for i, x in enumerate(n.inputs) if i != 1)


def _result_dtype(n):
    if n.op == "Cast":
        from framework.ops.cast import _target
        return np.dtype(_target(ops.Ctx(n.attrs)))
    if n.op in ("Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "IsNaN", "IsInf"):
        return np.dtype(bool)
    return 1 if n.op == "Where" else 0


class _Encoder:
    target = None  # None: the CPU; else a TARGETS entry
    mean_scale = staticmethod(_mean_scale)

    def __init__(self, body, static, shapes, dtypes, values):
        self.body, self.prog = body, Program(_NO_CODE)
        self.users, self.memo, self.templates = static.users, static.memo, static.templates
        self.result_dtype, self.consts, self.vals = static.result_dtype, static.consts, dict(static.consts)
        for k, v in enumerate(body.inputs):
            dt = np.dtype(dtypes[k]) if dtypes is not None else v.type.dtype
            src = ("const", np.asarray(values[k])) if k in values else ("in", k)
            self.vals[v] = _V("const" if k in values else "buf", tuple(map(int, shapes[k])), dt, src)
        self.key_values = tuple(tuple(np.asarray(values[k]).reshape(-1).tolist()) for k in static.data_inputs
                                if k in values) if values else ()
        self.slot_of: dict = {}
        self.words: list[int] = []
        self.n_instr = 0
        # where the bytecode depends on sizes, for the template: the value each slot takes its shape from,
        # the stride words of view instructions and GlobalAveragePool's 1/count immediates
        self.slot_owners: list = []
        self.stride_sites: list = []
        self.mean_sites: list = []

    def run(self) -> Program:
        """Shapes of every value (always); then the bytecode from the template of this signature if one is
        cached, else a full encode that caches one."""
        compute = self._shapes()
        key = self._signature()
        template = self.templates.get(key)
        if template is not None:
            return template.fill(self).final()
        prog = self._encode(compute)
        if len(self.templates) >= TEMPLATES_KEPT:
            self.templates.clear()
        self.templates[key] = Template(self)
        return prog.final()

    def _signature(self) -> tuple:
        """What every decision but sizes depends on: the target, the input dtypes (the others follow),
        data-input values and, per value, its rank and which dims are 0, 1 or more (broadcasting, P, merged
        axes, row classes and contiguous views follow from these)."""
        vals = self.vals
        return (self.target, self.key_values, *[vals[v].dtype for v in self.body.inputs],
                *[_pattern(x.shape) for x in vals.values()])

    # ---- analysis ----
    def _shapes(self) -> list:
        """Walk the body: shapes, dtypes and kinds of every value, host nodes, P and the reduced axes (with
        every check that depends on exact sizes); the compute nodes, as (node, inputs, value)."""
        compute, red, P, users, vals = [], None, (), self.users, self.vals
        for n in self.body.nodes:
            ins = [vals.get(v) for v in n.inputs]  # None for an omitted optional input
            x, op = ins[0] if ins else None, n.op
            if x is None:
                raise UnsupportedError(f"{op} reads a value the body does not define")
            if op in HOST_OPS:
                self._host(n, ins)
            elif op in RESHAPES:
                shape = _reshape_target(n, x, vals)
                if math.prod(shape) != math.prod(x.shape):
                    raise UnsupportedError(f"{op} changes the element count {x.shape} -> {shape}")
                if x.kind in ("buf", "const", "imm"):
                    nv = _V(x.kind, shape, x.dtype, x.src, x.imm)
                elif op == "Identity" and x.kind == "reg" and n.outputs[0] not in self.body.outputs:
                    nv = x  # the same value under another name (a body output needs its own store)
                else:  # a computed value: only outputs may see the new shape (same flat layout)
                    if any(u.op not in RESHAPES for u in users.get(n.outputs[0], ())):
                        raise UnsupportedError(f"{op} of a computed value feeding further compute")
                    nv = _V("alias", shape, x.dtype, base=x.base or x)
                vals[n.outputs[0]] = nv
            elif op == "Expand":  # a move whose operand loads broadcast into the larger result
                if x.kind in ("imm", "alias"):
                    raise UnsupportedError(f"Expand of a {'scalar' if x.kind == 'imm' else 'reshaped value'}")
                nv = _V("reg", _bcast(x.pshape, _operand_values(n, vals)), x.dtype)
                vals[n.outputs[0]] = nv
                compute.append((n, [x], nv))
            else:
                scalars_only = True
                for y in ins:
                    if y is not None and y.kind != "imm":
                        scalars_only = False
                        if y.kind == "alias":
                            raise UnsupportedError(f"{op} reads a reshaped computed value")
                if scalars_only:
                    self._fold(n, ins)
                    continue
                if op in REDUCE:
                    if x.kind not in ("reg", "buf", "const"):
                        raise UnsupportedError(f"{op} of a scalar")
                    axes = self._axes(n, ins)
                    if red is not None and (axes != red or x.shape != P):
                        raise UnsupportedError("reductions over different axes or shapes in one kernel")
                    red, P = axes, x.shape
                    kept = tuple(1 if i in axes else d for i, d in enumerate(P))
                    if n.attrs.get("keepdims", 1) or op in ("GlobalAveragePool", "GlobalMaxPool"):
                        nv = _V("reg", kept, x.dtype)
                    else:
                        if any(u.op not in RESHAPES for u in users.get(n.outputs[0], ())):
                            raise UnsupportedError("keepdims=0 reduction feeding further compute")
                        nv = _V("reg", tuple(d for i, d in enumerate(P) if i not in axes), x.dtype)
                    nv.pshape = kept
                else:
                    shape = ()
                    for y in ins:
                        if y is not None:
                            shape = _bcast(shape, y.pshape)
                    dt = self.result_dtype[n]
                    nv = _V("reg", shape, ins[dt].dtype if type(dt) is int else dt)
                vals[n.outputs[0]] = nv
                compute.append((n, ins, nv))
        if red is None:  # P is the broadcast of every result, so holds them all
            for _, _, nv in compute:
                P = _bcast(P, nv.shape)
        else:
            for n, _, nv in compute:
                if len(nv.pshape) > len(P) or _bcast(nv.pshape, P) != P:
                    raise UnsupportedError(f"{n.op} result {nv.pshape} outside the kernel space {P}")
        self.P, self.reduce_axes = P, red
        return compute

    # ---- full encode (a template fills in sizes for later shapes of the same signature) ----
    def _encode(self, compute) -> Program:
        out_set = {v for v in self.body.outputs}
        self._classify(compute, out_set)
        self.stores = {}
        for o in self.body.outputs:
            v = self.vals[o]
            base = v.base if v.kind == "alias" else v
            if base.kind == "reg":
                if base not in self.stores:
                    self.stores[base] = self._slot(None, isa.Role.OUTPUT, base.shape, base.dtype, base)
                self.prog.outputs.append((("slot", self.stores[base]), v.shape))
            else:
                self.prog.outputs.append((v.src, v.shape))
        self._space(compute)
        self._emit(compute if self.reduce_axes is not None else _chain_order(compute))
        return self._finish()

    def _host(self, n, ins):
        if any(x is not None and x.kind not in ("buf", "const", "imm") for x in ins) or None in ins[:2]:
            raise UnsupportedError(f"{n.op} inside the kernel reads a computed value")
        if n not in self.memo:
            from framework.backends import NUMPY
            opdef = ops.get(n.op, n.domain, n.opset, n.name)
            ctx = ops.Ctx({**opdef.attrs, **n.attrs}, len(n.outputs), n.opset, n.name)
            self.memo[n] = (opdef.infer, ctx, NUMPY.compile(n))
        infer, ctx, cpu_kernel = self.memo[n]
        kernel = cpu_kernel
        if self.target is not None:  # a device target runs the node its own way (e.g. cuBLAS)
            kernel = self.memo.get((n, "kernel", id(self.target)))
            if kernel is None:
                kernel = self.memo[(n, "kernel", id(self.target))] = self.target[1](n)
        elif n.op == "MatMul" and len(ins[0].shape) >= 2 and len(ins[1].shape) == 2 \
                and ins[0].dtype == ins[1].dtype and ins[0].dtype.kind == "f":
            (*lead, k), n_cols = ins[0].shape, ins[1].shape[-1]
            rows = math.prod(lead)
            kernel = _small_dot(rows, k) if rows * k * n_cols <= gemm.BLAS_ONE_THREAD_MACS else _flat_dot(k)
        if n.op == "MatMul":  # its infer's shape rule without building TensorTypes (a new shape each time)
            out = [(_matmul_shape(ins[0].shape, ins[1].shape), ins[0].dtype)]
        else:  # output types of this host node for these input types (pure, so memoized)
            key = (n, tuple((x.dtype, x.shape) if x is not None else None for x in ins))
            out = self.memo.get(key)
            if out is None:
                out = infer(ctx, *(TensorType(x.dtype, x.shape) if x is not None else None for x in ins))
                out = list(out) if isinstance(out, (tuple, list)) else [out]
                out = [(tuple(int(d) for d in t.shape), t.dtype) for t in out]
                if len(self.memo) > 1024:
                    self.memo.clear()
                    self.memo[n] = (infer, ctx, cpu_kernel)
                self.memo[key] = out
        base = sum(h[2] for h in self.prog.host)
        self.prog.host.append((kernel, tuple(x.src if x is not None else None for x in ins), len(out)))
        for i, (v, (shape, dtype)) in enumerate(zip(n.outputs, out)):
            self.vals[v] = _V("buf", shape, dtype, ("host", base + i))

    def _fold(self, n, ins):
        from framework.backends import NUMPY
        res = NUMPY.compile(n)(*(np.asarray(x.src[1]) if x is not None else None for x in ins))
        for v, a in zip(n.outputs, res):
            a = np.asarray(a)
            self.vals[v] = _V("imm", a.shape, a.dtype, ("const", a), imm=a.reshape(-1)[0])

    def _axes(self, n, ins):
        x = ins[0]
        if n.op.startswith("Global"):
            return frozenset(range(2, len(x.shape)))
        operand = ins[1] if len(ins) > 1 else None
        key = (n, "axes", len(x.shape))
        fixed = operand is None or operand is self.consts.get(n.inputs[1])  # not a per-call input value
        if fixed and key in self.memo:
            return self.memo[key]
        if operand is not None:
            if operand.kind not in ("imm", "const"):
                raise UnsupportedError(f"{n.op} with computed axes")
            axes = [int(a) for a in np.asarray(operand.src[1]).reshape(-1)]
        else:
            axes = list(n.attrs.get("axes", ()) or ())
        if not axes:
            if n.attrs.get("noop_with_empty_axes", 0):
                raise UnsupportedError(f"{n.op} with noop_with_empty_axes")
            axes = range(len(x.shape))
        axes = frozenset(a % len(x.shape) for a in axes)
        if fixed:
            self.memo[key] = axes
        return axes

    def _rowlike(self, x) -> bool:
        """Whether x is constant along the reduced axes (so it can live in a ROW register)."""
        if x.kind == "reg":
            return x.cls == "R"
        return self._row_shape(x.shape)

    def _row_shape(self, shape) -> bool:
        """Whether a value of this shape is constant along the reduced axes."""
        pad = len(self.P) - len(shape)
        if self.row_one:  # rows of one element: FULL is as cheap
            return False
        return all(shape[a - pad] == 1 for a in self.reduce_axes if a >= pad)

    def _classify(self, compute, out_set):
        P, red = self.P, self.reduce_axes
        self.row_one = red is not None and math.prod(P[a] for a in red) == 1
        outs = {id(v.base or v) for v in (self.vals[o] for o in out_set)}
        for n, ins, nv in compute:
            if red is None:
                nv.cls = "F"
            elif n.op in REDUCE:
                x = ins[0]
                if (x.kind == "reg" and x.cls != "F") or len(x.pshape) != len(P) or \
                        any(x.pshape[a] != P[a] for a in red):
                    raise UnsupportedError(f"{n.op} input {x.pshape} is not the kernel space {P}")
                nv.cls = "R"
            else:
                srcs = [x for x in ins if x is not None and x.kind != "imm"]
                # an Expand's result can be larger than its operand: a row value broadcast along its rows
                row = all(self._rowlike(x) for x in srcs) and (n.op != "Expand" or self._row_shape(nv.shape))
                nv.cls = "R" if row else "F"
            if nv.cls == "F" and id(nv) in outs and math.prod(nv.pshape) != math.prod(P):
                raise UnsupportedError(f"output {nv.shape} is smaller than the kernel space {P}")

    def _space(self, compute):
        """Choose the 4-D space: kept axes first, reduced axes last, adjacent dims merged where every view
        agrees; self.strides gives a shape's strides over it."""
        P, red = self.P, self.reduce_axes or frozenset()
        views = []
        for n, ins, nv in compute:
            views += [_aligned(x.shape, P) for x in ins if x is not None and x.kind in ("buf", "const")]
        views += [_aligned(nv.pshape, P) for nv in self.stores]
        kept = [a for a in range(len(P)) if a not in red and P[a] != 1]
        rax = [a for a in range(len(P)) if a in red and P[a] != 1]
        groups = []
        for axes in (kept, rax):
            gs = []
            for a in axes:
                if gs and all(v[gs[-1][-1]] == v[a] * P[a] for v in views):
                    gs[-1].append(a)
                else:
                    gs.append([a])
            groups.append(gs)
        kg, rg = groups
        if red:
            if len(rg) > 1 or len(kg) > 3:
                raise UnsupportedError(f"reduction over axes {sorted(red)} of {P} needs more than 4 dims")
            rg = rg or [[]]
        elif len(kg) > 4:
            raise UnsupportedError(f"space {P} needs more than 4 dims after merging")
        else:
            kg, rg = kg[:-1], kg[-1:] or [[]]
        self.groups = [[]] * (3 - len(kg)) + kg + rg
        self.size_space(self.groups)
        self.views = {}

    def size_space(self, groups) -> list[int]:
        """The 4 space dims D for merged axis groups of P, and each group's inner axis (whose stride a view
        has along that dim)."""
        P = self.P
        self.D = D = [math.prod(map(P.__getitem__, g)) for g in groups]
        self.inner = [g[-1] if g else None for g in groups]
        return D

    def strides(self, shape) -> list[int]:
        """Strides over the 4-D space of a contiguous tensor of `shape` broadcast to P."""
        al = _aligned(shape, self.P)
        return [al[a] if a is not None else 0 for a in self.inner]

    # ---- emission ----
    def _ins(self, *words):
        self.words.extend(words)
        self.n_instr += 1

    def _reg(self):
        if self.free:
            return self.free.pop()
        self.n_regs += 1
        return self.n_regs - 1

    def _slot(self, src, role, shape, dtype, owner):
        """The slot of a buffer; owner is the value whose shape the slot has (None: a constant's own)."""
        key = (src[0], id(src[1])) if src is not None and src[0] == "const" else src
        if role == isa.Role.INPUT and key in self.slot_of:
            return self.slot_of[key]
        _dt(dtype)
        # the role as a plain int: an enum member is an object the GC tracks, and so the tuple holding it
        self.prog.slots.append((int(role), src if role == isa.Role.INPUT else None, shape, np.dtype(dtype)))
        self.slot_owners.append(owner)
        if role == isa.Role.INPUT:
            self.slot_of[key] = len(self.prog.slots) - 1
        return len(self.prog.slots) - 1

    def _view(self, shape):
        """(strides, whether they are the contiguous ones) of a shape broadcast to P."""
        hit = self.views.get(shape)
        if hit is None:
            st, D = self.strides(shape), self.D
            contig = (D[1] * D[2] * D[3], D[2] * D[3], D[3], 1)
            hit = self.views[shape] = (st, all(s == c or d == 1 for s, c, d in zip(st, contig, D)))
        return hit

    def _load(self, x, cls):
        key = (id(x), cls)
        if key in self.loaded:
            return self.loaded[key]
        const = x.src[0] == "const"
        slot = self._slot(x.src, isa.Role.INPUT, x.src[1].shape if const else x.shape, x.dtype,
                          None if const else x)
        # a const's slot holds its own array; a reshaped view of it has the same flat layout
        r, dt = self._reg(), _dt(x.dtype)
        st, contig = self._view(x.shape)
        if cls == "R" or not contig:
            self.stride_sites.append((len(self.words), x, "shape", 3 if cls == "R" else 4))
        if cls == "R":
            self._ins(isa.word0(O.LOAD_ROW, dt, 0, r, slot), 0, st[0], st[1], st[2], 0)
        elif contig:
            self._ins(isa.word0(O.LOAD, dt, 0, r, slot), 0)
        else:
            self._ins(isa.word0(O.LOAD_VIEW, dt, 0, r, slot), 0, *(s & 0xFFFFFFFFFFFFFFFF for s in st))
        self.loaded[key] = r
        return r

    def _operand(self, x, cls, full=False):
        """(register, is_row) for a non-immediate operand of an instruction whose result class is cls."""
        if x.kind == "reg":
            return x.reg, x.cls == "R"
        lcls = "R" if not full and self.reduce_axes is not None and self._rowlike(x) else "F"
        return self._load(x, lcls), lcls == "R"

    def _emit(self, compute):
        last = {}
        for i, (n, ins, nv) in enumerate(compute):
            for x in ins:
                if x is not None:
                    last[id(x)] = i
        self.free, self.n_regs, self.loaded = [], 0, {}
        stores = self.stores
        for self.i, (n, ins, nv) in enumerate(compute):
            dst = self._lower(n, ins, nv)
            nv.reg = dst
            for key in [k for k in self.loaded if last.get(k[0]) == self.i]:
                self.free.append(self.loaded.pop(key))
            for x in {id(x): x for x in ins if x is not None and x.kind == "reg"}.values():
                if last.get(id(x)) == self.i:
                    self.free.append(x.reg)
            if nv in stores:
                self._store(nv, stores[nv])
            if id(nv) not in last:
                self.free.append(dst)
        self._ins(isa.word0(O.END))

    def _store(self, nv, slot):
        dt = _dt(nv.dtype)
        st, contig = self._view(nv.pshape)
        if nv.cls == "R" or not contig:
            self.stride_sites.append((len(self.words), nv, "pshape", 3 if nv.cls == "R" else 4))
        if nv.cls == "R":
            self._ins(isa.word0(O.STORE_ROW, dt, 0, slot, nv.reg), 0, st[0], st[1], st[2], 0)
        elif contig:
            self._ins(isa.word0(O.STORE, dt, 0, slot, nv.reg), 0)
        else:
            self._ins(isa.word0(O.STORE_VIEW, dt, 0, slot, nv.reg), 0, *(s & 0xFFFFFFFFFFFFFFFF for s in st))

    def _const(self, x, cls, cdt):
        r = self._reg()
        self._ins(isa.word0(O.CONST, cdt, isa.F_ROW if cls == "R" else 0, r), isa.imm_bits(x.imm, cdt))
        self.tmp.append(r)
        return r

    def _lower(self, n, ins, nv):
        cls, op = nv.cls, n.op
        self.tmp = []
        row = isa.F_ROW if cls == "R" else 0
        ins = [x for x in ins if x is not None] if op not in REDUCE else ins[:1]
        cdt = isa.COMPUTE[_dt(ins[0].dtype if op != "Where" else ins[1].dtype)]
        if op == "Where":
            regs, flags = [], row
            for k, x in enumerate(ins):
                if x.kind == "imm":  # one value per row, not a filled tile (attention's mask value)
                    dt = isa.COMPUTE[_dt(x.dtype)]
                    regs.append(self._const(x, "R", dt))
                    flags |= isa.F_A_ROW << k
                else:
                    r, is_row = self._operand(x, cls)
                    regs.append(r)
                    flags |= (isa.F_A_ROW << k) if is_row else 0
            d = self._reg()
            self._ins(isa.word0(O.SELECT, cdt, flags, d, regs[0], regs[1]), regs[2])
        elif op in BINARY:
            code = BINARY[op]
            if code == O.MOD and n.attrs.get("fmod", 0):
                code = O.FMOD
            a, b = ins
            if a.kind == "imm" or b.kind == "imm":
                x, imm, rev = (b, a, 1) if a.kind == "imm" else (a, b, 0)
                rev = 0 if code in COMMUTATIVE else rev
                cdt = isa.COMPUTE[_dt(x.dtype)]
                if code == O.POW and imm.dtype.kind != "f":
                    imm = _V("imm", (), np.dtype(np.float32), imm=float(imm.imm))
                value = imm.imm
                if code == O.DIV and not rev and cdt == DType.F32:
                    code, value = _reciprocal_product(float(value))
                r, is_row = self._operand(x, cls)
                d = self._reg()
                fl = row | (isa.F_A_ROW if is_row else 0)
                self._ins(isa.word0(code + isa.IMM_DELTA, cdt, fl, d, r, rev), isa.imm_bits(value, cdt))
            else:
                if a.dtype != b.dtype:
                    raise UnsupportedError(f"{op} of {a.dtype} and {b.dtype}")
                ra, ar = self._operand(a, cls)
                rb, br = self._operand(b, cls)
                d = self._reg()
                self._ins(isa.word0(code, cdt, row | (isa.F_A_ROW if ar else 0) | (isa.F_B_ROW if br else 0),
                                    d, ra, rb))
        elif op in REDUCE:
            r, _ = self._operand(ins[0], "F", full=True)
            d = self._reg()
            self._ins(isa.word0(REDUCE[op], cdt, isa.F_ROW, d, r))
            if op == "GlobalAveragePool":
                self.tmp.append(d)
                d2 = self._reg()
                self.mean_sites.append((len(self.words), ins[0], cdt))
                self._ins(isa.word0(O.MUL_IMM, cdt, isa.F_ROW | isa.F_A_ROW, d2, d),
                          self.mean_scale(ins[0].shape, cdt))
                d = d2
        else:
            r, is_row = self._operand(ins[0], cls)
            fl = row | (isa.F_A_ROW if is_row else 0)
            d = self._reg()
            if op == "Relu":
                self._ins(isa.word0(O.MAX_IMM, cdt, fl, d, r), isa.imm_bits(0, cdt))
            elif op == "Expand":  # a row operand of a full result: BCAST_ROW (a unary keeps its class)
                code = O.BCAST_ROW if is_row and cls != "R" else O.MOV
                self._ins(isa.word0(code, cdt, isa.F_A_ROW if code == O.BCAST_ROW else fl, d, r))
            elif op == "Cast":
                to = _dt(nv.dtype)
                code = O.MOV if isa.COMPUTE[to] == cdt and to != DType.F16 else O.CAST
                cast = code == O.CAST
                self._ins(isa.word0(code, to if cast else cdt, fl, d, r, cdt if cast else 0))
            else:
                if op == "IsInf" and not (n.attrs.get("detect_negative", 1)
                                          and n.attrs.get("detect_positive", 1)):
                    raise UnsupportedError("IsInf detecting one sign only")
                self._ins(isa.word0(UNARY[op], cdt, fl, d, r))
        if nv.dtype == np.float16 and op != "Cast":
            # ONNX rounds every float16 result, and registers hold float32 (isa.COMPUTE): unrounded, a fused
            # chain kept more precision than op-by-op execution and differed from it by ulps
            self.tmp.append(d)
            d = self._reg()
            self._ins(isa.word0(O.CAST, DType.F16, isa.F_ROW | isa.F_A_ROW if cls == "R" else 0, d,
                                self.tmp[-1], DType.F32))
        self.free.extend(self.tmp)
        return d

    def tiles(self, nregs, nstreams, ninstr) -> tuple[int, int]:
        """(tile rows, tile cols) for the space self.D, nregs registers, nstreams buffers of the space's
        size (read or written once per tile) and ninstr instructions."""
        D = self.D
        rows, cols = D[0] * D[1] * D[2], D[3]
        budget = max(64, (REDUCE_TILE_BYTES if self.reduce_axes is not None else ARENA_BYTES) // (4 * nregs))
        in_l1 = L1_TILE_BYTES // (4 * (nregs + nstreams))
        if self.reduce_axes is None and in_l1 >= L1_MIN_PER_INSTR * ninstr:
            budget = max(64, in_l1)
        if self.reduce_axes is not None and cols == 0:  # reductions need tile_cols == COLS, and tiles >= 1
            raise UnsupportedError("a reduction over an empty axis")
        if self.target is not None:
            return self.target[0](rows, cols, nregs, self.reduce_axes is not None)
        if self.reduce_axes is not None:
            if cols > isa.MAX_TILE_ELEMS:
                raise UnsupportedError(f"rows of {cols} elements exceed the tile limit")
            tc = max(cols, 1)
            tr = max(1, min(rows, budget // tc, isa.MAX_TILE_ELEMS // tc))
            # the VM reduces float rows four at a time (one row alone waits on each add's latency)
            return (tr // 4 * 4 if 4 <= tr < rows else tr), tc
        if cols >= budget:   # row pieces: equal ones (a multiple of 64), not full ones and a short rest
            piece = -(-cols // -(-cols // budget))
            return 1, min(cols, (piece + 63) // 64 * 64)
        return max(1, min(rows, budget // max(cols, 1))), max(cols, 1)

    def streamed(self, slots) -> int:
        """How many of the slots are as big as the space (the others are broadcast along it)."""
        size = math.prod(self.D)
        return sum(math.prod(shape) == size for _, _, shape, _ in slots)

    def _finish(self) -> Program:
        D = self.D
        nregs = max(self.n_regs, 1)
        tr, tc = self.tiles(nregs, self.streamed(self.prog.slots), self.n_instr)
        nb = len(self.prog.slots)
        head = [isa.MAGIC, isa.VERSION, 0, self.n_instr, nb, nregs, tr, tc, *D, 0, 0, 0, 0]
        table = []
        for role, src, shape, dtype in self.prog.slots:
            table += [int(_dt(dtype)) | int(role) << 8, math.prod(shape)]
        words = head + table + self.words
        words[isa.H["n_words"]] = len(words)
        self.prog.code = np.array(words, dtype=np.uint64)
        return self.prog
