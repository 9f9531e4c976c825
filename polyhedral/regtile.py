"""Register tiling (unroll-and-jam with scalar replacement) of reduction point loops, in code generation.

A perfect nest of two or three unit-stride loops around one statement that sums into an element indexed by
all loops but one (the reduction loop R) is a set of independent chains, one per target element, each
running R upwards. Any order of the elements keeps the result, as long as each chain still runs R upwards.
So the nest becomes blocks of UP x UQ elements (rows P unrolled, columns Q) whose partial sums live in
vector registers across the whole R loop: one load of a shared operand feeds several multiply-adds, and the
target is read and written once per block instead of once per R step. Two flavours:

- columns-vector (gemm, 2mm, covariance, doitgen): Q is the target's stride-1 subscript; UQ vectors of W
  columns per row, R outermost in the block, operands that do not use Q are broadcast;
- dot (syrk, syr2k): R is stride-1 in every operand that uses it; each element's chain is a W-lane vector
  sum over R (summed horizontally at the end: the reassociation `-fassociative-math` already allows).

Points outside the full blocks (ragged or triangular edges) run the scalar statement in the same loops.
Factors of the statement's product that do not use R (gemm's alpha) scale each block's sums once at the
end instead of every term (split_invariant), and column-vector blocks run columns outer where the bounds
allow, so the operand panel a column of blocks shares stays in L1 (emit).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import islpy as isl

VECTOR_BYTES = 32  # AVX2 width: single-row blocks (doitgen's 16 sums: 64-byte vectors made it 25% slower)
# blocks of rows on AVX-512: a 4 x 4 block of sums and its operands needs ~24 of its 32 registers
# (gemm LARGE on one thread: 68 -> 46 ms, syr2k 68 -> 51, 3mm 129 -> 108)
WIDE_BYTES = 64
_REF = re.compile(r"\b([A-Za-z_]\w*)((?:\[[^\[\]]*\])+)")
_CALL = re.compile(r"\b[A-Za-z_]\w*\s*\(")
_BARE_DOUBLE = re.compile(r"(?<![\w.])(\d+\.\d*|\.\d+|\d+[eE][-+]?\d+|\d+\.\d*[eE][-+]?\d+)(?![\w.])")
FAR = "(1L << 60)"  # an empty skip range for rows outside the full blocks


def _uses(name: str, text: str) -> bool:
    return re.search(rf"\b{re.escape(name)}\b", text) is not None


def _sub(text: str, name: str, value: str) -> str:
    return re.sub(rf"\b{re.escape(name)}\b", f"({value})", text)


def _subscripts(subs: str) -> list[str]:
    return [s.strip() for s in subs[1:-1].split("][")]


def _bare(x: str) -> str:
    return x.replace("(", "").replace(")", "").replace(" ", "")


def _stride_one(ref: str, it: str) -> bool | None:
    """True when `it` indexes only the last subscript of array reference `ref`, as exactly `it`; None when
    `it` does not occur; False otherwise (strided)."""
    m = _REF.fullmatch(ref)
    subs = _subscripts(m.group(2))
    if not any(_uses(it, s) for s in subs):
        return None
    return _bare(subs[-1]) == it and not any(_uses(it, s) for s in subs[:-1])


def _factors(expr: str) -> list[str] | None:
    """The factors of `expr` when it is a product at its top level (only `*` outside parentheses and
    brackets), else None."""
    expr = expr.strip()
    while expr.startswith("(") and _closing(expr, 0) == len(expr) - 1:
        expr = expr[1:-1].strip()
    out, depth, start = [], 0, 0
    for k, ch in enumerate(expr):
        depth += ch in "([" and 1 or ch in ")]" and -1 or 0
        if depth == 0 and ch in "+-/%<>=?:&|,":
            return None
        if depth == 0 and ch == "*":
            out.append(expr[start:k].strip())
            start = k + 1
    out.append(expr[start:].strip())
    if len(out) < 2 or not all(out):
        return None
    return [g for f in out for g in (_factors(f) if f.startswith("(") else None) or [f]]


def _closing(text: str, at: int) -> int:
    """Index of the parenthesis closing the one at `at`."""
    depth = 0
    for k in range(at, len(text)):
        depth += text[k] == "(" and 1 or text[k] == ")" and -1 or 0
        if depth == 0:
            return k
    return -1


def split_invariant(rhs: str, it: str) -> tuple[str, str]:
    """(outer, inner) with rhs = outer * inner where `outer` holds the product's factors that do not use the
    reduction iterator `it` (gemm's alpha): the sum over `it` of rhs is outer times the sum of inner, so the
    multiply leaves the loop. ("", rhs) when there is none or rhs is no product."""
    factors = _factors(rhs)
    if factors is None:
        return "", rhs
    outer = [f for f in factors if not _uses(it, f)]
    inner = [f for f in factors if _uses(it, f)]
    if not outer or not inner:
        return "", rhs
    return " * ".join(outer), " * ".join(inner)


def _vectorizable(rhs: str, it: str) -> bool:
    """Every array reference in `rhs` that uses `it` walks it with stride 1; `it` occurs nowhere else."""
    refs = [m.group(0) for m in _REF.finditer(rhs)]
    if any(_stride_one(r, it) is False for r in refs):
        return False
    return not _uses(it, _REF.sub("", rhs))


@dataclass
class _Loop:
    it: str
    lo: str  # C expression of the first iteration
    hi: str  # C expression of the last iteration (inclusive)


@dataclass
class Nest:
    """A matched nest: loops P (None for a 2-deep nest), Q, R; the statement call; target/rhs over the AST's
    iterators; `dot`: R is the vector loop (else Q)."""

    p: _Loop | None
    q: _Loop
    r: _Loop
    call: str
    target: str
    rhs: str
    dot: bool


def _loop(node) -> _Loop | None:
    from .codegen import _upper_bound
    if node.get_type() != isl.ast_node_type.for_ or node.for_is_degenerate():
        return None
    inc = node.for_get_inc()
    if inc.get_type() != isl.ast_expr_type.int or inc.get_val().to_python() != 1:
        return None
    ub = _upper_bound(node)
    if ub is None:
        return None
    hi = f"({ub[1]}) - 1" if ub[0] == "<" else ub[1]
    return _Loop(node.for_get_iterator().get_id().get_name(), node.for_get_init().to_C_str(), hi)


def match(node, stmts: dict, dtype: str) -> Nest | None:
    """The nest under `node` when it can be register-tiled, else None."""
    from .codegen import _reduction, _subst
    loops, cur = [], node
    while cur.get_type() == isl.ast_node_type.for_ and len(loops) < 3:
        lp = _loop(cur)
        if lp is None:
            return None
        loops.append(lp)
        cur = cur.for_get_body()
    if cur.get_type() != isl.ast_node_type.user or len(loops) < 2:
        return None
    call = cur.user_get_expr()
    st = stmts.get(call.get_op_arg(0).get_id().get_name())
    red = _reduction(st) if st else None
    if red is None or red[2] != "+" or not red[1].startswith("acc + "):
        return None
    args = [call.get_op_arg(k).to_C_str() for k in range(1, call.get_op_n_arg())]
    target, rhs = _subst(red[0], st.iters, args), _subst(red[1][len("acc + "):], st.iters, args)
    if _CALL.search(rhs) or (dtype == "float" and _BARE_DOUBLE.search(rhs)):
        return None  # no vector forms of calls; a double literal would not broadcast to float lanes
    its = [lp.it for lp in loops]
    reduce = [lp for lp in loops if not _uses(lp.it, target)]
    if len(reduce) != 1:
        return None
    r = reduce[0]
    others = [lp for lp in loops if lp is not r]
    tref = _REF.fullmatch(target)
    if tref is None:
        return None
    last = _bare(_subscripts(tref.group(2))[-1])
    q = next((lp for lp in others if lp.it == last and _stride_one(target, lp.it)), None)
    dot = q is None or not _vectorizable(rhs, q.it)
    if dot:
        if not _vectorizable(rhs, r.it):
            return None
        q = others[-1]
    p = next((lp for lp in others if lp is not q), None)
    # the block order is P, Q, R: each loop's bounds may use only the loops before it in that order
    for lp, banned in ((p, [q, r]), (q, [r]), (r, [p, q])):
        if lp is not None and any(b is not None and (_uses(b.it, lp.lo) or _uses(b.it, lp.hi))
                                  for b in banned):
            return None
    # every loop of the nest is written to the target except R; none of its iterators may leak elsewhere
    if any(_uses(it, target) for it in its if it not in {x.it for x in others}):
        return None
    return Nest(p, q, r, call.to_C_str(), target, rhs, dot)


def emit(nest: Nest, dtype: str, rows: int, cols: int, pad: str) -> list[str]:
    """C lines of the blocked nest (UP = rows when P exists, UQ = cols vectors or elements): blocks of columns
    outer where Q's bounds do not depend on P, else blocks of rows outer (a triangle's columns follow its
    row)."""
    size = 8 if dtype == "double" else 4
    # lanes per vector, as C: the wide width is the compiler's (MSGX_WIDE in PRELUDE)
    w = f"(MSGX_WIDE / {size})" if nest.p else str(VECTOR_BYTES // size)
    v = ("msgx_w" if nest.p else "msgx_v") + ("d" if dtype == "double" else "f")
    up = rows if nest.p else 1
    cols = cols if nest.p else rows * cols  # no rows to unroll: as many independent sums, all columns
    p, q, r = nest.p, nest.q, nest.r
    step_q = f"{cols} * {w}" if not nest.dot else str(cols)
    out: list[str] = []

    def at_row(text: str, a: int) -> str:
        return _sub(text, p.it, f"msgx_p + {a}") if p else text

    def q_col(b: int) -> str:
        return f"msgx_q0 + {b} * {w}" if not nest.dot else f"msgx_q0 + {b}"

    def vec_refs(text: str, it: str, at: str) -> str:
        """References that use `it` (stride 1) become vector loads at `it` = `at`."""
        def one(m):
            ref = m.group(0)
            return f"msgx_ld_{v}(&{_sub(ref, it, at)})" if _stride_one(ref, it) else ref
        return _REF.sub(one, text)

    def target(a: int, b: int) -> str:
        return at_row(_sub(nest.target, q.it, q_col(b)), a)

    # factors that do not use R multiply the block's sums once, after the R loop (gemm's alpha: a scalar
    # multiply and a broadcast per element took FMA-port slots; gemm LARGE one thread 66 -> 55 ms)
    outer, inner = split_invariant(nest.rhs, r.it)

    def vector_block(ncols: int) -> list[str]:
        """UP rows x ncols vectors of sums in registers across the R loop."""
        cells = [(a, b) for a in range(up) for b in range(ncols)]  # the block's outputs, row by row
        acc = {(a, b): f"msgx_acc{a}_{b}" for a, b in cells}
        if outer:
            lines = [f"{v} {acc[c]} = {{0}};" for c in cells]
        else:
            lines = [f"{v} {acc[c]} = msgx_ld_{v}(&{target(*c)});" for c in cells]
        lines.append(f"for (long {r.it} = {r.lo}; {r.it} <= {r.hi}; {r.it} += 1) {{")
        lines += [f"  {acc[a, b]} = {acc[a, b]} + ({at_row(vec_refs(inner, q.it, q_col(b)), a)});"
                  for a, b in cells]
        lines.append("}")
        if outer:
            return lines + [f"msgx_st_{v}(&{target(a, b)}, msgx_ld_{v}(&{target(a, b)}) + "
                            f"({at_row(vec_refs(outer, q.it, q_col(b)), a)}) * {acc[a, b]});" for a, b in cells]
        return lines + [f"msgx_st_{v}(&{target(*c)}, {acc[c]});" for c in cells]

    def dot_block() -> list[str]:
        """UP x UQ dot products, each a vector of partial sums over R, summed across lanes at the end."""
        cells = [(a, b) for a in range(up) for b in range(cols)]
        acc = {(a, b): f"msgx_acc{a}_{b}" for a, b in cells}
        lines = [f"{v} {acc[c]} = {{0}};" for c in cells]
        lines.append(f"long {r.it} = {r.lo};")
        lines.append(f"for (; {r.it} + {w} - 1 <= {r.hi}; {r.it} += {w}) {{")
        vec_rhs = vec_refs(inner, r.it, r.it)
        lines += [f"  {acc[a, b]} = {acc[a, b]} + ({at_row(_sub(vec_rhs, q.it, q_col(b)), a)});"
                  for a, b in cells]
        lines.append("}")
        sums = {(a, b): f"msgx_s{a}_{b}" for a, b in cells}
        lines += [f"{dtype} {sums[c]} = msgx_hsum_{v}({acc[c]});" for c in cells]
        lines.append(f"for (; {r.it} <= {r.hi}; {r.it} += 1) {{")
        lines += [f"  {sums[a, b]} = {sums[a, b]} + ({at_row(_sub(inner, q.it, q_col(b)), a)});"
                  for a, b in cells]
        lines.append("}")
        scale = {(a, b): f"({at_row(_sub(outer, q.it, q_col(b)), a)}) * " if outer else "" for a, b in cells}
        return lines + [f"{target(*c)} = {target(*c)} + {scale[c]}{sums[c]};" for c in cells]

    blk = dot_block() if nest.dot else vector_block(cols)
    # columns past the last full block, one vector at a time before the scalar rest (gemm MEDIUM's 220
    # columns left 28 of them, 13% of the work, to a loop that read and wrote C per step of R); only in
    # blocks of rows, whose UP sums overlap their adds (doitgen's single row, one sum a step: 3x slower)
    narrow = vector_block(1) if p and not nest.dot and cols > 1 else []

    # the scalar statement for one row's columns outside [msgx_qlo, msgx_q0)
    if not nest.dot:  # R outside, the columns inside (stride 1, vectorised by the compiler)
        rest = [f"for (long {r.it} = {r.lo}; {r.it} <= {r.hi}; {r.it} += 1) {{",
                "  #pragma omp simd",
                f"  for (long {q.it} = {q.lo}; {q.it} <= min({q.hi}, msgx_qlo - 1); {q.it} += 1) "
                f"{nest.call};",
                "  #pragma omp simd",
                f"  for (long {q.it} = max({q.lo}, msgx_q0); {q.it} <= {q.hi}; {q.it} += 1) {nest.call};",
                "}"]
    else:  # each column's sum over R in a local
        red = f"{{ {dtype} acc = {nest.target}; " \
              f"for (long {r.it} = {r.lo}; {r.it} <= {r.hi}; {r.it} += 1) acc = acc + ({nest.rhs}); " \
              f"{nest.target} = acc; }}"
        rest = [f"for (long {q.it} = {q.lo}; {q.it} <= min({q.hi}, msgx_qlo - 1); {q.it} += 1) {red}",
                f"for (long {q.it} = max({q.lo}, msgx_q0); {q.it} <= {q.hi}; {q.it} += 1) {red}"]
    if p:  # most rows have no columns left: the test spares their loops over R (gemm LARGE: 10% of the
        # time went to empty column loops, per row and step of R); without rows the rest runs once a nest
        rest = [f"if ({q.lo} <= min({q.hi}, msgx_qlo - 1) || max({q.lo}, msgx_q0) <= {q.hi}) {{",
                *[f"  {x}" for x in rest], "}"]

    def bound(expr: str, op: str) -> str:
        terms = [at_row(expr, a) for a in range(up)]
        out_ = terms[0]
        for t in terms[1:]:
            out_ = f"{op}({out_}, {t})"
        return out_

    if p and not nest.dot and not (_uses(p.it, q.lo) or _uses(p.it, q.hi)):
        # block columns outer, rows inner: a column of blocks reads the same R x UQ-vector panel of the
        # operand that walks Q (gemm's B), which stays in L1 across the rows instead of streaming from L2
        # once per row block (one thread: gemm MEDIUM 0.58 -> 0.44 ms, 2mm LARGE 76 -> 67). The rows past the
        # last full block, and every row's columns past the last vector block, run the scalar statement after.
        out.append("{")
        out.append(f"  const long msgx_qfirst = {q.lo}, msgx_qhi = {q.hi};")
        out.append(f"  const long msgx_pend = {p.lo} + ({p.hi} - ({p.lo}) + 1) / {up} * {up};")
        out.append(f"  long msgx_qend = msgx_qfirst;")
        for step, body in ((step_q, blk), (w, narrow)):
            if not body:
                continue
            out.append(f"  for (; msgx_qend + {step} - 1 <= msgx_qhi; msgx_qend += {step}) {{")
            out.append(f"    const long msgx_q0 = msgx_qend;")
            out.append(f"    for (long msgx_p = {p.lo}; msgx_p < msgx_pend; msgx_p += {up}) {{")
            out += [f"      {x}" for x in body]
            out.append("    }")
            out.append("  }")
        out.append(f"  for (long {p.it} = {p.lo}; {p.it} <= {p.hi}; {p.it}++) {{")
        out.append(f"    const long msgx_q0 = {p.it} < msgx_pend ? msgx_qend : {FAR};")
        out.append(f"    const long msgx_qlo = {p.it} < msgx_pend ? msgx_qfirst : {FAR};")
        out += [f"    {x}" for x in rest]
        out.append("  }")
        out.append("}")
        return [pad + x for x in out]
    out.append("{")
    if p:
        out.append(f"  for (long msgx_p = {p.lo}; msgx_p <= {p.hi}; msgx_p += {up}) {{")
        out.append(f"    long msgx_qlo = {FAR}, msgx_q0 = {FAR};")
        out.append(f"    if (msgx_p + {up - 1} <= {p.hi}) {{")
        ind = "      "
    else:
        out.append(f"  {{ long msgx_qlo, msgx_q0;")
        out.append("    {")
        ind = "      "
    out.append(f"{ind}msgx_qlo = {bound(q.lo, 'max')};")
    out.append(f"{ind}const long msgx_qhi = {bound(q.hi, 'min')};")
    out.append(f"{ind}for (msgx_q0 = msgx_qlo; msgx_q0 + {step_q} - 1 <= msgx_qhi; msgx_q0 += {step_q}) {{")
    out += [f"{ind}  {x}" for x in blk]
    out.append(f"{ind}}}")
    if narrow:
        out.append(f"{ind}for (; msgx_q0 + {w} - 1 <= msgx_qhi; msgx_q0 += {w}) {{")
        out += [f"{ind}  {x}" for x in narrow]
        out.append(f"{ind}}}")
    out.append("    }")
    if p:
        out.append(f"    for (long msgx_a = 0; msgx_a < {up} && msgx_p + msgx_a <= {p.hi}; msgx_a++) {{")
        out.append(f"      const long {p.it} = msgx_p + msgx_a;")
        out += [f"      {x}" for x in rest]
        out.append("    }")
    else:
        out += [f"    {x}" for x in rest]
    out.append("  }")
    out.append("}")
    return [pad + x for x in out]


def _vector_helpers(v: str, t: str) -> str:
    """Unaligned load/store and horizontal sum of vector type v with elements of type t."""
    return (f"static inline __attribute__((always_inline)) {v} msgx_ld_{v}(const {t} *p) {{\n"
            f"  {v} x; __builtin_memcpy(&x, p, sizeof x); return x; }}\n"
            f"static inline __attribute__((always_inline)) void msgx_st_{v}({t} *p, {v} x) {{\n"
            f"  __builtin_memcpy(p, &x, sizeof x); }}\n"
            f"static inline __attribute__((always_inline)) {t} msgx_hsum_{v}({v} x) {{\n"
            f"  {t} s = 0; for (int k = 0; k < (int)(sizeof x / sizeof s); k++) s += x[k]; return s; }}\n")


PRELUDE = f"""/* register tiling (regtile.py): unaligned vector loads/stores and a horizontal sum; blocks of
   rows use the widest vectors the compiler targets (msgx_w*), single rows 32-byte ones (msgx_v*) */
#if defined(__AVX512F__)
#define MSGX_WIDE {WIDE_BYTES}
#else
#define MSGX_WIDE {VECTOR_BYTES}
#endif
typedef double msgx_vd __attribute__((vector_size({VECTOR_BYTES})));
typedef float msgx_vf __attribute__((vector_size({VECTOR_BYTES})));
typedef double msgx_wd __attribute__((vector_size(MSGX_WIDE)));
typedef float msgx_wf __attribute__((vector_size(MSGX_WIDE)));
""" + "".join(_vector_helpers(v, t) for v, t in (("msgx_vd", "double"), ("msgx_vf", "float"),
                                                 ("msgx_wd", "double"), ("msgx_wf", "float")))
