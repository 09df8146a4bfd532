"""The memory knob of the weight-carrying ops: the size of the column workspace.

``conv`` and ``locally_connected`` (and their layers) gather the columns of a few samples at a
time into one reused workspace of at most this many bytes. Set it per call
(``workspace_bytes=``), per layer (``layer.workspace_bytes``) or for a block of code with
:func:`workspace` (exported as ``unfoldconv.workspace``).

The default depends on the device. On the CPU it is a cache choice: 16 MiB of columns keeps
the gather and its GEMM close to the last-level cache, and chunking costs little there. On a
GPU the chunk loop costs a launch per chunk and small GEMMs, while memory is plentiful: the
default is 1 GiB, so that typical batches take one whole-batch gather and one GEMM per group
(All-CNN-C at batch 256 in float32: 7-864 MiB of columns per layer, all below it), and only
layers whose columns pass 1 GiB are chunked. The GPU figure is a memory budget, not a measured
optimum (no GPU was at hand when it was chosen); tune it with :func:`workspace`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from unfoldconv._args import check_int

#: Default size of the column workspace of one chunk on the CPU, in bytes.
DEFAULT_WORKSPACE_BYTES = 16 * 2**20
#: Default size of the column workspace of one chunk on a GPU (any non-CPU device), in bytes.
DEFAULT_GPU_WORKSPACE_BYTES = 2**30

_workspace_bytes: list[int | None] = [None]  # None: the device's default


def default_workspace_bytes(device: torch.device | None = None) -> int:
    """The workspace size used when a call or a layer does not set ``workspace_bytes``.

    Inside ``with workspace(n):`` it is ``n`` on every device; otherwise
    :data:`DEFAULT_WORKSPACE_BYTES` on the CPU (and for ``device=None``) and
    :data:`DEFAULT_GPU_WORKSPACE_BYTES` elsewhere.
    """
    if _workspace_bytes[0] is not None:
        return _workspace_bytes[0]
    if device is None or device.type == "cpu":
        return DEFAULT_WORKSPACE_BYTES
    return DEFAULT_GPU_WORKSPACE_BYTES


@contextlib.contextmanager
def workspace(num_bytes: int) -> Iterator[None]:
    """Context manager: use ``num_bytes`` as the default chunk workspace inside the block.

    It replaces the device defaults (16 MiB on the CPU, 1 GiB on a GPU) on every device.

    Smaller saves memory, larger makes fewer, larger matmuls; at least one sample is gathered
    at a time whatever the size.

    Args:
        num_bytes: workspace of one batch chunk in bytes, a positive int.

    Example:
        >>> import torch, unfoldconv
        >>> x, w = torch.randn(8, 3, 16, 16), torch.randn(4, 3, 3, 3)
        >>> with unfoldconv.workspace(4 * 2**20):  # smaller chunks, less memory
        ...     y = unfoldconv.conv(x, w, padding=1)
        >>> y.shape
        torch.Size([8, 4, 16, 16])
    """
    num_bytes = check_int("num_bytes", num_bytes)
    previous = _workspace_bytes[0]
    _workspace_bytes[0] = num_bytes
    try:
        yield
    finally:
        _workspace_bytes[0] = previous
