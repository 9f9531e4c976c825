"""Concurrency: one session from many threads; many processes on one on-disk cache; damaged cache entries."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import threading
from pathlib import Path

import numpy as np

import framework
from framework.disk_cache import DiskCache, cache_key

from .soak import gpt_feeds, small_feeds, small_model


def threaded_runs(mode: str, jit_level: str, threads: int = 8, runs: int = 20, model: str = "small") -> dict:
    """Each thread runs its own shapes through one shared session; every result must equal the result of a
    single-threaded session of the same configuration."""
    if model == "small":
        model, feeds = small_model(), [small_feeds(k * 37) for k in range(threads * runs)]
    else:
        import onnx_models

        model, feeds = onnx_models.build(model), [gpt_feeds(k * 7) for k in range(threads * runs)]
    ref_sess = framework.InferenceSession(model, mode=mode, jit_level=jit_level)
    want = [ref_sess.run(None, f)[0] for f in feeds]
    shared = framework.InferenceSession(model, mode=mode, jit_level=jit_level)
    bad, errors = [], []
    start = threading.Barrier(threads)

    def work(t):
        start.wait()
        for k in range(t, len(feeds), threads):
            try:
                got = shared.run(None, feeds[k])[0]
            except Exception as e:  # noqa: BLE001 - recorded, the test reports it
                errors.append(f"run {k}: {type(e).__name__}: {e}")
                continue
            if got.shape != want[k].shape or not np.allclose(got, want[k], rtol=1e-6, atol=1e-7):
                bad.append(k)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    return {"runs": len(feeds), "mismatches": bad, "errors": errors}


def _blob(i: int) -> bytes:
    """Entry i's content (what a compiler would produce for key i): deterministic, up to ~1 MB."""
    return hashlib.sha256(str(i).encode()).digest() * (1 + (i * 7919) % 32768)


def _writer(root: str, keys: int, rounds: int, queue) -> None:
    cache = DiskCache("stress", root)
    wrong = 0
    for r in range(rounds):
        for i in range(keys):
            k = cache_key("kernel", i)
            got = cache.get(k)
            if got is None:
                cache.put(k, _blob(i))
            elif got != _blob(i):
                wrong += 1
    queue.put({"hits": cache.hits, "misses": cache.misses, "corruptions": cache.corruptions, "wrong": wrong})


def cache_processes(root: str, procs: int = 4, keys: int = 40, rounds: int = 5) -> dict:
    """Several processes reading and writing the same keys at once; none may read a wrong or torn entry."""
    ctx = mp.get_context("fork")  # the children only do file I/O: no re-import per process
    queue = ctx.Queue()
    workers = [ctx.Process(target=_writer, args=(root, keys, rounds, queue)) for _ in range(procs)]
    for w in workers:
        w.start()
    results = []
    while len(results) < procs and (any(w.is_alive() for w in workers) or not queue.empty()):
        try:
            results.append(queue.get(timeout=1))
        except Exception:  # queue.Empty: a worker is still busy, or died (its exit code says)
            pass
    for w in workers:
        w.join()
    final = DiskCache("stress", root)
    intact = sum(final.get(cache_key("kernel", i)) == _blob(i) for i in range(keys))
    leftovers = [p.name for p in Path(root, "stress").rglob(".tmp-*")]
    return {
        "processes": procs,
        "reported": len(results),
        "operations": procs * keys * rounds,
        "exit_codes": [w.exitcode for w in workers],
        "hits": sum(r["hits"] for r in results),
        "corruptions": sum(r["corruptions"] for r in results),
        "wrong_reads": sum(r["wrong"] for r in results),
        "intact": intact,
        "keys": keys,
        "temp_files_left": leftovers,
    }


DAMAGE = {
    "truncated": lambda data, side: (data.write_bytes(data.read_bytes()[:-1]),),
    "emptied": lambda data, side: (data.write_bytes(b""),),
    "bit flipped": lambda data, side: (data.write_bytes(_flip(data.read_bytes())),),
    "sidecar tampered": lambda data, side: (side.write_text("0" * 64),),
    "sidecar garbage": lambda data, side: (side.write_bytes(b"\xff\xfe not hex"),),
    "sidecar missing": lambda data, side: (side.unlink(),),
    "data missing": lambda data, side: (data.unlink(),),
}


def _flip(b: bytes) -> bytes:
    return b[: len(b) // 2] + bytes([b[len(b) // 2] ^ 0x10]) + b[len(b) // 2 + 1 :]


def damaged_entries(root: str) -> dict:
    """Damage an entry each way; the next get must miss (never return the damaged bytes) and a rebuild must
    restore it. Returns per damage: (what get returned, corruptions counted, rebuilt ok)."""
    out = {}
    for i, (name, damage) in enumerate(DAMAGE.items()):
        cache = DiskCache("damage", root)
        key, blob = cache_key("damage", i), _blob(i + 100)
        data = cache.put(key, blob)
        damage(data, data.with_name(data.name + ".sha256"))
        got = cache.get(key)
        left = sorted(p.name[len(key) :] for p in data.parent.iterdir() if p.name.startswith(key))
        rebuilt = cache.get(key) is None and cache.put(key, blob) is not None and cache.get(key) == blob
        out[name] = {
            "returned": None if got is None else ("damaged" if got != blob else "intact"),
            "corruptions": cache.corruptions,
            "rebuilt": rebuilt,
            "files_after_get": left,
        }
    return out


def default_workers() -> int:
    return max(2, min(4, os.cpu_count() or 2))
