"""Non-zero ``padding_mode`` padding (reflect, replicate, circular) for any number of dims."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _source_indices(size: int, before: int, after: int, mode: str) -> list[int]:
    """For each position of the padded axis, the input index it copies (``mode`` != zeros)."""
    if mode == "reflect" and max(before, after) >= size:
        raise ValueError(
            f"padding_mode='reflect' needs padding smaller than the input size, got padding "
            f"({before}, {after}) for a spatial dim of size {size}"
        )
    if mode == "circular" and max(before, after) > size:
        raise ValueError(
            f"padding_mode='circular' needs padding at most the input size, got padding "
            f"({before}, {after}) for a spatial dim of size {size}"
        )
    indices = []
    for position in range(-before, size + after):
        if mode == "replicate":
            indices.append(min(max(position, 0), size - 1))
        elif mode == "circular":
            indices.append(position % size)
        else:  # reflect (edge not repeated)
            reflected = -position if position < 0 else position
            indices.append(2 * (size - 1) - reflected if reflected >= size else reflected)
    return indices


def pad_by_mode(input: torch.Tensor, padding: Sequence[tuple[int, int]], mode: str) -> torch.Tensor:
    """Pad the last ``len(padding)`` dims of ``input`` by ``(before, after)`` as ``mode`` says.

    Works for any number of spatial dims (``F.pad`` stops at 3 for these modes) and gives the
    values ``F.pad`` gives: every padded element is a copy of one input element, chosen by an
    index per axis, so gradients flow back through ``index_select``.
    """
    d = len(padding)
    for axis, (before, after) in enumerate(padding):
        if before == 0 and after == 0:
            continue
        dim = input.dim() - d + axis
        indices = _source_indices(input.shape[dim], before, after, mode)
        index = torch.tensor(indices, dtype=torch.long, device=input.device)
        input = input.index_select(dim, index)
    return input
