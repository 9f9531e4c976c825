"""The symbol engine: facts about dynamic dims, so fusion treats two dims as equal only when it is proved.

Facts come from the graph's ops: every symbol is a positive integer; dims that must agree for an op to be
valid (MatMul's contracting dims, Concat's other dims, broadcast dims proved >= 2) are equal; a Reshape
preserves the element count; a dim written with a fraction (`s/4`) must be an integer, so 4 divides it.
"""
from __future__ import annotations

import math

import sympy

from framework import ops
from framework.ir import Graph, Node, TensorType

_RESHAPES = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"}
INF = math.inf


def _sym(e) -> sympy.Expr:
    return sympy.Integer(e) if isinstance(e, int) else sympy.sympify(e)


def _shape(v):
    t = None if v is None else v.type
    return t.shape if isinstance(t, TensorType) else None


def _integer_polynomial(e: sympy.Expr) -> bool:
    """A substitution must stay an integer polynomial, so canonical forms never grow fractions."""
    if not e.free_symbols:
        return e.is_Integer
    syms = tuple(e.free_symbols)
    return e.is_polynomial(*syms) and all(c.is_Integer for c in sympy.Poly(e, *syms).coeffs())


class SymbolEngine:
    """Equalities (as substitutions), ranges, divisibility and unsolved relations over dim symbols."""

    def __init__(self, keep: frozenset = frozenset()):
        self.subs: dict[sympy.Symbol, sympy.Expr] = {}
        self.ranges: dict[sympy.Symbol, tuple[float, float]] = {}
        self.divisors: dict[sympy.Symbol, int] = {}
        self.relations: list[sympy.Expr] = []  # learned `expr == 0` that no substitution expresses
        self.keep = keep  # preferred representatives (the graph inputs' named dims)
        self._memo: dict = {}  # proofs, valid until the next learned fact

    # ---------------------------------------------------------------- building

    @classmethod
    def from_graph(cls, graph: Graph) -> "SymbolEngine":
        """Collect facts from every node of `graph` (not from subgraph bodies)."""
        keep = frozenset(s for v in graph.inputs for d in (_shape(v) or ()) if not isinstance(d, int)
                         for s in _sym(d).free_symbols)
        engine = cls(keep)
        for v in graph.inputs:
            engine._note_dims(_shape(v) or ())
        for n in graph.nodes:
            engine.learn_node(n)
        return engine

    def learn_node(self, n: Node) -> None:
        """Facts an op's successful execution implies about its input and output dims."""
        for v in (*n.inputs, *n.outputs):
            self._note_dims(_shape(v) or ())
        if n.domain not in ("", "ai.onnx"):
            return
        ins = [_shape(v) for v in n.inputs]
        out = _shape(n.outputs[0]) if n.outputs else None
        opdef = ops.lookup(n.op, n.domain, n.opset)
        if opdef is not None and opdef.fusion == ops.Fusion.BROADCAST:
            data = [ins[0]] if n.op == "Expand" else ins  # Expand's second input is the target's values
            self._learn_broadcast([s for s in (*data, out) if s is not None])
        elif n.op in _RESHAPES and ins and ins[0] is not None and out is not None:
            self.learn_equal(self._prod(ins[0]), self._prod(out))
        elif n.op in ("MatMul", "MatMulInteger") and len(ins) >= 2 and all(ins[:2]):
            a, b = ins[0], ins[1]
            if len(a) >= 1 and len(b) >= 1:
                self.learn_equal(a[-1], b[-2] if len(b) >= 2 else b[0])
            self._learn_broadcast([a[:-2], b[:-2]])
        elif n.op == "Gemm" and len(ins) >= 2 and all(s is not None and len(s) == 2 for s in ins[:2]):
            ka = ins[0][0] if n.attrs.get("transA", 0) else ins[0][1]
            kb = ins[1][1] if n.attrs.get("transB", 0) else ins[1][0]
            self.learn_equal(ka, kb)
        elif n.op == "Concat" and out is not None and all(s is not None and len(s) == len(out) for s in ins):
            axis = n.attrs.get("axis", 0) % max(len(out), 1)
            for i in range(len(out)):
                if i != axis:
                    for s in ins:
                        self.learn_equal(s[i], ins[0][i])

    def _learn_broadcast(self, shapes) -> None:
        """Aligned dims that are both proved >= 2 must be equal (neither can be the broadcast 1)."""
        rank = max((len(s) for s in shapes), default=0)
        for k in range(1, rank + 1):
            dims = [s[-k] for s in shapes if len(s) >= k]
            big = [d for d in dims if self.lower(d) >= 2]
            for d in big[1:]:
                self.learn_equal(d, big[0])
            ints = [d for d in dims if isinstance(d, int) and d >= 2]
            for d in dims:  # a symbol broadcast against a static k >= 2 is 1 or k
                s = _sym(d)
                if ints and isinstance(s, sympy.Symbol):
                    self._memo.clear()
                    lo, hi = self.ranges.get(s, (1, INF))
                    self.ranges[s] = (lo, min(hi, ints[0]))

    def _note_dims(self, shape) -> None:
        """Divisibility implied by integer-valued dims such as `s/4` (4 divides s)."""
        for d in shape:
            if isinstance(d, int):
                continue
            for term in sympy.Add.make_args(sympy.expand(_sym(d))):
                coeff, rest = term.as_coeff_Mul()
                if coeff.is_Rational and coeff.q > 1 and isinstance(rest, sympy.Symbol):
                    self._memo.clear()
                    self.divisors[rest] = math.lcm(self.divisors.get(rest, 1), int(coeff.q))

    def learn_equal(self, a, b) -> bool:
        """Record a == b; True when it adds a substitution. Contradictions (4 == 5) are ignored."""
        self._memo.clear()
        ca, cb = self.canon(a), self.canon(b)
        diff = sympy.simplify(ca - cb)
        if diff == 0 or not diff.free_symbols:
            return False
        num, den = sympy.fraction(sympy.factor(sympy.together(ca / cb)))
        eq = sympy.expand(num - den)  # dims are positive: a/b == 1 cancels common factors (b*s == b*t)
        if eq == 0:
            return False
        order = sorted(eq.free_symbols, key=lambda s: (s in self.keep, s.name), reverse=False)
        for s in order:
            if not eq.is_polynomial(s) or sympy.degree(eq, s) != 1:  # floor(h/2) etc. are not solved for
                continue
            try:
                sol = sympy.solve(eq, s)
            except (NotImplementedError, sympy.polys.polyerrors.PolynomialError):  # a fact not learned
                continue
            if len(sol) != 1:
                continue
            sol = sympy.expand(sol[0])
            if _integer_polynomial(sol) and (not sol.is_Integer or sol > 0):
                self._substitute(s, sol)
                return True
        self.relations.append(eq)
        return False

    def _substitute(self, s: sympy.Symbol, sol: sympy.Expr) -> None:
        self.subs = {k: sympy.expand(v.xreplace({s: sol})) for k, v in self.subs.items()}
        self.subs[s] = sol
        if s in self.ranges and sol.is_Symbol:  # the representative inherits the tighter range
            lo, hi = self.ranges.pop(s)
            lo2, hi2 = self.ranges.get(sol, (1, INF))
            self.ranges[sol] = (max(lo, lo2), min(hi, hi2))

    # ---------------------------------------------------------------- queries

    def canon(self, e) -> sympy.Expr:
        """`e` with learned equalities substituted and Max/Min decided where ranges prove an order."""
        e = _sym(e)
        if self.subs:
            e = e.xreplace(self.subs)
        if e.has(sympy.Max, sympy.Min):
            e = e.replace(lambda x: isinstance(x, (sympy.Max, sympy.Min)), self._decide_minmax)
        return e

    def _decide_minmax(self, x):
        args = list(x.args)
        pick = (lambda a, b: self.lower(a - b) >= 0) if isinstance(x, sympy.Max) else \
            (lambda a, b: self.lower(b - a) >= 0)
        for a in args:
            if all(a is b or pick(a, b) for b in args):
                return a
        return x

    def lower(self, e) -> float:
        """A proved lower bound of an integer expression (1 for unknown products of symbols)."""
        e = _sym(e) if not isinstance(e, sympy.Basic) else e
        if self.subs:
            e = e.xreplace(self.subs)
        if e.is_Integer:
            return int(e)
        if e.is_Rational:
            return float(e)
        if e.is_Symbol:
            lo = self.ranges.get(e, (1, INF))[0]
            return max(lo, self.divisors.get(e, 1))
        e = sympy.expand(e)
        if e.is_Mul:
            lo = 1
            for f in e.args:
                fl = self.lower(f)
                if fl < 0:
                    return -INF
                lo *= fl
            return lo
        if e.is_Add:
            return sum(self.lower(t) if not (t.as_coeff_Mul()[0] < 0) else -self.upper(-t) for t in e.args)
        if e.is_Pow and e.exp.is_Integer and e.exp > 0:
            return self.lower(e.base) ** int(e.exp)
        return 1 if e.is_positive else (0 if e.is_nonnegative else -INF)

    def upper(self, e) -> float:
        e = sympy.expand(_sym(e).xreplace(self.subs) if self.subs else _sym(e))
        if e.is_Integer:
            return int(e)
        if e.is_Symbol:
            return self.ranges.get(e, (1, INF))[1]
        if e.is_Mul and all(self.lower(f) >= 0 for f in e.args):
            return math.prod(self.upper(f) for f in e.args)
        if e.is_Add:
            return sum(self.upper(t) if not (t.as_coeff_Mul()[0] < 0) else -self.lower(-t) for t in e.args)
        return INF

    def equal(self, a, b) -> bool:
        """True only when a == b is proved from the learned facts (never a guess)."""
        if a is None or b is None:
            return False
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        key = (a, b)
        if key not in self._memo:
            self._memo[key] = self._prove_equal(a, b)
        return self._memo[key]

    def _prove_equal(self, a, b) -> bool:
        ca, cb = self.canon(a), self.canon(b)
        if ca == cb:
            return True
        diff = sympy.expand(ca - cb)
        if diff == 0:
            return True
        if diff.is_number or not diff.has(sympy.Max, sympy.Min, sympy.floor, sympy.ceiling, sympy.Mod):
            return False  # a nonzero polynomial in independent symbols is not identically zero
        return sympy.simplify(diff) == 0

    def same_shape(self, s1, s2) -> bool:
        return s1 is not None and s2 is not None and len(s1) == len(s2) and all(
            self.equal(a, b) for a, b in zip(s1, s2))

    def numel(self, shape):
        """Canonical element count of a shape (None for an unknown rank)."""
        return None if shape is None else self.canon(self._prod(shape))

    @staticmethod
    def _prod(shape):
        return sympy.Mul(*[_sym(d) for d in shape]) if shape else sympy.Integer(1)

    def broadcasts_to(self, small, big) -> bool:
        """Proved: `small` broadcasts to exactly `big` (each aligned dim is 1 or equal)."""
        if small is None or big is None or len(small) > len(big):
            return False
        return all(d == 1 or self.equal(d, big[len(big) - len(small) + i]) for i, d in enumerate(small))

    def describe(self) -> str:
        """The facts as stable text (for tests and dumps)."""
        lines = [f"{k} = {v}" for k, v in sorted(self.subs.items(), key=lambda kv: kv[0].name)]
        by_name = lambda kv: kv[0].name  # noqa: E731
        lines += [f"{k} in [{lo}, {hi}]" for k, (lo, hi) in sorted(self.ranges.items(), key=by_name)
                  if (lo, hi) != (1, INF)]
        lines += [f"{m} | {k}" for k, m in sorted(self.divisors.items(), key=lambda kv: kv[0].name) if m > 1]
        lines += [f"{r} = 0" for r in self.relations]
        return "\n".join(lines)
