"""Scheduler configurations (frozen dataclasses), the named presets, loading a user's from JSON or TOML."""
from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from framework.errors import MsgxError

OBJECTIVES = ("parallel", "proximity", "feautrier", "contiguity", "big-loops", "sum")
DIRECTIVES = ("parallel", "vector", "serial", "reduce")
FUSION = ("max", "smart", "none")
ALGORITHMS = ("farkas", "isl", "original")


class ConfigError(MsgxError):
    """A scheduler configuration names an unknown objective, directive, fusion policy or field."""


@dataclass(frozen=True)
class Directive:
    """`kind` for iterator `iterator` of statement `stmt` ("*" = every statement that has that iterator)."""

    kind: str
    iterator: str
    stmt: str = "*"


@dataclass(frozen=True)
class Config:
    """objectives[d] is the ordered list minimised lexicographically for schedule dimension d (the last
    entry serves deeper dimensions); tile_sizes[k] tiles the k-th row of each permutable band (0: untiled)."""

    name: str
    algorithm: str = "farkas"
    objectives: tuple[tuple[str, ...], ...] = (("proximity", "sum"),)
    fusion: str = "smart"
    tile_sizes: tuple[int, ...] = ()
    parallel: bool = True  # threads on the outermost parallel loop of each nest
    # Statement instances per entry of a parallel loop below which it stays serial (a job costs a few
    # microseconds). With the library's pool (codegen.py: the caller never waits for a worker that is slow
    # to wake), 2 threads at 32K ran the MEDIUM stencils' time steps 1.3-1.5x faster than 1 (jacobi-2d 3.14
    # -> 2.18 ms, heat-3d 4.65 -> 3.03, fdtd-2d 3.86 -> 2.56) and atax/bicg/mvt/gesummv (40 us) no slower;
    # below that a job's wake-up is a large share of the loop.
    min_parallel_work: int = 1 << 15
    vectorize: bool = True  # `omp simd` on innermost loops that carry no dependence
    # scratch arrays whose rows belong to one loop's iterations kept as one row per thread (contract.py)
    contract: bool = True
    # scratch arrays that outer loops only re-initialise get a copy per iteration of them where register
    # tiles across those loops pay (expand.py: doitgen's sum)
    expand: bool = False
    # (rows, columns) of the register blocks of reduction nests (regtile.py); () leaves them as scheduled
    register_tile: tuple[int, ...] = ()
    # a statement whose innermost loop carries a dependence (not a reduction) is a latency-bound chain: take
    # Feautrier's schedule (outer rows satisfy dependences) instead when it frees every innermost loop
    inner_parallel: bool = False
    # tile only bands along which some access is invariant and its data exceeds L1 (scheduler._band_reuses)
    tile_needs_reuse: bool = False
    # (time, space) tile sizes of time tiling (timetile.py) for nests inside a sequential outer loop whose
    # arrays exceed the L2 cache (stencils at LARGE); the last entry serves deeper rows; () turns it off
    time_tile: tuple[int, ...] = ()
    directives: tuple[Directive, ...] = ()
    coef_bound: int = 4  # schedule coefficients are searched in [0, coef_bound]
    # Pluto's bands: rows keep every dependence of their band weakly satisfied (tileable, may skew); False:
    # rows only respect what is still unsatisfied, and permutable runs are found afterwards for tiling
    permutable: bool = True
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(f"config {self.name!r}: unknown algorithm {self.algorithm!r}; "
                              f"one of {ALGORITHMS}")
        if self.fusion not in FUSION:
            raise ConfigError(f"config {self.name!r}: unknown fusion policy {self.fusion!r}; one of {FUSION}")
        if not self.objectives:
            raise ConfigError(f"config {self.name!r}: objectives must list at least one dimension")
        for dim in self.objectives:
            bad = [o for o in dim if o not in OBJECTIVES]
            if bad:
                raise ConfigError(f"config {self.name!r}: unknown objective(s) {bad}; known: {OBJECTIVES}")
        for d in self.directives:
            if d.kind not in DIRECTIVES:
                raise ConfigError(f"config {self.name!r}: unknown directive {d.kind!r}; one of {DIRECTIVES}")
        if self.register_tile and (len(self.register_tile) != 2 or min(self.register_tile) < 1):
            raise ConfigError(f"config {self.name!r}: register_tile must be () or (rows, columns) >= 1")
        if self.time_tile and (len(self.time_tile) < 2 or min(self.time_tile) < 2):
            raise ConfigError(f"config {self.name!r}: time_tile must be () or (time, space, ...) sizes >= 2")
        if any(int(t) < 0 for t in self.tile_sizes) or self.coef_bound < 1 or self.min_parallel_work < 0:
            raise ConfigError(f"config {self.name!r}: tile sizes and min_parallel_work must be >= 0 and "
                              "coef_bound >= 1")

    def objectives_at(self, dim: int) -> tuple[str, ...]:
        return self.objectives[min(dim, len(self.objectives) - 1)]

    def tile_at(self, k: int) -> int:
        return int(self.tile_sizes[min(k, len(self.tile_sizes) - 1)]) if self.tile_sizes else 0


PRESETS: dict[str, Config] = {c.name: c for c in (
    Config("original", algorithm="original", parallel=False, vectorize=False, contract=False),
    Config("isl", algorithm="isl"),
    Config("feautrier", objectives=(("feautrier", "sum"),), fusion="max"),
    Config("pluto-like", objectives=(("proximity", "sum"),), fusion="smart", tile_sizes=(32,)),
    Config("cpu-contiguity", objectives=(("parallel", "contiguity", "proximity", "big-loops", "sum"),),
           fusion="smart", tile_sizes=(32, 64, 256), permutable=False, register_tile=(4, 4),
           inner_parallel=True, tile_needs_reuse=True, time_tile=(16, 32), expand=True),
)}


def preset(name: str) -> Config:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown scheduler preset {name!r}; presets: {sorted(PRESETS)}") from None


def from_dict(d: dict) -> Config:
    """A Config from plain data: objectives as lists of lists, directives as {kind, iterator, stmt} tables."""
    known = {f.name for f in fields(Config)}
    bad = sorted(set(d) - known)
    if bad:
        raise ConfigError(f"unknown config field(s) {bad}; known: {sorted(known)}")
    if "name" not in d:
        raise ConfigError("a config needs a name")
    kw = dict(d)
    if "objectives" in kw:
        objs = kw["objectives"]
        kw["objectives"] = tuple((o,) if isinstance(o, str) else tuple(o) for o in objs)
    for key in ("tile_sizes", "register_tile", "time_tile"):
        if key in kw:
            kw[key] = tuple(int(t) for t in kw[key])
    if "directives" in kw:
        try:
            kw["directives"] = tuple(Directive(**x) for x in kw["directives"])
        except TypeError as e:
            raise ConfigError(f"config {d['name']!r}: bad directive: {e}") from None
    return Config(**kw)


def load(path: str | Path) -> Config:
    """A Config from a .json or .toml file."""
    p = Path(path)
    try:
        text = p.read_bytes()
        data = tomllib.loads(text.decode()) if p.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read scheduler config {str(p)!r}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"scheduler config {str(p)!r} must hold a table/object")
    return from_dict(data)
