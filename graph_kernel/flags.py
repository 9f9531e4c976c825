"""MindSpore-style graph_kernel_flags ("--opt_level=1 --disable_expand_ops=Gelu") parsed into a frozen record.

Flags are whitespace separated, each `--flag=value` or a bare `--flag`; a later flag overrides an earlier
one. Op and pass names are not checked here (the expander and partition own those lists).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields

from framework.errors import ContextError

GENERATORS = ("auto", "dvm", "poly")
OPT_LEVELS = (0, 1, 2)
DEFAULT_DUMP_DIR = "graph_kernel_dump"  # where a bare --dump_as_text writes, as in MindSpore
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:]*$")


@dataclass(frozen=True)
class GraphKernelFlags:
    """opt_level 0 turns fusion off, 1 = expand + basic clustering, 2 = everything (the default)."""

    opt_level: int = 2
    enable_cluster_ops: frozenset[str] = frozenset()
    disable_cluster_ops: frozenset[str] = frozenset()
    enable_expand_ops: frozenset[str] = frozenset()
    disable_expand_ops: frozenset[str] = frozenset()
    disable_pass: frozenset[str] = frozenset()
    kernel_generator: str = "auto"
    dump_as_text: str | None = None  # directory for the IR after every pass, or None

    @property
    def enabled(self) -> bool:
        return self.opt_level > 0

    def to_string(self) -> str:
        """The flags that differ from the defaults, in a form parse_flags reads back."""
        out = []
        for f in fields(self):
            v = getattr(self, f.name)
            if v == f.default:
                continue
            if isinstance(v, frozenset):
                v = ",".join(sorted(v))
            out.append(f"--{f.name}={v}")
        return " ".join(out)


def _level(flag: str, text: str) -> int:
    if text not in {str(v) for v in OPT_LEVELS}:
        raise ContextError(f"graph_kernel_flags: --{flag}={text!r} is not valid; accepted values: 0, 1, 2")
    return int(text)


def _names(flag: str, text: str) -> frozenset[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    for s in names:
        if not _NAME.match(s):
            raise ContextError(f"graph_kernel_flags: --{flag} has a bad name {s!r}; accepted values: a "
                               f"comma-separated list of op or pass names, e.g. --{flag}=Gelu,Softmax")
    return frozenset(names)


def _generator(flag: str, text: str) -> str:
    if text not in GENERATORS:
        raise ContextError(f"graph_kernel_flags: --{flag}={text!r} is not valid; accepted values: "
                           f"{', '.join(GENERATORS)}")
    return text


def _directory(flag: str, text: str) -> str:
    if not text:
        raise ContextError(f"graph_kernel_flags: --{flag}= needs a directory (or write --{flag} alone for "
                           f"./{DEFAULT_DUMP_DIR})")
    return text


# flag -> (parser of its value, value of the bare flag or None when a value is required)
_FLAGS = {
    "opt_level": (_level, None),
    "enable_cluster_ops": (_names, None),
    "disable_cluster_ops": (_names, None),
    "enable_expand_ops": (_names, None),
    "disable_expand_ops": (_names, None),
    "disable_pass": (_names, None),
    "kernel_generator": (_generator, None),
    "dump_as_text": (_directory, DEFAULT_DUMP_DIR),
}


def parse_flags(text: str | GraphKernelFlags | None) -> GraphKernelFlags:
    """Parse a graph_kernel_flags string; unknown flags and bad values raise ContextError naming them."""
    if isinstance(text, GraphKernelFlags):
        return text
    if text is not None and not isinstance(text, str):
        raise ContextError(f"graph_kernel_flags must be a string, got {type(text).__name__}")
    values: dict = {}
    for token in (text or "").split():
        if not token.startswith("--") or token == "--":
            raise ContextError(f"graph_kernel_flags: {token!r} is not a flag; write --flag=value or --flag")
        name, eq, raw = token[2:].partition("=")
        if name not in _FLAGS:
            raise ContextError(f"graph_kernel_flags: unknown flag --{name}; accepted flags: "
                               f"{', '.join('--' + f for f in _FLAGS)}")
        parse, bare = _FLAGS[name]
        if not eq:
            if bare is None:
                raise ContextError(f"graph_kernel_flags: --{name} needs a value (--{name}=...)")
            values[name] = bare
        else:
            values[name] = parse(name, raw)
    for kind in ("cluster", "expand"):
        both = values.get(f"enable_{kind}_ops", frozenset()) & values.get(f"disable_{kind}_ops", frozenset())
        if both:
            raise ContextError(f"graph_kernel_flags: {', '.join(sorted(both))} both enabled and disabled in "
                               f"--enable_{kind}_ops and --disable_{kind}_ops")
    return GraphKernelFlags(**values)
