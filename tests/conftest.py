"""Every on-disk cache the backends use (polyhedral C builds, agent kernels) goes to a temporary folder, so
tests never read or fill the user's ~/.cache/msgx."""
import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("MSGX_CACHE_DIR", str(tmp_path_factory.mktemp("msgx-cache")))
    yield
    mp.undo()
