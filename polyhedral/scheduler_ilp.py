"""One schedule row as an integer lexmin: unknowns are objective values and per-statement coefficients;
dependence constraints come from Farkas sets (valid affine forms over a dependence) pulled back by a map."""
from __future__ import annotations

import islpy as isl
import sympy


def _pullback(f, m: isl.Map, fset: isl.Set, names: list[str], cst: str, sign_src: int, sign_dst: int,
              par: str = "0") -> isl.Set:
    """{x : (cst, par.., sign_src*S(x), sign_dst*T(x)) is a valid form over m}, as a set over names."""
    s, t = m.get_tuple_name(isl.dim_type.in_), m.get_tuple_name(isl.dim_type.out)
    si, ti = f.stmts[f.index[s]].iters, f.stmts[f.index[t]].iters
    npar = m.dim(isl.dim_type.param)
    neg = {1: "", -1: "-"}
    pars = [par.format(p=m.get_dim_name(isl.dim_type.param, k)) for k in range(npar)]
    out = [cst] + pars + [f"{neg[sign_src]}{s}_{it}" for it in si] + [f"{neg[sign_dst]}{t}_{it}" for it in ti]
    pull = isl.Map(f"{{ [{', '.join(names)}] -> [{', '.join(out)}] }}")
    return pull.intersect_range(fset).domain()


def solve_row(f, band_deps: list[isl.Map], dim: int, zero: bool = False):
    """The lexicographically smallest row under f.cfg's objectives at this dimension, or None."""
    cfg, stmts = f.cfg, f.stmts
    objs = [o for o in cfg.objectives_at(dim) if o != "parallel"]
    eps = [f"eps{k}" for k in range(len(band_deps))] if "feautrier" in objs else []
    names = []
    for o in objs:
        if o == "proximity":  # Pluto's bound u.N + w on dependence distances
            names += [f"u_{p}" for p in f.scop.params]
        names.append(f"o_{o.replace('-', '_')}")
    names += ["cstsum"] + f.coef_vars + eps
    cons = []
    B = cfg.coef_bound
    for v in f.coef_vars:
        cons.append(f"0 <= {v} <= {B}")
    for e in eps:
        cons.append(f"0 <= {e} <= 1")
    cons.append(f"cstsum = {' + '.join(f'{s.name}_cst' for s in stmts)}")
    for s in stmts:  # linear independence from the rows found so far (Pluto's orthogonal-complement form)
        H = f.H[s.name]
        if f.rank(s.name) >= len(s.iters):
            continue
        eye = sympy.eye(len(s.iters))
        basis = sympy.Matrix(H).nullspace() if H else [eye[:, k] for k in range(len(s.iters))]
        forms = []
        for vec in basis:
            den = sympy.ilcm(1, 1, *[sympy.fraction(x)[1] for x in vec])
            ints = [int(x * den) for x in vec]
            form = " + ".join(f"{c}{s.name}_{it}" for c, it in zip(ints, s.iters) if c)
            forms.append(form.replace("+ -", "- ")
                         or "0")
        for fm in forms:
            cons.append(f"{fm} >= 0")
        cons.append(f"{' + '.join(forms).replace('+ -', '- ')} >= 1")
    for o in objs:
        v = f"o_{o.replace('-', '_')}"
        if o == "sum":
            cons.append(f"{v} = {' + '.join(x for x in f.coef_vars if not x.endswith('_cst'))}")
        elif o == "contiguity":
            terms = [f"{s.name}_{f.contig[s.name]}" for s in stmts
                     if f.contig[s.name] and len(s.iters) - f.rank(s.name) >= 2]
            cons.append(f"{v} = {' + '.join(terms) or '0'}")
        elif o == "big-loops":
            terms = [f"{f.weight[s.name][it]}{s.name}_{it}" for s in stmts for it in s.iters]
            cons.append(f"{v} = {' + '.join(terms) or '0'}")
        elif o == "proximity":
            cons.append(f"{v} >= 0")
            cons += [f"0 <= u_{p} <= {B}" for p in f.scop.params]
        elif o == "feautrier":
            cons.append(f"{v} = {len(eps)} - ({' + '.join(eps) or '0'})")
    base = isl.Set(f"{{ [{', '.join(names)}] : {' and '.join(cons)} }}")
    fsets = [(m, f.farkas_of(m)) for m in band_deps]
    for e, (m, fs) in enumerate(fsets):
        s, t = m.get_tuple_name(isl.dim_type.in_), m.get_tuple_name(isl.dim_type.out)
        weak = f"{t}_cst - {s}_cst" + (f" - eps{e}" if eps else "")
        base = base.intersect(_pullback(f, m, fs, names, weak, -1, 1))
        if zero:  # distance exactly 0: the row carries none of these dependences (a parallel loop)
            base = base.intersect(_pullback(f, m, fs, names, f"{s}_cst - {t}_cst", 1, -1))
        if "proximity" in objs:
            prox = f"o_proximity - {t}_cst + {s}_cst"
            base = base.intersect(_pullback(f, m, fs, names, prox, 1, -1, "u_{p}"))
    for attempt in (True, False):  # `parallel` directives ask for their iterator in the outermost row
        cand = base
        if attempt:
            pins = [f"{s.name}_{d.iterator}" for d in cfg.directives if d.kind == "parallel" and dim == 0
                    for s in stmts if d.stmt in ("*", s.name) and d.iterator in s.iters]
            if not pins:
                continue
            pin = " and ".join(p + " >= 1" for p in pins)
            cand = base.intersect(isl.Set(f"{{ [{', '.join(names)}] : {pin} }}"))
        if cand.is_empty():
            continue
        pt = cand.lexmin().sample_point()
        val = {n: int(pt.get_coordinate_val(isl.dim_type.set, k).to_python()) for k, n in enumerate(names)}
        out = {s.name: (tuple(val[f"{s.name}_{it}"] for it in s.iters), val[f"{s.name}_cst"]) for s in stmts}
        out["_cost"] = val.get("o_contiguity", 0)
        return out
    return None
