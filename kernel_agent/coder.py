"""Coder: emits C for the designer's stages. One function per stage, `int NAME(void **b)` (inputs then
outputs, shapes baked in), a loop over rows (OpenMP when the variant has threads) and, per row, passes over
the row: each pass is one `omp simd` loop computing elementwise chains and accumulating reductions."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .designer import ALIAS, ROW_REDUCE, Stage, Variant, _aux_inputs

CTYPE = {"float32": "float", "float64": "double", "int64": "int64_t", "int32": "int32_t",
         "bool": "unsigned char"}

# below this many elements per stage a parallel region costs more than it saves: one thread
PARALLEL_MIN_ELEMENTS = 16384
PRELUDE = (Path(__file__).parent / "c" / "prelude.h").read_text()  # vectorisable exp/log/tanh, softplus
ARGMAX = (Path(__file__).parent / "c" / "argmax.h").read_text()  # msgx_argmax_f32, only where called


def lit(x, dtype) -> str:
    """An exact C literal of a scalar constant."""
    dt = np.dtype(dtype)
    if dt.kind == "f":
        x = float(x)
        if math.isnan(x):
            return f"(({CTYPE[dt.name]})NAN)"
        if math.isinf(x):
            return f"(({CTYPE[dt.name]}){'-' if x < 0 else ''}INFINITY)"
        return x.hex() + ("f" if dt == np.float32 else "")
    if dt.kind == "b":
        return "1" if x else "0"
    return f"((int64_t){int(x)}LL)" if dt == np.int64 else str(int(x))


def _fn(name: str, dtype, fast: bool) -> str:
    f32 = np.dtype(dtype) == np.float32
    if name == "exp" and f32 and fast:
        return "msgx_expf"
    if name == "tanh" and f32 and fast:
        return "msgx_tanhf"
    if name == "log" and f32 and fast:
        return "msgx_logf"
    return name + ("f" if f32 else "")


def expr(op: str, a: list[str], dtype, attrs, const_args, var: Variant) -> str:
    """C expression of one elementwise op on operand expressions `a` (result dtype `dtype`)."""
    T = CTYPE[np.dtype(dtype).name]
    isint = np.dtype(dtype).kind in "iu"
    if op in ("Add", "Sub", "Mul") and isint:
        sym = {"Add": "+", "Sub": "-", "Mul": "*"}[op]
        return f"(({T})((uint64_t)({a[0]}) {sym} (uint64_t)({a[1]})))"  # numpy wraps; C signed overflow is UB
    simple = {"Add": "+", "Sub": "-", "Mul": "*", "Div": "/", "Equal": "==", "Less": "<", "Greater": ">",
              "LessOrEqual": "<=", "GreaterOrEqual": ">=", "And": "&&", "Or": "||"}
    if op in simple:
        return f"({a[0]} {simple[op]} {a[1]})"
    if op == "Pow":
        e = const_args[1]
        if e is not None and e.size == 1:
            e = float(e.reshape(-1)[0])
            if e == 2.0:
                return f"({a[0]} * {a[0]})"
            if e == 3.0:
                return f"({a[0]} * {a[0]} * {a[0]})"
            if e == 1.0:
                return a[0]
            if e == 0.5:
                return f"{_fn('sqrt', dtype, False)}({a[0]})"
        return f"{_fn('pow', dtype, False)}({a[0]}, {a[1]})"
    if op in ("Max", "Min") and const_args[1] is not None and const_args[1].size == 1 and \
            np.isfinite(const_args[1]).all():  # x vs a constant: one compare, NaN in x still propagates
        return f"({a[0]} {'<' if op == 'Max' else '>'} {a[1]} ? {a[1]} : {a[0]})"
    if op in ("Max", "Min") and const_args[0] is not None and const_args[0].size == 1 and \
            np.isfinite(const_args[0]).all():
        return f"({a[1]} {'<' if op == 'Max' else '>'} {a[0]} ? {a[0]} : {a[1]})"
    if op == "Max":
        return f"(({a[0]} > {a[1]} || {a[0]} != {a[0]}) ? {a[0]} : {a[1]})"  # NaN propagates, as np.maximum
    if op == "Min":
        return f"(({a[0]} < {a[1]} || {a[0]} != {a[0]}) ? {a[0]} : {a[1]})"
    if op == "Neg":
        return f"(-{a[0]})"
    if op == "Abs":
        return f"{_fn('fabs', dtype, False)}({a[0]})" if not isint else f"({a[0]} < 0 ? -{a[0]} : {a[0]})"
    if op in ("Exp", "Log", "Tanh", "Sqrt", "Sin", "Cos", "Floor", "Ceil", "Erf"):
        return f"{_fn(op.lower(), dtype, var.fast_exp)}({a[0]})"
    if op == "Reciprocal":
        return f"(({T})1 / {a[0]})"
    if op == "Sigmoid":
        return f"(({T})1 / (({T})1 + {_fn('exp', dtype, var.fast_exp)}(-{a[0]})))"
    if op == "Relu":
        return f"({a[0]} < 0 ? ({T})0 : {a[0]})"
    if op == "Sign":
        return f"({a[0]} != {a[0]} ? {a[0]} : ({T})(({a[0]} > 0) - ({a[0]} < 0)))"
    if op == "IsNaN":
        return f"({a[0]} != {a[0]})"
    if op == "Not":
        return f"(!{a[0]})"
    if op == "Where":
        return f"({a[0]} ? {a[1]} : {a[2]})"
    if op in ("Cast", "Identity"):
        return f"(({T}){a[0]})"
    raise KeyError(op)


class StageCoder:
    """Schedules one stage's nodes into passes over a row and prints the C function.

    Pass k = pre (per-row scalar ops, scans, argmax, gathers) + one loop over the row (elementwise chains,
    reductions) + post (finishing reductions). Full values used outside their pass are stored."""

    def __init__(self, graph, st: Stage, name: str, var: Variant):
        self.g, self.st, self.name, self.var = graph, st, name, var
        self.N, self.rows, self.r = st.S[-1], math.prod(st.S[:-1]), len(st.S)
        self.alias: dict = {}
        self.ids: dict = {}

    def a(self, v):
        return self.alias.get(v, v)

    def k(self, v) -> int:
        return self.ids.setdefault(self.a(v), len(self.ids))

    def full(self, v) -> bool:
        return self.st.P[self.a(v)][-1] == self.N and self.N > 1

    def offset(self, v) -> str:
        """Element offset of row r of value v in its own layout (broadcast outer dims read index 0)."""
        P, S = self.st.P[self.a(v)], self.st.S
        if P[:-1] == S[:-1]:
            return f"r * {P[-1]}L" if P[-1] > 1 else "r"
        terms, rows_below = [], 1
        for d in range(self.r - 2, -1, -1):
            if P[d] != 1:
                terms.append(f"((r / {rows_below}L) % {S[d]}L) * {math.prod(P[d + 1:])}L")
            rows_below *= S[d]
        return " + ".join(terms) or "0"

    def emit(self) -> str:
        st, g = self.st, self.g
        for n in st.nodes:
            if n.op in ALIAS:
                self.alias[n.outputs[0]] = self.a(n.inputs[0])
        self.scalar_consts = {v: np.asarray(g.constants[v]) for v in st.inputs
                              if v in g.constants and np.asarray(g.constants[v]).size == 1}
        self.buf_in = [v for v in st.inputs if v not in self.scalar_consts]
        self.buffers = self.buf_in + list(st.outputs)
        self.bufname = {}
        for i, v in enumerate(self.buffers):
            self.bufname.setdefault(self.a(v), []).append(f"b{i}")
        thr = self.var.threads
        big = self.rows * self.N >= PARALLEL_MIN_ELEMENTS and thr > 1
        # one row (a flat elementwise chain, say): threads split each pass's loop, reductions by their clauses
        self.split_row = big and self.rows == 1
        par = int(big and self.rows > 1)
        body = self.schedule()
        L = [f"int {self.name}(void **b) {{", "    int err = 0;"]
        for i, v in enumerate(self.buffers):
            T = CTYPE[v.type.dtype.name]
            L.append(f"    {'const ' if i < len(self.buf_in) else ''}{T} *restrict b{i} = b[{i}];")
        if par:
            L += [f"    #pragma omp parallel num_threads({thr}) reduction(|:err)", "    {"]
        else:  # one thread: no OpenMP runtime call at all
            L += ["    {"]
        for v in self.scratch:
            T = CTYPE[v.type.dtype.name]
            L.append(f"        {T} *s{self.k(v)} = malloc({self.N} * sizeof({T}));")
        if par:
            L.append("        #pragma omp for schedule(static)")
        L += [f"        for (long r = 0; r < {self.rows}L; r++) {{"]
        L += ["            " + s for s in body if s]
        L.append("        }")
        L += [f"        free(s{self.k(v)});" for v in self.scratch]
        L += ["    }", "    return err;", "}"]
        return "\n".join(L)

    def schedule(self) -> list[str]:
        st = self.st
        nodes = [n for n in st.nodes if n.op not in ALIAS]
        inputs = {self.a(v) for v in st.inputs}
        prod = {o: n for n in nodes for o in n.outputs}
        defp: dict = {}      # value -> pass defining it (-1: stage input)
        ready: dict = {}     # row value -> first pass whose loop may read it
        pass_of: dict = {}
        for n in nodes:
            o = n.outputs[0]
            ins = [self.a(v) for v in n.inputs if v is not None and v not in _aux_inputs(n)]
            need = max([ready.get(v, 0) for v in ins if not self.full(v) or v not in prod] + [0])
            fulls = [defp.get(v, -1) for v in ins if self.full(v) and v in prod]
            if n.op in ROW_REDUCE:
                p = max(fulls + [need, 0])
                ready[o] = p + 1
            elif n.op in SPECIALS:
                p = max([f + 1 for f in fulls] + [need, 0])
                ready[o] = p
            elif self.full(o):
                p = max(fulls + [need, 0])
            else:
                p = need
                ready[o] = p
            pass_of[n], defp[o] = p, p
        self.pass_of, self.prod = pass_of, prod
        outs = {self.a(o) for o in st.outputs}
        self.rewrites = {n: r for n in nodes if (r := self.rewrite(n)) is not None}
        nodes = self.live(nodes, outs)
        self.scratch = []
        for n in nodes:
            for v in self.reads(n):
                v = self.a(v) if v is not None else None
                if v is None or v in inputs or v in outs or v not in prod or not self.full(v) \
                        or v in self.scratch:
                    continue
                if defp[v] != pass_of[n] or n.op in SPECIALS:
                    self.scratch.append(v)
        self.stored = set(self.scratch) | outs
        out: list[str] = []
        for v in self.buf_in:
            if not self.full(v):
                out.append(f"const {CTYPE[v.type.dtype.name]} v{self.k(v)} = {self.bufname[self.a(v)][0]}"
                           f"[{self.offset(v)}];")
        last = max(pass_of.values(), default=0)
        for p in range(last + 1):
            out.extend(self.pass_code([n for n in nodes if pass_of[n] == p], p))
        return out

    def ref(self, v) -> str:
        """How code reads value v (element j of a full row, or a per-row scalar)."""
        v = self.a(v)
        if v in self.scalar_consts:
            return lit(self.scalar_consts[v].reshape(-1)[0], v.type.dtype)
        if not self.full(v) or v in self.local:
            return f"v{self.k(v)}"
        if v in self.scratch:
            return f"s{self.k(v)}[j]"
        return f"{self.bufname[v][0]}[{self.offset(v)} + j]"

    def row_ptr(self, v) -> str:
        v = self.a(v)
        if v in self.scratch:
            return f"s{self.k(v)}"
        return f"({self.bufname[v][0]} + {self.offset(v)})"

    def store(self, o, j: bool) -> list[str]:
        o = self.a(o)
        if o not in self.stored or o in self.scratch and not j:
            return []
        if o in self.scratch:
            return [f"s{self.k(o)}[j] = v{self.k(o)};"]
        return [f"{b}[{self.offset(o)}{' + j' if j else ''}] = v{self.k(o)};" for b in self.bufname[o]]

    def pass_code(self, members, p) -> list[str]:
        pre, loop, decl, clauses, acc, post = [], [], [], [], [], []
        self.local = set()
        for n in members:
            o = n.outputs[0]
            T = CTYPE[o.type.dtype.name]
            ins = [v for v in n.inputs if v is not None and v not in _aux_inputs(n)]
            if n.op in SPECIALS:
                pre.extend(self.special(n))
            elif n.op in ROW_REDUCE:
                src, a = self.ref(ins[0]), f"v{self.k(o)}"
                if n.op in ("ReduceSum", "ReduceMean"):
                    decl.append(f"{T} {a} = 0;")
                    clauses.append(f"reduction(+:{a})")
                    acc.append(f"{a} += {src};")
                    if n.op == "ReduceMean":
                        post.append(f"{a} = {a} / ({T}){self.N};")
                else:
                    big = n.op == "ReduceMax"
                    lim = "INFINITY" if o.type.dtype.kind == "f" else \
                        ("INT64_MAX" if T == "int64_t" else "INT32_MAX")
                    low = " - 1" if big and lim != "INFINITY" else ""  # INT_MIN = -INT_MAX - 1
                    decl.append(f"{T} {a} = {'-' if big else ''}({T}){lim}{low};")
                    clauses.append(f"reduction({'max' if big else 'min'}:{a})")
                    acc.append(f"{a} = {a} {'>' if big else '<'} {src} ? {a} : {src};")
                    if o.type.dtype.kind == "f":  # NaN propagates, as numpy's max/min
                        decl.append(f"int {a}_nan = 0;")
                        clauses.append(f"reduction(|:{a}_nan)")
                        acc.append(f"{a}_nan |= ({src} != {src});")
                        post.append(f"if ({a}_nan) {a} = ({T})NAN;")
                post.extend(self.store(o, False))
            else:
                const_args = [None if v is None else self.g.constants.get(v) for v in n.inputs]
                if n in self.rewrites:
                    reads, printer = self.rewrites[n]
                    e = printer(*[self.ref(v) for v in reads])
                else:
                    e = expr(n.op, [self.ref(v) for v in ins], o.type.dtype, n.attrs, const_args, self.var)
                if n.op == "Div" and self.full(o) and not self.full(ins[1]) and o.type.dtype.kind == "f":
                    # a row divided by a per-row scalar: one division per row (within 1.5 ulp of x / s)
                    r = f"r{self.k(o)}"
                    pre.append(f"const {T} {r} = ({T})1 / {self.ref(ins[1])};")
                    e = f"({self.ref(ins[0])} * {r})"
                if self.full(o):
                    loop.append(f"const {T} v{self.k(o)} = {e};")
                    self.local.add(self.a(o))
                    loop.extend(self.store(o, True))
                else:
                    pre.append(f"const {T} v{self.k(o)} = {e};")
                    pre.extend(self.store(o, False))
        out = pre + decl
        if loop or acc:
            if self.split_row:
                out.append(" ".join([f"#pragma omp parallel for simd num_threads({self.var.threads})",
                                     "schedule(simd:static)"] + clauses))
            elif self.var.simd:
                out.append(" ".join(["#pragma omp simd"] + clauses))
            out.append(f"for (long j = 0; j < {self.N}L; j++) {{")
            out.extend("    " + s for s in loop + acc)
            out.append("}")
        return out + post

    def producer(self, v, op: str, n):
        """The node of type `op` that computes `v` in the same pass as `n` (so its operands are readable
        where `n` is computed), else None."""
        p = self.prod.get(self.a(v)) if v is not None else None
        return p if p is not None and p.op == op and self.pass_of[p] == self.pass_of[n] else None

    def rewrite(self, n):
        """A cheaper exact form of the chain ending at `n` (fast variants only): (the values it reads, a
        printer of its C expression from their references), or None. Nodes only the chain read are dropped.
        tanh(log(u)) = (u^2 - 1) / (u^2 + 1): no log, no tanh (mish); 1 for u > 2^(m/2 + 2) (m: stored
        mantissa bits), where the true value rounds to 1, so u^2 cannot overflow; NaN for u < 0 as log's.
        log(1 + exp(x)) (softplus, float32): msgx_softplusf.
        min(max(x, lo), hi) with constants lo <= hi (a clip): the min compares x, not max's result, so the
        two selects are independent (gcc otherwise merges them into 4 compares and a mask operation)."""
        o = n.outputs[0]
        if not self.var.fast_exp or o.type.dtype.kind != "f":
            return None
        T = CTYPE[o.type.dtype.name]
        if n.op in ("Min", "Max") and (clip := self._clip(n)) is not None:
            return clip
        if n.op == "Tanh" and (lg := self.producer(n.inputs[0], "Log", n)) is not None:
            one, big = f"({T})1", lit(2.0 ** (np.finfo(o.type.dtype).nmant // 2 + 2), o.type.dtype)
            return [lg.inputs[0]], lambda u: (f"({u} < ({T})0 ? ({T})NAN : ({u} > {big} ? {one} : "
                                              f"({u} - {one}) * ({u} + {one}) / ({u} * {u} + {one})))")
        if n.op == "Log" and o.type.dtype == np.float32 and (add := self.producer(n.inputs[0], "Add", n)):
            ex = [self.producer(v, "Exp", n) for v in add.inputs]
            for k in (0, 1):
                if ex[k] is not None and self._is_one(add.inputs[1 - k]):
                    return [ex[k].inputs[0]], lambda x: f"msgx_softplusf({x})"
        return None

    def reads(self, n) -> list:
        """The values node `n`'s code reads (a rewritten chain's inputs instead of its own)."""
        return self.rewrites[n][0] if n in self.rewrites else [v for v in n.inputs if v is not None]

    def live(self, nodes, outs) -> list:
        """`nodes` without those whose results nothing reads: the inner nodes of rewritten chains."""
        needed, keep = set(outs), []
        for n in reversed(nodes):
            if any(self.a(o) in needed for o in n.outputs):
                keep.append(n)
                needed.update(self.a(v) for v in self.reads(n))
        return keep[::-1]

    def _clip(self, n):
        """The rewrite of Min(Max(x, lo), hi) or Max(Min(x, hi), lo), lo <= hi finite scalar constants: reads
        (x, the inner result), printed as a select on x (NaN in x gives the inner result, x itself)."""
        other = "Max" if n.op == "Min" else "Min"
        for k in (0, 1):
            inner, c = self.producer(n.inputs[k], other, n), self._scalar(n.inputs[1 - k])
            if inner is None or c is None:
                continue
            for i in (0, 1):
                c_in = self._scalar(inner.inputs[1 - i])
                if c_in is None or inner.inputs[i] in self.scalar_consts:
                    continue
                lo, hi = (c_in, c) if n.op == "Min" else (c, c_in)
                if lo <= hi:
                    cmp, bound = (">", c) if n.op == "Min" else ("<", c)
                    lit_c = lit(bound, n.outputs[0].type.dtype)
                    return [inner.inputs[i], n.inputs[k]], \
                        lambda x, v: f"({x} {cmp} {lit_c} ? {lit_c} : {v})"
        return None

    def _scalar(self, v) -> float | None:
        """The value of a finite scalar constant operand, else None."""
        c = self.scalar_consts.get(v) if v is not None else None
        return float(c.reshape(-1)[0]) if c is not None and np.isfinite(c).all() else None

    def _is_one(self, v) -> bool:
        c = self.scalar_consts.get(v)
        return c is not None and float(c.reshape(-1)[0]) == 1.0

    def special(self, n) -> list[str]:
        o = n.outputs[0]
        T = CTYPE[o.type.dtype.name]
        x, N, res = self.row_ptr(n.inputs[0]), self.N, f"v{self.k(o)}"
        if n.op == "CumSum":
            dst = self.row_ptr(o)
            add = "acc + xv" if o.type.dtype.kind == "f" else f"({T})((uint64_t)acc + (uint64_t)xv)"
            return [f"{{ {T} acc = 0; for (long j = 0; j < {N}L; j++) {{ {T} xv = {x}[j]; acc = {add}; "
                    f"{dst}[j] = acc; }} }}"]
        if n.op == "ArgMax" and n.inputs[0].type.dtype == np.float32 and self.var.simd:
            return [f"const int64_t {res} = msgx_argmax_f32({x}, {N}L);"] + self.store(o, False)
        if n.op == "ArgMax":  # per-block maxima in one vector pass, then one short search in the best block
            isf = n.inputs[0].type.dtype.kind == "f"
            XT = CTYPE[n.inputs[0].type.dtype.name]
            nb = (N + 255) // 256
            simd = f"#pragma omp simd reduction(max:m){' reduction(|:nan)' if isf else ''}" \
                if self.var.simd else ""
            nan_upd = " nan |= (xr[j] != xr[j]);" if isf else ""
            return [f"int64_t {res} = 0;",
                    f"{{ const {XT} *xr = {x}; {XT} bm[{nb}]; int nan = 0;",
                    f"for (long bk = 0; bk < {nb}L; bk++) {{",
                    f"    long j0 = bk * 256, j1 = j0 + 256 < {N}L ? j0 + 256 : {N}L; {XT} m = xr[j0];",
                    f"    {simd}",
                    f"    for (long j = j0; j < j1; j++) {{ m = m > xr[j] ? m : xr[j];{nan_upd} }}",
                    "    bm[bk] = m;", "}",
                    f"if (nan) {{ for (long j = 0; j < {N}L; j++)",
                    f"    if (xr[j] != xr[j]) {{ {res} = j; break; }} }}",
                    f"else {{ {XT} g = bm[0]; long gb = 0;",
                    f"    for (long bk = 1; bk < {nb}L; bk++) if (bm[bk] > g) {{ g = bm[bk]; gb = bk; }}",
                    f"    for (long j = gb * 256; j < {N}L; j++)",
                    f"        if (xr[j] == g) {{ {res} = j; break; }} }} }}",
                    ] + self.store(o, False)
        idx = self.ref(n.inputs[1])
        return [f"int64_t {res}_k = (int64_t){idx};", f"if ({res}_k < 0) {res}_k += {N}L;",
                f"if ({res}_k < 0 || {res}_k >= {N}L) {{ err = 1; {res}_k = 0; }}",
                f"const {T} {res} = {x}[{res}_k];"] + self.store(o, False)


SPECIALS = {"CumSum", "ArgMax", "GatherElements"}


def column_code(st: Stage, name: str, var: Variant) -> str:
    """out[a, b] = R_k x[a, k, b], with the k loop outside a vectorised b loop (x read contiguously); four
    rows of x are combined (pairwise) per update of the output row, which quarters its loads and stores."""
    n = st.nodes[0]
    A, K, B = st.S
    T = CTYPE[n.inputs[0].type.dtype.name]
    if n.op in ("ReduceSum", "ReduceMean"):
        init = "0"

        def comb(a, b):
            return f"({a} + {b})"
    else:  # NaN-sticky max/min in either operand, as numpy
        init = f"{'-' if n.op == 'ReduceMax' else ''}({T})INFINITY"
        cmp = ">" if n.op == "ReduceMax" else "<"

        def comb(a, b):
            return f"(({a} != {a} || {a} {cmp} {b}) ? {a} : {b})"
    rows = [f"xr[{k * B}L + j]" if k else "xr[j]" for k in range(4)]
    four = comb("yr[j]", comb(comb(rows[0], rows[1]), comb(rows[2], rows[3])))
    simd = "#pragma omp simd" if var.simd else ""
    fin = f"for (long j = 0; j < {B}L; j++) yr[j] = yr[j] / ({T}){K};" if n.op == "ReduceMean" else ""
    par = int(A > 1 and var.threads > 1 and A * K * B >= PARALLEL_MIN_ELEMENTS)
    return f"""int {name}(void **b) {{
    const {T} *restrict x = b[0];
    {T} *restrict y = b[1];
    #pragma omp parallel for num_threads({var.threads}) if({par}) schedule(static)
    for (long a = 0; a < {A}L; a++) {{
        {T} *restrict yr = y + a * {B}L;
        for (long j = 0; j < {B}L; j++) yr[j] = {init};
        long k = 0;
        for (; k + 4 <= {K}L; k += 4) {{
            const {T} *restrict xr = x + (a * {K}L + k) * {B}L;
            {simd}
            for (long j = 0; j < {B}L; j++) yr[j] = {four};
        }}
        for (; k < {K}L; k++) {{
            const {T} *restrict xr = x + (a * {K}L + k) * {B}L;
            {simd}
            for (long j = 0; j < {B}L; j++) yr[j] = {comb("yr[j]", "xr[j]")};
        }}
        {fin}
    }}
    return 0;
}}"""


def c_source(plan, var: Variant) -> tuple[str, list[str]]:
    """The translation unit for a plan's stages and the stage function names."""
    parts, names = [PRELUDE], []
    for i, (kind, st) in enumerate(plan.steps):
        if kind == "c" and st.kind == "columns":
            name = f"msgx_stage{i}"
            parts.append(column_code(st, name, var))
            st.buffers = [st.nodes[0].inputs[0], st.nodes[0].outputs[0]]
            st.inputs, st.outputs = st.buffers[:1], st.buffers[1:]
            names.append(name)
        elif kind == "c":
            name = f"msgx_stage{i}"
            coder = StageCoder(plan.graph, st, name, var)
            parts.append(coder.emit())
            st.buffers = coder.buffers
            names.append(name)
    if any("msgx_argmax_f32(" in part for part in parts[1:]):
        parts.insert(1, ARGMAX)
    return "\n\n".join(parts) + "\n", names
