"""PolyBench kernels written in the statement format from their equations, with MEDIUM and LARGE sizes and
numpy versions of the same equations (the correctness oracle). Arrays are float64, as in PolyBench."""
from __future__ import annotations

import numpy as np

from .stmt import Array, Scop, Statement

SIZES = {  # PolyBench 4.2 dataset sizes
    "gemm": {"mini": dict(NI=20, NJ=25, NK=30), "medium": dict(NI=200, NJ=220, NK=240),
             "large": dict(NI=1000, NJ=1100, NK=1200)},
    "2mm": {"mini": dict(NI=16, NJ=18, NK=22, NL=24), "medium": dict(NI=180, NJ=190, NK=210, NL=220),
            "large": dict(NI=800, NJ=900, NK=1100, NL=1200)},
    "3mm": {"mini": dict(NI=16, NJ=18, NK=20, NL=22, NM=24),
            "medium": dict(NI=180, NJ=190, NK=200, NL=210, NM=220),
            "large": dict(NI=800, NJ=900, NK=1000, NL=1100, NM=1200)},
    "atax": {"mini": dict(M=38, N=42), "medium": dict(M=390, N=410), "large": dict(M=1900, N=2100)},
    "bicg": {"mini": dict(M=38, N=42), "medium": dict(M=390, N=410), "large": dict(M=1900, N=2100)},
    "mvt": {"mini": dict(N=40), "medium": dict(N=400), "large": dict(N=2000)},
    "gesummv": {"mini": dict(N=30), "medium": dict(N=250), "large": dict(N=1300)},
    "syrk": {"mini": dict(M=20, N=30), "medium": dict(M=200, N=240), "large": dict(M=1000, N=1200)},
    "syr2k": {"mini": dict(M=20, N=30), "medium": dict(M=200, N=240), "large": dict(M=1000, N=1200)},
    "covariance": {"mini": dict(M=28, N=32), "medium": dict(M=240, N=260), "large": dict(M=1200, N=1400)},
    "doitgen": {"mini": dict(NQ=8, NR=10, NP=12), "medium": dict(NQ=40, NR=50, NP=60),
                "large": dict(NQ=140, NR=150, NP=160)},
    "jacobi-1d": {"mini": dict(T=20, N=30), "medium": dict(T=100, N=400), "large": dict(T=500, N=2000)},
    "jacobi-2d": {"mini": dict(T=20, N=30), "medium": dict(T=100, N=250), "large": dict(T=500, N=1300)},
    "heat-3d": {"mini": dict(T=20, N=10), "medium": dict(T=100, N=40), "large": dict(T=500, N=120)},
    "fdtd-2d": {"mini": dict(T=20, NX=20, NY=30), "medium": dict(T=100, NX=200, NY=240),
                "large": dict(T=500, NX=1000, NY=1200)},
    "seidel-2d": {"mini": dict(T=20, N=40), "medium": dict(T=100, N=400), "large": dict(T=500, N=2000)},
}
ALPHA, BETA = 1.5, 1.2


def _s(name, iters, domain, body, sched):
    return Statement(name, tuple(iters.split()), domain, body, tuple(sched))


def _a(spec: str) -> tuple[Array, ...]:
    """'A:NI,NK:in C:NI,NJ:inout' -> arrays."""
    out = []
    for item in spec.split():
        name, dims, role = item.split(":")
        out.append(Array(name, tuple(int(d) if d.isdigit() else d for d in dims.split(",")), role))
    return tuple(out)


def _matmul_pair(acc, a, b, i, j, k, ni, nj, nk, pos, names, scale=""):
    """`acc = 0; acc += scale*a*b` over i<ni, j<nj, k<nk at top-level position pos."""
    dom2 = f"0 <= {i} < {ni} and 0 <= {j} < {nj}"
    return [_s(names[0], f"{i} {j}", dom2, f"{acc}[{i}][{j}] = 0.0", (pos, i, 0, j, 0)),
            _s(names[1], f"{i} {j} {k}", f"{dom2} and 0 <= {k} < {nk}",
               f"{acc}[{i}][{j}] += {scale}{a}[{i}][{k}] * {b}[{k}][{j}]", (pos, i, 0, j, 1, k, 0))]


def _scops() -> dict[str, Scop]:
    d = {}
    mm = "0 <= i < NI and 0 <= j < NJ"
    d["gemm"] = Scop("gemm", ("NI", "NJ", "NK"), _a("A:NI,NK:in B:NK,NJ:in C:NI,NJ:inout"), (
        _s("S0", "i j", mm, "C[i][j] = C[i][j] * beta", (0, "i", 0, "j", 0)),
        _s("S1", "i j k", f"{mm} and 0 <= k < NK", "C[i][j] += alpha * A[i][k] * B[k][j]",
           (0, "i", 0, "j", 1, "k", 0))), ("alpha", "beta"))
    d["2mm"] = Scop("2mm", ("NI", "NJ", "NK", "NL"),
                    _a("A:NI,NK:in B:NK,NJ:in C:NJ,NL:in D:NI,NL:inout tmp:NI,NJ:temp"), (
        *_matmul_pair("tmp", "A", "B", "i", "j", "k", "NI", "NJ", "NK", 0, ("S0", "S1"), "alpha * "),
        _s("S2", "i l", "0 <= i < NI and 0 <= l < NL", "D[i][l] = D[i][l] * beta", (1, "i", 0, "l", 0)),
        _s("S3", "i l j", "0 <= i < NI and 0 <= l < NL and 0 <= j < NJ", "D[i][l] += tmp[i][j] * C[j][l]",
           (1, "i", 0, "l", 1, "j", 0))), ("alpha", "beta"))
    d["3mm"] = Scop("3mm", ("NI", "NJ", "NK", "NL", "NM"),
                    _a("A:NI,NK:in B:NK,NJ:in C:NJ,NM:in D:NM,NL:in E:NI,NJ:out F:NJ,NL:out G:NI,NL:out"), (
        *_matmul_pair("E", "A", "B", "i", "j", "k", "NI", "NJ", "NK", 0, ("S0", "S1")),
        *_matmul_pair("F", "C", "D", "i", "j", "k", "NJ", "NL", "NM", 1, ("S2", "S3")),
        *_matmul_pair("G", "E", "F", "i", "j", "k", "NI", "NL", "NJ", 2, ("S4", "S5"))))
    d["atax"] = Scop("atax", ("M", "N"), _a("A:M,N:in x:N:in y:N:out tmp:M:temp"), (
        _s("S0", "j", "0 <= j < N", "y[j] = 0.0", (0, "j", 0)),
        _s("S1", "i", "0 <= i < M", "tmp[i] = 0.0", (1, "i", 0, 0, 0)),
        _s("S2", "i j", "0 <= i < M and 0 <= j < N", "tmp[i] += A[i][j] * x[j]", (1, "i", 1, "j", 0)),
        _s("S3", "i j", "0 <= i < M and 0 <= j < N", "y[j] += A[i][j] * tmp[i]", (1, "i", 2, "j", 0))))
    d["bicg"] = Scop("bicg", ("M", "N"), _a("A:N,M:in p:M:in r:N:in s:M:out q:N:out"), (
        _s("S0", "j", "0 <= j < M", "s[j] = 0.0", (0, "j", 0)),
        _s("S1", "i", "0 <= i < N", "q[i] = 0.0", (1, "i", 0, 0, 0)),
        _s("S2", "i j", "0 <= i < N and 0 <= j < M", "s[j] += r[i] * A[i][j]", (1, "i", 1, "j", 0)),
        _s("S3", "i j", "0 <= i < N and 0 <= j < M", "q[i] += A[i][j] * p[j]", (1, "i", 1, "j", 1))))
    d["mvt"] = Scop("mvt", ("N",), _a("A:N,N:in y1:N:in y2:N:in x1:N:inout x2:N:inout"), (
        _s("S0", "i j", "0 <= i < N and 0 <= j < N", "x1[i] += A[i][j] * y1[j]", (0, "i", 0, "j", 0)),
        _s("S1", "i j", "0 <= i < N and 0 <= j < N", "x2[i] += A[j][i] * y2[j]", (1, "i", 0, "j", 0))))
    sq = "0 <= i < N and 0 <= j < N"
    d["gesummv"] = Scop("gesummv", ("N",), _a("A:N,N:in B:N,N:in x:N:in y:N:out tmp:N:temp"), (
        _s("S0", "i", "0 <= i < N", "tmp[i] = 0.0", (0, "i", 0, 0, 0)),
        _s("S1", "i", "0 <= i < N", "y[i] = 0.0", (0, "i", 1, 0, 0)),
        _s("S2", "i j", sq, "tmp[i] += A[i][j] * x[j]", (0, "i", 2, "j", 0)),
        _s("S3", "i j", sq, "y[i] += B[i][j] * x[j]", (0, "i", 2, "j", 1)),
        _s("S4", "i", "0 <= i < N", "y[i] = alpha * tmp[i] + beta * y[i]", (0, "i", 3, 0, 0))),
        ("alpha", "beta"))
    tri = "0 <= i < N and 0 <= j <= i"
    d["syrk"] = Scop("syrk", ("M", "N"), _a("A:N,M:in C:N,N:inout"), (
        _s("S0", "i j", tri, "C[i][j] = C[i][j] * beta", (0, "i", 0, "j", 0)),
        _s("S1", "i j k", f"{tri} and 0 <= k < M", "C[i][j] += alpha * A[i][k] * A[j][k]",
           (0, "i", 0, "j", 1, "k", 0))), ("alpha", "beta"))
    d["syr2k"] = Scop("syr2k", ("M", "N"), _a("A:N,M:in B:N,M:in C:N,N:inout"), (
        _s("S0", "i j", tri, "C[i][j] = C[i][j] * beta", (0, "i", 0, "j", 0)),
        _s("S1", "i j k", f"{tri} and 0 <= k < M",
           "C[i][j] += A[j][k] * alpha * B[i][k] + B[j][k] * alpha * A[i][k]",
           (0, "i", 0, "j", 1, "k", 0))), ("alpha", "beta"))
    d["covariance"] = Scop("covariance", ("M", "N"), _a("data:N,M:inout mean:M:out cov:M,M:out"), (
        _s("S0", "j", "0 <= j < M", "mean[j] = 0.0", (0, "j", 0, 0, 0)),
        _s("S1", "j i", "0 <= j < M and 0 <= i < N", "mean[j] += data[i][j]", (0, "j", 1, "i", 0)),
        _s("S2", "j", "0 <= j < M", "mean[j] = mean[j] / N", (0, "j", 2, 0, 0)),
        _s("S3", "i j", "0 <= i < N and 0 <= j < M", "data[i][j] -= mean[j]", (1, "i", 0, "j", 0)),
        _s("S4", "i j", "0 <= i < M and i <= j < M", "cov[i][j] = 0.0", (2, "i", 0, "j", 0, 0, 0)),
        _s("S5", "i j k", "0 <= i < M and i <= j < M and 0 <= k < N", "cov[i][j] += data[k][i] * data[k][j]",
           (2, "i", 0, "j", 1, "k", 0)),
        _s("S6", "i j", "0 <= i < M and i <= j < M", "cov[i][j] = cov[i][j] / (N - 1.0)",
           (2, "i", 0, "j", 2, 0, 0)),
        _s("S7", "i j", "0 <= i < M and i <= j < M", "cov[j][i] = cov[i][j]", (2, "i", 0, "j", 3, 0, 0))))
    rq = "0 <= r < NR and 0 <= q < NQ and 0 <= p < NP"
    d["doitgen"] = Scop("doitgen", ("NQ", "NR", "NP"), _a("A:NR,NQ,NP:inout C4:NP,NP:in sum:NP:temp"), (
        _s("S0", "r q p", rq, "sum[p] = 0.0", (0, "r", 0, "q", 0, "p", 0, 0, 0)),
        _s("S1", "r q p s", f"{rq} and 0 <= s < NP", "sum[p] += A[r][q][s] * C4[s][p]",
           (0, "r", 0, "q", 0, "p", 1, "s", 0)),
        _s("S2", "r q p", rq, "A[r][q][p] = sum[p]", (0, "r", 0, "q", 1, "p", 0, 0, 0))))
    i1 = "0 <= t < T and 1 <= i <= N - 2"
    d["jacobi-1d"] = Scop("jacobi-1d", ("T", "N"), _a("A:N:inout B:N:inout"), (
        _s("S0", "t i", i1, "B[i] = 0.33333 * (A[i - 1] + A[i] + A[i + 1])", (0, "t", 0, "i", 0)),
        _s("S1", "t i", i1, "A[i] = 0.33333 * (B[i - 1] + B[i] + B[i + 1])", (0, "t", 1, "i", 0))))
    i2 = "0 <= t < T and 1 <= i <= N - 2 and 1 <= j <= N - 2"
    five = "0.2 * ({0}[i][j] + {0}[i][j - 1] + {0}[i][j + 1] + {0}[i + 1][j] + {0}[i - 1][j])"
    d["jacobi-2d"] = Scop("jacobi-2d", ("T", "N"), _a("A:N,N:inout B:N,N:inout"), (
        _s("S0", "t i j", i2, "B[i][j] = " + five.format("A"), (0, "t", 0, "i", 0, "j", 0)),
        _s("S1", "t i j", i2, "A[i][j] = " + five.format("B"), (0, "t", 1, "i", 0, "j", 0))))
    i3 = "0 <= t < T and 1 <= i <= N - 2 and 1 <= j <= N - 2 and 1 <= k <= N - 2"
    heat = ("0.125 * ({0}[i + 1][j][k] - 2.0 * {0}[i][j][k] + {0}[i - 1][j][k]) + "
            "0.125 * ({0}[i][j + 1][k] - 2.0 * {0}[i][j][k] + {0}[i][j - 1][k]) + "
            "0.125 * ({0}[i][j][k + 1] - 2.0 * {0}[i][j][k] + {0}[i][j][k - 1]) + {0}[i][j][k]")
    d["heat-3d"] = Scop("heat-3d", ("T", "N"), _a("A:N,N,N:inout B:N,N,N:inout"), (
        _s("S0", "t i j k", i3, "B[i][j][k] = " + heat.format("A"), (0, "t", 0, "i", 0, "j", 0, "k", 0)),
        _s("S1", "t i j k", i3, "A[i][j][k] = " + heat.format("B"), (0, "t", 1, "i", 0, "j", 0, "k", 0))))
    d["fdtd-2d"] = Scop("fdtd-2d", ("T", "NX", "NY"),
                        _a("ex:NX,NY:inout ey:NX,NY:inout hz:NX,NY:inout fict:T:in"), (
        _s("S0", "t j", "0 <= t < T and 0 <= j < NY", "ey[0][j] = fict[t]", (0, "t", 0, "j", 0, 0, 0)),
        _s("S1", "t i j", "0 <= t < T and 1 <= i < NX and 0 <= j < NY",
           "ey[i][j] = ey[i][j] - 0.5 * (hz[i][j] - hz[i - 1][j])", (0, "t", 1, "i", 0, "j", 0)),
        _s("S2", "t i j", "0 <= t < T and 0 <= i < NX and 1 <= j < NY",
           "ex[i][j] = ex[i][j] - 0.5 * (hz[i][j] - hz[i][j - 1])", (0, "t", 2, "i", 0, "j", 0)),
        _s("S3", "t i j", "0 <= t < T and 0 <= i < NX - 1 and 0 <= j < NY - 1",
           "hz[i][j] = hz[i][j] - 0.7 * (ex[i][j + 1] - ex[i][j] + ey[i + 1][j] - ey[i][j])",
           (0, "t", 3, "i", 0, "j", 0))))
    nine = " + ".join(f"A[{ie}][{je}]" for ie in ("i - 1", "i", "i + 1") for je in ("j - 1", "j", "j + 1"))
    d["seidel-2d"] = Scop("seidel-2d", ("T", "N"), _a("A:N,N:inout"), (
        _s("S0", "t i j", i2, f"A[i][j] = ({nine}) / 9.0",
           (0, "t", 0, "i", 0, "j", 0)),))
    for name, scop in d.items():
        object.__setattr__(scop, "sizes", SIZES[name])
    return d


SCOPS = _scops()
KERNELS = tuple(SCOPS)


def inputs(scop: Scop, binding: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded arrays (uniform in [0, 1); temporaries zeroed) and the scalars alpha/beta."""
    rng = np.random.default_rng(seed)
    out = {}
    for a in scop.arrays:
        shape = scop.shape(a.name, binding)
        out[a.name] = np.zeros(shape) if a.role in ("temp", "out") else rng.random(shape)
    out.update({"alpha": ALPHA, "beta": BETA})
    return {k: v for k, v in out.items() if k in {a.name for a in scop.arrays} or k in scop.scalars}


def _mm(a, b):
    return a @ b


def reference(name: str, arrays: dict[str, np.ndarray], binding: dict) -> dict[str, np.ndarray]:
    """The kernel's equations in numpy on copies of `arrays`; returns every array the kernel writes except
    its scratch (role temp): what a scratch array holds after the call is unspecified (contract.py may keep
    only one row of it)."""
    roles = {a.name: a.role for a in SCOPS[name].arrays}
    return {k: v for k, v in _equations(name, arrays, binding).items() if roles[k] != "temp"}


def _equations(name: str, arrays: dict[str, np.ndarray], binding: dict) -> dict[str, np.ndarray]:
    x = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in arrays.items()}
    al, be = ALPHA, BETA
    if name == "gemm":
        return {"C": be * x["C"] + al * _mm(x["A"], x["B"])}
    if name == "2mm":
        tmp = al * _mm(x["A"], x["B"])
        return {"tmp": tmp, "D": be * x["D"] + _mm(tmp, x["C"])}
    if name == "3mm":
        e, f = _mm(x["A"], x["B"]), _mm(x["C"], x["D"])
        return {"E": e, "F": f, "G": _mm(e, f)}
    if name == "atax":
        tmp = x["A"] @ x["x"]
        return {"tmp": tmp, "y": x["A"].T @ tmp}
    if name == "bicg":
        return {"s": x["A"].T @ x["r"], "q": x["A"] @ x["p"]}
    if name == "mvt":
        return {"x1": x["x1"] + x["A"] @ x["y1"], "x2": x["x2"] + x["A"].T @ x["y2"]}
    if name == "gesummv":
        tmp, y = x["A"] @ x["x"], x["B"] @ x["x"]
        return {"tmp": tmp, "y": al * tmp + be * y}
    if name in ("syrk", "syr2k"):
        a = x["A"]
        prod = al * (a @ a.T) if name == "syrk" else al * (a @ x["B"].T + x["B"] @ a.T)
        low = np.tril(np.ones_like(x["C"], dtype=bool))
        return {"C": np.where(low, be * x["C"] + prod, x["C"])}
    if name == "covariance":
        n = binding["N"]
        mean = x["data"].sum(axis=0) / n
        data = x["data"] - mean
        return {"mean": mean, "data": data, "cov": data.T @ data / (n - 1.0)}
    if name == "doitgen":
        a = np.einsum("rqs,sp->rqp", x["A"], x["C4"])
        return {"A": a, "sum": a[-1, -1].copy()}
    return _stencil(name, x, binding)


def _stencil(name, x, binding):
    t_steps = binding["T"]
    if name == "jacobi-1d":
        a, b = x["A"], x["B"]
        for _ in range(t_steps):
            b[1:-1] = 0.33333 * (a[:-2] + a[1:-1] + a[2:])
            a[1:-1] = 0.33333 * (b[:-2] + b[1:-1] + b[2:])
        return {"A": a, "B": b}
    if name == "jacobi-2d":
        a, b = x["A"], x["B"]
        for _ in range(t_steps):
            for src, dst in ((a, b), (b, a)):
                c = src[1:-1, 1:-1]
                dst[1:-1, 1:-1] = 0.2 * (c + src[1:-1, :-2] + src[1:-1, 2:] + src[2:, 1:-1] + src[:-2, 1:-1])
        return {"A": a, "B": b}
    if name == "heat-3d":
        a, b = x["A"], x["B"]
        for _ in range(t_steps):
            for src, dst in ((a, b), (b, a)):
                c = src[1:-1, 1:-1, 1:-1]
                dst[1:-1, 1:-1, 1:-1] = (0.125 * (src[2:, 1:-1, 1:-1] - 2.0 * c + src[:-2, 1:-1, 1:-1])
                                         + 0.125 * (src[1:-1, 2:, 1:-1] - 2.0 * c + src[1:-1, :-2, 1:-1])
                                         + 0.125 * (src[1:-1, 1:-1, 2:] - 2.0 * c + src[1:-1, 1:-1, :-2]) + c)
        return {"A": a, "B": b}
    if name == "fdtd-2d":
        ex, ey, hz = x["ex"], x["ey"], x["hz"]
        for t in range(t_steps):
            ey[0, :] = x["fict"][t]
            ey[1:, :] = ey[1:, :] - 0.5 * (hz[1:, :] - hz[:-1, :])
            ex[:, 1:] = ex[:, 1:] - 0.5 * (hz[:, 1:] - hz[:, :-1])
            hz[:-1, :-1] = hz[:-1, :-1] - 0.7 * (ex[:-1, 1:] - ex[:-1, :-1] + ey[1:, :-1] - ey[:-1, :-1])
        return {"ex": ex, "ey": ey, "hz": hz}
    if name == "seidel-2d":
        return {"A": _seidel(x["A"], t_steps)}
    raise KeyError(name)


def _seidel(a, t_steps):
    """In-place Gauss-Seidel sweeps, row by row: with c_j the sum of the eight other neighbours (the row above
    already updated this sweep, the rest still from the previous one), a row obeys x_j = (x_{j-1} + c_j) / 9,
    i.e. x_j = sum_k c_{j-k} / 9^(k+1) + x_0 / 9^j: a convolution whose taps past the 17th are below
    1e-16 of the first (dropped)."""
    n = a.shape[0]
    taps = 9.0 ** -np.arange(1, 18)
    with np.errstate(under="ignore"):
        decay = 9.0 ** -np.arange(1, n - 1, dtype=np.float64)
    for _ in range(t_steps):
        for i in range(1, n - 1):
            up, row, down = a[i - 1], a[i], a[i + 1]
            c = up[:-2] + up[1:-1] + up[2:] + row[1:-1] + row[2:] + down[:-2] + down[1:-1] + down[2:]
            a[i, 1:-1] = np.convolve(c, taps)[:n - 2] + row[0] * decay
    return a
