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


def _floats(*bits):
    return np.array(bits, np.uint32).view(np.float32)


def test_call_float32_calls_only_with_c_contiguous_float32_buffers_of_their_counts():
    """strcpy copies src's bytes up to its zero float: called where both buffers qualify; False and nothing
    written for a strided view, a float64 buffer or another element count."""
    src = _floats(0x41414141, 0)
    dst = np.zeros(2, np.float32)
    assert _C.call_float32(_strcpy(), (2, 2), dst, src) is True
    assert dst.view(np.uint32)[0] == 0x41414141
    for counts, out in [((2, 2), np.zeros(4, np.float32)[::2]), ((2, 2), np.zeros(2, np.float64)),
                        ((3, 2), np.zeros(2, np.float32))]:
        assert _C.call_float32(_strcpy(), counts, out, src) is False
        assert not out.any()


def test_call_float32_bad_calls_are_typed_errors():
    dst, src = np.zeros(2, np.float32), _floats(0x41414141, 0)
    with pytest.raises(ValueError, match="counts"):
        _C.call_float32(_strcpy(), (2,), dst, src)
    with pytest.raises(ValueError, match="counts"):
        _C.call_float32(_strcpy(), [2, 2], dst, src)
    with pytest.raises(ValueError, match="1 to 16"):
        _C.call_float32(_strcpy(), ())
    with pytest.raises(TypeError):
        _C.call_float32(_strcpy(), (2, 2), dst, 3)
    with pytest.raises(TypeError):
        _C.call_float32(_strcpy(), (2, "x"), dst, src)
    assert not dst.any()
