"""Concurrency and the trusted cache: threads sharing a session, processes sharing a cache, damage."""

import pytest

from framework.disk_cache import DiskCache, cache_key
from tests.reliability.concurrency import DAMAGE, cache_processes, damaged_entries, threaded_runs
from tests.reliability.soak import CONFIGS


@pytest.mark.parametrize("mode,jit_level", CONFIGS)
def test_one_session_many_threads(mode, jit_level):
    r = threaded_runs(mode, jit_level, threads=8, runs=20)
    assert not r["errors"] and not r["mismatches"], (r["errors"][:3], r["mismatches"][:10])


@pytest.mark.parametrize("mode", ["graph", "pynative"])
def test_fused_transformer_many_threads(mode):
    """tiny_gpt at O1: DVM kernels (graph) and lazily fused groups (PyNative) from 4 threads at once."""
    r = threaded_runs(mode, "O1", threads=4, runs=4, model="tiny_gpt")
    assert not r["errors"] and not r["mismatches"], (r["errors"][:3], r["mismatches"])


def test_processes_writing_the_same_keys(tmp_path):
    r = cache_processes(str(tmp_path), procs=4, keys=40, rounds=5)
    assert r["exit_codes"] == [0] * 4 and r["reported"] == 4
    assert r["wrong_reads"] == 0 and r["corruptions"] == 0 and r["intact"] == 40
    assert r["hits"] > 0 and r["temp_files_left"] == []  # entries were shared, and no torn temp file stayed


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_entry_is_detected_and_rebuilt(tmp_path, damage):
    r = damaged_entries(str(tmp_path))[damage]
    assert r["returned"] is None and r["rebuilt"]  # never the damaged bytes; a rebuild restores the entry
    if damage.startswith(("sidecar missing", "data missing")):
        assert r["corruptions"] == 0  # half an entry is a miss
    else:
        assert r["corruptions"] == 1 and r["files_after_get"] == []  # counted and deleted


def test_garbage_sidecar_is_corruption_not_a_crash(tmp_path, monkeypatch):
    """A sidecar that is not even text once raised UnicodeDecodeError out of get()."""
    monkeypatch.setenv("MSGX_CACHE_DIR", str(tmp_path))
    cache = DiskCache("x")
    key = cache_key("k")
    path = cache.put(key, b"payload")
    path.with_name(path.name + ".sha256").write_bytes(b"\xff\xfe\x00")
    assert cache.get(key) is None and cache.corruptions == 1 and not path.exists()
