"""A content-addressed on-disk cache shared by the code generators (polyhedral C, agent kernels).

An entry is a file `<root>/<namespace>/<key[:2]>/<key><suffix>` plus a `.sha256` sidecar holding the hash of
its bytes. Writes are atomic (temporary file in the same folder, then `os.replace`, data before sidecar), so
concurrent processes storing the same key never leave a torn entry; a reader checks the hash and discards an
entry that is truncated or tampered with, so the caller rebuilds it.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path

from .errors import MsgxError


class CacheError(MsgxError):
    """The cache folder cannot be created or written."""


def default_root() -> Path:
    """`$MSGX_CACHE_DIR`, else `$XDG_CACHE_HOME/msgx`, else `~/.cache/msgx`."""
    if os.environ.get("MSGX_CACHE_DIR"):
        return Path(os.environ["MSGX_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "msgx"


def cache_key(*parts) -> str:
    """A stable hex key from everything that affects an entry's content (strings, numbers, tuples...)."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()


class DiskCache:
    """get/put of byte blobs (or files to load from a path, such as shared libraries) under one namespace."""

    def __init__(self, namespace: str, root: str | os.PathLike | None = None):
        self.dir = Path(root if root is not None else default_root()) / namespace
        self.hits = self.misses = self.corruptions = 0
        self._lock = threading.Lock()

    def _paths(self, key: str, suffix: str) -> tuple[Path, Path]:
        if not key or any(c not in "0123456789abcdef" for c in key):
            raise CacheError(f"cache key must be lowercase hex, got {key!r}")
        data = self.dir / key[:2] / f"{key}{suffix}"
        return data, data.with_name(data.name + ".sha256")

    def get_path(self, key: str, suffix: str = ".bin") -> Path | None:
        """The entry's verified file, or None (a miss; a corrupt entry is deleted and counted)."""
        data, sidecar = self._paths(key, suffix)
        try:
            expected = sidecar.read_bytes().strip()  # bytes: a garbage sidecar is corruption, not an error
            actual = hashlib.sha256(data.read_bytes()).hexdigest().encode()
        except OSError:
            self._count("misses")
            return None
        if actual != expected:
            self._count("corruptions")
            for p in (sidecar, data):
                try:
                    p.unlink()
                except OSError:
                    pass
            return None
        self._count("hits")
        return data

    def get(self, key: str, suffix: str = ".bin") -> bytes | None:
        """The entry's verified bytes, or None."""
        path = self.get_path(key, suffix)
        if path is None:
            return None
        try:
            return path.read_bytes()
        except OSError:
            return None

    def put(self, key: str, data: bytes, suffix: str = ".bin") -> Path:
        """Store atomically and return the entry's path."""
        path, sidecar = self._paths(key, suffix)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(path, data)
            _atomic_write(sidecar, hashlib.sha256(data).hexdigest().encode())
        except OSError as e:
            raise CacheError(f"cannot write cache entry {path}: {e}") from e
        return path

    def _count(self, what: str) -> None:
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
