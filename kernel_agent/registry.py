"""The registry of accepted kernels (and cached failures) on DiskCache("agent"), keyed by a hash of all that
affects the code: the task's IR text (ops, attributes, dtypes, shapes), its constants, compiler, flags,
generator. Entries are hash-checked on load; a corrupt one is discarded and the kernel regenerated."""
from __future__ import annotations

import pickle

from framework.disk_cache import DiskCache, cache_key

from .kernel import CC, CFLAGS, compiler_id

VERSION = 1
COUNTS = {"hits": 0, "misses": 0, "stored": 0, "failures_cached": 0}


def key_of(task, generator: str, space: str = "default") -> str:
    return cache_key("agent-registry", VERSION, task.signature(), CC, compiler_id(), CFLAGS, generator, space)


class Registry:
    """lookup(task, generator) -> entry dict or None; store(...) of an accepted kernel or a failure."""

    def __init__(self, root=None):
        self.cache = DiskCache("agent", root)

    def lookup(self, task, generator: str):
        data = self.cache.get(key_of(task, generator), ".kernel")
        if data is None:
            COUNTS["misses"] += 1
            return None
        try:
            entry = pickle.loads(data)
        except Exception:  # noqa: BLE001 - an unreadable entry is a miss; it will be overwritten
            COUNTS["misses"] += 1
            return None
        COUNTS["hits"] += 1
        return entry

    def store(self, task, generator: str, entry: dict) -> None:
        self.cache.put(key_of(task, generator), pickle.dumps(entry), ".kernel")
        COUNTS["failures_cached" if entry.get("failed") else "stored"] += 1
