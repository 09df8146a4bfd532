"""unfoldconv: N-d unfold/fold (im2col/col2im) for PyTorch, and layers built on it.

Engine: :func:`unfold`, :func:`fold`, :func:`unfold_transpose` and the modules :class:`Unfold`,
:class:`Fold`, :class:`UnfoldTranspose`, for any number of spatial dims.
"""

from unfoldconv._backend import backend
from unfoldconv.conv import conv
from unfoldconv.conv_transpose import conv_transpose
from unfoldconv.fold import Fold, fold
from unfoldconv.locally_connected import locally_connected
from unfoldconv.memory import workspace
from unfoldconv.patch import patchify, unpatchify
from unfoldconv.resample import resample_patch_embed
from unfoldconv.unfold import Unfold, unfold
from unfoldconv.unfold_transpose import UnfoldTranspose, unfold_transpose

__all__ = [
    "Fold",
    "Unfold",
    "UnfoldTranspose",
    "backend",
    "conv",
    "conv_transpose",
    "fold",
    "locally_connected",
    "patchify",
    "resample_patch_embed",
    "unfold",
    "unfold_transpose",
    "unpatchify",
    "workspace",
]
__version__ = "0.1.0"
