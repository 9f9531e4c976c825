"""framework._ckernels.call_float32: a C function taking only pointers, called with the data pointers of
C-contiguous float32 buffers of given element counts (what the polyhedral backend's kernels are called
through); False and nothing called for any other buffer; typed errors for bad calls."""
import ctypes
import sys

import numpy as np
import pytest

from framework.ops.nn_ckernels import _C

pytestmark = [pytest.mark.skipif(_C is None, reason="framework._ckernels is not built"),
              pytest.mark.skipif(sys.platform == "win32", reason="libc's strcpy through ctypes.CDLL(None)")]


def _strcpy() -> int:
    return ctypes.cast(ctypes.CDLL(None).strcpy, ctypes.c_void_p).value


def _floats(*bits):
    return np.array(bits, np.uint32).view(np.float32)


def test_calls_only_with_c_contiguous_float32_buffers_of_their_counts():
    """strcpy copies src's bytes up to its zero float: called where both buffers qualify (a read-only source
    is fine); False and nothing written for a strided view, a float64 buffer, another element count or a
    Fortran-ordered matrix (its elements lie transposed)."""
    src = _floats(0x41414141, 0)
    src.flags.writeable = False
    dst = np.zeros(2, np.float32)
    assert _C.call_float32(_strcpy(), (2, 2), dst, src) is True
    assert dst.view(np.uint32)[0] == 0x41414141
    for counts, out in [((2, 2), np.zeros(4, np.float32)[::2]), ((2, 2), np.zeros(2, np.float64)),
                        ((3, 2), np.zeros(2, np.float32)), ((4, 2), np.zeros((2, 2), np.float32, order="F"))]:
        assert _C.call_float32(_strcpy(), counts, out, src) is False
        assert not out.any()


def test_bad_calls_are_typed_errors_and_call_nothing():
    dst, src = np.zeros(2, np.float32), _floats(0x41414141, 0)
    with pytest.raises(ValueError, match="counts"):
        _C.call_float32(_strcpy(), (2,), dst, src)
    with pytest.raises(ValueError, match="counts"):
        _C.call_float32(_strcpy(), [2, 2], dst, src)
    with pytest.raises(ValueError, match="1 to 16"):
        _C.call_float32(_strcpy(), ())
    with pytest.raises(ValueError, match="1 to 16"):
        _C.call_float32(_strcpy(), (1,) * 17, *[np.zeros(1, np.float32)] * 17)
    with pytest.raises(ValueError, match="null"):
        _C.call_float32(0, (2, 2), dst, src)
    with pytest.raises(TypeError):
        _C.call_float32(_strcpy(), (2, 2), dst, 3)  # not a buffer
    with pytest.raises(TypeError):
        _C.call_float32(_strcpy(), (2, "x"), dst, src)
    with pytest.raises(TypeError):
        _C.call_float32("strcpy", (2, 2), dst, src)
    assert not dst.any()
