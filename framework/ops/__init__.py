"""The op registry and its op families. Importing this package registers every op."""
from .registry import DOMAIN_ALIASES, Ctx, Fusion, OpDef, all_ops, get, lookup, op, register

from . import elementwise  # noqa: E402,F401  (registration side effects)

__all__ = ["Ctx", "Fusion", "OpDef", "all_ops", "get", "lookup", "op", "register", "DOMAIN_ALIASES"]
