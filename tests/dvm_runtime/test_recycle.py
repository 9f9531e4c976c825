"""Recycled big outputs: an array comes back from take() only once nothing outside the pool holds it."""
import numpy as np

from dvm_runtime import recycle


def test_a_held_array_or_view_is_never_handed_out_again():
    n = recycle.MIN_BYTES // 4
    first = recycle.take(n, np.dtype(np.float32))
    first[:] = 1
    recycle.give(first)
    view = first[::2]
    del first
    second = recycle.take(n, np.dtype(np.float32))   # `view` still references the first array
    assert not np.shares_memory(second, view)
    recycle.give(second)
    address = second.__array_interface__["data"][0]
    del second
    third = recycle.take(n, np.dtype(np.float32))   # released: recycled
    assert third.__array_interface__["data"][0] == address
    assert np.all(view == 1)


def test_several_arrays_of_one_size_are_kept_and_the_pool_is_bounded():
    n = recycle.MIN_BYTES // 4
    arrays = [recycle.take(n, np.dtype(np.float32)) for _ in range(3)]
    for a in arrays:
        recycle.give(a)
    addresses = {a.__array_interface__["data"][0] for a in arrays}
    del arrays, a
    again = [recycle.take(n, np.dtype(np.float32)) for _ in range(3)]
    assert {a.__array_interface__["data"][0] for a in again} == addresses
    for a in again:
        recycle.give(a)
    for _ in range(recycle.POOL_BYTES // recycle.MIN_BYTES + 2):
        recycle.give(np.empty(n + 1, np.float32))
    assert recycle._pool_bytes <= recycle.POOL_BYTES


def test_outputs_of_a_big_program_stay_intact_while_held():
    from framework.ir import Graph, Node, TensorType, Value
    from dvm_runtime.backend import DvmBackend

    shape = (2048, 2048)   # 16 MiB of float32: recycled
    x, y = Value(TensorType(np.float32, shape)), Value(TensorType(np.float32, shape))
    body = Graph((x,), (y,), (Node("Exp", (x,), (y,), {}, "", 13),))
    kernel = DvmBackend().compile(Node("Fused", (x,), (y,), {"body": body}, "msgx"))
    a = np.zeros(shape, np.float32)
    held = kernel(a)[0]
    again = kernel(a + 1)[0]
    np.testing.assert_array_equal(held, 1)   # exp(0), not overwritten by the second call
    np.testing.assert_allclose(again, np.e, rtol=1e-6)
    del held
    assert kernel(a)[0].__array_interface__["data"][0] != again.__array_interface__["data"][0]


def test_a_dtype_given_as_a_type_finds_the_kept_arrays():
    n = recycle.MIN_BYTES // 4
    first = recycle.take(n, np.float32)
    recycle.give(first)
    address = first.__array_interface__["data"][0]
    del first
    assert recycle.take(n, np.float32).__array_interface__["data"][0] == address


def test_held_arrays_leave_a_full_pool_before_free_ones():
    n = recycle.MIN_BYTES // 4 + 3   # a size no other test uses
    free = recycle.take(n, np.dtype(np.float32))
    recycle.give(free)
    address = free.__array_interface__["data"][0]
    del free
    held = []
    for _ in range(recycle.POOL_BYTES // recycle.MIN_BYTES + 2):   # more than the pool holds, all kept by us
        held.append(np.empty(n, np.float32))
        recycle.give(held[-1])
    assert recycle._pool_bytes <= recycle.POOL_BYTES
    assert recycle.take(n, np.dtype(np.float32)).__array_interface__["data"][0] == address


def test_new_arrays_start_at_the_page_offset_and_views_of_views_keep_them_held():
    """Arrays start PAGE_OFFSET bytes into a page (no 4K aliasing with an input malloc put just before); a
    caller's reshape of one, or a view of that reshape, references the buffer underneath, not the array
    the pool holds: the array still counts as held."""
    n = recycle.MIN_BYTES // 4 + 7
    dt = np.dtype(np.float32)
    a = recycle.take(n, dt)
    assert a.ctypes.data % 4096 == recycle.PAGE_OFFSET and a.size == n and a.flags.c_contiguous
    recycle.give(a)
    shaped = a[: n - 7].reshape(-1, 16)   # the binding returns reshapes like this
    inner = shaped[1:, ::2]
    del a, shaped
    b = recycle.take(n, dt)
    assert not np.shares_memory(b, inner)   # `inner` still references the first buffer
    recycle.give(b)
    address = b.ctypes.data
    del b
    c = recycle.take(n, dt)
    assert c.ctypes.data == address   # nobody holds the second one: recycled
    del inner
    d = recycle.take(n, dt)   # nor the first any more
    assert d.ctypes.data % 4096 == recycle.PAGE_OFFSET and not np.shares_memory(c, d)
