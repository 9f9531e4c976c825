import pytest

from dvm_runtime import cvm


@pytest.fixture
def stream_16mib():
    """The VM's non-temporal threshold at 16 MiB (its floor) for the test: programs of that much data stream
    their STOREs into buffers of 2 MiB or more, whatever this machine's last-level cache makes the default."""
    if not cvm.available():
        pytest.skip(f"C VM unavailable: {cvm.why_unavailable()}")
    cvm.stream_bytes(16 << 20)
    yield
    cvm.stream_bytes(0)
