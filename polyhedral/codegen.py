"""isl AST -> C: statements become macros over their iterators, loops come from the schedule; OpenMP on the
outermost loop that carries no dependence and `omp simd` on innermost dependence-free loops."""
from __future__ import annotations

import re

import islpy as isl

from .scheduler import Result
from .stmt import _ASSIGN, Scop, ScopError

PRELUDE = """#include <math.h>
#include <stddef.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#define floord(n, d) (((n) < 0) ? -((-(n) + (d) - 1) / (d)) : (n) / (d))
#define min(a, b) ((a) < (b) ? (a) : (b))
#define max(a, b) ((a) > (b) ? (a) : (b))
/* NaN-propagating, as numpy's maximum/minimum and ONNX Relu/Max/Min are (fmaxf drops NaN) */
static inline __attribute__((always_inline)) float msgx_max(float a, float b) {
  return (a != a || a > b) ? a : b;
}
static inline __attribute__((always_inline)) float msgx_min(float a, float b) {
  return (a != a || a < b) ? a : b;
}
static inline __attribute__((always_inline)) float msgx_relu(float a) { return a < 0.0f ? 0.0f : a; }
/* Branch-free exp/erf/tanh (libm's are calls that block vectorisation): exp by 2^n * polynomial on
   [-ln2/2, ln2/2] (rel. error ~2e-7), erf by Abramowitz-Stegun 7.1.26 (abs. error < 1.5e-7). */
static inline __attribute__((always_inline)) float msgx_expf(float x) {
  float c = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  float n = __builtin_rintf(c * 1.44269504088896341f);
  float r = c - n * 0.693145751953125f - n * 1.428606765330187e-06f;
  float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.166666671633f + r * (0.0416664853692f
            + r * (0.00833336077631f + r * 0.00139304355f)))));
  int bits = ((int)n + 127) << 23;
  float scale;
  __builtin_memcpy(&scale, &bits, sizeof scale);
  float y = p * scale;
  y = x < -87.3f ? 0.0f : y;
  y = x > 88.7f ? INFINITY : y;
  return x != x ? x : y;
}
static inline __attribute__((always_inline)) float msgx_erff(float x) {
  float a = x < 0.0f ? -x : x;
  float t = 1.0f / (1.0f + 0.3275911f * a);
  float p = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f
            + t * 1.061405429f))));
  float y = 1.0f - p * msgx_expf(-a * a);
  return x < 0.0f ? -y : y;
}
static inline __attribute__((always_inline)) float msgx_tanhf(float x) {
  float a = x < 0.0f ? -x : x;
  float y = a < 0.0004f ? a : 1.0f - 2.0f / (msgx_expf(2.0f * a) + 1.0f);
  return x < 0.0f ? -y : y;
}
void msgx_poly_threads(int n) {
#ifdef _OPENMP
  omp_set_num_threads(n);
#else
  (void)n;
#endif
}
"""
_NAME = re.compile(r"^[A-Za-z_]\w*$")
MIN_PARALLEL_WORK = 32768  # statement instances per parallel region: below it, waking threads costs more


def _ast(scop: Scop, binding: dict, res: Result) -> isl.AstNode:
    params = f"[{', '.join(scop.params)}] -> " if scop.params else ""
    ctx = " and ".join(f"{p} = {int(binding[p])}" for p in scop.params)
    build = isl.AstBuild.from_context(isl.Set(f"{params}{{ : {ctx} }}" if ctx else "{ : }"))
    return build.node_from_schedule_map(res.schedule)


def _children(node: isl.AstNode) -> list:
    lst = node.block_get_children()
    return [lst.get_at(k) for k in range(lst.n_ast_node())]


def _has_loop(node: isl.AstNode) -> bool:
    t = node.get_type()
    if t == isl.ast_node_type.for_:
        return True
    if t == isl.ast_node_type.block:
        return any(_has_loop(c) for c in _children(node))
    if t == isl.ast_node_type.if_:
        return _has_loop(node.if_get_then()) or (node.if_has_else() and _has_loop(node.if_get_else()))
    if t == isl.ast_node_type.mark:
        return _has_loop(node.mark_get_node())
    return False


def _reduction(st) -> tuple[str, str, str] | None:
    """(target, accumulate-into-`acc` expression, OpenMP reduction op or "") when the body updates its
    target from itself and reads its array nowhere else; the loop can then keep the target in a register."""
    m = _ASSIGN.match(st.body.rstrip().rstrip(";"))
    if not m:
        return None
    lhs, op, rhs = (x.strip() for x in m.groups())
    arr = lhs.split("[")[0].strip()
    if rhs.count(f"{arr}[") != rhs.count(lhs) or (op == "=" and lhs not in rhs):
        return None
    if op in ("+=", "-=", "*=", "/="):
        expr, red = f"acc {op[0]} ({rhs})", {"+=": "+", "*=": "*"}.get(op, "")
    else:
        expr = rhs.replace(lhs, "acc")
        red = "+" if expr.startswith("acc + ") else "max" if expr.startswith("msgx_max(acc,") else \
            "min" if expr.startswith("msgx_min(acc,") else ""
    return lhs, expr, red


def _subst(text: str, iters, args) -> str:
    for it, a in zip(iters, args):
        text = re.sub(rf"\b{re.escape(it)}\b", f"({a})", text)
    return text


def _calls(node: isl.AstNode) -> set[str]:
    """Names of the statements under an AST node."""
    t = node.get_type()
    if t == isl.ast_node_type.user:
        return {node.user_get_expr().get_op_arg(0).get_id().get_name()}
    if t == isl.ast_node_type.block:
        return set().union(*(_calls(c) for c in _children(node)))
    if t == isl.ast_node_type.for_:
        return _calls(node.for_get_body())
    if t == isl.ast_node_type.if_:
        return _calls(node.if_get_then()) | (_calls(node.if_get_else()) if node.if_has_else() else set())
    if t == isl.ast_node_type.mark:
        return _calls(node.mark_get_node())
    return set()


class _Printer:
    def __init__(self, res: Result, scop: Scop | None = None):
        self.res, self.lines, self.loops = res, [], 0
        self.stmts = {st.name: st for st in scop.statements} if scop else {}
        self.dtype = scop.dtype if scop else "double"

    def _scalar_reduction(self, node, it, init, pad) -> bool:
        """An innermost loop whose one statement accumulates into an element it does not index: emit it
        with the element in a local (vectorisable reduction) instead of a load/store per iteration."""
        body = node.for_get_body()
        if body.get_type() != isl.ast_node_type.user:
            return False
        call = body.user_get_expr()
        st = self.stmts.get(call.get_op_arg(0).get_id().get_name())
        red = _reduction(st) if st else None
        if red is None:
            return False
        args = [call.get_op_arg(k).to_C_str() for k in range(1, call.get_op_n_arg())]
        target, expr = _subst(red[0], st.iters, args), _subst(red[1], st.iters, args)
        if re.search(rf"\b{re.escape(it)}\b", target):
            return False
        cond, inc = node.for_get_cond().to_C_str(), node.for_get_inc().to_C_str()
        self.lines.append(f"{pad}{{ {self.dtype} acc = {target};")
        if red[2] in ("max", "min"):  # gcc vectorises sums itself (reassociation on) but refuses them
            self.lines.append(f"{pad}  #pragma omp simd reduction({red[2]}:acc)")  # under this pragma
        self.lines.append(f"{pad}  for (long {it} = {init}; {cond}; {it} += {inc}) acc = {expr};")
        self.lines.append(f"{pad}  {target} = acc; }}")
        return True

    def emit(self, node: isl.AstNode, depth: int, in_par: bool) -> None:
        pad = "  " * depth
        t = node.get_type()
        if t == isl.ast_node_type.block:
            for c in _children(node):
                self.emit(c, depth, in_par)
        elif t == isl.ast_node_type.user:
            self.lines.append(f"{pad}{node.user_get_expr().to_C_str()};")
        elif t == isl.ast_node_type.if_:
            self.lines.append(f"{pad}if ({node.if_get_cond().to_C_str()}) {{")
            self.emit(node.if_get_then(), depth + 1, in_par)
            if node.if_has_else():
                self.lines.append(f"{pad}}} else {{")
                self.emit(node.if_get_else(), depth + 1, in_par)
            self.lines.append(f"{pad}}}")
        elif t == isl.ast_node_type.mark:
            self.emit(node.mark_get_node(), depth, in_par)
        elif t == isl.ast_node_type.for_:
            self._for(node, depth, in_par)
        else:
            raise ScopError(f"unexpected isl AST node {t}")

    def _for(self, node, depth, in_par):
        pad = "  " * depth
        it = node.for_get_iterator().get_id().get_name()
        init = node.for_get_init().to_C_str()
        body = node.for_get_body()
        if node.for_is_degenerate():
            self.lines.append(f"{pad}{{ const long {it} = {init};")
            self.emit(body, depth + 1, in_par)
            self.lines.append(f"{pad}}}")
            return
        if not _has_loop(body) and self._scalar_reduction(node, it, init, pad):
            return
        dim = int(it[1:]) if it[1:].isdigit() else -1
        free = dim >= 0 and self.res.loop_parallel(dim, frozenset(_calls(body)))
        inner = not _has_loop(body)
        cfg = self.res.config
        # threads only on loops at most one sequential loop deep (a time loop) that hold a loop nest or are
        # outermost: a parallel region per innermost loop costs more than it brings
        par = free and cfg.parallel and not in_par and self.loops <= 1 and (not inner or self.loops == 0) \
            and self.res.work_per_entry(dim, frozenset(_calls(body))) >= MIN_PARALLEL_WORK
        simd = free and cfg.vectorize and inner
        if par and simd:
            self.lines.append(f"{pad}#pragma omp parallel for simd")
        elif par:
            self.lines.append(f"{pad}#pragma omp parallel for")
        elif simd:
            self.lines.append(f"{pad}#pragma omp simd")
        cond, inc = node.for_get_cond().to_C_str(), node.for_get_inc().to_C_str()
        self.lines.append(f"{pad}for (long {it} = {init}; {cond}; {it} += {inc}) {{")
        self.loops += 1
        self.emit(body, depth + 1, in_par or par)
        self.loops -= 1
        self.lines.append(f"{pad}}}")


def _decl(scop: Scop, binding: dict, arr) -> str:
    t, shape = scop.dtype, scop.shape(arr.name, binding)
    if len(shape) <= 1:
        return f"  {t} *restrict {arr.name} = {arr.name}_;"
    tail = "".join(f"[{d}]" for d in shape[1:])
    return f"  {t} (*restrict {arr.name}){tail} = ({t} (*){tail}){arr.name}_;"


def function(scop: Scop, binding: dict, res: Result, fn: str) -> str:
    """C text of one kernel function `void fn(T *A_, ..., T alpha...)` (arrays, then scalars)."""
    for name in [fn, *(a.name for a in scop.arrays), *scop.scalars, *scop.params]:
        if not _NAME.match(name):
            raise ScopError(f"scop {scop.name!r}: {name!r} is not a C identifier")
    args = [f"{scop.dtype} *restrict {a.name}_" for a in scop.arrays]
    args += [f"{scop.dtype} {s}" for s in scop.scalars]
    out = [f"void {fn}({', '.join(args) or 'void'}) {{"]
    out += [_decl(scop, binding, a) for a in scop.arrays]
    out += [f"  const long {p} = {int(binding[p])};" for p in scop.params]
    out += [f"  (void){p};" for p in scop.params]
    for st in scop.statements:
        body = st.body.rstrip().rstrip(";")
        for it in st.iters:
            body = re.sub(rf"\b{re.escape(it)}\b", f"({it})", body)
        out.append(f"#define {st.name}({', '.join(st.iters)}) {body}")
    pr = _Printer(res, scop)
    pr.emit(_ast(scop, binding, res), 1, False)
    out += pr.lines
    out += [f"#undef {st.name}" for st in scop.statements]
    out.append("}")
    return "\n".join(out) + "\n"


def translation_unit(functions: list[str]) -> str:
    """One C file: the prelude and every kernel function of a graph (or a benchmark)."""
    return PRELUDE + "\n".join(functions)
