"""framework._ckernels.call_pointers: a C function taking only pointers, called with buffers' data pointers
(what the polyhedral backend's kernels are called through), and its typed errors."""
import ctypes
import sys

import numpy as np
import pytest

from framework.ops.nn_ckernels import _C

pytestmark = [pytest.mark.skipif(_C is None, reason="framework._ckernels is not built"),
              pytest.mark.skipif(sys.platform == "win32", reason="libc's strcpy through ctypes.CDLL(None)")]


def _strcpy() -> int:
    return ctypes.cast(ctypes.CDLL(None).strcpy, ctypes.c_void_p).value


def test_calls_with_the_buffers_data_pointers():
    dst, src = bytearray(16), np.frombuffer(b"kernel\0", np.uint8)  # a read-only source is fine
    assert _C.call_pointers(_strcpy(), dst, src) is None
    assert bytes(dst[:7]) == b"kernel\0"


def test_bad_calls_are_typed_errors_and_call_nothing():
    dst = bytearray(b"untouched\0")
    with pytest.raises(ValueError, match="1 to 16"):
        _C.call_pointers(_strcpy())
    with pytest.raises(ValueError, match="1 to 16"):
        _C.call_pointers(_strcpy(), *[bytearray(1)] * 17)
    with pytest.raises(ValueError, match="null"):
        _C.call_pointers(0, dst, b"x\0")
    with pytest.raises(TypeError):
        _C.call_pointers(_strcpy(), dst, 3)                        # not a buffer
    with pytest.raises(ValueError, match="contiguous"):
        _C.call_pointers(_strcpy(), dst, np.zeros((4, 4), np.uint8)[:, ::2])  # not contiguous
    with pytest.raises(TypeError):
        _C.call_pointers("strcpy", dst, b"x\0")
    assert bytes(dst) == b"untouched\0"
