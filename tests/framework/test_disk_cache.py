"""The shared on-disk cache: round trip, atomic entries, corruption detected and counted."""
import pytest

from framework.disk_cache import CacheError, DiskCache, cache_key


def test_round_trip_and_counters(tmp_path):
    cache = DiskCache("t", root=tmp_path)
    key = cache_key("op", (2, 3), "float32")
    assert cache.get(key) is None and cache.misses == 1
    path = cache.put(key, b"payload")
    assert path.read_bytes() == b"payload"
    assert cache.get(key) == b"payload" and cache.hits == 1
    assert cache_key("op", (2, 3), "float32") == key != cache_key("op", (3, 2), "float32")


@pytest.mark.parametrize("damage", ["truncate", "flip", "drop_sidecar"])
def test_damaged_entry_is_a_miss_and_removed(tmp_path, damage):
    cache = DiskCache("t", root=tmp_path)
    key = cache_key("k")
    path = cache.put(key, b"0123456789" * 10, suffix=".so")
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:17])
    elif damage == "flip":
        data = bytearray(path.read_bytes())
        data[5] ^= 1
        path.write_bytes(bytes(data))
    else:
        path.with_name(path.name + ".sha256").unlink()
    assert cache.get_path(key, ".so") is None
    if damage != "drop_sidecar":
        assert cache.corruptions == 1 and not path.exists()
    cache.put(key, b"rebuilt", suffix=".so")
    assert cache.get(key, ".so") == b"rebuilt"


def test_bad_key_is_refused(tmp_path):
    with pytest.raises(CacheError, match="hex"):
        DiskCache("t", root=tmp_path).get("../../etc/passwd")
