"""Array contraction: a scratch array whose row k is written and read only in iteration k of one loop needs
only the current row. Kept as a row in that loop's body (on the running thread's stack), it stays in L1
instead of streaming the whole array through the caches: softmax's exp(x - max) rows were a 1 MiB round
trip per 256x1024 call.

The test is exact, on the final schedule: for every access to the array's element A[a0, ...], schedule
dimension d equals a0 and the dimensions before d take one value (all accesses lie in one run of the loop
at d). The AST must then hold every call of the array's statements under a single loop at d, where the code
generator declares the row."""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import replace

import islpy as isl

from .stmt import Scop, _params, access_maps

MAX_ROW_BYTES = 64 * 1024  # a row lives on a worker's stack (pool threads have the default 8 MiB)
_REF = re.compile(r"\b([A-Za-z_]\w*)\s*\[([^\[\]]+)\]")
_ITEMSIZE = {"float": 4, "double": 8}


def private_rows(scop: Scop, binding: dict, schedule: isl.UnionMap, ast: isl.AstNode) -> dict[str, tuple]:
    """{temp array: (schedule dimension of the loop whose iterations own its rows, its statements)}."""
    writes, reads = access_maps(scop, binding)
    by_stmt: dict[str, isl.Map] = {}
    schedule.foreach_map(lambda m: by_stmt.__setitem__(m.get_tuple_name(isl.dim_type.in_), m))
    accesses: dict[str, list[isl.Map]] = {}
    writes.union(reads).foreach_map(
        lambda m: accesses.setdefault(m.get_tuple_name(isl.dim_type.out), []).append(m))
    everywhere = user_calls(ast)
    out = {}
    for a in scop.arrays:
        shape = scop.shape(a.name, binding)
        if a.role != "temp" or len(shape) < 2 or a.name not in accesses or \
                math.prod(shape[1:]) * _ITEMSIZE.get(scop.dtype, 8) > MAX_ROW_BYTES:
            continue
        # element -> schedule point, per accessing statement
        placed = [m.reverse().apply_range(by_stmt[m.get_tuple_name(isl.dim_type.in_)])
                  for m in accesses[a.name]]
        dim = _owning_dim(scop, a.name, len(shape), placed)
        users = {m.get_tuple_name(isl.dim_type.in_) for m in accesses[a.name]}
        if dim is not None and _one_loop_holds(ast, f"c{dim}", users, everywhere):
            out[a.name] = (dim, frozenset(users))
    return out


def _owning_dim(scop: Scop, name: str, rank: int, placed: list[isl.Map]) -> int | None:
    n = min(m.dim(isl.dim_type.out) for m in placed)
    elems = ", ".join(f"a{k}" for k in range(rank))
    for d in range(n):
        prefixes = None
        for m in placed:
            sched = ", ".join(f"s{k}" for k in range(m.dim(isl.dim_type.out)))
            row_is_iteration = isl.Map(f"{_params(scop)}{{ {name}[{elems}] -> [{sched}] : s{d} = a0 }}")
            if not m.is_subset(row_is_iteration):
                break
            p = m.range().project_out(isl.dim_type.set, d, m.dim(isl.dim_type.out) - d)
            prefixes = p if prefixes is None else prefixes.union(p)
        else:
            return d if prefixes.is_singleton() else None
    return None


def _nodes(node: isl.AstNode):
    """The node and every node under it."""
    yield node
    t = node.get_type()
    if t == isl.ast_node_type.block:
        lst = node.block_get_children()
        for k in range(lst.n_ast_node()):
            yield from _nodes(lst.get_at(k))
    elif t == isl.ast_node_type.for_:
        yield from _nodes(node.for_get_body())
    elif t == isl.ast_node_type.if_:
        yield from _nodes(node.if_get_then())
        if node.if_has_else():
            yield from _nodes(node.if_get_else())
    elif t == isl.ast_node_type.mark:
        yield from _nodes(node.mark_get_node())


def user_calls(node: isl.AstNode) -> Counter:
    """How often each statement is called under an AST node (isl may split a statement's instances)."""
    return Counter(n.user_get_expr().get_op_arg(0).get_id().get_name() for n in _nodes(node)
                   if n.get_type() == isl.ast_node_type.user)


def _holds_all(node: isl.AstNode, users: set[str], everywhere: Counter) -> bool:
    """Every call of `users` in the whole AST (`everywhere`) is under `node`."""
    here = user_calls(node)
    return all(here[u] == everywhere[u] for u in users)


def _one_loop_holds(ast: isl.AstNode, iterator: str, users: set[str], everywhere: Counter) -> bool:
    return any(n.get_type() == isl.ast_node_type.for_ and n.for_get_iterator().get_id().get_name() == iterator
               and _holds_all(n, users, everywhere) for n in _nodes(ast))


def rewrite(scop: Scop, rows: dict) -> Scop:
    """The scop with every reference to a contracted array reading row 0 (its row buffer)."""
    if not rows:
        return scop

    def sub(m: re.Match) -> str:
        return f"{m.group(1)}[0]" if m.group(1) in rows else m.group(0)

    def body(text: str) -> str:
        # only the first subscript of a reference: `A[i][j]` -> `A[0][j]` (the regex sees `A[i]`, and `[j]`
        # alone has no name before it)
        return _REF.sub(sub, text)
    return replace(scop, statements=tuple(replace(st, body=body(st.body)) for st in scop.statements))


def declarations(scop: Scop, binding: dict, rows: dict, node: isl.AstNode, dim: int,
                 everywhere: Counter) -> list[str]:
    """C declarations of the row buffers owned by the loop `node` at schedule dimension `dim`: they shadow
    the arrays' views for the loop body."""
    out = []
    for name, (d, users) in rows.items():
        if d == dim and _holds_all(node, users, everywhere):
            tail = "".join(f"[{n}]" for n in scop.shape(name, binding)[1:])
            out.append(f"{scop.dtype} {name}[1]{tail} __attribute__((aligned(64)));")
    return out
