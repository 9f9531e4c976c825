"""framework.allocator: glibc keeps large freed buffers in the heap once msgx is imported, unless disabled."""
import subprocess
import sys

import pytest

CHECK = "import framework, framework.allocator as a; print(a._applied)"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the tuning is glibc's mallopt (Linux)")
@pytest.mark.parametrize("env, want", [({}, "True"), ({"MSGX_MALLOC_TUNING": "0"}, "False")])
def test_malloc_tuning_applies_on_import_unless_disabled(env, want):
    import os
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == want
