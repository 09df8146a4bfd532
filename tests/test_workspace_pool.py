"""The CPU workspace pool (``unfoldconv._workspace_pool``): buffers reused across calls, never
shared by two live uses, and the chunked ops that use it still match torch after reuse."""

from __future__ import annotations

import threading

import pytest
import torch
import torch.nn.functional as F

import unfoldconv
from unfoldconv import _workspace_pool
from unfoldconv._workspace_pool import pooled


@pytest.fixture(autouse=True)
def empty_pool():
    _workspace_pool.clear()
    yield
    _workspace_pool.clear()


def test_a_freed_buffer_is_handed_out_again():
    like = torch.empty(0)
    with pooled(like, 1000) as first:
        pointer = first.data_ptr()
    with pooled(like, 800) as second:  # smaller: the same buffer, a view of its start
        assert second.data_ptr() == pointer and second.shape == (800,)


def test_live_uses_never_share_a_buffer():
    like = torch.empty(0)
    with pooled(like, 1000) as a, pooled(like, 1000) as b:
        assert a.data_ptr() != b.data_ptr()
        with pooled(like, 10) as c:  # nested
            assert c.data_ptr() not in (a.data_ptr(), b.data_ptr())


def test_dtype_size_and_count_limits(monkeypatch):
    like = torch.empty(0)
    with pooled(like.double(), 100) as d:
        assert d.dtype == torch.float64
    with pooled(like, 100) as f:  # another dtype: not the float64 buffer
        assert f.dtype == torch.float32 and f.data_ptr() != d.data_ptr()
    monkeypatch.setattr(_workspace_pool, "MAX_POOLED_BYTES", 400)
    with pooled(like, 101) as big:  # 404 bytes: fresh and not kept
        big_pointer = big.data_ptr()
    assert all(b.data_ptr() != big_pointer for b in _workspace_pool._pool.free)
    with pooled(like, 1) as a, pooled(like, 2) as b, pooled(like, 3) as c, pooled(like, 4) as e:
        assert len({t.data_ptr() for t in (a, b, c, e)}) == 4  # four live uses, four buffers
    assert len(_workspace_pool._pool.free) == _workspace_pool.KEPT_BUFFERS  # the smallest freed


def test_threads_have_pools_of_their_own():
    with pooled(torch.empty(0), 100) as mine:
        pointer = mine.data_ptr()
    seen = []
    thread = threading.Thread(target=lambda: seen.append(_workspace_pool._pool.free))
    thread.start()
    thread.join()
    assert seen == [[]]
    assert [b.data_ptr() for b in _workspace_pool._pool.free] == [pointer]


def test_inference_mode_gets_fresh_tensors():
    with torch.inference_mode(), pooled(torch.empty(0), 100) as buffer:
        assert buffer.is_inference()
    assert not _workspace_pool._pool.free


@pytest.mark.parametrize("layer", ["conv", "locally_connected"])
def test_chunked_layers_match_torch_across_reuse(layer):
    """Several chunks (a workspace smaller than the batch), twice: the second call reads
    buffers the first wrote, and must still be exact."""
    x = torch.randn(6, 5, 9, 9, dtype=torch.float64, requires_grad=True)
    if layer == "conv":
        w = torch.randn(7, 5, 3, 3, dtype=torch.float64, requires_grad=True)

        def ours():
            return unfoldconv.conv(x, w, padding=1, workspace_bytes=5 * 9 * 81 * 8)

        def theirs():
            return F.conv2d(x, w, padding=1)

    else:
        w = torch.randn(9, 9, 7, 5, 3, 3, dtype=torch.float64, requires_grad=True)

        def ours():
            return unfoldconv.locally_connected(x, w, padding=1, workspace_bytes=5 * 9 * 81 * 8)

        def theirs():
            return unfoldconv.locally_connected(x, w, padding=1, workspace_bytes=2**30)

    for _ in range(2):
        mine, expected = ours(), theirs()
        torch.testing.assert_close(mine, expected)
        grad = torch.randn_like(expected)
        for got, want in zip(
            torch.autograd.grad(mine, (x, w), grad), torch.autograd.grad(expected, (x, w), grad)
        ):
            torch.testing.assert_close(got, want)
    assert _workspace_pool._pool.free  # the chunk loops gave their buffers back
