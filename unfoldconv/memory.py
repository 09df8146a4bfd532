"""The memory knob of the weight-carrying ops: the size of the column workspace.

``conv`` and ``locally_connected`` (and their layers) gather the columns of a few samples at a
time into one reused workspace of at most this many bytes. Set it per call
(``workspace_bytes=``), per layer (``layer.workspace_bytes``) or for a block of code with
:func:`workspace` (exported as ``unfoldconv.workspace``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from unfoldconv._args import check_int

#: Default size of the column workspace of one chunk, in bytes.
DEFAULT_WORKSPACE_BYTES = 16 * 2**20

_workspace_bytes = [DEFAULT_WORKSPACE_BYTES]


def default_workspace_bytes() -> int:
    """The workspace size used when a call or a layer does not set ``workspace_bytes``."""
    return _workspace_bytes[0]


@contextlib.contextmanager
def workspace(num_bytes: int) -> Iterator[None]:
    """Context manager: use ``num_bytes`` as the default chunk workspace inside the block.

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
