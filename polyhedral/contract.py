"""Array contraction: a scratch array whose row k is written and read only in iteration k of one loop needs
only the current row. Kept as a row in that loop's body (on the running thread's stack), it stays in L1
instead of streaming the whole array through the caches: softmax's exp(x - max) rows were a 1 MiB round
trip per 256x1024 call.

The test is exact, on the final schedule: for every access to the array's element A[a0, ...], schedule
dimension d equals a0 and the dimensions before d take one value (all accesses lie in one run of the loop
at d). The AST must then hold every call of the array's statements under a single loop at d, where the code
generator declares the row.

A row can also live in an output's row instead of on the stack (its home): where one statement writes
out[a] from the row's element a (softmax's `out = e * (1 / sum)`, e = exp(x - max)), is the only access to
out, and comes after every other access to that element, the row is computed in place in the output. The
output's row is then written while the row is built (its cache misses hide behind the exp), and the last
pass reads and writes one row in L1, where writing a fresh output row stalled on every store's miss
(softmax 256x1024 on one thread: 119 -> 99 us)."""
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
    """{temp array: (schedule dimension of the loop whose iterations own its rows, its statements, the output
    it lives in or None for a stack row)}."""
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
            out[a.name] = (dim, frozenset(users), None)
    homes: set[str] = set()
    for name, (dim, users, _) in out.items():
        home = _home(scop, binding, name, writes, reads, by_stmt, homes)
        if home:
            homes.add(home)
            out[name] = (dim, users, home)
    return out


def _home(scop: Scop, binding: dict, name: str, writes: isl.UnionMap, reads: isl.UnionMap, by_stmt: dict,
          taken: set) -> str | None:
    """The output whose rows the contracted array `name` can share (see the module's text), or None."""
    w, r = _per_pair(writes), _per_pair(reads)
    touched: dict[str, set[str]] = {}
    for st, arr in [*w, *r]:
        touched.setdefault(arr, set()).add(st)
    for (st, out), write in w.items():
        if out in taken or scop.array(out).role != "out" or touched[out] != {st} or \
                scop.shape(out, binding) != scop.shape(name, binding) or (st, name) not in r or \
                not r[st, name].set_tuple_name(isl.dim_type.out, out).is_equal(write):
            continue
        # element of `name` -> when st overwrites it
        overwritten = write.reverse().set_tuple_name(isl.dim_type.in_, name).apply_range(by_stmt[st])
        others = [acc for (other, arr), acc in [*w.items(), *r.items()] if arr == name and other != st]
        if all(acc.range().is_subset(overwritten.domain())
               and _earlier(acc.reverse().apply_range(by_stmt[acc.get_tuple_name(isl.dim_type.in_)]), overwritten)
               for acc in others):
            return out
    return None


def _per_pair(m: isl.UnionMap) -> dict[tuple[str, str], isl.Map]:
    """{(statement, array): its access map}"""
    out = {}
    m.foreach_map(lambda x: out.__setitem__(
        (x.get_tuple_name(isl.dim_type.in_), x.get_tuple_name(isl.dim_type.out)), x))
    return out


def _earlier(first: isl.Map, then: isl.Map) -> bool:
    """For every element, each time in `first` (element -> time) comes before each time in `then`."""
    pairs = first.reverse().apply_range(then)
    n = pairs.dim(isl.dim_type.out)
    if pairs.dim(isl.dim_type.in_) != n or pairs.is_empty():
        return pairs.is_empty()
    d = [f"d{k}" for k in range(n)]
    later = " or ".join("(" + " and ".join([f"{x} = 0" for x in d[:k]] + [f"{d[k]} > 0"]) + ")" for k in range(n))
    return pairs.deltas().is_subset(isl.Set(f"{{ [{', '.join(d)}] : {later} }}"))


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
    for name, (d, users, home) in rows.items():
        if d == dim and _holds_all(node, users, everywhere):
            t, tail = scop.dtype, "".join(f"[{n}]" for n in scop.shape(name, binding)[1:])
            # a home's row is this iteration's: the row index is the loop's iterator (the test above)
            out.append(f"{t} (*{name}){tail} = ({t} (*){tail})&{home}[c{dim}];" if home else
                       f"{t} {name}[1]{tail} __attribute__((aligned(64)));")
    return out
